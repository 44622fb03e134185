"""HullHead against BruteHead (the SPEC section 9 definition), op for op.

Every test interleaves inserts and queries on both heads and asserts the same
(vx, vy), bit for bit. Coordinates are chosen inside the ranges where the
module docstring claims exactness: tiny integer ranges force exact ties,
duplicates, collinear keys, equal kx, qy == 0 and qy < 0; the parabolic keys
(2k, -k^2 + recency) are the machine's, up to k = 2^25 with queries scaled by
HARD_K*sqrt(2), and the machine's memory heads with their cleared keys.
The machine's keys run on the parabolic path and, with PARABOLIC_PATH off,
on the general path; the parabolic path also with forced ties on tiny
ranges, sparse columns, every condition that makes it leave. About 650,000
operations in all (about 160,000 with `_check()` after every insert, many of
them with tiny blocks on the general path). The last part checks
causal_hard_attention (all positions at once) the same way.
"""
import math
import random

import numpy as np
import pytest

import hull
from hull import BruteHead, HullHead

QUERY_SCALE = 1.4142135623730951e10   # HARD_K * sqrt(2), as the compiled query rows
INV_LN2 = 1.0 / math.log(2.0)
MAX_K = 2 ** 25                       # SPEC 10: keys stay below 2^25..2^26


def recency(position):
    """0.3 * inv_log_pos, the latest-write tie breaker of the machine's keys."""
    return 0.3 * (INV_LN2 - 1.0 / math.log(position + 2))


def run(ops, latest, check_every_insert=False):
    """Apply ops ('i', kx, ky, vx, vy) / ('q', qx, qy) to both heads; compare."""
    fast = HullHead(latest)
    brute = BruteHead(latest)
    for op in ops:
        if op[0] == "i":
            fast.insert(*op[1:])
            brute.insert(*op[1:])
            if check_every_insert:
                fast._check()
        else:
            got = fast.query(*op[1:])
            want = brute.query(*op[1:])
            assert got == want, f"query {op[1:]} after {len(brute)} keys: hull {got}, brute {want}"
    fast._check()
    assert len(fast) == len(brute)
    return fast


def tiny_integer_ops(rng, n_ops, key_range, query_range):
    """Random integer keys in a tiny box, often repeated; queries of every sign,
    with extra queries perpendicular to the difference of two stored keys
    (ties along a hull edge) and axis-aligned ones."""
    keys = []
    ops = []
    for _ in range(n_ops):
        kind = rng.random()
        if kind < 0.45 or not keys:
            if keys and rng.random() < 0.2:
                key = rng.choice(keys)                      # exact duplicate
            else:
                key = (float(rng.randint(-key_range, key_range)),
                       float(rng.randint(-key_range, key_range)))
            keys.append(key)
            ops.append(("i", *key, float(rng.randint(-8, 8)), float(rng.randint(-8, 8))))
        elif kind < 0.65 and len(keys) >= 2:
            (ax, ay), (bx, by) = rng.sample(keys, 2)
            sign = rng.choice((1.0, -1.0))
            ops.append(("q", sign * (ay - by), sign * (bx - ax)))   # perpendicular to b - a
        elif kind < 0.72:
            ops.append(("q", float(rng.randint(-query_range, query_range)), 0.0))
        else:
            ops.append(("q", float(rng.randint(-query_range, query_range)),
                        float(rng.randint(-query_range, query_range))))
    return ops


@pytest.mark.parametrize("latest", [False, True])
def test_tiny_integers_with_check_after_every_insert(latest):
    rng = random.Random(1337 + latest)
    for _ in range(150):                                    # ~30,000 ops per mode
        ops = tiny_integer_ops(rng, 200, key_range=rng.choice((1, 2, 3, 6)), query_range=4)
        run(ops, latest, check_every_insert=True)


@pytest.mark.parametrize("latest", [False, True])
def test_tiny_integers_long_runs(latest):
    rng = random.Random(2024 + latest)
    for key_range in (2, 5, 20, 100):                       # ~48,000 ops per mode
        run(tiny_integer_ops(rng, 12_000, key_range, query_range=30), latest)


@pytest.mark.parametrize("latest", [False, True])
def test_collinear_keys_average_every_key_on_the_edge(latest):
    """Keys on a few lines through the box; queries perpendicular to the lines."""
    rng = random.Random(7 + latest)
    for _ in range(40):                                     # ~16,000 ops per mode
        base = (rng.randint(-5, 5), rng.randint(-5, 5))
        direction = rng.choice(((1, 0), (0, 1), (1, 1), (2, -1), (1, 3)))
        ops = []
        for _ in range(400):
            if rng.random() < 0.5:
                t = rng.randint(-6, 6)
                offset = rng.choice((0, 0, 0, -1, 1))       # mostly on the line
                ops.append(("i", float(base[0] + t * direction[0] + offset),
                            float(base[1] + t * direction[1]), float(rng.randint(0, 5)), 1.0))
            else:
                sign = rng.choice((1, -1, 2))
                ops.append(("q", float(-sign * direction[1]), float(sign * direction[0])))
        run(ops, latest)


def test_hand_examples():
    head = HullHead(latest=False)
    assert head.query(1.0, 1.0) == (0.0, 0.0)               # empty head
    head.insert(0.0, 1.0, 2.0, 4.0)
    head.insert(0.0, 1.0, 4.0, 0.0)                         # duplicate: averaged
    head.insert(1.0, 0.0, 9.0, 9.0)
    head.insert(2.0, -1.0, 3.0, 3.0)                        # collinear with the others
    assert head.query(1.0, 1.0) == (4.5, 4.0)               # all four tie: (18, 16) / 4
    assert head.query(0.0, 1.0) == (3.0, 2.0)
    assert head.query(1.0, 0.0) == (3.0, 3.0)               # max kx column
    assert head.query(-1.0, 0.0) == (3.0, 2.0)              # min kx column
    assert head.query(0.0, 0.0) == (4.5, 4.0)               # everything
    assert head.query(1.0, -1.0) == (3.0, 3.0)              # lower hull: (2, -1)
    latest = HullHead(latest=True)
    for seq, key in enumerate([(0.0, 1.0), (1.0, 0.0), (0.0, 1.0), (1.0, -5.0)]):
        latest.insert(*key, float(seq), 0.0)
    assert latest.query(1.0, 1.0) == (2.0, 0.0)             # (0, 1) twice and (1, 0) tie
    assert latest.query(1.0, 0.0) == (3.0, 0.0)             # kx = 1 column, any ky
    assert latest.query(-1.0, -1.0) == (3.0, 0.0)
    assert len(latest) == 4


def parabolic_ops(rng, n_keys, low_k, addresses, start_position, steps=(1,)):
    """The machine's keys (2k, -k^2 + recency(p)) with positions p increasing by
    `steps`: k is the position itself (addresses=None: increasing kx) or one of
    `addresses` values from low_k (an address or a depth: any order, repeated).
    Increasing k sometimes stays (a depth that did not move): equal-k keys.
    Early positions at large k give equal-k keys whose ky differ by an ulp or
    two: their scores can tie in float. Queries c*(k*, 1) look for a stored k,
    a missing one, or halfway between two."""
    ops = []
    ks = []
    position = start_position
    k = low_k
    for _ in range(n_keys):
        position += rng.choice(steps)
        if addresses is None:
            k += rng.choice((0, 1, 1, 2, 5))             # 0: a column, in kx order
        else:
            k = low_k + rng.randrange(addresses)
        ks.append(k)
        ops.append(("i", 2.0 * k, -float(k * k) + recency(position),
                    float(rng.randint(0, 255)), float(rng.randint(0, 3))))
        for _ in range(2):
            target = rng.choice(ks) + rng.choice((0, 0, 0, 1, -1, 0.5, -0.5, 40))
            scale = rng.choice((QUERY_SCALE, QUERY_SCALE, 1.0, 3.0))
            ops.append(("q", scale * target, scale))
        if rng.random() < 0.05:
            ops.append(("q", rng.choice((1.0, -1.0, 0.0)), rng.choice((0.0, -QUERY_SCALE))))
    return ops


PARABOLIC_CASES = [  # (low_k, addresses, start_position, position steps)
    (0, None, 0, (1,)),
    (MAX_K - 30_000, None, 10 ** 6, (1, 7, 1000)),
    (2 ** 24 - 1000, None, 0, (1,)),
    (2 ** 20, 20, 0, (1,)),
    (2 ** 24 - 1000, 30, 0, (1,)),
    (MAX_K - 300, 300, 0, (1, 2)),
    (-MAX_K, 300, 10 ** 6, (1, 7, 1000)),
]


@pytest.mark.parametrize("parabolic_path", [False, True])
@pytest.mark.parametrize("latest", [False, True])
@pytest.mark.parametrize("low_k, addresses, start_position, steps", PARABOLIC_CASES)
def test_parabolic_keys(latest, low_k, addresses, start_position, steps, parabolic_path, monkeypatch):
    """On the general path (parabolic_path False), and on the parabolic
    path until the first query with qy <= 0 moves the keys to the general paths."""
    monkeypatch.setattr(hull, "PARABOLIC_PATH", parabolic_path)
    rng = random.Random(99 + latest + low_k)
    run(parabolic_ops(rng, 3000, low_k, addresses, start_position, steps), latest)


@pytest.mark.parametrize("latest", [False, True])
@pytest.mark.parametrize("low_k, addresses, start_position, steps", PARABOLIC_CASES)
def test_parabolic_keys_on_the_parabolic_path(latest, low_k, addresses, start_position, steps):
    """The same keys and qy > 0 queries only: the parabolic path all along."""
    rng = random.Random(98 + latest + low_k)
    ops = [op for op in parabolic_ops(rng, 3000, low_k, addresses, start_position, steps)
           if op[0] == "i" or op[2] > 0]
    assert hull.PARABOLIC_PATH and run(ops, latest)._slots is not None


@pytest.mark.parametrize("parabolic_path", [False, True])
@pytest.mark.parametrize("latest", [False, True])
def test_parabolic_keys_check_after_every_insert(latest, parabolic_path, monkeypatch):
    monkeypatch.setattr(hull, "PARABOLIC_PATH", parabolic_path)
    rng = random.Random(5 + latest)
    run(parabolic_ops(rng, 500, 2 ** 24, 40, 0), latest, check_every_insert=True)


@pytest.mark.parametrize("latest", [False, True])
def test_large_exact_integers(latest):
    """Integer keys and queries up to 2^25: every product and sum is exact."""
    rng = random.Random(42 + latest)
    ops = []
    for _ in range(10_000):
        if rng.random() < 0.5:
            ops.append(("i", float(rng.randint(-MAX_K, MAX_K)), float(rng.randint(-MAX_K, MAX_K)),
                        float(rng.randint(-8, 8)), 1.0))
        else:
            ops.append(("q", float(rng.randint(-MAX_K, MAX_K)), float(rng.randint(-MAX_K, MAX_K))))
    run(ops, latest)


@pytest.mark.parametrize("latest", [False, True])
def test_tiny_block_load_splits_and_empties_blocks(latest, monkeypatch):
    """A block load of 2 makes the general path's chains split blocks and delete
    emptied ones at every few inserts, on hulls with forced ties."""
    monkeypatch.setattr(hull, "_LOAD", 2)
    monkeypatch.setattr(hull, "PARABOLIC_PATH", False)
    rng = random.Random(11 + latest)
    for key_range in (1, 3, 50):
        ops = tiny_integer_ops(rng, 500, key_range, query_range=10)
        run(ops, latest, check_every_insert=True)
    run(parabolic_ops(rng, 300, 2 ** 22, 200, 0), latest, check_every_insert=True)
    run(parabolic_ops(rng, 300, 0, None, 0), latest, check_every_insert=True)   # increasing kx


def machine_memory_ops(rng, n_steps, addresses, first_positions):
    """A memory head of the machine: first `first_positions` keys in position
    order, then writes (2k, -k^2 + recency) to random addresses
    k and cleared keys (2k, -1e30), queries c*(k*, 1) for written, missing and halfway addresses."""
    ops = []
    written = [0]
    for position in range(n_steps):
        if position < max(first_positions, 1):
            k = position
        else:
            k = rng.randrange(addresses)
        if position >= max(first_positions, 1) and rng.random() < 0.6:   # position 0: (0, 0) as the machine
            ops.append(("i", 2.0 * k, -1e30, 0.0, 0.0))             # cleared: a duplicate key mostly
        else:
            ops.append(("i", 2.0 * k, -float(k * k) + recency(position), float(rng.randint(0, 255)), 1.0))
            written.append(k)
        target = rng.choice(written) + rng.choice((0, 0, 0.5, -0.5, 1, 7))
        ops.append(("q", QUERY_SCALE * target, QUERY_SCALE))
    return ops


@pytest.mark.parametrize("parabolic_path", [False, True])
@pytest.mark.parametrize("latest", [False, True])
def test_machine_memory_keys_with_cleared_keys(latest, parabolic_path, monkeypatch):
    monkeypatch.setattr(hull, "_LOAD", 3)
    monkeypatch.setattr(hull, "PARABOLIC_PATH", parabolic_path)
    rng = random.Random(31 + latest)
    for addresses, first_positions in ((5, 0), (40, 30), (400, 100)):
        fast = run(machine_memory_ops(rng, 1500, addresses, first_positions), latest,
                   check_every_insert=addresses < 400)
        assert (fast._slots is not None) == parabolic_path  # the parabolic path all along, or never


def tiny_parabolic_ops(rng, n_ops, ks, recencies, cleared):
    """Keys (2k, -k^2 + d) for k in `ks` and d in `recencies` (a few exact
    binary fractions: duplicates, equal d in neighbouring columns, new keys
    below their column's top), cleared keys (2k, ky < -2^90) at rate `cleared`
    after the first key,
    queries qy * (t, 1) for t an integer, a half-integer (exact ties between
    two columns) or near one, qy a small integer or QUERY_SCALE."""
    ops = []
    for _ in range(n_ops):
        if rng.random() < 0.5:
            k = rng.choice(ks)
            if any(op[0] == "i" for op in ops) and rng.random() < cleared:   # after a column
                ops.append(("i", 2.0 * k, rng.choice((-1e30, -2.0 ** 91)), float(rng.randint(0, 3)), 1.0))
            else:
                ops.append(("i", 2.0 * k, -float(k * k) + rng.choice(recencies),
                            float(rng.randint(-4, 4)), float(rng.randint(0, 3))))
        else:
            t = rng.choice(ks) + rng.choice((0, 0, 0.5, -0.5, 0.125, -0.375, 3, -9, 2 ** 31, -2 ** 39))
            qy = rng.choice((1.0, 2.0, 3.0, 8.0, QUERY_SCALE))
            ops.append(("q", qy * t, qy) if rng.random() < 0.98 else ("q", 0.0, 0.0))   # (0, 0): all tie
    return ops


@pytest.mark.parametrize("latest", [False, True])
def test_parabolic_path_tiny_ranges_with_ties(latest):
    """The parabolic path with forced ties, `_check()` after every insert: it
    never leaves the path (every key and query meets its conditions)."""
    rng = random.Random(71 + latest)
    recency_sets = ((0.0,), (0.0, 0.25), (0.0, 0.125, 0.25, 0.375, 0.4375), (0.3, 0.1))
    for _ in range(120):                                    # ~24,000 ops per mode
        low = rng.choice((0, 0, -3, 1000, 2 ** 22, 2 ** 24 - 5))
        ks = range(low, low + rng.choice((1, 2, 3, 6)))
        ops = tiny_parabolic_ops(rng, 200, ks, rng.choice(recency_sets), cleared=rng.choice((0.0, 0.3)))
        assert run(ops, latest, check_every_insert=True)._slots is not None


@pytest.mark.parametrize("latest", [False, True])
def test_parabolic_path_isolated_float_ties_under_a_top(latest):
    """Columns near +-ISOLATED_K holding keys whose ky differ by an ulp (2^-7), so
    that queries qy * (k, 1) with qy ~ 2^40 tie them in float: the isolated answer
    with the keys under the top, each insert a new top (latest mode: the top
    answers alone) or each a key under the top, newer than it."""
    rng = random.Random(12 + latest)
    ulp = 2.0 ** -7                                         # of ky ~ -2^46
    for new_tops in (True, False):
        for sign in (1, -1):
            ks = [sign * (hull.ISOLATED_K - offset) for offset in range(4)]
            ops, ties = [], 0
            for step in range(40):
                for k in ks:
                    d = 0.25 + (step if new_tops else 39 - step) * ulp / 2
                    ops.append(("i", 2.0 * k, -float(k * k) + d, float(rng.randint(0, 9)), 1.0))
                    for _ in range(3):
                        qy = rng.choice((QUERY_SCALE, 1.3 * 2.0 ** 40, 2.0 ** 41))
                        ops.append(("q", qy * rng.choice(ks), qy))
            fast = run(ops, latest)
            assert fast._slots is not None and fast._tops_latest == (latest and new_tops)
            brute = BruteHead(latest)
            for op in ops:                                  # the float ties do happen
                if op[0] == "i":
                    brute.insert(*op[1:])
                else:
                    kx, ky = brute._columns[0, :len(brute)], brute._columns[1, :len(brute)]
                    scores = op[1] * kx + op[2] * ky
                    ties += len(set(ky[scores == scores.max()].tolist())) > 1
            assert ties > 50, ties


@pytest.mark.parametrize("latest", [False, True])
def test_parabolic_path_gaps_and_growth(latest):
    """Sparse columns (long runs of empty slots the walks jump over), queries
    far from every column, slots growing to the left and the right."""
    rng = random.Random(17 + latest)
    for _ in range(30):
        centre = rng.choice((0, 5000, -70_000, 2 ** 23 - 9000))
        ks = [centre + rng.randint(-9000, 9000) for _ in range(rng.choice((2, 5, 40)))]
        ops = tiny_parabolic_ops(rng, 300, ks, (0.0, 0.25, 0.375), cleared=0.2)
        ops += [("q", QUERY_SCALE * (centre + rng.randint(-20_000, 20_000)), QUERY_SCALE) for _ in range(50)]
        assert run(ops, latest, check_every_insert=True)._slots is not None


@pytest.mark.parametrize("latest", [False, True])
def test_parabolic_path_random_order_up_to_the_slot_limit(latest, monkeypatch):
    """Addresses in random order over the whole range the slots may take (the
    doubling's empty margins go when the slots grow the other way)."""
    monkeypatch.setattr(hull, "SLOT_FLOOR", 4 * hull.SLOT_CHUNK)
    rng = random.Random(8 + latest)
    for _ in range(4):
        ks = [rng.randrange(4 * hull.SLOT_CHUNK) for _ in range(300)]
        ops = []
        for position, k in enumerate(ks):
            ops.append(("i", 2.0 * k, -float(k * k) + recency(position), float(position), 1.0))
            ops.append(("q", QUERY_SCALE * (rng.choice(ks[:position + 1]) + rng.choice((0, 0.5, 3))), QUERY_SCALE))
        assert run(ops, latest, check_every_insert=True)._slots is not None


@pytest.mark.parametrize("latest", [False, True])
def test_parabolic_path_leaves_for_the_general_paths(latest, monkeypatch):
    """Each condition the parabolic path needs, broken once after a run of its
    keys: the keys move to the general path, and answers stay the scan's."""
    monkeypatch.setattr(hull, "SLOT_FLOOR", hull.SLOT_CHUNK)
    rng = random.Random(55 + latest)
    breaks = [
        ("i", 3.0, -2.25, 1.0, 1.0),                        # kx not even
        ("i", 4.0, -4.0 + 0.5, 1.0, 1.0),                   # recency >= RECENCY_LIMIT
        ("i", 4.0, -4.0 - 0.25, 1.0, 1.0),                  # recency < 0, not a cleared key
        ("i", 2.0 * (2 ** 25 + 1), -float((2 ** 25 + 1) ** 2), 1.0, 1.0),   # |k| > 2^25
        ("i", 2.0 * 10 ** 6, -1e12, 1.0, 1.0),              # too sparse for the slots
        ("i", 2.0 ** 27, -1e30, 1.0, 1.0),                  # a cleared key too far out
        ("q", 1.0, -1.0), ("q", 1.0, 0.0), ("q", -1.0, 0.0), ("q", -0.0, -1.0),
        ("q", 2.0 ** 41, 1.0),                               # the peak beyond RATIO_LIMIT
    ]
    for broken in breaks:
        for first in (0, 40):                               # the path's keys in kx order or not
            ks = list(range(first, first + 30))
            if first:
                rng.shuffle(ks)
            ops = []
            for position, k in enumerate(ks):
                ops.append(("i", 2.0 * k, -float(k * k) + recency(position), float(k), 1.0))
                ops.append(("q", QUERY_SCALE * rng.choice(ks), QUERY_SCALE))
            ops.append(broken)
            ops += tiny_integer_ops(rng, 100, 40, query_range=9)
            fast = run(ops, latest, check_every_insert=True)
            assert fast._slots is None, broken
    fast = run([("i", 2.0, -1e30, 1.0, 1.0), ("i", 4.0, -1e30, 3.0, 1.0)], latest)
    assert fast._slots is not None                          # cleared keys, no column yet:
    assert fast.query(1.0, 1.0) == ((3.0, 1.0) if latest else (2.0, 1.0))   # a query leaves (a tie)
    assert fast._slots is None


# ---------------------------------------------------------------------------
# causal_hard_attention: every position at once, against the sequential scan.

def brute_all_positions(keys, values, queries, latest):
    brute = BruteHead(latest)
    answers = []
    for key, value, query in zip(keys, values, queries):
        brute.insert(*key, *value)
        answers.append(brute.query(*query))
    return answers


def arrays_from_ops(ops):
    """Each insert with the query that follows it ((0, 1) if none)."""
    keys, values, queries = [], [], []
    for op in ops:
        if op[0] == "i":
            keys.append(op[1:3])
            values.append(op[3:5])
            queries.append((0.0, 1.0))
        elif keys:
            queries[-1] = op[1:3]
    return np.array(keys), np.array(values), np.array(queries)


def check_offline(keys, values, queries, latest):
    got = hull.causal_hard_attention(keys, values, queries, latest)
    want = brute_all_positions(keys, values, queries, latest)
    assert got.shape == (len(keys), 2)
    for position, (row, expected) in enumerate(zip(got.tolist(), want)):
        assert tuple(row) == expected, f"position {position}, query {queries[position]}"


@pytest.mark.parametrize("latest", [False, True])
def test_causal_hard_attention_tiny_integers(latest):
    rng = np.random.default_rng(8 + latest)
    for _ in range(20):                                     # ~4,000 positions per case
        n = int(rng.integers(1, 400))
        box = int(rng.choice([1, 2, 3, 10]))
        keys = rng.integers(-box, box + 1, size=(n, 2)).astype(np.float64)
        values = rng.integers(-8, 9, size=(n, 2)).astype(np.float64)
        queries = rng.integers(-4, 5, size=(n, 2)).astype(np.float64)
        check_offline(keys, values, queries, latest)
    rng = random.Random(latest)
    for _ in range(6):                                      # perpendicular queries, duplicates
        check_offline(*arrays_from_ops(tiny_integer_ops(rng, 600, rng.choice((1, 3, 6)), 4)),
                      latest)


@pytest.mark.parametrize("latest", [False, True])
def test_causal_hard_attention_parabolic_keys(latest):
    rng = random.Random(17 + latest)
    for low_k, addresses, start_position, steps in PARABOLIC_CASES:
        ops = parabolic_ops(rng, 1500, low_k, addresses, start_position, steps)
        check_offline(*arrays_from_ops(ops), latest)


def test_causal_hard_attention_collinear_runs():
    rng = random.Random(4)
    steps = np.array([rng.randint(-50, 50) for _ in range(3000)], dtype=np.float64)
    offsets = np.array([rng.choice((0, 0, 0, 1, -1)) for _ in range(3000)], dtype=np.float64)
    keys = np.stack([3 * steps + offsets, -2 * steps], axis=1)          # on or next to a line
    values = np.array([[rng.randint(0, 5), 1] for _ in range(3000)], dtype=np.float64)
    queries = np.array([rng.choice(((2, 3), (-2, -3), (4, 6), (1, 1), (1, 0)))
                        for _ in range(3000)], dtype=np.float64)         # perpendicular to it
    for latest in (False, True):
        check_offline(keys, values, queries, latest)


def test_causal_hard_attention_empty():
    nothing = np.zeros((0, 2))
    assert hull.causal_hard_attention(nothing, nothing, nothing, latest=True).shape == (0, 2)
