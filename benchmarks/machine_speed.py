"""Speed of the compiled machine: compile time, hull-cache generation on a loop-heavy
program of >= 100,000 trace tokens, and the per-token cost of the hull cache against
the brute-force cache at contexts of 10^4 and 10^5 tokens.

    python benchmarks/machine_speed.py [--tokens 100000]

Targets (issue 4): compile <= 10 s; >= 5,000 tokens/s with the hull cache."""
import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import compile_weights as cw  # noqa: E402
import hull  # noqa: E402
import reference  # noqa: E402
import wasmtf  # noqa: E402

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000, help="trace length of the loop program")
    args = parser.parse_args()

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
