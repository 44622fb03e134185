"""hull.py: one attention head's key/value cache with O(log t) hard attention.

What it does
------------
A head stores entries (key k = (kx, ky), value v = (vx, vy)), numbered by
insertion order (`seq`). `query(qx, qy)` returns the value of the key with the
largest score s = qx*kx + qy*ky, exactly as SPEC section 9 defines it:

* each score is computed in float64 as two products and one sum (no FMA);
  the tied set is every entry whose score is exactly equal to the maximum;
* qy == 0 selects by kx instead: qx > 0 all entries with the largest kx (any
  ky), qx < 0 those with the smallest kx, qx == 0 all entries;
* *average* mode returns (sum of tied values) * (1/count), *latest* mode the
  value of the tied entry inserted last; an empty head returns (0, 0).

`BruteHead` is that definition as an O(n) NumPy scan; `HullHead` gives the
same answers from convex hulls.

How (point hulls)
-----------------
For qy > 0 the best key lies on the upper convex hull of the key points, for
qy < 0 on the lower hull. Identical keys share one *record*: [seq of the
last insert, its vx, vy] in latest mode, [count, sum vx, sum vy] in average
mode, so duplicates cost nothing and the tied set stays explicit (no float
perturbation tricks). Keys with equal kx form a *column*; only its top (upper
hull) or bottom (lower hull) can be a hull vertex. A `_Chain` holds one hull:
its vertices left to right with the negated edge slopes, which are
non-decreasing along the chain. Collinear points are KEPT: a query
perpendicular to an edge ties every key on that edge, and average mode must
include them all.

A query bisects the slopes for the vertex where the score stops rising, then
walks to both sides, comparing float scores exactly, until a vertex scores
below the best by more than twice the rounding error bound of a score
(2^-52 * (|qx*kx| + |qy*ky|) each). Lower keys of a tied vertex's column
join the tied set when their float score equals the maximum too.

Two representations of a chain:
* keys arriving with non-decreasing kx (positions do) are the new right end:
  pop while the last vertex lies strictly below the new edge, then append, on
  plain lists (the monotone chain step of Andrew's algorithm);
* the first key with a smaller kx switches that chain, for good, to
  SortedLists (vertices, slopes kept index-aligned), where an insert removes
  the run of vertices the new key makes non-convex on either side.
The lower hull is built at the first qy < 0 query (the machine never asks).

Costs (n = distinct keys so far)
--------------------------------
* insert: O(1) amortized on the increasing-kx path (each vertex is popped at
  most once); otherwise O(log n) comparisons plus SortedList insertions and
  deletions, amortized O(log n) ("approximate", as sortedcontainers says),
  and each removed vertex is removed once.
* query: O(log n) bisection + the walk (usually 3 scores) + the tied set
  (+ the near-tied lower keys of its columns).
  qy == 0 with qx != 0: O(m), m = distinct keys in the extreme kx column.
  The first qy < 0 query: O(n log n), to build the lower hull.
* memory: O(n).

Exactness (when HullHead == BruteHead, bit for bit)
---------------------------------------------------
Float rounding can make a key strictly inside the hull score exactly the
float maximum; the hull cannot see such a key. It answers exactly like the
scan whenever no key that the hull discarded reaches the float maximum, which
holds in these two cases (both stress-tested against BruteHead):
1. exact arithmetic: every score product and sum, and every coordinate
   difference, is exact in float64, e.g. integer keys and queries with
   |kx|, |ky|, |qx|, |qy| <= 2^25. Then float ties are real ties: collinear
   keys, duplicates, equal kx, qy == 0 and qy < 0 are all exact.
2. the machine's parabolic keys (2k, -k^2 + d) with integers |k| <= 2^25 and
   0 <= d < 0.45 (every key is on the upper hull, or in a column under a
   vertex), with queries c*(k*, 1) for any scale c > 0 such as
   HARD_K*sqrt(2) = 1.4142135623730951e10: near-ties between neighbouring
   keys are found by the walk, equal-k keys by the column check.
Average mode sums values in another order than the scan: the results are
equal when the sums are exact (e.g. integer values below 2^53), otherwise
they can differ in the last bits. Keys and queries must be finite and
products must not overflow or underflow.

Status: stress-tested against BruteHead (tests/test_hull.py), with `_check()`
after each insert in part of the run. Speed: benchmarks/hull_scaling.py.
"""
from bisect import bisect_left, insort
from fractions import Fraction

import numpy as np
from sortedcontainers import SortedList

# A float score's rounding error is at most 2^-52 * (|qx*kx| + |qy*ky|)
# (two products and a sum, each within half an ulp); the walk stops at a key
# whose score is below the best by more than twice the two keys' bounds.
ROUNDING_SLACK = 2.0 ** -51

# SortedList load of the general chains; tests shrink it to force splits.
_LOAD = SortedList.DEFAULT_LOAD_FACTOR


# ---------------------------------------------------------------------------
# One hull: an upper convex chain of points (x, y), x strictly increasing.

class _Chain:
    """Upper hull of the points inserted so far (the lower hull is the upper
    hull of (x, -y)): a doubly linked list of vertices, left to right, with
    non-increasing edge slopes (a concave chain)."""

    def __init__(self):
        self.y_of = {}           # vertex x -> y
        self.left_of = {}        # vertex x -> previous vertex x (not for the first)
        self.right_of = {}       # vertex x -> next vertex x (not for the last)
        self.xs = []             # vertex x, increasing: list, then SortedList
        self.neg_slopes = []     # list path: neg_slopes[e] of the edge xs[e] -> xs[e+1]
        self.edges = None        # general path: SortedList of (neg slope, left x)

    def _neg_slope(self, left, right):
        """-(slope of the edge left -> right) = (y_left - y_right) / (right - left)."""
        return (self.y_of[left] - self.y_of[right]) / (right - left)

    def insert(self, x, y):
        """Add the key (x, y) (not inserted before)."""
        if self.edges is None:
            xs = self.xs
            if not xs or x > xs[-1]:
                self._append(x, y)
                return
            if x == xs[-1]:                  # same column as the right end
                if y > self.y_of[x]:
                    self._pop()
                    self._append(x, y)
                return
            self._become_general()
        self._insert_anywhere(x, y)

    def _append(self, x, y):
        """New right end: pop the vertices left strictly below the new edge."""
        xs, neg_slopes, y_of = self.xs, self.neg_slopes, self.y_of
        if xs:
            last = xs[-1]
            neg_slope = (y_of[last] - y) / (x - last)
            while neg_slopes and neg_slopes[-1] > neg_slope:
                self._pop()
                last = xs[-1]
                neg_slope = (y_of[last] - y) / (x - last)
            neg_slopes.append(neg_slope)
            self.left_of[x] = last
            self.right_of[last] = x
        xs.append(x)
        y_of[x] = y

    def _pop(self):
        x = self.xs.pop()
        del self.y_of[x]
        if self.neg_slopes:
            self.neg_slopes.pop()
            del self.right_of[self.left_of.pop(x)]

    def _become_general(self):
        self.edges = SortedList(zip(self.neg_slopes, self.xs))   # zip stops at the last edge
        self.edges._reset(_LOAD)
        self.xs = SortedList(self.xs)
        self.xs._reset(_LOAD)
        self.neg_slopes = None

    def _insert_anywhere(self, x, y):
        """Link (x, y) between its neighbours left and right, after moving them
        outwards past the vertices that end strictly below the new edges."""
        xs, y_of, left_of, right_of = self.xs, self.y_of, self.left_of, self.right_of
        i = xs.bisect_left(x)
        right = xs[i] if i < len(xs) else None
        if right == x:                       # the top of the same column, lower: it goes
            if y <= y_of[x]:
                return
            left = left_of.get(x)
            right = right_of.get(x)
        else:
            left = left_of.get(right) if right is not None else xs[-1]
            if (left is not None and right is not None
                    and (y_of[left] - y) / (x - left) > (y - y_of[right]) / (right - x)):
                return                       # strictly below the edge over x
        while right in right_of:
            after = right_of[right]
            if (y - y_of[right]) / (right - x) <= (y_of[right] - y_of[after]) / (after - right):
                break
            right = after
        while left in left_of:
            before = left_of[left]
            if (y_of[before] - y_of[left]) / (left - before) <= (y_of[left] - y) / (x - left):
                break
            left = before
        # unlink the vertices strictly between left and right, and their edges
        path = [] if left is None else [left]
        vertex = xs[0] if left is None else right_of.get(left)
        while vertex != right:
            path.append(vertex)
            vertex = right_of.get(vertex)
        if right is not None:
            path.append(right)
        for a, b in zip(path, path[1:]):
            self.edges.remove((self._neg_slope(a, b), a))
        for vertex in path:
            if vertex != left and vertex != right:
                xs.remove(vertex)
                del y_of[vertex]
                left_of.pop(vertex, None)
                right_of.pop(vertex, None)
        xs.add(x)
        y_of[x] = y
        if left is None:
            left_of.pop(x, None)
        else:
            left_of[x] = left
            right_of[left] = x
            self.edges.add((self._neg_slope(left, x), left))
        if right is None:
            right_of.pop(x, None)
        else:
            right_of[x] = right
            left_of[right] = x
            self.edges.add((self._neg_slope(x, right), x))

    def argmax(self, qx, qy):
        """For qy > 0: (best float score, x of every vertex reaching it)."""
        y_of = self.y_of
        direction = qx / qy      # the score rises along edges whose neg slope < this
        if self.edges is None:
            x = self.xs[bisect_left(self.neg_slopes, direction)]
        else:
            i = self.edges.bisect_left((direction,))
            x = self.edges[i][1] if i < len(self.edges) else self.xs[-1]
        score_x = qx * x
        score_y = qy * y_of[x]
        best = score_x + score_y
        best_size = abs(score_x) + abs(score_y)
        tied = [x]
        for neighbour in (self.right_of, self.left_of):
            vertex = neighbour.get(x)
            while vertex is not None:
                score_x = qx * vertex
                score_y = qy * y_of[vertex]
                score = score_x + score_y
                if score > best:
                    best = score
                    best_size = abs(score_x) + abs(score_y)
                    tied = [vertex]
                elif score == best:
                    tied.append(vertex)
                elif best - score > (best_size + abs(score_x) + abs(score_y)) * ROUNDING_SLACK:
                    break
                vertex = neighbour.get(vertex)
        return best, tied

    def _check(self, tops):
        """Invariants, O(n); tops = {x: highest y of column x} of all keys."""
        xs = list(self.xs)
        y_of = self.y_of
        assert xs and sorted(y_of) == xs and xs[0] == min(tops) and xs[-1] == max(tops)
        for x in xs:
            assert tops[x] == y_of[x], "a vertex is the top of its column"
        assert all(a < b for a, b in zip(xs, xs[1:]))
        assert self.right_of == dict(zip(xs, xs[1:])) and self.left_of == dict(zip(xs[1:], xs))
        edges = [(self._neg_slope(a, b), a) for a, b in zip(xs, xs[1:])]
        assert all(e[0] <= f[0] for e, f in zip(edges, edges[1:])), "concave"
        if self.edges is None:
            assert self.neg_slopes == [neg_slope for neg_slope, _ in edges]
        else:
            self.xs._check()
            self.edges._check()
            assert list(self.edges) == edges
        vertices = set(xs)
        for x, y in tops.items():            # every other top strictly below (exact)
            if x in vertices:
                continue
            e = bisect_left(xs, x) - 1
            x0, x1 = xs[e], xs[e + 1]
            y0, y1 = y_of[x0], y_of[x1]
            cross = ((Fraction(x1) - Fraction(x0)) * (Fraction(y) - Fraction(y0))
                     - (Fraction(y1) - Fraction(y0)) * (Fraction(x) - Fraction(x0)))
            assert cross < 0, f"key ({x}, {y}) is above the hull"


# ---------------------------------------------------------------------------
# The head: records, columns, both hulls.

class HullHead:
    """One head's cache; query in O(log n) (see the module docstring)."""

    def __init__(self, latest):
        self.latest = bool(latest)
        self._count = 0            # entries inserted; the next entry's seq
        self._columns = {}         # kx -> {ky: record}
        self._column_kys = {}      # kx -> sorted ky list, for columns of >= 2 keys
        self._upper = _Chain()     # upper hull of (kx, ky)
        self._lower = None         # upper hull of (kx, -ky), built when needed
        self._total = [0, 0.0, 0.0]   # record of all entries (query (0, 0))

    def __len__(self):
        return self._count

    def insert(self, kx, ky, vx, vy):
        seq = self._count
        self._count = seq + 1
        total = self._total
        latest = self.latest
        if latest:
            total[0] = seq
            total[1] = vx
            total[2] = vy
        else:
            total[0] += 1
            total[1] += vx
            total[2] += vy
        column = self._columns.get(kx)
        if column is None:
            column = self._columns[kx] = {}
        else:
            record = column.get(ky)
            if record is not None:           # a duplicate key: merge
                if latest:
                    record[0] = seq
                    record[1] = vx
                    record[2] = vy
                else:
                    record[0] += 1
                    record[1] += vx
                    record[2] += vy
                return
            kys = self._column_kys.get(kx)
            if kys is None:
                self._column_kys[kx] = sorted([*column, ky])
            else:
                insort(kys, ky)
        column[ky] = [seq, vx, vy] if latest else [1, vx, vy]
        self._upper.insert(kx, ky)
        if self._lower is not None:
            self._lower.insert(kx, -ky)

    def query(self, qx, qy):
        if self._count == 0:
            return (0.0, 0.0)
        if qy > 0:
            chain = self._upper
            best, tied = chain.argmax(qx, qy)
            sign = 1.0
        elif qy < 0:
            if self._lower is None:
                self._build_lower()
            chain = self._lower
            best, tied = chain.argmax(qx, -qy)   # the same float scores
            sign = -1.0
        else:
            return self._query_extreme(qx)
        columns = self._columns
        if len(tied) == 1:                   # the usual case: one key, alone
            x = tied[0]
            column = columns[x]
            if len(column) == 1:
                return self._resolve([column[chain.y_of[x] * sign]])
        records = []
        for x in tied:
            column = columns[x]
            records.append(column[chain.y_of[x] * sign])
            if len(column) > 1:              # keys under the vertex tying in float
                kys = self._column_kys[x]
                others = reversed(kys[:-1]) if sign > 0 else kys[1:]
                score_x = qx * x
                for ky in others:
                    if score_x + qy * ky != best:
                        break
                    records.append(column[ky])
        return self._resolve(records)

    def _query_extreme(self, qx):
        """qy == 0: every entry of the max (qx > 0) or min kx column, or all."""
        if qx == 0:
            return self._resolve([self._total])
        xs = self._upper.xs
        kx = xs[-1] if qx > 0 else xs[0]
        return self._resolve(list(self._columns[kx].values()))

    def _resolve(self, records):
        if self.latest:
            last = max(records, key=lambda record: record[0])   # largest seq
            return (last[1], last[2])
        count = 0
        sum_x = 0.0
        sum_y = 0.0
        for record in records:
            count += record[0]
            sum_x += record[1]
            sum_y += record[2]
        inverse = 1.0 / count
        return (sum_x * inverse, sum_y * inverse)

    def _build_lower(self):
        lower = _Chain()
        for kx in sorted(self._columns):     # increasing kx: the list path
            lower.insert(kx, -min(self._columns[kx]))
        self._lower = lower

    def _check(self):
        """Assert every invariant; O(n) (plus O(n) Fractions)."""
        columns = self._columns
        records = [record for column in columns.values() for record in column.values()]
        if self.latest:
            seqs = [record[0] for record in records]
            assert len(set(seqs)) == len(seqs) and all(0 <= s < self._count for s in seqs)
            assert self._count == 0 or self._total[0] == self._count - 1
        else:
            assert sum(record[0] for record in records) == self._count == self._total[0]
        for kx, column in columns.items():
            assert column
            if len(column) > 1:
                assert self._column_kys[kx] == sorted(column)
        assert len(self._column_kys) == sum(len(column) > 1 for column in columns.values())
        if not columns:
            assert not self._upper.xs and self._lower is None
            return
        self._upper._check({kx: max(column) for kx, column in columns.items()})
        if self._lower is not None:
            self._lower._check({kx: -min(column) for kx, column in columns.items()})


# ---------------------------------------------------------------------------
# The definition: an O(n) scan.

class BruteHead:
    """SPEC section 9 read literally: score every key with NumPy, O(n) per query."""

    def __init__(self, latest):
        self.latest = bool(latest)
        self._count = 0
        self._columns = np.zeros((4, 16))    # [4, capacity]: rows kx, ky, vx, vy

    def __len__(self):
        return self._count

    def insert(self, kx, ky, vx, vy):
        n = self._count
        if n == self._columns.shape[1]:
            grown = np.zeros((4, 2 * n))     # [4, 2 * capacity]
            grown[:, :n] = self._columns
            self._columns = grown
        self._columns[:, n] = (kx, ky, vx, vy)
        self._count = n + 1

    def query(self, qx, qy):
        n = self._count
        if n == 0:
            return (0.0, 0.0)
        kx, ky, vx, vy = self._columns[:, :n]   # [n] each
        if qy != 0:
            scores = qx * kx + qy * ky           # [n], two products and one sum
            tied = scores == scores.max()        # [n] bool
        elif qx > 0:
            tied = kx == kx.max()
        elif qx < 0:
            tied = kx == kx.min()
        else:
            tied = np.ones(n, dtype=bool)
        if self.latest:
            last = n - 1 - int(np.argmax(tied[::-1]))   # the tied entry with the largest seq
            return (float(vx[last]), float(vy[last]))
        inverse = 1.0 / int(np.count_nonzero(tied))
        return (float(vx[tied].sum()) * inverse, float(vy[tied].sum()) * inverse)

    def _check(self):
        assert 0 <= self._count <= self._columns.shape[1]
