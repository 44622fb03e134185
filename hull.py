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
    hull of (x, -y)). points[e] = (x, y) left to right; neg_slopes[e] =
    (y[e] - y[e+1]) / (x[e+1] - x[e]), non-decreasing (concave chain).
    """

    def __init__(self):
        self.points = []         # list, then SortedList, of (x, y)
        self.neg_slopes = []     # list, then SortedList, of floats
        self.general = False     # False while points arrive with x >= last x

    def insert(self, x, y):
        """Add (x, y), a key not inserted before."""
        points = self.points
        if not self.general:
            if not points or x > points[-1][0]:
                self._append(x, y)
                return
            if x == points[-1][0]:           # same column as the right end
                if y > points[-1][1]:
                    points.pop()
                    if self.neg_slopes:
                        self.neg_slopes.pop()
                    self._append(x, y)
                return
            self._become_general()
        self._insert_anywhere(x, y)

    def _append(self, x, y):
        """New right end: pop the vertices left strictly below the new edge."""
        points, neg_slopes = self.points, self.neg_slopes
        if points:
            last_x, last_y = points[-1]
            neg_slope = (last_y - y) / (x - last_x)
            while neg_slopes and neg_slopes[-1] > neg_slope:
                points.pop()
                neg_slopes.pop()
                last_x, last_y = points[-1]
                neg_slope = (last_y - y) / (x - last_x)
            neg_slopes.append(neg_slope)
        points.append((x, y))

    def _become_general(self):
        self.points = SortedList(self.points)
        self.points._reset(_LOAD)
        self.neg_slopes = SortedList(self.neg_slopes)
        self.neg_slopes._reset(_LOAD)
        self.general = True

    def _insert_anywhere(self, x, y):
        """Insert (x, y) at its place; delete the vertices lo..hi-1 it hides."""
        points, neg_slopes = self.points, self.neg_slopes
        n = len(points)
        lo = hi = points.bisect_left((x,))   # first vertex with x' >= x
        if hi < n and points[hi][0] == x:    # a lower key of the same column
            if y <= points[hi][1]:
                return
            hi += 1
        elif 0 < lo and hi < n:              # below the edge over x: not a vertex
            left_x, left_y = points[lo - 1]
            right_x, right_y = points[hi]
            if (left_y - y) / (x - left_x) > (y - right_y) / (right_x - x):
                return
        while hi + 1 < n:                    # right neighbour below the new edge?
            x1, y1 = points[hi]
            x2, y2 = points[hi + 1]
            if (y - y1) / (x1 - x) <= (y1 - y2) / (x2 - x1):
                break
            hi += 1
        while lo >= 2:                       # left neighbour below the new edge?
            x1, y1 = points[lo - 1]
            x2, y2 = points[lo - 2]
            if (y2 - y1) / (x1 - x2) <= (y1 - y) / (x - x1):
                break
            lo -= 1
        del neg_slopes[max(lo - 1, 0):min(hi, n - 1)]   # edges touching lo..hi-1
        del points[lo:hi]
        points.add((x, y))
        if lo > 0:
            left_x, left_y = points[lo - 1]
            neg_slopes.add((left_y - y) / (x - left_x))
        if lo + 1 < len(points):
            right_x, right_y = points[lo + 1]
            neg_slopes.add((y - right_y) / (right_x - x))

    def argmax(self, qx, qy):
        """For qy > 0: (best float score, vertices (x, y) reaching it)."""
        points = self.points
        n = len(points)
        direction = qx / qy       # the score rises along edges with neg slope < this
        if self.general:
            start = self.neg_slopes.bisect_left(direction)
        else:
            start = bisect_left(self.neg_slopes, direction)
        point = points[start]
        score_x = qx * point[0]
        score_y = qy * point[1]
        best = score_x + score_y
        best_size = abs(score_x) + abs(score_y)
        tied = [point]
        for step in (1, -1):
            i = start + step
            while 0 <= i < n:
                point = points[i]
                score_x = qx * point[0]
                score_y = qy * point[1]
                score = score_x + score_y
                if score > best:
                    best = score
                    best_size = abs(score_x) + abs(score_y)
                    tied = [point]
                elif score == best:
                    tied.append(point)
                elif best - score > (best_size + abs(score_x) + abs(score_y)) * ROUNDING_SLACK:
                    break
                i += step
        return best, tied

    def _check(self, tops):
        """Invariants, O(n); tops = {x: highest y of column x} of all keys."""
        points = list(self.points)
        neg_slopes = list(self.neg_slopes)
        if self.general:
            self.points._check()
            self.neg_slopes._check()
        assert len(neg_slopes) == max(len(points) - 1, 0)
        xs = [x for x, _ in points]
        assert xs[0] == min(tops) and xs[-1] == max(tops), "extreme columns are vertices"
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            assert x0 < x1
        for x, y in points:
            assert tops[x] == y, "a vertex is the top of its column"
        for e, neg_slope in enumerate(neg_slopes):
            (x0, y0), (x1, y1) = points[e], points[e + 1]
            assert neg_slope == (y0 - y1) / (x1 - x0)
            assert e == 0 or neg_slopes[e - 1] <= neg_slope, "concave"
        vertices = set(xs)
        for x, y in tops.items():            # every other top strictly below (exact)
            if x in vertices:
                continue
            e = bisect_left(xs, x) - 1
            (x0, y0), (x1, y1) = points[e], points[e + 1]
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
            best, tied = self._upper.argmax(qx, qy)
            sign = 1.0
        elif qy < 0:
            if self._lower is None:
                self._build_lower()
            best, tied = self._lower.argmax(qx, -qy)   # same float scores
            sign = -1.0
        else:
            return self._query_extreme(qx)
        columns = self._columns
        if len(tied) == 1:                   # the usual case: one key, alone
            x, y = tied[0]
            column = columns[x]
            if len(column) == 1:
                return self._resolve([column[y * sign]])
        records = []
        for x, y in tied:
            column = columns[x]
            records.append(column[y * sign])
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
        points = self._upper.points
        kx = points[-1][0] if qx > 0 else points[0][0]
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
            assert not self._upper.points and self._lower is None
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
