"""The demos inside the compiled transformer (hull cache): trace length and tokens/s.

    python benchmarks/demos.py              # every demo; Sudoku on a 200,000-token prefix
    python benchmarks/demos.py --full       # Sudoku too, end to end (~9M tokens: long)
    python benchmarks/demos.py hello add    # chosen demos

Each run's trace is checked against the reference interpreter's, token for token.
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

DEMOS = ["hello", "add", "addition", "collatz", "fibonacci", "hungarian", "sudoku"]
PREFIX = 200_000  # tokens of the Sudoku run without --full


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demos", nargs="*", metavar="DEMO", help="some of: " + " ".join(DEMOS))
    parser.add_argument("--full", action="store_true", help="run the Sudoku end to end")
    args = parser.parse_args()
    unknown = sorted(set(args.demos) - set(DEMOS))
    if unknown:
        parser.error("unknown demos: " + " ".join(unknown))
    model = compile_weights.compile_machine()
    print(f"{'demo':10} {'prompt':>7} {'trace tokens':>13} {'run tokens':>11} {'seconds':>8} {'tokens/s':>9}  check")
    for name in args.demos or DEMOS:
        instructions, input_bytes = frontend.load_program_file(REPO / "examples" / (name + ".wasm"))
        expected = reference.run_reference(instructions, input_bytes)
        limit = len(expected) if (args.full or name != "sudoku") else PREFIX
        start = time.perf_counter()
        trace = compile_weights.run_transformer(instructions, input_bytes, model=model, max_new_tokens=limit)
        seconds = time.perf_counter() - start
        prompt = len(reference.program_tokens(instructions, input_bytes))
        check = "equal" if trace == expected[:limit] else "DIFFERENT"
        print(f"{name:10} {prompt:7,} {len(expected):13,} {len(trace):11,} {seconds:8.1f} "
              f"{len(trace) / seconds:9,.0f}  {check}", flush=True)


if __name__ == "__main__":
    main()
