"""The compiled machine against the reference interpreter, token for token.

Rungs: the graph evaluator (exact arithmetic, no weights), the weights with the
brute-force cache (SPEC 9 by definition) and with the hull cache, all equal to the
reference trace. Random programs come from tests/program_generator.py (fixed seeds).
The numerical safety margins (logit margin, attention score gap) are measured on
real runs and asserted against the bounds derived in compile_weights.py."""
import random

import numpy as np
import pytest

from conftest import EXAMPLES_DIR
import compile_weights as cw
import graph
import program_generator
import reference
import wasmtf

EXAMPLES = sorted(EXAMPLES_DIR.glob("ex*_ref.txt")) + sorted(EXAMPLES_DIR.glob("official_model_divergences/*_ref.txt"))
RANDOM_EXAMPLES = sorted(EXAMPLES_DIR.glob("random/*_ref.txt"))
FAST_SUBSET = EXAMPLES + RANDOM_EXAMPLES[:1]   # also through the evaluator and the brute cache
MIN_LOGIT_MARGIN = 0.5        # theory: >= 1 (integer quadratic scores), FAMILY_WEIGHT between families
MIN_SCORE_GAP = 0.15          # in units of QUERY_SCALE, between the winner and any other key:
                              # >= 1 - 0.3/ln 2 = 0.567 between distinct integer keys, except a key
                              # scoring exactly 0 (k = 0 = q or k = 2q) against the position-0 null
                              # entry: there only the recency 0.3*inv_log_pos(p >= 1) >= 0.159 separates
                              # them (and the exact-match checks make either answer correct)


def example(path):
    instructions, input_bytes, trace = reference.parse_trace_file(path.read_text())
    return instructions, input_bytes, trace


@pytest.fixture(scope="module")
def model():
    return cw.compile_machine()


@pytest.mark.parametrize("path", EXAMPLES + RANDOM_EXAMPLES, ids=lambda p: p.stem)
def test_hull_transformer_reproduces_the_reference_trace(model, path):
    instructions, input_bytes, trace = example(path)
    assert wasmtf.run_transformer(model, instructions, input_bytes, cache="hull") == trace


@pytest.mark.parametrize("path", FAST_SUBSET, ids=lambda p: p.stem)
def test_brute_transformer_and_evaluator_reproduce_the_reference_trace(model, path):
    instructions, input_bytes, trace = example(path)
    assert wasmtf.run_transformer(model, instructions, input_bytes, cache="brute") == trace
    prompt = reference.program_tokens(instructions, input_bytes)
    assert graph.evaluate(cw.build_machine(), prompt) == trace


@pytest.mark.slow
@pytest.mark.parametrize("path", RANDOM_EXAMPLES[1:], ids=lambda p: p.stem)
def test_brute_transformer_and_evaluator_on_all_random_examples(model, path):
    test_brute_transformer_and_evaluator_reproduce_the_reference_trace(model, path)


def random_programs(seed, count, n_instructions):
    rng = random.Random(seed)
    return [program_generator.random_program(rng, n_instructions=n_instructions) for _ in range(count)]


def test_random_programs_hull_equals_reference(model):
    for instructions, input_bytes in random_programs(2026, 200, 30):
        expected = reference.run_reference(instructions, input_bytes)
        assert wasmtf.run_transformer(model, instructions, input_bytes) == expected, \
            reference.format_program(instructions, input_bytes)


@pytest.mark.slow
def test_random_programs_sweep(model):
    for instructions, input_bytes in random_programs(7, 2000, 80):
        expected = reference.run_reference(instructions, input_bytes)
        assert wasmtf.run_transformer(model, instructions, input_bytes) == expected, \
            reference.format_program(instructions, input_bytes)


def safety_margins(model, tokens, first_generated):
    """(smallest logit margin over generated positions, smallest score gap / QUERY_SCALE
    between a latest-mode head's winner and the best entry with a different key)."""
    trace = wasmtf.forward(model, tokens, cache="brute")
    logit_margin = np.inf
    for record in trace[first_generated - 1:-1]:
        top2 = np.sort(record["logits"])[-2:]
        logit_margin = min(logit_margin, top2[1] - top2[0])
    gap = np.inf
    for l, layer in enumerate(model["layers"]):
        for h in np.flatnonzero(layer["tie_latest"]):
            keys = np.array([r["k"][l, h] for r in trace])       # [T, 2]
            for p in range(1, len(trace)):
                qx, qy = trace[p]["q"][l, h]
                scores = qx * keys[:p + 1, 0] + qy * keys[:p + 1, 1]  # [p+1]
                best = np.argmax(scores)
                others = keys[:p + 1, 0] != keys[best, 0]
                if others.any():
                    gap = min(gap, (scores[best] - scores[others].max()) / cw.QUERY_SCALE)
    return logit_margin, gap


@pytest.mark.parametrize("name", ["ex1_arith", "ex2_loop_memory", "ex3_call_input"])
def test_safety_margins(model, name):
    instructions, input_bytes, trace = example(EXAMPLES_DIR / (name + "_ref.txt"))
    prompt = reference.program_tokens(instructions, input_bytes)
    logit_margin, gap = safety_margins(model, prompt + trace, len(prompt))
    assert logit_margin >= MIN_LOGIT_MARGIN
    assert gap >= MIN_SCORE_GAP


def test_traps_and_bounds(model):
    """The `trap` opcode, and loads/stores that touch byte 2^24 (no wrapping of address + offset)."""
    top = reference.MEMORY_SIZE
    cases = [
        [("i32.const", 5), ("trap", 0), ("halt", 0)],
        [("i32.const", top - 4), ("i32.load", 0), ("halt", 0)],          # last word: fine
        [("i32.const", top - 4), ("i32.load", 1), ("halt", 0)],          # one byte past: trap
        [("i32.const", top - 1), ("i32.load8_s", 0), ("halt", 0)],
        [("i32.const", 2 ** 32 - 1), ("i32.load8_u", 2 ** 32 - 1), ("halt", 0)],  # ~2^33: trap
        [("i32.const", top - 2), ("i32.const", 7), ("i32.store16", 0), ("halt", 0)],
        [("i32.const", top - 2), ("i32.const", 7), ("i32.store", 0), ("halt", 0)],
        [("i32.const", 3), ("i32.const", 7), ("i32.store8", 2 ** 32 - 2), ("halt", 0)],
    ]
    for instructions in cases:
        assert wasmtf.run_transformer(model, instructions) == reference.run_reference(instructions), instructions


@pytest.mark.parametrize("path", sorted(EXAMPLES_DIR.glob("ex*_ref.txt")), ids=lambda p: p.stem)
def test_softmax_attention_reproduces_the_worked_examples(model, path):
    """Query rows carry HARD_K*sqrt(2): softmax equals the hard argmax wherever the
    best score is unique (keys are small enough that recency stays visible)."""
    instructions, input_bytes, trace = example(path)
    assert wasmtf.run_transformer(model, instructions, input_bytes, cache="softmax") == trace


def test_first_divergence_is_none_for_a_correct_run_and_located_for_a_wrong_model(model):
    instructions = [("i32.const", 200), ("i32.const", 100), ("i32.add", 0), ("output", 0), ("halt", 0)]
    assert wasmtf.first_divergence(model, instructions) is None
    broken = dict(model, head=model["head"].copy())
    broken["head"][reference.TOKEN_ID["2c'"]] = 0.0  # the marked sum byte can no longer win
    found = wasmtf.first_divergence(broken, instructions)
    assert found["index"] == 10 and found["expected"] == ["2c'"]
    assert found["inspect"]["residuals"][-1][1]["out_mark"] == 1.0


@pytest.mark.slow
def test_a_million_token_loop(model):
    """Numerical limits at large positions: a memory/locals loop of ~1e6 trace tokens."""
    n = 21_300  # about 47 tokens per iteration
    loop = [("i32.const", n), ("local.set", 0), ("i32.const", 256), ("i32.const", 256), ("i32.load", 0),
            ("local.get", 0), ("i32.add", 0), ("i32.store", 0), ("local.get", 0), ("i32.const", 1),
            ("i32.sub", 0), ("local.tee", 0), ("br_if", (2 - 12 - 1) % 2 ** 32), ("i32.const", 256),
            ("i32.load", 0), ("output", 0), ("halt", 0)]
    expected = reference.run_reference(loop)
    assert len(expected) > 1_000_000
    assert wasmtf.run_transformer(model, loop) == expected
