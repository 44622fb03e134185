"""The C examples (examples/*.c and their prebuilt .wasm): outputs, cost, freshness.

Each prebuilt .wasm runs in wasmtime, an independent WebAssembly engine, with
the C ABI of SPEC 5: an `env.output_byte` import collects the output, the
input string + NUL is written at A = (__heap_base + 15) & ~15, and
compute(A) is called. Outputs are checked against Python (big integers,
brute-force matchings, the Collatz rule, the known Sudoku solution, zlib's
CRC-32, hashlib's SHA-256). Then: every .wasm is what its .c compiles to, the
reference interpreter prints what wasmtime prints, and native gcc builds of the
C print the same.
"""
import hashlib
import itertools
import random
import shutil
import subprocess
import zlib

import pytest
import wasmtime

from conftest import REPO
import frontend
import reference

EXAMPLES = REPO / "examples"
NAMES = ["hello", "add", "addition", "collatz", "fibonacci", "hungarian", "sudoku", "crc32", "sha256"]
SLOW_ON_THE_REFERENCE = {"sudoku"}   # 1.7 million instructions

INKALA = "800000000003600000070090200050007000000045700000100030001000068008500010090000400"
INKALA_SOLUTION = "812753649943682175675491283154237896369845721287169534521974368438526917796318452"
HUNGARIAN_MATRIX = [
    [61, 58, 35, 86, 32, 39, 41, 27, 21, 42],
    [59, 77, 97, 99, 78, 21, 89, 72, 35, 63],
    [88, 85, 37, 57, 59, 97, 37, 29, 69, 94],
    [32, 82, 53, 20, 77, 96, 21, 70, 50, 61],
    [15, 44, 81, 10, 64, 36, 56, 78, 20, 69],
    [76, 35, 87, 69, 16, 55, 26, 37, 30, 66],
    [86, 32, 74, 94, 32, 14, 24, 12, 31, 70],
    [97, 63, 20, 64, 90, 21, 28, 49, 89, 10],
    [58, 52, 27, 76, 61, 35, 17, 91, 37, 66],
    [42, 79, 61, 26, 55, 98, 70, 17, 26, 86],
]
HUNGARIAN_ASSIGNMENT = [8, 5, 2, 3, 0, 4, 1, 9, 6, 7]
HUNGARIAN_COST = 206

_modules = {}   # name -> (engine, module): compile each .wasm once


def run_wasm(name, text=""):
    """Output bytes of examples/NAME.wasm run by wasmtime on the input `text`."""
    if name not in _modules:
        engine = wasmtime.Engine()
        _modules[name] = engine, wasmtime.Module.from_file(engine, str(EXAMPLES / (name + ".wasm")))
    engine, module = _modules[name]
    store = wasmtime.Store(engine)
    output = bytearray()
    output_byte = wasmtime.Func(store, wasmtime.FuncType([wasmtime.ValType.i32()], []),
                                lambda value: output.append(value & 0xFF))
    exports = wasmtime.Instance(store, module, [output_byte]).exports(store)
    input_address = (exports["__heap_base"].value(store) + 15) & ~15
    exports["memory"].write(store, text.encode() + b"\0", input_address)
    exports["compute"](store, input_address)
    return bytes(output)


def run_text(name, text=""):
    return run_wasm(name, text).decode()


# --- outputs ----------------------------------------------------------------

def test_hello():
    assert run_text("hello") == "Hello, world!\n"
    assert run_text("hello", "Ada") == "Hello, Ada!\n"


def test_add():
    assert run_text("add") == "8\n"
    assert run_text("add", " -7   -2147483641") == "-2147483648\n"
    rng = random.Random(1)
    for _ in range(20):
        a, b = rng.randrange(-10**9, 10**9), rng.randrange(-10**9, 10**9)
        wrapped = (a + b + 2**31) % 2**32 - 2**31        # int32 overflow wraps
        assert run_text("add", "%d %d" % (a, b)) == "%d\n" % wrapped


def test_addition_against_python_integers():
    assert run_text("addition") == "%d\n" % (12345678901234567890 + 98765432109876543210)
    assert run_text("addition", "0 0") == "0\n"
    assert run_text("addition", "007 5") == "12\n"
    assert run_text("addition", "5") == "5\n"
    rng = random.Random(2)
    for _ in range(20):
        a = rng.randrange(10 ** rng.randrange(1, 80))
        b = rng.randrange(10 ** rng.randrange(1, 80))
        assert run_text("addition", "%d %d" % (a, b)) == "%d\n" % (a + b)
    nines = "9" * 500
    assert run_text("addition", nines + " 1") == "1" + "0" * 500 + "\n"


def collatz_text(n):
    sequence = [n]
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        sequence.append(n)
    return "%s\n%d steps\n" % (" ".join(map(str, sequence)), len(sequence) - 1)


def test_collatz_against_python():
    assert run_text("collatz") == collatz_text(27)
    for n in [1, 2, 7, 97, 871, 2**40 + 1, 989345275647]:
        assert run_text("collatz", str(n)) == collatz_text(n)
    assert run_text("collatz", "0") == "n must be a positive integer\n"


def fibonacci_text(n):
    numbers = [0, 1]
    while len(numbers) < n:
        numbers.append(numbers[-1] + numbers[-2])
    return " ".join(map(str, numbers[:n])) + "\n"


def test_fibonacci():
    assert run_text("fibonacci") == fibonacci_text(20)
    for n in [0, 1, 2, 46, 47]:
        assert run_text("fibonacci", str(n)) == fibonacci_text(n)
    assert run_text("fibonacci", "48") == "n must be between 0 and 47\n"


def hungarian_input(matrix):
    return "%d\n%s" % (len(matrix), "\n".join(" ".join(map(str, row)) for row in matrix))


def parse_hungarian(text):
    """(assignment, cost) from the example's two output lines."""
    first, second, end = text.split("\n")
    assert first.startswith("assignment:") and second.startswith("cost: ") and end == ""
    return [int(j) for j in first[len("assignment:"):].split()], int(second[len("cost: "):])


def test_hungarian_default_matrix():
    expected = "assignment: %s\ncost: %d\n" % (" ".join(map(str, HUNGARIAN_ASSIGNMENT)), HUNGARIAN_COST)
    assert run_text("hungarian") == expected
    assert run_text("hungarian", hungarian_input(HUNGARIAN_MATRIX)) == expected
    assert sum(HUNGARIAN_MATRIX[i][j] for i, j in enumerate(HUNGARIAN_ASSIGNMENT)) == HUNGARIAN_COST


def test_hungarian_against_brute_force():
    rng = random.Random(3)
    for n in [1, 2, 3, 4, 5, 6, 6, 6]:
        matrix = [[rng.randrange(-50, 100) for _ in range(n)] for _ in range(n)]
        assignment, cost = parse_hungarian(run_text("hungarian", hungarian_input(matrix)))
        assert sorted(assignment) == list(range(n))                      # a perfect matching
        assert cost == sum(matrix[i][j] for i, j in enumerate(assignment))
        assert cost == min(sum(matrix[i][j] for i, j in enumerate(permutation))
                           for permutation in itertools.permutations(range(n)))
    assert run_text("hungarian", "17") == "n must be between 1 and 16\n"


def grid_text(cells):
    return "".join(cells[k:k + 9] + "\n" for k in range(0, 81, 9))


def test_sudoku_inkala():
    assert run_text("sudoku") == grid_text(INKALA_SOLUTION)
    assert run_text("sudoku", grid_text(INKALA.replace("0", "."))) == grid_text(INKALA_SOLUTION)


def test_sudoku_other_puzzles():
    solved = INKALA_SOLUTION
    assert run_text("sudoku", solved) == grid_text(solved)
    holes = "".join("0" if k % 3 == 0 else c for k, c in enumerate(solved))
    assert run_text("sudoku", holes) == grid_text(solved)
    # The empty grid has many solutions: any valid one will do.
    answer = run_text("sudoku", "0" * 81).replace("\n", "")
    assert len(answer) == 81
    rows = [answer[9 * r:9 * r + 9] for r in range(9)]
    columns = [answer[c::9] for c in range(9)]
    boxes = ["".join(answer[9 * (3 * (b // 3) + i) + 3 * (b % 3) + j] for i in range(3) for j in range(3))
             for b in range(9)]
    assert all(sorted(unit) == list("123456789") for unit in rows + columns + boxes)
    assert run_text("sudoku", "11" + "0" * 79) == "no solution\n"        # a digit twice in a row
    # No digit clashes, but the last cell of row 1 can hold nothing (9 is below it).
    assert run_text("sudoku", "123456780" + "000000009" + "0" * 63) == "no solution\n"
    assert run_text("sudoku", "0" * 80) == "need 81 cells\n"
    assert run_text("sudoku", "0" * 82) == "need 81 cells\n"
    assert run_text("sudoku", "x" * 81) == "need 81 cells\n"


# Inputs at the edges of SHA-256's padding: 55 bytes fit in one block with the
# length, 56..63 need a second block, 64 is a whole block (+ a padding block).
HASH_INPUTS = ["a", "abc", "hello world", "x" * 55, "y" * 56, "z" * 63, "w" * 64, "v" * 119, "u" * 120,
               "".join(chr(33 + k % 94) for k in range(300))]


def test_crc32_against_zlib():
    assert run_text("crc32") == "414fa339\n"
    for text in HASH_INPUTS:
        assert run_text("crc32", text) == "%08x\n" % zlib.crc32(text.encode())


def test_sha256_against_hashlib():
    assert run_text("sha256") == hashlib.sha256(b"abc").hexdigest() + "\n"
    for text in HASH_INPUTS:
        assert run_text("sha256", text) == hashlib.sha256(text.encode()).hexdigest() + "\n"


# --- cost, freshness, agreement with the reference ---------------------------

@pytest.mark.parametrize("name", NAMES)
def test_prebuilt_wasm_is_the_compiled_c(name):
    compiled = frontend.compile_c(EXAMPLES / (name + ".c"))
    prebuilt = (EXAMPLES / (name + ".wasm")).read_bytes()
    assert compiled == prebuilt, \
        "examples/%s.wasm is stale: rebuild it from %s.c with frontend.compile_c" % (name, name)


REFERENCE_INPUTS = {
    "hello": ["", "Ada"],
    "add": ["", "-7 -2147483641"],
    "addition": ["", "99999999999999999999 1"],
    "collatz": ["", "97"],
    "fibonacci": ["", "47"],
    "hungarian": ["", "3 1 2 3 2 4 6 3 6 9"],
    "sudoku": [""],
    "crc32": ["", "y" * 56],
    "sha256": [""],
}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_ON_THE_REFERENCE
                                  else name for name in NAMES])
def test_reference_prints_what_wasmtime_prints(name):
    for text in REFERENCE_INPUTS[name]:
        instructions, input_bytes = frontend.load_program_file(EXAMPLES / (name + ".wasm"), text)
        trace = reference.run_reference(instructions, input_bytes)
        assert trace[-1] == "halt"
        assert reference.output_bytes(trace) == run_wasm(name, text)


# The harness of a native build: output_byte writes to stdout, main passes argv[1].
NATIVE_MAIN = """
long write(int fd, const void *bytes, unsigned long count);
void output_byte(int byte) { unsigned char b = (unsigned char)byte; write(1, &b, 1); }
void compute(const char *input);
int main(int argc, char **argv) { compute(argc > 1 ? argv[1] : ""); return 0; }
"""
NATIVE_INPUTS = {"add": " -7   -2147483641", "addition": "99999999999999999999 1", "collatz": "97",
                 "fibonacci": "47", "hello": "Ada", "hungarian": "3 1 2 3 2 4 6 3 6 9",
                 "sudoku": INKALA, "crc32": "y" * 56, "sha256": "z" * 63}


@pytest.mark.parametrize("name", NAMES)
def test_native_gcc_prints_what_wasmtime_prints(name, tmp_path):
    """The C itself, built natively with gcc (runtime.h included the same way),
    agrees with the WebAssembly build: the examples are C, not wasm32 accidents."""
    assert shutil.which("gcc"), "this test needs gcc"
    main = tmp_path / "main.c"
    main.write_text(NATIVE_MAIN)
    binary = tmp_path / name
    subprocess.run(["gcc", "-O2", "-w", "-fno-builtin", "-include", str(EXAMPLES / "runtime.h"), "-o", str(binary),
                    str(EXAMPLES / (name + ".c")), str(main)], check=True)
    for text in ["", NATIVE_INPUTS[name]]:
        native = subprocess.run([str(binary), text], capture_output=True, check=True).stdout
        assert native == run_wasm(name, text)
