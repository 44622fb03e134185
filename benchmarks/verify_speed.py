"""Speed of speculative verification (speculative.py) on the Sudoku trace, next to
sequential decoding (wasmtf.generate, hull cache) on a prefix of the same trace.

    python benchmarks/verify_speed.py [--limit N] [--sequential 20000] [--chunk 16384]
                                      [--program examples/sudoku.wasm] [--input TEXT]

OpenBLAS runs single-threaded here unless OPENBLAS_NUM_THREADS is set: on a
machine shared with other busy processes its worker threads cost far more
than they give (Inkala, 2 busy cores: 310 s wall, 134 s CPU with 2 threads;
79 s wall, 38 s CPU with 1).

Default: the Arto Inkala Sudoku (examples/sudoku.wasm, its default input), about
9 million trace tokens, every one checked. Prints the draft time (reference
interpreter), the verified tokens per second, the peak resident memory of the
process (ru_maxrss) and the sequential tokens per second.
Targets (issue 8): >= 20,000 tokens/s verified (aim 40,000); Inkala end to end in
<= 5 minutes with <= 8 GiB.

    python benchmarks/verify_speed.py --against REV [--programs hungarian collatz sha256] [--rounds 3]

compares git revision REV's speculative.py (written to a temporary directory, run
with this checkout's other modules) with this checkout's, side by side: both
verify each examples/NAME.wasm program's whole reference trace, alternating,
`--rounds` times each; prints the best tokens/s of each (CPU time of this process:
time spent waiting for a shared core does not count) and their ratio (issue 11:
Hungarian >= 150,000 tokens/s)."""
import argparse
import os
import pathlib
import resource
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads OpenBLAS (see above)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import cli  # noqa: E402
import compile_weights  # noqa: E402
import frontend  # noqa: E402
import reference  # noqa: E402
import speculative  # noqa: E402
import wasmtf  # noqa: E402
from revision import module_at, run_conditions  # noqa: E402 (benchmarks/revision.py)

REPO = pathlib.Path(__file__).resolve().parent.parent


def peak_memory_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # Linux: KiB


def compare_against(revision, programs, rounds):
    model = compile_weights.compile_machine()
    plan = wasmtf.prepare(model)
    with tempfile.TemporaryDirectory() as directory:
        versions = {revision: module_at(revision, "speculative", directory), "this checkout": speculative}
        print(f"speculative verification of whole traces, best of {rounds} alternating runs "
              f"({run_conditions()})")
        for name in programs:
            instructions, input_bytes = frontend.load_program_file(REPO / "examples" / f"{name}.wasm")
            prompt = reference.program_tokens(instructions, input_bytes)
            draft = speculative.reference_draft(instructions, input_bytes)
            best = {}
            for _ in range(rounds):
                for label, module in versions.items():
                    start = time.process_time()
                    result = module.verify(model, prompt, draft, plan=plan)
                    seconds = time.process_time() - start
                    if result != (len(draft), None):
                        sys.exit(f"verify_speed.py: {name}: {label} does not accept the reference trace: {result}")
                    best[label] = min(best.get(label, seconds), seconds)
            base, new = best[revision], best["this checkout"]
            print(f"{name:10} {len(draft):9,} tokens: {revision} {len(draft) / base:8,.0f} tokens/s, "
                  f"this checkout {len(draft) / new:8,.0f} tokens/s: {base / new:.2f}x", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", default=str(REPO / "examples" / "sudoku.wasm"))
    parser.add_argument("--input", help="input text (default: the program's own)")
    parser.add_argument("--limit", type=int, help="verify only the first N trace tokens")
    parser.add_argument("--sequential", type=int, default=20_000,
                        help="tokens of sequential decoding to time (0: skip)")
    parser.add_argument("--chunk", type=int, default=speculative.CHUNK)
    parser.add_argument("--against", metavar="REV", help="compare with git revision REV's speculative.py")
    parser.add_argument("--programs", nargs="+", default=["hungarian", "collatz", "sha256"],
                        help="examples/NAME.wasm programs (--against)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per version (--against)")
    args = parser.parse_args(argv)
    if args.against:
        return compare_against(args.against, args.programs, args.rounds)

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
          f"(other processes share the cores); OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    model = compile_weights.compile_machine()
    plan = wasmtf.prepare(model)
    instructions, input_bytes = frontend.load_program_file(args.program, args.input)
    prompt = reference.program_tokens(instructions, input_bytes)

    start = time.perf_counter()
    draft = speculative.reference_draft(instructions, input_bytes)
    draft_seconds = time.perf_counter() - start
    print(f"draft: {len(draft):,} tokens from the reference interpreter in {draft_seconds:.1f} s "
          f"({len(draft) / draft_seconds:,.0f} tokens/s), prompt {len(prompt):,} tokens")
    if args.limit is not None:
        draft = draft[:args.limit]

    progress = cli.Progress("tokens verified")
    start, cpu_start = time.perf_counter(), time.process_time()
    accepted, token = speculative.verify(model, prompt, draft, chunk=args.chunk, plan=plan, progress=progress)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"verify: {accepted:,} of {len(draft):,} draft tokens accepted"
          + ("" if token is None else f"; the transformer says {token!r} at {accepted}"))
    print(f"verify: {seconds:.1f} s, {len(draft) / seconds:,.0f} tokens/s "
          f"(chunks of {args.chunk:,}); CPU time {cpu_seconds:.1f} s (all threads); "
          f"peak memory {peak_memory_gib():.2f} GiB")
    total = draft_seconds + seconds
    print(f"end to end (draft + verify): {total:.1f} s for {len(draft):,} tokens"
          + (f"; output {reference.output_bytes(draft).decode('utf-8', 'replace')!r}" if args.limit is None else ""))

    if args.sequential:
        n = min(args.sequential, len(draft))
        start = time.perf_counter()
        trace = wasmtf.generate(model, prompt, cache="hull", max_new_tokens=n, plan=plan)
        seconds = time.perf_counter() - start
        print(f"sequential (wasmtf.generate, hull): {n:,} tokens in {seconds:.1f} s, {n / seconds:,.0f} tokens/s"
              f", {'equal to' if trace == draft[:n] else 'DIFFERENT from'} the draft")
    return 0 if token is None else 1


if __name__ == "__main__":
    sys.exit(main())
