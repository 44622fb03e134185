"""Speed of the compiled machine: compile time, hull-cache generation on a loop-heavy
program of >= 100,000 trace tokens, and the per-token cost of the hull cache against
the brute-force cache at contexts of 10^4 and 10^5 tokens.

    python benchmarks/machine_speed.py [--tokens 100000]
    python benchmarks/machine_speed.py --against REV [--programs collatz hungarian]
                                       [--limit 50000] [--rounds 3]

Targets (issue 4): compile <= 10 s; >= 5,000 tokens/s with the hull cache.

--against REV compares sequential decoding (one forward pass per token, hull
cache) of this checkout with the hull.py and wasmtf.py of git revision REV, in
one process: REV's two files are written to a temporary directory (git show)
and imported as other modules; both versions decode the same examples/*.wasm
programs with today's compiled machine, alternating, `--rounds` times each; the
best tokens/s of each is printed, with their ratio (target, issue 17: >= 1.5x
against a591cf2 on collatz and hungarian). Both traces are checked against the
reference interpreter."""
import argparse
import importlib.util
import os
import pathlib
import subprocess
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

REPO = pathlib.Path(__file__).resolve().parent.parent
SUM_ADDRESS = 0x100


def loop_program(iterations):
    """sum = 0 in memory; for i = n..1: sum += i (load, add, store); print the low byte.
    About 47 trace tokens per iteration: locals, memory, add/sub carries, a taken br_if."""
    return [
        ("i32.const", iterations), ("local.set", 0),                     # 0, 1: i = n
        ("i32.const", SUM_ADDRESS), ("i32.const", SUM_ADDRESS),         # 2, 3: address twice
        ("i32.load", 0), ("local.get", 0), ("i32.add", 0),              # 4-6: sum + i
        ("i32.store", 0),                                               # 7: sum = sum + i
        ("local.get", 0), ("i32.const", 1), ("i32.sub", 0),             # 8-10: i - 1
        ("local.tee", 0), ("br_if", (2 - 12 - 1) % 2 ** 32),            # 11, 12: loop to 2
        ("i32.const", SUM_ADDRESS), ("i32.load8_u", 0), ("output", 0),  # 13-15
        ("halt", 0),
    ]


def timed_generation(model, plan, instructions, cache):
    prompt = reference.program_tokens(instructions)
    start = time.perf_counter()
    trace = wasmtf.generate(model, prompt, cache=cache, plan=plan)
    return trace, time.perf_counter() - start


def per_token_cost(plan, prompt_and_trace, context, window, cache_kind):
    """Seconds per token for `window` tokens after `context` tokens: the caches are
    filled through hull heads that also record into brute heads (cheap inserts), then the
    window runs on the chosen kind alone."""
    hulls = [[hull.HullHead(latest) for latest in layer["tie_latest"]] for layer in plan["layers"]]
    brutes = [[hull.BruteHead(latest) for latest in layer["tie_latest"]] for layer in plan["layers"]]

    def both(h, b):
        def insert(kx, ky, vx, vy):
            h.insert(kx, ky, vx, vy)
            b.insert(kx, ky, vx, vy)
        return insert, h.query

    caches = [[both(h, b) for h, b in zip(hs, bs)] for hs, bs in zip(hulls, brutes)]
    ids = [reference.TOKEN_ID[t] for t in prompt_and_trace]
    for p in range(context):
        wasmtf.step(plan, caches, ids[p], p)
    chosen = hulls if cache_kind == "hull" else brutes
    caches = [[(c.insert, c.query) for c in layer] for layer in chosen]
    start = time.perf_counter()
    for p in range(context, context + window):
        wasmtf.step(plan, caches, ids[p], p)
    return (time.perf_counter() - start) / window


def import_revision(revision, directory):
    """(wasmtf, hull) modules of git revision `revision`, imported from `directory`
    under the names wasmtf_<rev>, hull_<rev> (they use this checkout's reference.py)."""
    modules = []
    for name in ("wasmtf", "hull"):
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:{name}.py"],
                                capture_output=True, text=True)
        if source.returncode != 0:
            sys.exit(f"machine_speed.py: cannot read {name}.py at {revision!r}: {source.stderr.strip()}")
        path = pathlib.Path(directory) / f"{name}_{revision}.py"
        path.write_text(source.stdout)
        spec = importlib.util.spec_from_file_location(f"{name}_{revision}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules.append(module)
    return modules


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
              f"(prompt included; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
              f"load average {os.getloadavg()[0]:.1f})")
        for name in programs:
            instructions, input_bytes = frontend.load_program_file(REPO / "examples" / f"{name}.wasm")
            prompt = reference.program_tokens(instructions, input_bytes)
            expected = reference.run_reference(instructions, input_bytes)[:limit]
            best = {}
            for _ in range(rounds):
                for label, (wasmtf_module, hull_module) in versions.items():
                    tokens, seconds = sequential_decoding(wasmtf_module, hull_module, model, prompt, len(expected))
                    if tokens != expected:
                        sys.exit(f"machine_speed.py: {name}: the trace of {label} differs from the reference")
                    best[label] = min(best.get(label, seconds), seconds)
            base, new = best[revision], best["this checkout"]
            print(f"{name:10} prompt {len(prompt):6,} + {len(expected):8,} tokens: {revision} "
                  f"{len(expected) / base:7,.0f} tokens/s, this checkout {len(expected) / new:7,.0f} "
                  f"tokens/s: {base / new:.2f}x", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000, help="trace length of the loop program")
    parser.add_argument("--against", metavar="REV", help="compare sequential decoding with git revision REV")
    parser.add_argument("--programs", nargs="+", default=["collatz", "hungarian"],
                        help="examples/NAME.wasm programs for --against")
    parser.add_argument("--limit", type=int, default=50_000, help="trace tokens per program for --against")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per version for --against")
    args = parser.parse_args()
    if args.against:
        compare_against(args.against, args.programs, args.limit, args.rounds)
        return

    start = time.perf_counter()
    model = cw.emit(cw.build_machine())
    compile_seconds = time.perf_counter() - start
    shape = cw.describe_shape(model)
    print("compile: %.3f s; d_model %d, layers %d, heads %s (%d), d_ffn %s, parameters %d" % (
        compile_seconds, shape["d_model"], shape["layers"], shape["heads"], sum(shape["heads"]),
        shape["d_ffn"], shape["parameters"]))
    plan = wasmtf.prepare(model)

    instructions = loop_program(args.tokens // 47 + 1)
    expected = reference.run_reference(instructions)
    trace, seconds = timed_generation(model, plan, instructions, "hull")
    assert trace == expected, "the transformer's trace differs from the reference"
    print("hull generation: %d trace tokens in %.1f s = %.0f tokens/s (matches the reference)" % (
        len(trace), seconds, len(trace) / seconds))

    tokens = reference.program_tokens(instructions) + trace
    for context in (10_000, 100_000):
        if context + 200 > len(tokens):
            break
        hull_cost = per_token_cost(plan, tokens, context, 200, "hull")
        brute_cost = per_token_cost(plan, tokens, context, 200, "brute")
        print("context %7d: hull %.0f us/token, brute %.0f us/token, brute/hull %.1fx" % (
            context, hull_cost * 1e6, brute_cost * 1e6, brute_cost / hull_cost))


if __name__ == "__main__":
    main()
