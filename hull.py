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
same answers from convex hulls. `causal_hard_attention(keys, values,
queries, latest)` answers every position of a whole sequence at once
(insert keys[0..p], then query queries[p]), vectorised with NumPy.

How (point hulls)
-----------------
For qy > 0 the best key lies on the upper convex hull of the key points, for
qy < 0 on the lower hull. Each distinct key is a *point* with one record:
(seq of its last insert, that value) in latest mode, (count, sum of values)
in average mode, so duplicates cost nothing and the tied set stays explicit
(no float perturbation tricks). Keys with equal kx form a *column*; only its
top (upper hull) or bottom (lower hull) can be a hull vertex. A chain holds
one hull: vertices left to right, their negated edge slopes non-decreasing.
Collinear points are KEPT: a query perpendicular to an edge ties every key
on that edge, and average mode must include them all.

A query bisects the slopes for the vertex where the score stops rising, then
walks to both sides, comparing float scores exactly, until a vertex scores
below the best by more than twice the rounding error bound of a score
(2^-52 * (|qx*kx| + |qy*ky|) each). Lower keys of a tied vertex's column
join the tied set when their float score equals the maximum too.

Three paths. A head starts on the parabolic path while its keys are the
machine's (see "The parabolic path" below), then moves for good to the list
path or the tree path, which take any keys:
* list path, while kx never decreases (positions) and no column holds more
  than LIST_COLUMN_LIMIT keys: a new key is the right end of the hull; pop
  the vertices left strictly below the new edge, append (the monotone chain
  step of Andrew's algorithm), all in compact arrays (`_ListChain`); columns
  are runs of consecutive points;
* tree path, for good after the first key that breaks those conditions:
  the vertices in blocks of at most 2 * _LOAD (`_BlockChain`): per block,
  arrays of vertex x, y and the slope of the edge to the next vertex, and
  per chain the last x and the last slope of every block, so a new key's
  place and a query's vertex are two bisections each; an insert removes
  the run of vertices the new key leaves strictly below on either side.
  Columns are lists of points in ky order, in a dict by kx.
The lower hull is built at the first qy < 0 query (the machine never asks).

The parabolic path
------------------
The machine's lookups (compile_weights.Graph.lookup) insert keys (2k, -k^2 + d)
with integer k and a recency d = 0.3 * inv_log_pos in [0, 0.433), or cleared
keys (2k, -k^2 - 1e30 + d), and query qy * (r, 1) with qy > 0. For such keys
the exact score is qy * (r^2 - (k - r)^2 + d): every column top is a vertex of
the upper hull (a column k between columns a < k < b lies above their chord
by (k - a)(b - k) >= 1 > RECENCY_LIMIT), so the hull needs no slopes at all:
column k's top is slot k - base of one array (`_slots`, RECORD doubles per
slot: kx, ky, mark, vx, vy, the offset of the next key down the column in
`_records`), the keys under a top are a linked list in decreasing ky, and
cleared keys sit in a dict beside (they never reach the best while a column
exists: CLEARED_BELOW). Conditions, checked for every key and query (else
every key moves to the general paths, in kx order, for good): kx = 2k even,
|k| <= 2^25, 0 <= ky + k^2 < RECENCY_LIMIT (exact by Sterbenz) or a cleared
key (ky < -2^90, |kx| <= 2^26); qy > 0 and |qx / qy| <= 2^40, or the query
(0, 0) (every entry ties: O(n)); slots at most max(SLOT_FLOOR,
SLOTS_PER_ENTRY * entries).
A query goes to the column k0 nearest r = qx / qy. If |k0 - r| <= 1/8, every
|k| and |r| <= 2^23 and column k0 exists, no other column can reach its float
score (ISOLATION: by > 0.29 * qy in exact arithmetic against < 0.1 * qy of
rounding), so the answer is k0's top, with the keys under it whose float score
equals the top's (in decreasing ky, float scores do not increase). Otherwise
it walks from k0 right and from k0 - 1 left, as the list path's walk: past the
peak the exact scores of column tops fall by >= (1 - RECENCY_LIMIT) * qy per
column, so the walk stops at the first column below the best by more than the
slack, and an empty column counts as the bound key (2k, -k^2 + BOUND_RECENCY),
above any key there or beyond; when that bound does not stop the walk, it
goes on at the next column (found in bit sets of the occupied slots, 64 slots
per word, 64 words per summary word). Same float tests, same tied sets as the
hull paths: exact in the same cases (below).

Costs (n = distinct keys so far)
--------------------------------
* parabolic path: insert O(1) (amortized: the slots double when they grow;
  a key below its column's top walks the column), query O(1) with an isolated
  peak, else O(walk) plus O(gap / 4096) per empty run walked over;
  the move to the general paths O(n log n) once.
* insert: list path O(1) amortized (each vertex is popped at most once);
  tree path O(log n) comparisons plus one array insertion moving up to
  2 * _LOAD entries (a memmove), each removed vertex removed once, and a
  new key below the top of its column is placed by bisection in the column.
  The switch to the tree path costs O(n log n) once.
* query: O(log n) bisection + the walk (usually 3 scores) + the tied set
  (+ the keys of its columns: at most LIST_COLUMN_LIMIT each on the list
  path, only the near-tied ones, in ky order, on the tree path).
  qy == 0 with qx != 0: O(m), m = distinct keys in the extreme kx column.
  The first qy < 0 query: O(n log n), to build the lower hull.
* memory: 48 bytes per slot and per key under a column top on the parabolic
  path (positions: 48 bytes per key; at most 4 slots per entry beyond the
  first 2^20 slots); about 75 bytes per distinct key on the list path
  (arrays); the tree path adds about 150 bytes per column (a dict entry, a
  list).

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
   vertex), with queries c*(k*, 1), k* an integer or a half-integer, c > 0
   (tested: 1, 3 and HARD_K*sqrt(2) = 1.4142135623730951e10, where scores
   reach 2^84 and keys of equal k tie in float): near-ties between
   neighbouring keys are found by the walk, equal-k keys by the column check.
   The machine's memory heads also write cleared keys (2k, -1e30): far
   under the hull, duplicates of their column's bottom (merged at once).
The list and tree paths decide with the same float tests (a vertex goes
when a new key leaves it strictly below the new edge, negated slopes
compared in float; a query starts at the vertex bisect_left finds among the
negated slopes, which _bisect_slopes only reaches with other probes, and
walks), so both cases hold on either path and across the switch
(stress-tested on both). The parabolic path holds case 2's keys only, for
any query qy * (r, 1) with qy > 0, |r| <= 2^40: its walk is the hull walk
over every column top (past the peak, tops fall by >= (1 - RECENCY_LIMIT) *
qy per column while a score's rounding bound grows by < 2^-10 * qy), and
its isolated answer is the inequality at ISOLATION (stress-tested with r
integers, half-integers and others, c from 1 to HARD_K*sqrt(2)).
Average mode sums values in another order than the scan: the results are
equal when the sums are exact (e.g. integer values below 2^53), otherwise
they can differ in the last bits. Keys and queries must be finite and
products must not overflow or underflow.

Status: stress-tested against BruteHead (tests/test_hull.py), with `_check()`
after each insert in part of the run; causal_hard_attention against the
sequential BruteHead. Speed: benchmarks/hull_scaling.py.
"""
import math
from array import array
from bisect import bisect_left
from fractions import Fraction

import numpy as np

HARD_K = 1e10   # hard attention's scale (SPEC 7.1): a model's query rows carry HARD_K * sqrt(2)

# A float score's rounding error is at most 2^-52 * (|qx*kx| + |qy*ky|)
# (two products and a sum, each within half an ulp); the walk stops at a key
# whose score is below the best by more than twice the two keys' bounds.
ROUNDING_SLACK = 2.0 ** -51

# Distinct keys sharing one kx that the list path accepts; a tied vertex's
# column is scanned, so a longer column moves the head to the tree path.
LIST_COLUMN_LIMIT = 8

# The parabolic path (see "The parabolic path" in the module docstring).
PARABOLIC_PATH = True         # tests set it False to run the machine's keys on the general paths
PARABOLIC_MAX_K = 2.0 ** 25   # |k| of its keys: k^2 <= 2^50 is exact and -k^2 + 1/2 too (< 2^52)
# Its keys (2k, -k^2 + d) have 0 <= d < RECENCY_LIMIT (the machine: 0.3 * inv_log_pos < 0.433);
# columns k != k' then differ by >= 1 - RECENCY_LIMIT in exact score / qy near the peak.
RECENCY_LIMIT = 0.45
# An empty column k scores as the key (2k, -k^2 + BOUND_RECENCY): above every key of
# that column or (past the peak) beyond it, by >= (BOUND_RECENCY - RECENCY_LIMIT) * qy.
BOUND_RECENCY = 0.5
# Cleared keys: ky < CLEARED_BELOW with |kx| <= CLEARED_MAX_KX score below -2^89 * qy, while
# a column's top scores >= -(|k| + |qx / qy|)^2 * qy >= -2^81 * qy (|k| <= 2^25, |qx / qy| <=
# RATIO_LIMIT): never the best once a column exists (the machine's: ky = -1e30 ~ -2^99.7).
CLEARED_BELOW = -2.0 ** 90
CLEARED_MAX_KX = 2.0 ** 26
# |qx / qy| of its queries (the machine's memory heads ask for any 32-bit value). Past the
# peak a column top falls by >= (1 - RECENCY_LIMIT) * qy per column, while the rounding
# bound of a score grows by <= 2^-52 * (2 * RATIO_LIMIT + 2^27) * qy < 2^-10 * qy per column.
RATIO_LIMIT = 2.0 ** 40
# A query whose peak r = qx / qy is within ISOLATION of an integer k0 with a column, all
# columns and r within ISOLATED_K: any other column k1 scores below k0 in exact arithmetic
# by >= qy * ((7/8)^2 - (1/8)^2 - RECENCY_LIMIT - 2^-20) > 0.29 * qy, while a float score is
# within 2^-52 * (|qx*kx| + |qy*ky|) * (1 + 2^-50) <= 2^-52 * (3 * ISOLATED_K^2 + 1) * qy
# * (1 + 2^-50) < 0.05 * qy of its exact value: only column k0 can reach the float maximum.
ISOLATION = 0.125
ISOLATED_K = 2 ** 23
RECORD = 6                    # doubles per record, at these offsets from its start (kx at 0):
KY, MARK, VX, VY, BELOW = 1, 2, 3, 4, 5   # ky, seq or count, value, offset of the record below (-1: none)
EMPTY = -math.inf             # the ky of an empty slot (no key of the path scores -inf)
# Slots are added SLOT_CHUNK at a time, doubling; a head takes at most
# max(SLOT_FLOOR, SLOTS_PER_ENTRY * entries) slots (RECORD * 8 bytes each: 48 MB at the
# floor) and leaves the path when its keys are sparser than that.
SLOT_CHUNK = 4096             # = 64 * 64: _occupied_words has one bit per word of _occupied
SLOT_FLOOR = 2 ** 20
SLOTS_PER_ENTRY = 4

# Vertices per block of the tree path's chains (a block splits in two above
# 2 * _LOAD): inserting into or deleting from a block moves up to 2 * _LOAD
# references (a C memmove, under a microsecond), and a chain of n vertices
# has n / _LOAD blocks to bisect. Tests shrink it to force splits and merges.
_LOAD = 1000


# Slope arrays at least this long are searched from an interpolated guess
# (_bisect_slopes); below, bisection takes at most 6 probes anyway.
INTERPOLATE_FROM = 64


def _bisect_slopes(slopes, ratio):
    """bisect_left(slopes, ratio) for sorted slopes, probing first where ratio
    would fall if the slopes grew evenly from slopes[0] to slopes[-1]. The
    machine's position keys (2p, -p^2 + d) have edge slopes p + 1/2 (plus a
    recency part below 1/2): found in two probes, where bisection takes log2 n
    probes scattered over memory. Any other slopes: the same answer, after
    one bisection of the part the guess leaves."""
    n = len(slopes)
    if n >= INTERPOLATE_FROM:
        first = slopes[0]
        last = slopes[-1]
        if first < ratio <= last:
            fraction = (ratio - first) / (last - first)
            if 0.0 <= fraction <= 1.0:       # (not NaN: an infinite slope)
                guess = int(fraction * (n - 1))
                if slopes[guess] < ratio:    # the answer is after guess, at most n - 1
                    if slopes[guess + 1] >= ratio:
                        return guess + 1
                    return bisect_left(slopes, ratio, guess + 2, n - 1)
                if guess == 0 or slopes[guess - 1] < ratio:
                    return guess
                return bisect_left(slopes, ratio, 0, guess - 1)
    return bisect_left(slopes, ratio)


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
        start = _bisect_slopes(self.neg_slopes, qx / qy)   # the score stops rising here
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


class _BlockChain:
    """The hull for points in any order. The vertices, in chain order, are cut
    into blocks of at most 2 * _LOAD: parallel Python lists of x, y and the
    negated slope of the edge to the next vertex (+inf after the last vertex;
    slopes are non-decreasing along the chain, so both x and slopes are
    sorted), with the last x and the last slope of each block. A point's place
    and a query's vertex are two bisections each; list insertions and
    deletions move at most 2 * _LOAD references. An insert puts the point in
    its place (or raises its column's top) and deletes the run of vertices it
    leaves strictly below the new edges, with the same float tests as
    _ListChain (each vertex is deleted at most once)."""

    def __init__(self, listed):
        xs, ys = listed.xs, listed.ys
        slopes = listed.neg_slopes + array("d", [math.inf])
        starts = range(0, len(xs), _LOAD)
        self.x_blocks = [xs[i:i + _LOAD] for i in starts]
        self.y_blocks = [ys[i:i + _LOAD] for i in starts]
        self.slope_blocks = [slopes[i:i + _LOAD] for i in starts]
        self.last_x = array("d", [block[-1] for block in self.x_blocks])
        self.last_slope = array("d", [block[-1] for block in self.slope_blocks])

    def first_x(self):
        return self.x_blocks[0][0]

    def final_x(self):
        return self.last_x[-1]

    def _after(self, b, j):
        """(block, index) of the vertex after vertex j of block b, None at the end."""
        if j + 1 < len(self.x_blocks[b]):
            return b, j + 1
        if b + 1 < len(self.x_blocks):
            return b + 1, 0
        return None

    def _before(self, b, j):
        if j > 0:
            return b, j - 1
        if b > 0:
            return b - 1, len(self.x_blocks[b - 1]) - 1
        return None

    def _vertex(self, at):
        b, j = at
        return self.x_blocks[b][j], self.y_blocks[b][j]

    def _delete(self, b, j):
        """Delete vertex j of block b; True if that emptied (and removed) the block."""
        xs, ys, slopes = self.x_blocks[b], self.y_blocks[b], self.slope_blocks[b]
        del xs[j], ys[j], slopes[j]
        if not xs:
            del self.x_blocks[b], self.y_blocks[b], self.slope_blocks[b], self.last_x[b], self.last_slope[b]
            return True
        if j == len(xs):
            self.last_x[b] = xs[-1]
            self.last_slope[b] = slopes[-1]
        return False

    def add(self, x, y):
        x_blocks, y_blocks, last_x = self.x_blocks, self.y_blocks, self.last_x
        b = bisect_left(last_x, x)
        if b == len(last_x):                 # right of every vertex
            b -= 1
            j = len(x_blocks[b])
        else:                                # block b holds a vertex x' >= x
            j = bisect_left(x_blocks[b], x)
        xs, ys = x_blocks[b], y_blocks[b]
        if j < len(xs) and xs[j] == x:       # a new top of a vertex's column
            if y <= ys[j]:
                return
            ys[j] = y
        else:
            if j < len(xs) and (j > 0 or b > 0):     # between two vertices
                x_left, y_left = (xs[j - 1], ys[j - 1]) if j > 0 else (x_blocks[b - 1][-1], y_blocks[b - 1][-1])
                if (y_left - y) / (x - x_left) > (y - ys[j]) / (xs[j] - x):
                    return                   # strictly below the edge over x
            xs.insert(j, x)
            ys.insert(j, y)
            self.slope_blocks[b].insert(j, math.inf)   # set below
            if j == len(xs) - 1:
                last_x[b] = x
        # The new vertex is j of block b: delete the vertices it leaves strictly
        # below. Usually none, seen on two neighbours in the same block each side.
        if not (j + 2 < len(xs) and (y - ys[j + 1]) / (xs[j + 1] - x)
                <= (ys[j + 1] - ys[j + 2]) / (xs[j + 2] - xs[j + 1])):
            while True:
                right = self._after(b, j)
                after = right and self._after(*right)
                if after is None:
                    break
                x_right, y_right = self._vertex(right)
                x_after, y_after = self._vertex(after)
                if (y - y_right) / (x_right - x) <= (y_right - y_after) / (x_after - x_right):
                    break
                self._delete(*right)
        if not (j >= 2 and (ys[j - 2] - ys[j - 1]) / (xs[j - 1] - xs[j - 2])
                <= (ys[j - 1] - y) / (x - xs[j - 1])):
            while True:
                left = self._before(b, j)
                before = left and self._before(*left)
                if before is None:
                    break
                x_left, y_left = self._vertex(left)
                x_before, y_before = self._vertex(before)
                if (y_before - y_left) / (x_left - x_before) <= (y_left - y) / (x - x_left):
                    break
                if self._delete(*left):
                    b -= 1                   # left was alone in block b - 1
                elif left[0] == b:
                    j -= 1
            xs, ys = x_blocks[b], y_blocks[b]
        # the slopes of the edges from the new vertex and into it
        slopes = self.slope_blocks[b]
        if j + 1 < len(xs):
            slopes[j] = (y - ys[j + 1]) / (xs[j + 1] - x)
        else:
            right = self._after(b, j)
            slopes[j] = self.last_slope[b] = (
                math.inf if right is None else (y - y_blocks[b + 1][0]) / (x_blocks[b + 1][0] - x))
        if j > 0:
            slopes[j - 1] = (ys[j - 1] - y) / (x - xs[j - 1])
        elif b > 0:
            left_slopes = self.slope_blocks[b - 1]
            left_slopes[-1] = self.last_slope[b - 1] = (y_blocks[b - 1][-1] - y) / (x - x_blocks[b - 1][-1])
        if len(xs) > 2 * _LOAD:
            self._split(b)

    def _split(self, b):
        half = len(self.x_blocks[b]) // 2
        for blocks in (self.x_blocks, self.y_blocks, self.slope_blocks):
            blocks.insert(b + 1, blocks[b][half:])
            del blocks[b][half:]
        self.last_x.insert(b, self.x_blocks[b][-1])
        self.last_slope.insert(b, self.slope_blocks[b][-1])

    def argmax(self, qx, qy):
        """For qy > 0: (best float score, x of every vertex reaching it)."""
        ratio = qx / qy
        b = bisect_left(self.last_slope, ratio)              # the score stops rising in block b
        j = _bisect_slopes(self.slope_blocks[b], ratio)
        x_blocks, y_blocks = self.x_blocks, self.y_blocks
        x = x_blocks[b][j]
        score_x = qx * x
        score_y = qy * y_blocks[b][j]
        best = score_x + score_y
        best_size = abs(score_x) + abs(score_y)
        tied = [x]
        for step in (1, -1):                 # walk right, then left
            block, i = b, j + step
            xs, ys = x_blocks[block], y_blocks[block]
            end = len(xs)
            while True:
                if not 0 <= i < end:         # into the next block that way
                    block += step
                    if not 0 <= block < len(x_blocks):
                        break
                    xs, ys = x_blocks[block], y_blocks[block]
                    end = len(xs)
                    i = 0 if step > 0 else end - 1
                x = xs[i]
                score_x = qx * x
                score_y = qy * ys[i]
                score = score_x + score_y
                if score > best:
                    best = score
                    best_size = abs(score_x) + abs(score_y)
                    tied = [x]
                elif score == best:
                    tied.append(x)
                elif best - score > (best_size + abs(score_x) + abs(score_y)) * ROUNDING_SLACK:
                    break
                i += step
        return best, tied

    def _check(self, tops):
        blocks = (self.x_blocks, self.y_blocks, self.slope_blocks)
        assert len(self.x_blocks) == len(self.y_blocks) == len(self.slope_blocks) >= 1
        assert all(0 < len(xs) == len(ys) == len(slopes) <= 2 * _LOAD for xs, ys, slopes in zip(*blocks))
        assert list(self.last_x) == [xs[-1] for xs in self.x_blocks]
        assert list(self.last_slope) == [slopes[-1] for slopes in self.slope_blocks]
        xs, ys, slopes = ([value for block in part for value in block] for part in blocks)
        assert slopes[-1] == math.inf
        _check_chain(xs, ys, slopes[:-1], tops)


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
        # the parabolic path (see "The parabolic path" above HullHead); None once left
        self._slots = array("d") if PARABOLIC_PATH else None   # [slots * RECORD] top of column base + i at i
        self._slot_kys = np.zeros(0)        # [slots] a view of the slots' ky
        self._occupied = array("Q")         # bit i % 64 of word i // 64: slot i holds a column
        self._occupied_words = array("Q")   # bit w % 64 of word w // 64: _occupied[w] != 0
        self._base = 0                      # the column k of slot 0 (a multiple of SLOT_CHUNK)
        self._isolated_ratio = -1.0         # ISOLATED_K once every slot's |k| <= ISOLATED_K
        self._records = array("d")          # [records * RECORD] keys under column tops, cleared keys
        self._cleared = {}                  # (kx, ky) -> offset in _records of a cleared key
        # the general paths (list, then tree)
        self._total = [0, 0.0, 0.0]         # record of all entries, for query (0, 0)
        self._kx = array("d")               # [points] key of each point
        self._ky = array("d")
        self._seq_or_count = array("q")     # latest: seq of its last insert; average: count
        self._vx = array("d")               # latest: its last value; average: sum of values
        self._vy = array("d")
        self._column_start = 0              # list path: first point of the last column
        self._upper = _ListChain()          # hull of (kx, ky), then a _BlockChain
        self._lower = None                  # hull of (kx, -ky), built at the first qy < 0
        self._columns = None                # tree path: kx -> its points in ky order

    def __len__(self):
        return self._count

    def insert(self, kx, ky, vx, vy):
        slots = self._slots
        if slots is not None:                # the parabolic path, while its keys come
            k = 0.5 * kx
            if kx % 2.0 == 0.0 and 0.0 <= ky + k * k < RECENCY_LIMIT:   # (_grow checks |k|)
                at = RECORD * (int(k) - self._base)
                if not 0 <= at < len(slots):
                    at = self._grow(int(k))
                    slots = self._slots
                if at >= 0:
                    seq = self._count
                    self._count = seq + 1
                    top = slots[at + KY]
                    if ky > top:             # a new top (the machine's keys: always)
                        if top != EMPTY:     # the old top goes under it
                            records = self._records
                            below = len(records)
                            records.extend(slots[at:at + RECORD])
                            slots[at + BELOW] = below
                        else:                # a new column: slot i = at / RECORD
                            i = at // RECORD
                            words = self._occupied
                            if not words[i >> 6]:
                                self._occupied_words[i >> 12] |= 1 << ((i >> 6) & 63)
                            words[i >> 6] |= 1 << (i & 63)
                        slots[at + KY] = ky
                        slots[at + MARK] = seq if self.latest else 1
                        slots[at + VX] = vx
                        slots[at + VY] = vy
                    elif ky == top:
                        self._merge_record(slots, at, seq, vx, vy)
                    else:
                        self._insert_below(at, kx, ky, seq, vx, vy)
                    return
            elif ky < CLEARED_BELOW and -CLEARED_MAX_KX <= kx <= CLEARED_MAX_KX:
                seq = self._count
                self._count = seq + 1
                at = self._cleared.get((kx, ky))
                if at is None:
                    records = self._records
                    self._cleared[kx, ky] = len(records)
                    records.extend((kx, ky, seq if self.latest else 1, vx, vy, -1.0))
                else:
                    self._merge_record(self._records, at, seq, vx, vy)
                return
            self._leave_parabolic()
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
        self._insert_point(kx, ky, seq if self.latest else 1, vx, vy)

    def _insert_point(self, kx, ky, mark, vx, vy):
        """The general paths: a key with its mark (seq or count) and value(s)."""
        if self._columns is None:            # list path: kx never decreased so far
            kxs = self._kx
            n = len(kxs)
            if not n or kx > kxs[-1]:        # a new column at the right
                self._column_start = n
                self._add_point(kx, ky, mark, vx, vy)
                return
            if kx == kxs[-1]:
                kys = self._ky
                for point in range(self._column_start, n):
                    if kys[point] == ky:
                        self._merge(point, mark, vx, vy)
                        return
                if n - self._column_start < LIST_COLUMN_LIMIT:
                    self._add_point(kx, ky, mark, vx, vy)
                    return
            self._become_tree()
        column = self._columns.get(kx)
        point = len(self._kx)
        if column is None:
            self._columns[kx] = [point]
        else:
            kys = self._ky
            top_ky = kys[column[-1]]
            if ky > top_ky:                  # a new top (the machine's keys: always)
                column.append(point)
            elif ky == top_ky:
                self._merge(column[-1], mark, vx, vy)
                return
            elif ky == kys[column[0]]:       # the bottom (the machine's cleared keys)
                self._merge(column[0], mark, vx, vy)
                return
            else:
                i = bisect_left(column, ky, key=kys.__getitem__)
                if kys[column[i]] == ky:
                    self._merge(column[i], mark, vx, vy)
                    return
                column.insert(i, point)
        self._add_point(kx, ky, mark, vx, vy)

    def _add_point(self, kx, ky, mark, vx, vy):
        point = len(self._kx)
        self._kx.append(kx)
        self._ky.append(ky)
        self._seq_or_count.append(mark)
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

    def _merge(self, point, mark, vx, vy):
        """Another entry (latest: mark = its seq; average: mark entries) with the key of `point`."""
        if self.latest:
            self._seq_or_count[point] = mark
            self._vx[point] = vx
            self._vy[point] = vy
        else:
            self._seq_or_count[point] += mark
            self._vx[point] += vx
            self._vy[point] += vy

    def _become_tree(self):
        """Keys stopped arriving in kx order: index the columns, tree chains."""
        self._columns = self._columns_now()
        self._upper = _BlockChain(self._upper)
        if self._lower is not None:
            self._lower = _BlockChain(self._lower)

    def _columns_now(self):
        """kx -> the points of that column in ky order, from the point arrays."""
        columns = {}
        for point, kx in enumerate(self._kx):
            columns.setdefault(kx, []).append(point)
        for column in columns.values():
            column.sort(key=self._ky.__getitem__)
        return columns

    def _build_lower(self):
        lower = _ListChain()
        if self._columns is None:            # points are in kx order
            for point, (kx, ky) in enumerate(zip(self._kx, self._ky)):
                lower.add(kx, -ky, point)
            self._lower = lower
        else:
            for kx, column in sorted(self._columns.items()):
                lower.add(kx, -self._ky[column[0]], column[0])
            self._lower = _BlockChain(lower)

    def query(self, qx, qy):
        slots = self._slots
        if slots:                            # the parabolic path, with a column
            ratio = qx / qy if qy > 0.0 else math.nan   # the exact score peaks at column k = ratio
            limit = self._isolated_ratio
            if -limit <= ratio <= limit:
                k = int(ratio + 0.5) if ratio >= 0.0 else -int(0.5 - ratio)   # the column nearest the peak
                if -ISOLATION <= k - ratio <= ISOLATION:
                    at = RECORD * (k - self._base)
                    if 0 <= at < len(slots):
                        ky = slots[at + KY]
                        if ky != EMPTY:      # no other column can reach this one's float score
                            best = qx * slots[at] + qy * ky
                            below = slots[at + BELOW]
                            if below < 0.0 or qx * slots[at] + qy * self._records[int(below) + KY] != best:
                                if self.latest:      # the usual answer: one key
                                    return (slots[at + VX], slots[at + VY])
                                inverse = 1.0 / slots[at + MARK]
                                return (slots[at + VX] * inverse, slots[at + VY] * inverse)
                            return self._resolve_records(slots, qx, qy, best, [at])
            if -RATIO_LIMIT <= ratio <= RATIO_LIMIT:
                return self._walk_columns(slots, qx, qy, ratio)
        if self._count == 0:
            return (0.0, 0.0)
        if slots is not None:                # a query outside the path, or no column yet
            if qx == 0.0 and qy == 0.0:      # every entry ties (the machine: at position 0)
                return self._parabolic_total()
            self._leave_parabolic()
        if qy > 0:                           # the machine's queries
            best, tied = self._upper.argmax(qx, qy)
            if self._columns is None:
                return self._resolve(self._tied_in_runs(qx, qy, best, tied))
            return self._resolve(self._tied_in_columns(qx, qy, best, tied))
        if qy < 0:
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

    # -- the parabolic path -------------------------------------------------

    def _walk_one_way(self, slots, qx, qy, i, step, walk):
        """_walk_columns in one direction (step +1: columns i, i + 1, ...; -1: i, i - 1,
        ...), updating walk = [best, best_size, tied] in place."""
        best, best_size, tied = walk
        n = len(slots) // RECORD
        while 0 <= i < n:
            at = RECORD * i
            score_x = qx * slots[at]             # (kx = 2k: empty slots hold it too)
            ky = slots[at + KY]
            if ky == EMPTY:
                if best != EMPTY:
                    score_y = qy * (BOUND_RECENCY - 0.25 * slots[at] * slots[at])   # (k^2 exact)
                    bound = score_x + score_y
                    if best - bound > (best_size + abs(score_x) + abs(score_y)) * ROUNDING_SLACK:
                        break
                i = self._next_column(i) if step > 0 else self._previous_column(i)
                continue
            score_y = qy * ky
            score = score_x + score_y
            if score > best:
                best = score
                best_size = abs(score_x) + abs(score_y)
                tied = [at]
            elif score == best:
                tied.append(at)
            elif best - score > (best_size + abs(score_x) + abs(score_y)) * ROUNDING_SLACK:
                break
            i += step
        walk[:] = best, best_size, tied

    def _walk_columns(self, slots, qx, qy, ratio):
        """qy > 0, |ratio| <= RATIO_LIMIT: walk the column tops from the one nearest
        the peak, right then left, as _ListChain.argmax walks its vertices. An
        empty column scores as its bound key (2k, -k^2 + BOUND_RECENCY); when that
        does not stop the walk, it goes on at the next column (bit sets)."""
        n = len(slots) // RECORD
        nearest = (int(ratio + 0.5) if ratio >= 0.0 else -int(0.5 - ratio)) - self._base
        walk = [EMPTY, 0.0, []]              # best score, its size, offsets in slots of the tied column tops
        self._walk_one_way(slots, qx, qy, nearest if nearest > 0 else 0, +1, walk)
        self._walk_one_way(slots, qx, qy, nearest - 1 if nearest <= n else n - 1, -1, walk)
        best, _, tied = walk
        if len(tied) == 1:
            at = tied[0]
            below = slots[at + BELOW]
            if below < 0.0 or qx * slots[at] + qy * self._records[int(below) + KY] != best:
                if self.latest:              # one key reaches the best
                    return (slots[at + VX], slots[at + VY])
                inverse = 1.0 / slots[at + MARK]
                return (slots[at + VX] * inverse, slots[at + VY] * inverse)
        return self._resolve_records(slots, qx, qy, best, tied)

    def _resolve_records(self, slots, qx, qy, best, tied):
        """The answer of the tied column tops (offsets in slots) and of the keys
        under them whose float score is the best too."""
        records = self._records
        found = []                           # (array, offset) of every tied record
        for at in tied:
            found.append((slots, at))
            below = slots[at + BELOW]
            while below >= 0.0:              # the keys under a tied top, in ky order
                at = int(below)
                if qx * records[at] + qy * records[at + KY] != best:
                    break
                found.append((records, at))
                below = records[at + BELOW]
        if self.latest:
            store, at = max(found, key=lambda place: place[0][place[1] + MARK])   # the largest seq
            return (store[at + VX], store[at + VY])
        count = 0.0
        sum_x = 0.0
        sum_y = 0.0
        for store, at in found:
            count += store[at + MARK]
            sum_x += store[at + VX]
            sum_y += store[at + VY]
        inverse = 1.0 / count
        return (sum_x * inverse, sum_y * inverse)

    def _parabolic_total(self):
        """The answer to query (0, 0) on the parabolic path: O(n), in NumPy."""
        table = np.frombuffer(self._slots).reshape(-1, RECORD)           # [slots, RECORD]
        table = np.concatenate([table[table[:, 1] != EMPTY],
                                np.array(self._records).reshape(-1, RECORD)])   # [points, RECORD]
        if self.latest:
            last = np.argmax(table[:, 2])                                 # the largest seq
            return (float(table[last, 3]), float(table[last, 4]))
        inverse = 1.0 / table[:, 2].sum()
        return (float(table[:, 3].sum()) * inverse, float(table[:, 4].sum()) * inverse)

    def _merge_record(self, store, at, seq, vx, vy):
        """Another entry with the key of the record at `at` of `store` (slots or records)."""
        if self.latest:
            store[at + MARK] = seq
            store[at + VX] = vx
            store[at + VY] = vy
        else:
            store[at + MARK] += 1
            store[at + VX] += vx
            store[at + VY] += vy

    def _insert_below(self, top, kx, ky, seq, vx, vy):
        """A key below the top of its column (slot offset `top`): merge it or link
        it in, in decreasing ky order."""
        slots, records = self._slots, self._records
        holder, link_at = slots, top + 5     # the link that will point to the new record
        below = slots[top + BELOW]
        while below >= 0.0:
            at = int(below)
            if records[at + KY] == ky:
                self._merge_record(records, at, seq, vx, vy)
                return
            if records[at + KY] < ky:
                break
            holder, link_at = records, at + 5
            below = records[at + BELOW]
        holder[link_at] = len(records)
        records.extend((kx, ky, seq if self.latest else 1, vx, vy, below))

    def _grow(self, k):
        """New slots covering column k and every column (their empty margins
        may go), with room to grow as many slots again the way k went: the
        offset of k's slot, or -1 when the columns need more than max(SLOT_FLOOR,
        SLOTS_PER_ENTRY * entries) slots (the keys are too sparse for the path)."""
        base, n = self._base, len(self._slots) // RECORD
        if not -PARABOLIC_MAX_K <= k <= PARABOLIC_MAX_K:
            return -1
        low = k // SLOT_CHUNK * SLOT_CHUNK
        high = low + SLOT_CHUNK
        first = self._next_column(0) if n else n
        if first < n:                        # the columns so far
            last = self._previous_column(n - 1)
            low = min(low, (base + first) // SLOT_CHUNK * SLOT_CHUNK)
            high = max(high, (base + last) // SLOT_CHUNK * SLOT_CHUNK + SLOT_CHUNK)
        limit = max(SLOT_FLOOR, SLOTS_PER_ENTRY * (self._count + 1)) // SLOT_CHUNK * SLOT_CHUNK
        if high - low > limit:
            return -1
        if k < base:                         # room: doubling, as far as the limit allows
            low = max(low - n, high - limit)
        else:
            high = min(high + n, low + limit)
        new = np.zeros((high - low, RECORD))                     # [slots, RECORD] empty slots
        new[:, 0] = 2.0 * np.arange(low, high)                   # kx = 2k
        new[:, 1] = EMPTY
        new[:, 5] = -1.0
        kept_low, kept_high = max(low, base), min(high, base + n)   # old slots kept (every column)
        if kept_low < kept_high:
            old = np.frombuffer(self._slots).reshape(n, RECORD)  # [old slots, RECORD]
            new[kept_low - low:kept_high - low] = old[kept_low - base:kept_high - base]
        self._slots = array("d", new.tobytes())
        self._slot_kys = np.frombuffer(self._slots)[1::RECORD]   # a view: the slots are never resized
        occupied = np.packbits(self._slot_kys != EMPTY, bitorder="little")   # [slots / 8] bytes
        self._occupied = array("Q", occupied.tobytes())
        nonzero_words = np.frombuffer(occupied.tobytes(), dtype=np.uint64) != 0   # [slots / 64]
        self._occupied_words = array("Q", np.packbits(nonzero_words, bitorder="little").tobytes())
        self._base = low
        self._isolated_ratio = ISOLATED_K if max(-low, high - 1) <= ISOLATED_K else -1.0
        return RECORD * (k - low)

    def _next_column(self, i):
        """The first slot >= i holding a column, or the number of slots."""
        words = self._occupied
        w = i >> 6
        bits = words[w] >> (i & 63)
        if bits:
            return i + (bits & -bits).bit_length() - 1
        w += 1                               # the first non-zero word after word w
        summary = self._occupied_words
        s = w >> 6
        if s >= len(summary):
            return len(words) << 6
        bits = summary[s] >> (w & 63)
        if bits:
            w += (bits & -bits).bit_length() - 1
        else:
            s += 1
            while s < len(summary) and not summary[s]:
                s += 1
            if s == len(summary):
                return len(words) << 6
            bits = summary[s]
            w = (s << 6) + (bits & -bits).bit_length() - 1
        bits = words[w]
        return (w << 6) + (bits & -bits).bit_length() - 1

    def _previous_column(self, i):
        """The last slot <= i holding a column, or -1."""
        words = self._occupied
        w = i >> 6
        bits = words[w] & ((2 << (i & 63)) - 1)
        if bits:
            return (w << 6) + bits.bit_length() - 1
        w -= 1                               # the last non-zero word before word w
        if w < 0:
            return -1
        summary = self._occupied_words
        s = w >> 6
        bits = summary[s] & ((2 << (w & 63)) - 1)
        if bits:
            w = (s << 6) + bits.bit_length() - 1
        else:
            s -= 1
            while s >= 0 and not summary[s]:
                s -= 1
            if s < 0:
                return -1
            w = (s << 6) + summary[s].bit_length() - 1
        return (w << 6) + words[w].bit_length() - 1

    def _parabolic_records(self):
        """Every distinct key of the parabolic path: (kx, ky, mark, vx, vy)."""
        slots, records = self._slots, self._records
        found = []
        for i in np.flatnonzero(self._slot_kys != EMPTY).tolist():
            store, at = slots, RECORD * i
            while True:                      # the column, top first
                found.append(tuple(store[at:at + BELOW]))
                below = store[at + BELOW]
                if below < 0.0:
                    break
                store, at = records, int(below)
        found += [tuple(records[at:at + BELOW]) for at in self._cleared.values()]
        return found

    def _leave_parabolic(self):
        """A key or query outside the parabolic path's conditions: every key moves
        to the general paths (in kx order: the list path while it can), for good."""
        points = sorted(self._parabolic_records())
        self._slots = self._slot_kys = self._occupied = self._occupied_words = None
        self._records = self._cleared = None
        if not points:
            return
        if self.latest:
            _, last_x, last_y = max(point[2:] for point in points)   # the last entry
            self._total = [self._count - 1, last_x, last_y]
        else:
            self._total = [self._count, sum(point[3] for point in points), sum(point[4] for point in points)]
        for kx, ky, mark, vx, vy in points:
            self._insert_point(kx, ky, int(mark), vx, vy)

    def _check_parabolic(self):
        base, slots, records = self._base, self._slots, self._records
        n = len(slots) // RECORD
        assert base % SLOT_CHUNK == 0 and n % SLOT_CHUNK == 0 and len(slots) == RECORD * n
        assert len(records) % RECORD == 0
        table = np.frombuffer(slots).reshape(n, RECORD)                 # [slots, RECORD]
        assert np.array_equal(self._slot_kys, table[:, 1])
        assert np.array_equal(table[:, 0], 2.0 * np.arange(base, base + n)), "slot i holds kx = 2(base + i)"
        empty = table[:, 1] == EMPTY
        assert (table[empty, 2:5] == 0.0).all() and (table[empty, 5] == -1.0).all()
        assert len(self._occupied) * 64 == n == len(self._occupied_words) * 4096
        occupied = np.unpackbits(np.frombuffer(self._occupied, dtype=np.uint8), bitorder="little")
        assert np.array_equal(occupied.astype(bool), ~empty)
        nonzero_words = np.unpackbits(np.frombuffer(self._occupied_words, dtype=np.uint8), bitorder="little")
        assert np.array_equal(nonzero_words.astype(bool), np.frombuffer(self._occupied, dtype=np.uint64) != 0)
        linked = set()
        for i in np.flatnonzero(~empty).tolist():
            k = base + i
            store, at, ky = slots, RECORD * i, math.inf
            while True:                      # the column: keys of the path, ky decreasing
                assert store[at] == 2 * k and store[at + KY] < ky
                ky = store[at + KY]
                assert 0.0 <= ky + k * k < RECENCY_LIMIT and abs(k) <= PARABOLIC_MAX_K
                below = store[at + BELOW]
                if below < 0.0:
                    break
                store, at = records, int(below)
                assert at % RECORD == 0 and at not in linked
                linked.add(at)
        for (kx, ky), at in self._cleared.items():
            assert at % RECORD == 0 and at not in linked and records[at + BELOW] == -1.0
            assert (records[at], records[at + KY]) == (kx, ky) and ky < CLEARED_BELOW
            linked.add(at)
        assert len(linked) == len(records) // RECORD, "every record is a column's or a cleared key"
        marks = [point[2] for point in self._parabolic_records()]
        if self.latest:
            assert len(set(marks)) == len(marks) and all(0 <= seq < self._count for seq in marks)
            assert not marks or max(marks) == self._count - 1
        else:
            assert sum(marks) == self._count

    # -- the general paths ---------------------------------------------------

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
            if end - first == 1:             # a column of one key
                points.append(point)
                continue
            score_x = qx * kx
            for member in range(first, end):
                if member == point or score_x + qy * kys[member] == best:
                    points.append(member)
        return points

    def _tied_in_columns(self, qx, qy, best, tied):
        """Tree path: tied = vertex x; add the keys under (qy > 0) or over
        (qy < 0) each vertex in its column whose float score is the best too."""
        columns = self._columns
        kys = self._ky
        points = []
        for kx in tied:
            column = columns[kx]
            if len(column) == 1:
                points.append(column[0])
                continue
            ordered = reversed(column) if qy > 0 else column   # the vertex first
            score_x = qx * kx
            for position, point in enumerate(ordered):
                if position > 0 and score_x + qy * kys[point] != best:
                    break
                points.append(point)
        return points

    def _extreme_column(self, qx):
        """qy == 0: the points of the max (qx > 0) or min (qx < 0) kx column."""
        if self._columns is not None:
            chain = self._upper
            return self._columns[chain.final_x() if qx > 0 else chain.first_x()]
        kxs = self._kx
        if qx > 0:
            return range(self._column_start, len(kxs))
        end = 1
        while end < len(kxs) and kxs[end] == kxs[0]:
            end += 1
        return range(end)

    def _resolve(self, points):
        if self.latest:
            if len(points) == 1:
                last = points[0]
            else:
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
        if self._slots is not None:
            self._check_parabolic()
            return
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
            assert self._columns == self._columns_now()
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


# ---------------------------------------------------------------------------
# Offline: every position's answer at once (speculative verification).

CAUSAL_BLOCK = 256          # positions per block: a [B, B] brute triangle each
# Vertices scored around the one a query's slope points at: the float maximum
# is within one vertex of it in the exact cases (the walk of HullHead).
WINDOW_OFFSETS = np.arange(-2, 3)
SHORT_RANGE = 4             # tied runs up to this length are summed by a gather
PRUNE_PASSES = 8            # vectorised hull passes before the monotone chain finishes


def causal_hard_attention(keys, values, queries, latest, block=CAUSAL_BLOCK):
    """out[p] = what a head answers to queries[p] after inserting keys[0..p]
    with values[0..p] (SPEC section 9, ties included); [T, 2] each -> [T, 2].

    Positions go in blocks of `block`: inside a block, a [B, B] brute
    triangle; the earlier blocks are covered by O(log T) *summaries*
    (binary-counter merging: each entry is summarised O(log T) times), each
    the distinct keys of a range with their aggregates and the upper hull of
    its column tops, queried for the B queries at once: np.searchsorted on
    the slopes, a window of 5 scores for the max, vectorised binary searches
    for the run of tied vertices and the tied keys under its two ends. The
    parts are merged by max score, then (count, sums, latest). qy < 0 uses
    the hull of (kx, -ky); qy == 0 running maxima of kx.
    Time O(T log^2 T) (a block whose queries tie along a run of more than
    SHORT_RANGE collinear vertices costs O(summary size) more), memory
    O(T + B^2). Exact under the same conditions as HullHead; averages sum in
    yet another order (equal when the sums are exact).
    """
    keys = np.asarray(keys, dtype=np.float64)            # [T, 2]
    values = np.asarray(values, dtype=np.float64)        # [T, 2]
    queries = np.asarray(queries, dtype=np.float64)      # [T, 2]
    qx, qy = queries[:, 0], queries[:, 1]                # [T] each
    out = np.zeros((len(keys), 2))                       # [T, 2]
    for sign in (1.0, -1.0):                             # upper hull, then lower hull
        rows = np.flatnonzero(sign * qy > 0)             # [R] positions asking this hull
        if len(rows):
            mirrored = keys * np.array([1.0, sign])      # [T, 2]: (kx, sign * ky)
            best, count, sum_x, sum_y, last = _scan_blocks(mirrored, values, qx, sign * qy, rows, block)
            out[rows] = _resolve_arrays(values, latest, count, sum_x, sum_y, last)
    rows = np.flatnonzero(qy == 0)                       # [A] selection by kx
    if len(rows):
        out[rows] = _axis_answers(keys[:, 0], values, qx, latest)[rows]
    return out


def _resolve_arrays(values, latest, count, sum_x, sum_y, last):
    if latest:
        return values[last.astype(np.int64)]                        # [R, 2]
    inverse = 1.0 / count                                           # [R]
    return np.stack([sum_x * inverse, sum_y * inverse], axis=1)     # [R, 2]


def _scan_blocks(keys, values, qx, qy, rows, block):
    """For the positions `rows` (qy > 0 there): best score, count, sum_x,
    sum_y and last (largest seq) of the tied entries, [R] each."""
    n = len(keys)
    results = np.zeros((5, len(rows)))                   # [5, R]
    summaries = []                                       # [(lo, hi, summary)] covering [0, start)
    for start in range(0, n, block):
        end = min(start + block, n)
        first, stop = np.searchsorted(rows, [start, end])
        chosen = rows[first:stop]                        # [Q] positions in this block
        if len(chosen):
            parts = [_brute_triangle(keys, values, qx, qy, chosen, start)]
            parts += [_query_summary(summary, qx[chosen], qy[chosen]) for _, _, summary in summaries]
            results[:, first:stop] = _merge_parts(parts)
        if end == n:
            break
        summaries.append((start, end, _summarize(keys, values, start, end)))
        while len(summaries) >= 2 and (summaries[-1][1] - summaries[-1][0]
                                       == summaries[-2][1] - summaries[-2][0]):
            lo, hi = summaries[-2][0], summaries[-1][1]
            del summaries[-2:]
            summaries.append((lo, hi, _summarize(keys, values, lo, hi)))
    return results


def _merge_parts(parts):
    """Parts (best, count, sum_x, sum_y, last) [Q] each -> the same, merged:
    the parts reaching the overall best add up."""
    best = np.max([part[0] for part in parts], axis=0)              # [Q]
    count = np.zeros(len(best))
    sum_x = np.zeros(len(best))
    sum_y = np.zeros(len(best))
    last = np.full(len(best), -1.0)
    for part_best, part_count, part_x, part_y, part_last in parts:
        reaches = part_best == best                                 # [Q]
        count += np.where(reaches, part_count, 0.0)
        sum_x += np.where(reaches, part_x, 0.0)
        sum_y += np.where(reaches, part_y, 0.0)
        last = np.maximum(last, np.where(reaches, part_last, -1.0))
    return np.stack([best, count, sum_x, sum_y, last])              # [5, Q]


def _brute_triangle(keys, values, qx, qy, chosen, start):
    """Entries start..p for each chosen position p (SPEC 9 literally)."""
    end = chosen[-1] + 1
    kx, ky = keys[start:end, 0], keys[start:end, 1]                 # [E] each
    scores = qx[chosen, None] * kx[None, :] + qy[chosen, None] * ky[None, :]   # [Q, E]
    visible = np.arange(start, end)[None, :] <= chosen[:, None]    # [Q, E] causal mask
    scores = np.where(visible, scores, -np.inf)
    best = scores.max(axis=1)                                       # [Q]
    tied = scores == best[:, None]                                  # [Q, E]
    count = tied.sum(axis=1).astype(np.float64)                     # [Q]
    sum_x = np.where(tied, values[start:end, 0][None, :], 0.0).sum(axis=1)   # [Q]
    sum_y = np.where(tied, values[start:end, 1][None, :], 0.0).sum(axis=1)   # [Q]
    last = (end - 1 - np.argmax(tied[:, ::-1], axis=1)).astype(np.float64)   # [Q]
    return best, count, sum_x, sum_y, last


def _summarize(keys, values, lo, hi):
    """Entries lo..hi-1: their distinct keys (points, sorted by kx then ky)
    with aggregates, padded by two empty points, and the upper hull of the
    column tops with the aggregates of its vertices, padded likewise."""
    kx, ky = keys[lo:hi, 0], keys[lo:hi, 1]                         # [E] each
    order = np.lexsort((ky, kx))                                    # [E]
    sorted_kx, sorted_ky = kx[order], ky[order]
    new_key = np.ones(len(order), dtype=bool)                       # [E]
    new_key[1:] = (sorted_kx[1:] != sorted_kx[:-1]) | (sorted_ky[1:] != sorted_ky[:-1])
    starts = np.flatnonzero(new_key)                                # [P] first entry of each point
    n_points = len(starts)
    padding = np.zeros(2)

    def per_point(aggregate, column):                               # [E] -> [P + 2]
        return np.append(aggregate.reduceat(column[order], starts).astype(np.float64), padding)

    summary = {
        "x": sorted_kx[starts], "y": sorted_ky[starts],            # [P] each
        "count": per_point(np.add, np.ones(len(order))),
        "sum_x": per_point(np.add, values[lo:hi, 0]),
        "sum_y": per_point(np.add, values[lo:hi, 1]),
        "last": per_point(np.maximum, np.arange(lo, hi)),
    }
    summary["last"][n_points:] = -1.0
    new_column = np.ones(n_points, dtype=bool)                      # [P]
    new_column[1:] = summary["x"][1:] != summary["x"][:-1]
    summary["column_start"] = np.maximum.accumulate(np.where(new_column, np.arange(n_points), 0))
    tops = np.append(np.flatnonzero(new_column)[1:], n_points) - 1  # [C] top point of each column
    vertex_point, summary["neg_slopes"] = _upper_hull(summary["x"], summary["y"], tops)
    summary["vertex_point"] = vertex_point                          # [H]
    for name in ("x", "y"):
        summary["vertex_" + name] = summary[name][vertex_point]    # [H]
    for name in ("count", "sum_x", "sum_y", "last"):
        summary["vertex_" + name] = np.append(summary[name][vertex_point], summary[name][-2:])
    return summary


def _upper_hull(x, y, candidates):
    """Vertices (indices, x increasing) and neg slopes of the upper hull of
    the candidate points (x strictly increasing), collinear points kept (in
    exact arithmetic the chain _ListChain builds). Each pass drops every point strictly below the
    edge joining its neighbours (such a point is inside the hull); a chain
    without one is concave. Rarely needed: the monotone chain finishes."""
    for _ in range(PRUNE_PASSES):
        neg_slopes = ((y[candidates[:-1]] - y[candidates[1:]])
                      / (x[candidates[1:]] - x[candidates[:-1]]))   # [C - 1]
        below = np.zeros(len(candidates), dtype=bool)               # [C]
        below[1:-1] = neg_slopes[:-1] > neg_slopes[1:]
        if not below.any():
            return candidates, neg_slopes
        candidates = candidates[~below]
    chain = _ListChain()
    for point in candidates.tolist():
        chain.add(float(x[point]), float(y[point]), point)
    return np.array(chain.points, dtype=np.int64), np.array(chain.neg_slopes, dtype=np.float64)


def _first_true(predicate, lo, hi):
    """Vectorised binary search: the smallest i in [lo, hi] with predicate(i),
    for a predicate false then true on [lo, hi] and true at hi."""
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        ok = predicate(mid)
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid + 1)
    return lo


def _range_reduce(aggregate, identity, array, first, last):
    """aggregate.reduce(array[first[i] : last[i] + 1]) for every i, for
    first <= last < len(array) - 1: short ranges by a masked gather, longer
    ones by reduceat over interleaved bounds (its even results)."""
    offsets = np.arange(SHORT_RANGE)                                # [S]
    inside = offsets[None, :] <= (last - first)[:, None]            # [Q, S]
    gathered = array[np.minimum(first[:, None] + offsets[None, :], len(array) - 1)]   # [Q, S]
    result = aggregate.reduce(np.where(inside, gathered, identity), axis=1)   # [Q]
    long = np.flatnonzero(last - first >= SHORT_RANGE)
    if len(long):
        bounds = np.stack([first[long], last[long] + 1], axis=1).ravel()      # [2L]
        result[long] = aggregate.reduceat(array, bounds)[::2]
    return result


def _query_summary(summary, qx, qy):
    """(best, count, sum_x, sum_y, last) [Q] each over a summary's keys, qy > 0."""
    vertex_x, vertex_y = summary["vertex_x"], summary["vertex_y"]   # [H] each
    point_x, point_y = summary["x"], summary["y"]                   # [P] each
    h = len(vertex_x)
    queries = np.arange(len(qx))                                     # [Q]
    start = np.searchsorted(summary["neg_slopes"], qx / qy)         # [Q] the score stops rising
    window = np.clip(start[:, None] + WINDOW_OFFSETS[None, :], 0, h - 1)   # [Q, W]
    window_scores = qx[:, None] * vertex_x[window] + qy[:, None] * vertex_y[window]   # [Q, W]
    best = window_scores.max(axis=1)                                 # [Q]
    tied = window_scores == best[:, None]                            # [Q, W]
    first = window[queries, np.argmax(tied, axis=1)]                 # [Q] tied vertices first..
    last_vertex = window[queries, len(WINDOW_OFFSETS) - 1 - np.argmax(tied[:, ::-1], axis=1)]
    # a run of tied vertices (collinear keys) can go on past the window
    more = np.flatnonzero(tied[:, 0] & (window[:, 0] > 0))
    if len(more):
        first[more] = _first_true(
            lambda v: qx[more] * vertex_x[v] + qy[more] * vertex_y[v] >= best[more],
            np.zeros(len(more), dtype=np.int64), first[more])
    more = np.flatnonzero(tied[:, -1] & (window[:, -1] < h - 1))
    if len(more):
        last_vertex[more] = _first_true(
            lambda v: (v == h) | (qx[more] * vertex_x[np.minimum(v, h - 1)]
                                  + qy[more] * vertex_y[np.minimum(v, h - 1)] < best[more]),
            last_vertex[more], np.full(len(more), h)) - 1
    ranges = [(summary["vertex_count"], summary["vertex_sum_x"], summary["vertex_sum_y"],
               summary["vertex_last"], first, last_vertex)]
    # keys under the two end vertices of the run, in their columns, tying in float
    empty = len(point_x)                                             # the first padding point
    for end_vertex, counted in ((first, True), (last_vertex, last_vertex != first)):
        top = summary["vertex_point"][end_vertex]                    # [Q] the column's top point
        bottom = summary["column_start"][top]                        # [Q] its lowest point
        member_first = np.full(len(qx), empty)
        member_last = np.full(len(qx), empty)
        more = np.flatnonzero(counted & (bottom < top))
        if len(more) == 0:
            continue
        below = _first_true(
            lambda p: (p == top[more]) | (qx[more] * point_x[p] + qy[more] * point_y[p] >= best[more]),
            bottom[more], top[more])                                 # lowest key scoring the best
        some = more[below < top[more]]
        member_first[some] = below[below < top[more]]
        member_last[some] = top[some] - 1
        ranges.append((summary["count"], summary["sum_x"], summary["sum_y"], summary["last"],
                       member_first, member_last))
    count = np.zeros(len(qx))
    sum_x = np.zeros(len(qx))
    sum_y = np.zeros(len(qx))
    last = np.full(len(qx), -1.0)
    for counts, sums_x, sums_y, lasts, lo, hi in ranges:
        count += _range_reduce(np.add, 0.0, counts, lo, hi)
        sum_x += _range_reduce(np.add, 0.0, sums_x, lo, hi)
        sum_y += _range_reduce(np.add, 0.0, sums_y, lo, hi)
        last = np.maximum(last, _range_reduce(np.maximum, -1.0, lasts, lo, hi))
    return best, count, sum_x, sum_y, last


def _axis_answers(kx, values, qx, latest):
    """Every position's answer for qy == 0: qx > 0 the entries with the
    largest kx so far, qx < 0 the smallest, qx == 0 all; [T, 2]."""
    n = len(kx)
    positions = np.arange(n)                                         # [T]
    answers = np.zeros((n, 2))                                       # [T, 2]
    for direction, extreme in ((1.0, np.maximum), (-1.0, np.minimum), (0.0, None)):
        if extreme is None:
            selected = np.ones(n, dtype=bool)                        # [T] all entries
            segment_start = np.zeros(n, dtype=np.int64)
        else:
            running = extreme.accumulate(kx)                         # [T] extreme kx so far
            selected = kx == running                                 # [T] entries at the extreme
            changes = np.ones(n, dtype=bool)
            changes[1:] = running[1:] != running[:-1]
            segment_start = np.maximum.accumulate(np.where(changes, positions, 0))   # [T]
        last = np.maximum.accumulate(np.where(selected, positions, -1))          # [T]
        if latest:
            answer = values[last]                                                # [T, 2]
        else:
            before = np.concatenate([np.zeros((1, 3)), np.cumsum(
                np.where(selected[:, None], np.column_stack([np.ones(n), values]), 0.0), axis=0)])
            totals = before[positions + 1] - before[segment_start]               # [T, 3]
            answer = totals[:, 1:] * (1.0 / totals[:, :1])                      # [T, 2]
        rows = np.sign(qx) == direction
        answers[rows] = answer[rows]
    return answers


# ---------------------------------------------------------------------------
# The definition for a whole sequence, dense (what a torch port computes), O(Q n).

def tied_sets(keys, queries, first=0):
    """[Q, n] bool: row i is the tied set of queries[i], the query of position first + i,
    among keys[0..first + i] (SPEC 9: each score two products and one sum, the best
    exactly; qy == 0 by extreme kx)."""
    keys, queries = np.asarray(keys, dtype=np.float64), np.asarray(queries, dtype=np.float64)
    kx, ky = keys[:, 0], keys[:, 1]                                         # [n]
    qx, qy = queries[:, :1], queries[:, 1:]                                 # [Q, 1]
    scores = np.where(qy != 0, qx * kx + qy * ky, np.sign(qx) * kx)         # [Q, n]
    scores[np.arange(len(kx)) > first + np.arange(len(qx))[:, None]] = -np.inf   # causal
    return scores == scores.max(axis=1, keepdims=True)                      # [Q, n]


def hard_attention(keys, values, queries, latest, first=0):
    """SPEC 9 for queries [Q, 2] of positions first.. over keys, values [n, 2]: [Q, 2];
    latest: the value of the last tied key, average: (sum of tied values) * (1/count)."""
    tied = tied_sets(keys, queries, first)                                   # [Q, n]
    values = np.asarray(values, dtype=np.float64)                            # [n, 2]
    if latest:
        return values[len(values) - 1 - np.argmax(tied[:, ::-1], axis=1)]    # [Q, 2]
    return (tied @ values) * (1.0 / tied.sum(axis=1))[:, None]               # [Q, 2]
