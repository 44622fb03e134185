"""The demos inside the compiled transformer: trace length and tokens/s, decoded
token by token (hull cache) and verified speculatively (speculative.py).

    python benchmarks/demos.py              # every demo; sequential Sudoku on a 200,000-token prefix
    python benchmarks/demos.py --full       # the sequential Sudoku too, end to end (~9M tokens: ~30 min)
    python benchmarks/demos.py hello add    # chosen demos

Every run's trace is checked against the reference interpreter's, token for token.
Run it with OPENBLAS_NUM_THREADS=1 (as `python wasmtf.py` sets it) for the speculative figures.
"""
import argparse
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import compile_weights  # noqa: E402
import frontend  # noqa: E402
import reference  # noqa: E402
import speculative as speculative_decoding  # noqa: E402
import wasmtf  # noqa: E402

DEMOS = ["hello", "add", "addition", "collatz", "fibonacci", "hungarian", "sudoku", "crc32", "sha256"]
PREFIX = 200_000  # tokens of the sequential Sudoku run without --full


def timed_run(model, prompt, limit, speculative):
    start = time.perf_counter()
    trace = (speculative_decoding.generate if speculative else wasmtf.generate)(model, prompt, max_new_tokens=limit)
    return trace, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demos", nargs="*", metavar="DEMO", help="some of: " + " ".join(DEMOS))
    parser.add_argument("--full", action="store_true", help="run the sequential Sudoku end to end")
    args = parser.parse_args()
    unknown = sorted(set(args.demos) - set(DEMOS))
    if unknown:
        parser.error("unknown demos: " + " ".join(unknown))
    model = compile_weights.compile_machine()
    print(f"{'demo':10} {'prompt':>7} {'trace tokens':>13} | {'sequential':>11} {'tokens/s':>9} "
          f"| {'speculative':>11} {'tokens/s':>9} | check")
    for name in args.demos or DEMOS:
        instructions, input_bytes = frontend.load_program_file(REPO / "examples" / (name + ".wasm"))
        prompt = reference.program_tokens(instructions, input_bytes)
        expected = reference.run_reference(instructions, input_bytes)
        limit = len(expected) if (args.full or name != "sudoku") else PREFIX
        sequential, sequential_seconds = timed_run(model, prompt, limit, speculative=False)
        speculative, speculative_seconds = timed_run(model, prompt, len(expected), speculative=True)
        equal = sequential == expected[:limit] and speculative == expected
        print(f"{name:10} {len(prompt):7,} {len(expected):13,} | {len(sequential):11,} "
              f"{len(sequential) / sequential_seconds:9,.0f} | {len(speculative):11,} "
              f"{len(speculative) / speculative_seconds:9,.0f} | {'equal' if equal else 'DIFFERENT'}", flush=True)


if __name__ == "__main__":
    main()
