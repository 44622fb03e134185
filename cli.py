"""cli.py: the command line of `python wasmtf.py` (wasmtf.py's last lines call run_as_script).

A table of subcommands (COMMANDS), each an argument adder and a small function
whose docstring is its help; argument parsing, progress on stderr, printing,
and error printing live here, the work in the modules this one imports.
Exit codes: 0 success, 1 a failed run (trap, no stop token, a failed check),
2 bad usage or bad input; every error is one line `wasmtf: error: ...` on stderr
(further lines indented), never a traceback.
"""
import argparse
import os
import pathlib
import shutil
import signal
import sys
import time

import compile_weights
import frontend
import profiling
import reference
import speculative
import spectest
import wasmtf

DEMO_PROGRAM = "examples/add.wasm"   # 3 + 5, compiled from examples/add.c
CACHES = ("hull", "brute", "softmax")


PROGRESS_LINE_SECONDS = 10  # stderr not a terminal (CI, a pipe): one progress line this often
# The live line on a terminal (VT100 escapes): at the start of an empty line it is
# drawn after "\r" and erased with "\r" + erase-to-end-of-line; after output that
# does not end its line, the cursor is saved, the line drawn after the output, and
# erased by restoring the cursor (the output stays where it was); it is cut to the
# terminal's width, since a wrapped line could scroll the screen under the saved cursor.
ERASE_TO_END, SAVE_CURSOR, RESTORE_CURSOR = "\033[K", "\0337", "\0338"


class Progress:
    """Tokens, tokens/s, elapsed time and the token limit on stderr: a live line
    when stderr is a terminal, else one line every PROGRESS_LINE_SECONDS; always
    a final summary line. With stream_output, the program's output (its out(...)
    tokens) goes to stdout as the tokens arrive, the live line cleared first."""

    def __init__(self, what="tokens", limit=None, stream_output=False):
        self.what = what
        self.limit = limit
        self.start = time.perf_counter()
        self.live = sys.stderr.isatty()
        self.next_line = self.start + PROGRESS_LINE_SECONDS
        self.erase = None                # how to erase the live line on the terminal, None if none is shown
        self.stream_output = stream_output
        self.streamed = 0                # tokens whose output was written
        self.output_ends_line = True     # the output so far ends with a newline (or there is none)
        self.column = 0                  # output bytes after its last newline (where the cursor is)

    def status(self, count):
        elapsed = time.perf_counter() - self.start
        limit = f" (limit {self.limit:,})" if self.limit else ""
        return f"{count:,} {self.what}, {count / max(elapsed, 1e-9):,.0f} {self.what}/s, {elapsed:.1f} s{limit}"

    def clear(self):
        """Erase the live line, if one is shown, so that output continues where it was."""
        if self.erase is not None:
            print(self.erase, end="", file=sys.stderr, flush=True)
            self.erase = None

    def write_output(self, tokens):
        """Write the output bytes of `tokens` (a continuation of the trace) to stdout."""
        data = reference.output_bytes(tokens)
        if data:
            self.clear()
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            self.output_ends_line = data.endswith(b"\n")
            self.column = len(data) - 1 - data.rindex(b"\n") if b"\n" in data else self.column + len(data)

    def __call__(self, count, tokens=None):
        if self.stream_output and tokens is not None:
            self.write_output(tokens[self.streamed:count])
            self.streamed = count
        if self.live:
            self.clear()
            column = 0 if self.output_ends_line else self.column
            text = f"  {self.status(count)}"[:max(shutil.get_terminal_size().columns - 1 - column, 0)]
            if self.output_ends_line:
                start, self.erase = "\r", "\r" + ERASE_TO_END
            else:
                start, self.erase = SAVE_CURSOR, RESTORE_CURSOR + ERASE_TO_END
            print(start + text, end="", file=sys.stderr, flush=True)
        elif time.perf_counter() >= self.next_line:
            print(f"wasmtf: {self.status(count)}", file=sys.stderr, flush=True)
            self.next_line = time.perf_counter() + PROGRESS_LINE_SECONDS

    def finish(self, count):
        self.clear()
        if self.live and not self.output_ends_line:  # the summary starts its own line on the terminal
            print(file=sys.stderr)
        elapsed = time.perf_counter() - self.start
        print(f"wasmtf: {count:,} {self.what} in {elapsed:.2f} s ({count / max(elapsed, 1e-9):,.0f} {self.what}/s)",
              file=sys.stderr)


def load_machine(path=None):
    """The compiled WebAssembly machine, or the weights in `path` (.npz or model.bin).
    Compiling takes well under a second, so nothing is cached on disk."""
    if path is not None:
        return wasmtf.load(path)
    return compile_weights.compile_machine()


def check_before_running(instructions, input_bytes, max_tokens):
    """Raise reference.ExecutionError, before the transformer generates anything, if the
    reference interpreter rejects the run (a stack underflow; running past the last
    instruction) within min(its step limit, the token limit) steps (a step writes >= 1
    token); it keeps no trace and runs some hundred times faster than the transformer."""
    steps = min(max_tokens, reference.DEFAULT_MAX_STEPS)
    try:
        machine = reference.execute(instructions, input_bytes, max_steps=steps, keep_trace=False)
    except reference.StepLimitExceeded:
        return  # nothing wrong within the token limit; the run will stop at it
    if machine.status == "end":
        raise reference.ExecutionError(reference.stop_problem("end", machine.pc))


def report_end(trace, instructions=None):
    """Exit code of a finished run: 0 after `halt`; 1, with one line on stderr, otherwise.
    A trap is reported with the instruction the trace says it ran last."""
    if trace and trace[-1] == "halt":
        return 0
    if trace and trace[-1] == "trap" and instructions is not None:
        for last in reference.walk_trace(instructions, trace):  # keeps only the last record
            pass
        print(f"wasmtf: {reference.stop_problem('trap', last['pc'])}", file=sys.stderr)
    elif trace and trace[-1] == "trap":
        print("wasmtf: the program trapped", file=sys.stderr)
    else:
        print(f"wasmtf: no stop token within {len(trace):,} tokens", file=sys.stderr)
    return 1


def cmd_demo(args):
    """run the built-in demo: 3 + 5, compiled from C, inside the transformer"""
    here = pathlib.Path(__file__).resolve().parent
    print(f"wasmtf demo: {DEMO_PROGRAM} (from examples/add.c) runs inside the compiled transformer.\n")
    print((here / "examples" / "add.c").read_text())
    instructions, input_bytes = frontend.load_program_file(here / DEMO_PROGRAM)
    print(f"The flat program: {len(instructions)} instructions (SPEC 3.1)")
    for index, (opcode, immediate) in enumerate(instructions):
        print(f"  {index:4d}  {opcode} {reference.to_signed(immediate)}")
    progress = Progress(limit=wasmtf.DEFAULT_MAX_NEW_TOKENS)
    prompt, trace = wasmtf.run_program(load_machine(), instructions, input_bytes, progress=progress)
    progress.clear()
    print(f"\nThe trace the transformer wrote after its {len(prompt)}-token prompt, one group per instruction:")
    print(reference.describe_trace(instructions, trace))
    progress.finish(len(trace))
    matches = trace == reference.run_reference(instructions, input_bytes)
    print("\noutput:", reference.output_bytes(trace).decode("utf-8", "replace"), end="")
    print("ok: the trace equals the reference interpreter's, token for token" if matches
          else "FAILED: the trace differs from the reference interpreter's")
    return report_end(trace, instructions) if matches else 1


def positive_int(text):
    """An argparse type: a whole number >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def file_name(text):
    """An argparse type: a non-empty file name."""
    if not text:
        raise argparse.ArgumentTypeError("an empty file name")
    return text


def max_tokens_argument(parser):
    parser.add_argument("--max-tokens", type=positive_int, default=wasmtf.DEFAULT_MAX_NEW_TOKENS, metavar="N",
                        help=f"stop after N generated tokens (default {wasmtf.DEFAULT_MAX_NEW_TOKENS:,}; "
                             "a long run reports its progress on stderr)")


def run_arguments(parser):
    program_arguments(parser)
    parser.add_argument("--cache", choices=CACHES, help="attention cache (default hull; not with --speculative)")
    parser.add_argument("--model", type=file_name,
                        help="weights to run (.npz or model.bin; default: the compiled machine)")
    parser.add_argument("--trace", action="store_true", help="print the instruction-level trace")
    parser.add_argument("--tokens", action="store_true",
                        help="print prompt and trace tokens in the *_ref.txt layout (compare with `reference`)")
    max_tokens_argument(parser)
    parser.add_argument("--speculative", action="store_true",
                        help="draft with the reference interpreter, verify in batched steps (same trace)")


def cmd_run(args):
    """run a program inside the transformer and print its output (as it is written)"""
    if args.speculative and args.cache is not None:
        raise ValueError("--cache has no effect with --speculative (the draft is verified with exact "
                         "hard attention over all positions at once): give one or the other")
    instructions, input_bytes = frontend.load_program_file(args.file, args.input)
    model = load_machine(args.model)
    check_before_running(instructions, input_bytes, args.max_tokens)
    streaming = not (args.tokens or args.trace)
    progress = Progress(limit=args.max_tokens, stream_output=streaming)
    if args.speculative:
        prompt, trace = speculative.run_program(model, instructions, input_bytes, args.max_tokens, progress=progress)
    else:
        prompt, trace = wasmtf.run_program(model, instructions, input_bytes, args.cache or "hull",
                                           args.max_tokens, progress)
    progress.clear()
    if args.tokens:
        sys.stdout.write(reference.format_trace_file(prompt, trace))
    elif args.trace:
        print(reference.describe_trace(instructions, trace))
    else:
        progress.write_output(trace[progress.streamed:])
    sys.stdout.flush()
    progress.finish(len(trace))
    return report_end(trace, instructions)


def program_arguments(parser):
    parser.add_argument("file", help="program: .c (needs ziglang), .wasm, .wat or a program .txt")
    parser.add_argument("--input", help="input string (replaces the file's input section)")


def reference_arguments(parser):
    program_arguments(parser)
    parser.add_argument("--specialized", action="store_true",
                        help="with the specialized prompt, `start` + input (SPEC 2.2; the same trace)")


def cmd_reference(args):
    """print the prompt and the reference interpreter's trace (the *_ref.txt layout)"""
    instructions, input_bytes = frontend.load_program_file(args.file, args.input)
    prompt = (reference.specialized_prompt if args.specialized else reference.program_tokens)(
        instructions, input_bytes)
    try:
        machine = reference.execute(instructions, input_bytes)
    except (reference.StepLimitExceeded, reference.ExecutionError) as error:
        if isinstance(error, reference.StepLimitExceeded):   # what was traced so far
            sys.stdout.write(reference.format_trace_file(prompt, error.machine.trace))
        print(f"wasmtf: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(reference.format_trace_file(prompt, machine.trace))
    if machine.status != "halt":
        print(f"wasmtf: {reference.stop_problem(machine.status, machine.pc)}", file=sys.stderr)
        return 1
    return 0


def compile_arguments(parser):
    program_arguments(parser)
    parser.add_argument("-o", "--output", help="program file to write (default: stdout)")


def cmd_compile(args):
    """compile C or WebAssembly to a program file"""
    instructions, input_bytes = frontend.load_program_file(args.file, args.input)
    text = reference.format_program(instructions, input_bytes)
    if args.output is None:
        sys.stdout.write(text)
    else:
        pathlib.Path(args.output).write_text(text)
        print(f"wrote {args.output}: {len(instructions)} instructions", file=sys.stderr)
    return 0


def save_model(model, path):
    wasmtf.save(model, path)
    print(f"wrote {path}: {compile_weights.describe_shape(model)}")
    return 0


def cmd_weights(args):
    """compile the machine and save its weights (.npz, or model.bin for transformer-vm runners)"""
    return save_model(load_machine(), args.output)


def specialize_arguments(parser):
    program_arguments(parser)
    parser.add_argument("-o", "--output", required=True, help="prog.npz or prog.bin")


PROMPT_SHOWN = 12  # tokens of the specialized prompt that `specialize` prints


def cmd_specialize(args):
    """bake a program into the weights: a model whose prompt is `start` + input (SPEC 2.2)"""
    instructions, input_bytes = frontend.load_program_file(args.file, args.input)
    start = time.perf_counter()
    model = compile_weights.specialize(instructions)
    wasmtf.save(model, args.output)
    print(f"wasmtf: specialized and saved in {time.perf_counter() - start:.2f} s", file=sys.stderr)
    prompt = reference.specialized_prompt(instructions, input_bytes)
    shown = " ".join(prompt[:PROMPT_SHOWN]) + (" ..." if len(prompt) > PROMPT_SHOWN else "")
    print(f"wrote {args.output}: {len(instructions)} instructions in the weights, program sha256 "
          f"{reference.program_hash(instructions)}; {compile_weights.describe_shape(model)}")
    print(f"prompt: {shown}  (run it: wasmtf.py run {args.file} --model {args.output})")
    return 0


def crosscheck_arguments(parser):
    parser.add_argument("model", help="weights to check (.npz or transformer-vm model.bin)")
    program_arguments(parser)
    parser.add_argument("--against", type=file_name,
                        help="expected trace file of this program (*_ref.txt layout; default: the reference)")
    parser.add_argument("--cache", choices=CACHES, default="hull")
    parser.add_argument("--dump-activations", metavar="OUT.npz",
                        help="save every layer's residual stream for the prompt and trace")


def cmd_crosscheck(args):
    """run weights on a program and compare with the reference trace, token for token"""
    model = wasmtf.load(args.model)
    instructions, input_bytes = frontend.load_program_file(args.file, args.input)
    prompt = wasmtf.program_prompt(model, instructions, input_bytes)
    if args.against:
        prompt, expected = expected_trace(args.against, instructions, input_bytes, prompt, args.file)
    else:
        expected = reference.execute(instructions, input_bytes).trace
    progress = Progress(limit=len(expected))
    actual = wasmtf.generate(model, prompt, cache=args.cache, max_new_tokens=len(expected), progress=progress)
    progress.finish(len(actual))
    if args.dump_activations:
        wasmtf.dump_activations(model, prompt + expected, args.dump_activations)
    if actual == expected:
        print(f"ok: {len(expected):,} trace tokens equal")
        return 0
    print(reference.diff_traces(expected, actual, instructions))
    first = next(i for i, (a, b) in enumerate(zip(expected + [None], actual + [None])) if a != b)
    tokens = prompt + actual[:first]
    occupants = None      # a file of the machine's weights: name its reused slots as the machine does
    machine = compile_weights.compile_machine()
    if model["slot_names"] == machine["slot_names"]:
        occupants = wasmtf.slot_occupants(machine)
    info = wasmtf.inspect(model, tokens, len(tokens) - 1, cache=args.cache, occupants=occupants)
    (best, best_token), (runner_up, runner_up_token) = info["top_logits"][:2]
    print(f"the model predicted {best_token!r} (runner-up {runner_up_token!r}, logit margin {best - runner_up:.6g})"
          f" after position {len(tokens) - 1}; what it computed there:")
    print(wasmtf.format_inspection(info))
    return 1


def expected_trace(path, instructions, input_bytes, prompt, program_path):
    """(prompt, trace tokens) of the trace file `path`, which must be a trace of this
    program and input with at least one token after its prompt. A trace whose prompt
    has no input section (transformer-vm's, for the empty input) gives that prompt."""
    try:
        traced_instructions, traced_input, expected = reference.parse_trace_file(reference.read_text(path))
    except reference.ProgramError as error:
        raise reference.ProgramError(f"--against {path}: not a trace file ({error})") from None
    if traced_instructions != instructions:
        raise ValueError(f"{path} is the trace of another program than {program_path}")
    if traced_input is None and reference.has_input_section(instructions) and not input_bytes:
        prompt = prompt[:prompt.index(reference.PROGRAM_END) + 1]   # transformer-vm's: no input section
    elif traced_input is None and input_bytes:
        raise ValueError(f"{path}: its prompt has no input section, but the input is {input_bytes!r}")
    elif (traced_input or b"") != (input_bytes or b""):
        raise ValueError(f"{path}: its input is {traced_input!r}, not {input_bytes or b''!r}")
    if not expected:
        raise ValueError(f"--against {path}: a program file, not a trace (no tokens after the prompt)")
    return prompt, expected


def spectest_arguments(parser):
    parser.add_argument("files", nargs="+", help="WebAssembly spec-test scripts (.wast)")
    parser.add_argument("--transformer", action="store_true", help="run the cases inside the transformer")


def cmd_spectest(args):
    """run WebAssembly spec tests (assert_return / assert_trap) on the reference or the transformer"""
    return spectest.command_spectest(args.files, transformer=args.transformer)


def profile_arguments(parser):
    program_arguments(parser)
    parser.add_argument("--rows", type=positive_int, default=12, help="rows per table (default 12)")


def cmd_profile(args):
    """which instructions and source functions a run's trace tokens go to (on the reference interpreter)"""
    return profiling.command_profile(args.file, args.input, args.rows)


def generate_arguments(parser):
    parser.add_argument("model", help="model file (.bin or .npz)")
    parser.add_argument("tokens", nargs="*", help="prompt tokens (or use --prompt-file)")
    parser.add_argument("--prompt-file", type=file_name, help="file of whitespace-separated prompt tokens")
    parser.add_argument("--cache", choices=CACHES, default="hull")
    max_tokens_argument(parser)
    parser.add_argument("--max-new-tokens", type=positive_int, dest="max_tokens",
                        help=argparse.SUPPRESS)  # the old name of --max-tokens


def cmd_generate(args):
    """generate tokens from a prompt until a stop token"""
    model = wasmtf.load(args.model)
    prompt = list(args.tokens)
    if args.prompt_file:
        prompt += reference.read_text(args.prompt_file).split()
    progress = Progress(limit=args.max_tokens)
    generated = wasmtf.generate(model, prompt, cache=args.cache, max_new_tokens=args.max_tokens, progress=progress)
    progress.clear()
    print(" ".join(generated))
    stopped = bool(generated) and generated[-1] in [model["vocab"][i] for i in model["stop_ids"]]
    if not stopped:
        print(f"wasmtf: no stop token within {args.max_tokens:,} new tokens", file=sys.stderr)
    return 0 if stopped else 1


def convert_arguments(parser):
    parser.add_argument("source", help="model file to read (.bin or .npz)")
    parser.add_argument("target", help="model file to write (.bin or .npz)")


def cmd_convert(args):
    """convert a model file between model.bin and .npz"""
    return save_model(wasmtf.load(args.source), args.target)


def cmd_info(args):
    """print a model file's sizes, active heads and stop tokens"""
    model = wasmtf.load(args.model)
    V, D = model["embed"].shape
    layers = model["layers"]
    F = layers[0]["w_ffo"].shape[1] if layers else 0
    print(f"V={V} D={D} L={len(layers)} H={D // 2} F={F}")
    for l, layer in enumerate(layers):
        heads = wasmtf.active_heads(layer)
        latest = sum(bool(layer["tie_latest"][h]) for h in heads)
        print(f"layer {l}: {len(heads)} active heads ({latest} latest), "
              f"{int(layer['w_ffo'].any(axis=0).sum())} live neurons")
    print("stop tokens:", " ".join(model["vocab"][i] for i in model["stop_ids"]))
    if model.get("trailer_bytes"):
        print(f"trailer: {model['trailer_bytes']:,} bytes after the model.bin fields (ignored)")
    baked = wasmtf.baked_program_hash(model)
    print(f"specialized: the program with sha256 {baked} is in the weights; prompt `start` + input (SPEC 2.2)"
          if baked else "universal: the prompt holds the program (SPEC 2.1)")
    return 0


COMMANDS = [
    # (name, add the sub-parser's arguments, run(args) -> exit code; its docstring is the help)
    ("demo", lambda parser: None, cmd_demo),
    ("run", run_arguments, cmd_run),
    ("reference", reference_arguments, cmd_reference),
    ("compile", compile_arguments, cmd_compile),
    ("weights", lambda parser: parser.add_argument("-o", "--output", default="weights.npz",
                                                   help="weights.npz or model.bin"), cmd_weights),
    ("specialize", specialize_arguments, cmd_specialize),
    ("crosscheck", crosscheck_arguments, cmd_crosscheck),
    ("spectest", spectest_arguments, cmd_spectest),
    ("profile", profile_arguments, cmd_profile),
    ("generate", generate_arguments, cmd_generate),
    ("convert", convert_arguments, cmd_convert),
    ("info", lambda parser: parser.add_argument("model", help="model file (.bin or .npz)"), cmd_info),
]


def main(argv=None):
    """Exit codes: 0 success, 1 failed run, 2 bad usage or bad input."""
    parser = argparse.ArgumentParser(prog="wasmtf.py", description=wasmtf.__doc__.splitlines()[0])
    parser.set_defaults(run=cmd_demo)
    subparsers = parser.add_subparsers(title="commands")
    for name, add_arguments, run in COMMANDS:
        subparser = subparsers.add_parser(name, help=run.__doc__, description=run.__doc__)
        add_arguments(subparser)
        subparser.set_defaults(run=run)
    args = parser.parse_args(argv)  # bad usage: argparse prints it and exits with 2
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader of stdout stopped (`... | head`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush at exit
        return 1
    except (ValueError, OSError) as error:  # bad files, programs, modules, tokens
        print_error(error)
        return 2
    except (reference.StepLimitExceeded, reference.ExecutionError, wasmtf.AttentionTie) as error:  # a failed run
        print_error(error)
        return 1


def print_error(error):
    """`wasmtf: error: ` and the message's first line, which tells the whole story;
    any further lines (every unsupported instruction, a compiler's messages) follow indented."""
    first, *details = str(error).splitlines() or [""]
    print(f"wasmtf: error: {first}", file=sys.stderr)
    for line in details:
        print(line if line[:1].isspace() else "  " + line, file=sys.stderr)


def run_as_script():
    """`python wasmtf.py ...`: main() on sys.argv, a closed pipe ending the process quietly."""
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return main()
