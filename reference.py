"""The trace language of the computer inside a transformer, and its reference interpreter.

This module is the executable definition of ../shared/spec/SPEC.md sections 1-4:
the token vocabulary, the flat instruction set, the program file, and the
trace that executing a program writes, one token group per instruction.

Contents, top to bottom:
  1. the instruction set (SPEC 3.1, plus wasmtf's `trap`, SPEC 4.8)
  2. the token vocabulary (SPEC 1) and the spelling of each token family
"""

# ---------------------------------------------------------------------------
# 1. The instruction set
# ---------------------------------------------------------------------------

# (name, WebAssembly opcode byte, stack delta SD, store-to-stack STS, write W)
# in the order of SPEC table 3.1; `trap` is wasmtf's extension (SPEC 4.8):
# it emits the `trap` token and stops.
OPCODE_TABLE = [
    ("halt", 0x00, +0, 0, 0),
    ("return", 0x0F, +0, 0, 0),
    ("call", 0x10, +0, 0, 0),
    ("br", 0x0C, +0, 0, 0),
    ("br_if", 0x0D, -1, 0, 0),
    ("drop", 0x1A, -1, 0, 0),
    ("select", 0x1B, -2, 1, 0),
    ("local.get", 0x20, +1, 1, 0),
    ("local.set", 0x21, -1, 0, 1),
    ("local.tee", 0x22, +0, 0, 1),
    ("global.get", 0x23, +1, 1, 0),
    ("global.set", 0x24, -1, 0, 0),
    ("i32.load", 0x28, +0, 1, 0),
    ("i32.load8_s", 0x2C, +0, 1, 0),
    ("i32.load8_u", 0x2D, +0, 1, 0),
    ("i32.load16_s", 0x2E, +0, 1, 0),
    ("i32.load16_u", 0x2F, +0, 1, 0),
    ("i32.store", 0x36, -2, 0, 1),
    ("i32.store8", 0x3A, -2, 0, 1),
    ("i32.store16", 0x3B, -2, 0, 1),
    ("i32.const", 0x41, +1, 1, 0),
    ("i32.eqz", 0x45, +0, 1, 0),
    ("i32.eq", 0x46, -1, 1, 0),
    ("i32.ne", 0x47, -1, 1, 0),
    ("i32.lt_s", 0x48, -1, 1, 0),
    ("i32.lt_u", 0x49, -1, 1, 0),
    ("i32.gt_s", 0x4A, -1, 1, 0),
    ("i32.gt_u", 0x4B, -1, 1, 0),
    ("i32.le_s", 0x4C, -1, 1, 0),
    ("i32.le_u", 0x4D, -1, 1, 0),
    ("i32.ge_s", 0x4E, -1, 1, 0),
    ("i32.ge_u", 0x4F, -1, 1, 0),
    ("i32.add", 0x6A, -1, 1, 0),
    ("i32.sub", 0x6B, -1, 1, 0),
    ("output", 0xFF, -1, 0, 0),
    ("input_base", 0xFE, +0, 0, 0),
    ("trap", 0x00, +0, 0, 0),  # wasmtf extension; no WebAssembly code of its own
]
OPCODES = [row[0] for row in OPCODE_TABLE]
STACK_DELTA = {row[0]: row[2] for row in OPCODE_TABLE}
STORES_TO_STACK = {row[0]: row[3] for row in OPCODE_TABLE}
IS_WRITE = {row[0]: row[4] for row in OPCODE_TABLE}

# ---------------------------------------------------------------------------
# 2. The token vocabulary
# ---------------------------------------------------------------------------

# The seven (SD, STS) pairs that exist as commit tokens (SPEC 1.1), each with bt = 0 and 1.
COMMIT_KINDS = [(+1, 1), (+0, 1), (-1, 1), (-2, 1), (+0, 0), (-1, 0), (-2, 0)]
# Characters that are spelled as themselves in an input section and in out(...):
# printable ASCII without space (0x20 < b < 0x7F).
FIRST_PRINTABLE, LAST_PRINTABLE = 0x21, 0x7E


def byte_token(value, marked=False):
    """`00` ... `ff`; with the carry/borrow/sign mark (SPEC 4.3): `00'` ... `ff'`."""
    return "%02x'" % value if marked else "%02x" % value


def out_token(value):
    """The token that prints byte `value`: `out(A)` for printable ASCII, else `out(0a)`."""
    if FIRST_PRINTABLE <= value <= LAST_PRINTABLE:
        return "out(%s)" % chr(value)
    return "out(%02x)" % value


def commit_token(stack_delta, store_to_stack, branch_taken):
    """`commit(SD,sts=S,bt=B)` with SD written with its sign: `+1`, `+0`, `-1`, `-2`."""
    return "commit(%+d,sts=%d,bt=%d)" % (stack_delta, store_to_stack, branch_taken)


def input_token(value):
    """How an input byte is written in a prompt (SPEC 2.1): its character when
    0x20 < b < 0x7F and b is not a brace, else two hex digits."""
    if FIRST_PRINTABLE <= value <= LAST_PRINTABLE and chr(value) not in "{}":
        return chr(value)
    return byte_token(value)


def _build_vocabulary():
    tokens = set()
    for value in range(256):
        tokens.add(byte_token(value))
        tokens.add(byte_token(value, marked=True))
        tokens.add(out_token(value))
    for stack_delta, store_to_stack in COMMIT_KINDS:
        for branch_taken in (0, 1):
            tokens.add(commit_token(stack_delta, store_to_stack, branch_taken))
    tokens.update(["branch_taken", "call_commit", "return_commit", "{", "}"])
    tokens.update(OPCODES)  # `halt` and `trap` are both opcode and trace token
    tokens.update(chr(c) for c in range(FIRST_PRINTABLE, LAST_PRINTABLE + 1) if chr(c) not in "{}")
    return sorted(tokens)  # ids in Unicode code-point order (SPEC 1.2)


VOCAB = _build_vocabulary()  # 916 tokens: transformer-vm's 915 plus `trap`
TOKEN_ID = {token: index for index, token in enumerate(VOCAB)}
STOP_TOKENS = ("halt", "trap")
