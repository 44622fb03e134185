"""Programs in the weights (compile_weights section 4, SPEC 2.2): a specialized model,
run on `start` + input section, writes the universal model's trace token for token.

Rungs as in test_machine.py: the graph evaluator, the brute cache, the hull cache and
the speculative path, each against the reference trace (which the universal model
reproduces, test_machine.py) and, on some programs, against the universal model run
side by side. Also: the fetch's neuron count, the vocabulary, model files, errors."""
import random

import numpy as np
import pytest

from conftest import EXAMPLES_DIR, REPO
import cli
import compile_weights as cw
import frontend
import graph
import program_generator
import reference
import speculative as speculative_decoding
import wasmtf

EXAMPLES = sorted(EXAMPLES_DIR.glob("ex*_ref.txt"))
RANDOM_EXAMPLES = sorted(EXAMPLES_DIR.glob("random/*_ref.txt"))
FAST_DEMOS = ["hello", "add"]                       # short traces: hull, brute and speculative
LONG_DEMOS = ["fibonacci", "collatz", "hungarian"]  # 28K-203K tokens: speculative (sequential: slow)


def example(path):
    return reference.parse_trace_file(path.read_text())


def demo(name):
    return frontend.load_program_file(REPO / "examples" / (name + ".wasm"))


def run_specialized(instructions, input_bytes, cache="hull", speculative=False, max_new_tokens=None):
    model = cw.specialize(instructions)
    limit = max_new_tokens or wasmtf.DEFAULT_MAX_NEW_TOKENS
    if speculative:
        prompt, trace = speculative_decoding.run_program(model, instructions, input_bytes, limit)
    else:
        prompt, trace = wasmtf.run_program(model, instructions, input_bytes, cache, limit)
    assert prompt == reference.specialized_prompt(instructions, input_bytes)
    return trace


@pytest.mark.parametrize("path", EXAMPLES + RANDOM_EXAMPLES, ids=lambda p: p.stem)
def test_specialized_hull_transformer_writes_the_reference_trace(path):
    instructions, input_bytes, trace = example(path)
    assert run_specialized(instructions, input_bytes) == trace


@pytest.mark.parametrize("path", EXAMPLES + RANDOM_EXAMPLES[:1], ids=lambda p: p.stem)
def test_specialized_brute_speculative_and_evaluator_write_the_reference_trace(path):
    instructions, input_bytes, trace = example(path)
    assert run_specialized(instructions, input_bytes, cache="brute") == trace
    assert run_specialized(instructions, input_bytes, speculative=True) == trace
    prompt = reference.specialized_prompt(instructions, input_bytes)
    assert graph.evaluate(cw.build_machine(instructions), prompt) == trace


@pytest.mark.parametrize("seed", [11, 12])
def test_specialized_and_universal_models_agree_on_random_programs(seed):
    """Side by side on fresh random programs (with and without input sections)."""
    universal = cw.compile_machine()
    rng = random.Random(seed)
    for _ in range(10):
        instructions, input_bytes = program_generator.random_program(rng, rng.randint(5, 60))
        expected = reference.run_reference(instructions, input_bytes)
        universal_trace = wasmtf.run_program(universal, instructions, input_bytes)[1]
        assert universal_trace == expected
        assert run_specialized(instructions, input_bytes) == universal_trace


@pytest.mark.parametrize("name", FAST_DEMOS)
def test_short_demos_through_hull_brute_and_speculative(name):
    instructions, input_bytes = demo(name)
    expected = reference.run_reference(instructions, input_bytes)
    for cache in ("hull", "brute"):
        assert run_specialized(instructions, input_bytes, cache=cache) == expected, cache
    assert run_specialized(instructions, input_bytes, speculative=True) == expected


@pytest.mark.parametrize("name", LONG_DEMOS)
def test_long_demos_through_the_speculative_path(name):
    instructions, input_bytes = demo(name)
    assert run_specialized(instructions, input_bytes, speculative=True) == reference.run_reference(
        instructions, input_bytes)


@pytest.mark.slow
@pytest.mark.parametrize("name", LONG_DEMOS)
def test_long_demos_decoded_token_by_token(name):
    instructions, input_bytes = demo(name)
    assert run_specialized(instructions, input_bytes) == reference.run_reference(instructions, input_bytes)


@pytest.mark.slow
def test_sudoku_through_the_speculative_path_and_a_sequential_prefix():
    instructions, input_bytes = demo("sudoku")
    expected = reference.run_reference(instructions, input_bytes)
    assert run_specialized(instructions, input_bytes, speculative=True) == expected
    assert run_specialized(instructions, input_bytes, max_new_tokens=20_000) == expected[:20_000]


def test_the_specialized_model_is_the_universal_graph_without_the_fetch_heads():
    """Same heads but the opcode and immediate lookups; one more layer (the fetch is a
    feed-forward, one sub-layer later than the heads were); universal weights unchanged."""
    universal = cw.build_machine()
    instructions, _, _ = example(EXAMPLES[1])
    specialized = cw.build_machine(instructions)
    lookups = lambda g: {name for n in g.nodes if n["kind"] == "lookup" for name in n["names"]}
    assert lookups(universal) - lookups(specialized) == {"op_code_at_pc", "op_code_sq_at_pc", "immediate"}
    assert lookups(specialized) <= lookups(universal)
    shape = cw.describe_shape(cw.specialize(instructions))
    assert shape["layers"] == cw.describe_shape(cw.compile_machine())["layers"] + 1
    assert sum(shape["heads"]) == sum(cw.describe_shape(cw.compile_machine())["heads"]) - 2


def test_one_neuron_per_instruction_and_none_inside_straight_runs():
    """N + 2 neurons at most (one per second difference); a run whose fields are linear
    in the instruction index (here: constants counting up by one) costs none inside."""
    rng = random.Random(5)
    instructions, _ = program_generator.random_program(rng, 40)
    assert len(cw.fetch_neurons(instructions)) <= len(instructions) + 2
    run = [("i32.const", 10 + i) for i in range(200)]  # byte 0 counts 10..209: no carry
    program = run + [("drop", 0)] * 200 + [("halt", 0)]
    # kinks: start and end of the run of constants, of the drops, and halt's: 2 + 2 + 2 + 1
    assert len(cw.fetch_neurons(program)) <= 8
    expected = reference.run_reference(program)
    assert run_specialized(program, None) == expected


def test_fetched_fields_equal_the_instructions_at_every_cursor_and_zero_outside():
    """P(c) of the derivation in exact integers, for every c in -1..N+3."""
    rng = random.Random(3)
    instructions, _ = program_generator.random_program(rng, 50)
    neurons = cw.fetch_neurons(instructions)
    for c in range(-1, len(instructions) + 4):
        fields = [sum(w[i] * max(c - k, 0) for k, w in neurons) for i in range(len(cw.FETCHED_FIELDS))]
        inside = 0 <= c < len(instructions)
        assert tuple(fields) == (cw.instruction_fields(*instructions[c]) if inside else (0,) * len(fields))


def test_specialized_vocabulary_is_the_universal_one_plus_start_and_the_program_name():
    instructions, _, _ = example(EXAMPLES[0])
    model = cw.specialize(instructions)
    mark = reference.PROGRAM_MARK % reference.program_hash(instructions)
    assert model["vocab"] == sorted(reference.VOCAB + [reference.START, mark])
    assert wasmtf.baked_program_hash(model) == reference.program_hash(instructions)
    assert wasmtf.baked_program_hash(cw.compile_machine()) is None
    assert cw.compile_machine()["vocab"] == reference.VOCAB
    # `start` is position 0's null entry: its only non-zero feature is is_start
    row = model["embed"][model["vocab"].index(reference.START)]
    assert [model["slot_names"][i] for i in np.flatnonzero(row)] == ["is_start"]


@pytest.mark.parametrize("suffix", [".npz", ".bin"])
def test_model_files_round_trip_the_program(tmp_path, suffix):
    instructions, input_bytes, trace = example(EXAMPLES[3])
    model = cw.specialize(instructions)
    wasmtf.save(model, tmp_path / ("prog" + suffix))
    loaded = wasmtf.load(tmp_path / ("prog" + suffix))
    assert loaded["vocab"] == model["vocab"]
    assert wasmtf.baked_program_hash(loaded) == reference.program_hash(instructions)
    assert wasmtf.run_program(loaded, instructions, input_bytes)[1] == trace


def test_the_cli_specializes_runs_crosschecks_and_describes(tmp_path, capsys):
    path = EXAMPLES_DIR / "ex3_call_input.txt"
    model_path = str(tmp_path / "prog.bin")
    assert cli.main(["specialize", str(path), "-o", model_path]) == 0
    assert reference.program_hash(reference.read_program(path)[0]) in capsys.readouterr().out
    assert cli.main(["run", str(path), "--model", model_path, "--tokens"]) == 0
    out = capsys.readouterr().out
    instructions, input_bytes = reference.read_program(path)
    assert out.split() == reference.specialized_prompt(instructions, input_bytes) + reference.run_reference(
        instructions, input_bytes)
    assert cli.main(["crosscheck", model_path, str(path)]) == 0
    assert "trace tokens equal" in capsys.readouterr().out
    assert cli.main(["info", model_path]) == 0
    assert "specialized: the program with sha256 " + reference.program_hash(instructions) in capsys.readouterr().out


def test_the_reference_gives_both_prompts_and_one_trace(capsys):
    path = EXAMPLES_DIR / "ex3_call_input.txt"
    assert cli.main(["reference", str(path)]) == 0
    universal = capsys.readouterr().out.split()
    assert cli.main(["reference", str(path), "--specialized"]) == 0
    specialized = capsys.readouterr().out.split()
    close = universal.index(reference.PROGRAM_END)
    assert specialized == [reference.START] + universal[close + 1:]


def test_a_model_runs_only_its_own_program(tmp_path, capsys):
    model_path = str(tmp_path / "prog.npz")
    assert cli.main(["specialize", str(EXAMPLES_DIR / "ex1_arith.txt"), "-o", model_path]) == 0
    capsys.readouterr()
    assert cli.main(["run", str(EXAMPLES_DIR / "ex2_loop_memory.txt"), "--model", model_path]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wasmtf: error: the model holds the program with sha256") and "\n" not in err


@pytest.mark.parametrize("program, message", [
    ([("i32.const", 0)] * (cw.MAX_BAKED_INSTRUCTIONS + 1) + [("halt", 0)], "holds at most 65536"),
    ([("i32.const", 1), ("br", 5), ("halt", 0)], "outside the program"),
    ([("i32.nope", 1), ("halt", 0)], "unknown opcode"),
    ([("drop", 0), ("halt", 0)], "instruction 0 cannot run"),
])
def test_bad_programs_give_one_clear_error(program, message):
    with pytest.raises(reference.ProgramError, match=message):
        cw.specialize(program)


def test_the_cli_reports_a_malformed_program_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("{ i32.const 01 00 00 00 br 05 00 00 00 halt 00 00 00 00 }")
    assert cli.main(["specialize", str(bad), "-o", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wasmtf: error:") and "outside the program" in err and "\n" not in err
    assert not (tmp_path / "m.npz").exists()


def test_specialized_weights_are_exact_in_any_summation_order():
    """Batched products (matrix-matrix) and a permutation of the fetch layer's neurons
    (the widest dot product: one term per instruction) give the same trace."""
    instructions, input_bytes, trace = example(RANDOM_EXAMPLES[2])
    model = cw.specialize(instructions)
    prompt = reference.specialized_prompt(instructions, input_bytes)
    _, logits = wasmtf.forward_batch(model, wasmtf.encode(model, prompt + trace)[:-1])
    assert [model["vocab"][i] for i in np.argmax(logits[len(prompt) - 1:], axis=1)] == trace
    layers = []
    for layer in model["layers"]:
        F = layer["w_ffo"].shape[1]
        order = np.random.default_rng(F).permutation(F)
        layers.append({**layer, "w_in": np.concatenate([layer["w_in"][:F][order], layer["w_in"][F:][order]]),
                       "w_ffo": layer["w_ffo"][:, order]})
    assert wasmtf.generate({**model, "layers": layers}, prompt) == trace
