"""The reference interpreter and program files: the contract's worked examples
token for token, hand-checked groups per opcode, traps, and malformed files."""
import random

import pytest

from conftest import EXAMPLES_DIR
import cli
import program_generator
import reference
from reference import MEMORY_SIZE, ProgramError

EXAMPLE_TRACES = sorted(EXAMPLES_DIR.rglob("*_ref.txt"))
MINUS_ONE, INT_MIN, INT_MAX = 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF
PUSH, BINARY, STORE = "commit(+1,sts=1,bt=0)", "commit(-1,sts=1,bt=0)", "commit(-2,sts=0,bt=0)"
LOAD = "commit(+0,sts=1,bt=0)"


def program_path(ref_path):
    return ref_path.with_name(ref_path.name[:-len("_ref.txt")] + ".txt")


def groups_of(*instructions, input_bytes=None):
    """The trace of a program, as a list of groups, each one space-joined string."""
    trace = reference.run_reference(list(instructions), input_bytes)
    return [" ".join(group) for group in reference.split_groups(trace)]


def const(value):
    return ("i32.const", value % reference.WORD_MODULUS)


HALT = ("halt", 0)


# ---------------------------------------------------------------------------
# The worked examples (spec/examples, random/, official_model_divergences/)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("ref_path", EXAMPLE_TRACES, ids=lambda p: p.stem)
def test_example_reproduced_exactly(ref_path):
    instructions, input_bytes = reference.read_program(program_path(ref_path))
    prompt = reference.program_tokens(instructions, input_bytes)
    trace = reference.run_reference(instructions, input_bytes)
    assert reference.format_trace_file(prompt, trace) == ref_path.read_text()


@pytest.mark.parametrize("ref_path", EXAMPLE_TRACES, ids=lambda p: p.stem)
def test_program_file_round_trip(ref_path):
    text = program_path(ref_path).read_text()
    instructions, input_bytes = reference.parse_program(text)
    written = reference.format_program(instructions, input_bytes)
    assert reference.parse_program(written) == (instructions, input_bytes or (b"" if
                                                 reference.has_input_section(instructions) else None))
    if input_bytes is not None or not reference.has_input_section(instructions):
        assert written == text   # d3 has no input section: wasmtf writes the empty one


def test_trace_file_reads_back():
    text = (EXAMPLES_DIR / "ex3_call_input_ref.txt").read_text()
    instructions, input_bytes, trace = reference.parse_trace_file(text)
    assert input_bytes == b"3"
    assert trace == reference.run_reference(instructions, input_bytes)


def test_trace_file_without_an_input_section_reads_back():
    """SPEC 2.1: transformer-vm writes no input section when a program gets no input
    (d3); its trace then follows `}` directly. A section, when there, is input bytes,
    `00`, `commit(+0,sts=0,bt=0)`; one with characters but no NUL is still an error."""
    path = EXAMPLES_DIR / "official_model_divergences" / "d3_empty_input_section_model.txt"
    instructions, input_bytes, trace = reference.parse_trace_file(path.read_text())
    assert instructions[0][0] == "input_base" and input_bytes is None
    assert trace == path.read_text().split()[len(instructions) * 5 + 2:]
    assert trace[0] == reference.INPUT_END          # transformer-vm's model: no NUL byte (d3)
    body = reference.format_program(instructions, None).split("}")[0] + "}"
    run, end = reference.run_reference(instructions, b"Wo"), reference.INPUT_END
    assert reference.parse_trace_file(body + " W o 00 " + " ".join([end] + run)) == (instructions, b"Wo", run)
    assert reference.parse_trace_file(body + " 00 " + " ".join([end] + run)) == (instructions, b"", run)
    with pytest.raises(reference.ProgramError, match="the input section must end with '00 commit"):
        reference.parse_trace_file(body + " W o " + " ".join([end] + run))


@pytest.mark.parametrize("name, output", [("ex0_three_plus_five", b"8"), ("ex1_arith", b"81Y\n"),
                                          ("ex2_loop_memory", b"321!\n"), ("ex3_call_input", b"123\n")])
def test_example_outputs(name, output):
    instructions, input_bytes = reference.read_program(EXAMPLES_DIR / (name + ".txt"))
    assert reference.output_bytes(reference.run_reference(instructions, input_bytes)) == output


# ---------------------------------------------------------------------------
# One opcode at a time (SPEC 4.1, 4.3)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, group", [
    (0, "00 00 00 00 " + PUSH), (1, "01 00 00 00 " + PUSH), (MINUS_ONE, "ff ff ff ff " + PUSH),
    (INT_MIN, "00 00 00 80 " + PUSH), (INT_MAX, "ff ff ff 7f " + PUSH), (0x12345678, "78 56 34 12 " + PUSH)])
def test_const(value, group):
    assert groups_of(const(value), HALT) == [group, "halt"]


@pytest.mark.parametrize("a, b, result", [
    (1, 2, "03 00 00 00"),                    # no carry
    (200, 100, "2c' 01 00 00"),               # carry out of byte 0 only (SPEC 4.5)
    (0xFFFF, 1, "00' 00' 01 00"),             # 255 + 0 + carry-in carries again
    (300, MINUS_ONE, "2b' 01' 00' 00'"),      # every byte carries (SPEC 4.5)
    (MINUS_ONE, 1, "00' 00' 00' 00'"),        # carry out of the top byte is marked too
    (INT_MAX, 1, "00' 00' 00' 80"),           # signed overflow: no carry out of byte 3
    (INT_MIN, INT_MIN, "00 00 00 00'"),       # only the top byte carries
    (0, 0, "00 00 00 00"),
])
def test_add_carry_marks(a, b, result):
    assert groups_of(const(a), const(b), ("i32.add", 0), HALT)[2] == result + " " + BINARY


@pytest.mark.parametrize("a, b, result", [
    (7, 5, "02 00 00 00"),                    # no borrow
    (5, 7, "fe' ff' ff' ff'"),                # borrows everywhere (SPEC 4.5)
    (0x100, 1, "ff' 00 00 00"),               # 1 - 0 - borrow-in = 0: no further borrow
    (0, 1, "ff' ff' ff' ff'"),
    (INT_MIN, 1, "ff' ff' ff' 7f"),
    (0x10000, 0x101, "ff' fe' 00 00"),
    (MINUS_ONE, MINUS_ONE, "00 00 00 00"),
])
def test_sub_borrow_marks(a, b, result):
    assert groups_of(const(a), const(b), ("i32.sub", 0), HALT)[2] == result + " " + BINARY


def test_add_and_sub_marks_match_the_bytewise_definition():
    """The marks are the carries/borrows of byte-by-byte arithmetic, for edge patterns."""
    edges = [0, 1, 0xFF, 0x100, 0xFFFF, INT_MAX, INT_MIN, MINUS_ONE, 0x80808080, 0x7F7F7F7F]
    for a in edges:
        for b in edges:
            for opcode, sign in (("i32.add", 1), ("i32.sub", -1)):
                carry, expected = 0, []
                for k in range(4):
                    total = (a >> 8 * k & 255) + sign * ((b >> 8 * k & 255) + (carry if sign < 0 else 0)) \
                        + (carry if sign > 0 else 0)
                    carry = int(not 0 <= total <= 255)
                    expected.append("%02x" % (total % 256) + "'" * carry)
                assert groups_of(const(a), const(b), (opcode, 0), HALT)[2] == " ".join(expected) + " " + BINARY


COMPARISON_CASES = [  # (opcode, a, b, result)
    ("i32.eq", 5, 5, 1), ("i32.eq", 5, 6, 0), ("i32.ne", 5, 6, 1), ("i32.ne", MINUS_ONE, MINUS_ONE, 0),
    ("i32.lt_s", MINUS_ONE, 1, 1), ("i32.lt_u", MINUS_ONE, 1, 0), ("i32.lt_s", 3, 3, 0),
    ("i32.gt_s", MINUS_ONE, 1, 0), ("i32.gt_u", MINUS_ONE, 1, 1), ("i32.gt_s", INT_MAX, INT_MIN, 1),
    ("i32.le_s", INT_MIN, INT_MAX, 1), ("i32.le_u", INT_MIN, INT_MAX, 0), ("i32.le_s", 3, 3, 1),
    ("i32.ge_s", 3, 3, 1), ("i32.ge_u", 0, MINUS_ONE, 0), ("i32.ge_s", 0, MINUS_ONE, 1),
]


@pytest.mark.parametrize("opcode, a, b, result", COMPARISON_CASES)
def test_comparisons(opcode, a, b, result):
    assert groups_of(const(a), const(b), (opcode, 0), HALT)[2] == "%02x 00 00 00 %s" % (result, BINARY)


@pytest.mark.parametrize("value, result", [(0, "01"), (1, "00"), (INT_MIN, "00")])
def test_eqz(value, result):
    assert groups_of(const(value), ("i32.eqz", 0), HALT)[1] == result + " 00 00 00 commit(+0,sts=1,bt=0)"


@pytest.mark.parametrize("condition, result", [(1, "61"), (MINUS_ONE, "61"), (0, "62")])
def test_select(condition, result):
    groups = groups_of(const(0x61), const(0x62), const(condition), ("select", 0), HALT)
    assert groups[3] == result + " 00 00 00 commit(-2,sts=1,bt=0)"


def test_drop_and_output_pop():
    groups = groups_of(const(0x41), const(0x42), ("drop", 0), ("output", 0), HALT)
    assert groups[2:] == ["commit(-1,sts=0,bt=0)", "out(A)", "halt"]
    machine = reference.execute([const(0x41), ("output", 0), HALT])
    assert machine.stack == [] and machine.output == b"A"


def test_locals_set_tee_get_and_index_255():
    groups = groups_of(const(7), ("local.set", 255), ("local.get", 255), ("local.tee", 3),
                       ("local.get", 3), ("local.get", 4), HALT)
    assert groups[1:6] == ["07 00 00 00 commit(-1,sts=0,bt=0)", "07 00 00 00 " + PUSH,
                          "07 00 00 00 commit(+0,sts=0,bt=0)", "07 00 00 00 " + PUSH,
                          "00 00 00 00 " + PUSH]  # never-written local 4 reads 0
    groups_65 = groups_of(const(9), ("local.set", 64), ("local.get", 0), HALT)
    assert groups_65[2] == "00 00 00 00 " + PUSH  # local 64 is its own slot (SPEC 4.8 d5)


def test_store_and_load_widths_little_endian():
    machine = reference.execute([const(100), const(0x12345678), ("i32.store", 0),
                                 const(200), const(0xABCD1234), ("i32.store16", 0),
                                 const(300), const(0x1FF), ("i32.store8", 5), HALT])
    assert machine.memory[100:104] == bytes([0x78, 0x56, 0x34, 0x12])
    assert machine.memory[200:204] == bytes([0x34, 0x12, 0, 0])
    assert machine.memory[305] == 0xFF and machine.memory[304] == 0 and machine.memory[306] == 0
    groups = [" ".join(g) for g in reference.split_groups(machine.trace)]
    assert [groups[2], groups[5], groups[8]] == ["78 56 34 12 " + STORE, "34 12 " + STORE, "ff " + STORE]


@pytest.mark.parametrize("opcode, stored, group", [
    ("i32.load", 0x80FF7F80, "80 7f ff 80 " + LOAD),
    ("i32.load8_u", 0x80, "80 00 00 00 " + LOAD),
    ("i32.load8_s", 0x80, "80' ff' ff' ff' " + LOAD),   # negative: all four bytes marked
    ("i32.load8_s", 0x7F, "7f 00 00 00 " + LOAD),
    ("i32.load16_u", 0x8000, "00 80 00 00 " + LOAD),
    ("i32.load16_s", 0x8000, "00 80' ff' ff' " + LOAD),  # negative: bytes 1..3 marked
    ("i32.load16_s", 0xFF80, "80 ff' ff' ff' " + LOAD),  # SPEC 4.6
    ("i32.load16_s", 0x7FFF, "ff 7f 00 00 " + LOAD),
])
def test_loads_and_sign_marks(opcode, stored, group):
    groups = groups_of(const(64), const(stored), ("i32.store", 0), const(60), (opcode, 4), HALT)
    assert groups[4] == group


WIDTHS = [("i32.load", 4), ("i32.load8_u", 1), ("i32.load8_s", 1), ("i32.load16_u", 2), ("i32.load16_s", 2),
          ("i32.store", 4), ("i32.store8", 1), ("i32.store16", 2)]


def access(opcode, address, offset):
    """The instructions of one access of `opcode` at address + offset."""
    value = [const(0x11223344)] if "store" in opcode else []
    return [const(address)] + value + [(opcode, offset), HALT]


@pytest.mark.parametrize("opcode, width", WIDTHS)
def test_memory_bounds_at_2_24(opcode, width):
    last_fitting = MEMORY_SIZE - width
    assert groups_of(*access(opcode, last_fitting, 0))[-1] == "halt"
    assert groups_of(*access(opcode, last_fitting - 10, 10))[-1] == "halt"
    assert groups_of(*access(opcode, last_fitting + 1, 0))[-1] == "trap"
    assert groups_of(*access(opcode, last_fitting, 1))[-1] == "trap"
    assert groups_of(*access(opcode, MINUS_ONE, 1))[-1] == "trap"   # address + offset does not wrap to 0
    assert groups_of(*access(opcode, 0, MINUS_ONE))[-1] == "trap"


def test_trap_instruction_and_out_of_bounds_trace():
    assert groups_of(const(1), ("trap", 0), HALT) == ["01 00 00 00 " + PUSH, "trap"]
    machine = reference.execute(access("i32.load", MEMORY_SIZE, 0))
    assert machine.status == "trap" and machine.trace[-1] == "trap" and machine.pc == 1


def test_branches_taken_and_not_taken():
    groups = groups_of(("br", 1), const(9), const(0), ("br_if", 1), const(1), const(1), ("br_if", 0), HALT)
    assert groups == ["branch_taken 01 00 00 00 commit(+0,sts=0,bt=1)",
                      "00 00 00 00 " + PUSH, "commit(-1,sts=0,bt=0)",
                      "01 00 00 00 " + PUSH, "01 00 00 00 " + PUSH,
                      "branch_taken 00 00 00 00 commit(-1,sts=0,bt=1)", "halt"]


def test_backward_branch_loop():
    counting = [const(3), ("local.set", 0),
                ("local.get", 0), ("output", 0),                                        # 2: loop head
                ("local.get", 0), const(1), ("i32.sub", 0), ("local.tee", 0),
                ("br_if", (-7) % reference.WORD_MODULUS), HALT]
    trace = reference.run_reference(counting)
    assert reference.output_bytes(trace) == bytes([3, 2, 1])
    assert trace.count("commit(-1,sts=0,bt=1)") == 2 and trace[-2:] == ["commit(-1,sts=0,bt=0)", "halt"]


def test_call_return_zeroed_locals_and_restored_caller_locals():
    program = [const(5), ("local.set", 1),        # 0, 1: main's local 1 = 5
               ("call", 3),                        # 2: call 6
               ("local.get", 1), ("output", 0),    # 3, 4: main's local 1 is back
               HALT,                               # 5
               ("local.get", 1), ("output", 0),    # 6, 7: the callee's local 1 is 0
               const(8), ("local.set", 1),         # 8, 9
               ("return", (6 - 10 - 1) % reference.WORD_MODULUS)]   # 10
    groups = groups_of(*program)
    assert groups[2] == "branch_taken 03 00 00 00 call_commit"
    assert groups[3:5] == ["00 00 00 00 " + PUSH, "out(00)"]
    # J = return_pc - R - 1 = 3 - 10 - 1 = -8 = f5 - 03 byte by byte: no borrow in byte 0, none after
    assert groups[7] == "branch_taken f8 ff ff ff return_commit"
    assert groups[8:] == ["05 00 00 00 " + PUSH, "out(05)", "halt"]


def test_nested_calls_and_recursion():
    """countdown(n): if n: countdown(n - 1); print n. Called from main with 3, via a wrapper."""
    w = reference.WORD_MODULUS
    program = [const(3), ("call", 2), HALT,                               # 0..2: main, calls 4
               HALT,                                                     # 3: never runs
               ("call", 1), ("return", (4 - 5 - 1) % w),                # 4, 5: wrapper(n) = countdown(n)
               ("local.set", 0), ("local.get", 0), ("i32.eqz", 0), ("br_if", 6),          # 6..9
               ("local.get", 0), const(1), ("i32.sub", 0), ("call", (6 - 13 - 1) % w),   # 10..13
               ("local.get", 0), ("output", 0),                         # 14, 15
               ("return", (6 - 16 - 1) % w)]                            # 16
    machine = reference.execute(program)
    assert machine.status == "halt" and machine.output == bytes([1, 2, 3]) and machine.stack == []
    returns = [" ".join(g) for g in reference.split_groups(machine.trace) if g[-1] == "return_commit"]
    # recursive returns: imm_return - imm_call = (6-16-1) - (6-13-1) = f5 - f8 = -3, borrows in every byte
    assert returns[:3] == ["branch_taken fd' ff' ff' ff' return_commit"] * 3
    # countdown(3) back to the wrapper: f5 - 01 = f4 (= 5-16-1), no borrows; wrapper to main: fe - 02 = fc
    assert returns[3:] == ["branch_taken f4 ff ff ff return_commit", "branch_taken fc ff ff ff return_commit"]


def test_input_base_places_input_and_nul():
    program = [("input_base", 0x100), const(0x100), ("i32.load", 0), HALT]
    groups = groups_of(*program, input_bytes=b"Hi{")
    assert groups[1] == "48 69 7b 00 " + LOAD
    assert reference.program_tokens(program, b"Hi{")[-5:] == ["H", "i", "7b", "00", "commit(+0,sts=0,bt=0)"]
    assert reference.program_tokens(program)[-2:] == ["00", "commit(+0,sts=0,bt=0)"]  # empty input (d3)
    assert groups_of(*program)[1] == "00 00 00 00 " + LOAD


def test_running_past_the_end_stops_without_stop_token():
    machine = reference.execute([const(1), ("drop", 0)])
    assert machine.status == "end" and machine.trace[-1] == "commit(-1,sts=0,bt=0)"


def test_step_limit_reports_the_state():
    with pytest.raises(reference.StepLimitExceeded) as caught:
        reference.run_reference([("br", reference.WORD_MODULUS - 1)], max_steps=1000)
    assert caught.value.machine.steps == 1000 and "pc 0" in str(caught.value)


def test_stack_underflow_is_an_execution_error():
    with pytest.raises(reference.ExecutionError, match="stack underflow.*pc 1"):
        reference.run_reference([const(1), ("i32.add", 0), HALT])


def test_run_time_return_check(monkeypatch):
    monkeypatch.setattr(reference, "_return_problems", lambda instructions: [])
    with pytest.raises(ProgramError, match="return immediate is 0, expected F-R-1 = -1"):
        reference.run_reference([("call", 1), HALT, ("return", 0)])
    with pytest.raises(ProgramError, match="return in the main function"):
        reference.run_reference([("return", 0)])


# ---------------------------------------------------------------------------
# Malformed program files: each rejected with a message naming what and where
# ---------------------------------------------------------------------------
H = "halt 00 00 00 00"
MALFORMED = [
    ("empty", "", "empty program file"),
    ("no opening brace", "halt 00 00 00 00 }", "token 0: the file must start with '{'"),
    ("no closing brace", "{ " + H, "missing '}'"),
    ("body not a multiple of 5", "{ halt 00 00 00 }", "the 4 tokens between '{' and '}' are not a multiple of 5"),
    ("unknown token", "{\ni32.cosnt 00 00 00 00\n" + H + "\n}", "instruction 0 (token 1): unknown opcode 'i32.cosnt'"),
    ("upper-case hex", "{ i32.const 0A 00 00 00 " + H + " }", "token 2: immediate byte '0A'"),
    ("marked byte", "{ i32.const 0a' 00 00 00 " + H + " }", "immediate byte \"0a'\" of instruction 0"),
    ("alias as byte", "{ i32.const A 00 00 00 " + H + " }", "immediate byte 'A' of instruction 0 is not two"),
    ("three hex digits", "{ i32.const 000 00 00 " + H + " }", "immediate byte '000'"),
    ("global.get", "{ global.get 00 00 00 00 " + H + " }", "global.get is not allowed"),
    ("global.set", "{ i32.const 00 00 00 00 global.set 00 00 00 00 " + H + " }", "instruction 1 (token 6): global.set"),
    ("late input_base", "{ " + H + " input_base 00 00 00 00 }", "input_base may only be instruction 0"),
    ("no instructions", "{ }", "the program has no instructions"),
    ("local 256", "{ local.get 00 01 00 00 " + H + " }", "local.get 256, but a frame has locals 0..255"),
    ("branch outside", "{ br 05 00 00 00 " + H + " }", "br target 6 is outside the program"),
    ("call before start", "{ call fd ff ff ff " + H + " }", "call target -2 is outside the program"),
    ("jump to input_base", "{ input_base 00 00 00 00 br fe ff ff ff }", "br jumps to input_base"),
    ("wrong return immediate", "{ call 01 00 00 00 " + H + " return 00 00 00 00 }",
     "instruction 2 (token 11): return immediate is 0, expected F-R-1 = 2-2-1 = -1"),
    ("return in main", "{ return ff ff ff ff }", "return is reachable from the main function"),
    ("return shared by two functions",
     "{ call 02 00 00 00 call 02 00 00 00 " + H + " i32.const 00 00 00 00 drop 00 00 00 00 return fc ff ff ff }",
     "return is reachable from the functions at 3 and 4"),
    ("input without input_base", "{ " + H + " } A 00 commit(+0,sts=0,bt=0)", "only an input_base program"),
    ("input not terminated", "{ input_base 00 00 00 00 " + H + " } A B", "must end with '00 commit(+0,sts=0,bt=0)'"),
    ("bad input token", "{ input_base 00 00 00 00 " + H + " } A Bx 00 commit(+0,sts=0,bt=0)",
     "token 13: 'Bx' is not an input byte"),
    ("input past memory", "{ input_base ff ff ff 00 " + H + " } A 00 commit(+0,sts=0,bt=0)", "does not fit"),
]


@pytest.mark.parametrize("text, message", [(text, message) for _, text, message in MALFORMED],
                         ids=[name for name, _, _ in MALFORMED])
def test_malformed_program_rejected(text, message):
    with pytest.raises(ProgramError) as caught:
        reference.parse_program(text)
    assert message in str(caught.value)


def test_all_problems_reported_at_once():
    with pytest.raises(ProgramError) as caught:
        reference.parse_program("{ i32.cosnt 00 00 00 00 i32.const 0G 00 00 00 global.get 00 00 00 00 }")
    assert str(caught.value).count(";") == 2


@pytest.mark.parametrize("instructions, message", [
    ([("i32.const", -1), HALT], "immediate -1 is not an unsigned 32-bit integer"),
    ([("i64.add", 0), HALT], "unknown opcode 'i64.add'"),
    ([("halt",)], "is not an (opcode, immediate) pair"),
    ([("br", 0xFFFFFFFD), ("return", 0xFFFFFFFF)], "br target -2 is outside the program"),
])
def test_bad_python_programs_rejected(instructions, message):
    with pytest.raises(ProgramError) as caught:
        reference.program_tokens(instructions)
    assert message in str(caught.value)


def test_input_for_a_program_without_input_base_rejected():
    with pytest.raises(ProgramError, match="instruction 0 is not input_base"):
        reference.run_reference([HALT], b"x")
    with pytest.raises(ProgramError, match="the input must be bytes, not str"):
        reference.run_reference([("input_base", 0), HALT], "x")


# ---------------------------------------------------------------------------
# Trace tools
# ---------------------------------------------------------------------------

def ex3():
    instructions, input_bytes = reference.read_program(EXAMPLES_DIR / "ex3_call_input.txt")
    return instructions, input_bytes, reference.run_reference(instructions, input_bytes)


def test_split_groups_and_walk():
    instructions, _, trace = ex3()
    groups = reference.split_groups(trace)
    assert sum(len(g) for g in groups) == len(trace)
    assert all(reference.is_group_end(g[-1]) for g in groups)
    records = list(reference.walk_trace(instructions, trace))
    assert [r["pc"] for r in records[:4]] == [1, 2, 3, 8]      # call D at 3 jumps to 8
    assert records[-1]["opcode"] == "halt" and records[-1]["output"] == b"123\n"
    assert records[-1]["stack_depth"] == 0 and records[-1]["call_depth"] == 0


def test_describe_trace_one_line_per_group():
    instructions, _, trace = ex3()
    text = reference.describe_trace(instructions, trace)
    lines = text.splitlines()
    assert len(lines) == 1 + len(reference.split_groups(trace))
    assert "call 4" in lines[3] and "-> pc 8" in lines[3]
    assert "b'123\\n'" in lines[-1]


def test_diff_traces():
    instructions, _, trace = ex3()
    assert reference.diff_traces(trace, list(trace)) is None
    wrong = list(trace)
    wrong[5] = "34"     # the byte i32.load8_u read: '3' (0x33) in the input
    report = reference.diff_traces(trace, wrong, instructions)
    assert report.startswith("traces diverge at token 5 (group 1): expected '33', got '34'")
    assert "i32.load8_u" in report
    assert report.count("00 01 00 00 commit(+1,sts=1,bt=0)") == 1   # one group of common context
    short = reference.diff_traces(trace, trace[:-1])
    assert "got the end of the trace" in short


# ---------------------------------------------------------------------------
# The `reference` command
# ---------------------------------------------------------------------------

def test_command_prints_the_reference_file(capsys):
    assert cli.main(["reference", str(EXAMPLES_DIR / "ex3_call_input.txt")]) == 0
    assert capsys.readouterr().out == (EXAMPLES_DIR / "ex3_call_input_ref.txt").read_text()


def test_command_input_replaces_the_section(capsys):
    assert cli.main(["reference", str(EXAMPLES_DIR / "ex3_call_input.txt"), "--input", "5"]) == 0
    out = capsys.readouterr().out
    assert "\n5 00 commit(+0,sts=0,bt=0)\n" in out
    assert reference.output_bytes(out.split()) == b"12345\n"


def test_command_bad_file_and_trap(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("{ i32.cosnt 00 00 00 00 }")
    assert cli.main(["reference", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown opcode 'i32.cosnt'" in err
    assert cli.main(["reference", str(tmp_path / "missing.txt")]) == 2
    trapping = tmp_path / "trap.txt"
    trapping.write_text(reference.format_program([("trap", 0)]))
    assert cli.main(["reference", str(trapping)]) == 1
    captured = capsys.readouterr()
    assert captured.out.split()[-1] == "trap" and "trapped at instruction 0" in captured.err
    runaway = tmp_path / "loop.txt"
    runaway.write_text(reference.format_program([("br", 0xFFFFFFFF)]))
    assert cli.main(["reference", str(runaway)]) == 1


# ---------------------------------------------------------------------------
# Random programs (tests/program_generator.py)
# ---------------------------------------------------------------------------
RANDOM_PROGRAMS = 200


def test_generated_programs_run_and_agree_with_the_trace_tools():
    rng = random.Random(2026)
    executed, statuses = set(), set()
    for _ in range(RANDOM_PROGRAMS):
        instructions, input_bytes = program_generator.random_program(rng)
        assert reference.parse_program(reference.format_program(instructions, input_bytes))[0] == instructions
        machine = reference.execute(instructions, input_bytes, max_steps=100_000)
        assert machine.status in ("halt", "trap") and machine.trace[-1] == machine.status
        records = list(reference.walk_trace(instructions, machine.trace))
        assert records[-1]["pc"] == machine.pc                       # the tokens alone give the pc ...
        assert records[-1]["output"] == machine.output == reference.output_bytes(machine.trace)
        if machine.status == "halt":                                  # ... and the stack depth
            assert records[-1]["stack_depth"] == len(machine.stack) == 0
        executed.update(record["opcode"] for record in records)
        statuses.add(machine.status)
    # the generator writes base-ISA programs (the extension is tested in tests/test_alu.py)
    assert executed == set(reference.OPCODES) - {"global.get", "global.set", "input_base"} - set(
        reference.EXTENSION_OPCODES)
    assert statuses == {"halt", "trap"}


def test_generator_size_knob():
    rng = random.Random(7)
    small = [len(program_generator.random_program(rng, n_instructions=10)[0]) for _ in range(20)]
    large = [len(program_generator.random_program(rng, n_instructions=400)[0]) for _ in range(20)]
    assert max(small) < min(large) and min(large) >= 400


def oracle_trace(instructions, input_bytes):
    """An independent re-derivation of the trace, written differently from reference.py:
    a dict memory, struct for bytes, carries and borrows from the xor identity
    carry_into_bit_j(a + b) = bit j of (a ^ b ^ (a + b)) (the same for a - b)."""
    import struct
    mask, stop = 0xFFFFFFFF, None
    memory = {}
    if instructions[0][0] == "input_base":
        for k, byte in enumerate((input_bytes or b"") + b"\0"):
            memory[instructions[0][1] + k] = byte
    stack, local, calls, trace, pc = [], {}, [], [], 0

    def word(value, marks=0):   # marks: bit k set = byte k marked
        return ["%02x" % b + "'" * (marks >> k & 1) for k, b in enumerate(struct.pack("<I", value & mask))]

    def carry_marks(a, b, result):
        flips = a ^ b ^ result
        return sum(1 << k for k in range(4) if flips >> (8 * k + 8) & 1)

    def commit(op, taken=0):
        sd, sts = reference.STACK_DELTA[op], reference.STORES_TO_STACK[op]
        return "commit(%+d,sts=%d,bt=%d)" % (sd, sts, taken)

    while stop is None and pc < len(instructions):
        op, imm = instructions[pc]
        jump = pc + 1 + struct.unpack("<i", struct.pack("<I", imm))[0]
        next_pc = pc + 1
        if op == "i32.const":
            stack.append(imm)
            trace += word(imm) + [commit(op)]
        elif op in ("i32.add", "i32.sub"):
            b, a = stack.pop(), stack.pop()
            result = a + b if op == "i32.add" else a - b
            stack.append(result & mask)
            trace += word(result, carry_marks(a, b, result)) + [commit(op)]
        elif op in ("local.get", "local.set", "local.tee"):
            if op == "local.get":
                stack.append(local.get(imm, 0))
            else:
                local[imm] = stack[-1] if op == "local.tee" else stack.pop()
            trace += word(local.get(imm, 0)) + [commit(op)]
        elif op == "drop":
            stack.pop()
            trace.append(commit(op))
        elif op == "select":
            c, b, a = stack.pop(), stack.pop(), stack.pop()
            stack.append(a if c else b)
            trace += word(stack[-1]) + [commit(op)]
        elif op == "i32.eqz" or op in reference.COMPARISONS:
            b = stack.pop()
            if op == "i32.eqz":
                result = b == 0
            else:
                a = stack.pop()
                sa, sb = (struct.unpack("<i", struct.pack("<I", v))[0] for v in (a, b))
                left, right = (sa, sb) if op.endswith("_s") else (a, b)
                result = {"eq": left == right, "ne": left != right, "lt": left < right, "gt": left > right,
                          "le": left <= right, "ge": left >= right}[op[4:6]]
            stack.append(int(result))
            trace += word(int(result)) + [commit(op)]
        elif "load" in op or "store" in op:
            bits = "".join(c for c in op[len("i32."):] if c.isdigit())   # "", "8" or "16"
            width = int(bits) // 8 if bits else 4
            value = stack.pop() if "store" in op else None
            start = stack.pop() + imm
            if start + width > 1 << 24:
                trace.append("trap")
                stop = "trap"
                continue
            if value is not None:
                for k in range(width):
                    memory[start + k] = value >> 8 * k & 255
                trace += word(value)[:width] + [commit(op)]
            else:
                loaded = sum(memory.get(start + k, 0) << 8 * k for k in range(width))
                negative = op.endswith("_s") and loaded >> (8 * width - 1)
                marks = (0b1111 if width == 1 else 0b1110) if negative else 0
                loaded = loaded - (1 << 8 * width) if negative else loaded
                stack.append(loaded & mask)
                trace += word(loaded, marks) + [commit(op)]
        elif op == "br" or (op == "br_if" and stack.pop()):
            trace += ["branch_taken"] + word(imm) + [commit(op, taken=1)]
            next_pc = jump
        elif op == "br_if":
            trace.append(commit(op))
        elif op == "call":
            calls.append((pc + 1, local, imm))
            local = {}
            trace += ["branch_taken"] + word(imm) + ["call_commit"]
            next_pc = jump
        elif op == "return":
            next_pc, local, call_imm = calls.pop()
            difference = imm - call_imm
            trace += ["branch_taken"] + word(difference, carry_marks(imm, call_imm, difference)) + ["return_commit"]
        elif op == "output":
            trace.append(reference.out_token(stack.pop() & 255))
        elif op in ("halt", "trap"):
            trace.append(op)
            stop = op
        pc = next_pc
    return trace


def test_generated_programs_match_an_independent_oracle():
    rng = random.Random(99)
    for _ in range(RANDOM_PROGRAMS):
        instructions, input_bytes = program_generator.random_program(rng)
        expected = oracle_trace(instructions, input_bytes)
        assert reference.diff_traces(expected, reference.run_reference(instructions, input_bytes),
                                     instructions) is None


@pytest.mark.parametrize("ref_path", EXAMPLE_TRACES, ids=lambda p: p.stem)
def test_oracle_reproduces_examples(ref_path):
    instructions, input_bytes, trace = reference.parse_trace_file(ref_path.read_text())
    assert oracle_trace(instructions, input_bytes) == trace


@pytest.mark.slow
def test_many_large_generated_programs():
    rng = random.Random(11)
    for _ in range(200):
        instructions, input_bytes = program_generator.random_program(rng, n_instructions=1000)
        assert reference.execute(instructions, input_bytes, max_steps=10_000_000).status in ("halt", "trap")


# ---------------------------------------------------------------------------
# Call depth (issue 16): a frame costs little, and a runaway recursion stops in one line
# ---------------------------------------------------------------------------

def test_unbounded_recursion_exhausts_the_call_stack_in_one_line(capsys):
    """ex3 with an empty input recurses forever: the reference stops at the call that
    would exceed MAX_CALL_DEPTH, after holding every frame in little memory."""
    import tracemalloc
    instructions, _ = reference.read_program(EXAMPLES_DIR / "ex3_call_input.txt")
    tracemalloc.start()
    try:
        with pytest.raises(reference.CallStackExhausted, match=r"^call stack exhausted: instruction 20 "
                           r"\(token 101\) would be call 16384 in progress \(the limit is 16383\): .*call depth 16383"):
            reference.execute(instructions, b"")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - MEMORY_SIZE < 1024 * reference.MAX_CALL_DEPTH   # < 1 KB per frame, its trace included
    assert cli.main(["reference", str(EXAMPLES_DIR / "ex3_call_input.txt"), "--input", ""]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("wasmtf: call stack exhausted: instruction 20")


def test_the_deepest_allowed_call_runs(monkeypatch):
    """A recursion exactly MAX_CALL_DEPTH deep halts; one call deeper is exhausted. Locals
    are per frame (zero in a new frame) and come back on return."""
    count_down = [  # main: f(depth); f(n): local 0 = n; if n != 0: f(n - 1); return
        const(0), ("call", 1), HALT,                # the argument is patched below
        ("local.set", 0), ("local.get", 0), ("i32.eqz", 0), ("br_if", 4),
        ("local.get", 0), const(1), ("i32.sub", 0), ("call", (3 - 10 - 1) % reference.WORD_MODULUS),
        ("local.get", 1), ("drop", 0), ("return", (3 - 13 - 1) % reference.WORD_MODULUS)]
    monkeypatch.setattr(reference, "MAX_CALL_DEPTH", 40)
    for depth in (39, 40):   # f(n) is n + 1 calls deep
        program = [const(depth - 1)] + count_down[1:]
        machine = reference.execute(program)
        assert machine.status == "halt" and machine.trace.count("call_commit") == depth
    with pytest.raises(reference.CallStackExhausted, match="would be call 41 in progress"):
        reference.execute([const(40)] + count_down[1:])


def test_advance_in_pieces_is_execute():
    """reference.advance resumes where it stopped: running a program a few steps at a time
    (as speculative drafting does) gives execute's trace, status and state."""
    for seed in range(20):
        rng = random.Random(seed)
        instructions, input_bytes = program_generator.random_program(rng, n_instructions=60)
        try:
            whole = reference.execute(instructions, input_bytes, max_steps=100_000)
        except (reference.ExecutionError, reference.StepLimitExceeded):
            continue
        machine, trace = reference.start(instructions, input_bytes), []
        while machine.status == "running":
            reference.advance(machine, machine.steps + rng.randint(1, 9))
            trace += machine.trace
            machine.trace = []
        assert (trace, machine.status, machine.steps, machine.stack, machine.output) == (
            whole.trace, whole.status, whole.steps, whole.stack, whole.output)
        assert reference.advance(machine, machine.steps + 5).trace == []   # a stopped machine stays stopped
