"""hull.py: one attention head's key/value cache with exact hard attention.

HullHead(latest) stores entries (key (kx, ky), value (vx, vy)) in insertion
order; query(qx, qy) returns SPEC 9's answer: every score is qx*kx + qy*ky in
float64 (two products, one sum); the tied set is every entry scoring exactly
the maximum; qy == 0 ties the entries of largest kx (qx > 0), smallest kx
(qx < 0) or all (qx == 0); latest mode returns the last tied entry's value,
average mode (sum of tied values) * (1/count); an empty head (0, 0).
BruteHead is that definition as an O(n) scan, hard_attention and tied_sets the
dense [Q, n] form, causal_hard_attention every position of a sequence.

Each distinct key keeps one record (latest: seq of its last insert and that
value; average: count and sums), so the tied set stays explicit. Two paths:
* parabolic path, while keys and queries are the machine's (lookups of
  compile_weights: keys (2k, -k^2 + d), 0 <= d < RECENCY_LIMIT, queries
  qy * (r, 1), qy > 0): column k's top key is slot k - base of one array,
  keys under it a linked list. Insert O(1) amortized (O(column) for a key
  under its column's top); query O(1) when r is within ISOLATION of a column,
  else a walk over the column tops near r (a few steps for the machine's
  queries, plus a memchr over the run of empty slots it crosses).
* general path (any finite keys, for good after the first key or query the
  parabolic path does not take, O(n log n) once): the upper hull of the
  column tops (and the lower hull of the bottoms, built at the first qy < 0)
  in blocks (_BlockChain). Insert O(log n) plus a memmove of <= 2 * _LOAD
  doubles; query O(log n) plus the walk over vertices that tie or nearly
  tie plus the tied keys of their columns; qy == 0: O(extreme column).
Memory: RECORD doubles and a byte per slot, RECORD doubles per key under a
column top (slots at most max(SLOT_FLOOR, SLOTS_PER_ENTRY * entries)); the
general path a tuple per key, a list per column, three doubles per vertex.

Precision: collinear keys are kept and the walks compare float scores exactly,
stopping past twice a score's rounding bound (ROUNDING_SLACK). The answers are
BruteHead's bit for bit when no key off the hull reaches the float maximum:
(1) every product, sum and coordinate difference is exact (e.g. integers up
to 2^25); (2) the machine's keys (|k| <= 2^25) with queries qy * (r, 1), qy >
0, |r| <= RATIO_LIMIT (the walk and ISOLATION below). Average mode sums in
another order than the scan: equal when the sums are exact (integer values).
Keys and queries must be finite; products must not overflow or underflow.
Tests: tests/test_hull.py (stress against BruteHead, _check() invariants).
"""
import math
import struct
from array import array
from bisect import bisect_left
from fractions import Fraction
from operator import itemgetter

import numpy as np

HARD_K = 1e10   # hard attention's scale (SPEC 7.1): a model's query rows carry HARD_K * sqrt(2)

# A float score's rounding error is at most 2^-52 * (|qx*kx| + |qy*ky|) (two
# products and a sum, each within half an ulp): a walk stops at the first key
# below the best by more than the two keys' bounds, past which (on a hull, in
# exact arithmetic) scores only fall.
ROUNDING_SLACK = 2.0 ** -51

# ---------------------------------------------------------------------------
# The parabolic path. For keys (2k, -k^2 + d) and a query qy * (r, 1) the exact
# score is qy * (r^2 - (k - r)^2 + d): a column k between columns a < k < b lies
# above their chord by (k - a)(b - k) >= 1 > RECENCY_LIMIT, so every column top
# is a hull vertex and the hull needs no slopes: slot k - base holds column k.
PARABOLIC_PATH = True         # tests set it False to run the machine's keys on the general path
# Slots hold -2^25 <= k < 2^25: k*k <= 2^50 is exact, and so is d = ky + k*k (ky is within
# a factor 2 of -k*k, so the sum has no rounding: Sterbenz), though ky itself may be rounded.
PARABOLIC_MAX_K = 2 ** 25
RECENCY_LIMIT = 0.45          # d < RECENCY_LIMIT (the machine: 0.3 * inv_log_pos < 0.433)
# Cleared keys (ky < CLEARED_BELOW, |kx| <= CLEARED_MAX_KX) score below -2^89 * qy,
# a column top >= -(|k| + |r|)^2 * qy >= -2^81 * qy: never the best once a column
# exists (the machine's memory heads write ky = -1e30 ~ -2^99.7). Kept in a dict.
CLEARED_BELOW = -2.0 ** 90
CLEARED_MAX_KX = 2.0 ** 26
# |r| of the path's queries. Past the peak a column top falls by >= (1 -
# RECENCY_LIMIT) * qy per column while a score's rounding bound grows by <= 2^-52
# * (2 * RATIO_LIMIT + 2^27) * qy < 2^-10 * qy per column: the walk is exact.
RATIO_LIMIT = 2.0 ** 40
# r within ISOLATION of a column k0, every slot's |k| <= ISOLATED_K (so |r| <=
# ISOLATED_K + 1/2): any other column scores below k0 in exact arithmetic by >= qy *
# ((7/8)^2 - (1/8)^2 - RECENCY_LIMIT) = 0.3 * qy, and a float score is within 2^-52 *
# (|qx*kx| + |qy*ky|) * (1 + 2^-50) <= 2^-52 * (3 * ISOLATED_K^2 + 2^25) * qy * (1 +
# 2^-50) < 0.05 * qy of its exact value: only keys of column k0 can reach the float maximum.
ISOLATION = 0.125
ISOLATED_K = 2 ** 23
# A record (of a slot or in _records): RECORD doubles at these offsets: ky, mark (seq or
# count), value, the offset in _records of the next key down the column and its ky
# (-1 and EMPTY: none; a query checks that ky without reading _records).
RECORD = 6
KY, MARK, VX, VY, BELOW, BELOW_KY = range(RECORD)
EMPTY = -math.inf             # the ky of an empty slot (no key of the path scores -inf)
# A record written at once at a byte offset, 8 * its index (one call, not a store per
# double): KY..BELOW_KY, or KY..VY over an empty slot (its BELOW and BELOW_KY stay none).
_PACK_RECORD = struct.Struct(f"={RECORD}d").pack_into
_PACK_TOP = struct.Struct(f"={BELOW}d").pack_into
# Slots grow SLOT_CHUNK at a time, doubling, up to max(SLOT_FLOOR, SLOTS_PER_ENTRY *
# entries) (RECORD * 8 + 1 bytes each: 49 MB at the floor); sparser keys leave the path.
SLOT_CHUNK = 4096
SLOT_FLOOR = 2 ** 20
SLOTS_PER_ENTRY = 4

# Vertices per block of a _BlockChain (a block splits above 2 * _LOAD): an insert
# or delete moves <= 2 * _LOAD doubles (a C memmove, under a microsecond), a
# chain of n vertices has n / _LOAD blocks. Tests shrink it to force splits.
_LOAD = 1000


class _BlockChain:
    """An upper convex chain of points (x, y), inserted in any order: the
    vertices, x increasing, cut into blocks of at most 2 * _LOAD, with per
    block arrays of x, y and the negated slope (y - y_next) / (x_next - x) of
    the edge to the next vertex (+inf after the last), which does not decrease
    along the chain, and the last x and slope of every block: a point's place
    and a query's vertex are two bisections each. Collinear vertices are KEPT
    (a query perpendicular to an edge ties all of them). An insert places the
    point (or raises its column's vertex), unless it is strictly below the
    edge over it, then deletes the vertices it leaves strictly below (slopes
    compared in float; each vertex is deleted at most once)."""

    def __init__(self):
        self.x_blocks, self.y_blocks, self.slope_blocks = [], [], []   # [blocks] of array("d")
        self.last_x, self.last_slope = array("d"), array("d")

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
        if not x_blocks:
            self.x_blocks.append(array("d", [x]))
            self.y_blocks.append(array("d", [y]))
            self.slope_blocks.append(array("d", [math.inf]))
            self.last_x.append(x)
            self.last_slope.append(math.inf)
            return
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
        """For qy > 0: (best float score, x of every vertex reaching it). The
        walk starts where the exact score stops rising (the first slope >=
        qx / qy) and goes each way until a vertex scores below the best by
        more than the rounding slack."""
        ratio = qx / qy
        b = bisect_left(self.last_slope, ratio)
        j = bisect_left(self.slope_blocks[b], ratio)
        x_blocks, y_blocks = self.x_blocks, self.y_blocks
        best, best_size, tied = -math.inf, 0.0, []
        for step in (1, -1):                 # walk right from j, then left from j - 1
            block, i = b, j if step > 0 else j - 1
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
        """A hull of the points {(x, tops[x])}: sorted, concave, vertices are the
        column tops, every other top strictly below (exact arithmetic)."""
        blocks = (self.x_blocks, self.y_blocks, self.slope_blocks)
        assert len(self.x_blocks) == len(self.y_blocks) == len(self.slope_blocks) >= 1
        assert all(0 < len(xs) == len(ys) == len(slopes) <= 2 * _LOAD for xs, ys, slopes in zip(*blocks))
        assert list(self.last_x) == [xs[-1] for xs in self.x_blocks]
        assert list(self.last_slope) == [slopes[-1] for slopes in self.slope_blocks]
        xs, ys, slopes = ([value for block in part for value in block] for part in blocks)
        assert xs[0] == min(tops) and xs[-1] == max(tops), "the extreme columns are vertices"
        assert all(a < b for a, b in zip(xs, xs[1:]))
        assert all(tops[x] == y for x, y in zip(xs, ys)), "a vertex is the top of its column"
        edges = zip(xs, xs[1:], ys, ys[1:])
        assert slopes == [(y0 - y1) / (x1 - x0) for x0, x1, y0, y1 in edges] + [math.inf]
        assert all(a <= b for a, b in zip(slopes, slopes[1:])), "concave"
        vertices = set(xs)
        for x, y in tops.items():
            if x not in vertices:
                e = bisect_left(xs, x) - 1
                x0, x1, y0, y1 = (Fraction(value) for value in (xs[e], xs[e + 1], ys[e], ys[e + 1]))
                below = (x1 - x0) * (Fraction(y) - y0) < (y1 - y0) * (Fraction(x) - x0)
                assert below, f"the top ({x}, {y}) is not a vertex but not strictly below the hull"


# ---------------------------------------------------------------------------
# The head.

class HullHead:
    """One head's cache (see the module docstring). A record: (ky, mark, vx, vy)
    (plus BELOW and BELOW_KY in the parabolic path's arrays), mark the seq of
    the key's last insert (latest) or its count (average), (vx, vy) that value
    or the sums."""

    def __init__(self, latest):
        self.latest = bool(latest)
        self._count = 0                       # entries inserted; the next entry's seq
        # the parabolic path; _slots None once left
        self._slots = array("d") if PARABOLIC_PATH else None   # [slots * RECORD]: top of column base + i at i
        self._occupied = bytearray()          # [slots] 1: the slot holds a column (searched by memchr)
        self._slot_count = 0                  # len(self._occupied)
        self._base = 0                        # the column k of slot 0 (a multiple of SLOT_CHUNK)
        # ratios r whose nearest column has a slot, [base - 1/2, base + slots - 1/2),
        # while every slot's |k| <= ISOLATED_K (else empty)
        self._isolated_low, self._isolated_high = math.inf, -math.inf
        self._records = array("d")            # [records * RECORD]: keys under column tops, cleared keys
        self._cleared = {}                    # (kx, ky) -> offset in _records of a cleared key
        # Latest mode while every key under a column top is older than the top (the
        # machine's keys: each insert a new top): for qy > 0 such a key scores at most
        # the top's float score (monotone in ky), so the answer is never the key's.
        self._tops_latest = self.latest
        # the general path
        self._columns = {}                    # kx -> records (tuples) of that column, ky increasing
        self._upper = _BlockChain()           # hull of the column tops (kx, ky)
        self._lower = None                    # hull of (kx, -ky) of the bottoms, built at the first qy < 0
        self._total = [0.0, 0, 0.0, 0.0]      # a record of every entry, for query (0, 0)

    def __len__(self):
        return self._count

    def insert(self, kx, ky, vx, vy):
        seq = self._count
        self._count = seq + 1
        slots = self._slots
        if slots is not None:                 # the parabolic path, while its keys come
            k = 0.5 * kx
            if kx % 2.0 == 0.0 and 0.0 <= ky + k * k < RECENCY_LIMIT:   # (_grow checks |k|)
                i = math.floor(k) - self._base   # (floor, not int(): equal here, and cheaper in CPython)
                if not 0 <= i < self._slot_count:
                    i = self._grow(int(k))
                    slots = self._slots
                if i >= 0:            # (-1: the keys are too sparse for the path)
                    at = RECORD * i
                    top = slots[at]
                    mark = seq if self.latest else 1
                    if ky > top:              # a new top (the machine's keys: always)
                        if top != EMPTY:      # the old top goes under it
                            below = len(self._records)
                            self._records += slots[at:at + RECORD]
                            _PACK_RECORD(slots, 8 * at, ky, mark, vx, vy, below, top)
                        else:                 # a new column
                            self._occupied[i] = 1
                            _PACK_TOP(slots, 8 * at, ky, mark, vx, vy)
                    else:
                        self._insert_below(at, ky, mark, vx, vy)
                    return
            elif ky < CLEARED_BELOW and -CLEARED_MAX_KX <= kx <= CLEARED_MAX_KX:
                records = self._records
                at = self._cleared.setdefault((kx, ky), len(records))
                if at == len(records):
                    records.extend((ky, seq if self.latest else 1, vx, vy, -1.0, EMPTY))
                else:
                    self._merge_record(records, at, seq if self.latest else 1, vx, vy)
                return
            self._leave_parabolic()
        self._merge_record(self._total, 0, seq if self.latest else 1, vx, vy)
        self._insert_general(kx, ky, seq if self.latest else 1, vx, vy)

    def _merge_record(self, store, at, mark, vx, vy):
        """Another entry (mark: its seq, or a count) into the record at `at` of store."""
        if self.latest:
            store[at + MARK] = mark
            store[at + VX] = vx
            store[at + VY] = vy
        else:
            store[at + MARK] += mark
            store[at + VX] += vx
            store[at + VY] += vy

    def query(self, qx, qy):
        slots = self._slots
        ratio = qx / qy if qy > 0.0 else math.nan   # the exact score peaks at column k = ratio
        low = self._isolated_low
        if low <= ratio < self._isolated_high:      # the parabolic path
            i = math.floor(ratio - low)       # the slot nearest the peak (or, rounded, a neighbour)
            k = self._base + i
            if abs(k - ratio) <= ISOLATION:
                at = RECORD * i
                ky = slots[at]
                if ky != EMPTY:               # only column k can reach the float maximum (ISOLATION)
                    if self._tops_latest:     # and its top is in the tied set, with the largest seq
                        return (slots[at + VX], slots[at + VY])
                    score_x = qx * (k + k)
                    best = score_x + qy * ky
                    if score_x + qy * slots[at + BELOW_KY] != best:   # (none below: -inf)
                        if self.latest:   # the usual answer: one key
                            return (slots[at + VX], slots[at + VY])
                        inverse = 1.0 / slots[at + MARK]
                        return (slots[at + VX] * inverse, slots[at + VY] * inverse)
                    return self._answer_tops(qx, qy, best, [at])
        if slots and -RATIO_LIMIT <= ratio <= RATIO_LIMIT:   # the parabolic path, with a column
            return self._walk_columns(qx, qy, ratio)
        if self._count == 0:
            return (0.0, 0.0)
        if slots is not None:                 # a query outside the path, or no column yet
            if qx == 0.0 and qy == 0.0:       # every entry ties (the machine: at position 0)
                return self._parabolic_total()
            self._leave_parabolic()
        if qy > 0:                            # the machine's queries
            best, tied = self._upper.argmax(qx, qy)
        elif qy < 0:
            if self._lower is None:
                self._lower = _BlockChain()
                for kx in sorted(self._columns):
                    self._lower.add(kx, -self._columns[kx][0][KY])
            best, tied = self._lower.argmax(qx, -qy)    # the same float scores
        elif qx == 0:
            return self._answer([self._total])
        else:                                 # the extreme columns are vertices
            return self._answer(self._columns[self._upper.last_x[-1] if qx > 0 else self._upper.x_blocks[0][0]])
        found = []                            # the tied records: vertices, keys under (over) them
        for kx in tied:
            column = self._columns[kx]
            i, step = (len(column) - 1, -1) if qy > 0 else (0, 1)   # the vertex, then down (up)
            found.append(column[i])
            i += step
            while 0 <= i < len(column) and qx * kx + qy * column[i][KY] == best:
                found.append(column[i])
                i += step
        return self._answer(found)

    def _answer(self, records):
        """SPEC 9's answer from the records of the tied set."""
        if self.latest:
            last = records[0] if len(records) == 1 else max(records, key=itemgetter(MARK))   # the largest seq
            return (last[VX], last[VY])
        count = sum_x = sum_y = 0.0
        for record in records:
            count += record[MARK]
            sum_x += record[VX]
            sum_y += record[VY]
        inverse = 1.0 / count
        return (sum_x * inverse, sum_y * inverse)

    # -- the general path ---------------------------------------------------

    def _insert_general(self, kx, ky, mark, vx, vy):
        column = self._columns.setdefault(kx, [])
        i = bisect_left(column, ky, key=itemgetter(KY))
        if i < len(column) and column[i][KY] == ky:
            _, old_mark, old_x, old_y = column[i]
            column[i] = (ky, mark, vx, vy) if self.latest else (ky, old_mark + mark, old_x + vx, old_y + vy)
            return
        column.insert(i, (ky, mark, vx, vy))
        if i == len(column) - 1:              # a new top
            self._upper.add(kx, ky)
        if i == 0 and self._lower is not None:   # a new bottom
            self._lower.add(kx, -ky)

    # -- the parabolic path -------------------------------------------------

    def _insert_below(self, top, ky, mark, vx, vy):
        """A key not above its column's top (slot offset `top`): merge it into
        its key's record or link a new record in, ky decreasing down the column."""
        store, at, records = self._slots, top, self._records
        while True:
            if store[at] == ky:
                self._merge_record(store, at, mark, vx, vy)
                if store is records:          # a key under a top got the newest seq
                    self._tops_latest = False
                return
            if store[at + BELOW_KY] < ky:
                break
            store, at = records, int(store[at + BELOW])
        self._tops_latest = False             # a key under a top newer than the top
        records.extend((ky, mark, vx, vy, store[at + BELOW], store[at + BELOW_KY]))
        store[at + BELOW] = len(records) - RECORD
        store[at + BELOW_KY] = ky

    def _walk_columns(self, qx, qy, ratio):
        """qy > 0, |ratio| <= RATIO_LIMIT: the column tops from the slot nearest the
        peak r rightwards, then from the one before it leftwards, jumping over empty
        slots (memchr), as _BlockChain.argmax walks its vertices. From column k1 to
        the next one k2 that way, the exact top score changes by qy * ((k1 - r)^2 -
        (k2 - r)^2 + d2 - d1): a fall by >= (1 - RECENCY_LIMIT) * qy per column, but
        for a rise of < RECENCY_LIMIT * qy when k1 is 1/2 left of r, only as the
        first step; a score's rounding bound grows by < 2^-10 * qy per column
        (RATIO_LIMIT). So the first column below the best by more than the two
        keys' rounding bounds ends the walk that way: no column beyond it reaches
        the float maximum."""
        slots, base, occupied = self._slots, self._base, self._occupied
        n = len(occupied)
        nearest = round(ratio) - base
        best, best_size, tied = EMPTY, 0.0, []   # offsets in slots of the tied column tops
        for i, step in ((max(nearest, 0), 1), (min(nearest, n) - 1, -1)):
            while 0 <= i < n:
                if not occupied[i]:           # on at the next column that way, if any
                    i = occupied.find(1, i) if step > 0 else occupied.rfind(1, 0, i)
                    if i < 0:
                        break
                score_x = qx * (2.0 * (base + i))
                score_y = qy * slots[RECORD * i]
                score = score_x + score_y
                if score > best:
                    best = score
                    best_size = abs(score_x) + abs(score_y)
                    tied = [RECORD * i]
                elif score == best:
                    tied.append(RECORD * i)
                elif best - score > (best_size + abs(score_x) + abs(score_y)) * ROUNDING_SLACK:
                    break
                i += step
        return self._answer_tops(qx, qy, best, tied)

    def _answer_tops(self, qx, qy, best, tied):
        """The answer of the tied column tops (offsets in slots) with the keys under
        them whose float score is the best too (down a column, scores fall)."""
        slots, records = self._slots, self._records
        found = []
        for at in tied:
            score_x = qx * (2.0 * (self._base + at // RECORD))
            store = slots
            found.append(store[at:at + RECORD])
            while score_x + qy * store[at + BELOW_KY] == best:
                store, at = records, int(store[at + BELOW])
                found.append(store[at:at + RECORD])
        return self._answer(found)

    def _parabolic_total(self):
        """The answer to query (0, 0) on the parabolic path: every entry, O(n) in NumPy."""
        table = np.concatenate([np.frombuffer(self._slots).reshape(-1, RECORD),
                                np.array(self._records).reshape(-1, RECORD)])   # [slots + records, RECORD]
        table = table[table[:, KY] != EMPTY]                                  # [points, RECORD]
        if self.latest:
            last = np.argmax(table[:, MARK])                                  # the largest seq
            return (float(table[last, VX]), float(table[last, VY]))
        inverse = 1.0 / table[:, MARK].sum()
        return (float(table[:, VX].sum()) * inverse, float(table[:, VY].sum()) * inverse)

    def _grow(self, k):
        """New slots covering column k and every column (their empty margins
        may go), with room to grow as many slots again the way k went: the
        index of k's slot, or -1 when the columns need more than max(SLOT_FLOOR,
        SLOTS_PER_ENTRY * entries) slots (the keys are too sparse for the path)."""
        base, n = self._base, len(self._slots) // RECORD
        if not -PARABOLIC_MAX_K <= k < PARABOLIC_MAX_K:
            return -1
        low = k // SLOT_CHUNK * SLOT_CHUNK
        high = low + SLOT_CHUNK
        occupied = np.flatnonzero(np.frombuffer(self._occupied, dtype=np.uint8))   # [columns]
        if len(occupied):
            low = min(low, (base + int(occupied[0])) // SLOT_CHUNK * SLOT_CHUNK)
            high = max(high, (base + int(occupied[-1])) // SLOT_CHUNK * SLOT_CHUNK + SLOT_CHUNK)
        limit = max(SLOT_FLOOR, SLOTS_PER_ENTRY * self._count) // SLOT_CHUNK * SLOT_CHUNK
        if high - low > limit:
            return -1
        if k < base:                          # room: doubling, as far as the limit allows
            low = max(low - n, high - limit, -PARABOLIC_MAX_K)
        else:
            high = min(high + n, low + limit, PARABOLIC_MAX_K)
        new = np.zeros((high - low, RECORD))                                   # [slots, RECORD] empty slots
        new[:, KY] = EMPTY
        new[:, BELOW] = -1.0
        new[:, BELOW_KY] = EMPTY
        kept_low, kept_high = max(low, base), min(high, base + n)              # old slots kept (every column)
        if kept_low < kept_high:
            old = np.frombuffer(self._slots).reshape(n, RECORD)                # [old slots, RECORD]
            new[kept_low - low:kept_high - low] = old[kept_low - base:kept_high - base]
        self._slots = array("d", new.tobytes())
        self._occupied = bytearray((new[:, KY] != EMPTY).tobytes())
        self._slot_count = high - low
        self._base = low
        if max(-low, high - 1) <= ISOLATED_K:
            self._isolated_low, self._isolated_high = low - 0.5, high - 0.5
        else:
            self._isolated_low, self._isolated_high = math.inf, -math.inf
        return k - low

    def _parabolic_records(self):
        """Every distinct key of the parabolic path: (kx, ky, mark, vx, vy)."""
        slots, records = self._slots, self._records
        found = []
        for i in np.flatnonzero(np.frombuffer(self._occupied, dtype=np.uint8)).tolist():
            kx = 2.0 * (self._base + i)
            store, at = slots, RECORD * i
            while at >= 0:                    # the column, top first
                found.append((kx, *store[at:at + BELOW]))
                store, at = records, int(store[at + BELOW])
        found += [(kx, *records[at:at + BELOW]) for (kx, _), at in self._cleared.items()]
        return found

    def _leave_parabolic(self):
        """A key or query outside the parabolic path's conditions: every key moves
        to the general path (in kx order), for good."""
        keys = sorted(self._parabolic_records())
        self._slots = self._occupied = self._records = self._cleared = None
        self._isolated_low, self._isolated_high = math.inf, -math.inf
        if keys and self.latest:
            _, _, seq, vx, vy = max(keys, key=itemgetter(2))   # the last entry
            self._total = [0.0, int(seq), vx, vy]
        elif keys:
            self._total = [0.0, *(sum(key[field] for key in keys) for field in (2, 3, 4))]   # count, sums
        for kx, ky, mark, vx, vy in keys:
            self._insert_general(kx, ky, int(mark), vx, vy)

    # -- invariants ----------------------------------------------------------

    def _check(self):
        """Assert every invariant; O(n) (plus O(n) Fractions)."""
        if self._slots is not None:
            self._check_parabolic()
            keys = self._parabolic_records()
        else:
            keys = [(kx, *record) for kx, column in self._columns.items() for record in column]
            assert len(set((kx, ky) for kx, ky, *_ in keys)) == len(keys), "one record per distinct key"
            for column in self._columns.values():
                assert all(a[KY] < b[KY] for a, b in zip(column, column[1:])), "a column in ky order"
            if keys:
                self._upper._check({kx: column[-1][KY] for kx, column in self._columns.items()})
                if self._lower is not None:
                    self._lower._check({kx: -column[0][KY] for kx, column in self._columns.items()})
            assert self._total[MARK] == (self._count - 1 if self.latest else self._count)
        marks = [key[2] for key in keys]
        if self.latest:
            assert len(set(marks)) == len(marks) and all(0 <= seq < self._count for seq in marks)
            assert not marks or max(marks) == self._count - 1
        else:
            assert sum(marks) == self._count

    def _check_parabolic(self):
        base, slots, records = self._base, self._slots, self._records
        n = len(slots) // RECORD
        assert base % SLOT_CHUNK == 0 and n % SLOT_CHUNK == 0 and n == self._slot_count
        assert len(slots) == RECORD * n and len(records) % RECORD == 0
        table = np.frombuffer(slots).reshape(n, RECORD)                       # [slots, RECORD]
        assert np.array_equal(np.frombuffer(self._occupied, dtype=np.uint8), table[:, KY] != EMPTY)
        empty = table[:, KY] == EMPTY
        assert (table[empty, MARK:BELOW] == 0.0).all() and (table[empty, BELOW:] == [-1.0, EMPTY]).all()
        linked = set()
        for i in np.flatnonzero(~empty).tolist():
            k = base + i
            store, at, ky = slots, RECORD * i, math.inf
            top_mark = slots[at + MARK]
            while True:                       # the column: keys of the path, ky decreasing
                assert store[at + KY] < ky
                assert not self._tops_latest or store[at + MARK] <= top_mark, "a key newer than its top"
                ky = store[at + KY]
                assert 0.0 <= ky + k * k < RECENCY_LIMIT and -PARABOLIC_MAX_K <= k < PARABOLIC_MAX_K
                below = store[at + BELOW]
                assert store[at + BELOW_KY] == (EMPTY if below < 0.0 else records[int(below) + KY])
                if below < 0.0:
                    break
                store, at = records, int(below)
                assert at % RECORD == 0 and at not in linked
                linked.add(at)
        for (kx, ky), at in self._cleared.items():
            assert at % RECORD == 0 and at not in linked
            assert (records[at + BELOW], records[at + BELOW_KY]) == (-1.0, EMPTY)
            assert records[at + KY] == ky < CLEARED_BELOW and abs(kx) <= CLEARED_MAX_KX
            linked.add(at)
        assert len(linked) == len(records) // RECORD, "every record is a column's or a cleared key"


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
# Every position of a sequence at once (forward_batch), and the dense definition.

def causal_hard_attention(keys, values, queries, latest):
    """out[p] = a head's answer to queries[p] after the inserts of keys[0..p] with
    values[0..p] (SPEC 9 at every position): [T, 2] each -> [T, 2], by one HullHead."""
    head = HullHead(latest)
    out = []
    for (kx, ky), (vx, vy), (qx, qy) in zip(*(np.asarray(a, dtype=np.float64).tolist()
                                              for a in (keys, values, queries))):
        head.insert(kx, ky, vx, vy)
        out.append(head.query(qx, qy))
    return np.array(out, dtype=np.float64).reshape(len(out), 2)                # [T, 2]


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
