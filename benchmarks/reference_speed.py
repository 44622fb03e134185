"""Speed of the reference interpreter: trace tokens per second on a loop-heavy program.

The program counts a local down from N, and on every iteration adds, compares,
stores a word, loads a signed byte and prints it: about 13 instructions and
50 trace tokens per iteration. Target (issue 3): >= 300,000 tokens/s.

    python benchmarks/reference_speed.py [ITERATIONS]
"""
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import reference  # noqa: E402

DEFAULT_ITERATIONS = 100_000
SCRATCH_ADDRESS = 0x1000


def loop_program(iterations):
    """while (n != 0) { mem[A] = n + 7; print(load8_s(mem[A])); n -= 1 }; halt"""
    body = [
        ("i32.const", SCRATCH_ADDRESS),   # 2: loop head
        ("local.get", 0),
        ("i32.const", 7),
        ("i32.add", 0),
        ("i32.store", 0),
        ("i32.const", SCRATCH_ADDRESS),
        ("i32.load8_s", 0),
        ("output", 0),
        ("local.get", 0),
        ("i32.const", 1),
        ("i32.sub", 0),
        ("local.tee", 0),
        ("i32.const", 0),
        ("i32.ne", 0),
    ]
    back = (-(len(body) + 1)) % reference.WORD_MODULUS   # br_if back to the loop head
    return [("i32.const", iterations), ("local.set", 0)] + body + [("br_if", back), ("halt", 0)]


def main():
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ITERATIONS
    program = loop_program(iterations)
    start = time.perf_counter()
    machine = reference.execute(program)
    seconds = time.perf_counter() - start
    tokens = len(machine.trace)
    print("reference interpreter: %d instructions, %d trace tokens in %.2f s" % (machine.steps, tokens, seconds))
    print("  %.0f tokens/s, %.0f instructions/s (target >= 300,000 tokens/s)"
          % (tokens / seconds, machine.steps / seconds))


if __name__ == "__main__":
    main()
