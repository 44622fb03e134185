"""Sequential decoding of this checkout's decoder (wasmtf.py's forward pass and
hull.py's cache) against git revision REV's, on today's compiled machine.

    python benchmarks/decoder_speed.py REV [--programs collatz hungarian] [--limit 50000] [--rounds 3]

REV's wasmtf.py and hull.py are written to a temporary directory (git show) and
imported as other modules; both versions decode the same examples/*.wasm programs
with this checkout's machine, one forward pass per token with the hull cache,
alternating, `--rounds` times each; the best tokens/s of each is printed, with
their ratio (target, issue 17: >= 1.5x against a591cf2 on collatz and hungarian).
Both traces are checked against the reference interpreter. To compare whole
machines (weights included) use benchmarks/machine_speed.py --against."""
import argparse
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `python wasmtf.py` runs (see wasmtf.py)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import compile_weights as cw  # noqa: E402
import frontend  # noqa: E402
import hull  # noqa: E402
import reference  # noqa: E402
import wasmtf  # noqa: E402
from revision import module_at, run_conditions  # noqa: E402 (benchmarks/revision.py)

REPO = pathlib.Path(__file__).resolve().parent.parent


def import_revision(revision, directory):
    """(wasmtf, hull) modules of git revision `revision`, imported from `directory`
    under the names wasmtf_<rev>, hull_<rev> (they use this checkout's reference.py)."""
    return [module_at(revision, name, directory) for name in ("wasmtf", "hull")]


def sequential_decoding(wasmtf_module, hull_module, model, prompt, count):
    """(tokens, CPU seconds): `count` tokens decoded one forward pass at a time with
    this version's prepare, step, next_token and HullHead (wasmtf.generate's loop).
    CPU time of this process: on the shared machine, time spent waiting for a
    core does not count (BLAS runs single-threaded here)."""
    start = time.process_time()
    plan = wasmtf_module.prepare(model)
    caches = [[(head.insert, head.query) for head in map(hull_module.HullHead, layer["tie_latest"])]
              for layer in plan["layers"]]
    ids = wasmtf_module.encode(model, prompt)
    for p, token_id in enumerate(ids[:-1]):
        wasmtf_module.step(plan, caches, token_id, p)
    token_id, p = ids[-1], len(ids) - 1
    tokens = []
    while len(tokens) < count:
        token_id = wasmtf_module.next_token(plan, wasmtf_module.step(plan, caches, token_id, p))
        tokens.append(model["vocab"][token_id])
        if token_id in plan["stop_ids"]:
            break
        p += 1
    return tokens, time.process_time() - start


def compare_against(revision, programs, limit, rounds):
    model = cw.compile_machine()
    with tempfile.TemporaryDirectory() as directory:
        versions = {revision: import_revision(revision, directory), "this checkout": (wasmtf, hull)}
        print(f"sequential decoding, hull cache, best of {rounds} alternating runs "
              f"(prompt included; {run_conditions()})")
        for name in programs:
            instructions, input_bytes = frontend.load_program_file(REPO / "examples" / f"{name}.wasm")
            prompt = reference.program_tokens(instructions, input_bytes)
            expected = reference.run_reference(instructions, input_bytes)[:limit]
            best = {}
            for _ in range(rounds):
                for label, (wasmtf_module, hull_module) in versions.items():
                    tokens, seconds = sequential_decoding(wasmtf_module, hull_module, model, prompt, len(expected))
                    if tokens != expected:
                        sys.exit(f"decoder_speed.py: {name}: the trace of {label} differs from the reference")
                    best[label] = min(best.get(label, seconds), seconds)
            base, new = best[revision], best["this checkout"]
            print(f"{name:10} prompt {len(prompt):6,} + {len(expected):8,} tokens: {revision} "
                  f"{len(expected) / base:7,.0f} tokens/s, this checkout {len(expected) / new:7,.0f} "
                  f"tokens/s: {base / new:.2f}x", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", metavar="REV", help="the git revision to compare with")
    parser.add_argument("--programs", nargs="+", default=["collatz", "hungarian"],
                        help="examples/NAME.wasm programs")
    parser.add_argument("--limit", type=int, default=50_000, help="trace tokens per program")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per version")
    args = parser.parse_args()
    compare_against(args.revision, args.programs, args.limit, args.rounds)


if __name__ == "__main__":
    main()
