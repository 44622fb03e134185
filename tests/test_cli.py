"""The command line: every subcommand's good path, and its bad-input path
(one clear line on stderr and the right exit code: 0 ok, 1 failed run, 2 bad input)."""
import sys

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


def test_crosscheck_reads_a_trace_without_an_input_section(tmp_path, capsys):
    """transformer-vm writes no input section when a program gets no input (SPEC 2.1,
    d3): crosscheck runs that prompt and reports d3 itself, the model's NUL byte."""
    weights = tmp_path / "model.npz"
    assert wasmtf.main(["weights", "-o", str(weights)]) == 0
    d3 = EXAMPLES_DIR / "official_model_divergences" / "d3_empty_input_section"
    assert wasmtf.main(["crosscheck", str(weights), f"{d3}.txt", "--against", f"{d3}_model.txt"]) == 1
    assert "diverge at token 0 (group 0): expected 'commit(+0,sts=0,bt=0)', got '00'" in capsys.readouterr().out
    instructions, _ = reference.read_program(f"{d3}.txt")
    prompt = reference.program_tokens(instructions)
    own = tmp_path / "own_ref.txt"            # wasmtf's own trace: the empty input section `00 commit(...)`
    own.write_text(" ".join(prompt + reference.run_reference(instructions, b"")))
    assert wasmtf.main(["crosscheck", str(weights), f"{d3}.txt", "--against", str(own)]) == 0
    assert wasmtf.main(["crosscheck", str(weights), f"{d3}.txt", "--against", f"{d3}_model.txt",
                        "--input", "x"]) == 2
    assert "its prompt has no input section, but the input is b'x'" in one_error_line(capsys)
    assert wasmtf.main(["crosscheck", str(weights), f"{d3}.txt", "--against", str(own), "--input", "x"]) == 2
    assert "its input is b'', not b'x'" in one_error_line(capsys)
    assert wasmtf.main(["crosscheck", str(weights), str(THREE_PLUS_FIVE), "--against", f"{d3}_model.txt"]) == 2
    assert "is the trace of another program" in one_error_line(capsys)


def test_crosscheck_rejects_a_bad_model_file(tmp_path, capsys):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"\x01\x02")
    assert wasmtf.main(["crosscheck", str(bad), str(THREE_PLUS_FIVE)]) == 2
    assert "model.bin" in one_error_line(capsys)


@pytest.mark.parametrize("package, command", [
    ("wasmtime", ["spectest", str(REPO / "spec" / "wast" / "nop.wast")]),       # it assembles the modules
    ("wasmtime", ["run", "{tmp}/p.wat"]),
    ("wasmtime", ["compile", "{tmp}/p.wat"]),
    ("ziglang", ["run", str(EXAMPLE_WASM / "add.c")]),
    ("ziglang", ["reference", str(EXAMPLE_WASM / "hello.c"), "--input", "x"]),
])
def test_a_missing_tool_is_an_error_saying_what_to_install(tmp_path, capsys, monkeypatch, package, command):
    """Never a silent pass ("0 passed, 0 failed, N skipped"): exit 2 and one line."""
    (tmp_path / "p.wat").write_text('(module (func (export "compute")))')
    monkeypatch.setitem(sys.modules, package, None)     # `import package` raises ImportError
    assert wasmtf.main([word.format(tmp=tmp_path) for word in command]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [captured.err.strip()]
    assert captured.err.startswith("wasmtf: error: ") and f"(pip install {package})" in captured.err
    assert "passed" not in captured.out


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
