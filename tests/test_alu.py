"""The extended instruction set (SPEC 12): every native i32 opcode against Python's
exact WebAssembly semantics, then the oracle ladder token for token: reference ->
graph evaluator -> brute cache -> hull cache -> speculative verification.

Operands: boundary values (0, 1, -1, INT_MIN, INT_MAX, powers of two and their
neighbours, byte and half-word edges; shift counts 0..33 and large ones) crossed
with each other, and random words. Programs are built directly as instruction lists:
`i32.const a, i32.const b, OP, drop` per case (the result bytes are in the trace)."""
import random
import re

import pytest

from conftest import SPEC_DIR
from test_machine import MIN_LOGIT_MARGIN, MIN_SCORE_GAP, safety_margins
import compile_weights as cw
import graph
import reference
import speculative
import wasmtf

MASK = 0xFFFFFFFF
INT_MIN, INT_MAX = 0x80000000, 0x7FFFFFFF


def signed(x):
    return x - (1 << 32) if x & INT_MIN else x


# Python's exact semantics of each opcode on unsigned 32-bit words (a below, b on top);
# written here independently of reference.BINARY_OPERATIONS.
SEMANTICS = {
    "i32.mul": lambda a, b: (a * b) & MASK,
    "i32.mul_hi_u": lambda a, b: (a * b) >> 32,
    "i32.and": lambda a, b: a & b,
    "i32.or": lambda a, b: a | b,
    "i32.xor": lambda a, b: a ^ b,
    "i32.shl": lambda a, b: (a << (b & 31)) & MASK,
    "i32.shr_u": lambda a, b: a >> (b & 31),
    "i32.shr_s": lambda a, b: (signed(a) >> (b & 31)) & MASK,
    "i32.rotl": lambda a, b: ((a << (b & 31)) | (a >> ((32 - b) & 31))) & MASK,
    "i32.rotr": lambda a, b: ((a >> (b & 31)) | (a << ((32 - b) & 31))) & MASK,
    "i32.clz": lambda a, b: next(32 - k for k in range(33) if a < 1 << k),
    "i32.ctz": lambda a, b: next((k for k in range(32) if a >> k & 1), 32),
    "i32.popcnt": lambda a, b: sum(a >> k & 1 for k in range(32)),
    "i32.extend8_s": lambda a, b: (a & 0xFF) - (0x100 if a & 0x80 else 0) & MASK,
    "i32.extend16_s": lambda a, b: (a & 0xFFFF) - (0x10000 if a & 0x8000 else 0) & MASK,
    # division truncates toward zero; the remainder has the dividend's sign
    "i32.div_u": lambda a, b: a // b,
    "i32.rem_u": lambda a, b: a % b,
    "i32.div_s": lambda a, b: int(abs(signed(a)) // abs(signed(b)) * (1 if (a < INT_MIN) == (b < INT_MIN) else -1))
    & MASK,
    "i32.rem_s": lambda a, b: (abs(signed(a)) % abs(signed(b)) * (1 if a < INT_MIN else -1)) & MASK,
}
UNARY = {"i32.extend8_s", "i32.extend16_s", "i32.clz", "i32.ctz", "i32.popcnt"}   # opcodes that pop one operand
DIVISIONS = ["i32.div_s", "i32.div_u", "i32.rem_s", "i32.rem_u"]
# bytes + commit (SPEC 12.2); i32.mul_hi_u: 4 bytes, its token, 4 bytes, commit
GROUP_LENGTH = {op: 9 if op in DIVISIONS else 10 if op == reference.MUL_HI else 5 for op in SEMANTICS}


def traps(opcode, a, b):
    """WebAssembly traps: division or remainder by zero, div_s of INT_MIN by -1."""
    return opcode in DIVISIONS and (b == 0 or (opcode == "i32.div_s" and (a, b) == (INT_MIN, MASK)))

POWERS = [1 << k for k in range(32)]
BOUNDARY = sorted({0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 33, 63, 64, 127, 128, 255, 256, 257,
                   0x7FFF, 0x8000, 0xFFFF, 0x10000, 0xFFFFFF, 0x1000000, INT_MAX, INT_MIN, INT_MIN + 1,
                   MASK, MASK - 1, 0x12345678, 0xDEADBEEF, 0x01010101, 0x80808080, 0x55555555, 0xAAAAAAAA}
                  | {p + d & MASK for p in POWERS[::5] for d in (-1, 0, 1)})
SMALL_BOUNDARY = [0, 1, 2, 255, 256, INT_MAX, INT_MIN, INT_MIN + 1, MASK, MASK - 1, 0x10000, 0xDEADBEEF]
# divisors worth a case of their own: 1, -1, 2, 3, 10, byte and half-word edges, INT_MAX, INT_MIN
DIVISORS = [1, MASK, 2, MASK - 1, 3, MASK - 2, 7, 10, (-10) & MASK, 255, 256, 257, 0xFFFF, 0x10000, 0x10001,
            0xFFFFFF, 0x1000000, INT_MAX, INT_MIN, INT_MIN + 1, 0x12345678, 0xDEADBEEF]


def operand_pairs(opcode, rng, n_random, full=True):
    """Boundary x boundary (`full`; else every other boundary value against a small set,
    both ways round) plus random pairs (random words, and random words against
    boundary values)."""
    if full:
        pairs = [(a, b) for a in BOUNDARY for b in BOUNDARY] if opcode not in UNARY else [(a, 0) for a in BOUNDARY]
    else:
        pairs = [(a, b) for a in BOUNDARY[::4] for b in SMALL_BOUNDARY]
        pairs += [(a, b) for a in SMALL_BOUNDARY[::2] for b in BOUNDARY[1::3]]
    pairs += [(rng.getrandbits(32), rng.getrandbits(32)) for _ in range(n_random)]
    pairs += [(rng.getrandbits(32), rng.choice(BOUNDARY)) for _ in range(n_random)]
    if opcode in DIVISIONS:  # divisors of every size (quotient digits of every position), no traps
        pairs += [(a, d) for a in (BOUNDARY if full else SMALL_BOUNDARY) for d in DIVISORS]
        pairs += [(rng.getrandbits(32), rng.getrandbits(rng.randint(1, 32))) for _ in range(n_random)]
        pairs = [(a, b) for a, b in pairs if not traps(opcode, a, b)]
    return pairs


def program_of(opcode, pairs):
    instructions = []
    for a, b in pairs:
        if opcode in UNARY:
            instructions += [("i32.const", a), (opcode, 0), ("drop", 0)]
        else:
            instructions += [("i32.const", a), ("i32.const", b), (opcode, 0), ("drop", 0)]
    return instructions + [("halt", 0)]


def results_in_trace(instructions, trace):
    """The value of each executed `opcode` group (the 4 bytes before its commit: the
    word it pushes; i32.mul_hi_u's group has the low word's bytes before them)."""
    return [record["value"] for record in reference.walk_trace(instructions, trace)
            if record["opcode"] in reference.EXTENSION_OPCODES]


@pytest.fixture(scope="module")
def model():
    return cw.compile_machine()


@pytest.fixture(scope="module")
def plan(model):
    return wasmtf.prepare(model)


@pytest.fixture(scope="module")
def machine_graph():
    return cw.build_machine()


def test_every_extension_opcode_has_its_semantics_here():
    assert set(reference.EXTENSION_OPCODES) == set(SEMANTICS)


@pytest.mark.parametrize("opcode", reference.EXTENSION_OPCODES)
def test_reference_matches_python_semantics(opcode):
    rng = random.Random(opcode)
    pairs = operand_pairs(opcode, rng, 2000)
    instructions = program_of(opcode, pairs)
    machine = reference.execute(instructions)
    assert machine.status == "halt"
    expected = [SEMANTICS[opcode](a, b) for a, b in pairs]
    assert results_in_trace(instructions, machine.trace) == expected
    commit = reference.COMMIT[opcode]
    groups = [group for group in reference.split_groups(machine.trace)
              if group[-1] == commit and len(group) == GROUP_LENGTH[opcode]]
    assert len(groups) >= len(pairs)  # fixed-length groups
    if opcode == reference.MUL_HI:  # the low half is the low word of the product
        low_words = [sum(reference.byte_value(token) << (8 * k) for k, token in enumerate(group[:4]))
                     for group in groups if group[4] == reference.MUL_HI]
        assert low_words == [(a * b) & MASK for a, b in pairs]


@pytest.mark.parametrize("opcode", reference.EXTENSION_OPCODES)
def test_hull_transformer_on_boundary_and_random_operands(model, opcode):
    rng = random.Random("hull " + opcode)
    instructions = program_of(opcode, operand_pairs(opcode, rng, 20, full=False))
    expected = reference.run_reference(instructions)
    assert wasmtf.run_transformer(model, instructions) == expected


@pytest.mark.parametrize("opcode", reference.EXTENSION_OPCODES)
def test_evaluator_and_brute_cache(model, machine_graph, opcode):
    rng = random.Random("brute " + opcode)
    pairs = [(a, b) for a in SMALL_BOUNDARY[::2] for b in SMALL_BOUNDARY[::4]]
    pairs += [(rng.getrandbits(32), rng.getrandbits(32)) for _ in range(4)]
    instructions = program_of(opcode, pairs)
    expected = reference.run_reference(instructions)
    assert graph.evaluate(machine_graph, reference.program_tokens(instructions)) == expected
    assert wasmtf.run_transformer(model, instructions, cache="brute") == expected


SHIFTS = ["i32.shl", "i32.shr_u", "i32.shr_s", "i32.rotl", "i32.rotr"]
SHIFT_COUNTS = list(range(34)) + [63, 64, 255, 256, 257, INT_MIN, MASK]


def test_every_shift_count_through_the_hull_cache(model):
    """Shift counts 0..33 and large ones (the count is taken mod 32) on values with
    both sign bits and scattered bits, all five shifts in one program."""
    instructions = []
    for opcode in SHIFTS:
        pairs = [(a, s) for a in (0x80000001, 0x7F3C5A96, MASK) for s in SHIFT_COUNTS]
        instructions += program_of(opcode, pairs)[:-1]
    instructions.append(("halt", 0))
    expected = reference.run_reference(instructions)
    assert results_in_trace(instructions, expected) == [
        SEMANTICS[op](a, s) for op in SHIFTS for a in (0x80000001, 0x7F3C5A96, MASK) for s in SHIFT_COUNTS]
    assert wasmtf.run_transformer(model, instructions) == expected


def mixed_program(rng, n_operations):
    """Results feed later operations: a random walk over the extension opcodes and
    add/sub on a stack kept 2..6 deep, operands from boundary and random constants;
    prints the low byte of what is left."""
    operations = reference.EXTENSION_OPCODES + ["i32.add", "i32.sub"]
    instructions, depth = [], 0
    for _ in range(n_operations):
        while depth < 2 or (depth < 6 and rng.random() < 0.3):
            value = rng.choice(BOUNDARY) if rng.random() < 0.5 else rng.getrandbits(32)
            instructions.append(("i32.const", value))
            depth += 1
        opcode = rng.choice(operations)
        if opcode in DIVISIONS:  # a divisor that cannot trap (not 0, not -1 for div_s)
            instructions.append(("i32.const", rng.choice(DIVISORS[2:] + [rng.getrandbits(rng.randint(1, 32)) | 1])))
            depth += 1
        instructions.append((opcode, 0))
        depth -= 0 if opcode in UNARY else 1
    instructions += [("output", 0)] * depth + [("halt", 0)]
    return instructions


@pytest.mark.parametrize("seed", range(3))
def test_mixed_programs_hull_and_speculative(model, plan, seed):
    instructions = mixed_program(random.Random(seed), 150)
    expected = reference.run_reference(instructions)
    prompt = reference.program_tokens(instructions)
    assert wasmtf.run_transformer(model, instructions) == expected
    assert speculative.verify(model, prompt, expected, plan=plan) == (len(expected), None)
    _, trace = speculative.run_program(model, instructions, plan=plan)
    assert trace == expected


@pytest.mark.slow
@pytest.mark.parametrize("opcode", reference.EXTENSION_OPCODES)
def test_random_operand_sweep(model, opcode):
    rng = random.Random("sweep " + opcode)
    pairs = operand_pairs(opcode, rng, 2000)
    pairs += [(rng.getrandbits(rng.randint(1, 32)), rng.getrandbits(rng.randint(1, 32))) for _ in range(5000)]
    pairs = [(a, b) for a, b in pairs if not traps(opcode, a, b)]
    instructions = program_of(opcode, pairs)
    expected = reference.run_reference(instructions)
    assert results_in_trace(instructions, expected) == [SEMANTICS[opcode](a, b) for a, b in pairs]
    assert wasmtf.run_transformer(model, instructions) == expected


@pytest.mark.parametrize("opcode", DIVISIONS)
def test_division_traps(model, opcode):
    """b = 0 traps for all four (the trap token replaces the group, the run stops);
    div_s of INT_MIN by -1 traps; rem_s of INT_MIN by -1 is 0."""
    for a, b in [(5, 0), (0, 0), (INT_MIN, 0), (MASK, 0), (INT_MIN, MASK)]:
        instructions = [("i32.const", 7), ("i32.const", a), ("i32.const", b), (opcode, 0), ("output", 0),
                        ("halt", 0)]
        expected = reference.run_reference(instructions)
        if traps(opcode, a, b):
            assert expected[-1] == "trap" and len(expected) == 16
        else:
            assert expected[-2:] == [reference.out_token(SEMANTICS[opcode](a, b) & 0xFF), "halt"]
        assert wasmtf.run_transformer(model, instructions) == expected
    assert SEMANTICS["i32.rem_s"](INT_MIN, MASK) == 0 and SEMANTICS["i32.div_u"](INT_MIN, MASK) == 0


def test_division_marks_and_digits():
    """The group of SPEC 12.2: the magnitude quotient's bytes most significant first,
    then the result; div_s with opposite signs borrow-marks 0 - Q, rem_s with opposite
    signs marks every byte; nothing else is marked."""
    def group(opcode, a, b):
        trace = reference.run_reference([("i32.const", a), ("i32.const", b), (opcode, 0), ("halt", 0)])
        return trace[10:19]
    assert group("i32.div_u", 1000000, 3) == ["00", "05", "16", "15", "15", "16", "05", "00",
                                              "commit(-1,sts=1,bt=0)"]
    assert group("i32.div_s", (-7) & MASK, 2) == ["00", "00", "00", "03", "fd'", "ff'", "ff'", "ff'",
                                                  "commit(-1,sts=1,bt=0)"]
    assert group("i32.rem_s", 7, (-2) & MASK)[:8] == ["00'", "00'", "00'", "03'", "01'", "00'", "00'", "00'"]
    assert group("i32.div_s", 7, (-2) & MASK)[:4] == ["00", "00", "00", "03"]
    assert group("i32.rem_s", (-7) & MASK, (-2) & MASK)[:8] == ["00", "00", "00", "03", "ff", "ff", "ff", "ff"]
    assert group("i32.div_s", 8, 2) == ["00", "00", "00", "04", "04", "00", "00", "00", "commit(-1,sts=1,bt=0)"]


def spec_worked_examples():
    """The worked examples of SPEC 12 (the code blocks of 12.4 to 12.7), as
    (instructions, trace tokens) read from spec/SPEC.md."""
    text = (SPEC_DIR / "SPEC.md").read_text()
    section = text[text.index("## 12. The extended instruction set"):]
    examples = []
    for title in ("### 12.4 Worked example E", "### 12.5 Worked example F", "### 12.6 Worked example G",
                  "### 12.7 Worked example H"):
        block = re.search(r"```\n(.*?)```", section[section.index(title):], re.S).group(1)
        instructions, input_bytes, trace = reference.parse_trace_file(block)
        examples.append((instructions, trace))
    return examples


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_spec_worked_examples(model, machine_graph, index):
    instructions, trace = spec_worked_examples()[index]
    assert reference.run_reference(instructions) == trace
    assert wasmtf.run_transformer(model, instructions) == trace
    assert wasmtf.run_transformer(model, instructions, cache="brute") == trace
    assert graph.evaluate(machine_graph, reference.program_tokens(instructions)) == trace


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_spec_worked_examples_margins_and_softmax(model, index):
    """The numerical margins of tests/test_machine.py hold on the new gadgets too, and
    softmax attention (HARD_K) gives the same trace."""
    instructions, trace = spec_worked_examples()[index]
    prompt = reference.program_tokens(instructions)
    logit_margin, gap = safety_margins(model, prompt + trace, len(prompt))
    assert logit_margin >= MIN_LOGIT_MARGIN and gap >= MIN_SCORE_GAP
    assert wasmtf.run_transformer(model, instructions, cache="softmax") == trace
