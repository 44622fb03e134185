"""The trace language of the computer inside a transformer, and its reference interpreter.

The executable definition of spec/SPEC.md sections 1-4 (with this project's
decisions, SPEC 4.8), in five numbered sections: the instruction set, the token
vocabulary, program files, the interpreter (one step function per opcode, each
emitting its token group), and trace files and trace tools.

Decisions where the spec leaves room (each enforced by ProgramError unless said):
  * immediates are unsigned 32-bit ints; local indices must be < 256;
  * `br`/`br_if`/`call` must target an instruction of the program, never an
    `input_base` at instruction 0 (it runs once, as the prompt's input section);
  * `return`: see _return_problems (static F-R-1 check; checked again at run time);
  * an input is allowed only when instruction 0 is `input_base`; its bytes are
    stored as given (a NUL inside it is allowed; the section's last `00` is the NUL);
  * running past the last instruction stops the run without a stop token
    (Machine.status "end"; the `reference` command reports it as a failed run);
  * a stack underflow raises ExecutionError; max_steps raises StepLimitExceeded.

Costs: reading a program is O(N) in its N instructions plus O(N) per
function for the static `return` check; the interpreter spends O(1) per
executed instruction (benchmarks/reference_speed.py measures it) and allocates
a 16 MiB zeroed memory per run (lazily, by the allocator).
"""
import hashlib

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
# The extended instruction set (wasmtf extension, SPEC 12): i32 operations the
# machine computes natively, each with its WebAssembly opcode byte. Their groups
# are `R0 R1 R2 R3 commit(SD,sts=1,bt=0)` like i32.add's (fixed length); the
# extends are sign-marked like the signed loads (SPEC 4.3). Division and remainder
# write the quotient's magnitude digits first: `D3 D2 D1 D0 R0 R1 R2 R3 commit`
# (division_step). i32.mul_hi_u's group writes the low word, its token, then the high
# word: `L0 L1 L2 L3 i32.mul_hi_u H0 H1 H2 H3 commit(-1,sts=1,bt=0)` (step_mul_hi).
EXTENSION_TABLE = [
    ("i32.mul", 0x6C, -1, 1, 0),
    ("i32.and", 0x71, -1, 1, 0),
    ("i32.or", 0x72, -1, 1, 0),
    ("i32.xor", 0x73, -1, 1, 0),
    ("i32.shl", 0x74, -1, 1, 0),
    ("i32.shr_s", 0x75, -1, 1, 0),
    ("i32.shr_u", 0x76, -1, 1, 0),
    ("i32.rotl", 0x77, -1, 1, 0),
    ("i32.rotr", 0x78, -1, 1, 0),
    ("i32.clz", 0x67, +0, 1, 0),
    ("i32.ctz", 0x68, +0, 1, 0),
    ("i32.popcnt", 0x69, +0, 1, 0),
    ("i32.extend8_s", 0xC0, +0, 1, 0),
    ("i32.extend16_s", 0xC1, +0, 1, 0),
    ("i32.div_s", 0x6D, -1, 1, 0),
    ("i32.div_u", 0x6E, -1, 1, 0),
    ("i32.rem_s", 0x6F, -1, 1, 0),
    ("i32.rem_u", 0x70, -1, 1, 0),
    # wasmtf's own: the high word of the unsigned 64-bit product, for i64.mul (legalize.py).
    # Not a WebAssembly instruction: its code 0x100 is past every opcode byte (0x00..0xFF).
    ("i32.mul_hi_u", 0x100, -1, 1, 0),
]
OPCODE_TABLE = OPCODE_TABLE + EXTENSION_TABLE
EXTENSION_OPCODES = [row[0] for row in EXTENSION_TABLE]
OPCODES = [row[0] for row in OPCODE_TABLE]
STACK_DELTA = {row[0]: row[2] for row in OPCODE_TABLE}
STORES_TO_STACK = {row[0]: row[3] for row in OPCODE_TABLE}

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


# transformer-vm's 915 tokens plus `trap` and the extension's opcode names (SPEC 12),
# ids in Unicode code-point order (SPEC 1.2).
VOCAB = sorted({byte_token(value, marked) for value in range(256) for marked in (False, True)}
               | {out_token(value) for value in range(256)}
               | {input_token(value) for value in range(256)}  # the input characters (the rest are hex bytes)
               | {commit_token(sd, sts, bt) for sd, sts in COMMIT_KINDS for bt in (0, 1)}
               | {"branch_taken", "call_commit", "return_commit", "{", "}"}
               | set(OPCODES))  # `halt`, `trap` and `i32.mul_hi_u` are both opcode and trace token
TOKEN_ID = {token: index for index, token in enumerate(VOCAB)}
STOP_TOKENS = ("halt", "trap")


# ---------------------------------------------------------------------------
# 3. Program files (SPEC 2.1): `{`, five tokens per instruction, `}`, input section
# ---------------------------------------------------------------------------
# An instruction is a tuple (opcode_name, immediate) with 0 <= immediate < 2**32.
# In a file the immediate is four byte tokens, least-significant byte first.

TOKENS_PER_INSTRUCTION = 5  # the opcode name, then the immediate's 4 bytes
WORD_BYTES = 4              # every value and immediate is a 32-bit word
BYTE_BITS = 8
BYTE_VALUES = 1 << BYTE_BITS         # 256
WORD_MODULUS = 1 << (WORD_BYTES * BYTE_BITS)  # 2**32: arithmetic is mod this
SIGN_BIT = WORD_MODULUS >> 1         # 2**31: a word >= this is negative
LOCALS_PER_FRAME = 256               # SPEC 4.8 d5: indices 0..255, all zeroed per frame
MAX_CALL_DEPTH = (1 << 14) - 1       # calls in progress at most (16,383): the compiled machine keys
                                     # local byte j of a frame at call depth d by 1 + 1024*d + j
                                     # (compile_weights.LOCALS_STRIDE), and 1024*(d + 1) <= 2^24
                                     # keeps every key inside the range its lookups are exact in
                                     # (SPEC 10; speculative.KEY_LIMIT)
MEMORY_SIZE = 1 << 24                # 16 MiB (SPEC 4.8); touching a byte at or past it traps
PROGRAM_START, PROGRAM_END = "{", "}"
START = "start"                      # position 0 of a specialized prompt (SPEC 2.2)
PROGRAM_MARK = "program(sha256=%s)"  # the specialized vocabulary's name of its program (SPEC 1.2)
INPUT_END = commit_token(+0, 0, 0)   # closes the input section, after its NUL byte
NUL = 0
FORBIDDEN_OPCODES = ("global.get", "global.set")  # SPEC 4.8: globals live in memory
BRANCHES = ("br", "br_if", "call")   # immediates that are relative targets (SPEC 3.3)
LOCAL_OPCODES = ("local.get", "local.set", "local.tee")
MAX_REPORTED_PROBLEMS = 10           # a longer list of problems is cut with "... and N more"
# The value of each spelling of a byte: an immediate byte is two lower-case hex
# digits; an input byte may also be its character; a trace byte may be marked.
IMMEDIATE_BYTE = {byte_token(v): v for v in range(BYTE_VALUES)}
INPUT_BYTE = {**IMMEDIATE_BYTE, **{input_token(v): v for v in range(BYTE_VALUES)}}
TRACE_BYTE = {**IMMEDIATE_BYTE, **{byte_token(v, marked=True): v for v in range(BYTE_VALUES)}}


class ProgramError(ValueError):
    """A bad program file or program: the message names each problem and where it is."""


def to_signed(word):
    """The two's-complement reading of a 32-bit word: 0xffffffff -> -1."""
    return word - WORD_MODULUS if word >= SIGN_BIT else word


def word_bytes(word):
    """The 4 bytes of a word, least significant first (little endian)."""
    return [(word >> (BYTE_BITS * k)) & (BYTE_VALUES - 1) for k in range(WORD_BYTES)]


def branch_target(index, immediate):
    """Where `br`/`br_if`/`call` at `index` goes (SPEC 3.3): index + 1 + signed(imm)."""
    return index + 1 + to_signed(immediate)


def _raise_problems(problems):
    if len(problems) > MAX_REPORTED_PROBLEMS:
        hidden = len(problems) - MAX_REPORTED_PROBLEMS
        problems = problems[:MAX_REPORTED_PROBLEMS] + ["... and %d more" % hidden]
    raise ProgramError("; ".join(problems))


def _where(index):
    """Instruction `index` and the prompt position of its opcode token."""
    return "instruction %d (token %d)" % (index, TOKENS_PER_INSTRUCTION * index + 1)


def _instruction_problems(instructions):
    """Problems of each instruction on its own: names, immediates, placement."""
    problems = []
    if not instructions:
        problems.append("the program has no instructions")
    for index, instruction in enumerate(instructions):
        if not (isinstance(instruction, (tuple, list)) and len(instruction) == 2):
            problems.append("%s: %r is not an (opcode, immediate) pair" % (_where(index), instruction))
            continue
        opcode, immediate = instruction
        if opcode in FORBIDDEN_OPCODES:
            problems.append("%s: %s is not allowed in a program (SPEC 4.8: globals live in memory)"
                            % (_where(index), opcode))
        elif opcode not in STACK_DELTA:
            problems.append("%s: unknown opcode %r" % (_where(index), opcode))
        elif opcode == "input_base" and index != 0:
            problems.append("%s: input_base may only be instruction 0" % _where(index))
        if not (isinstance(immediate, int) and 0 <= immediate < WORD_MODULUS):
            problems.append("%s: immediate %r is not an unsigned 32-bit integer" % (_where(index), immediate))
        elif opcode in LOCAL_OPCODES and immediate >= LOCALS_PER_FRAME:
            problems.append("%s: %s %d, but a frame has locals 0..%d"
                            % (_where(index), opcode, immediate, LOCALS_PER_FRAME - 1))
    return problems


def _return_problems(instructions):
    """The static `return` check (SPEC 3.3, 4.8): from each function entry F (instruction 0,
    every `call` target) follow the flow inside the function (both ways of a branch; past a
    `call`; `return`, `halt` and `trap` end a path): each `return` R reached must carry
    (F - R - 1) mod 2**32. A `return` reachable from main, or from two entries, is invalid;
    one reachable from none is dead code, not checked (the interpreter checks every executed
    `return` again). Running off the last instruction is allowed (execution stops)."""
    count = len(instructions)
    entries = sorted({0} | {branch_target(i, imm) for i, (op, imm) in enumerate(instructions)
                            if op == "call" and 0 <= branch_target(i, imm) < count})
    owners = {}  # return index -> entries it is reachable from
    for entry in entries:
        seen = {entry}
        pending = [entry]
        while pending:
            index = pending.pop()
            opcode, immediate = instructions[index]
            if opcode == "return":
                owners.setdefault(index, []).append(entry)
            successors = {"br": [branch_target(index, immediate)],
                          "br_if": [branch_target(index, immediate), index + 1],
                          "return": [], "halt": [], "trap": []}.get(opcode, [index + 1])
            for successor in successors:
                if 0 <= successor < count and successor not in seen:
                    seen.add(successor)
                    pending.append(successor)
    problems = []
    for index in sorted(owners):
        entry_list = owners[index]
        immediate = instructions[index][1]
        if entry_list[0] == 0:
            problems.append("%s: return is reachable from the main function, which must end with halt"
                            % _where(index))
        elif len(entry_list) > 1:
            problems.append("%s: return is reachable from the functions at %s; it can carry only one "
                            "F-R-1" % (_where(index), " and ".join(str(e) for e in entry_list)))
        elif immediate != (entry_list[0] - index - 1) % WORD_MODULUS:
            problems.append("%s: return immediate is %d, expected F-R-1 = %d-%d-1 = %d for the function "
                            "at %d" % (_where(index), to_signed(immediate), entry_list[0], index,
                                       entry_list[0] - index - 1, entry_list[0]))
    return problems


class Program(list):
    """A list of (opcode, immediate) pairs that check_program accepted: the functions
    that run or encode a program check a Program's input only (validation happens
    once; a Program is not changed after its check)."""


def program_problems(instructions, input_bytes=None):
    """Every reason why `instructions` (+ input) is not a valid program; [] if it is."""
    problems = _instruction_problems(instructions)
    if problems:
        return problems
    count = len(instructions)
    for index, (opcode, immediate) in enumerate(instructions):
        if opcode in BRANCHES:
            target = branch_target(index, immediate)
            if not 0 <= target < count:
                problems.append("%s: %s target %d is outside the program (instructions 0..%d)"
                                % (_where(index), opcode, target, count - 1))
            elif target == 0 and has_input_section(instructions):
                problems.append("%s: %s jumps to input_base (instruction 0), which runs once, as the prompt"
                                % (_where(index), opcode))
    return problems + _input_problems(instructions, input_bytes) + _return_problems(instructions)


def _input_problems(instructions, input_bytes):
    if input_bytes is None:
        return []
    if not isinstance(input_bytes, (bytes, bytearray)):
        return ["the input must be bytes, not %s" % type(input_bytes).__name__]
    if not has_input_section(instructions):
        return ["an input is given but instruction 0 is not input_base"]
    if instructions[0][1] + len(input_bytes) + 1 > MEMORY_SIZE:
        return ["the input (%d bytes + NUL at address %d) does not fit in the %d-byte memory"
                % (len(input_bytes), instructions[0][1], MEMORY_SIZE)]
    return []


def check_program(instructions, input_bytes=None):
    """The program as a Program; ProgramError listing every problem of it (of its input
    only, for a Program) if there is any."""
    checked = isinstance(instructions, Program)
    problems = _input_problems(instructions, input_bytes) if checked else program_problems(instructions, input_bytes)
    if problems:
        _raise_problems(problems)
    return instructions if checked else Program(instructions)


def has_input_section(instructions):
    """A program whose instruction 0 is `input_base` always has an input section (SPEC 4.8 d3)."""
    return bool(instructions) and instructions[0][0] == "input_base"


def program_tokens(instructions, input_bytes=None):
    """The prompt: `{`, opcode + 4 immediate bytes per instruction, `}`, input section."""
    check_program(instructions, input_bytes)
    tokens = [PROGRAM_START]
    for opcode, immediate in instructions:
        tokens += [opcode] + [byte_token(value) for value in word_bytes(immediate)]
    tokens.append(PROGRAM_END)
    if has_input_section(instructions):  # each byte (character or hex), the NUL, `commit(+0,sts=0,bt=0)`
        tokens.extend([input_token(value) for value in input_bytes or b""] + [byte_token(NUL), INPUT_END])
    return tokens


def specialized_prompt(instructions, input_bytes=None):
    """The prompt of a model with the program in its weights (SPEC 2.2): `start`, then
    the same input section as program_tokens (or nothing). Its trace is the same."""
    tokens = program_tokens(instructions, input_bytes)
    return [START] + tokens[tokens.index(PROGRAM_END) + 1:]


def program_hash(instructions):
    """SHA-256 (hex) of the program section `{ ... }` as one line of tokens: what names
    the program a specialized model holds (the input is not part of it)."""
    tokens = program_tokens(instructions)[:TOKENS_PER_INSTRUCTION * len(instructions) + 2]
    return hashlib.sha256(" ".join(tokens).encode("ascii")).hexdigest()


def format_program(instructions, input_bytes=None):
    """The program file text (one instruction per line, then the input section)."""
    return format_trace_file(program_tokens(instructions, input_bytes), [])


def parse_program(text):
    """Read a program file: (instructions, input_bytes or None). Raises ProgramError.

    The body is everything between the first token `{` and the last `}`
    (SPEC 2.1), read five tokens at a time. After `}` comes the input section,
    only when instruction 0 is `input_base`; a file without one gives input
    None (run as the empty input). Problems name the token position (0 = `{`).
    """
    tokens = text.split()
    if not tokens:
        raise ProgramError("empty program file: expected '{' as token 0")
    if tokens[0] != PROGRAM_START:
        raise ProgramError("token 0: the file must start with '{', found %r" % tokens[0])
    if PROGRAM_END not in tokens:
        raise ProgramError("missing '}': the program after '{' is never closed")
    close = len(tokens) - 1 - tokens[::-1].index(PROGRAM_END)
    problems = []
    if (close - 1) % TOKENS_PER_INSTRUCTION:
        problems.append("token %d: the %d tokens between '{' and '}' are not a multiple of %d "
                        "(an opcode and 4 immediate bytes per instruction)"
                        % (close, close - 1, TOKENS_PER_INSTRUCTION))
    instructions = []
    for start in range(1, close - TOKENS_PER_INSTRUCTION + 1, TOKENS_PER_INSTRUCTION):
        immediate = 0
        for k in range(WORD_BYTES):
            token = tokens[start + 1 + k]
            if token in IMMEDIATE_BYTE:
                immediate += IMMEDIATE_BYTE[token] << (BYTE_BITS * k)
            else:
                problems.append("token %d: immediate byte %r of instruction %d is not two lower-case hex digits"
                                % (start + 1 + k, token, len(instructions)))
        instructions.append((tokens[start], immediate))
    section = tokens[close + 1:]
    input_bytes = None
    if section and not has_input_section(instructions):
        problems.append("token %d: tokens after '}', but only an input_base program has an input section"
                        % (close + 1))
    elif section and section[-2:] != [byte_token(NUL), INPUT_END]:
        problems.append("token %d: the input section must end with '00 %s'" % (len(tokens) - 1, INPUT_END))
    elif section:
        values = [INPUT_BYTE.get(token) for token in section[:-2]]
        for offset, value in enumerate(values):
            if value is None:
                problems.append("token %d: %r is not an input byte (a character 0x21..0x7e other than braces, "
                                "or two lower-case hex digits)" % (close + 1 + offset, section[offset]))
        input_bytes = bytes(value for value in values if value is not None)
    if problems:  # opcode problems too, but not the whole-program checks of made-up immediates
        _raise_problems(problems + _instruction_problems(instructions))
    return check_program(instructions, input_bytes), input_bytes


def read_text(path):
    """A text file's contents (UTF-8); a ProgramError naming the file if it is not UTF-8."""
    with open(path, "rb") as file:
        data = file.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProgramError("%s: not UTF-8 text (byte 0x%02x at offset %d)"
                           % (path, data[error.start], error.start)) from None


def read_program(path):
    """parse_program of a file; the error message starts with the file's name."""
    text = read_text(path)
    try:
        return parse_program(text)
    except ProgramError as error:
        raise ProgramError("%s: %s" % (path, error)) from None


# ---------------------------------------------------------------------------
# 4. The reference interpreter (SPEC 3.2, 4.1, 4.3, 4.8)
# ---------------------------------------------------------------------------
# The machine: pc, an operand stack of 32-bit words (stored unsigned), 256
# locals per frame, a call stack of frames, a 16 MiB little-endian memory and
# the output. Each opcode has a step function `step(machine, pc, immediate)`
# that changes the state, appends the opcode's token group to the trace and
# returns the next pc (or STOPPED). `input_base` appends nothing: its group
# (the input section) is part of the prompt.

DEFAULT_MAX_STEPS = 10_000_000  # about 50 million trace tokens, some seconds of CPython
STOPPED = -1              # the "next pc" of halt and trap
STACK_SHOWN = 8           # Machine.describe shows the top 8 stack words ...
OUTPUT_SHOWN = 16         # ... and the last 16 output bytes (so does describe_trace)
UNMARKED, MARKED = 0, 1

BYTE_TOKENS = ([byte_token(v) for v in range(BYTE_VALUES)],                 # [value] -> `hh`
               [byte_token(v, marked=True) for v in range(BYTE_VALUES)])    # [value] -> `hh'`
OUT_TOKENS = [out_token(v) for v in range(BYTE_VALUES)]
# The commit token that ends each opcode's group, from the opcode table (bt = 0) ...
COMMIT = {name: commit_token(STACK_DELTA[name], STORES_TO_STACK[name], 0) for name in OPCODES}
# ... and the one that ends a taken `br`/`br_if` (bt = 1: the 4 bytes before it are a jump).
COMMIT_TAKEN = {name: commit_token(STACK_DELTA[name], STORES_TO_STACK[name], 1) for name in ("br", "br_if")}
BRANCH_TAKEN, CALL_COMMIT, RETURN_COMMIT = "branch_taken", "call_commit", "return_commit"


class ExecutionError(RuntimeError):
    """The program did something the machine cannot do (e.g. pop an empty stack)."""


class CallStackExhausted(ExecutionError):
    """A call beyond MAX_CALL_DEPTH (WebAssembly engines: "call stack exhausted")."""


class StepLimitExceeded(RuntimeError):
    """The run reached max_steps; `.machine` holds the state at that point."""

    def __init__(self, message, machine):
        super().__init__(message)
        self.machine = machine


class DiscardedTrace:
    """A trace that keeps no tokens: for a run whose outcome is wanted, not its trace."""

    def append(self, token):
        pass

    def extend(self, tokens):
        pass


class Machine:
    """The state of the reference machine (SPEC 3.2)."""
    __slots__ = ("instructions", "program", "pc", "stack", "locals", "frames", "memory", "output", "trace",
                 "steps", "status")

    def __init__(self, instructions):
        self.instructions = instructions
        self.program = [(STEP[opcode], immediate) for opcode, immediate in instructions]  # decoded once
        self.pc = 0
        self.stack = []                          # words, top of stack last
        self.locals = {}                         # the current frame's locals: index -> word, absent = 0
        self.frames = []                         # per call in progress: (return pc, caller's locals,
                                                 #   the call's immediate, the callee's entry)
        self.memory = bytearray(MEMORY_SIZE)     # zero-initialised
        self.output = bytearray()
        self.trace = []                          # the tokens generated after the prompt
        self.steps = 0                           # instructions executed
        self.status = "running"                  # then "halt", "trap" or "end" (ran past the last instruction)

    def describe(self):
        """A short report of the state: pc, instruction, stack, locals, output."""
        if 0 <= self.pc < len(self.instructions):
            opcode, immediate = self.instructions[self.pc]
            at = "%s %d" % (opcode, to_signed(immediate))
        else:
            at = "past the last instruction"
        nonzero = {i: to_signed(v) for i, v in sorted(self.locals.items()) if v}
        return ("status %s after %d steps, pc %d (%s), call depth %d, stack (top last) %s, "
                "nonzero locals %s, output (last bytes) %r"
                % (self.status, self.steps, self.pc, at, len(self.frames),
                   [to_signed(v) for v in self.stack[-STACK_SHOWN:]], nonzero, bytes(self.output[-OUTPUT_SHOWN:])))


def emit_word(trace, word, commit, marks=(UNMARKED,) * WORD_BYTES):
    """Append the 4 byte tokens of `word`, byte k marked when marks[k] (SPEC 4.3), then `commit`."""
    for k in range(WORD_BYTES):
        trace.append(BYTE_TOKENS[marks[k]][(word >> (BYTE_BITS * k)) & (BYTE_VALUES - 1)])
    trace.append(commit)


def emit_bytewise(trace, a, b, subtract, commit):
    """Append the bytes of a + b (or a - b) mod 2**32, computed byte by byte, then `commit`:
    byte k is marked when its position carries (or borrows) into byte k+1 (SPEC 4.3)."""
    carry = 0
    for k in range(WORD_BYTES):
        a_k = (a >> (BYTE_BITS * k)) & (BYTE_VALUES - 1)
        b_k = (b >> (BYTE_BITS * k)) & (BYTE_VALUES - 1)
        total = a_k - b_k - carry if subtract else a_k + b_k + carry
        carry = 1 if total < 0 or total >= BYTE_VALUES else 0
        trace.append(BYTE_TOKENS[carry][total % BYTE_VALUES])
    trace.append(commit)


# -- constants, locals, stack ------------------------------------------------

def step_const(m, pc, imm):
    """i32.const C: push C; group `C0 C1 C2 C3 commit(+1,sts=1,bt=0)`."""
    m.stack.append(imm)
    emit_word(m.trace, imm, COMMIT["i32.const"])
    return pc + 1


def step_local_get(m, pc, imm):
    """local.get i: push L[i]; group = its bytes + commit(+1,sts=1,bt=0)."""
    value = m.locals.get(imm, 0)
    m.stack.append(value)
    emit_word(m.trace, value, COMMIT["local.get"])
    return pc + 1


def step_local_set(m, pc, imm):
    """local.set i: L[i] <- pop; group = the popped bytes + commit(-1,sts=0,bt=0)."""
    value = m.stack.pop()
    m.locals[imm] = value
    emit_word(m.trace, value, COMMIT["local.set"])
    return pc + 1


def step_local_tee(m, pc, imm):
    """local.tee i: L[i] <- top (no pop); group = its bytes + commit(+0,sts=0,bt=0)."""
    value = m.stack[-1]
    m.locals[imm] = value
    emit_word(m.trace, value, COMMIT["local.tee"])
    return pc + 1


def step_drop(m, pc, imm):
    """drop: pop; group `commit(-1,sts=0,bt=0)`."""
    m.stack.pop()
    m.trace.append(COMMIT["drop"])
    return pc + 1


def step_select(m, pc, imm):
    """select: pop c, pop b, pop a; push (a if c != 0 else b)."""
    condition, b, a = m.stack.pop(), m.stack.pop(), m.stack.pop()
    result = a if condition else b
    m.stack.append(result)
    emit_word(m.trace, result, COMMIT["select"])
    return pc + 1


# -- arithmetic and comparisons ----------------------------------------------

def arithmetic_step(opcode, subtract):
    """i32.add / i32.sub: pop b, pop a; push (a + b) or (a - b) mod 2**32; bytes carry/borrow-marked."""
    commit = COMMIT[opcode]

    def step(m, pc, imm):
        b, a = m.stack.pop(), m.stack.pop()
        m.stack.append((a - b if subtract else a + b) % WORD_MODULUS)
        emit_bytewise(m.trace, a, b, subtract, commit)
        return pc + 1
    return step


# The test of each comparison on the two popped words (a below, b on top): 1 or 0.
COMPARISONS = {
    "i32.eq": lambda a, b: int(a == b),
    "i32.ne": lambda a, b: int(a != b),
    "i32.lt_u": lambda a, b: int(a < b),
    "i32.gt_u": lambda a, b: int(a > b),
    "i32.le_u": lambda a, b: int(a <= b),
    "i32.ge_u": lambda a, b: int(a >= b),
    "i32.lt_s": lambda a, b: int(to_signed(a) < to_signed(b)),
    "i32.gt_s": lambda a, b: int(to_signed(a) > to_signed(b)),
    "i32.le_s": lambda a, b: int(to_signed(a) <= to_signed(b)),
    "i32.ge_s": lambda a, b: int(to_signed(a) >= to_signed(b)),
}


# -- the extended instruction set (SPEC 12) ----------------------------------

# The result of each binary extension opcode on the two popped words (a below,
# b on top), as a 32-bit word: WebAssembly's semantics on unsigned bit patterns.
BINARY_OPERATIONS = {
    "i32.mul": lambda a, b: a * b % WORD_MODULUS,
    "i32.and": lambda a, b: a & b,
    "i32.or": lambda a, b: a | b,
    "i32.xor": lambda a, b: a ^ b,
    # shifts and rotates count modulo 32 (WebAssembly: the count's low 5 bits)
    "i32.shl": lambda a, b: (a << (b % 32)) % WORD_MODULUS,
    "i32.shr_u": lambda a, b: a >> (b % 32),
    "i32.shr_s": lambda a, b: (to_signed(a) >> (b % 32)) % WORD_MODULUS,
    "i32.rotl": lambda a, b: ((a << (b % 32)) | (a >> (32 - b % 32))) % WORD_MODULUS,
    "i32.rotr": lambda a, b: ((a >> (b % 32)) | (a << (32 - b % 32))) % WORD_MODULUS,
}
# i32.eqz and the bit counts of the popped word (a result 0..32).
UNARY_OPERATIONS = {
    "i32.eqz": lambda a: int(a == 0),
    "i32.clz": lambda a: 32 - a.bit_length(),
    "i32.ctz": lambda a: (a & -a).bit_length() - 1 if a else 32,
    "i32.popcnt": lambda a: bin(a).count("1"),
}
MUL_HI = "i32.mul_hi_u"   # its name is also the trace token between the two halves of its group


def step_mul_hi(m, pc, imm):
    """i32.mul_hi_u (wasmtf, SPEC 12): pop b, pop a; push floor(a*b / 2^32). Group: the low
    word's 4 bytes (a*b mod 2^32, what i32.mul pushes), the token `i32.mul_hi_u`, then the
    high word's 4 bytes and commit(-1,sts=1,bt=0), all unmarked; only the high word is pushed."""
    b, a = m.stack.pop(), m.stack.pop()
    product = a * b
    emit_word(m.trace, product % WORD_MODULUS, MUL_HI)   # the low word, then the token `i32.mul_hi_u`
    m.stack.append(product >> (BYTE_BITS * WORD_BYTES))
    emit_word(m.trace, product >> (BYTE_BITS * WORD_BYTES), COMMIT[MUL_HI])
    return pc + 1


# Sign extensions: the width in bytes of the value extended (the low bytes of the popped word).
EXTENDS = {"i32.extend8_s": 1, "i32.extend16_s": 2}


def binary_step(opcode, operation):
    """The step of a comparison or an extension binary operation: pop b, pop a; push
    operation(a, b); group = the result's 4 bytes, unmarked, + commit(-1,sts=1,bt=0)."""
    commit = COMMIT[opcode]

    def step(m, pc, imm):
        b, a = m.stack.pop(), m.stack.pop()
        result = operation(a, b)
        m.stack.append(result)
        emit_word(m.trace, result, commit)
        return pc + 1
    return step


def unary_step(opcode, operation):
    """The step of i32.eqz or an extension unary operation: pop a; push operation(a); group = the
    result's 4 bytes, unmarked, + commit(+0,sts=1,bt=0)."""
    commit = COMMIT[opcode]

    def step(m, pc, imm):
        result = operation(m.stack.pop())
        m.stack.append(result)
        emit_word(m.trace, result, commit)
        return pc + 1
    return step


def extend_step(opcode, width):
    """i32.extend8_s / extend16_s: pop a; push its low `width` bytes sign-extended;
    group = the 4 bytes, sign-marked like load8_s / load16_s (SPEC 4.3), + commit(+0,sts=1,bt=0)."""
    commit = COMMIT[opcode]

    def step(m, pc, imm):
        value, marks = sign_extend(m.stack.pop() % (1 << (BYTE_BITS * width)), width)
        m.stack.append(value)
        emit_word(m.trace, value, commit, marks)
        return pc + 1
    return step


# Division and remainder (SPEC 12.2): the operands' magnitudes (two's complement
# for the signed ones), whether a trap replaces the group, and the result word.
DIVISIONS = {"i32.div_s": (True, False), "i32.div_u": (False, False),   # opcode -> (signed, remainder)
             "i32.rem_s": (True, True), "i32.rem_u": (False, True)}


def magnitude(word, signed):
    """|signed(word)| for a signed operation (2^31 for INT_MIN), else the word."""
    return abs(to_signed(word)) if signed else word


def division_step(opcode):
    """i32.div_s/div_u/rem_s/rem_u: pop b, pop a; push a / b (truncated) or a % b
    (the sign of a), WebAssembly's semantics; `trap` when b = 0, and for div_s of
    INT_MIN by -1. Group (9 tokens): the magnitude quotient Q = |a| // |b|'s bytes
    most significant first (D3 D2 D1 D0), then the result's 4 bytes, then
    commit(-1,sts=1,bt=0). Marks (SPEC 12.2): div_s with operands of opposite signs
    writes the result as 0 - Q byte by byte, borrow-marked like i32.sub; rem_s with
    operands of opposite signs marks all 8 bytes; nothing else is marked."""
    signed, remainder = DIVISIONS[opcode]
    commit = COMMIT[opcode]

    def step(m, pc, imm):
        b, a = m.stack.pop(), m.stack.pop()
        if b == 0 or (opcode == "i32.div_s" and a == SIGN_BIT and b == WORD_MODULUS - 1):
            return stop(m, "trap")
        quotient = magnitude(a, signed) // magnitude(b, signed)
        opposite = signed and (a >= SIGN_BIT) != (b >= SIGN_BIT)
        digit_marks = MARKED if remainder and opposite else UNMARKED
        for k in reversed(range(WORD_BYTES)):
            m.trace.append(BYTE_TOKENS[digit_marks][(quotient >> (BYTE_BITS * k)) & (BYTE_VALUES - 1)])
        if remainder:
            result = magnitude(a, signed) - quotient * magnitude(b, signed)
            result = (-result if signed and a >= SIGN_BIT else result) % WORD_MODULUS
            emit_word(m.trace, result, commit, (digit_marks,) * WORD_BYTES)
        elif opposite:
            emit_bytewise(m.trace, 0, quotient, True, commit)
            result = -quotient % WORD_MODULUS
        else:
            result = quotient
            emit_word(m.trace, result, commit)
        m.stack.append(result)
        return pc + 1
    return step


# -- memory ------------------------------------------------------------------

# Bytes each access touches, and whether a load sign-extends.
LOADS = {"i32.load": (4, False), "i32.load8_s": (1, True), "i32.load8_u": (1, False),
         "i32.load16_s": (2, True), "i32.load16_u": (2, False)}
STORES = {"i32.store": 4, "i32.store8": 1, "i32.store16": 2}


def stop(m, token):
    """End the run with `token` (`halt` or `trap`), which is also the machine's status."""
    m.trace.append(token)
    m.status = token
    return STOPPED


def load_step(opcode, width, signed):
    """The step of a load of `width` bytes: pop address; push the value read.

    Signed loads sign-extend and mark their fill bytes when the value is
    negative: all 4 bytes for load8_s, bytes 1..3 for load16_s (SPEC 4.3).
    """
    commit = COMMIT[opcode]

    def step(m, pc, imm):
        start = m.stack.pop() + imm
        if start + width > MEMORY_SIZE:  # touches a byte past memory (no wrap, SPEC 4.8)
            return stop(m, "trap")
        value = int.from_bytes(m.memory[start:start + width], "little")
        value, marks = sign_extend(value, width) if signed else (value, (UNMARKED,) * WORD_BYTES)
        m.stack.append(value)
        emit_word(m.trace, value, commit, marks)
        return pc + 1
    return step


def sign_extend(value, width):
    """(word, marks) of a `width`-byte value sign-extended to 32 bits, with the sign marks
    of SPEC 4.3: when negative, bytes width-1..3 are marked (the sign byte and the fill)."""
    if value < 1 << (BYTE_BITS * width - 1):                    # below 0x80 or 0x8000
        return value, (UNMARKED,) * WORD_BYTES
    fill = WORD_MODULUS - (1 << (BYTE_BITS * width))            # 0xffffff00 or 0xffff0000
    return value + fill, (UNMARKED,) * (width - 1) + (MARKED,) * (WORD_BYTES - width + 1)


def store_step(opcode, width):
    """The step of a store of `width` bytes: pop value, pop address; write the
    low bytes of the value little endian; group = those bytes + commit(-2,sts=0,bt=0)."""
    commit = COMMIT[opcode]

    def step(m, pc, imm):
        value = m.stack.pop()
        start = m.stack.pop() + imm
        if start + width > MEMORY_SIZE:  # touches a byte past memory (no wrap, SPEC 4.8)
            return stop(m, "trap")
        low_bytes = word_bytes(value)[:width]
        m.memory[start:start + width] = bytes(low_bytes)
        m.trace.extend(BYTE_TOKENS[UNMARKED][v] for v in low_bytes)
        m.trace.append(commit)
        return pc + 1
    return step


# -- control flow ------------------------------------------------------------

def emit_jump(trace, imm, commit):
    """The group of a jump to pc + 1 + signed(imm): `branch_taken I0 I1 I2 I3 <commit>`."""
    trace.append(BRANCH_TAKEN)
    emit_word(trace, imm, commit)


def step_br(m, pc, imm):
    """br T: jump to pc + 1 + signed(T); group `branch_taken T0..T3 commit(+0,sts=0,bt=1)`."""
    emit_jump(m.trace, imm, COMMIT_TAKEN["br"])
    return branch_target(pc, imm)


def step_br_if(m, pc, imm):
    """br_if T: pop c; if c != 0 jump like br (commit bt=1), else `commit(-1,sts=0,bt=0)`."""
    if m.stack.pop():
        emit_jump(m.trace, imm, COMMIT_TAKEN["br_if"])
        return branch_target(pc, imm)
    m.trace.append(COMMIT["br_if"])
    return pc + 1


def step_call(m, pc, imm):
    """call T: save the frame, start the callee with zeroed locals (SPEC 4.8 d4).
    Group `branch_taken T0..T3 call_commit` (the call's own immediate).
    A call beyond MAX_CALL_DEPTH raises CallStackExhausted before its group."""
    if len(m.frames) == MAX_CALL_DEPTH:
        raise CallStackExhausted("call stack exhausted: %s would be call %d in progress (the limit is %d)"
                                 % (_where(pc), MAX_CALL_DEPTH + 1, MAX_CALL_DEPTH))
    target = branch_target(pc, imm)
    m.frames.append((pc + 1, m.locals, imm, target))
    m.locals = {}
    emit_jump(m.trace, imm, CALL_COMMIT)
    return target


def step_return(m, pc, imm):
    """return R: restore the caller's locals and jump back after the call.

    Group `branch_taken J0..J3 return_commit`: J = imm_return - imm_call
    byte by byte with borrow marks, which equals (return_pc - R - 1) mod 2**32
    because imm_return = F - R - 1 and imm_call = F - C - 1 (SPEC 3.3).
    """
    if not m.frames:
        raise ProgramError("%s: return in the main function (no call in progress)" % _where(pc))
    return_pc, m.locals, call_immediate, entry = m.frames.pop()
    expected = (entry - pc - 1) % WORD_MODULUS
    if imm != expected:
        raise ProgramError("%s: return immediate is %d, expected F-R-1 = %d for the function at %d"
                           % (_where(pc), to_signed(imm), to_signed(expected), entry))
    m.trace.append(BRANCH_TAKEN)
    emit_bytewise(m.trace, imm, call_immediate, subtract=True, commit=RETURN_COMMIT)
    return return_pc


# -- output, input, halt, trap -------------------------------------------------

def step_output(m, pc, imm):
    """output: pop v; print byte v mod 256; group `out(c)` (it pops, SPEC 4.8 d1)."""
    value = m.stack.pop() % BYTE_VALUES
    m.output.append(value)
    m.trace.append(OUT_TOKENS[value])
    return pc + 1


def step_input_base(m, pc, imm):
    """input_base A: the input and its NUL are already in memory at A (written by
    `execute` from the prompt's input section, which is this instruction's group)."""
    return pc + 1


def stop_step(token):
    """halt, and trap (wasmtf, SPEC 4.8): stop; group `halt` or `trap`."""
    return lambda m, pc, imm: stop(m, token)


STEP = {
    "return": step_return, "call": step_call, "br": step_br, "br_if": step_br_if,
    "drop": step_drop, "select": step_select,
    "local.get": step_local_get, "local.set": step_local_set, "local.tee": step_local_tee,
    "i32.const": step_const,
    "i32.add": arithmetic_step("i32.add", subtract=False), "i32.sub": arithmetic_step("i32.sub", subtract=True),
    "output": step_output, "input_base": step_input_base,
}
STEP.update({token: stop_step(token) for token in STOP_TOKENS})
STEP.update({opcode: binary_step(opcode, operation)
             for opcode, operation in {**COMPARISONS, **BINARY_OPERATIONS}.items()})
STEP.update({opcode: extend_step(opcode, width) for opcode, width in EXTENDS.items()})
STEP.update({opcode: division_step(opcode) for opcode in DIVISIONS})
STEP[MUL_HI] = step_mul_hi
STEP.update({opcode: unary_step(opcode, operation) for opcode, operation in UNARY_OPERATIONS.items()})
STEP.update({opcode: load_step(opcode, width, signed) for opcode, (width, signed) in LOADS.items()})
STEP.update({opcode: store_step(opcode, width) for opcode, width in STORES.items()})
# (global.get / global.set have no step: program files may not contain them, SPEC 4.8.)


def execute(instructions, input_bytes=None, max_steps=DEFAULT_MAX_STEPS, keep_trace=True):
    """Run a program on the reference machine; return the final Machine: its trace (the
    tokens after the prompt; nothing kept with keep_trace=False) and status ("halt",
    "trap", or "end": pc ran past the last instruction, no stop token). Raises
    ProgramError, ExecutionError (CallStackExhausted) or StepLimitExceeded."""
    m = start(instructions, input_bytes)
    if not keep_trace:
        m.trace = DiscardedTrace()
    m = advance(m, max_steps)
    if m.status == "running":
        raise StepLimitExceeded("step limit of %d instructions reached: %s" % (max_steps, m.describe()), m)
    return m


def start(instructions, input_bytes=None):
    """A Machine before its first instruction, the input placed in memory (SPEC 4.8 d3)."""
    check_program(instructions, input_bytes)
    m = Machine(instructions)
    if has_input_section(instructions):
        address = instructions[0][1]
        placed = bytes(input_bytes or b"") + bytes([NUL])
        m.memory[address:address + len(placed)] = placed
    return m


def advance(m, max_steps):
    """Run machine m on until it stops or has executed max_steps instructions in all
    (its status is then still "running": advance again with a larger max_steps to go on).
    Returns m; raises ExecutionError (m holds the state where it happened)."""
    if m.status != "running":
        return m
    program = m.program
    count = len(program)
    pc, steps = m.pc, m.steps
    try:
        while 0 <= pc < count:
            if steps == max_steps:
                break
            step, immediate = program[pc]
            next_pc = step(m, pc, immediate)
            steps += 1
            if next_pc == STOPPED:
                break
            pc = next_pc
        else:
            m.status = "end"
    except IndexError:  # list.pop() on an empty operand stack
        m.pc, m.steps = pc, steps
        raise ExecutionError("stack underflow: %s" % m.describe()) from None
    except CallStackExhausted as error:
        m.pc, m.steps = pc, steps
        raise CallStackExhausted("%s: %s" % (error, m.describe())) from None
    m.pc, m.steps = pc, steps
    return m


def run_reference(instructions, input_bytes=None, max_steps=DEFAULT_MAX_STEPS):
    """The reference trace: the tokens after the prompt, ending with `halt` or `trap`."""
    return execute(instructions, input_bytes, max_steps).trace


# ---------------------------------------------------------------------------
# 5. Trace files and trace tools (SPEC 2.3, 4.1)
# ---------------------------------------------------------------------------
# A group is the tokens of one executed instruction; it ends with a terminal
# token. `branch_taken` also ends a line of a *_ref.txt file, but not a group.

def is_group_end(token):
    """Does `token` end an instruction's group? (commit, out, call/return commits, halt, trap)"""
    return (token.startswith("commit(") or token.startswith("out(")
            or token in (CALL_COMMIT, RETURN_COMMIT) or token in STOP_TOKENS)


def cut_after(tokens, is_end):
    """Cut `tokens` after every token where is_end(token); an unfinished last piece is kept."""
    pieces, piece = [], []
    for token in tokens:
        piece.append(token)
        if is_end(token):
            pieces.append(piece)
            piece = []
    if piece:
        pieces.append(piece)
    return pieces


def format_trace_file(prompt_tokens, trace_tokens):
    """The *_ref.txt layout: `{`, one line per instruction, `}` (or `start` alone for a
    specialized prompt), then the input section and the trace with a line break after
    every terminal token."""
    if prompt_tokens[:1] == [START]:  # a specialized prompt (SPEC 2.2): `start`, then as below
        close, lines = 0, [START]
    else:
        close = prompt_tokens.index(PROGRAM_END)
        lines = ([PROGRAM_START]
                 + [" ".join(prompt_tokens[start:start + TOKENS_PER_INSTRUCTION])
                    for start in range(1, close, TOKENS_PER_INSTRUCTION)]
                 + [PROGRAM_END])
    # a line break after every group end and after `branch_taken` (SPEC 2.3)
    rest = list(prompt_tokens[close + 1:]) + list(trace_tokens)
    lines += [" ".join(line) for line in cut_after(rest, lambda t: is_group_end(t) or t == BRANCH_TAKEN)]
    return "\n".join(lines) + "\n"


def parse_trace_file(text):
    """Read a *_ref.txt file: (instructions, input_bytes or None, trace tokens after the prompt).
    An input_base program's prompt may end at `}` (transformer-vm's, for no input: input None);
    input bytes after `}` followed by `00 commit(+0,sts=0,bt=0)` are its input section (an
    error when they hold characters, which only a prompt has, but lack that end)."""
    tokens = text.split()
    if PROGRAM_END not in tokens:
        raise ProgramError("missing '}': not a trace file")
    close = tokens.index(PROGRAM_END)
    prompt_end = close + 1
    if prompt_end < len(tokens) and tokens[1] == "input_base":
        run_end = prompt_end
        while run_end < len(tokens) and tokens[run_end] in INPUT_BYTE:
            run_end += 1
        run = tokens[prompt_end:run_end]
        if tokens[run_end:run_end + 1] == [INPUT_END] and run[-1:] == [byte_token(NUL)]:
            prompt_end = run_end + 1
        elif any(token not in TRACE_BYTE for token in run):
            raise ProgramError("token %d: the input section must end with '00 %s'" % (run_end, INPUT_END))
    instructions, input_bytes = parse_program(" ".join(tokens[:prompt_end]))
    return instructions, input_bytes, tokens[prompt_end:]


def split_groups(tokens):
    """The trace as a list of groups (lists of tokens); an unfinished last group is kept."""
    return cut_after(tokens, is_group_end)


def byte_value(token):
    """The value of a byte token `hh` or `hh'`, else None."""
    return TRACE_BYTE.get(token)


def out_value(token):
    """The byte an `out(c)` token prints: `out(A)` -> 0x41, `out(0a)` -> 0x0a."""
    inner = token[len("out("):-1]
    return ord(inner) if len(inner) == 1 else int(inner, 16)


def output_bytes(tokens):
    """The program's output: the bytes of the `out(...)` tokens, in order."""
    return bytes(out_value(token) for token in tokens if token.startswith("out("))


def commit_stack_delta(token):
    """SD of a group's terminal token: from `commit(SD,...)`; `out` pops (-1, SPEC 4.8 d1); else 0."""
    if token.startswith("commit("):
        return int(token[len("commit("):token.index(",")])
    return -1 if token.startswith("out(") else 0


def is_jump(token):
    """Terminal tokens whose 4 preceding bytes are a relative jump (SPEC 4.2)."""
    return token.endswith("bt=1)") or token in (CALL_COMMIT, RETURN_COMMIT)


def walk_trace(instructions, trace_tokens):
    """Replay a trace against its program without executing, one record per group: dict(step,
    pc, opcode, immediate, group, value, stack_depth, call_depth, output). pc and depths come
    from the tokens alone (SPEC 4.2), so a wrong trace can be read too; value = the group's
    last 4 bytes, little endian (the word it pushes). The walk of an input_base program starts
    at pc 1 (its group is the prompt)."""
    pc = 1 if has_input_section(instructions) else 0
    stack_depth, call_depth, output = 0, 0, bytearray()
    for step, group in enumerate(split_groups(trace_tokens)):
        opcode, immediate = instructions[pc] if 0 <= pc < len(instructions) else ("?", 0)
        values = [TRACE_BYTE[token] for token in group if token in TRACE_BYTE][-WORD_BYTES:]
        value = sum(v << (BYTE_BITS * k) for k, v in enumerate(values)) if values else None
        terminal = group[-1]
        stack_depth += commit_stack_delta(terminal)
        call_depth += {CALL_COMMIT: 1, RETURN_COMMIT: -1}.get(terminal, 0)
        if terminal.startswith("out("):
            output.append(out_value(terminal))
        yield dict(step=step, pc=pc, opcode=opcode, immediate=immediate, group=group, value=value,
                   stack_depth=stack_depth, call_depth=call_depth, output=bytes(output))
        if terminal in STOP_TOKENS or not is_group_end(terminal):
            return
        pc = pc + 1 + (to_signed(value) if is_jump(terminal) and value is not None else 0)


def describe_record(record):
    """One line of describe_trace: the group's value is shown signed, a jump as its target."""
    instruction = "%s %d" % (record["opcode"], to_signed(record["immediate"]))
    value = record["value"]
    if value is None:
        shown = ""
    elif is_jump(record["group"][-1]):
        shown = "-> pc %d" % (record["pc"] + 1 + to_signed(value))
    else:
        shown = "%d" % to_signed(value)
    return DESCRIBE_FORMAT % (record["step"], record["pc"], instruction, " ".join(record["group"]), shown,
                              record["stack_depth"], record["call_depth"], repr(record["output"][-OUTPUT_SHOWN:]))


DESCRIBE_FORMAT = "%6s %6s  %-22s %-44s %-14s %5s %5s  %s"
DESCRIBE_HEADER = DESCRIBE_FORMAT % ("step", "pc", "instruction", "group", "value", "stack", "calls",
                                     "output so far (last %d bytes)" % OUTPUT_SHOWN)


def describe_trace(instructions, trace_tokens):
    """An instruction-level table of a trace: step, pc, instruction, its group,
    the decoded value (signed; jump targets as `-> pc`), stack and call depth
    (relative to the start), output so far."""
    lines = [DESCRIBE_HEADER]
    lines.extend(describe_record(record) for record in walk_trace(instructions, trace_tokens))
    return "\n".join(lines)


def diff_traces(expected, actual, instructions=None, context=3):
    """None if the token lists are equal, else a report of the first divergence:
    the token index, the group (and pc/instruction when `instructions` is given),
    `context` groups before it, and the expected and actual groups from there."""
    if list(expected) == list(actual):
        return None
    first = next((i for i, (e, a) in enumerate(zip(expected, actual)) if e != a), min(len(expected), len(actual)))
    expected_groups = split_groups(expected)
    group_index, tokens_before = 0, 0
    while group_index < len(expected_groups) and tokens_before + len(expected_groups[group_index]) <= first:
        tokens_before += len(expected_groups[group_index])
        group_index += 1

    def window(tokens, start, stop):  # groups start..stop-1, as describe_trace lines if we can
        groups = split_groups(tokens)
        shown = range(max(start, 0), min(stop, len(groups)))
        if instructions is None:
            return ["%6d  %s" % (i, " ".join(groups[i])) for i in shown]
        records = list(walk_trace(instructions, tokens))
        return [describe_record(records[i]) for i in shown]

    got = repr(actual[first]) if first < len(actual) else "the end of the trace"
    wanted = repr(expected[first]) if first < len(expected) else "the end of the trace"
    lines = ["traces diverge at token %d (group %d): expected %s, got %s" % (first, group_index, wanted, got)]
    if instructions is not None:
        lines.append(DESCRIBE_HEADER)
    lines.append("common context:")
    lines += window(expected, group_index - context, group_index)
    lines.append("expected:")
    lines += window(expected, group_index, group_index + context)
    lines.append("actual:")
    lines += window(actual, group_index, group_index + context)
    return "\n".join(lines)


def stop_problem(status, pc):
    """Why a run that ended with `status` ("trap" or "end") at instruction `pc` failed (one line)."""
    if status == "trap":
        return "the program trapped at %s" % _where(pc)
    return "the program ran past its last instruction without halt"
