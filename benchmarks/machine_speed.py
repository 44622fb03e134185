"""Speed of the compiled machine: compile time, hull-cache generation on a loop-heavy
program of >= 100,000 trace tokens, and the per-token cost of the hull cache against
the brute-force cache at contexts of 10^4 and 10^5 tokens.

    python benchmarks/machine_speed.py [--tokens 100000]
    python benchmarks/machine_speed.py --against a591cf2 [--prefix 20000] [--rounds 2]

Targets (issue 4): compile <= 10 s; >= 5,000 tokens/s with the hull cache.

--against COMMIT compares this machine with COMMIT's, side by side in one run:
the same flat programs (examples/collatz.wasm and examples/hungarian.wasm as COMMIT's
front end compiles them, i.e. base-instruction-set programs both machines run), the
first --prefix trace tokens decoded sequentially with the hull cache, each machine in
its own child process (its own modules), alternating for --rounds rounds; prints the
tokens/s of each and the ratio of the medians (issue 11: this machine >= 0.8x)."""
import argparse
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import compile_weights as cw  # noqa: E402
import hull  # noqa: E402
import reference  # noqa: E402
import wasmtf  # noqa: E402
from revision import tree_at  # noqa: E402 (benchmarks/revision.py)

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


REPO = pathlib.Path(__file__).resolve().parent.parent
COMPARED_PROGRAMS = ["collatz", "hungarian"]

# Run inside a child process whose sys.path starts with a checkout: decode `prefix`
# tokens of a program file with that checkout's machine; print "tokens seconds cpu_seconds"
# (wall clock, and the process's CPU time, which other processes on shared cores disturb less).
DECODE_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
import compile_weights, reference, wasmtf
instructions, input_bytes = reference.read_program(sys.argv[2])
prefix = int(sys.argv[3])
model = compile_weights.compile_machine()
plan = wasmtf.prepare(model)
prompt = reference.program_tokens(instructions, input_bytes)
expected = reference.run_reference(instructions, input_bytes)[:prefix]
start, cpu_start = time.perf_counter(), time.process_time()
trace = wasmtf.generate(model, prompt, cache="hull", max_new_tokens=prefix, plan=plan)
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
assert trace == expected, "the trace differs from the reference"
print(len(trace), seconds, cpu_seconds)
"""

# Run with a checkout's front end: write the flat program of a .wasm file as a program file.
FLATTEN_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import frontend, reference
instructions, input_bytes = frontend.load_program_file(sys.argv[2])
open(sys.argv[3], "w").write(reference.format_program(instructions, input_bytes))
"""


def child(code, *args):
    out = subprocess.run([sys.executable, "-c", code] + [str(a) for a in args], check=True,
                         capture_output=True, text=True).stdout
    return out.split()


def compare_against(commit, prefix, rounds):
    """Side-by-side sequential hull tokens/s of COMMIT's machine and this one."""
    with tempfile.TemporaryDirectory() as tmp:
        base = pathlib.Path(tmp) / "base"
        base.mkdir()
        tree_at(commit, base)
        print("machine speed, %s (base) against this checkout: sequential hull decoding of the first %d "
              "trace tokens, %d alternating rounds" % (commit, prefix, rounds))
        for name in COMPARED_PROGRAMS:
            program = pathlib.Path(tmp) / (name + ".txt")
            child(FLATTEN_CHILD, base, base / "examples" / (name + ".wasm"), program)
            rates = {(side, clock): [] for side in ("base", "this") for clock in ("wall", "cpu")}
            for _ in range(rounds):
                for side, root in (("base", base), ("this", REPO)):
                    tokens, seconds, cpu_seconds = child(DECODE_CHILD, root, program, prefix)
                    rates[side, "wall"].append(int(tokens) / float(seconds))
                    rates[side, "cpu"].append(int(tokens) / float(cpu_seconds))
            for clock in ("wall", "cpu"):
                base_rate, this_rate = (statistics.median(rates[side, clock]) for side in ("base", "this"))
                print("%-10s %-4s base %7.0f tokens/s, this %7.0f tokens/s, ratio %.2f  (rounds: base %s; this %s)" % (
                    name, clock, base_rate, this_rate, this_rate / base_rate,
                    ", ".join("%.0f" % r for r in rates["base", clock]),
                    ", ".join("%.0f" % r for r in rates["this", clock])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000, help="trace length of the loop program")
    parser.add_argument("--against", metavar="COMMIT", help="compare with COMMIT's machine side by side")
    parser.add_argument("--prefix", type=int, default=20_000, help="tokens decoded per run with --against")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds with --against")
    args = parser.parse_args()
    if args.against:
        compare_against(args.against, args.prefix, args.rounds)
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
