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
from array import array
from bisect import bisect_left, insort
from fractions import Fraction

import numpy as np
from sortedcontainers import SortedList

# A float score's rounding error is at most 2^-52 * (|qx*kx| + |qy*ky|)
# (two products and a sum, each within half an ulp); the walk stops at a key
# whose score is below the best by more than twice the two keys' bounds.
ROUNDING_SLACK = 2.0 ** -51

# Distinct keys sharing one kx that the list path accepts; a tied vertex's
# column is scanned, so a longer column moves the head to the tree path.
LIST_COLUMN_LIMIT = 8

# SortedList load of the tree path; tests shrink it to force sublist splits.
_LOAD = SortedList.DEFAULT_LOAD_FACTOR


# ---------------------------------------------------------------------------
# Hulls: an upper convex chain of points (x, y); the lower hull of the keys is
# the upper hull of (kx, -ky). Vertices left to right, x strictly increasing,
# negated edge slopes (y_left - y_right) / (x_right - x_left) non-decreasing.

class _ListChain:
    """The hull while points arrive with non-decreasing x: each new point is
    the right end; pop the vertices left strictly below the new edge, append
    (Andrew's monotone chain step, O(1) amortized). Compact arrays."""

    def __init__(self):
        self.xs = array("d")
        self.ys = array("d")
        self.points = array("q")       # the point (key id) of each vertex
        self.neg_slopes = array("d")   # neg_slopes[e]: edge from vertex e to e + 1

    def add(self, x, y, point):
        xs, ys, neg_slopes = self.xs, self.ys, self.neg_slopes
        if xs:
            if x == xs[-1]:                  # same column as the right end
                if y <= ys[-1]:
                    return
                self._pop()
            if xs:
                neg_slope = (ys[-1] - y) / (x - xs[-1])
                while neg_slopes and neg_slopes[-1] > neg_slope:
                    self._pop()
                    neg_slope = (ys[-1] - y) / (x - xs[-1])
                neg_slopes.append(neg_slope)
        xs.append(x)
        ys.append(y)
        self.points.append(point)

    def _pop(self):
        self.xs.pop()
        self.ys.pop()
        self.points.pop()
        if self.neg_slopes:
            self.neg_slopes.pop()

    def argmax(self, qx, qy):
        """For qy > 0: (best float score, points of the vertices reaching it)."""
        xs, ys, points = self.xs, self.ys, self.points
        start = bisect_left(self.neg_slopes, qx / qy)   # the score stops rising here
        score_x = qx * xs[start]
        score_y = qy * ys[start]
        best = score_x + score_y
        best_size = abs(score_x) + abs(score_y)
        tied = [points[start]]
        n = len(xs)
        for step in (1, -1):                 # walk right, then left
            i = start + step
            while 0 <= i < n:
                score_x = qx * xs[i]
                score_y = qy * ys[i]
                score = score_x + score_y
                if score > best:
                    best = score
                    best_size = abs(score_x) + abs(score_y)
                    tied = [points[i]]
                elif score == best:
                    tied.append(points[i])
                elif best - score > (best_size + abs(score_x) + abs(score_y)) * ROUNDING_SLACK:
                    break
                i += step
        return best, tied

    def _check(self, tops):
        _check_chain(list(self.xs), list(self.ys), list(self.neg_slopes), tops)


class _TreeChain:
    """The hull for points in any order: vertices linked by dicts, a SortedList
    of vertex x to find a new point's place, a SortedList of edges
    (neg slope, left x) to find a query's vertex. An insert removes the run
    of vertices that the new point leaves strictly below the new edges."""

    def __init__(self, listed):
        xs = list(listed.xs)
        self.y_of = dict(zip(xs, listed.ys))         # vertex x -> y
        self.left_of = dict(zip(xs[1:], xs))         # vertex x -> previous vertex x
        self.right_of = dict(zip(xs, xs[1:]))        # vertex x -> next vertex x
        self.xs = SortedList(xs)
        self.xs._reset(_LOAD)
        self.edges = SortedList(zip(listed.neg_slopes, xs))
        self.edges._reset(_LOAD)

    def _neg_slope(self, left, right):
        return (self.y_of[left] - self.y_of[right]) / (right - left)

    def add(self, x, y):
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
        i = self.edges.bisect_left((qx / qy,))      # the score stops rising here
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
        xs = list(self.xs)
        self.xs._check()
        self.edges._check()
        assert sorted(self.y_of) == xs
        assert self.right_of == dict(zip(xs, xs[1:])) and self.left_of == dict(zip(xs[1:], xs))
        ys = [self.y_of[x] for x in xs]
        neg_slopes = [neg_slope for neg_slope, _ in self.edges]
        _check_chain(xs, ys, neg_slopes, tops)
        assert list(self.edges) == list(zip(neg_slopes, xs))


def _check_chain(xs, ys, neg_slopes, tops):
    """A hull of the points {(x, tops[x])}: sorted, concave, vertices are the
    column tops, every other top strictly below (exact arithmetic)."""
    assert xs[0] == min(tops) and xs[-1] == max(tops), "the extreme columns are vertices"
    assert all(a < b for a, b in zip(xs, xs[1:]))
    assert all(tops[x] == y for x, y in zip(xs, ys)), "a vertex is the top of its column"
    assert neg_slopes == [(y0 - y1) / (x1 - x0) for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:])]
    assert all(a <= b for a, b in zip(neg_slopes, neg_slopes[1:])), "concave"
    vertices = set(xs)
    for x, y in tops.items():
        if x in vertices:
            continue
        e = bisect_left(xs, x) - 1
        x0, x1, y0, y1 = (Fraction(value) for value in (xs[e], xs[e + 1], ys[e], ys[e + 1]))
        cross = (x1 - x0) * (Fraction(y) - y0) - (y1 - y0) * (Fraction(x) - x0)
        assert cross < 0, f"key ({x}, {y}) is above the hull"


# ---------------------------------------------------------------------------
# The head: points with their records, columns, both hulls.

class HullHead:
    """One head's cache (see the module docstring). A *point* is a distinct
    key; point p has the record (seq_or_count[p], vx[p], vy[p])."""

    def __init__(self, latest):
        self.latest = bool(latest)
        self._count = 0                     # entries inserted; the next entry's seq
        self._total = [0, 0.0, 0.0]         # record of all entries, for query (0, 0)
        self._kx = array("d")               # [points] key of each point
        self._ky = array("d")
        self._seq_or_count = array("q")     # latest: seq of its last insert; average: count
        self._vx = array("d")               # latest: its last value; average: sum of values
        self._vy = array("d")
        self._column_start = 0              # list path: first point of the last column
        self._upper = _ListChain()          # hull of (kx, ky), then a _TreeChain
        self._lower = None                  # hull of (kx, -ky), built at the first qy < 0
        self._columns = None                # tree path: kx -> {ky: point}
        self._column_kys = None             # tree path: kx -> sorted ky, columns of >= 2 keys

    def __len__(self):
        return self._count

    def insert(self, kx, ky, vx, vy):
        seq = self._count
        self._count = seq + 1
        total = self._total
        if self.latest:
            total[0] = seq
            total[1] = vx
            total[2] = vy
        else:
            total[0] += 1
            total[1] += vx
            total[2] += vy
        if self._columns is None:            # list path: kx never decreased so far
            kxs = self._kx
            n = len(kxs)
            if not n or kx > kxs[-1]:        # a new column at the right
                self._column_start = n
                self._add_point(kx, ky, seq, vx, vy)
                return
            if kx == kxs[-1]:
                kys = self._ky
                for point in range(self._column_start, n):
                    if kys[point] == ky:
                        self._merge(point, seq, vx, vy)
                        return
                if n - self._column_start < LIST_COLUMN_LIMIT:
                    self._add_point(kx, ky, seq, vx, vy)
                    return
            self._become_tree()
        column = self._columns.get(kx)
        if column is None:
            column = self._columns[kx] = {}
        else:
            point = column.get(ky)
            if point is not None:
                self._merge(point, seq, vx, vy)
                return
            kys = self._column_kys.get(kx)
            if kys is None:
                self._column_kys[kx] = sorted([*column, ky])
            else:
                insort(kys, ky)
        column[ky] = len(self._kx)
        self._add_point(kx, ky, seq, vx, vy)

    def _add_point(self, kx, ky, seq, vx, vy):
        point = len(self._kx)
        self._kx.append(kx)
        self._ky.append(ky)
        self._seq_or_count.append(seq if self.latest else 1)
        self._vx.append(vx)
        self._vy.append(vy)
        if self._columns is None:
            self._upper.add(kx, ky, point)
            if self._lower is not None:
                self._lower.add(kx, -ky, point)
        else:
            self._upper.add(kx, ky)
            if self._lower is not None:
                self._lower.add(kx, -ky)

    def _merge(self, point, seq, vx, vy):
        """Another entry with the key of `point`."""
        if self.latest:
            self._seq_or_count[point] = seq
            self._vx[point] = vx
            self._vy[point] = vy
        else:
            self._seq_or_count[point] += 1
            self._vx[point] += vx
            self._vy[point] += vy

    def _become_tree(self):
        """Keys stopped arriving in kx order: index the columns, tree chains."""
        columns = {}
        for point, (kx, ky) in enumerate(zip(self._kx, self._ky)):
            columns.setdefault(kx, {})[ky] = point
        self._columns = columns
        self._column_kys = {kx: sorted(column) for kx, column in columns.items() if len(column) > 1}
        self._upper = _TreeChain(self._upper)
        if self._lower is not None:
            self._lower = _TreeChain(self._lower)

    def _build_lower(self):
        lower = _ListChain()
        if self._columns is None:            # points are in kx order
            for point, (kx, ky) in enumerate(zip(self._kx, self._ky)):
                lower.add(kx, -ky, point)
            self._lower = lower
        else:
            for kx in sorted(self._columns):
                bottom = min(self._columns[kx])
                lower.add(kx, -bottom, self._columns[kx][bottom])
            self._lower = _TreeChain(lower)

    def query(self, qx, qy):
        if self._count == 0:
            return (0.0, 0.0)
        if qy > 0:
            best, tied = self._upper.argmax(qx, qy)
        elif qy < 0:
            if self._lower is None:
                self._build_lower()
            best, tied = self._lower.argmax(qx, -qy)    # the same float scores
        elif qx == 0:
            return self._resolve_total()
        else:
            return self._resolve(self._extreme_column(qx))
        if self._columns is None:
            return self._resolve(self._tied_in_runs(qx, qy, best, tied))
        return self._resolve(self._tied_in_columns(qx, qy, best, tied))

    def _tied_in_runs(self, qx, qy, best, tied):
        """List path: tied = vertex points; add the other keys of their columns
        (contiguous runs of points) whose float score is the best too."""
        kxs, kys = self._kx, self._ky
        n = len(kxs)
        points = []
        for point in tied:
            kx = kxs[point]
            first = point
            while first > 0 and kxs[first - 1] == kx:
                first -= 1
            end = point + 1
            while end < n and kxs[end] == kx:
                end += 1
            score_x = qx * kx
            for member in range(first, end):
                if member == point or score_x + qy * kys[member] == best:
                    points.append(member)
        return points

    def _tied_in_columns(self, qx, qy, best, tied):
        """Tree path: tied = vertex x; add the keys under (qy > 0) or over
        (qy < 0) each vertex in its column whose float score is the best too."""
        columns = self._columns
        points = []
        for kx in tied:
            column = columns[kx]
            kys = self._column_kys.get(kx)
            if kys is None:
                points.extend(column.values())
                continue
            ordered = reversed(kys) if qy > 0 else kys   # the vertex first
            score_x = qx * kx
            for position, ky in enumerate(ordered):
                if position > 0 and score_x + qy * ky != best:
                    break
                points.append(column[ky])
        return points

    def _extreme_column(self, qx):
        """qy == 0: the points of the max (qx > 0) or min (qx < 0) kx column."""
        if self._columns is not None:
            xs = self._upper.xs
            return list(self._columns[xs[-1] if qx > 0 else xs[0]].values())
        kxs = self._kx
        if qx > 0:
            return range(self._column_start, len(kxs))
        end = 1
        while end < len(kxs) and kxs[end] == kxs[0]:
            end += 1
        return range(end)

    def _resolve(self, points):
        if self.latest:
            last = max(points, key=self._seq_or_count.__getitem__)   # largest seq
            return (self._vx[last], self._vy[last])
        count = 0
        sum_x = 0.0
        sum_y = 0.0
        for point in points:
            count += self._seq_or_count[point]
            sum_x += self._vx[point]
            sum_y += self._vy[point]
        inverse = 1.0 / count
        return (sum_x * inverse, sum_y * inverse)

    def _resolve_total(self):
        if self.latest:
            return (self._total[1], self._total[2])
        inverse = 1.0 / self._total[0]
        return (self._total[1] * inverse, self._total[2] * inverse)

    def _check(self):
        """Assert every invariant; O(n) (plus O(n) Fractions)."""
        n = len(self._kx)
        assert len(self._ky) == len(self._seq_or_count) == len(self._vx) == len(self._vy) == n
        keys = list(zip(self._kx, self._ky))
        assert len(set(keys)) == n, "one point per distinct key"
        marks = list(self._seq_or_count)
        if self.latest:
            assert len(set(marks)) == n and all(0 <= seq < self._count for seq in marks)
            assert self._count == 0 or self._total[0] == self._count - 1
        else:
            assert sum(marks) == self._count == self._total[0]
        if n == 0:
            return
        columns = {}
        for point, (kx, ky) in enumerate(keys):
            columns.setdefault(kx, {})[ky] = point
        if self._columns is None:
            assert all(a <= b for a, b in zip(self._kx, self._kx[1:])), "list path: kx order"
            assert all(len(column) <= LIST_COLUMN_LIMIT for column in columns.values())
            assert self._column_start == min(columns[self._kx[-1]].values())
            for chain, sign in ((self._upper, 1.0), (self._lower, -1.0)):
                if chain is not None:
                    assert all(keys[point] == (x, sign * y)
                               for x, y, point in zip(chain.xs, chain.ys, chain.points))
        else:
            assert self._columns == columns
            assert self._column_kys == {kx: sorted(column) for kx, column in columns.items()
                                        if len(column) > 1}
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
