"""Speculative verification (speculative.py) against sequential decoding and the reference.

* every spec example and random programs: speculative generation = sequential
  greedy decoding (wasmtf.generate, hull cache) = the reference trace, token for
  token, with big chunks and with tiny ones (chunk boundaries everywhere);
* corrupted drafts: one wrong token at a random place is found at exactly that
  place, and the result is still the sequential one; truncated drafts and
  max_new_tokens;
* the batched attention heads against hull.BruteHead (SPEC 9 by definition) on
  random keys: tiny integer ranges (forced ties), both tie modes, qy == 0 and
  qy < 0 (the general head), and the machine's key shapes with forced exact ties
  (position, column and cumulative heads), in small chunks, each also as three
  heads sharing its keys (two of them their queries too);
* the grouped feed-forward (gates proven closed left out) against the dense one
  for any grouping, and the batched predictions at EVERY position of drafts that
  switch to another gadget's path (division -> multiplication) against the dense
  batched forward pass (wasmtf.forward_batch): the draft never decides what is computed;
* distinct_next_tokens against wasmtf.next_tokens, a hash collision included.
About 30 s on a busy machine; the C examples end to end are `slow`.
"""
import random

import numpy as np
import pytest

from conftest import EXAMPLES_DIR, REPO
import compile_weights
import hull
import program_generator
import reference
import speculative
import wasmtf

EXAMPLES = (sorted(EXAMPLES_DIR.glob("ex*_ref.txt")) + sorted(EXAMPLES_DIR.glob("random/*_ref.txt"))
            + sorted(EXAMPLES_DIR.glob("official_model_divergences/*_ref.txt")))
QUERY_SCALE = compile_weights.QUERY_SCALE
FAST_SUBSET = sorted(EXAMPLES_DIR.glob("ex*_ref.txt"))[:3] + sorted(EXAMPLES_DIR.glob("random/*_ref.txt"))[:1]
SMALL_CHUNK = 7      # a chunk boundary every few tokens


@pytest.fixture(scope="module")
def model():
    return compile_weights.compile_machine()


@pytest.fixture(scope="module")
def plan(model):
    return wasmtf.prepare(model)


def example(path):
    instructions, input_bytes, trace = reference.parse_trace_file(path.read_text())
    return reference.program_tokens(instructions, input_bytes), trace


# ---------------------------------------------------------------------------
# Whole traces

@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_speculative_equals_reference(model, plan, path):
    """(tests/test_machine.py checks sequential decoding = reference on the same files)"""
    prompt, expected = example(path)
    assert speculative.verify(model, prompt, expected, plan=plan) == (len(expected), None)
    assert speculative.generate_speculative(model, prompt, expected, plan=plan) == expected


@pytest.mark.parametrize("path", FAST_SUBSET, ids=lambda p: p.stem)
def test_speculative_equals_sequential_in_tiny_chunks(model, plan, path):
    prompt, expected = example(path)
    assert wasmtf.generate(model, prompt, plan=plan) == expected
    assert speculative.generate_speculative(model, prompt, expected, chunk=SMALL_CHUNK, plan=plan) == expected


def test_the_machine_uses_the_fast_heads(model, plan):
    prompt, expected = example(EXAMPLES_DIR / "ex3_call_input_ref.txt")
    state = speculative.BatchState(model, plan)
    ids = wasmtf.encode(model, prompt + expected)
    state.advance(ids)
    kinds = [kind for layer in state.kinds() for kind in layer]
    assert "general" not in kinds
    assert {"position", "column", "cumulative"} == set(kinds)


@pytest.mark.parametrize("seed", range(3))
def test_random_programs(model, plan, seed):
    rng = random.Random(seed)
    instructions, input_bytes = program_generator.random_program(rng, n_instructions=40)
    expected = reference.run_reference(instructions, input_bytes)
    prompt = reference.program_tokens(instructions, input_bytes)
    assert wasmtf.generate(model, prompt, plan=plan) == expected
    for chunk in (speculative.CHUNK, 5 * SMALL_CHUNK):
        _, trace = speculative.run_program(model, instructions, input_bytes, chunk=chunk, plan=plan)
        assert trace == expected


def corrupt(rng, trace, index):
    """The trace with token `index` replaced by another token of the vocabulary."""
    wrong = trace[index]
    while wrong == trace[index]:
        wrong = rng.choice(reference.VOCAB)
    return trace[:index] + [wrong] + trace[index + 1:]


@pytest.mark.parametrize("seed", range(6))
def test_a_corrupted_draft_token_is_found_where_it_is(model, plan, seed):
    rng = random.Random(100 + seed)
    paths = [EXAMPLES_DIR / "ex3_call_input_ref.txt", EXAMPLES_DIR / "ex2_loop_memory_ref.txt"]
    prompt, expected = example(paths[seed % 2])
    index = rng.randrange(len(expected))
    draft = corrupt(rng, expected, index)
    chunk = rng.choice([5 * SMALL_CHUNK, 64, speculative.CHUNK])
    assert speculative.verify(model, prompt, draft, chunk=chunk, plan=plan) == (index, expected[index])
    assert speculative.generate_speculative(model, prompt, draft, chunk=chunk, plan=plan) == expected


def test_short_drafts_and_token_limits(model, plan):
    prompt, expected = example(EXAMPLES_DIR / "ex2_loop_memory_ref.txt")
    for cut in (0, 1, 100, len(expected) - 1):   # the rest is decoded token by token
        assert speculative.generate_speculative(model, prompt, expected[:cut], plan=plan) == expected
    for limit in (0, 1, 57, len(expected), len(expected) + 5):
        assert (speculative.generate_speculative(model, prompt, expected, max_new_tokens=limit, plan=plan)
                == wasmtf.generate(model, prompt, max_new_tokens=limit, plan=plan))
    # tokens after a stop token in the draft are ignored, and so is a draft's tail
    # from a token the model does not know
    assert speculative.generate_speculative(model, prompt, expected + ["00", "halt"], plan=plan) == expected
    assert speculative.generate_speculative(model, prompt, expected[:9] + ["nonsense"] + expected[10:],
                                            plan=plan) == expected


def test_draft_for_prompt(model, plan):
    prompt, expected = example(EXAMPLES_DIR / "ex3_call_input_ref.txt")
    assert speculative.draft_for_prompt(prompt) == expected
    assert speculative.draft_for_prompt(["{", "3", "5"]) == []
    assert speculative.draft_for_prompt(prompt[:-3]) == []     # a cut input section


def test_a_program_that_runs_off_its_end(model, plan):
    instructions = [("i32.const", 7), ("output", 0)]          # no halt: the reference stops
    draft = speculative.reference_draft(instructions)
    prompt = reference.program_tokens(instructions)
    want = wasmtf.generate(model, prompt, max_new_tokens=len(draft) + 40, plan=plan)
    got = speculative.generate_speculative(model, prompt, draft, max_new_tokens=len(draft) + 40, plan=plan)
    assert got == want


def copy_model_variants():
    """wasmtf.copy_model (a position head) and two variants that need a GeneralHead:
    average tie mode, and keys (2j, -j^2 + 0.6) (recency term out of range)."""
    plain = wasmtf.copy_model()
    average = wasmtf.copy_model()
    average["layers"][0]["tie_latest"][:] = False
    shifted = wasmtf.copy_model()
    D = shifted["embed"].shape[1]
    shifted["layers"][0]["w_qkv"][D + 1, 3] = 0.6            # ky += 0.6 * one
    return [("position", plain), ("general", average), ("general", shifted)]


@pytest.mark.parametrize("kind, toy", copy_model_variants(), ids=["plain", "average", "shifted"])
def test_copy_model_and_general_heads(kind, toy):
    prompt = ["{", "3", "5"]
    expected = wasmtf.generate(toy, prompt)
    assert expected == "4 6 5 7 6 8 7 9 8 halt".split()
    state = speculative.BatchState(toy)
    state.advance(wasmtf.encode(toy, prompt + expected))
    assert state.kinds() == [[kind]]
    for draft in (expected, expected[:4], [], expected[:2] + ["9"] + expected[3:]):
        assert speculative.generate_speculative(toy, prompt, draft, chunk=2) == expected
    assert speculative.verify(toy, prompt, expected[:5] + ["0"]) == (5, expected[5])


# ---------------------------------------------------------------------------
# One head: the fast heads against the definition, hull.hard_attention

def brute(q, k, v, latest):
    return hull.hard_attention(k, v, q, latest)


def check_head(q, k, v, latest, kind, chunks=(3, 16, 1000)):
    """The fast head against the definition, alone and as three heads sharing its keys: the
    first two with queries q, the third with other queries (the same rows reversed)."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    other_q = np.concatenate([q[:1], q[:0:-1]])                # position 0's query stays first
    values = np.concatenate([v, v[::-1] + 1, 2 * v], axis=1)  # [T, 6]
    want = brute(q, k, v, latest)
    want_shared = np.concatenate([want, brute(q, k, v[::-1] + 1, latest), brute(other_q, k, 2 * v, latest)], axis=1)
    for chunk in chunks:
        head = speculative.new_head(latest, q[:chunk], k[:chunk], v[:chunk], 0)
        assert head.kind == kind
        for got, expected in [(speculative.chunked_hard_attention(k, v, q, latest, chunk=chunk), want),
                              (speculative.chunked_hard_attention(k, values, np.concatenate([q, other_q], axis=1),
                                                                  latest, chunk, [slice(0, 4), slice(4, 6)]),
                               want_shared)]:
            mismatch = np.flatnonzero((got != expected).any(axis=1))
            first = mismatch[:1]
            assert len(mismatch) == 0, f"chunk {chunk}, position {first}: {got[first]} != {expected[first]}"


@pytest.mark.parametrize("latest", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_general_head_tiny_integers(latest, seed):
    rng = np.random.default_rng(seed)
    T = 300
    k = rng.integers(-3, 4, size=(T, 2))                      # many equal and collinear keys
    q = rng.integers(-3, 4, size=(T, 2))
    q[rng.random(T) < 0.2, 1] = 0                             # qy == 0: the extreme-kx rules
    v = rng.integers(-50, 50, size=(T, 2))
    check_head(q, k, v, latest, "general")


def recency(p):
    return 0.3 * wasmtf.inv_log_pos(p)


def parabolic_queries(rng, T, low, high):
    """(S*x, S) for x integer, half-integer (equidistant keys tie), near-integer
    (the cursor's 1e-9 error) or far outside; position 0 has qy = 0."""
    x = rng.integers(low - 3, high + 3, size=T).astype(np.float64)
    kind = rng.random(T)
    x[kind < 0.2] += 0.5
    x[(kind >= 0.2) & (kind < 0.3)] += rng.normal(0, 1e-9, size=((kind >= 0.2) & (kind < 0.3)).sum())
    x[kind > 0.97] *= 1e6
    q = np.stack([QUERY_SCALE * x, np.full(T, QUERY_SCALE)], axis=1)  # [T, 2]
    q[0] = (rng.normal(), 0.0)
    return q


@pytest.mark.parametrize("seed", range(4))
def test_column_head_parabolic_keys_with_clears_and_ties(seed):
    rng = np.random.default_rng(seed)
    T = 400
    key = rng.integers(0, 12, size=T).astype(np.float64)     # few columns: many rewrites
    # the recency term on a coarse grid: equal d in one column = exact float ties (latest wins)
    d = np.minimum(np.floor(np.arange(T) / 37) * 0.05, 0.4)
    ky = -key * key + d
    cleared = rng.random(T) < 0.3
    ky[cleared] = -key[cleared] ** 2 - 1e30
    key[0], ky[0] = 0.0, 0.0                                  # the position-0 null entry
    k = np.stack([2 * key, ky], axis=1)
    v = rng.integers(0, 1000, size=(T, 2))
    check_head(parabolic_queries(rng, T, 0, 12), k, v, True, "column")


@pytest.mark.parametrize("seed", range(3))
def test_column_head_machine_scale_keys(seed):
    rng = np.random.default_rng(seed)
    T = 300
    columns = rng.integers(0, 2 ** 24, size=20).astype(np.float64)  # machine-sized addresses
    columns[:3] = (0, 1, 2 ** 24)
    key = columns[rng.integers(0, len(columns), size=T)]    # rewritten often
    ky = -key * key + np.array([recency(p) for p in range(T)])
    key[0], ky[0] = 0.0, 0.0
    k = np.stack([2 * key, ky], axis=1)
    v = rng.integers(0, 1000, size=(T, 2))
    targets = columns[rng.integers(0, len(columns), size=T)] + rng.integers(-1, 2, size=T)
    q = np.stack([QUERY_SCALE * targets, np.full(T, QUERY_SCALE)], axis=1)
    q[0, 1] = 0.0
    check_head(q, k, v, True, "column")


def test_position_head(seed=5):
    rng = np.random.default_rng(seed)
    T = 500
    p = np.arange(T, dtype=np.float64)
    ky = -p * p + np.array([recency(i) for i in range(T)])
    k = np.stack([2 * p, ky], axis=1)
    v = rng.integers(0, 256, size=(T, 2))
    check_head(parabolic_queries(rng, T, 0, T), k, v, True, "position")


def test_position_keys_that_stop_being_positions(seed=7):
    rng = np.random.default_rng(seed)
    T = 200
    key = np.arange(T, dtype=np.float64)
    key[40:] = rng.integers(0, 30, size=T - 40)              # rewrites of old columns from 40 on
    ky = -key * key + np.array([recency(p) for p in range(T)])
    k = np.stack([2 * key, ky], axis=1)
    v = rng.integers(0, 256, size=(T, 2))
    q = parabolic_queries(rng, T, 0, 40)
    want = brute(q, k, v, True)
    assert (speculative.chunked_hard_attention(k, v, q, True, chunk=16) == want).all()


def test_cumulative_head(seed=6):
    rng = np.random.default_rng(seed)
    T = 500
    k = np.zeros((T, 2))
    k[1:, 1] = 1.0
    q = np.zeros((T, 2))
    q[1:, 1] = QUERY_SCALE
    v = rng.integers(-5, 6, size=(T, 2))
    check_head(q, k, v, False, "cumulative")


def test_structure_change_after_the_first_chunk_is_refused():
    T = 40
    p = np.arange(T, dtype=np.float64)
    k = np.stack([2 * p, -p * p], axis=1)
    k[30] = (3.0, 1.0)                                        # not a parabolic key
    q = np.stack([QUERY_SCALE * p, np.full(T, QUERY_SCALE)], axis=1)
    with pytest.raises(speculative.NotVerifiable):
        speculative.chunked_hard_attention(k, np.ones((T, 2)), q, True, chunk=16)
    got = speculative.chunked_hard_attention(k, np.ones((T, 2)), q, True, chunk=64)  # general from the start
    assert (got == brute(q, k, np.ones((T, 2)), True)).all()


def test_a_long_run_of_a_general_head_decodes_sequentially(monkeypatch):
    toy = copy_model_variants()[1][1]                         # average mode: a GeneralHead
    prompt = ["{", "3", "5"]
    expected = wasmtf.generate(toy, prompt)
    monkeypatch.setattr(speculative, "GENERAL_LIMIT", 6)
    assert speculative.generate_speculative(toy, prompt, expected, chunk=4) == expected
    assert speculative.verify(toy, prompt, expected, chunk=4) == (len(expected), None)


# ---------------------------------------------------------------------------
# Long runs

@pytest.mark.slow
@pytest.mark.parametrize("name", ["hello", "fibonacci", "collatz", "addition", "hungarian"])
def test_c_examples_verified_end_to_end(model, plan, name):
    import frontend
    instructions, input_bytes = frontend.load_program_file(REPO / "examples" / (name + ".wasm"), None)
    prompt = reference.program_tokens(instructions, input_bytes)
    draft = reference.run_reference(instructions, input_bytes)
    assert speculative.verify(model, prompt, draft, plan=plan) == (len(draft), None)


@pytest.mark.slow
def test_a_corrupted_token_deep_in_a_long_trace(model, plan):
    import frontend
    instructions, input_bytes = frontend.load_program_file(REPO / "examples" / "hungarian.wasm", None)
    prompt = reference.program_tokens(instructions, input_bytes)
    expected = reference.run_reference(instructions, input_bytes)
    rng = random.Random(8)
    index = rng.randrange(len(expected) // 2, len(expected))
    assert speculative.verify(model, prompt, corrupt(rng, expected, index), plan=plan) == (index, expected[index])


@pytest.mark.slow
def test_random_programs_sweep(model, plan):
    for seed in range(100, 160):
        rng = random.Random(seed)
        instructions, input_bytes = program_generator.random_program(rng, n_instructions=120)
        expected = reference.run_reference(instructions, input_bytes)
        _, trace = speculative.run_program(model, instructions, input_bytes, chunk=SMALL_CHUNK * 5, plan=plan)
        assert trace == expected, f"seed {seed}"


# ---------------------------------------------------------------------------
# Drafts in pieces, long traces, runaway programs (issue 16)

NEVER_HALTS = [("i32.const", 1), ("drop", 0), ("br", (-3) % reference.WORD_MODULUS), ("halt", 0)]


def test_draft_pieces_make_the_whole_draft():
    instructions, input_bytes = reference.read_program(EXAMPLES_DIR / "ex3_call_input.txt")
    expected = reference.run_reference(instructions, input_bytes)
    pieces = list(speculative.reference_draft_pieces(instructions, input_bytes, piece_steps=3))
    assert [token for piece in pieces for token in piece] == expected
    assert max(len(piece) for piece in pieces) <= 3 * 6 and len(pieces) > 10   # a group has <= 6 tokens
    limited = list(speculative.reference_draft_pieces(NEVER_HALTS, max_tokens=100, piece_steps=7))
    assert 100 <= sum(map(len, limited)) < 100 + 7 * 6                          # stops at the token limit
    assert speculative.reference_draft(NEVER_HALTS, max_steps=30) == reference.advance(
        reference.start(NEVER_HALTS), 30).trace


def test_a_program_that_never_halts_is_drafted_as_it_is_verified(model, plan):
    """The draft is taken piece by piece, only as far as the token limit: a runaway
    program holds one piece of draft at a time, and gets the sequential trace."""
    limit = 3_000
    expected = reference.advance(reference.start(NEVER_HALTS), limit).trace[:limit]
    drafted = []

    def pieces():
        for piece in speculative.reference_draft_pieces(NEVER_HALTS, max_tokens=limit, piece_steps=50):
            drafted.append(len(piece))
            yield piece

    prompt = reference.program_tokens(NEVER_HALTS)
    got = speculative.generate_speculative(model, prompt, pieces(), max_new_tokens=limit, chunk=64, plan=plan)
    assert got == expected
    assert sum(drafted) < limit + 50 * 6 and max(drafted) <= 50 * 6
    assert speculative.generate(model, prompt, max_new_tokens=limit, plan=plan) == expected
    assert wasmtf.generate(model, prompt, max_new_tokens=limit, plan=plan) == expected


def test_a_wrong_token_in_a_later_piece(model, plan):
    prompt, expected = example(EXAMPLES_DIR / "ex2_loop_memory_ref.txt")
    rng = random.Random(11)
    for index in (0, 9, 10, 11, len(expected) - 1):
        draft = corrupt(rng, expected, index)
        pieces = [draft[start:start + 10] for start in range(0, len(draft), 10)]
        assert speculative.generate_speculative(model, prompt, iter(pieces), chunk=SMALL_CHUNK, plan=plan) == expected
        assert speculative.generate_speculative(model, prompt, iter(pieces), max_new_tokens=index + 1,
                                                plan=plan) == expected[:index + 1]


def test_position_heads_beyond_2_to_the_24(seed=9):
    """Position keys near POSITION_LIMIT = 2^26 (the column heads stop at 2^24): scores
    of neighbouring positions there round to within qy of each other, and the
    PositionHead (batched) and PositionCache (sequential) still pick SPEC 9's entry.
    Only the last WINDOW positions are written; queries stay inside them (a position
    further than 10 from k* scores > 90 qy lower, beyond any rounding)."""
    rng = np.random.default_rng(seed)
    WINDOW, C = 600, 400
    start = speculative.POSITION_LIMIT - C
    p = np.arange(start - WINDOW, start + C, dtype=np.float64)       # [W + C]
    k = np.stack([2 * p, -p * p + np.array([recency(int(i)) for i in p])], axis=1)
    v = rng.integers(0, 256, size=(len(p), 2)).astype(np.float64)
    x = p[WINDOW:] - rng.integers(0, WINDOW - 20, size=C)            # integer, half-integer, near-integer k*
    kind = rng.random(C)
    x[kind < 0.3] += 0.5
    x[(kind >= 0.3) & (kind < 0.5)] += rng.normal(0, 1e-9, size=((kind >= 0.3) & (kind < 0.5)).sum())
    x[kind > 0.95] = p[-1] + 3                                       # beyond the current position
    q = np.stack([QUERY_SCALE * x, np.full(C, QUERY_SCALE)], axis=1)  # [C, 2]
    want = []
    for row in range(C):
        now = WINDOW + row                                          # causal: positions up to this one
        scores = q[row, 0] * k[:now + 1, 0] + q[row, 1] * k[:now + 1, 1]  # two products, one sum
        want.append(v[np.flatnonzero(scores == scores.max())[-1]])   # ties: the latest
    head = speculative.PositionHead()
    head.store.write(start + C - 1, ky=[0.0], v=[[0.0, 0.0]])        # allocated once (pages stay unmapped)
    head.store.write(start - WINDOW, ky=k[:WINDOW, 1], v=v[:WINDOW])
    got = head.attend(q, k[WINDOW:], v[WINDOW:], start)
    assert (got == np.array(want)).all()
    cache = speculative.PositionCache(head, start + C)
    for row in range(C - 40, C):                                    # against every position so far
        scores = q[row, 0] * k[:, 0] + q[row, 1] * k[:, 1]
        assert cache.query(*q[row]) == tuple(v[np.flatnonzero(scores == scores.max())[-1]])
    assert not speculative.PositionHead.fits(k[WINDOW:] + [2, 0], start + 1)  # keys must be positions


# ---------------------------------------------------------------------------
# The grouped feed-forward and the draft: every position is the dense forward pass's

# a byte of input picks the division (0) or the multiplication (1) path: each its gadgets
GADGETS = [("input_base", 256), ("i32.const", 256), ("i32.load8_u", 0), ("br_if", 7),
           ("i32.const", 0x12345678), ("i32.const", 0x1234), ("i32.div_u", 0), ("i32.const", 5), ("i32.shl", 0),
           ("output", 0), ("halt", 0),
           ("i32.const", 0x12345678), ("i32.const", 987), ("i32.mul", 0), ("i32.const", 77), ("i32.rem_u", 0),
           ("output", 0), ("halt", 0)]


def feed_forward_inputs(model, plan, tokens):
    """[(layer, x [D, C] before its grouped feed-forward)] of one BatchState.advance over tokens."""
    state, seen = speculative.BatchState(model, plan), []
    grouped = {id(ffn): l for l, ffn in enumerate(state.grouped) if ffn is not None}
    original = speculative.GroupedFeedForward.add_to

    def record(self, x, starts):
        seen.append((grouped[id(self)], x.copy()))
        return original(self, x, starts)
    speculative.GroupedFeedForward.add_to = record
    try:
        state.advance(wasmtf.encode(model, tokens))
    finally:
        speculative.GroupedFeedForward.add_to = original
    return seen


def test_grouped_feed_forward_is_the_dense_one_for_any_grouping(model, plan):
    prompt = reference.program_tokens(GADGETS, b"\x01")
    inputs = feed_forward_inputs(model, plan, prompt + reference.run_reference(GADGETS, b"\x00"))
    assert [l for l, _ in inputs] == [2, 3, 4, 5]             # from the layer that reads the opcode on
    rng = np.random.default_rng(3)
    for l, x in inputs:
        layer, C = plan["layers"][l], x.shape[1]
        want = x.copy()
        layer["ffn_out"].add_to(want, wasmtf.reglu(layer["ffn_in"](want), layer["F"]))
        ffn = speculative.GroupedFeedForward(layer)
        groupings = [np.array([0]), np.arange(C), np.flatnonzero(rng.random(C) < 0.1) if C else None]
        for starts in groupings:
            starts = np.union1d([0], starts)                   # any groups of consecutive columns
            for shuffle in (np.arange(C), rng.permutation(C)):  # and any order of the columns
                got = x[:, shuffle].copy()
                ffn.add_to(got, starts)
                assert np.array_equal(got, want[:, shuffle])


def test_gates_a_few_ulps_from_zero():
    """Gates x0 - x1 (and 2^40 (x0 - x1), 2^-30 x0 - 2^-30 x1) that are exactly 0, or 1 to 2
    ulps above or below it, in one group: whatever order BLAS sums them in, every open
    neuron is kept (the rounding margin), so the result is the dense one."""
    ones = 1.0 + np.array([-2, -1, 0, 1, 2, 0, 1]) * 2.0 ** -52   # x0 per column; x1 = 1
    x = np.stack([ones, np.ones(7), np.arange(7.0) + 3, np.zeros(7)])  # [4, 7] slots x0 x1 x2 out
    scales = [1.0, -1.0, 2.0 ** 40, 2.0 ** -30]
    w_in = np.array([[a, -a, 0, 0] for a in scales] + [[0, 0, 1, 0]] * 3 + [[0, 0, 2, 0]])  # gates, values
    w_ffo = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1, 2, 3, 5]])
    layer = {"F": 4, "ffn_in": wasmtf.Linear(w_in), "ffn_out": wasmtf.Scatter(w_ffo)}
    want = x.copy()
    layer["ffn_out"].add_to(want, wasmtf.reglu(layer["ffn_in"](want), 4))
    assert (want[3] != 0).sum() >= 4                           # open gates at several columns
    for starts in (np.array([0]), np.array([0, 2, 3]), np.arange(7)):
        got = x.copy()
        speculative.GroupedFeedForward(layer).add_to(got, starts)
        assert np.array_equal(got, want)


def dense_predictions(model, plan, ids):
    """The greedy token after every position by wasmtf.forward_batch (dense feed-forwards,
    hull.causal_hard_attention): the transformer's own answers for these inputs."""
    return np.argmax(wasmtf.forward_batch(model, ids, plan)[1], axis=1)


@pytest.mark.parametrize("switch", ["loaded byte", "branch"])
def test_a_draft_that_switches_gadgets_is_caught_where_it_switches(model, plan, switch):
    """The draft leaves the division path for the multiplication one (the loaded byte, or a
    branch_taken the byte does not justify) and goes on with that path's tokens: the batched
    predictions are the dense forward pass's at every position, switched ones included,
    the first wrong token is found where it is, and generation gives the division trace."""
    prompt = reference.program_tokens(GADGETS, b"\x00")
    division, multiplication = (reference.run_reference(GADGETS, byte) for byte in (b"\x00", b"\x01"))
    index = next(i for i, (a, b) in enumerate(zip(division, multiplication)) if a != b)
    index = index if switch == "loaded byte" else division.index("commit(-1,sts=0,bt=0)")
    assert multiplication[index] in ("01", "branch_taken")
    draft = division[:index] + multiplication[index:]
    ids = wasmtf.encode(model, prompt + draft)
    state = speculative.BatchState(model, plan)
    assert state.grouped[2] is not None                       # the grouped path is on
    assert np.array_equal(state.advance(ids), dense_predictions(model, plan, ids))
    for chunk in (5 * SMALL_CHUNK, speculative.CHUNK):
        assert speculative.verify(model, prompt, draft, chunk=chunk, plan=plan) == (index, division[index])
        assert speculative.generate_speculative(model, prompt, draft, chunk=chunk, plan=plan) == division


@pytest.mark.parametrize("seed", range(3))
def test_corrupted_gadget_tokens_predict_as_the_dense_pass(model, plan, seed):
    rng = random.Random(seed)
    byte = bytes([seed % 2])
    prompt, expected = reference.program_tokens(GADGETS, byte), reference.run_reference(GADGETS, byte)
    draft = expected
    for _ in range(3):                                        # three wrong tokens anywhere
        draft = corrupt(rng, draft, rng.randrange(len(draft)))
    ids = wasmtf.encode(model, prompt + draft)
    assert np.array_equal(speculative.BatchState(model, plan).advance(ids), dense_predictions(model, plan, ids))
    first = next(i for i, (a, b) in enumerate(zip(draft, expected)) if a != b)
    assert speculative.verify(model, prompt, draft, plan=plan) == (first, expected[first])


def test_distinct_next_tokens(model, plan, monkeypatch):
    prompt, expected = example(EXAMPLES_DIR / "ex2_loop_memory_ref.txt")
    x = np.ascontiguousarray(wasmtf.forward_batch(model, wasmtf.encode(model, prompt + expected), plan)[0].T)
    want = wasmtf.next_tokens(plan, x)
    assert np.array_equal(speculative.distinct_next_tokens(plan, x), want)
    monkeypatch.setattr(speculative, "HASH_MULTIPLIERS", np.zeros(64, dtype=np.uint64))  # every column collides
    assert np.array_equal(speculative.distinct_next_tokens(plan, x), want)

