"""speculative.py: check a whole draft trace with the transformer in a few big steps.

Greedy decoding has an exact shortcut. Given a draft of the trace (the reference
interpreter drafts millions of tokens per second), run every layer over all
positions at once (teacher forcing) and compare the argmax at each position with
the next draft token. If every position agrees, the draft IS the transformer's
greedy output (by induction on positions: position p only sees tokens 0..p, all
of which the transformer itself would have produced). At the first disagreement
the transformer's own token is taken and decoding goes on one token at a time.
The draft is only ever an input: every token is decided by the transformer.

The batched forward pass (SPEC 7.1) runs in chunks of positions through all
layers; between chunks each attention head carries a compact summary of the
earlier positions, so memory stays bounded. Hard attention (SPEC 9) for a chunk
is answered by one of four fast heads, each equal to hull.hard_attention for the
keys it accepts (proof in section 1; the first chunk's keys pick the head, and
every chunk is checked): PositionHead (keys are positions, O(1) per query),
ColumnHead (parabolic keys on integer columns, O(log n)), CumulativeHead (the
running mean of an average head, O(1)) and GeneralHead (the definition, O(T), for
small models). Heads with equal key weights share one fast head (SharedKeys).
From the layer that reads the fetched opcode (GROUP_SLOT) on, the chunk's
positions are sorted by it and each feed-forward leaves out, per group of equal
opcodes, the neurons whose gates are provably closed at all its positions
(GroupedFeedForward); the logits are computed once per distinct output
(distinct_next_tokens). The draft may come in pieces (reference_draft_pieces),
so a long or never-ending program holds one piece at a time.
benchmarks/verify_speed.py measures the speed (single-threaded BLAS, as
`python wasmtf.py` runs).

Entry points: generate(model, prompt) and run_program(model, instructions,
input_bytes), wasmtf's with a reference draft; generate_speculative(model, prompt,
draft); verify(model, prompt, draft); chunked_hard_attention(keys, values,
queries, latest).
"""
import math
import sys

import numpy as np

import hull
import reference
import wasmtf

CHUNK = 8_192            # positions per batched step: big enough to amortise NumPy's per-call
                         # cost over the groups of GroupedFeedForward (a few dozen per chunk),
                         # small enough for a chunk's [D, CHUNK] residuals to stay in the CPU's caches
KEY_LIMIT = 2.0 ** 24    # |k| bound of the exactness argument (section 1)
POSITION_LIMIT = 2 ** 26  # positions a PositionHead answers exactly (section 1)
POSITION_RADIUS = 4      # candidates on each side of k* beyond 2^24 (section 1)
DRAFT_STEPS = 1 << 18    # reference steps per draft piece (about a million tokens)
QUERY_LIMIT = 2.0 ** 40  # |qx/qy| bound: cleared keys (ky < -1e20) still score below 0
RECENCY_LIMIT = 0.45     # d = ky + k^2 must lie in [0, RECENCY_LIMIT] (0.3/ln 2 = 0.433)
POSITION_RECENCY_LIMIT = 0.5  # the same for position keys, whose d rounds to 1/2 near 2^26
CLEARED = -1e20          # keys with ky + k^2 below this are cleared (about -1e30 in the machine)
GENERAL_BLOCK = 256      # query rows per brute-force block of a GeneralHead
GENERAL_LIMIT = 32_768   # positions a GeneralHead scans (O(T^2) work);
                         # beyond, sequential decoding with the hull cache is faster
GROUP_SLOT = "op_code_at_pc"  # the opcode the transformer fetched at a position: gadgets' gates test it
HASH_MULTIPLIERS = np.random.default_rng(0).integers(1, 2 ** 63, 64, dtype=np.uint64) * 2 + 1  # odd;
                         # one per output slot (cycled past 64); a collision of two outputs'
                         # hashes only costs the full logits (distinct_next_tokens)
PRODUCTS_KEPT = 512      # live-neuron sets whose products a layer keeps (they recur: the same
                         # opcodes in the same phases); each takes <= (2F K + F R) doubles, at
                         # most ~0.5 MB for the machine's widest layer (F 385, K 61, R 46), so
                         # <= ~260 MB per layer in the worst case (a few MB measured)
CLOSED_SLACK = 4         # rounding margin of a closed gate, in K u units (GroupedFeedForward)


class NotVerifiable(ValueError):
    """The keys stopped having the structure a fast head relies on (after its first chunk)."""


# ---------------------------------------------------------------------------
# 1. Attention heads over chunks: attend(q, k, v, start, parts) answers the queries of
#    positions start..start+C-1 against every earlier key and the chunk's own
#    keys (causal, self included) WITHOUT changing the head; commit() then
#    makes the chunk part of the head's past. A rejected chunk is just not
#    committed.
# ---------------------------------------------------------------------------

# Why the shortcuts are exact (d = ky + k^2 is the recency term, 0 <= d <= 0.45):
# with qy > 0 the score is qy * (k*^2 - (k* - k)^2 + d) for k* = qx/qy. A column
# one step further from k* than the nearest existing column on its side (at
# distance delta) scores at least qy * (2*delta + 1 - 0.45) lower in exact
# arithmetic, while the float rounding of two scores (two products and a sum
# each) is below 2^-51 * qy * (2|k*||k| + k^2) <= qy * (2^-26 |k*| + 1/8) for
# |k| <= 2^24 (KEY_LIMIT): less than the gap for every k* (if |k*| > 1.5 * 2^24,
# delta >= |k*|/3). So only the two neighbouring columns can reach the float
# maximum; their scores are computed exactly as SPEC 9 says and compared, ties
# going to the later write. Inside a column the latest write has the largest ky
# (checked: ky never decreases within a column), hence the largest score, and it
# is the latest of any entries it ties with. Position keys go further, up to
# 2^26 (POSITION_LIMIT, beyond the default token limit), with 0 <= d <= 1/2 (from
# p = 2^25.5 on, -p^2 + d is a multiple of 1/2 and d = 0.42 rounds to 1/2): there
# the rounding of two scores is below 2^-51 * qy * (2|k*||k| + k^2) <= 10 qy while
# |k*| <= 2^27. With b and a the positions next to k* (floor and ceil, clipped to
# 0..now), a position outside b - 3 .. a + 3 (POSITION_RADIUS = 4 on each side) is
# 4 or more from k* while b or a is within 1/2 of it, so it scores at least
# qy * (4^2 - 1/4 - 1/2) lower in exact arithmetic (for k* beyond now, b = a = now
# and the gap is >= qy * (4^2 - 1/2); it grows with |k*|): the float maximum is
# among those 8 positions. Cleared keys (ky + k^2 < -1e20) score below the
# position-0 entry (key (0, d), score >= 0) while |k*| <= 2^40
# (QUERY_LIMIT), so they never win. Every one of these conditions is checked on
# the actual keys and queries; if one fails, the head is a GeneralHead (first
# chunk), a PositionHead becomes a ColumnHead (it has the whole past), and
# otherwise the run raises NotVerifiable and the caller decodes sequentially.


class GrowingArrays:
    """Named float columns (or [n, W] arrays) indexed by position, grown by doubling (amortized O(1))."""

    def __init__(self, names):
        self.columns = {name: np.zeros(0) for name in names}

    def write(self, start, **values):
        for name, value in values.items():
            end = start + len(value)
            old = self.columns[name]
            if end > len(old):  # double; np.zeros leaves the new pages unmapped until written
                self.columns[name] = np.zeros((max(end, 2 * len(old)),) + old.shape[1:])
                self.columns[name][:len(old)] = old
            self.columns[name][start:end] = value

    def __getitem__(self, name):
        return self.columns[name]


def positions_of(start, count):
    return np.arange(start, start + count, dtype=np.int64)  # [C]


def first_row_answer(start, v, out):
    """Position 0 sees only its own entry: every query returns that entry's value.
    Returns a mask of the rows still to answer (all rows but position 0)."""
    rows = np.ones(len(v), dtype=bool)
    if start == 0:
        out[0] = v[0]
        rows[0] = False
    return rows


def query_parts(q, parts):
    """[(q [C, 2], value columns)]: the n queries of q [C, 2n], the j-th answering the value
    columns parts[j] (a slice); no parts: one query, every value column."""
    return [(q[:, 2 * j:2 * j + 2], columns) for j, columns in enumerate(parts or [slice(None)])]


def neighbour_ratio(q, rows):
    """(qx, qy, k* = qx/qy) of the rows to answer; NotVerifiable unless qy > 0 and
    |k*| <= QUERY_LIMIT."""
    qx, qy = q[rows, 0], q[rows, 1]                               # [R] each
    if not (qy > 0).all():
        raise NotVerifiable("a query with qy <= 0 after position 0")
    k_star = qx / qy                                              # [R]
    if not (np.abs(k_star) <= QUERY_LIMIT).all():
        raise NotVerifiable("a query beyond the key range")
    return qx, qy, k_star


def position_radius(end):
    """Candidate positions on each side of k*, for positions below `end`: 1 (the two
    neighbours of k*) while they are within KEY_LIMIT, else POSITION_RADIUS."""
    return 1 if end <= KEY_LIMIT else POSITION_RADIUS


class PositionHead:
    """Latest-write head whose key at position p is (2p, -p^2 + d), 0 <= d <= 1/2."""

    kind = "position"

    def __init__(self, width=2):
        self.store = GrowingArrays(("ky",))
        self.store.columns["v"] = np.zeros((0, width))

    @staticmethod
    def fits(k, start):
        p = positions_of(start, len(k)).astype(np.float64)        # [C]
        d = k[:, 1] + p * p                                       # [C]
        return bool((k[:, 0] == 2 * p).all() and (d >= 0).all() and (d <= POSITION_RECENCY_LIMIT).all()
                    and start + len(k) <= POSITION_LIMIT)

    def attend(self, q, k, v, start, parts=None):
        if not self.fits(k, start):
            raise NotVerifiable("position keys stopped being (2p, -p^2 + d)")
        # later positions of the store are never read (causal), so the chunk can go in now
        self.store.write(start, ky=k[:, 1], v=v)
        out = np.zeros_like(v)                                    # [C, W]
        rows = first_row_answer(start, v, out)
        now = positions_of(start, len(v))[rows]                   # [R]
        ky = self.store["ky"]
        radius = position_radius(start + len(v))
        for q, columns in query_parts(q, parts):
            qx, qy, k_star = neighbour_ratio(q, rows)             # [R] each
            below = np.clip(np.floor(k_star), 0, now).astype(np.int64)  # [R] nearest position <= k*
            above = np.clip(np.ceil(k_star), 0, now).astype(np.int64)   # [R] nearest position >= k*
            best, best_score = below, qx * (2.0 * below) + qy * ky[below]  # [R] two products, one sum
            for candidate in [below - j for j in range(1, radius)] + [above + j for j in range(radius)]:
                candidate = np.clip(candidate, 0, now)            # [R]
                score = qx * (2.0 * candidate) + qy * ky[candidate]  # [R]
                better = (score > best_score) | ((score == best_score) & (candidate > best))  # ties: the later
                best, best_score = np.where(better, candidate, best), np.where(better, score, best_score)
            out[rows, columns] = self.store["v"][best, columns]
        return out

    def commit(self):
        pass

    def as_columns(self, start):
        """The same past as a ColumnHead (every position its own column), for keys that
        stop being positions after `start`."""
        if start > KEY_LIMIT:
            raise NotVerifiable("position keys beyond the column heads' key range")
        head = ColumnHead(self.store["v"].shape[1])
        p = positions_of(0, start)                                # [start]
        head.past = {"key": p.astype(np.float64), "pos": p, "ky": self.store["ky"][:start].copy(),
                     "v": self.store["v"][:start].copy()}
        return head


class ColumnHead:
    """Latest-write head with parabolic keys (2k, -k^2 + d) on integer k, or cleared keys.

    The past is one record per column (distinct k), sorted by k: the latest
    write's position, ky and value. Inside a chunk, the chunk's writes sorted
    by (k, position) give a column's latest write up to any position, and a
    sparse table of each column's first write in the chunk gives the nearest
    column that exists at a given position."""

    kind = "column"
    FIELDS = ("key", "pos", "ky", "v")

    def __init__(self, width=2):
        self.past = {name: np.zeros(0) for name in self.FIELDS}
        self.past["pos"] = np.zeros(0, dtype=np.int64)
        self.past["v"] = np.zeros((0, width))
        self.pending = None

    @staticmethod
    def split(k):
        """(key k, mask of real writes); NotVerifiable unless every key is parabolic or cleared."""
        key = k[:, 0] * 0.5                                        # [C] exact
        d = k[:, 1] + key * key                                    # [C]
        real = (d >= 0) & (d <= RECENCY_LIMIT)                     # [C]
        cleared = d < CLEARED
        if not ((real | cleared).all() and (key == np.floor(key)).all()
                and (np.abs(key) <= KEY_LIMIT).all()):
            raise NotVerifiable("keys are not (2k, -k^2 + d) on integer k, nor cleared")
        return key, real

    def attend(self, q, k, v, start, parts=None):
        C = len(v)
        key, real = self.split(k)
        if start == 0 and not (real[0] and key[0] == 0):
            raise NotVerifiable("the position-0 key is not (0, d >= 0): cleared keys could win")
        # the chunk's real writes sorted by (key, position): column groups in key order
        writes = np.flatnonzero(real)                              # [W] chunk rows
        writes = writes[np.argsort(key[writes], kind="stable")]    # [W]
        w_key = key[writes]                                        # [W]
        first = np.ones(len(writes), dtype=bool)                   # [W] first write of its column
        first[1:] = w_key[1:] != w_key[:-1]
        group = np.cumsum(first) - 1                               # [W] column index in the chunk
        if (np.diff(k[writes, 1])[~first[1:]] < 0).any():
            raise NotVerifiable("ky decreased within a column")
        c_key = w_key[first]                                       # [U] the chunk's columns, sorted
        c_birth = writes[first]                                    # [U] chunk row of the first write
        past_at = np.searchsorted(self.past["key"], c_key)         # [U]
        in_past = past_at < len(self.past["key"])
        in_past[in_past] = self.past["key"][past_at[in_past]] == c_key[in_past]
        if (k[c_birth[in_past], 1] < self.past["ky"][past_at[in_past]]).any():
            raise NotVerifiable("ky decreased within a column")
        order = group * C + writes                                 # [W] sorted: (column, row)
        last = np.append(first[1:], len(writes) > 0)[:len(writes)]  # [W] last write of its column
        self.pending = {"key": c_key, "pos": start + writes[last], "ky": k[writes[last], 1],
                        "v": v[writes[last]]}

        out = np.zeros_like(v)                                     # [C, W]
        rows = first_row_answer(start, v, out)
        now = np.flatnonzero(rows)                                 # [R] chunk rows of the queries
        for q, columns in query_parts(q, parts):
            out[rows, columns] = self._answer(q, rows, now, columns, c_key, c_birth, writes, order, k, v, start)
        return out

    def _answer(self, q, rows, now, columns, c_key, c_birth, writes, order, k, v, start):
        """The value columns `columns` of the best entries for the queries q of rows `now`."""
        C = len(q)
        qx, qy, k_star = neighbour_ratio(q, rows)                  # [R] each
        best_score = np.full(len(now), -np.inf)                    # [R]
        best_pos = np.full(len(now), -1, dtype=np.int64)           # [R]
        best_value = np.zeros((len(now), v[:1, columns].shape[1]))  # [R, w]

        def consider(found, column_key, pos, ky, value):
            """Merge candidates (mask `found`) into the best so far: higher score, or equal and later."""
            score = qx[found] * (2.0 * column_key) + qy[found] * ky     # two products, one sum
            better = (score > best_score[found]) | ((score == best_score[found]) & (pos > best_pos[found]))
            chosen = np.flatnonzero(found)[better]
            best_score[chosen], best_pos[chosen] = score[better], pos[better]
            best_value[chosen] = value[better]

        # the columns of the past: the neighbours of k* on both sides
        past_right = np.searchsorted(self.past["key"], k_star)     # [R] first key >= k*
        chunk_left, chunk_right = self._chunk_neighbours(c_key, c_birth, k_star, now)
        for past_index, chunk_column in ((past_right - 1, chunk_left), (past_right, chunk_right)):
            found = (past_index >= 0) & (past_index < len(self.past["key"]))
            at = past_index[found]
            # if the chunk also wrote this column by this row, that later write scores at
            # least as high (ky never decreases in a column) and wins a tie
            consider(found, self.past["key"][at], self.past["pos"][at], self.past["ky"][at],
                     self.past["v"][at, columns])
            found = chunk_column >= 0
            column = chunk_column[found]
            # the column's latest write at or before the query row
            at = np.searchsorted(order, column * C + now[found], side="right") - 1
            row = writes[at]
            consider(found, c_key[column], start + row, k[row, 1], v[row, columns])
        return best_value

    @staticmethod
    def _chunk_neighbours(c_key, c_birth, k_star, now):
        """For each query: the chunk column with the largest key < k* and the one with the
        smallest key >= k* among columns first written at or before the query row (-1: none).
        Jumps over blocks of columns all born later, largest blocks first (sparse table)."""
        U = len(c_key)
        if U == 0:
            return np.full(len(now), -1), np.full(len(now), -1)
        left = np.searchsorted(c_key, k_star) - 1                 # [R] largest key < k*
        right = left + 1                                          # [R] smallest key >= k*
        births = [c_birth]                                        # births[j][m] = min of c_birth[m:m+2^j]
        while 2 ** len(births) <= U:
            half = 2 ** (len(births) - 1)
            births.append(np.minimum(births[-1][:-half], births[-1][half:]))
        for j in range(len(births) - 1, -1, -1):                # jump blocks of `size` columns all born later
            size, table = 2 ** j, births[j]
            block = np.clip(left - size + 1, 0, len(table) - 1)   # [R] the block ending at `left`
            left[(left - size + 1 >= 0) & (table[block] > now)] -= size
            block = np.clip(right, 0, len(table) - 1)             # [R] the block starting at `right`
            right[(right + size <= U) & (table[block] > now)] += size
        valid_left = (left >= 0) & (c_birth[np.clip(left, 0, U - 1)] <= now)
        valid_right = (right < U) & (c_birth[np.clip(right, 0, U - 1)] <= now)
        return np.where(valid_left, left, -1), np.where(valid_right, right, -1)

    def commit(self):
        new, past = self.pending, self.past
        keep = ~np.isin(past["key"], new["key"])                   # replaced columns drop out
        merged = {name: np.concatenate([past[name][keep], new[name]]) for name in self.FIELDS}
        order = np.argsort(merged["key"], kind="stable")
        self.past = {name: merged[name][order] for name in self.FIELDS}
        self.pending = None


class CumulativeHead:
    """Average head: key (0, 0) at position 0 and one key (0, c), c > 0, at every later
    position, queries (0, qy > 0): positions 1..p tie, the answer is their running mean,
    summed sequentially as the hull cache does (sum * (1/count))."""

    kind = "cumulative"

    def __init__(self, width=2):
        self.key = None             # the shared key (0, c)
        self.sum = np.zeros(width)  # sum of the values of positions 1..committed
        self.pending = None

    def attend(self, q, k, v, start, parts=None):
        """(every query of q [C, 2n] gets the same running mean)"""
        out = np.zeros_like(v)                                    # [C, W]
        rows = first_row_answer(start, v, out)
        if start == 0 and (k[0] != 0).any():
            raise NotVerifiable("the position-0 key of an average head is not (0, 0)")
        if not rows.any():
            self.pending = self.sum
            return out
        if self.key is None:
            self.key = k[rows][0].copy()
        if not (self.key[0] == 0 and self.key[1] > 0 and (k[rows] == self.key).all()
                and (q[rows, 0::2] == 0).all() and (q[rows, 1::2] * self.key[1] > 0).all()):
            raise NotVerifiable("average head keys or queries are not the cumulative pattern")
        values = np.concatenate([self.sum[None], v[rows]])        # [R+1, W] the carry first
        sums = np.cumsum(values, axis=0)[1:]                      # [R, W] sequential, as inserted
        count = positions_of(start, len(v))[rows]                 # [R] positions 1..p tie
        out[rows] = sums * (1.0 / count)[:, None]
        self.pending = sums[-1]
        return out

    def commit(self):
        self.sum = self.pending


class GeneralHead:
    """Any keys: hull.hard_attention, the definition itself, against every earlier key."""

    kind = "general"

    def __init__(self, latest, width=2):
        self.latest = latest
        self.store = GrowingArrays(("kx", "ky"))
        self.store.columns["v"] = np.zeros((0, width))

    def attend(self, q, k, v, start, parts=None):
        end = start + len(v)
        if end > GENERAL_LIMIT:
            raise NotVerifiable(f"a general head past {GENERAL_LIMIT:,} positions")
        self.store.write(start, kx=k[:, 0], ky=k[:, 1], v=v)
        keys = np.stack([self.store["kx"][:end], self.store["ky"][:end]], axis=1)      # [n, 2]
        out = np.zeros_like(v)                                                        # [C, W]
        for q, columns in query_parts(q, parts):
            values = self.store["v"][:end, columns]                                   # [n, w]
            out[:, columns] = np.concatenate([hull.hard_attention(keys, values, q[row:row + GENERAL_BLOCK],
                                                                  self.latest, first=start + row)  # [B, n]
                                              for row in range(0, len(q), GENERAL_BLOCK)])  # [C, w]
        return out

    def commit(self):
        pass


def new_head(latest, q, k, v, start, parts=None):
    """The fastest head whose conditions the first chunk's keys and queries meet."""
    for make in [PositionHead, ColumnHead] if latest else [CumulativeHead]:
        head = make(v.shape[1])
        try:
            head.attend(q, k, v, start, parts)
            return head
        except NotVerifiable:
            pass
    return GeneralHead(latest, v.shape[1])


def head_for_chunk(head, latest, q, k, v, start, parts=None):
    """The head to answer a chunk: on the first chunk (head None) the fastest one whose
    conditions it meets, later a ColumnHead with the past once position keys stop being
    positions, otherwise `head` itself."""
    if head is None:
        return new_head(latest, q, k, v, start, parts)
    if head.kind == "position" and not PositionHead.fits(k, start):
        return head.as_columns(start)
    return head


def chunked_hard_attention(keys, values, queries, latest, chunk=CHUNK, parts=None):
    """hull.hard_attention's answers for all T positions of one head ([T, 2] each -> [T, 2])
    by the fast heads, in chunks; raises NotVerifiable only if the keys change structure
    after the first chunk (use a bigger chunk, or hull.causal_hard_attention). With
    `parts` (see query_parts), heads sharing the keys: queries [T, 2n], values [T, W]."""
    out = np.zeros(np.shape(values))                              # [T, W]
    head = None
    for start in range(0, len(queries), chunk):
        q, k, v = queries[start:start + chunk], keys[start:start + chunk], values[start:start + chunk]
        head = head_for_chunk(head, latest, q, k, v, start, parts)
        out[start:start + chunk] = head.attend(q, k, v, start, parts)
        head.commit()
    return out


# ---------------------------------------------------------------------------
# 2. The batched forward pass: a state that advances by chunks of tokens
# ---------------------------------------------------------------------------

# Why leaving out a neuron whose gate bound is <= 0 is exact: a gate g = sum_j a_j x_j of K
# terms is at most U = sum_j (a_j+ hi_j + a_j- lo_j) over its group's extremes hi, lo (the
# transformer's own residuals, never the draft). The product that computes g (any summation
# order) is off by at most gamma_K S, the one that computes U by gamma_2K S, with
# S = sum_j |a_j| max(|hi_j|, |lo_j|), gamma_n = n u / (1 - n u), u = 2^-53: so
# fl(g) <= fl(U) + CLOSED_SLACK K u fl(S) (3 K u, plus the rounding of S and of the margin
# itself, stays below 4 K u for K < 2^40). Then ReLU(g) = 0: the neuron's terms are exact
# zeros, and dropping them changes no sum. A NaN or infinite bound keeps the neuron.


class GroupedFeedForward:
    """A layer's feed-forward x += w_ffo @ reglu(w_in @ x) on columns sorted into groups, each
    group leaving out the neurons whose gates are provably closed on it (the comment above):
    for weights whose dot products are exact in any summation order (the compiled machine's,
    wasmtf.Linear) any grouping gives the dense result, a good one is only faster."""

    def __init__(self, layer):
        F, ffn_in, ffn_out = layer["F"], layer["ffn_in"], layer["ffn_out"]
        gates = ffn_in.w[:F]                                       # [F, K]
        self.F = F
        self.columns, self.rows = ffn_in.columns, ffn_out.rows     # the K slots read, R written
        self.w_in, self.w_ffo = ffn_in.w, ffn_out.w                # [2F, K], [R, F]
        self.bound = np.concatenate([np.maximum(gates, 0), np.minimum(gates, 0)], axis=1)  # [F, 2K]
        self.size = np.abs(gates)                                  # [F, K]
        self.margin = CLOSED_SLACK * len(self.columns) * 2.0 ** -53
        values = ffn_in.w[F:]                                      # [F, K]
        copied = ((values != 0).sum(axis=1) == 1) & (values.max(axis=1) == 1.0)  # value = 1.0 * one slot
        self.value_row = np.where(copied, values.argmax(axis=1), -1)  # [F] that slot's xin row, or -1
        self.products = {}                                         # live neurons -> parts (products)

    def products_of(self, live):
        """(k, m, w_in [k + m, c], the c rows of xin it reads, the xin rows of the other k - m
        values, w_ffo [r, k], the r rows of delta it writes) for the k neurons of the mask
        `live`, the m whose value is a product first: only exact zeros dropped; a value
        1.0 * x_j is x_j itself, read from xin (exact for finite x: no other term is non-zero)."""
        key = live.tobytes()
        if key not in self.products:
            if len(self.products) == PRODUCTS_KEPT:
                self.products.clear()
            neurons = np.flatnonzero(live)                         # [k]
            neurons = neurons[np.argsort(self.value_row[neurons] >= 0, kind="stable")]  # products first
            m = int((self.value_row[neurons] < 0).sum())
            w_in, w_ffo = self.w_in[np.concatenate([neurons, self.F + neurons[:m]])], self.w_ffo[:, neurons]
            reads, writes = np.flatnonzero(w_in.any(axis=0)), np.flatnonzero(w_ffo.any(axis=1))
            self.products[key] = (len(neurons), m, np.ascontiguousarray(w_in[:, reads]), reads,
                                  self.value_row[neurons[m:]], np.ascontiguousarray(w_ffo[writes]), writes)
        return self.products[key]

    def add_to(self, x, starts):
        """x [D, C] += the feed-forward, x's columns in groups beginning at columns `starts`."""
        xin = x[self.columns]                                      # [K, C]
        hi = np.maximum.reduceat(xin, starts, axis=1)              # [K, G]
        lo = np.minimum.reduceat(xin, starts, axis=1)              # [K, G]
        upper = self.bound @ np.concatenate([hi, lo])              # [F, G]
        live = ~(upper + self.margin * (self.size @ np.maximum(hi, -lo)) <= 0)  # [F, G]
        delta = np.zeros((len(self.rows), x.shape[1]))             # [R, C]
        ends = np.append(starts[1:], x.shape[1])
        for group, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
            k, m, w_in, reads, copied, w_ffo, writes = self.products_of(live[:, group])
            if k:
                f = w_in @ xin[reads, start:end]                   # [k + m, n] gates, m values
                h = np.maximum(f[:k], 0.0)                         # [k, n] as wasmtf.reglu
                h[:m] *= f[k:]
                h[m:] *= xin[copied, start:end]
                delta[writes, start:end] = w_ffo @ h
        x[self.rows] += delta


def distinct_next_tokens(plan, x):
    """wasmtf.next_tokens(plan, x), the logits computed once per distinct column of x's
    output slots (a chunk has a few hundred): columns are bucketed by a hash of their
    bits, and used as they are only if each is equal to its bucket's first column (equal
    to the full logits for weights exact in any summation order, as wasmtf.Linear says)."""
    slots = plan["logits"][0]
    out = np.ascontiguousarray(x[slots].T)                         # [C, S]
    bits = out.view(np.uint64) * np.resize(HASH_MULTIPLIERS, len(slots))  # [C, S] (wrapping)
    _, first, bucket = np.unique(bits.sum(axis=1), return_index=True, return_inverse=True)  # [U], [C]
    if not np.array_equal(out, out[first[bucket]]):                # a collision (or a NaN)
        return wasmtf.next_tokens(plan, x)
    return wasmtf.next_tokens(plan, x[:, first])[bucket]


class SharedKeys:
    """Active heads of a layer with the same key weights and tie mode, answered by one
    fast head: `heads` (indices, heads with the same query weights next to each other),
    the rows of the layer's qkv product and of its output o [2A, C] they read and write,
    and `parts`, the value columns each distinct query answers (query_parts). Heads
    with equal queries too have equal scores, hence attend to the same position."""

    def __init__(self, layer, heads, latest):
        w = layer["qkv"].w                                         # [6A, K]
        by_query = {}
        for a in heads:
            by_query.setdefault(w[6 * a:6 * a + 2].tobytes(), []).append(a)
        self.heads = [a for same in by_query.values() for a in same]
        self.latest = latest
        self.parts = []
        self.queries = [6 * same[0] + i for same in by_query.values() for i in (0, 1)]
        self.keys = [6 * heads[0] + 2, 6 * heads[0] + 3]
        self.values = [6 * a + 4 + i for a in self.heads for i in (0, 1)]
        self.outputs = [2 * a + i for a in self.heads for i in (0, 1)]
        for same in by_query.values():
            start = self.parts[-1].stop if self.parts else 0
            self.parts.append(slice(start, start + 2 * len(same)))


def sharing_heads(layer):
    """The plan layer's active heads as SharedKeys."""
    w, sharing = layer["qkv"].w, {}                                # [6A, K]
    for a, latest in enumerate(layer["tie_latest"]):
        sharing.setdefault((w[6 * a + 2:6 * a + 4].tobytes(), latest), []).append(a)
    return [SharedKeys(layer, heads, latest) for (_, latest), heads in sharing.items()]


def group_slot(model):
    """(the first layer whose feed-forward input holds GROUP_SLOT, its slot), or None (a
    model without the compiler's table of slot occupants)."""
    occupants = model.get("slot_occupants") or []
    for l in range(len(occupants) // 2):
        if GROUP_SLOT in occupants[2 * l + 1]:
            return l, occupants[2 * l + 1].index(GROUP_SLOT)
    return None


class BatchState:
    """The transformer after `position` tokens, as per-head summaries (no residuals).

    advance(ids) runs the next len(ids) positions through every layer and
    returns the greedy next-token id after each of them; commit() accepts them.
    From the first layer whose feed-forward reads GROUP_SLOT on, the chunk's
    columns are sorted by that slot's value (the transformer's, not the draft's)
    and the feed-forwards are GroupedFeedForward's."""

    def __init__(self, model, plan=None):
        self.plan = plan or wasmtf.prepare(model)
        self.sharing = [sharing_heads(layer) for layer in self.plan["layers"]]
        self.heads = [[None] * len(sharing) for sharing in self.sharing]  # chosen on the first chunk
        self.position = 0
        self.pending = 0
        self.grouping = group_slot(model)
        self.grouped = [GroupedFeedForward(layer) if self.grouping and l >= self.grouping[0] else None
                        for l, layer in enumerate(self.plan["layers"])]

    def kinds(self):
        return [[head.kind for head in heads] for heads in self.heads if heads]

    def attend(self, l, s, latest, q, k, v, parts):
        """The heads self.sharing[l][s] for the chunk's positions: one fast head (chosen on the
        first chunk) with their queries and values side by side (query_parts)."""
        self.heads[l][s] = head_for_chunk(self.heads[l][s], latest, q, k, v, self.position, parts)
        return self.heads[l][s].attend(q, k, v, self.position, parts)

    def advance(self, ids):
        """wasmtf.run_layers and next_tokens on the chunk. The loop is run_layers' own, written
        out here for its two differences: heads sharing their keys are answered once
        (SharedKeys), and from the grouping layer on the columns are sorted by GROUP_SLOT
        for GroupedFeedForward (tests/test_speculative.py checks it against forward_batch)."""
        x = np.ascontiguousarray(wasmtf.embed_tokens(self.plan["embed"], ids, self.position).T)  # [D, C]
        order = None                                               # column i holds position order[i]
        for l, layer in enumerate(self.plan["layers"]):
            if layer["heads"]:
                u = layer["qkv"](x)                                # [6A, C]
                u = u if order is None else np.take(u, rank, axis=1)  # in position order (take: faster)
                o = np.empty((wasmtf.HEAD_WIDTH * len(layer["heads"]), x.shape[1]))  # [2A, C]
                for s, shared in enumerate(self.sharing[l]):       # heads sharing their keys
                    q, k, v = u[shared.queries].T, u[shared.keys].T, u[shared.values].T  # [C, 2n], [C, 2], [C, 2m]
                    o[shared.outputs] = self.attend(l, s, shared.latest, q, k, v, shared.parts).T
                layer["out"].add_to(x, o if order is None else np.take(o, order, axis=1))
            if self.grouped[l] is None or not len(ids):
                layer["ffn_out"].add_to(x, wasmtf.reglu(layer["ffn_in"](x), layer["F"]))
                continue
            if order is None:                                      # sort the columns by GROUP_SLOT
                order = np.argsort(x[self.grouping[1]], kind="stable")  # [C]
                rank = np.empty_like(order)                        # [C] column of each position
                rank[order] = np.arange(len(order))
                x = np.take(x, order, axis=1)
                key = x[self.grouping[1]]
                starts = np.flatnonzero(np.append(True, key[1:] != key[:-1]))  # [G]
            self.grouped[l].add_to(x, starts)
        self.pending = len(ids)
        predicted = distinct_next_tokens(self.plan, x)             # [C]
        return predicted if order is None else predicted[rank]

    def commit(self):
        for heads in self.heads:
            for head in heads:
                head.commit()
        self.position += self.pending
        self.pending = 0


# ---------------------------------------------------------------------------
# 3. After the draft: the heads as caches of wasmtf.step (insert, query), so that
#    sequential decoding goes on with exactly wasmtf's per-token products.
#    Each checks the conditions its answers rely on, for every new key and query.
# ---------------------------------------------------------------------------

def query_ratio(qx, qy):
    """k* = qx/qy of one query; NotVerifiable unless qy > 0 and |k*| <= QUERY_LIMIT."""
    if not (qy > 0 and abs(qx / qy) <= QUERY_LIMIT):
        raise NotVerifiable("a query with qy <= 0 or beyond the key range")
    return qx / qy


class PositionCache:
    """A PositionHead's arrays (its value columns `columns`), one position per insert."""

    def __init__(self, head, count, columns=slice(None)):
        self.store, self.count = GrowingArrays(()), count
        self.store.columns = {"ky": head.store["ky"], "v": head.store["v"][:, columns]}

    def insert(self, kx, ky, vx, vy):
        p = self.count
        if not (kx == 2 * p and 0 <= ky + p * p <= POSITION_RECENCY_LIMIT and p < POSITION_LIMIT):
            raise NotVerifiable("position keys stopped being (2p, -p^2 + d)")
        self.store.write(p, ky=[ky], v=[[vx, vy]])
        self.count += 1

    def query(self, qx, qy):
        k_star, now = query_ratio(qx, qy), self.count - 1
        ky = self.store["ky"]
        radius = position_radius(self.count)
        below, above = min(max(math.floor(k_star), 0), now), min(max(math.ceil(k_star), 0), now)
        first, last = max(below - radius + 1, 0), min(above + radius - 1, now)
        scores = [qx * (2.0 * j) + qy * float(ky[j]) for j in range(first, last + 1)]  # two products, one sum
        best = last - scores[::-1].index(max(scores))             # ties: the later position
        return tuple(self.store["v"][best].tolist())


class ColumnCache:
    """A ColumnHead's columns in a hull.HullHead. Only the latest write of each column
    can win a query with qy > 0 and |k*| <= QUERY_LIMIT (section 1), so the
    earlier writes and the cleared keys are left out, and every query is checked."""

    def __init__(self, head, count, columns=slice(None)):
        self.hull = hull.HullHead(True)
        key, ky, vx, vy = (a.tolist() for a in (head.past["key"], head.past["ky"], *head.past["v"][:, columns].T))
        for i in np.argsort(head.past["pos"]).tolist():           # in position order: ties go to the later
            self.hull.insert(2.0 * key[i], ky[i], vx[i], vy[i])
        self.insert = self.hull.insert

    def query(self, qx, qy):
        query_ratio(qx, qy)
        return self.hull.query(qx, qy)


class CumulativeCache:
    """A CumulativeHead's running sum."""

    def __init__(self, head, count, columns=slice(None)):
        self.key, self.sum, self.count = head.key, head.sum[columns].tolist(), count

    def insert(self, kx, ky, vx, vy):
        if self.key is None:
            self.key = np.array([kx, ky])
        if not (kx == self.key[0] and ky == self.key[1]):
            raise NotVerifiable("average head keys are not the cumulative pattern")
        self.sum = [self.sum[0] + vx, self.sum[1] + vy]
        self.count += 1

    def query(self, qx, qy):
        if not (qx == 0 and qy * self.key[1] > 0):
            raise NotVerifiable("average head queries are not the cumulative pattern")
        inverse = 1.0 / (self.count - 1)                          # positions 1..p tie
        return (self.sum[0] * inverse, self.sum[1] * inverse)


def general_cache(head, count, columns=slice(None)):
    """A GeneralHead's whole past in a hull.BruteHead (SPEC 9 by definition)."""
    cache = hull.BruteHead(head.latest)
    for i in range(count):
        cache.insert(float(head.store["kx"][i]), float(head.store["ky"][i]), *head.store["v"][i, columns].tolist())
    return cache


def as_caches(state):
    """wasmtf.step's caches (per layer, (insert, query) per active head) holding the
    state's committed positions."""
    make = {"position": PositionCache, "column": ColumnCache, "cumulative": CumulativeCache,
            "general": general_cache}
    caches = []
    for heads, sharing in zip(state.heads, state.sharing):
        caches.append([None] * sum(len(shared.heads) for shared in sharing))
        for head, shared in zip(heads, sharing):
            for j, a in enumerate(shared.heads):                   # each its own cache from here
                cache = make[head.kind](head, state.position, slice(2 * j, 2 * j + 2))
                caches[-1][a] = (cache.insert, cache.query)
    return caches


# ---------------------------------------------------------------------------
# 4. Verification and speculative generation
# ---------------------------------------------------------------------------

def check_draft(state, ids, n_prompt, chunk, progress=None, last=True):
    """Advance `state` over ids, the tokens of positions state.position, state.position + 1, ...
    (all of them if `last`, else all but the last, which the next call starts with), in chunks,
    checking that the greedy token after each position from n_prompt - 1 on is the next id.
    Returns (agreed, token id): at the first disagreement (False, the transformer's token
    there), the state having committed the positions up to it; else (True, the transformer's
    token after the last id if `last`, else None), all positions committed."""
    base = state.position
    advanced = len(ids) if last else len(ids) - 1                 # positions to run through the layers
    token_id = None
    for start in range(0, advanced, chunk):
        end = min(start + chunk, advanced)
        predicted = state.advance(ids[start:end])                 # [C]: after positions base+start..base+end-1
        # position base + i predicts ids[i + 1]; only predictions after the prompt are checked
        checked = np.arange(max(start, n_prompt - 1 - base), min(end, len(ids) - 1))
        wrong = checked[predicted[checked - start] != ids[checked + 1]]
        if len(wrong):
            i = int(wrong[0])                                     # the first disagreement
            if i + 1 < end:                                       # redo the chunk up to it only
                state.advance(ids[start:i + 1])
            state.commit()
            return False, int(predicted[i - start])
        state.commit()
        token_id = int(predicted[-1])
        if progress is not None:
            progress(max(0, base + end - n_prompt))
    return True, (token_id if last else None)


def verify(model, prompt, draft, chunk=CHUNK, plan=None, progress=None):
    """(accepted, token): how many leading draft tokens are the transformer's greedy
    tokens after `prompt`, and, on a mismatch, the transformer's own token at draft
    index `accepted` (None if the whole draft is accepted). Falls back to sequential
    decoding if the keys lose the structure the fast heads need."""
    state = BatchState(model, plan)
    ids = np.array(wasmtf.encode(model, list(prompt) + list(draft)), dtype=np.int64)
    try:
        agreed, token = check_draft(state, ids, len(prompt), chunk, progress)
        return state.position - len(prompt), (None if agreed else model["vocab"][token])
    except NotVerifiable:                                         # decode sequentially and compare
        generated = wasmtf.generate(model, prompt, max_new_tokens=len(draft), plan=plan, progress=progress)
        accepted = next((i for i, (a, b) in enumerate(zip(generated, draft)) if a != b), len(generated))
        return accepted, (generated[accepted] if accepted < len(draft) and accepted < len(generated) else None)


def generate_speculative(model, prompt, draft, max_new_tokens=wasmtf.DEFAULT_MAX_NEW_TOKENS,
                         chunk=CHUNK, plan=None, progress=None):
    """Exactly wasmtf.generate(model, prompt, max_new_tokens=...): the transformer's
    greedy tokens after the prompt, up to and including a stop token. The draft (a
    token list, or an iterable of token lists drafted on demand; the reference trace
    is best) is checked in chunks, each piece as it comes, so that only the verified
    state and one piece are held. After the draft's end or its first wrong token,
    decoding goes on with wasmtf.step, one token at a time, on caches made from the
    verified state (as_caches). If the keys lose the structure the fast heads need,
    says so on stderr and falls back to wasmtf.generate from the start."""
    stop_ids = set(model["stop_ids"])
    index = {token: i for i, token in enumerate(model["vocab"])}
    pieces = iter([draft] if isinstance(draft, (list, tuple)) else draft)
    state = BatchState(model, plan)
    n_prompt = len(prompt)
    ids = np.array(wasmtf.encode(model, list(prompt)), dtype=np.int64)  # from position state.position on
    generated = []                                                # the accepted draft tokens
    try:
        agreed, draft_ended = True, False
        while agreed and not draft_ended:
            piece = next(pieces, None)
            draft_ended = piece is None
            piece = list(piece or [])[:max_new_tokens - len(generated)]
            piece_ids = np.array([index.get(token, -1) for token in piece], dtype=np.int64)
            # the draft ends before a token the model does not know, after a stop token, at the limit
            unknown, stops = piece_ids < 0, np.isin(piece_ids, list(stop_ids))
            cut = np.flatnonzero(unknown | stops)
            if len(cut):
                piece_ids, draft_ended = piece_ids[:cut[0] + int(stops[cut[0]])], True
            draft_ended = draft_ended or len(generated) + len(piece_ids) == max_new_tokens
            ids = np.concatenate([ids, piece_ids])
            agreed, token_id = check_draft(state, ids, n_prompt, chunk, progress, last=draft_ended)
            # agreed and not ended: every id is accepted, the last one not yet run (it starts the next ids)
            accepted = state.position + int(agreed and not draft_ended) - n_prompt
            generated += piece[:accepted - len(generated)]
            ids = ids[-1:]
        if generated and index[generated[-1]] in stop_ids:
            return generated
        caches, p = as_caches(state), state.position
        depth = sum(wasmtf.CALL_DEPTH_CHANGE.get(token, 0) for token in generated)
        while len(generated) < max_new_tokens:                    # sequential from here
            generated.append(model["vocab"][token_id])
            depth += wasmtf.CALL_DEPTH_CHANGE.get(generated[-1], 0)
            wasmtf.check_call_depth(depth, len(generated))
            if token_id in stop_ids or len(generated) == max_new_tokens:
                break
            token_id = wasmtf.next_token(state.plan, wasmtf.step(state.plan, caches, token_id, p))
            p += 1
            if progress is not None and len(generated) % wasmtf.PROGRESS_EVERY == 0:
                progress(len(generated))
        return generated
    except NotVerifiable as reason:
        print(f"wasmtf: speculative verification stopped after {state.position:,} positions ({reason}); "
              f"decoding sequentially from the start", file=sys.stderr)
        return wasmtf.generate(model, prompt, max_new_tokens=max_new_tokens, plan=plan, progress=progress)


def reference_draft_pieces(instructions, input_bytes=None, max_tokens=wasmtf.DEFAULT_MAX_NEW_TOKENS,
                           piece_steps=DRAFT_STEPS):
    """The reference interpreter's trace in pieces of piece_steps instructions, each drafted
    when the previous one has been used, until the run stops, fails (the piece then ends
    where it failed) or has written max_tokens tokens. An invalid program drafts nothing."""
    try:
        machine = reference.start(instructions, input_bytes)
    except ValueError:
        return
    drafted = 0
    while machine.status == "running" and drafted < max_tokens:
        piece, failed = draft_steps(machine, machine.steps + piece_steps)
        drafted += len(piece)
        yield piece
        if failed:
            return


def draft_steps(machine, max_steps):
    """Run the reference machine on to max_steps instructions in all: (the tokens it wrote,
    taken out of machine.trace; whether it failed: stack underflow, call stack exhausted,
    a bad `return`)."""
    try:
        reference.advance(machine, max_steps)
        failed = False
    except (reference.ExecutionError, ValueError):
        failed = True
    piece, machine.trace = machine.trace, []
    return piece, failed


def reference_draft(instructions, input_bytes=None, max_steps=reference.DEFAULT_MAX_STEPS):
    """The reference interpreter's trace as one draft list (what it wrote until it stopped,
    failed or reached max_steps instructions)."""
    try:
        machine = reference.start(instructions, input_bytes)
    except ValueError:
        return []
    return draft_steps(machine, max_steps)[0]


def program_of_prompt(prompt):
    """(instructions, input bytes) if the prompt is a program's (SPEC 2.1, with its input
    section), else None."""
    try:
        instructions, input_bytes = reference.parse_program(" ".join(prompt))
    except ValueError:
        return None
    if reference.program_tokens(instructions, input_bytes) != list(prompt):
        return None
    return instructions, input_bytes


def draft_pieces_for_prompt(prompt, max_tokens=wasmtf.DEFAULT_MAX_NEW_TOKENS):
    """A draft for any prompt, in pieces: the reference trace if the prompt is a program's,
    otherwise nothing (plain sequential decoding)."""
    program = program_of_prompt(prompt)
    return iter([]) if program is None else reference_draft_pieces(*program, max_tokens=max_tokens)


def draft_for_prompt(prompt, max_steps=reference.DEFAULT_MAX_STEPS):
    """draft_pieces_for_prompt as one list, of at most max_steps instructions."""
    program = program_of_prompt(prompt)
    return [] if program is None else reference_draft(*program, max_steps=max_steps)


def generate(model, prompt, max_new_tokens=wasmtf.DEFAULT_MAX_NEW_TOKENS, plan=None, progress=None,
             program=None):
    """wasmtf.generate's tokens, the reference interpreter drafting the trace of a program
    prompt, or of `program` = (instructions, input bytes) (a specialized prompt does not
    hold its program), piece by piece as verification needs it."""
    if program is None:
        draft = draft_pieces_for_prompt(prompt, max_new_tokens)
    else:
        draft = reference_draft_pieces(*program, max_tokens=max_new_tokens)
    return generate_speculative(model, prompt, draft, max_new_tokens, plan=plan, progress=progress)


def run_program(model, instructions, input_bytes=None, max_new_tokens=wasmtf.DEFAULT_MAX_NEW_TOKENS,
                chunk=CHUNK, plan=None, progress=None):
    """wasmtf.run_program's (prompt tokens, trace tokens), drafting with the reference interpreter."""
    prompt = wasmtf.program_prompt(model, instructions, input_bytes)
    draft = reference_draft_pieces(instructions, input_bytes, max_new_tokens)
    return prompt, generate_speculative(model, prompt, draft, max_new_tokens, chunk, plan, progress)
