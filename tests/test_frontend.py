"""The front end: decoder errors, exact i32 lowering against wasmtime, C compilation.

The oracle is wasmtime running the same .wasm: random i32 expressions, every
operation on special operands, constant operands, random structured programs,
bounds checks, the C examples. Also: malformed input gives one WasmError,
unsupported input one UnsupportedError listing everything, routine costs stay
within their documented bounds."""
import random
import re
import subprocess
import sys

import pytest
import wasmtime

import decoder
import frontend
import profiling
import reference
import wasmtf
import spectest
from conftest import REPO

EXAMPLES = REPO / "examples"


def run(instructions, input_bytes=None):
    machine = reference.execute(instructions, input_bytes)
    return machine.status, bytes(machine.output)


def test_compile_c_hello(tmp_path):
    source = tmp_path / "greet.c"
    source.write_text('void compute(const char *input) { print_str("hi "); print_str(input); putchar(10); }\n')
    binary = frontend.compile_c(source)
    instructions = frontend.lower_module(frontend.decode_module(binary))
    assert instructions[0][0] == "input_base"
    assert run(instructions, b"Ada") == ("halt", b"hi Ada\n")


def test_compile_c_error_shows_compiler_message(tmp_path):
    source = tmp_path / "broken.c"
    source.write_text("void compute(void) { this is not C; }\n")
    with pytest.raises(frontend.WasmError, match="broken.c"):
        frontend.compile_c(source)


PRINTF_SCANF_PROGRAM = r"""
void compute(const char *input) {
    static const char *texts[] = {"12 -34 +5", "  7x", "", "   ", "-", "abc", "1,2", "-2147483648,9",
                                  "5", "x", "x9", "8 , 9"};
    static const char *formats[] = {"%d %d %d", "%d,%d", " %d", "x%d", "%d , %d", "%dx"};
    for (int t = 0; t < (int)(sizeof texts / sizeof *texts); t++)
        for (int f = 0; f < (int)(sizeof formats / sizeof *formats); f++) {
            int a = -7, b = -7, c = -7;
            int stored = sscanf(texts[t], formats[f], &a, &b, &c);
            printf("%d/%d:%d %d %d %d\n", t, f, stored, a, b, c);
        }
    int values[] = {0, 1, -1, 255, 2147483647, -2147483647 - 1, (int)0xdeadbeef, 100};
    for (int i = 0; i < (int)(sizeof values / sizeof *values); i++) {
        int n = printf("[%d|%i|%u|%x|%c|%s|%%]", values[i], values[i], values[i], values[i],
                       'A' + i, i % 2 ? "odd" : "");
        printf(" %d\n", n);
    }
}
"""


def test_printf_and_sscanf_of_runtime_h_print_what_the_c_library_prints(tmp_path):
    """runtime.h's printf (%d %i %u %x %c %s %%) and sscanf (%d) against glibc's, built
    natively with gcc: boundary values, return values, malformed texts, literal and space
    directives, a text that ends before the first conversion (-1)."""
    source = tmp_path / "formats.c"
    source.write_text(PRINTF_SCANF_PROGRAM)
    status, output = run(frontend.lower_module(frontend.decode_module(frontend.compile_c(source))), b"")
    native = tmp_path / "native"
    subprocess.run(["gcc", "-O2", "-w", "-include", "stdio.h", "-o", str(native), str(source), "-x", "c", "-"],
                   input="void compute(const char *); int main(void) { compute(\"\"); return 0; }",
                   text=True, check=True)
    assert status == "halt"
    assert output == subprocess.run([str(native)], capture_output=True, check=True).stdout


PARSE_INT_PROGRAM = r"""
void compute(const char *input) {
    static const char *texts[] = {"0", "7", "42", "2147483647", "123abc", "x", "", " 12", "\t-34", "-0", "  -5x"};
    for (int t = 0; t < (int)(sizeof texts / sizeof *texts); t++) {
        const char *p = texts[t];
        while (*p > 0 && *p < '0') p++;          /* transformer-vm's examples: skip to the digits */
        printf("%d %d|", parse_int(texts[t]), parse_int(p));
    }
    const char *text = "12 -34\n5 x";
    static char chars[] = " 7 -8";
    char *mutable_text = chars;
    for (int i = 0; i < 3; i++) {
        int value = parse_int(&text);
        printf("%d[%s]", value, text);
    }
    for (int i = 0; i < 2; i++) {
        int value = parse_int(&mutable_text);
        printf("%d[%s]", value, mutable_text);
    }
}
"""


def test_parse_int_reads_a_pointer_as_transformer_vm_programs_call_it_and_advances_through_a_pointer_to_it(
        tmp_path):
    """parse_int(p) (a program written for transformer-vm's runtime.h: p does not move) reads
    what the C library's atoi reads; parse_int(&text), text a const char * or a char *, reads
    as strtol and moves text past the number. The same program built natively with gcc on
    glibc's atoi and strtol."""
    source = tmp_path / "parse.c"
    source.write_text(PARSE_INT_PROGRAM)
    status, output = run(frontend.lower_module(frontend.decode_module(frontend.compile_c(source))), b"")
    native = tmp_path / "native"
    prelude = ("#include <stdio.h>\n#include <stdlib.h>\n"
               "static int from(const char **t) { char *end; int v = (int)strtol(*t, &end, 10); *t = end; return v; }\n"
               "static int from_chars(char **t) { return from((const char **)t); }\n"
               "#define parse_int(x) _Generic((x), const char **: from, char **: from_chars, default: atoi)(x)\n")
    subprocess.run(["gcc", "-O2", "-w", "-o", str(native), "-x", "c", "-"],
                   input=prelude + PARSE_INT_PROGRAM + "int main(void) { compute(\"\"); return 0; }",
                   text=True, check=True)
    assert status == "halt"
    assert output == subprocess.run([str(native)], capture_output=True, check=True).stdout


@pytest.mark.parametrize("source,hint", [
    ("int main(void) { putchar('A'); return 0; }", "wasmtf calls `void compute(const char *input)`, not main()"),
    ("#include <stdio.h>\nvoid compute(const char *s) { printf(\"%s\", s); }", "there is no libc"),
    ("void print_int(int n) { putchar('0' + n); }\nvoid compute(const char *s) { print_int(7); }",
     "runtime.h (included by itself) already defines that name"),
    ("int parse_int(const char *s) { return *s - '0'; }\nvoid compute(const char *s) { parse_int(s); }",
     "runtime.h (included by itself) already defines that name"),
    ("void *malloc(unsigned long);\nvoid compute(const char *s) { putchar(*(char *)malloc(1)); }", "no malloc"),
])
def test_compile_c_error_explains_what_a_c_programmer_meets_first(tmp_path, source, hint):
    """The first line of the error says what to do: `main` is not the entry, there is no libc."""
    path = tmp_path / "first.c"
    path.write_text(source + "\n")
    with pytest.raises(frontend.WasmError) as error:
        frontend.compile_c(path)
    first_line = str(error.value).splitlines()[0]
    assert first_line.startswith("compiling %s failed (1 error, the first: " % path) and hint in first_line


@pytest.mark.parametrize("name,input_text,expected", [("hello", "Ada", b"Hello, Ada!\n")])
def test_prebuilt_examples(name, input_text, expected):
    instructions, input_bytes = frontend.load_program_file(EXAMPLES / ("%s.wasm" % name), input_text)
    assert run(instructions, input_bytes) == ("halt", expected)


# ---------------------------------------------------------------------------
# Random i32 expressions: wasmtime (the oracle) against the lowered program on
# the reference interpreter. A Python model of the operations decides where the
# traps are, so that the bulk modules run to the end and the trapping
# expressions get modules of their own.
# ---------------------------------------------------------------------------

MASK = 0xFFFFFFFF
INT_MIN, INT_MAX = 0x80000000, 0x7FFFFFFF
SPECIAL = [0, 1, MASK, INT_MIN, INT_MAX, 2, MASK - 1, 7, 8, 10, 16, 24, 31, 32, 33, 63, 0x7F, 0x80, 0xFF,
           0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0xFFFFFF, 0x1000000, INT_MIN + 1, 0xAAAAAAAA, 0x55555555]


def signed(x):
    return x - (1 << 32) if x & INT_MIN else x


class Trap(Exception):
    pass


def _div_s(a, b):
    if b == 0 or (a == INT_MIN and b == MASK):
        raise Trap
    q = abs(signed(a)) // abs(signed(b))
    return (-q if (signed(a) < 0) != (signed(b) < 0) else q) & MASK


def _rem_s(a, b):
    if b == 0:
        raise Trap
    r = abs(signed(a)) % abs(signed(b))
    return (-r if signed(a) < 0 else r) & MASK


def _nonzero(b):
    if b == 0:
        raise Trap
    return b


BINARY = {
    "add": lambda a, b: (a + b) & MASK, "sub": lambda a, b: (a - b) & MASK, "mul": lambda a, b: (a * b) & MASK,
    "div_s": _div_s, "div_u": lambda a, b: a // _nonzero(b), "rem_s": _rem_s,
    "rem_u": lambda a, b: a % _nonzero(b), "and": lambda a, b: a & b, "or": lambda a, b: a | b,
    "xor": lambda a, b: a ^ b, "shl": lambda a, b: (a << (b % 32)) & MASK,
    "shr_s": lambda a, b: (signed(a) >> (b % 32)) & MASK, "shr_u": lambda a, b: a >> (b % 32),
    "rotl": lambda a, b: ((a << (b % 32)) | (a >> (32 - b % 32))) & MASK,
    "rotr": lambda a, b: ((a >> (b % 32)) | (a << (32 - b % 32))) & MASK,
    "eq": lambda a, b: int(a == b), "ne": lambda a, b: int(a != b),
    "lt_s": lambda a, b: int(signed(a) < signed(b)), "lt_u": lambda a, b: int(a < b),
    "gt_s": lambda a, b: int(signed(a) > signed(b)), "gt_u": lambda a, b: int(a > b),
    "le_s": lambda a, b: int(signed(a) <= signed(b)), "le_u": lambda a, b: int(a <= b),
    "ge_s": lambda a, b: int(signed(a) >= signed(b)), "ge_u": lambda a, b: int(a >= b),
}
UNARY = {
    "clz": lambda a: 32 - a.bit_length(), "ctz": lambda a: 32 if a == 0 else (a & -a).bit_length() - 1,
    "popcnt": lambda a: bin(a).count("1"), "eqz": lambda a: int(a == 0),
    "extend8_s": lambda a: (((a & 0xFF) ^ 0x80) - 0x80) & MASK,
    "extend16_s": lambda a: (((a & 0xFFFF) ^ 0x8000) - 0x8000) & MASK,
}


def random_operand(rng):
    kind = rng.random()
    if kind < 0.45:
        return rng.choice(SPECIAL)
    if kind < 0.7:
        return rng.randrange(-300, 300) & MASK
    return rng.getrandbits(32)


def random_expression(rng, depth):
    """(wat text, value or Trap) of a random expression tree."""
    if depth == 0 or rng.random() < 0.3:
        value = random_operand(rng)
        return "(i32.const %d)" % signed(value), value
    if rng.random() < 0.25:
        op = rng.choice(sorted(UNARY))
        text, value = random_expression(rng, depth - 1)
        result = value if value is Trap else UNARY[op](value)
        return "(i32.%s %s)" % (op, text), result
    op = rng.choice(sorted(BINARY))
    left_text, left = random_expression(rng, depth - 1)
    right_text, right = random_expression(rng, depth - 1)
    if left is Trap or right is Trap:
        result = Trap
    else:
        try:
            result = BINARY[op](left, right)
        except Trap:
            result = Trap
    return "(i32.%s %s %s)" % (op, left_text, right_text), result


def printing_module(expressions):
    """A module whose compute() prints each expression's value as 4 bytes, little endian."""
    body = "\n".join("    (call $emit %s)" % text for text in expressions)
    return """(module
  (import "env" "output_byte" (func $out (param i32)))
  (memory 1)
  (func $emit (param $v i32)
    (i32.store (i32.const 0) (local.get $v))
    (call $out (i32.load8_u (i32.const 0))) (call $out (i32.load8_u (i32.const 1)))
    (call $out (i32.load8_u (i32.const 2))) (call $out (i32.load8_u (i32.const 3))))
  (func (export "compute")
%s))""" % body


def run_wasmtime(binary):
    """(status, output) of compute() in wasmtime: status "halt" or "trap"."""
    import wasmtime
    store = wasmtime.Store(wasmtime.Engine())
    output = bytearray()
    output_byte = wasmtime.Func(store, wasmtime.FuncType([wasmtime.ValType.i32()], []),
                                lambda value: output.append(value & 0xFF))
    instance = wasmtime.Instance(store, wasmtime.Module(store.engine, binary), [output_byte])
    try:
        instance.exports(store)["compute"](store)
    except wasmtime.Trap:
        return "trap", bytes(output)
    return "halt", bytes(output)


def check_against_wasmtime(expressions):
    binary = frontend.wat_to_wasm(printing_module(expressions))
    expected = run_wasmtime(binary)
    instructions = frontend.lower_module(frontend.decode_module(binary))
    assert run(instructions) == expected


def expression_sets(seed, count, depth):
    rng = random.Random(seed)
    finishing, trapping = [], []
    while len(finishing) < count:
        text, value = random_expression(rng, depth)
        (trapping if value is Trap else finishing).append((text, value))
    return finishing, trapping


@pytest.mark.parametrize("seed", range(10))
def test_random_expressions_match_wasmtime(seed):
    finishing, trapping = expression_sets(seed, 50, 3)      # 10 x 50 = 500 expressions
    expressions = [text for text, _ in finishing]
    check_against_wasmtime(expressions)
    # every trapping expression found on the way, after two that print
    for text, _ in trapping[:3]:
        check_against_wasmtime(expressions[:2] + [text] + expressions[2:3])


def test_python_model_agrees_with_wasmtime():
    """The test's own model of i32 (used to sort out traps) is checked too."""
    finishing, _ = expression_sets(99, 40, 2)
    binary = frontend.wat_to_wasm(printing_module([text for text, _ in finishing]))
    status, output = run_wasmtime(binary)
    assert status == "halt"
    assert output == b"".join(value.to_bytes(4, "little") for _, value in finishing)


def single_operations(seed, pairs_per_op):
    rng = random.Random(seed)
    expressions = []
    for op in sorted(BINARY):
        for _ in range(pairs_per_op):
            a, b = random_operand(rng), random_operand(rng)
            expressions.append("(i32.%s (i32.const %d) (i32.const %d))" % (op, signed(a), signed(b)))
    for op in sorted(UNARY):
        for _ in range(pairs_per_op):
            expressions.append("(i32.%s (i32.const %d))" % (op, signed(random_operand(rng))))
    return expressions


def test_every_operation_on_special_operands():
    """Each i32 operation on 40 operand pairs (special values, small and random words)."""
    expressions = single_operations(7, 40)
    finishing = [text for text in expressions if "div" not in text and "rem" not in text]
    check_against_wasmtime(finishing)
    dividing = [text for text in expressions if text not in finishing]
    for start in range(0, len(dividing), 40):     # traps (x / 0) end a module: one per chunk
        chunk = [text for text in dividing[start:start + 40] if "(i32.const 0))" not in text]
        check_against_wasmtime(chunk)


@pytest.mark.parametrize("expression,status", [
    ("(i32.div_s (i32.const -2147483648) (i32.const -1))", "trap"),
    ("(i32.rem_s (i32.const -2147483648) (i32.const -1))", "halt"),
    ("(i32.div_u (i32.const 5) (i32.const 0))", "trap"),
    ("(i32.rem_u (i32.const 5) (i32.const 0))", "trap"),
    ("(i32.div_s (i32.const 5) (i32.const 0))", "trap"),
    ("(i32.rem_s (i32.const 0) (i32.const 0))", "trap"),
    ("(i32.div_s (i32.const -2147483648) (i32.const 1))", "halt"),
    ("(unreachable)", "trap"),
])
def test_traps(expression, status):
    binary = frontend.wat_to_wasm(printing_module(["(i32.const 7)", expression]))
    assert run_wasmtime(binary)[0] == status
    check_against_wasmtime(["(i32.const 7)", expression])


# SPEC 4.8: programs without trapping paths are byte-identical to transformer-vm's
# format, whose vocabulary is wasmtf's without `trap`: the front end emits `trap`
# only where something can trap.
TRANSFORMER_VM_VOCABULARY = set(reference.VOCAB) - {"trap"}


def opcodes(instructions):
    return {opcode for opcode, _ in instructions}


@pytest.mark.parametrize("name", sorted(path.stem for path in EXAMPLES.glob("*.wasm")))
def test_c_examples_have_no_trap(name):
    instructions, input_bytes = frontend.load_program_file(EXAMPLES / (name + ".wasm"), "12 34")
    assert "trap" not in opcodes(instructions)
    assert set(reference.program_tokens(instructions, input_bytes)) <= TRANSFORMER_VM_VOCABULARY


def test_c_dividing_by_constants_has_no_trap(tmp_path):
    """x / c and x % c: the machine's division, no `trap` instruction (it traps by itself)."""
    source = tmp_path / "digits.c"
    source.write_text(r'''
void compute(const char *input) {
    int x = parse_int(&input); unsigned u = x;
    int q[] = {x / 10, x % 10, x / -7, x % -7, x / 3, x % 3, x / (-2147483647 - 1), x % (-2147483647 - 1),
               x % -1, (int)(u / 10u), (int)(u % 10u), (int)(u / 3000000000u), (int)(u % 3000000000u)};
    for (int k = 0; k < 13; k++) { print_int(q[k]); putchar(' '); }
}
''')
    binary = frontend.compile_c(source)
    instructions = frontend.lower_module(frontend.decode_module(binary))
    assert "trap" not in opcodes(instructions)
    for text in [b"0", b"1", b"-1", b"12345", b"-12345", b"2147483647", b"-2147483648", b"-2147483647", b"69"]:
        assert run(instructions, text) == run_wasmtime_compute(binary, text)


NO_MEMORY = """(module
  (import "env" "output_byte" (func $out (param i32)))
  (type $t (func (result i32)))
  (table 1 funcref) (elem (i32.const 0) $seven)
  (func $seven (result i32) (i32.const 7))
  (func (export "compute") (local $zero i32) (local $n i32)
    (local.set $n (i32.const 5))
    (loop $l (call $out (i32.add (i32.const 48) (local.get $n)))
             (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br_if $l (local.get $n)))
    %s))"""


@pytest.mark.parametrize("statement,traps", [
    ("(call $out (i32.div_s (i32.const 100) (i32.const 7)))", False),
    ("(call $out (i32.rem_u (i32.const 100) (i32.const 7)))", False),
    # the machine's division traps by itself (SPEC 12.2): no `trap` instruction, the same run
    ("(call $out (i32.div_u (i32.const 100) (local.get $zero)))", False),
    ("(call $out (i32.rem_s (i32.const 100) (local.get $zero)))", False),
    ("(call $out (i32.div_s (i32.const -2147483648) (i32.const -1)))", False),
    ("(call $out (i32.div_u (i32.const 100) (i32.const 0)))", False),
    ("(unreachable)", True),
    ("(call $out (call_indirect (type $t) (local.get $zero)))", True),       # slot 0: $seven
    ("(call $out (call_indirect (type $t) (i32.const 1)))", True),           # slot 1: out of range
])
def test_trap_only_where_a_trap_can_happen(statement, traps):
    binary = frontend.wat_to_wasm(NO_MEMORY % statement)
    instructions = frontend.lower_module(frontend.decode_module(binary))
    assert ("trap" in opcodes(instructions)) == traps
    assert run(instructions) == run_wasmtime(binary)


def test_bounds_checks_bring_the_trap():
    memory = NO_MEMORY.replace("(table", "(memory 1) (table")
    for statement, traps in [("(call $out (i32.load8_u (i32.const 65535)))", True),
                             ("(call $out (i32.load8_u (i32.const 65536)))", True),
                             ("(call $out (i32.const 1))", False)]:
        binary = frontend.wat_to_wasm(memory % statement)
        instructions = frontend.lower_module(frontend.decode_module(binary))
        assert ("trap" in opcodes(instructions)) == traps
        assert run(instructions) == run_wasmtime(binary)


@pytest.mark.slow
def test_every_operation_on_all_special_pairs():
    for op in sorted(BINARY):
        expressions = ["(i32.%s (i32.const %d) (i32.const %d))" % (op, signed(a), signed(b))
                       for a in SPECIAL for b in SPECIAL if not (op[:3] in ("div", "rem") and b == 0)
                       and not (op == "div_s" and a == INT_MIN and b == MASK)]
        check_against_wasmtime(expressions)
    check_against_wasmtime(["(i32.%s (i32.const %d))" % (op, signed(a)) for op in UNARY for a in SPECIAL])


# ---------------------------------------------------------------------------
# Malformed and unsupported modules: one clear error, never a traceback
# ---------------------------------------------------------------------------
SMALL_MODULE = frontend.wat_to_wasm('(module (func (export "f") (result i32) (i32.add (i32.const 1) (i32.const 2))))')


@pytest.mark.parametrize("data,message", [
    (b"\0asn\1\0\0\0", "byte offset 0: bad magic"),
    (b"\0asm\2\0\0\0", "byte offset 4: unsupported version"),
    (b"\0asm\1\0\0\0\1\x85", "unexpected end"),                           # truncated LEB128 size
    (b"\0asm\1\0\0\0\1\x80\x80\x80\x80\x80\x00", "bad LEB128"),            # 6-byte u32
    (b"\0asm\1\0\0\0\1\x7f\x00", "runs past the end"),                    # section size too big
    (b"\0asm\1\0\0\0\x0e\x00", "unknown section id 14"),
    (SMALL_MODULE[:-3], "byte offset"),                                    # truncated code
])
def test_malformed_modules(data, message):
    with pytest.raises(frontend.WasmError, match=message):
        frontend.decode_module(data)


def test_unknown_opcode_names_its_offset():
    data = bytearray(SMALL_MODULE)
    at = data.index(bytes([0x6A]))            # i32.add
    data[at] = 0xE0
    with pytest.raises(frontend.WasmError, match="byte offset %d \\(0x%x\\): unknown opcode 0xe0" % (at, at)):
        frontend.decode_module(bytes(data))


def check_corruptions_give_only_wasm_errors(seeds, rng, count=1500, cut_probability=0.3):
    """Decode and lower `count` corrupted copies of the seed modules (cut short, or 1-3
    bytes changed): anything but a WasmError fails the test."""
    for _ in range(count):
        data = bytearray(rng.choice(seeds))
        if rng.random() < cut_probability:
            data = data[:rng.randrange(len(data))]
        else:
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            module = frontend.decode_module(bytes(data))
            for name, (kind, index) in module.exports.items():
                if kind == "func":
                    frontend.lower_module(module, calls=[(name, [0] * len(module.functions[index].params))])
        except frontend.WasmError:
            pass


def test_random_corruption_gives_only_wasm_errors():
    seeds = [SMALL_MODULE, (EXAMPLES / "hello.wasm").read_bytes(),
             frontend.wat_to_wasm(printing_module(["(i32.div_s (i32.const 7) (i32.const 2))"]))]
    check_corruptions_give_only_wasm_errors(seeds, random.Random(5))


def test_every_unsupported_use_is_reported_at_once():
    binary = frontend.wat_to_wasm('''(module
      (import "env" "output_byte" (func $out (param i32)))
      (import "env" "other" (func $other))
      (func $helper (param f64) (result f64) (f64.add (local.get 0) (f64.const 1)))
      (func (export "compute")
        (drop (call $helper (f64.const 1)))
        (call $other)
        (drop (f32.const 1.5))
        (call $out (i32.const 65))))''')
    with pytest.raises(frontend.UnsupportedError) as error:
        frontend.lower_module(frontend.decode_module(binary))
    problems = error.value.problems
    assert len(problems) == 6           # env.other, f64 types, f64.add, f64.const, f64.const, f32.const
    assert any("env.other" in p for p in problems)
    assert any("function 2" in p and "value types f64" in p for p in problems)
    assert any("function 2" in p and "byte offset" in p and p.endswith("f64.add") for p in problems)
    assert any("'compute'" in p and p.endswith("f32.const") for p in problems)


def test_invalid_modules_are_reported_as_invalid_with_wasmtimes_first_reason(tmp_path):
    """A module the front end rejects is `invalid module: <reason>` exactly when wasmtime's
    validator rejects it; otherwise the front end's own error (unsupported, ...) stands."""
    rng = random.Random(16)
    seeds = [(EXAMPLES / "hello.wasm").read_bytes(), (EXAMPLES / "add.wasm").read_bytes()]
    engine = wasmtime.Engine()
    invalid = 0
    for case in range(300):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 3)):
            data[rng.randrange(8, len(data))] = rng.randrange(256)
        try:
            frontend.lower_binary(bytes(data), "m.wasm")
            continue
        except frontend.WasmError as error:
            message = str(error)
        try:
            wasmtime.Module.validate(engine, bytes(data))
            assert "invalid module" not in message, message
        except wasmtime.WasmtimeError as error:
            invalid += 1
            assert message == "m.wasm: invalid module: %s" % str(error).splitlines()[0]
    assert invalid > 100


def test_a_memory_index_other_than_0_is_invalid():
    binary = bytearray(wasmtime.wat2wasm('(module (memory 1) (func (export "f") (result i32) memory.size))'))
    at = binary.index(bytes([0x3F, 0x00]))
    binary[at + 1] = 1                                            # memory.size 1: there is one memory
    with pytest.raises(frontend.WasmError, match="m.wasm: invalid module: unknown memory 1"):
        frontend.lower_binary(bytes(binary), "m.wasm")
    with pytest.raises(frontend.UnsupportedError, match=r"memory.size of memory 1 \(one memory, index 0\)"):
        frontend.lower_module(bytes(binary), entry="f")


def test_a_type_error_is_invalid_not_a_missing_heap_base(tmp_path):
    program = tmp_path / "typed.wat"
    program.write_text('(module (func (export "compute") (param i32) (i64.const 1)))')
    with pytest.raises(frontend.WasmError) as error:
        frontend.load_program_file(program)
    assert str(error.value).startswith("%s: invalid module: type mismatch" % program)  # not __heap_base


@pytest.mark.parametrize("body,name,proposal", [
    ("(return_call $f)", "return_call", "tail-call"),
    ("(return_call_indirect (type 0) (i32.const 0))", "return_call_indirect", "tail-call"),
    ("(block (try_table (throw_ref (ref.null exn))))", "try_table", "exception-handling"),
    ("(drop (ref.as_non_null (ref.func $f)))", "ref.as_non_null", "function-references"),
])
def test_a_proposals_instruction_is_named(body, name, proposal):
    binary = wasmtime.wat2wasm('(module (type (func)) (table 1 funcref) (elem declare func $f) '
                               '(func $f (export "compute") %s))' % body)
    with pytest.raises(frontend.WasmError, match=r"m.wasm: byte offset \d+ \(0x[0-9a-f]+\): %s \(opcode 0x[0-9a-f]{2}, "
                       r"the %s proposal\): not supported" % (re.escape(name), proposal)):
        frontend.lower_binary(binary, "m.wasm")


def test_an_exception_tag_section_is_named():
    binary = wasmtime.wat2wasm('(module (tag $e) (func (export "compute") (throw $e)))')
    with pytest.raises(frontend.WasmError, match=r"tag section \(id 13, the exception-handling proposal\)"):
        frontend.lower_binary(binary, "m.wasm")


def test_telling_invalid_from_unsupported_without_wasmtime_is_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "wasmtime", None)        # `import wasmtime` raises ImportError
    with pytest.raises(frontend.WasmError) as error:
        frontend.lower_binary(SMALL_MODULE[:-3], "m.wasm")
    first, detail = str(error.value).split("\n")
    assert first.startswith("m.wasm: byte offset ")
    assert detail == "  (telling an invalid module from an unsupported one needs the `wasmtime` package " \
                     "(pip install wasmtime))"


# ---------------------------------------------------------------------------
# env.putchar: C's `int putchar(int)` as an import is the output instruction too
# ---------------------------------------------------------------------------

def compile_ordinary_c(source, path):
    """C without runtime.h, as any toolchain builds it: putchar is the import env.putchar."""
    path.write_text("int putchar(int);\n" + source)
    flags = [flag for flag in decoder.C_FLAGS if flag not in ("-include", "runtime.h")]
    output = path.with_suffix(".wasm")
    subprocess.run([sys.executable, "-m", "ziglang", "cc"] + flags + ["-Wl,--import-symbols", "-o", str(output),
                                                                      str(path)], check=True)
    return output.read_bytes()


def run_wasmtime_with_putchar(binary, input_bytes=None):
    """compute() or compute(A) in wasmtime with a host putchar: it writes c's low byte and
    returns the byte written, (unsigned char)c, as the C library's putchar does."""
    import wasmtime
    store = wasmtime.Store(wasmtime.Engine())
    output = bytearray()

    def putchar(c):
        output.append(c & 0xFF)
        return c & 0xFF
    putchar_import = wasmtime.Func(store, wasmtime.FuncType([wasmtime.ValType.i32()], [wasmtime.ValType.i32()]),
                                   putchar)
    exports = wasmtime.Instance(store, wasmtime.Module(store.engine, binary), [putchar_import]).exports(store)
    args = []
    if input_bytes is not None:
        args = [frontend.input_address(frontend.decode_module(binary))]
        exports["memory"].write(store, input_bytes + b"\0", args[0])
    try:
        exports["compute"](store, *args)
    except wasmtime.Trap:
        return "trap", bytes(output)
    return "halt", bytes(output)


PUTCHAR_RESULT_USED = r'''
static int shout(const char *s) { int sum = 0; while (*s) sum += putchar(*s++); return sum; }
void compute(const char *input) {
    int total = shout(input);
    putchar(total < 0 ? '-' : '+');
    int r = putchar(300);                    /* prints 300 & 255 = ',' and returns 44 */
    putchar(r + 1);
    putchar(putchar(-200) + 10);             /* prints 0x38 = '8', returns 56: then 'B' */
    for (int c = 250; c < 262; c++) putchar(putchar(c) == c ? 'y' : 'n');
    putchar('\\n');
}
'''
PUTCHAR_RESULT_IGNORED = r'''
void compute(const char *input) {
    while (*input) putchar(*input++);
    putchar('!');
    putchar('\\n');
}
'''


@pytest.mark.parametrize("source", [PUTCHAR_RESULT_USED, PUTCHAR_RESULT_IGNORED], ids=["used", "ignored"])
def test_c_with_the_library_putchar_matches_wasmtime(tmp_path, source):
    binary = compile_ordinary_c(source, tmp_path / "program.c")
    module = frontend.decode_module(binary)
    assert [f.import_from for f in module.functions if f.import_from] == [("env", "putchar")]
    instructions = frontend.lower_module(module)
    for text in [b"Hi", b"", b"\xff\x80 ~", bytes(range(1, 256))]:
        assert run(instructions, text) == run_wasmtime_with_putchar(binary, text)
    if source == PUTCHAR_RESULT_IGNORED:              # no result computed: as runtime.h's output_byte
        (tmp_path / "with_runtime.c").write_text(source)
        with_runtime = frontend.compile_c(tmp_path / "with_runtime.c")
        assert instructions == frontend.lower_module(with_runtime)


PUTCHAR_WAT = """(module
  (import "env" "%s" (func $out (param i32) %s))
  (func (export "compute") (local $k i32)
    (loop $l (%s (call $out (i32.add (i32.const 65) (local.get $k))))
             (local.set $k (i32.add (local.get $k) (i32.const 1))) (br_if $l (i32.lt_u (local.get $k) (i32.const 3))))))"""


def test_putchar_with_its_result_dropped_is_output_byte():
    as_output_byte = frontend.wat_to_wasm(PUTCHAR_WAT % ("output_byte", "", "block"))
    as_putchar = frontend.wat_to_wasm(PUTCHAR_WAT % ("putchar", "(result i32)", "drop"))
    assert frontend.lower_module(as_putchar) == frontend.lower_module(as_output_byte)
    assert run(frontend.lower_module(as_putchar)) == run_wasmtime_with_putchar(as_putchar) == ("halt", b"ABC")


def test_putchar_through_call_indirect_and_as_a_value():
    binary = frontend.wat_to_wasm("""(module
  (import "env" "putchar" (func $putchar (param i32) (result i32)))
  (type $t (func (param i32) (result i32)))
  (table 2 funcref) (elem (i32.const 1) $putchar)
  (func (export "compute")
    (drop (call $putchar (i32.sub (call $putchar (i32.const 0x141)) (i32.const 1))))
    (drop (call $putchar (i32.add (call_indirect (type $t) (i32.const -190) (i32.const 1)) (i32.const 2))))))""")
    assert run(frontend.lower_module(binary)) == run_wasmtime_with_putchar(binary) == ("halt", b"A@BD")


@pytest.mark.parametrize("import_type", ["(param i32)", "(param i32) (result i32)"])
def test_an_output_import_of_the_wrong_type_is_reported(import_type):
    name, call = ("putchar", "(call $o (i32.const 65))") if "result" not in import_type else \
        ("output_byte", "(drop (call $o (i32.const 65)))")
    binary = frontend.wat_to_wasm('(module (import "env" "%s" (func $o %s)) (func (export "compute") %s))'
                                  % (name, import_type, call))
    with pytest.raises(frontend.UnsupportedError, match="env.%s must have type" % name):
        frontend.lower_module(binary)


# ---------------------------------------------------------------------------
# Program files and the compile command
# ---------------------------------------------------------------------------

def test_load_program_file_kinds(tmp_path):
    wat = tmp_path / "p.wat"
    wat.write_text('(module (import "env" "output_byte" (func $o (param i32)))'
                   ' (func (export "compute") (call $o (i32.const 33))))')
    instructions, input_bytes = frontend.load_program_file(wat)
    assert input_bytes is None and run(instructions) == ("halt", b"!")
    wasm = tmp_path / "p.wasm"
    wasm.write_bytes(frontend.wat_to_wasm(wat.read_text()))
    assert frontend.load_program_file(wasm)[0] == instructions
    txt = tmp_path / "p.txt"
    txt.write_text(reference.format_program(instructions))
    assert frontend.load_program_file(txt) == (instructions, None)
    with pytest.raises(frontend.WasmError, match="unknown program kind"):
        frontend.load_program_file(tmp_path / "p.py")


@pytest.mark.parametrize("name", ["p.txt", "add.wasm"])
def test_a_loaded_program_is_checked_once(name, monkeypatch):
    """load_program_file checks the instructions; running and encoding them trust that
    check (a reference.Program) and check only the input, with the messages of the full check."""
    path = REPO / "spec" / "examples" / "ex3_call_input.txt" if name == "p.txt" else EXAMPLES / name
    checks = []
    full_check = reference.program_problems
    monkeypatch.setattr(reference, "program_problems", lambda *args: checks.append(1) or full_check(*args))
    instructions, input_bytes = frontend.load_program_file(path, "3 5")
    assert isinstance(instructions, reference.Program) and len(checks) == 1
    reference.program_tokens(instructions, input_bytes)
    assert reference.execute(instructions, input_bytes).status == "halt"
    assert len(checks) == 1
    too_long = bytes(reference.MEMORY_SIZE)
    with pytest.raises(reference.ProgramError) as trusted:
        reference.execute(instructions, too_long)
    with pytest.raises(reference.ProgramError) as full:
        reference.execute(list(instructions), too_long)       # a plain list: the whole check again
    assert str(trusted.value) == str(full.value) and "does not fit" in str(full.value)
    assert len(checks) == 2


def test_entry_function_with_arguments_prints_hex():
    binary = frontend.wat_to_wasm('(module (func (export "f") (param i32 i32) (result i32)'
                                  ' (i32.sub (local.get 0) (local.get 1))))')
    instructions = frontend.lower_module(frontend.decode_module(binary), entry="f", args=[3, 5])
    assert run(instructions) == ("halt", b"fffffffe\n")


# ---------------------------------------------------------------------------
# The C examples: wasmtime and the lowered program print the same bytes
# ---------------------------------------------------------------------------

def run_wasmtime_compute(binary, input_bytes):
    """compute(A) in wasmtime with the input + NUL written at A (SPEC 5)."""
    import wasmtime
    store = wasmtime.Store(wasmtime.Engine())
    output = bytearray()
    output_byte = wasmtime.Func(store, wasmtime.FuncType([wasmtime.ValType.i32()], []),
                                lambda value: output.append(value & 0xFF))
    exports = wasmtime.Instance(store, wasmtime.Module(store.engine, binary), [output_byte]).exports(store)
    address = frontend.input_address(frontend.decode_module(binary))
    exports["memory"].write(store, input_bytes + b"\0", address)
    try:
        exports["compute"](store, address)
    except wasmtime.Trap:
        return "trap", bytes(output)
    return "halt", bytes(output)


C_RUNS = [("hello", b"Ada"), ("hello", b""), ("add", b"-7 12"), ("add", b"2147483647 1"),
          ("addition", b"999 1"), ("fibonacci", b"47"), ("collatz", b"27")]


@pytest.mark.parametrize("name,input_bytes", C_RUNS)
def test_examples_match_wasmtime(name, input_bytes):
    binary = (EXAMPLES / ("%s.wasm" % name)).read_bytes()
    instructions = frontend.lower_module(frontend.decode_module(binary))
    assert run(instructions, input_bytes) == run_wasmtime_compute(binary, input_bytes)


# C dominated by the i32 ALU: every operator, with variable and constant
# operands, on two numbers parsed from the input; each result printed as 4 bytes.
ALU_C = r"""
static void put_word(unsigned w) { for (int k = 0; k < 4; k++) { putchar(w); w >>= 8; } }
void compute(const char *input) {
    int x = parse_int(&input), y = parse_int(&input);
    unsigned ux = x, uy = y;
    put_word(x * y); put_word(ux * uy); put_word(x * 10); put_word(x * -7); put_word(x * 0x10001);
    if (y != 0 && !(x == -2147483647 - 1 && y == -1)) { put_word(x / y); put_word(x % y); }
    if (uy != 0) { put_word(ux / uy); put_word(ux % uy); }
    put_word(x / 10); put_word(x % 10); put_word(ux / 10); put_word(ux % 10); put_word(x / -3);
    put_word(x % -3); put_word(x / 8); put_word(x % 8); put_word(ux / 16); put_word(ux % 16);
    put_word(x & y); put_word(x | y); put_word(x ^ y); put_word(~x); put_word(x & 255);
    put_word(x & 0xff00ff00); put_word(x | 0x100); put_word(x ^ 0x5555);
    put_word(x << (y & 31)); put_word(x >> (y & 31)); put_word(ux >> (uy & 31));
    put_word(x << 5); put_word(x >> 3); put_word(ux >> 3); put_word(x >> 31); put_word(ux >> 24);
    put_word((ux << (uy & 31)) | (ux >> ((32 - uy) & 31)));      /* rotl */
    put_word((ux >> (uy & 31)) | (ux << ((32 - uy) & 31)));      /* rotr */
    put_word((ux << 7) | (ux >> 25));
    put_word(ux ? __builtin_clz(ux) : 32); put_word(ux ? __builtin_ctz(ux) : 32);
    put_word(__builtin_popcount(ux)); put_word(__builtin_popcount(ux ^ uy));
    put_word((signed char)x); put_word((short)x); put_word((signed char)(x + y)); put_word((short)(x * y));
}
"""
ALU_BOUNDARY = ["0", "1", "-1", "2", "-2", "7", "-7", "10", "2147483647", "-2147483648", "65535", "65536",
                "-65536", "255", "256", "-129", "31", "32", "33", "1073741824", "-1073741825"]


def alu_inputs(seed, count):
    """Pairs "x y": boundary operands against each other, then random words."""
    rng = random.Random(seed)
    pairs = ["%s %s" % (a, b) for a in ALU_BOUNDARY[::3] for b in ALU_BOUNDARY]
    pairs += ["%d %d" % (signed(rng.getrandbits(32)), signed(random_operand(rng))) for _ in range(count)]
    return [pair.encode() for pair in pairs]


def test_c_dominated_by_the_alu_matches_wasmtime(tmp_path):
    source = tmp_path / "alu.c"
    source.write_text(ALU_C)
    binary = frontend.compile_c(source)
    instructions = frontend.lower_module(frontend.decode_module(binary))
    for text in alu_inputs(11, 40):
        assert run(instructions, text) == run_wasmtime_compute(binary, text), text


def test_native_operations_are_emitted_as_themselves(tmp_path):
    """Each WebAssembly operation the machine has is one instruction of the flat program,
    not a routine: the ALU program's flat code holds every native operation clang used."""
    source = tmp_path / "alu.c"
    source.write_text(ALU_C)
    module = frontend.decode_module(frontend.compile_c(source))
    used = {instruction.name for function in module.functions for instruction in function.code}
    flat = {opcode for opcode, _ in frontend.lower_module(module)}
    native_used = used & set(reference.EXTENSION_OPCODES)
    assert native_used and native_used <= flat


@pytest.mark.parametrize("text", [b"5 0", b"-2147483648 -1", b"0 0"])
def test_c_division_traps_like_wasmtime(tmp_path, text):
    source = tmp_path / "divide.c"
    source.write_text("void compute(const char *input) { int x = parse_int(&input), y = parse_int(&input);\n"
                      "    putchar('>'); print_int(x / y); putchar(' '); print_int(x % y); }\n")
    binary = frontend.compile_c(source)
    instructions = frontend.lower_module(frontend.decode_module(binary))
    assert run(instructions, text) == run_wasmtime_compute(binary, text) == ("trap", b">")


DIVISION_C = r"""
/* Dominated by / and %: x written in every base 2..36 (unsigned), and signed
 * quotients and remainders of x by a range of divisors around zero. */
void compute(const char *input) {
    int x = parse_int(&input);
    unsigned u = x;
    for (unsigned base = 2; base <= 36; base++) {
        char digits[33]; int n = 0; unsigned v = u;
        do { digits[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % base]; v /= base; } while (v);
        while (n) putchar(digits[--n]);
        putchar(' ');
    }
    for (int d = -9; d <= 9; d++)
        if (d != 0 && !(x == -2147483647 - 1 && d == -1)) { print_int(x / d); putchar(','); print_int(x % d); putchar(' '); }
}
"""


@pytest.mark.parametrize("text", [b"0", b"1", b"-1", b"9", b"-10", b"12345", b"-98765", b"2147483647",
                                  b"-2147483648", b"65536", b"-1000000007"])
def test_c_division_heavy_program_matches_wasmtime(tmp_path, text):
    source = tmp_path / "bases.c"
    source.write_text(DIVISION_C)
    binary = frontend.compile_c(source)
    instructions = frontend.lower_module(frontend.decode_module(binary))
    assert {"i32.div_u", "i32.div_s"} <= opcodes(instructions)   # (clang takes x % d as x - x / d * d)
    assert run(instructions, text) == run_wasmtime_compute(binary, text)


def test_c_division_heavy_program_inside_the_transformer(tmp_path):
    import compile_weights
    source = tmp_path / "bases.c"
    source.write_text(DIVISION_C)
    instructions = frontend.lower_module(frontend.decode_module(frontend.compile_c(source)))
    expected = reference.run_reference(instructions, b"-1000000007")
    assert wasmtf.run_transformer(compile_weights.compile_machine(), instructions, b"-1000000007") == expected


def test_c_alu_inside_the_transformer(tmp_path):
    """A few ALU runs inside the compiled transformer equal the reference, token for token."""
    import compile_weights
    source = tmp_path / "alu.c"
    source.write_text(ALU_C)
    binary = frontend.compile_c(source)
    instructions = frontend.lower_module(frontend.decode_module(binary))
    for text in [b"7 -3", b"-5 -2"]:
        expected = reference.run_reference(instructions, text)
        assert wasmtf.run_transformer(compile_weights.compile_machine(), instructions, text) == expected


@pytest.mark.slow
def test_sudoku_matches_wasmtime():
    binary = (EXAMPLES / "sudoku.wasm").read_bytes()
    instructions = frontend.lower_module(frontend.decode_module(binary))
    machine = reference.execute(instructions, b"", max_steps=50_000_000)
    assert (machine.status, bytes(machine.output)) == run_wasmtime_compute(binary, b"")


CONSTANTS = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 40, 255, 256, 0xFFFF, 0x10000, MASK,
             MASK - 1, MASK - 2, INT_MIN, INT_MAX, 10, 1000, (-10) & MASK, 0xFF00FF00]
X_VALUES = [0, 1, MASK, INT_MIN, INT_MAX, 0x12345678, (-0x12345678) & MASK, 200, (-200) & MASK]


def test_constant_operands_match_wasmtime():
    """`x OP c` with a constant c is lowered by special cases (shifts, masks, chains)."""
    expressions = []
    for op in ["mul", "shl", "shr_u", "shr_s", "and", "or", "xor", "div_u", "rem_u", "div_s", "rem_s",
               "rotl", "rotr"]:
        for c in CONSTANTS:
            if c == 0 and op[:3] in ("div", "rem"):
                continue
            expressions += ["(i32.%s (i32.const %d) (i32.const %d))" % (op, signed(x), signed(c))
                            for x in X_VALUES if not (op == "div_s" and x == INT_MIN and c == MASK)]
    for width in (8, 16, 24, 12):           # the sign-extension idiom (x << c) >>s c, and a non-idiom
        expressions += ["(i32.shr_s (i32.shl (i32.const %d) (i32.const %d)) (i32.const %d))"
                        % (signed(x), width, width) for x in SPECIAL]
    check_against_wasmtime(expressions)


# ---------------------------------------------------------------------------
# Bounds checks: a 1-page memory traps exactly where wasmtime traps, also after memory.grow
# ---------------------------------------------------------------------------
ACCESSES = [("i32.load", 4), ("i32.load8_u", 1), ("i32.load16_s", 2), ("i32.store", 4), ("i32.store8", 1),
            ("i32.store16", 2)]
OFFSETS = [0, 1, 3, 65532, 65535, 65536, 131070, 0xFFFFFFFF]
ADDRESSES = [0, 1, 65532, 65533, 65534, 65535, 65536, 131068, 131071, 0x7FFFFFFF, 0xFFFFFFFC, 0xFFFFFFFF]


def bounds_module(growable):
    functions = []
    for op, width in ACCESSES:
        for offset in OFFSETS:
            name = "%s_%d" % (op, offset)
            if "load" in op:
                body = "(%s offset=%d (local.get 0))" % (op, offset)
            else:
                body = "(%s offset=%d (local.get 0) (i32.const 0x01020304)) (i32.const 1)" % (op, offset)
            functions.append('(func (export "%s") (param i32) (result i32) %s)' % (name, body))
    grow = '(func (export "grow") (result i32) (memory.grow (i32.const 1)))' if growable else ""
    return "(module (memory 1) (data (i32.const 65532) \"\\01\\02\\03\\04\") %s %s)" % (grow, " ".join(functions))


@pytest.mark.parametrize("growable", [False, True])
def test_bounds_checks_match_wasmtime(growable):
    import wasmtime
    binary = frontend.wat_to_wasm(bounds_module(growable))
    module = frontend.decode_module(binary)
    calls = [("grow", [])] if growable else []
    calls += [("%s_%d" % (op, offset), [address]) for op, _ in ACCESSES for offset in OFFSETS
              for address in ADDRESSES]
    store = wasmtime.Store(wasmtime.Engine())
    exports = wasmtime.Instance(store, wasmtime.Module(store.engine, binary), []).exports(store)
    expected = []
    for name, args in calls:
        try:
            expected.append(("return", [exports[name](store, *[reference.to_signed(a) for a in args]) & MASK]))
        except wasmtime.Trap:
            expected.append(("trap", None))
    outcomes, _ = spectest.run_calls(module, calls)
    assert outcomes == expected


# ---------------------------------------------------------------------------
# Random structured programs (blocks, loops, br_if/br_table with values, calls,
# globals, memory) printed through env.output_byte: wasmtime against the lowering
# ---------------------------------------------------------------------------
CHEAP_BINARY = ["add", "sub", "eq", "ne", "lt_s", "lt_u", "gt_s", "ge_u", "mul", "and", "xor", "shl", "shr_s"]


class ProgramGenerator:
    """Random wat functions of i32 code; loops count down a dedicated local, so all terminate."""

    def __init__(self, rng, n_functions):
        self.rng = rng
        self.n_functions = n_functions

    def expression(self, depth, function):
        rng = self.rng
        kind = rng.random() if depth > 0 else 0
        if kind < 0.3:
            return rng.choice(["(i32.const %d)" % signed(random_operand(rng)), "(local.get $x)",
                               "(local.get $y)", "(global.get $g)"])
        if kind < 0.55:
            return "(i32.%s %s %s)" % (rng.choice(CHEAP_BINARY), self.expression(depth - 1, function),
                                       self.expression(depth - 1, function))
        if kind < 0.65:
            return "(i32.load%s offset=%d %s)" % (rng.choice(["", "8_s", "16_u"]), rng.choice([0, 4] * 9 + [65530]),
                                                  self.address(depth, function))
        if kind < 0.75 and function + 1 < self.n_functions:
            return "(call $f%d %s %s)" % (rng.randrange(function + 1, self.n_functions),
                                          self.expression(depth - 1, function), self.expression(depth - 1, function))
        if kind < 0.85:
            return "(if (result i32) %s (then %s) (else %s))" % tuple(
                self.expression(depth - 1, function) for _ in range(3))
        return "(block $v (result i32) %s (drop (br_if $v %s %s)) %s)" % (
            self.statements(depth - 1, function, 1), self.expression(depth - 1, function),
            self.expression(depth - 1, function), self.expression(depth - 1, function))

    def address(self, depth, function):
        if self.rng.random() < 0.97:           # else any value: most of those trap
            return "(i32.const %d)" % self.rng.randrange(0, 256, 2)
        return self.expression(depth - 1, function)

    def statements(self, depth, function, count):
        return " ".join(self.statement(depth, function) for _ in range(count))

    def statement(self, depth, function):
        rng = self.rng
        e = lambda: self.expression(max(depth - 1, 0), function)   # noqa: E731
        kind = rng.random() if depth > 0 else rng.random() * 0.5
        if kind < 0.15:
            return "(local.set $%s %s)" % (rng.choice("xy"), e())
        if kind < 0.25:
            return "(global.set $g %s)" % e()
        if kind < 0.35:
            return "(i32.store%s %s %s)" % (rng.choice(["", "8", "16"]), self.address(depth, function), e())
        if kind < 0.5:
            return "(call $out %s)" % e()
        if kind < 0.65:
            return "(if %s (then %s) (else %s))" % (e(), self.statements(depth - 1, function, 2),
                                                    self.statements(depth - 1, function, 1))
        if kind < 0.8:
            return ("(local.set $n{0} (i32.const {1})) (loop $l {2} (local.set $n{0} (i32.sub (local.get $n{0})"
                    " (i32.const 1))) (br_if $l (local.get $n{0})))").format(   # a counter per nesting depth
                        depth, rng.randrange(1, 4), self.statements(depth - 1, function, 2))
        if kind < 0.9:
            return "(block $b %s (br_if $b %s) %s)" % (self.statements(depth - 1, function, 1), e(),
                                                       self.statements(depth - 1, function, 1))
        return ("(block $c (block $b (block $a (br_table $a $b $c $b %s)) %s) %s)"
                % (e(), self.statements(depth - 1, function, 1), self.statements(depth - 1, function, 1)))

    def module(self):
        functions = []
        for index in range(self.n_functions):
            functions.append("(func $f%d (param $x i32) (param $y i32) (result i32) (local $n0 i32) (local $n1 i32)"
                             " (local $n2 i32) (local $n3 i32) %s %s)"
                             % (index, self.statements(3, index, 3), self.expression(2, index)))
        return """(module
  (import "env" "output_byte" (func $out (param i32)))
  (memory 1) (global $g (mut i32) (i32.const 7))
  %s
  (func (export "compute") (call $out (call $f0 (i32.const 3) (i32.const -5))) (call $out (global.get $g))))""" \
            % "\n  ".join(functions)


@pytest.mark.parametrize("seed", range(60))
def test_random_programs_match_wasmtime(seed):
    text = ProgramGenerator(random.Random(seed), 4).module()
    binary = frontend.wat_to_wasm(text)
    expected = run_wasmtime(binary)
    instructions = frontend.lower_module(frontend.decode_module(binary))
    assert run(instructions) == expected


PRINT_HEX_MAX_STEPS = 86   # the documented worst case (frontend.print_hex_items), from `call` to `return`


def print_hex_steps(x):
    """(steps of one call of print_hex(x), status) on the reference machine."""
    entry = frontend.Label("print_hex")
    items = [("i32.const", x), ("call", entry), ("halt", 0)] + frontend.print_hex_items(entry, 1 << 20)
    machine = reference.execute(frontend.assemble(items))
    return machine.steps - 2, machine.status


def test_print_hex_cost_is_bounded():
    """The routine's cost stays within its documented constant bound, whatever the operand."""
    rng = random.Random("print_hex")
    costs = [print_hex_steps(x) for x in SPECIAL + [rng.getrandbits(32) for _ in range(6)]]
    assert all(status == "halt" for _, status in costs)
    assert max(steps for steps, _ in costs) <= PRINT_HEX_MAX_STEPS


def test_c_stack_overflow_traps_like_wasmtime(tmp_path):
    """The 64 KiB C stack overflows below address 0: a trap in both (the reserved area is at the top)."""
    source = tmp_path / "deep.c"
    source.write_text("static int depth(volatile int n) { volatile char buffer[64]; buffer[0] = n;\n"
                      "    if (n == 0) return buffer[0]; return depth(n - 1) + buffer[0]; }\n"
                      "void compute(const char *input) { print_int(depth(parse_int(&input))); putchar(10); }\n")
    binary = frontend.compile_c(source)
    instructions = frontend.lower_module(frontend.decode_module(binary))
    for text in [b"1400", b"5000"]:
        assert run(instructions, text) == run_wasmtime_compute(binary, text)
    assert run(instructions, b"5000")[0] == "trap"


def test_compute_with_input_needs_heap_base_reported_with_the_rest():
    binary = frontend.wat_to_wasm('(module (memory 1) (func (export "compute") (param i32)'
                                  ' (drop (f32.const 1))))')
    with pytest.raises(frontend.UnsupportedError) as error:
        frontend.lower_module(frontend.decode_module(binary))
    assert len(error.value.problems) == 2
    assert "__heap_base" in error.value.problems[0] and error.value.problems[1].endswith("f32.const")


def test_unused_globals_of_other_types_are_ignored():
    """A mutable f32 global nobody reads is no reason to fail (it has no i32 initial value)."""
    wat = """(module (global $unused (mut f32) (f32.const 1)) (global $seven (mut i32) (i32.const 7))
               (func (export "f") (result i32) (global.get $seven)))"""
    instructions = frontend.lower_module(frontend.wat_to_wasm(wat), entry="f")
    assert reference.output_bytes(reference.run_reference(instructions)) == b"00000007\n"


# ---------------------------------------------------------------------------
# The instruction-mix profile
# ---------------------------------------------------------------------------

PROFILED_WAT = """(module
  (import "env" "output_byte" (func $out (param i32)))
  (func $square (param $x i32) (result i32) (i32.mul (local.get $x) (local.get $x)))
  (func $count (export "compute")
    (local $i i32)
    (loop $next
      (call $out (i32.add (i32.const 48) (call $square (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 3))))))"""


def profile_tables(profile, table):
    """{key: (tokens, executed)} of one table of a profile."""
    counts = profile["tables"][table]
    return {key: (counts[key, "tokens"], counts[key, "executed"]) for key, _ in counts}


def test_profile_adds_up_and_names_functions(tmp_path):
    path = tmp_path / "squares.wat"
    path.write_text(PROFILED_WAT)
    instructions, _ = frontend.load_program_file(path)
    machine = reference.execute(instructions)
    profile = profiling.profile_program(path)
    assert (profile["status"], profile["steps"], profile["tokens"]) == ("halt", machine.steps, len(machine.trace))
    for table in ("opcode", "function", "instruction", "function instruction"):
        rows = profile_tables(profile, table)
        assert sum(tokens for tokens, _ in rows.values()) == len(machine.trace)
        assert sum(executed for _, executed in rows.values()) == machine.steps
    functions = profile_tables(profile, "function")
    assert set(functions) == {"harness", "count", "square"}      # names from the name section
    # $square runs 3 times: its prologue (local.set), the multiplication, its return
    pairs = profile_tables(profile, "function instruction")
    assert pairs["square", "prologue"] == (15, 3)
    assert pairs["count", "call"][1] == 6                       # 3 calls of $square, 3 outputs
    opcodes = profile_tables(profile, "opcode")
    assert opcodes["output"] == (3, 3)
    assert reference.output_bytes(machine.trace) == b"014"


def test_profile_charges_a_division_to_its_one_instruction(tmp_path):
    """Division is a machine instruction (SPEC 12): its 9-token group is charged to the
    WebAssembly instruction, and no routine runs."""
    path = tmp_path / "divide.wat"
    path.write_text("""(module (import "env" "output_byte" (func $out (param i32)))
      (func (export "compute") (local $x i32)
        (local.set $x (i32.const 0x1234))
        (call $out (i32.div_u (local.get $x) (i32.add (local.get $x) (i32.const -0x1200))))))""")
    profile = profiling.profile_program(path)
    assert profile_tables(profile, "instruction")["i32.div_u"] == (9, 1)
    assert profile_tables(profile, "opcode")["i32.div_u"] == (9, 1)
    assert profile_tables(profile, "routine") == {}
    assert set(profile_tables(profile, "function")) == {"harness", "compute"}


def test_profile_of_a_program_file_counts_opcodes_only(tmp_path):
    path = tmp_path / "p.txt"
    instructions = [("i32.const", 65), ("output", 0), ("halt", 0)]
    path.write_text(reference.format_program(instructions))
    profile = profiling.profile_program(path)
    assert profile_tables(profile, "opcode") == {"i32.const": (5, 1), "output": (1, 1), "halt": (1, 1)}
    assert profile_tables(profile, "function") == {}
    text = profiling.format_profile(profile)
    assert text.splitlines()[0] == "3 instructions executed, 7 trace tokens, halt"
    assert "tokens by source function" not in text


def test_profile_of_c_keeps_function_names(tmp_path):
    source = tmp_path / "names.c"
    source.write_text("__attribute__((noinline)) static int twice(int x) { return 2 * x; }\n"
                      "void compute(const char *input) { print_int(twice(parse_int(&input))); }\n")
    profile = profiling.profile_program(source, "21")
    assert {"compute", "twice", "harness"} <= set(profile_tables(profile, "function"))
    assert frontend.compile_c(source) != frontend.compile_c(source, keep_names=True)   # (the .wasm drops them)


def test_malformed_name_section_is_ignored():
    binary = frontend.wat_to_wasm('(module (func $f (export "f") (result i32) (i32.const 5)))')
    assert frontend.decode_module(binary).functions[0].debug_name == "f"
    stripped = frontend.wat_to_wasm('(module (func (export "f") (result i32) (i32.const 5)))')
    for content in [b"\x01\x05\x01\x00\x09ab", b"\x01\x80", b"\x01\x03\x01\x00\x01\xff"]:   # cut short, bad UTF-8
        payload = b"\x04name" + content
        module = frontend.decode_module(stripped + b"\x00" + bytes([len(payload)]) + payload)
        assert module.functions[0].debug_name is None
        assert reference.output_bytes(reference.run_reference(frontend.lower_module(module, entry="f"))) \
            == b"00000005\n"
