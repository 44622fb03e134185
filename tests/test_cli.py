"""The command line: every subcommand's good path, and its bad-input path
(one clear line on stderr and the right exit code: 0 ok, 1 failed run, 2 bad input)."""
import pytest

from conftest import EXAMPLES_DIR, REPO
import reference
import wasmtf

EXAMPLE_WASM = REPO / "examples"
THREE_PLUS_FIVE = EXAMPLES_DIR / "ex0_three_plus_five.txt"
CALL_INPUT = EXAMPLES_DIR / "ex3_call_input.txt"
OUTPUT_DOES_NOT_POP = EXAMPLES_DIR / "official_model_divergences" / "d1_output_does_not_pop"


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("wasmtf: ")]
    assert len(errors) >= 1
    return errors[-1]


def test_demo_runs_3_plus_5_from_c_inside_the_transformer(capsys):
    assert wasmtf.main([]) == 0
    out = capsys.readouterr().out
    assert "output: 8\n" in out and "ok: the trace equals the reference" in out
    assert "i32.add" in out and "commit(" in out  # the program and the trace grouped by instruction


def test_run_prints_the_program_output(capsys):
    assert wasmtf.main(["run", str(EXAMPLE_WASM / "hello.wasm")]) == 0
    captured = capsys.readouterr()
    assert captured.out == "Hello, world!\n"
    assert "tokens in" in captured.err and "tokens/s" in captured.err


def test_run_tokens_equals_the_reference_file(capsys):
    assert wasmtf.main(["run", str(CALL_INPUT), "--tokens", "--cache", "brute"]) == 0
    expected = (EXAMPLES_DIR / "ex3_call_input_ref.txt").read_text()
    assert capsys.readouterr().out == expected


def test_run_trace_and_input(capsys):
    assert wasmtf.main(["run", str(CALL_INPUT), "--input", "5", "--trace"]) == 0
    out = capsys.readouterr().out
    assert "call" in out and "b'12345\\n'" in out


def test_reference_prints_the_ref_layout(capsys):
    assert wasmtf.main(["reference", str(THREE_PLUS_FIVE)]) == 0
    assert capsys.readouterr().out == (EXAMPLES_DIR / "ex0_three_plus_five_ref.txt").read_text()


def test_a_trapped_run_exits_1(tmp_path, capsys):
    program = tmp_path / "trap.txt"
    program.write_text(reference.format_program([("i32.const", 7), ("trap", 0), ("halt", 0)]))
    for command in ("run", "reference"):
        assert wasmtf.main([command, str(program)]) == 1
        assert one_error_line(capsys).startswith("wasmtf: the program trapped")


def test_running_out_of_tokens_exits_1(capsys):
    assert wasmtf.main(["run", str(THREE_PLUS_FIVE), "--max-tokens", "10"]) == 1
    assert one_error_line(capsys) == "wasmtf: no stop token within 10 tokens"


@pytest.mark.parametrize("command", ["run", "reference", "compile"])
def test_bad_program_files_exit_2_with_one_line(tmp_path, capsys, command):
    missing = tmp_path / "missing.txt"
    assert wasmtf.main([command, str(missing)]) == 2
    assert "missing.txt" in one_error_line(capsys)
    bad_text = tmp_path / "bad.txt"
    bad_text.write_text("{ i32.const 01 00 00 }")
    assert wasmtf.main([command, str(bad_text)]) == 2
    assert one_error_line(capsys).startswith("wasmtf: error: ")
    bad_wasm = tmp_path / "bad.wasm"
    bad_wasm.write_bytes(b"\0asn\1\0\0\0")
    assert wasmtf.main([command, str(bad_wasm)]) == 2
    assert "magic" in capsys.readouterr().err


def test_compile_writes_the_program_file(tmp_path, capsys):
    out = tmp_path / "add.txt"
    assert wasmtf.main(["compile", str(EXAMPLE_WASM / "add.wasm"), "-o", str(out)]) == 0
    instructions, input_bytes = reference.read_program(out)
    assert instructions[0][0] == "input_base"
    assert reference.output_bytes(reference.run_reference(instructions, input_bytes)) == b"8\n"


@pytest.mark.parametrize("suffix", [".npz", ".bin"])
def test_weights_round_trip_through_crosscheck(tmp_path, capsys, suffix):
    weights = tmp_path / ("model" + suffix)
    assert wasmtf.main(["weights", "-o", str(weights)]) == 0
    assert wasmtf.main(["crosscheck", str(weights), str(CALL_INPUT)]) == 0
    assert "ok:" in capsys.readouterr().out


def test_crosscheck_reports_the_first_divergence(tmp_path, capsys):
    weights = tmp_path / "model.npz"
    assert wasmtf.main(["weights", "-o", str(weights)]) == 0
    dump = tmp_path / "activations.npz"
    # transformer-vm's model output for d1 differs from the reference (SPEC 4.8): we follow the reference
    assert wasmtf.main(["crosscheck", str(weights), str(OUTPUT_DOES_NOT_POP) + ".txt",
                        "--against", str(OUTPUT_DOES_NOT_POP) + "_model.txt",
                        "--dump-activations", str(dump)]) == 1
    out = capsys.readouterr().out
    assert "diverge" in out and "logit margin" in out and "attends" in out
    import numpy as np
    arrays = np.load(dump)
    T = arrays["tokens"].shape[0]
    assert arrays["residuals"].shape[0] == T and arrays["logits"].shape == (T, len(reference.VOCAB))


def test_crosscheck_rejects_a_bad_model_file(tmp_path, capsys):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"\x01\x02")
    assert wasmtf.main(["crosscheck", str(bad), str(THREE_PLUS_FIVE)]) == 2
    assert "model.bin" in one_error_line(capsys)


def test_spectest_command_counts_cases(capsys):
    assert wasmtf.main(["spectest", str(REPO / "spec" / "wast" / "nop.wast")]) == 0
    assert "nop.wast:" in capsys.readouterr().out


@pytest.mark.parametrize("command", [name for name, _, _ in wasmtf.COMMANDS])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        wasmtf.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("arguments", [["run"], ["run", str(THREE_PLUS_FIVE), "--max-tokens", "-5"],
                                       ["run", str(THREE_PLUS_FIVE), "--cache", "bogus"]])
def test_bad_usage_exits_2(capsys, arguments):
    with pytest.raises(SystemExit) as exit_info:
        wasmtf.main(arguments)
    assert exit_info.value.code == 2


def test_model_bin_written_by_wasmtf_reproduces_the_worked_examples(tmp_path):
    """A model.bin (SPEC 8) read back runs every ex*.txt to its reference trace."""
    path = tmp_path / "model.bin"
    wasmtf.save(wasmtf.load_machine(), path)
    model = wasmtf.load(path)
    for program in sorted(EXAMPLES_DIR.glob("ex*_*.txt")):
        if program.name.endswith("_ref.txt"):
            continue
        instructions, input_bytes = reference.read_program(program)
        prompt, trace = wasmtf.run_program(model, instructions, input_bytes)
        expected = program.with_name(program.stem + "_ref.txt").read_text()
        assert reference.format_trace_file(prompt, trace) == expected, program.name


def test_run_speculative_gives_the_sequential_trace(capsys):
    assert wasmtf.main(["run", str(CALL_INPUT), "--tokens", "--speculative"]) == 0
    assert capsys.readouterr().out == (EXAMPLES_DIR / "ex3_call_input_ref.txt").read_text()
    assert wasmtf.main(["run", str(EXAMPLE_WASM / "hungarian.wasm"), "--speculative"]) == 0
    assert capsys.readouterr().out.endswith("cost: 206\n")


def test_weights_and_spectest_bad_input_exit_2(tmp_path, capsys):
    assert wasmtf.main(["weights", "-o", str(tmp_path / "weights.xyz")]) == 2
    assert "unknown model file type" in one_error_line(capsys)
    assert wasmtf.main(["spectest", str(tmp_path / "missing.wast")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.wast" in err[0]


# --- issue 16: no wrong answers with exit 0, no runaway runs -----------------------

PRIMES_C = """/* the primes up to 5, by trial division (`%` is lowered to a loop) */
void compute(const char *input) {
    for (int n = 2; n <= 5; n++) {
        int prime = 1;
        for (int d = 2; d < n; d++)
            if (n % d == 0) prime = 0;
        if (prime) { print_int(n); putchar(' '); }
    }
    putchar('\\n');
}
"""


@pytest.mark.slow
def test_softmax_cache_stops_on_a_float64_tie_instead_of_a_wrong_answer(tmp_path, capsys):
    """Stores to the C stack (addresses near 2^16) tie exactly in float64 after ~1,500
    tokens (wasmtf.SoftmaxHead's bound): softmax would average two writes and print
    "2 " forever. It stops at the first tie, naming the head and position (~10 s)."""
    source = tmp_path / "primes.c"
    source.write_text(PRIMES_C)
    assert wasmtf.main(["run", str(source)]) == 0
    assert capsys.readouterr().out == "2 3 5 \n"
    assert wasmtf.main(["run", str(source), "--cache", "softmax"]) == 1
    captured = capsys.readouterr()
    assert captured.out in ("", "2 ")
    errors = [line for line in captured.err.splitlines() if line.startswith("wasmtf: error")]
    assert len(errors) == 1 and "softmax attention cannot tell apart the keys of layer" in errors[0]
    assert " at position " in errors[0]


def test_runaway_recursion_stops_in_reference_run_and_speculative_run(monkeypatch, capsys):
    """ex3 with an empty input recurses forever; the call depth limit (here lowered to 20)
    stops the reference, the transformer's run and its speculative run alike."""
    monkeypatch.setattr(reference, "MAX_CALL_DEPTH", 20)
    for command in (["reference"], ["run"], ["run", "--speculative"]):
        assert wasmtf.main(command + [str(CALL_INPUT), "--input", ""]) == 1
        line = one_error_line(capsys)
        assert "call stack exhausted" in line and "(the limit is 20)" in line, command


def test_run_speculative_on_a_program_that_never_halts(tmp_path, capsys):
    program = tmp_path / "loop.txt"
    program.write_text(reference.format_program([("i32.const", 1), ("drop", 0), ("br", (-3) % 2 ** 32),
                                                 ("halt", 0)]))
    assert wasmtf.main(["run", str(program), "--speculative", "--max-tokens", "5000"]) == 1
    assert one_error_line(capsys) == "wasmtf: no stop token within 5,000 tokens"
