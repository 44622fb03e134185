"""The command line: every subcommand's good path, and its bad-input path
(one clear line on stderr and the right exit code: 0 ok, 1 failed run, 2 bad input)."""
import inspect
import select
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest

from conftest import EXAMPLES_DIR, REPO
import cli
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
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "output: 8\n" in out and "ok: the trace equals the reference" in out
    assert "i32.add" in out and "commit(" in out  # the program and the trace grouped by instruction


def test_run_prints_the_program_output(capsys):
    assert cli.main(["run", str(EXAMPLE_WASM / "hello.wasm")]) == 0
    captured = capsys.readouterr()
    assert captured.out == "Hello, world!\n"
    assert "tokens in" in captured.err and "tokens/s" in captured.err


def test_run_tokens_equals_the_reference_file(capsys):
    assert cli.main(["run", str(CALL_INPUT), "--tokens", "--cache", "brute"]) == 0
    expected = (EXAMPLES_DIR / "ex3_call_input_ref.txt").read_text()
    assert capsys.readouterr().out == expected


def test_run_trace_and_input(capsys):
    assert cli.main(["run", str(CALL_INPUT), "--input", "5", "--trace"]) == 0
    out = capsys.readouterr().out
    assert "call" in out and "b'12345\\n'" in out


def test_reference_prints_the_ref_layout(capsys):
    assert cli.main(["reference", str(THREE_PLUS_FIVE)]) == 0
    assert capsys.readouterr().out == (EXAMPLES_DIR / "ex0_three_plus_five_ref.txt").read_text()


def test_a_trapped_run_exits_1(tmp_path, capsys):
    program = tmp_path / "trap.txt"
    program.write_text(reference.format_program([("i32.const", 7), ("trap", 0), ("halt", 0)]))
    for command in ("run", "reference"):
        assert cli.main([command, str(program)]) == 1
        assert one_error_line(capsys).startswith("wasmtf: the program trapped")


def test_running_out_of_tokens_exits_1(capsys):
    assert cli.main(["run", str(THREE_PLUS_FIVE), "--max-tokens", "10"]) == 1
    assert one_error_line(capsys) == "wasmtf: no stop token within 10 tokens"


@pytest.mark.parametrize("command", ["run", "reference", "compile"])
def test_bad_program_files_exit_2_with_one_line(tmp_path, capsys, command):
    missing = tmp_path / "missing.txt"
    assert cli.main([command, str(missing)]) == 2
    assert "missing.txt" in one_error_line(capsys)
    bad_text = tmp_path / "bad.txt"
    bad_text.write_text("{ i32.const 01 00 00 }")
    assert cli.main([command, str(bad_text)]) == 2
    assert one_error_line(capsys).startswith("wasmtf: error: ")
    bad_wasm = tmp_path / "bad.wasm"
    bad_wasm.write_bytes(b"\0asn\1\0\0\0")
    assert cli.main([command, str(bad_wasm)]) == 2
    assert "magic" in capsys.readouterr().err


def test_compile_writes_the_program_file(tmp_path, capsys):
    out = tmp_path / "add.txt"
    assert cli.main(["compile", str(EXAMPLE_WASM / "add.wasm"), "-o", str(out)]) == 0
    instructions, input_bytes = reference.read_program(out)
    assert instructions[0][0] == "input_base"
    assert reference.output_bytes(reference.run_reference(instructions, input_bytes)) == b"8\n"


@pytest.mark.parametrize("suffix", [".npz", ".bin"])
def test_weights_round_trip_through_crosscheck(tmp_path, capsys, suffix):
    weights = tmp_path / ("model" + suffix)
    assert cli.main(["weights", "-o", str(weights)]) == 0
    assert cli.main(["crosscheck", str(weights), str(CALL_INPUT)]) == 0
    assert "ok:" in capsys.readouterr().out


def test_crosscheck_reports_the_first_divergence(tmp_path, capsys):
    weights = tmp_path / "model.npz"
    assert cli.main(["weights", "-o", str(weights)]) == 0
    dump = tmp_path / "activations.npz"
    # transformer-vm's model output for d1 differs from the reference (SPEC 4.8): we follow the reference
    assert cli.main(["crosscheck", str(weights), str(OUTPUT_DOES_NOT_POP) + ".txt",
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
    assert cli.main(["weights", "-o", str(weights)]) == 0
    d3 = EXAMPLES_DIR / "official_model_divergences" / "d3_empty_input_section"
    assert cli.main(["crosscheck", str(weights), f"{d3}.txt", "--against", f"{d3}_model.txt"]) == 1
    assert "diverge at token 0 (group 0): expected 'commit(+0,sts=0,bt=0)', got '00'" in capsys.readouterr().out
    instructions, _ = reference.read_program(f"{d3}.txt")
    prompt = reference.program_tokens(instructions)
    own = tmp_path / "own_ref.txt"            # wasmtf's own trace: the empty input section `00 commit(...)`
    own.write_text(" ".join(prompt + reference.run_reference(instructions, b"")))
    assert cli.main(["crosscheck", str(weights), f"{d3}.txt", "--against", str(own)]) == 0
    assert cli.main(["crosscheck", str(weights), f"{d3}.txt", "--against", f"{d3}_model.txt",
                        "--input", "x"]) == 2
    assert "its prompt has no input section, but the input is b'x'" in one_error_line(capsys)
    assert cli.main(["crosscheck", str(weights), f"{d3}.txt", "--against", str(own), "--input", "x"]) == 2
    assert "its input is b'', not b'x'" in one_error_line(capsys)
    assert cli.main(["crosscheck", str(weights), str(THREE_PLUS_FIVE), "--against", f"{d3}_model.txt"]) == 2
    assert "is the trace of another program" in one_error_line(capsys)


def test_crosscheck_rejects_a_bad_model_file(tmp_path, capsys):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"\x01\x02")
    assert cli.main(["crosscheck", str(bad), str(THREE_PLUS_FIVE)]) == 2
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
    assert cli.main([word.format(tmp=tmp_path) for word in command]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [captured.err.strip()]
    assert captured.err.startswith("wasmtf: error: ") and f"(pip install {package})" in captured.err
    assert "passed" not in captured.out


def test_spectest_command_counts_cases(capsys):
    assert cli.main(["spectest", str(REPO / "spec" / "wast" / "nop.wast")]) == 0
    assert "nop.wast:" in capsys.readouterr().out


@pytest.mark.parametrize("command", [name for name, _, _ in cli.COMMANDS])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("arguments", [["run"], ["run", str(THREE_PLUS_FIVE), "--max-tokens", "-5"],
                                       ["run", str(THREE_PLUS_FIVE), "--cache", "bogus"]])
def test_bad_usage_exits_2(capsys, arguments):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(arguments)
    assert exit_info.value.code == 2


def test_model_bin_written_by_wasmtf_reproduces_the_worked_examples(tmp_path):
    """A model.bin (SPEC 8) read back runs every ex*.txt to its reference trace."""
    path = tmp_path / "model.bin"
    wasmtf.save(cli.load_machine(), path)
    model = wasmtf.load(path)
    for program in sorted(EXAMPLES_DIR.glob("ex*_*.txt")):
        if program.name.endswith("_ref.txt"):
            continue
        instructions, input_bytes = reference.read_program(program)
        prompt, trace = wasmtf.run_program(model, instructions, input_bytes)
        expected = program.with_name(program.stem + "_ref.txt").read_text()
        assert reference.format_trace_file(prompt, trace) == expected, program.name


def test_run_speculative_gives_the_sequential_trace(capsys):
    assert cli.main(["run", str(CALL_INPUT), "--tokens", "--speculative"]) == 0
    assert capsys.readouterr().out == (EXAMPLES_DIR / "ex3_call_input_ref.txt").read_text()
    assert cli.main(["run", str(EXAMPLE_WASM / "hungarian.wasm"), "--speculative"]) == 0
    assert capsys.readouterr().out.endswith("cost: 206\n")


def test_weights_and_spectest_bad_input_exit_2(tmp_path, capsys):
    assert cli.main(["weights", "-o", str(tmp_path / "weights.xyz")]) == 2
    assert "unknown model file type" in one_error_line(capsys)
    assert cli.main(["spectest", str(tmp_path / "missing.wast")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.wast" in err[0]


# --- issue 16: what a new user and a fuzzing sweep found ----------------------

def write_program(path, instructions):
    path.write_text(reference.format_program(instructions))
    return path


def error_lines(capsys):
    return capsys.readouterr().err.strip().splitlines()


@pytest.fixture(scope="module")
def weights_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "weights.npz"
    wasmtf.save(cli.load_machine(), path)
    return path


def test_crosscheck_against_must_be_a_trace_of_this_program(weights_npz, capsys):
    # a program file (no trace after its prompt): an error naming the file, not "ok: 0 tokens equal"
    assert cli.main(["crosscheck", str(weights_npz), str(THREE_PLUS_FIVE), "--against", str(THREE_PLUS_FIVE)]) == 2
    captured = capsys.readouterr()
    assert "ok" not in captured.out
    assert captured.err.strip() == (f"wasmtf: error: --against {THREE_PLUS_FIVE}: a program file, not a trace "
                                    "(no tokens after the prompt)")
    # another program's trace: an error, not a model divergence
    other = EXAMPLES_DIR / "ex1_arith_ref.txt"
    assert cli.main(["crosscheck", str(weights_npz), str(THREE_PLUS_FIVE), "--against", str(other)]) == 2
    captured = capsys.readouterr()
    assert "diverge" not in captured.out
    assert captured.err.strip() == f"wasmtf: error: {other} is the trace of another program than {THREE_PLUS_FIVE}"
    # the same program with another input
    assert cli.main(["crosscheck", str(weights_npz), str(CALL_INPUT), "--input", "7",
                        "--against", str(EXAMPLES_DIR / "ex3_call_input_ref.txt")]) == 2
    assert "its input is b'3', not b'7'" in one_error_line(capsys)
    # its own trace: ok
    assert cli.main(["crosscheck", str(weights_npz), str(THREE_PLUS_FIVE),
                        "--against", str(EXAMPLES_DIR / "ex0_three_plus_five_ref.txt")]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


REJECTED_PROGRAMS = {  # programs the reference interpreter rejects while running
    "drop on an empty stack": [("drop", 0), ("halt", 0)],
    "add with one operand": [("i32.const", 1), ("i32.add", 0), ("halt", 0)],
    "output on an empty stack": [("output", 0), ("halt", 0)],
    "underflow on a loop's second turn": [("i32.const", 5), ("drop", 0), ("br", reference.WORD_MODULUS - 2)],
    "past the last instruction": [("i32.const", 1), ("drop", 0)],
    "past the end after a loop": [("i32.const", 3), ("local.set", 0), ("local.get", 0), ("i32.const", 1),
                                  ("i32.sub", 0), ("local.tee", 0), ("br_if", reference.WORD_MODULUS - 5)],
}


@pytest.mark.parametrize("name", REJECTED_PROGRAMS)
@pytest.mark.parametrize("speculative", [False, True])
def test_run_rejects_what_the_reference_rejects_before_generating(tmp_path, capsys, name, speculative):
    program = write_program(tmp_path / "p.txt", REJECTED_PROGRAMS[name])
    assert cli.main(["reference", str(program)]) == 1
    expected = error_lines(capsys)[-1].removeprefix("wasmtf: ")
    assert cli.main(["run", str(program)] + (["--speculative"] if speculative else [])) == 1
    captured = capsys.readouterr()
    assert captured.out == ""                     # nothing generated, nothing printed
    assert captured.err.strip() == f"wasmtf: error: {expected}"


def test_the_run_check_finds_a_late_underflow(tmp_path, capsys):
    """An underflow after many steps is found too (within the reference's step limit)."""
    loop = [("i32.const", 40_000), ("local.set", 0), ("local.get", 0), ("i32.const", 1), ("i32.sub", 0),
            ("local.tee", 0), ("br_if", reference.WORD_MODULUS - 5), ("drop", 0), ("halt", 0)]
    program = write_program(tmp_path / "late.txt", loop)
    assert cli.main(["run", str(program)]) == 1
    assert one_error_line(capsys).startswith("wasmtf: error: stack underflow: status running after 200002 steps")


def test_a_trapped_run_says_where_as_reference_does(tmp_path, capsys):
    program = write_program(tmp_path / "trap.txt", [("i32.const", 0), ("br_if", 1), ("i32.const", 7),
                                                    ("drop", 0), ("trap", 0), ("halt", 0)])
    assert cli.main(["reference", str(program)]) == 1
    expected = one_error_line(capsys)
    assert expected == "wasmtf: the program trapped at instruction 4 (token 21)"
    for extra in ([], ["--speculative"], ["--cache", "brute"]):
        assert cli.main(["run", str(program)] + extra) == 1
        assert one_error_line(capsys) == expected


def endless_loop(tmp_path, output=b""):
    """A program that prints `output`, then branches to itself forever."""
    prints = [instruction for byte in output for instruction in (("i32.const", byte), ("output", 0))]
    return write_program(tmp_path / "loop.txt", prints + [("br", reference.WORD_MODULUS - 1)])


def test_progress_lines_without_a_terminal_name_the_limit(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "PROGRESS_LINE_SECONDS", 0)   # a line at every report (every 4,096 tokens)
    assert cli.main(["run", str(endless_loop(tmp_path)), "--max-tokens", "9000"]) == 1
    lines = error_lines(capsys)
    assert [line.split(" tokens,")[0] for line in lines[:2]] == ["wasmtf: 4,096", "wasmtf: 8,192"]
    assert all(line.endswith(" s (limit 9,000)") and "tokens/s" in line for line in lines[:2])
    assert lines[2:] == [lines[2], "wasmtf: no stop token within 9,000 tokens"] and "in " in lines[2]


def test_help_states_the_default_token_limit(capsys):
    for command in ("run", "generate"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        assert f"default {wasmtf.DEFAULT_MAX_NEW_TOKENS:,}".replace(",", ",") in " ".join(capsys.readouterr().out.split())


def test_the_live_line_is_cleared_before_streamed_output(capsys):
    progress = cli.Progress(limit=100, stream_output=True)
    progress.live = True                                          # as if stderr were a terminal
    progress(2, ["00", "commit(+1,sts=1,bt=0)"])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("\r  2 tokens, ") and captured.err.endswith("(limit 100)")
    progress(4, ["00", "commit(+1,sts=1,bt=0)", "out(H)", "out(i)"])
    captured = capsys.readouterr()
    assert captured.out == "Hi"                                   # streamed as it is written, the live line
    erase, redraw = captured.err.split("\0337")                   # erased first, then drawn after the output
    assert erase == "\r\033[K" and redraw.startswith("  4 tokens, ")
    progress(6, ["00", "commit(+1,sts=1,bt=0)", "out(H)", "out(i)", "out(0a)", "halt"])
    captured = capsys.readouterr()
    assert captured.out == "\n"                                   # the line after "Hi" restored, then erased
    assert captured.err.startswith("\0338\033[K\r  6 tokens, ")
    progress.finish(6)
    assert capsys.readouterr().err.startswith("\r\033[Kwasmtf: 6 tokens in ")
    progress.write_output(["out(!)"])                             # output that does not end its line
    progress.finish(7)
    captured = capsys.readouterr()
    assert captured.out == "!" and captured.err.startswith("\nwasmtf: 7 tokens in ")


def test_run_streams_the_output_as_it_is_generated(tmp_path):
    """The output of a program that never halts appears long before the token limit."""
    program = endless_loop(tmp_path, b"hi\n")
    process = subprocess.Popen([sys.executable, str(REPO / "wasmtf.py"), "run", str(program),
                                "--max-tokens", "300000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready and process.stdout.readline() == b"hi\n"
        assert process.poll() is None                           # still generating
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def test_a_closed_pipe_ends_the_run_quietly(tmp_path):
    for command in ([sys.executable, str(REPO / "wasmtf.py")],                    # SIGPIPE, as Unix tools
                    [sys.executable, "-c", "import sys, cli; sys.exit(cli.main())"]):  # BrokenPipeError
        process = subprocess.Popen(command + ["run", str(EXAMPLE_WASM / "collatz.wasm"), "--input", "6", "--trace"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        assert process.stdout.readline().split()[:2] == [b"step", b"pc"]
        process.stdout.close()                                    # like `| head -1`
        assert process.stderr.read() == b""
        process.stderr.close()
        assert process.wait() in (-signal.SIGPIPE, 1)


def test_one_name_for_one_thing(tmp_path, capsys):
    # --cache with --speculative is an error, not ignored
    assert cli.main(["run", str(CALL_INPUT), "--speculative", "--cache", "softmax"]) == 2
    assert "--cache has no effect with --speculative" in one_error_line(capsys)
    # --model '' is an error, not the built-in machine
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", str(CALL_INPUT), "--model", ""])
    assert exit_info.value.code == 2 and "--model: an empty file name" in capsys.readouterr().err
    # generate takes --max-tokens, as run does
    model = tmp_path / "copy.npz"
    wasmtf.save(wasmtf.copy_model(), model)
    assert cli.main(["generate", str(model), "{", "3", "--max-tokens", "2"]) == 1
    assert capsys.readouterr().out == "1 4\n"   # `{` has code 0
    # convert says what it wrote
    assert cli.main(["convert", str(model), str(tmp_path / "copy.bin")]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'copy.bin'}: ")


def test_the_first_error_line_tells_the_whole_story(tmp_path, capsys):
    program = tmp_path / "wide.wat"
    program.write_text('(module (import "env" "output_byte" (func $o (param i32)))'
                       ' (func (export "compute") (drop (f64.add (f64.const 1) (f64.const 2)))'
                       ' (call $o (i32.const 33))))')
    assert cli.main(["run", str(program)]) == 2
    first, *details = error_lines(capsys)
    assert first.startswith(f"wasmtf: error: {program}: 3 unsupported instructions or features, the first: ")
    assert len(details) == 3 and all(line.startswith("  ") and "f64." in line for line in details)


def test_model_files_in_disguise_name_the_real_problem(tmp_path, capsys, weights_npz):
    bin_as_npz = tmp_path / "model.npz"
    wasmtf.save(wasmtf.copy_model(), tmp_path / "model.bin")
    (tmp_path / "model.bin").rename(bin_as_npz)
    npy_as_npz = tmp_path / "array.npz"
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "array.npy").rename(npy_as_npz)
    arrays = dict(np.load(weights_npz))
    V, D = arrays["tok.weight"].shape
    scalar = tmp_path / "scalar.npz"
    np.savez(scalar, **{**arrays, "tok.weight": np.array(1.0)})
    wrong_rows = tmp_path / "rows.npz"
    np.savez(wrong_rows, **{**arrays, "tok.weight": arrays["tok.weight"][:-1]})
    odd_width = tmp_path / "width.npz"
    np.savez(odd_width, **{**arrays, "tok.weight": arrays["tok.weight"][:, :-1]})
    scalar_vocab = tmp_path / "vocab.npz"
    np.savez(scalar_vocab, **{**arrays, "vocab": np.array("halt")})
    expected = {bin_as_npz: "a transformer-vm model.bin, not an .npz archive: name it .bin",
                npy_as_npz: "one .npy array, not an .npz archive of named arrays",
                scalar: "array tok.weight has shape (), not a matrix",
                wrong_rows: f"array tok.weight has shape ({V - 1}, {D}), not [V={V} (the vocabulary), an even D]",
                odd_width: f"array tok.weight has shape ({V}, {D - 1}), not [V={V} (the vocabulary), an even D]",
                scalar_vocab: "array vocab has shape (), not a list"}
    for path, message in expected.items():
        assert cli.main(["info", str(path)]) == 2
        err = capsys.readouterr().err
        assert err == f"wasmtf: error: {path}: {message}\n" and "pickl" not in err


def test_a_negative_erase_count_is_a_clear_error(tmp_path, capsys):
    model = wasmtf.copy_model()
    model["erase"] = [[[5], [6]]]
    data = wasmtf.write_model_bin(model)
    count_at = data.rindex(struct.pack("<3i", 1, 1, 5)) + 4        # has_erase = 1, then layer 0's count
    (tmp_path / "negative.bin").write_bytes(data[:count_at] + struct.pack("<i", -3) + data[count_at + 4:])
    assert cli.main(["info", str(tmp_path / "negative.bin")]) == 2
    assert error_lines(capsys) == [f"wasmtf: error: {tmp_path / 'negative.bin'}: layer 0 erase count is -3, negative"]


def test_text_that_is_not_utf8_is_named(tmp_path, capsys, weights_npz):
    bad = b"{\n\xff\xfe\n}\n"
    for name in ("prog.txt", "prog.wat", "tests.wast"):
        (tmp_path / name).write_bytes(bad)
    (tmp_path / "prompt.txt").write_bytes(bad)
    commands = {"prog.txt": ["run", str(tmp_path / "prog.txt")],
                "prog.wat": ["compile", str(tmp_path / "prog.wat")],
                "tests.wast": ["spectest", str(tmp_path / "tests.wast")],
                "prompt.txt": ["generate", str(weights_npz), "--prompt-file", str(tmp_path / "prompt.txt")],
                "--against": ["crosscheck", str(weights_npz), str(THREE_PLUS_FIVE),
                              "--against", str(tmp_path / "prog.txt")]}
    for name, command in commands.items():
        assert cli.main(command) == 2, name
        line = one_error_line(capsys)
        assert name in line and "not UTF-8 text (byte 0xff at offset 2)" in line, line
    assert cli.main(["run", str(EXAMPLE_WASM / "hello.wasm"), "--input", "Ad\udcffa"]) == 2
    assert one_error_line(capsys) == "wasmtf: error: --input: character 2 is not encodable as UTF-8 ('\\udcff')"


def test_helpers_that_generate_stop_at_a_token_limit_by_default(tmp_path, monkeypatch):
    import compile_weights
    import speculative
    import spectest
    for function in (wasmtf.generate, wasmtf.run_program, speculative.generate_speculative,
                     speculative.generate, speculative.run_program):
        default = inspect.signature(function).parameters["max_new_tokens"].default
        assert default == wasmtf.DEFAULT_MAX_NEW_TOKENS, function.__name__
    monkeypatch.setattr(wasmtf, "DEFAULT_MAX_NEW_TOKENS", 60)   # read when called, not when defined
    loop = [("br", reference.WORD_MODULUS - 1)]
    assert len(wasmtf.run_transformer(compile_weights.compile_machine(), loop)) == 60
    assert spectest.transformer_runner(loop) == ("running", b"")


def test_readme_gives_the_command_that_opens_the_notebooks():
    readme = (REPO / "README.md").read_text()
    command = next(line.strip() for line in readme.splitlines() if "jupyter" in line and "pip install" in line)
    requirements = command.split("pip install -r ")[1].split()[0]
    assert "jupyter" in (REPO / requirements).read_text()
    assert "notebooks" in command
    assert "jupyter" not in (REPO / "requirements-dev.txt").read_text()   # CI installs what tests need only


def test_a_c_compile_failure_is_one_line_then_the_compilers_messages(tmp_path, capsys):
    source = tmp_path / "mine.c"
    source.write_text("void compute(const char *input) { putchar(x); }\nvoid other(void) { y = 1; }\n")
    assert cli.main(["run", str(source)]) == 2
    first, *details = error_lines(capsys)
    assert first == (f"wasmtf: error: compiling {source} failed (2 errors, the first: "
                     f"{source}:1:43: error: use of undeclared identifier 'x')")
    assert details and all(line.startswith("  ") for line in details)
    assert any(f"{source}:2:20: error: use of undeclared identifier 'y'" in line for line in details)


# --- issue 16: no wrong answers with exit 0, no runaway runs -----------------------

PRIMES_C = """/* the primes up to the input's number, by trial division (the bound comes from the
   input so that clang cannot compute the answer at compile time) */
void compute(const char *input) {
    int limit = parse_int(&input);
    for (int n = 2; n <= limit; n++) {
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
    tokens (wasmtf.SoftmaxHead's bound): softmax would average two writes and print a
    wrong answer. It stops at the first tie, naming the head and position (~10 s)."""
    source = tmp_path / "primes.c"
    source.write_text(PRIMES_C)
    assert cli.main(["run", str(source), "--input", "30"]) == 0
    assert capsys.readouterr().out == "2 3 5 7 11 13 17 19 23 29 \n"
    assert cli.main(["run", str(source), "--input", "30", "--cache", "softmax"]) == 1
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
        assert cli.main(command + [str(CALL_INPUT), "--input", ""]) == 1
        line = one_error_line(capsys)
        assert "call stack exhausted" in line and "(the limit is 20)" in line, command


def test_run_speculative_on_a_program_that_never_halts(tmp_path, capsys):
    program = tmp_path / "loop.txt"
    program.write_text(reference.format_program([("i32.const", 1), ("drop", 0), ("br", (-3) % 2 ** 32),
                                                 ("halt", 0)]))
    assert cli.main(["run", str(program), "--speculative", "--max-tokens", "5000"]) == 1
    assert one_error_line(capsys) == "wasmtf: no stop token within 5,000 tokens"
