"""Trace lengths of the example programs on the reference interpreter: program
size, instructions executed and trace tokens, optionally beside another commit's.

    python benchmarks/trace_length.py                      # every example, this tree
    python benchmarks/trace_length.py crc32 sha256         # chosen examples
    python benchmarks/trace_length.py --against a591cf2    # beside commit a591cf2, with ratios

With --against REV the commit's files are exported to a temporary directory
(`git archive`) and its own frontend.py and reference.py lower and run, in a
subprocess, the commit's own prebuilt examples/NAME.wasm; an example the commit
does not have is taken from this tree (marked "same .wasm": the same program
through the other front end).
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

from revision import tree_at  # benchmarks/revision.py

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ["hello", "add", "addition", "collatz", "fibonacci", "hungarian", "sudoku", "crc32", "sha256"]

# Run in the tree being measured: argv = [tree, wasm path...]; prints one JSON list.
MEASURE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import frontend, reference
figures = []
for path in sys.argv[2:]:
    instructions, input_bytes = frontend.load_program_file(path)
    machine = reference.execute(instructions, input_bytes)
    figures.append([len(instructions), machine.steps, len(machine.trace), machine.status])
print(json.dumps(figures))
"""


def measure(tree, paths):
    """[(program instructions, executed instructions, trace tokens, status)] for the
    .wasm `paths`, lowered and run by the frontend.py and reference.py in `tree`."""
    result = subprocess.run([sys.executable, "-c", MEASURE, str(tree)] + [str(p) for p in paths],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit("measuring in %s failed:\n%s" % (tree, result.stderr.strip()))
    return json.loads(result.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("examples", nargs="*", metavar="EXAMPLE", help="some of: " + " ".join(EXAMPLES))
    parser.add_argument("--against", metavar="REV", help="a commit to measure beside this tree")
    args = parser.parse_args()
    unknown = sorted(set(args.examples) - set(EXAMPLES))
    if unknown:
        parser.error("unknown examples: " + " ".join(unknown))
    names = args.examples or EXAMPLES
    here = measure(REPO, [REPO / "examples" / (name + ".wasm") for name in names])
    header = "%-10s %8s %11s %12s" % ("example", "program", "executed", "trace tokens")
    if not args.against:
        print(header)
        for name, (size, steps, tokens, status) in zip(names, here):
            print("%-10s %8s %11s %12s %s" % (name, f"{size:,}", f"{steps:,}", f"{tokens:,}",
                                              "" if status == "halt" else status))
        return
    with tempfile.TemporaryDirectory() as directory:
        tree = tree_at(args.against, directory)
        paths = [(tree if (tree / "examples" / (name + ".wasm")).exists() else REPO) / "examples" / (name + ".wasm")
                 for name in names]
        there = measure(tree, paths)
    print("%-10s %-31s | %-31s |" % ("", args.against + " (before)", "this tree (after)"))
    print("%-10s %8s %9s %12s | %8s %9s %12s | %s" % ("example", "program", "executed", "trace tokens",
                                                       "program", "executed", "trace tokens", "before/after"))
    for name, path, before, after in zip(names, paths, there, here):
        note = "" if path.is_relative_to(tree) else "  (same .wasm)"
        statuses = "" if before[3] == after[3] == "halt" else "  status %s -> %s" % (before[3], after[3])
        columns = ["%8s %9s %12s" % tuple(f"{figure:,}" for figure in figures[:3]) for figures in (before, after)]
        print("%-10s %s | %s | %7.1fx%s%s" % (name, columns[0], columns[1], before[2] / after[2], note, statuses))


if __name__ == "__main__":
    main()
