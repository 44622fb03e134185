"""64-bit integers: a WebAssembly-to-WebAssembly pass that turns every i64 into two i32.

    Module with i64 --(legalize_module)--> the same Module with i32 values only (+ helper functions)

The decoder runs this pass at the end of decoder.decode_module, so everything
after it (the complete check, the lowering, the spec-test runner) sees a
module of i32 code.

Why a pass rather than i64 in the machine: the machine's words are 32 bits in
every token group, attention head and feed-forward row; as a pass over
WebAssembly, i64 changes neither the machine, the trace language nor SPEC, runs
on every oracle unchanged, and gets cheaper as the i32 operations it emits
become native. The price is steps (see COSTS). One instruction it emits is not
WebAssembly: i64.mul's high word uses wasmtf's `i32.mul_hi_u` (SPEC 12).

The representation. An i64 value is two i32 values, low word below the high
word on the operand stack; an i64 local, parameter or result is two i32
locals (low, high); memory keeps its 8 little-endian bytes (low word at the
address, high word 4 bytes up); an i64 global g keeps index g for its low word
and gets a new global, appended, for its high word; a block type with i64
becomes a function type with pairs (appended to the type section); function
types are legalised in place (so call_indirect still matches).

The walk. Each function that touches i64 is walked once with its operand
stack's types. An i64 pushed by `i64.const` or `local.get` stays LAZY: no code
yet, only where its two words come from. The next instruction that consumes
it reads those words directly (`local.get lo` ...); any other instruction
first materialises every lazy value (their words pushed in stack order), so a
lazy value never sits below a materialised one. An i64 operand on the stack is
set aside in two temporary locals (`local.set hi; local.set lo`), so each
operation's code reads every operand word as often as it needs.

The operations. Cheap ones inline (add, sub, mul, comparisons, eqz, bitwise
ops, shifts and rotations by constants, clz/ctz/popcnt, conversions, loads and
stores); the others call a helper function, written once below in i32
WebAssembly and added to the module when first needed (div/rem with their
traps, shifts and rotations by a variable amount). Every helper is
exact for every operand and runs a bounded number of steps. Traps are
`unreachable`; a 64-bit store writes its high word first, so a store that
traps has written nothing.

COSTS (WebAssembly i32 instructions of the legalised code, operands in
locals; the operands' `local.get` and the result's `local.set` included on
both sides): i64 add 11 + 2 vs i32 4, sub 10 + 2, comparisons 10 + 1, eqz
5 + 1, and/or/xor 6 + 2, shifts and rotations by a constant 4-14 + 2; mul
14 + 2 (3 i32.mul, 1 i32.mul_hi_u, whose group is 10 tokens instead of 5) vs
i32 4; div/rem by a divisor below 2^16 (or of operands below 2^32) at most ~70
instructions with 8 i32 divisions, else up to 64 rounds of at most 61 (every i32 operation
emitted is one machine instruction, SPEC 12); measured figures are in the README.
"""
import collections
import re

from reference import MUL_HI, WORD_MODULUS

# ---------------------------------------------------------------------------
# 1. Errors and small definitions
# ---------------------------------------------------------------------------


class InvalidCode(ValueError):
    """The function's code does not validate (the message names function and byte offset)."""


class GiveUp(Exception):
    """The walk met an instruction it does not type (reference and table instructions);
    the function stays as it was and the front end reports what it cannot run."""


HALF_BITS = 32                       # an i64 is two words of 32 bits
WORD_MASK = WORD_MODULUS - 1
BLOCKS = ("block", "loop", "if")
# A pair of instructions that push an i64's low and high word (each an (opcode, immediate) item).
Pair = collections.namedtuple("Pair", "lo hi")
# An operand stack entry: its value type, and for a lazy i64 the Pair that pushes it (else None).
Entry = collections.namedtuple("Entry", "type lazy")
# A structured-control label: its kind ("function", "block", "loop", "if"; "else" in an if's else
# arm), the stack height below it, its parameter and result types, the front end's Jumps (or None).
Frame = collections.namedtuple("Frame", "kind height params results jumps", defaults=(None,))


def where(function, offset):
    """How a problem in a function's code is located: its label and the byte offset."""
    return "%s, byte offset 0x%x" % (function.label(), offset)


def block_signature(types, block_type):
    """(params, results) of a block type: () or (t,), or ("type", index) of the function
    types `types`; None for a bad index."""
    if block_type and block_type[0] == "type":
        index = block_type[1]
        return types[index] if 0 <= index < len(types) else None
    return (), tuple(block_type)


def dead_code_end(code, position):
    """The position of the `else` or `end` that closes the block code[position] is in (len(code)
    if none): what follows a br, br_table, return or unreachable up to there never runs."""
    depth = 0
    while position < len(code) and (depth or code[position].name not in ("else", "end")):
        depth += {"block": 1, "loop": 1, "if": 1, "end": -1}.get(code[position].name, 0)
        position += 1
    return position


class CodeWalk:
    """The walk of one function's code with its labels (Frames), shared by this pass and the front
    end's lowering; a subclass keeps the operand stack (`height`, `set_stack`), checks a block's
    values (`check_end`) and does each instruction (`step`). Dead code (after br, br_table, return
    or unreachable) is skipped, the stack then as if a branch had left the block."""

    error = InvalidCode

    def __init__(self, function):
        self.function = function
        self.local_types = list(function.params) + list(function.locals)
        self.frames = []
        self.offset = function.offset       # the byte offset of the instruction walked
        self.unreachable = False            # set by br, br_table, return and unreachable

    def fail(self, what):
        raise self.error("%s: invalid module: %s" % (where(self.function, self.offset), what))

    def walk(self):
        """Each instruction of the body in turn: `step(code, position)` does code[position]
        (and any it reads ahead) and gives the position of the next."""
        self.frames.append(Frame("function", 0, (), tuple(self.function.results)))
        code, position = self.function.code, 0
        while position < len(code):
            self.offset = code[position].offset
            position = self.step(code, position)
            if self.unreachable:
                self.unreachable = False
                position = dead_code_end(code, position)
                self.set_stack(self.frames[-1].height, self.frames[-1].results)
        if self.frames:
            self.fail("the body ends before its blocks do")

    def open_block(self, kind, params, results, jumps=None):
        """A new label (its operands already popped): the block starts with its parameters."""
        self.frames.append(Frame(kind, self.height, tuple(params), tuple(results), jumps))
        self.set_stack(self.height, params)

    def begin_else(self):
        """The if's values checked; its Frame, now of kind "else", with its parameters again."""
        frame = self.frames[-1]
        if frame.kind != "if":
            self.fail("else without if")
        self.check_end(frame)
        self.frames[-1] = frame._replace(kind="else")
        self.set_stack(frame.height, frame.params)
        return frame

    def end_block(self):
        """The block's values checked and its label closed: its Frame."""
        frame = self.frames[-1]
        self.check_end(frame)
        self.set_stack(frame.height, frame.results)
        return self.frames.pop()

    def branch_target(self, depth):
        """(the Frame of label `depth`, the types of the values a branch to it carries:
        a loop's parameters, else its results)."""
        if depth >= len(self.frames):
            self.fail("branch depth %d, only %d labels" % (depth, len(self.frames)))
        frame = self.frames[-1 - depth]
        return frame, (frame.params if frame.kind == "loop" else frame.results)

    def local_type(self, index):
        if index >= len(self.local_types):
            self.fail("local %d does not exist" % index)
        return self.local_types[index]


def words(value_types):
    """Value types with each i64 as two i32: ("i64", "i32") -> ("i32", "i32", "i32")."""
    return tuple(word for t in value_types for word in (("i32", "i32") if t == "i64" else (t,)))


def const(value):
    return ("i32.const", value % WORD_MODULUS)


def get(index):
    return ("local.get", index)


def halves(value):
    """(low word, high word) of a 64-bit integer (any sign)."""
    value %= 1 << 64
    return value & WORD_MASK, value >> HALF_BITS


# ---------------------------------------------------------------------------
# 2. Types of the instructions the walk passes through unchanged
# ---------------------------------------------------------------------------

NUMBER_TYPES = ("i32", "i64", "f32", "f64")
COMPARISON_OPS = {"eq", "ne", "lt", "gt", "le", "ge", "lt_s", "lt_u", "gt_s", "gt_u", "le_s", "le_u",
                  "ge_s", "ge_u"}
UNARY_OPS = {"clz", "ctz", "popcnt", "abs", "neg", "ceil", "floor", "trunc", "nearest", "sqrt",
             "extend8_s", "extend16_s", "extend32_s"}
CONVERSION = re.compile(r"^\w+\.\w+_(i32|i64|f32|f64)(?:_[su])?$")     # e.g. f64.convert_i64_u
OTHER_SIGNATURES = {"nop": ((), ()), "memory.size": ((), ("i32",)), "memory.grow": (("i32",), ("i32",)),
                    "memory.copy": (("i32",) * 3, ()), "memory.fill": (("i32",) * 3, ()),
                    "memory.init": (("i32",) * 3, ()), "data.drop": ((), ())}


def signature(name):
    """(popped types, pushed types) of a numeric, memory or bulk-memory instruction,
    read from its name; GiveUp for the others."""
    if name in OTHER_SIGNATURES:
        return OTHER_SIGNATURES[name]
    type_, _, op = name.partition(".")
    if type_ not in NUMBER_TYPES:
        raise GiveUp(name)
    conversion = CONVERSION.match(name)
    if conversion:
        return (conversion.group(1),), (type_,)
    if op == "const":
        return (), (type_,)
    if op.startswith("load"):
        return ("i32",), (type_,)
    if op.startswith("store"):
        return ("i32", type_), ()
    if op == "eqz":
        return (type_,), ("i32",)
    if op in COMPARISON_OPS:
        return (type_, type_), ("i32",)
    if op in UNARY_OPS:
        return (type_,), (type_,)
    return (type_, type_), (type_,)


# ---------------------------------------------------------------------------
# 3. Helper functions, in i32 WebAssembly
# ---------------------------------------------------------------------------
# A small text: one instruction per `;`-separated statement, `#` starts a
# comment. `block NAME` / `loop NAME` open a label (no block type), `end`
# closes it, `br NAME` / `br_if NAME` name it; an argument is a parameter or
# local's name, a helper's name (for `call`) or an integer. A helper leaves
# its results on the stack at its end (or `return`s them). Every local starts
# at 0 (WebAssembly zeroes declared locals). Step counts below are i32
# instructions from the call to the return.

HELPERS = {}    # name -> (parameter names, result count, local names, text)


def helper(name, params, results, temps, text):
    HELPERS[name] = (params.split(), results, temps.split(), text)


helper("divmod_u", "nl nh dl dh", 4, "rl rh count t", """
    # (n /u d, n %u d) as (quotient low, high, remainder low, high); d != 0 (the callers trap).
    # n, d < 2^32: the i32 division. d < 2^16: schoolbook division by the i32 one, on n's four
    # 16-bit digits, most significant first: with the remainder r < d so far, r * 2^16 + digit
    # <= (d - 1) * 2^16 + 2^16 - 1 < d * 2^16 <= 2^32 fits a word, and its quotient digit is
    # below 2^16. d >= 2^63: the quotient is 0 or 1. Else restoring division:
    # the 128-bit pair (r, n) shifts left one bit per round and each quotient bit enters n from
    # the right; r < d < 2^63 keeps 2r + 1 below 2^64. Leading zero words and bytes of n give
    # zero quotient bits and are skipped. Rounds: at most 64, each at most 61 instructions.
    block wide
      local.get nh ; br_if wide ; local.get dh ; br_if wide
      local.get nl ; local.get dl ; i32.div_u ; i32.const 0 ; local.get nl ; local.get dl ; i32.rem_u ; i32.const 0
      return
    end
    block wide_divisor
      local.get dh ; br_if wide_divisor ; local.get dl ; i32.const 0x10000 ; i32.ge_u ; br_if wide_divisor
      local.get nh ; i32.const 16 ; i32.shr_u ; local.set t                          # digit 3
      local.get t ; local.get dl ; i32.div_u ; i32.const 16 ; i32.shl ; local.set rh
      local.get t ; local.get dl ; i32.rem_u ; i32.const 16 ; i32.shl
      local.get nh ; i32.const 0xFFFF ; i32.and ; i32.or ; local.set t              # r * 2^16 + digit 2
      local.get rh ; local.get t ; local.get dl ; i32.div_u ; i32.or ; local.set rh  # quotient high
      local.get t ; local.get dl ; i32.rem_u ; i32.const 16 ; i32.shl
      local.get nl ; i32.const 16 ; i32.shr_u ; i32.or ; local.set t                # r * 2^16 + digit 1
      local.get t ; local.get dl ; i32.div_u ; i32.const 16 ; i32.shl ; local.set rl
      local.get t ; local.get dl ; i32.rem_u ; i32.const 16 ; i32.shl
      local.get nl ; i32.const 0xFFFF ; i32.and ; i32.or ; local.set t              # r * 2^16 + digit 0
      local.get rl ; local.get t ; local.get dl ; i32.div_u ; i32.or ; local.get rh  # quotient
      local.get t ; local.get dl ; i32.rem_u ; i32.const 0                           # remainder
      return
    end
    block below_2_63
      local.get dh ; i32.const 0 ; i32.ge_s ; br_if below_2_63
      local.get nl ; local.get dl ; i32.ge_u ; local.get nh ; local.get dh ; i32.gt_u
      local.get nh ; local.get dh ; i32.eq ; select ; local.set t                # t = (n >=u d)
      local.get t ; i32.const 0                                                 # quotient t
      local.get dl ; i32.const 0 ; local.get t ; select ; local.set count       # n - (t ? d : 0)
      local.get nl ; local.get count ; i32.sub
      local.get nh ; local.get dh ; i32.const 0 ; local.get t ; select ; i32.sub
      local.get nl ; local.get count ; i32.lt_u ; i32.sub
      return
    end
    i32.const 64 ; local.set count
    block high_word
      local.get nh ; br_if high_word
      local.get nl ; local.set nh ; i32.const 0 ; local.set nl ; i32.const 32 ; local.set count
    end
    block bytes_done
      loop bytes
        local.get nh ; i32.const 0x1000000 ; i32.ge_u ; br_if bytes_done
        local.get count ; i32.const 8 ; i32.le_u ; br_if bytes_done
        local.get nh ; i32.const 8 ; i32.shl ; local.get nl ; i32.const 24 ; i32.shr_u ; i32.add ; local.set nh
        local.get nl ; i32.const 8 ; i32.shl ; local.set nl
        local.get count ; i32.const 8 ; i32.sub ; local.set count
        br bytes
      end
    end
    loop bits
      local.get rh ; local.get rh ; i32.add ; local.get rl ; i32.const 0 ; i32.lt_s ; i32.add ; local.set rh
      local.get rl ; local.get rl ; i32.add ; local.get nh ; i32.const 0 ; i32.lt_s ; i32.add ; local.set rl
      local.get nh ; local.get nh ; i32.add ; local.get nl ; i32.const 0 ; i32.lt_s ; i32.add ; local.set nh
      local.get nl ; local.get nl ; i32.add ; local.set nl
      block below
        local.get rl ; local.get dl ; i32.ge_u ; local.get rh ; local.get dh ; i32.gt_u
        local.get rh ; local.get dh ; i32.eq ; select ; i32.eqz ; br_if below      # r <u d: bit 0
        local.get rh ; local.get dh ; i32.sub ; local.get rl ; local.get dl ; i32.lt_u ; i32.sub ; local.set rh
        local.get rl ; local.get dl ; i32.sub ; local.set rl
        local.get nl ; i32.const 1 ; i32.add ; local.set nl
      end
      local.get count ; i32.const 1 ; i32.sub ; local.tee count ; br_if bits
    end
    local.get nl ; local.get nh ; local.get rl ; local.get rh
""")

# Pieces of the division helpers: trap when b = 0; the unsigned division of a by b as
# they are (divmod_u's 4 results on the stack); the operands' sign flags.
TRAP_ON_ZERO = """
    block nonzero
      local.get bl ; br_if nonzero ; local.get bh ; br_if nonzero ; unreachable
    end
"""
DIVMOD = "\n    local.get al ; local.get ah ; local.get bl ; local.get bh ; call divmod_u\n"
SIGNS = "\n    local.get ah ; i32.const 0 ; i32.lt_s ; local.set sa ; local.get bh ; i32.const 0 ; i32.lt_s ; local.set sb\n"


def absolute(x, sign):
    """Text: |x| of the pair (xl, xh) in place when the flag `sign` is set (|INT64_MIN| = 2^63
    is right as an unsigned magnitude)."""
    return """
    block {x}_done
      local.get {sign} ; i32.eqz ; br_if {x}_done
      i32.const 0 ; local.get {x}h ; i32.sub ; local.get {x}l ; i32.const 0 ; i32.ne ; i32.sub ; local.set {x}h
      i32.const 0 ; local.get {x}l ; i32.sub ; local.set {x}l
    end
""".format(x=x, sign=sign)


helper("div_u", "al ah bl bh", 2, "", "# a /u b; traps when b = 0." + TRAP_ON_ZERO + DIVMOD + "drop ; drop")
helper("rem_u", "al ah bl bh", 2, "rl rh", "# a %u b; traps when b = 0." + TRAP_ON_ZERO + DIVMOD
       + "local.set rh ; local.set rl ; drop ; drop ; local.get rl ; local.get rh")
helper("div_s", "al ah bl bh", 2, "sa sb ql qh", """
    # a /s b rounded toward zero; traps when b = 0 and for INT64_MIN / -1 (2^63 does not fit).
""" + TRAP_ON_ZERO + """
    block fits
      local.get al ; i32.eqz ; local.get ah ; i32.const 0x80000000 ; i32.eq ; i32.add
      local.get bl ; i32.const -1 ; i32.eq ; i32.add ; local.get bh ; i32.const -1 ; i32.eq ; i32.add
      i32.const 4 ; i32.ne ; br_if fits ; unreachable
    end""" + SIGNS + absolute("a", "sa") + absolute("b", "sb") + DIVMOD + """
    drop ; drop ; local.set qh ; local.set ql
    local.get sa ; local.get sb ; i32.ne ; local.set sa          # the quotient's sign
""" + absolute("q", "sa") + "local.get ql ; local.get qh")
helper("rem_s", "al ah bl bh", 2, "sa sb rl rh", "# a %s b with the sign of a (INT64_MIN % -1 = 0); traps when b = 0."
       + TRAP_ON_ZERO + SIGNS + absolute("a", "sa") + absolute("b", "sb") + DIVMOD
       + "local.set rh ; local.set rl ; drop ; drop" + absolute("r", "sa") + "local.get rl ; local.get rh")

# The shifts and rotations by a variable n: n mod 64 >= 32 is bit 5 of n, i.e. (n << 26) <s 0,
# and is done first by moving words (move); the rest, n mod 32 (what i32 shifts use), is 0
# when n << 27 = 0, else each word takes the bits the other shifts out (words): 32 - n mod 32
# lies in 1..31. The two parts of a new word have disjoint bits, so + is |.
SHIFT = """
    # (lo, hi) {what} (n mod 64).
    block small
      local.get n ; i32.const 26 ; i32.shl ; i32.const 0 ; i32.ge_s ; br_if small
      {move}
    end
    block bits
      local.get n ; i32.const 27 ; i32.shl ; br_if bits
      local.get lo ; local.get hi ; return
    end
    {words}
"""


def joined(x, x_shift, y, y_shift):
    """Text: the word (x x_shift n) + (y y_shift (32 - n))."""
    return ("local.get %s ; local.get n ; i32.%s ; local.get %s ; i32.const 32 ; local.get n ; i32.sub ; i32.%s ; "
            "i32.add\n" % (x, x_shift, y, y_shift))


helper("shl", "lo hi n", 2, "", SHIFT.format(
    what="<<", move="local.get lo ; local.set hi ; i32.const 0 ; local.set lo",
    words="local.get lo ; local.get n ; i32.shl\n" + joined("hi", "shl", "lo", "shr_u")))
helper("shr_u", "lo hi n", 2, "", SHIFT.format(
    what=">>u (zeros fill the high word)", move="local.get hi ; local.set lo ; i32.const 0 ; local.set hi",
    words=joined("lo", "shr_u", "hi", "shl") + "local.get hi ; local.get n ; i32.shr_u"))
helper("shr_s", "lo hi n", 2, "", SHIFT.format(
    what=">>s (the sign of hi fills the high word)",
    move="local.get hi ; local.set lo ; i32.const 0 ; local.get hi ; i32.const 0 ; i32.lt_s ; i32.sub ; local.set hi",
    words=joined("lo", "shr_u", "hi", "shl") + "local.get hi ; local.get n ; i32.shr_s"))
helper("rotl", "lo hi n", 2, "t", SHIFT.format(
    what="rotated left by (rotr by n is rotl by -n)",
    move="local.get lo ; local.set t ; local.get hi ; local.set lo ; local.get t ; local.set hi",
    words=joined("lo", "shl", "hi", "shr_u") + joined("hi", "shl", "lo", "shr_u")))


def helper_code(name, index_of, make_instruction):
    """The helper's body as Instructions (ending with the function's `end`);
    `index_of(helper name)` gives the function index a `call` names."""
    params, _, temps, text = HELPERS[name]
    local_index = {local: i for i, local in enumerate(params + temps)}
    labels, code = [], []
    for line in text.splitlines():
        for statement in line.split("#")[0].split(";"):
            words_ = statement.split()
            if not words_:
                continue
            opcode, argument = words_[0], (words_[1] if len(words_) > 1 else None)
            if opcode in ("block", "loop"):
                labels.append(argument)
                immediate = ()
            elif opcode == "end":
                labels.pop()
                immediate = None
            elif opcode in ("br", "br_if"):
                immediate = len(labels) - 1 - labels.index(argument)
            elif opcode == "call":
                immediate = index_of(argument)
            elif argument in local_index:
                immediate = local_index[argument]
            elif argument is not None:
                immediate = int(argument, 0) % WORD_MODULUS
            else:
                immediate = None
            code.append(make_instruction(opcode, immediate, 0))
    return code + [make_instruction("end", None, 0)]


# ---------------------------------------------------------------------------
# 4. The walk of one function
# ---------------------------------------------------------------------------

# x OP y on 64 bits = (high words equal ? low words OP_u : high words STRICT), STRICT the
# strict comparison of OP's direction (le -> lt, ge -> gt) and signedness.
COMPARISON_PARTS = {op: ("i32.%s_u" % op[:2], "i32.%s_%s" % ({"le": "lt", "ge": "gt"}.get(op[:2], op[:2]), op[3]))
                    for op in ("lt_s", "lt_u", "gt_s", "gt_u", "le_s", "le_u", "ge_s", "ge_u")}
HELPER_OPS = {"i64.div_u": "div_u", "i64.rem_u": "rem_u", "i64.div_s": "div_s",
              "i64.rem_s": "rem_s"}
SHIFT_OPS = ("i64.shl", "i64.shr_u", "i64.shr_s", "i64.rotl", "i64.rotr")
LOAD_WIDTHS = {"i64.load8_s": "i32.load8_s", "i64.load8_u": "i32.load8_u", "i64.load16_s": "i32.load16_s",
               "i64.load16_u": "i32.load16_u", "i64.load32_s": "i32.load", "i64.load32_u": "i32.load"}
STORE_WIDTHS = {"i64.store8": "i32.store8", "i64.store16": "i32.store16", "i64.store32": "i32.store"}


class FunctionLegalizer(CodeWalk):
    """Legalise one function's body: the i64 code becomes i32 code (see the module header)."""

    def __init__(self, pass_, function):
        super().__init__(function)
        self.pass_ = pass_
        self.local_index, count = [], 0
        for value_type in self.local_types:
            self.local_index.append(count)
            count += len(words((value_type,)))
        self.first_temp = count
        self.temps_used = 0          # temporaries this instruction has taken
        self.temps_needed = 0        # the most any instruction took
        self.code, self.stack = [], []

    # -- helpers of the walk ------------------------------------------------

    def emit(self, *items):
        for opcode, immediate in items:
            self.code.append(self.pass_.make_instruction(opcode, immediate, self.offset))

    def temp(self):
        """A temporary i32 local, free until the next instruction of the original code."""
        self.temps_used += 1
        self.temps_needed = max(self.temps_needed, self.temps_used)
        return self.first_temp + self.temps_used - 1

    def push(self, *value_types):
        self.stack += [Entry(t, None) for t in value_types]

    @property
    def height(self):
        return len(self.stack)

    def set_stack(self, height, value_types):
        del self.stack[height:]
        self.push(*value_types)

    def materialize(self, below=None):
        """Push the words of every lazy value (or of those below stack index `below`)."""
        end = len(self.stack) if below is None else below
        for k in range(end):
            if self.stack[k].lazy is not None:
                self.emit(*self.stack[k].lazy)
                self.stack[k] = Entry(self.stack[k].type, None)

    def pop(self, value_types):
        """Pop entries of `value_types` (bottom to top) off the stack, checking their types."""
        count = len(value_types)
        if self.height - count < self.frames[-1].height:
            self.fail("needs %d operands, the stack has %d" % (count, self.height - self.frames[-1].height))
        entries = self.stack[len(self.stack) - count:]
        del self.stack[len(self.stack) - count:]
        for entry, wanted in zip(entries, value_types):
            if entry.type != wanted:
                self.fail("operand of type %s where %s is expected" % (entry.type, wanted))
        return entries

    def operands(self, value_types):
        """Pop the operands of an operation and give, for each, what pushes it (a Pair for an
        i64, one item for an i32), as often as wanted: lazy values as they are, values on the
        stack set aside in temporaries (top first)."""
        self.materialize(below=max(len(self.stack) - len(value_types), 0))
        entries = self.pop(value_types)
        sources = [None] * len(entries)
        for k in reversed(range(len(entries))):
            if entries[k].lazy is not None:
                sources[k] = entries[k].lazy
            elif entries[k].type == "i64":
                low, high = self.temp(), self.temp()
                self.emit(("local.set", high), ("local.set", low))
                sources[k] = Pair(get(low), get(high))
            else:
                single = self.temp()
                self.emit(("local.set", single))
                sources[k] = get(single)
        return sources

    def check_branch(self, depth):
        """The values a branch to label `depth` carries are on top of the stack."""
        _, carried = self.branch_target(depth)
        top = [entry.type for entry in self.stack[len(self.stack) - len(carried):]]
        if len(self.stack) - len(carried) < self.frames[-1].height or top != list(carried):
            self.fail("branch needs values %s" % (list(carried),))

    def block_type(self, immediate):
        """(original params, original results, the legalised immediate) of a block type."""
        signature = block_signature(self.pass_.original_types, immediate)
        if signature is None:
            self.fail("block type index %d does not exist" % immediate[1])
        if immediate == ("i64",):
            return signature + (("type", self.pass_.type_index(((), ("i32", "i32")))),)
        return signature + (immediate,)

    # -- the walk -----------------------------------------------------------

    def step(self, code, position):
        name, immediate = code[position].name, code[position].immediate
        self.temps_used = 0
        handler = I64_OPERATIONS.get(name) or getattr(FunctionLegalizer, "step_" + name.replace(".", "_"), None)
        if handler is not None:
            handler(self, name, immediate)
        else:                                 # passed through unchanged
            popped, pushed = signature(name)
            self.materialize()
            self.pop(popped)
            self.emit((name, immediate))
            self.push(*pushed)
        return position + 1

    def step_block(self, name, immediate):
        params, results, legal = self.block_type(immediate)
        self.materialize()
        if name == "if":
            self.pop(("i32",))
        self.pop(params)
        self.open_block(name, params, results)
        self.emit((name, legal))

    step_loop = step_if = step_block

    def check_end(self, frame):
        """The stack at an else/end holds the block's results."""
        self.materialize()
        if [e.type for e in self.stack[frame.height:]] != list(frame.results):
            self.fail("block ends with %s, its type says %s"
                      % ([e.type for e in self.stack[frame.height:]], list(frame.results)))

    def step_else(self, name, immediate):
        self.begin_else()
        self.emit((name, immediate))

    def step_end(self, name, immediate):
        self.end_block()
        self.emit((name, immediate))

    def step_br(self, name, immediate):
        self.materialize()
        self.check_branch(immediate)
        self.emit((name, immediate))
        self.unreachable = True

    def step_return(self, name, immediate):
        self.step_br(name, len(self.frames) - 1)
        self.code[-1] = self.code[-1]._replace(immediate=immediate)

    def step_unreachable(self, name, immediate):
        self.emit((name, immediate))
        self.unreachable = True

    def step_br_if(self, name, immediate):
        self.materialize()
        self.pop(("i32",))
        self.check_branch(immediate)
        self.emit((name, immediate))

    def step_br_table(self, name, immediate):
        self.materialize()
        self.pop(("i32",))
        labels, default = immediate
        for depth in list(labels) + [default]:
            self.branch_target(depth)
        self.check_branch(default)
        self.emit((name, immediate))
        self.unreachable = True

    def step_call(self, name, immediate):
        if immediate >= len(self.pass_.original_signatures):
            self.fail("call of function %d, which does not exist" % immediate)
        self.call(self.pass_.original_signatures[immediate], (name, immediate))

    def step_call_indirect(self, name, immediate):
        if immediate[0] >= len(self.pass_.original_types):
            self.fail("call_indirect of type %d, which does not exist" % immediate[0])
        params, results = self.pass_.original_types[immediate[0]]
        self.call((tuple(params) + ("i32",), results), (name, immediate))

    def call(self, signature_, item):
        params, results = signature_
        self.materialize()
        self.pop(params)
        self.emit(item)
        self.push(*results)

    def step_drop(self, name, immediate):
        if len(self.stack) <= self.frames[-1].height:
            self.fail("drop of an empty stack")
        entry = self.stack.pop()
        if entry.lazy is None:
            self.emit(*[("drop", None)] * len(words((entry.type,))))

    def step_select(self, name, immediate):
        if len(self.stack) < self.frames[-1].height + 3:
            self.fail("select needs 3 operands")
        value_type = self.stack[-2].type
        if value_type != "i64":
            self.materialize()
            self.pop((value_type, value_type, "i32"))
            self.emit((name, immediate))
            self.push(value_type)
            return
        a, b, condition = self.operands(("i64", "i64", "i32"))
        self.emit(a.lo, b.lo, condition, ("select", None), a.hi, b.hi, condition, ("select", None))
        self.push("i64")

    def local(self, index):
        return self.local_type(index), self.local_index[index]

    def step_local_get(self, name, index):
        value_type, new = self.local(index)
        if value_type == "i64":
            self.stack.append(Entry("i64", Pair(get(new), get(new + 1))))
            return
        self.materialize()
        self.emit((name, new))
        self.push(value_type)

    def step_local_set(self, name, index):
        value_type, new = self.local(index)
        self.materialize()
        self.pop((value_type,))
        if value_type == "i64":
            self.emit(("local.set", new + 1), ("local.set", new))
            if name == "local.tee":
                self.stack.append(Entry("i64", Pair(get(new), get(new + 1))))
            return
        self.emit((name, new))
        if name == "local.tee":
            self.push(value_type)

    step_local_tee = step_local_set

    def global_(self, index):
        if index >= len(self.pass_.original_globals):
            self.fail("global %d does not exist" % index)
        value_type = self.pass_.original_globals[index]
        if value_type == "i64" and index not in self.pass_.high_globals:
            raise GiveUp("i64 global %d without a constant initializer" % index)
        return value_type

    def step_global_get(self, name, index):
        value_type = self.global_(index)
        self.materialize()
        self.emit((name, index))
        if value_type == "i64":
            self.emit((name, self.pass_.high_globals[index]))
        self.push(value_type)

    def step_global_set(self, name, index):
        value_type = self.global_(index)
        self.materialize()
        self.pop((value_type,))
        if value_type == "i64":
            self.emit((name, self.pass_.high_globals[index]))
        self.emit((name, index))

    # -- i64 operations ---------------------------------------------------------

    def op_const(self, name, immediate):
        low, high = halves(immediate)
        self.stack.append(Entry("i64", Pair(const(low), const(high))))

    def sign_of(self):
        """Items: x on top -> x, then the high word that sign-extends it (0 or -1)."""
        t = self.temp()
        return [("local.tee", t), const(0), get(t), const(0), ("i32.lt_s", None), ("i32.sub", None)]

    def op_extend_i32(self, name, immediate):
        self.materialize()
        self.pop(("i32",))
        self.emit(*(self.sign_of() if name.endswith("_s") else [const(0)]))
        self.push("i64")

    def op_wrap(self, name, immediate):
        self.materialize(below=len(self.stack) - 1)
        entry, = self.pop(("i64",))
        self.emit(*([entry.lazy.lo] if entry.lazy else [("drop", None)]))
        self.push("i32")

    def op_extend_in_place(self, name, immediate):
        """i64.extend8_s/16_s/32_s: the low word sign-extended, its sign in the high word."""
        a, = self.operands(("i64",))
        narrow = {"i64.extend8_s": [("i32.extend8_s", None)], "i64.extend16_s": [("i32.extend16_s", None)],
                  "i64.extend32_s": []}[name]
        self.emit(a.lo, *narrow)
        self.emit(*self.sign_of())
        self.push("i64")

    def op_load(self, name, offset):
        self.materialize()
        self.pop(("i32",))
        if name == "i64.load":            # low word at the address, high word 4 bytes up
            t = self.temp()
            self.emit(("local.tee", t), ("i32.load", offset), get(t), ("i32.load", high_offset(offset)))
        else:
            self.emit((LOAD_WIDTHS[name], offset))
            self.emit(*(self.sign_of() if name.endswith("_s") else [const(0)]))
        self.push("i64")

    def op_store(self, name, offset):
        if name in STORE_WIDTHS:          # the low word's low bytes
            self.materialize(below=len(self.stack) - 1)
            _, value = self.pop(("i32", "i64"))
            self.emit(*([value.lazy.lo] if value.lazy else [("drop", None)]))
            self.emit((STORE_WIDTHS[name], offset))
            return
        address, value = self.operands(("i32", "i64"))
        # the high word first: a store that traps (past the memory) then writes nothing
        self.emit(address, value.hi, ("i32.store", high_offset(offset)), address, value.lo, ("i32.store", offset))

    def op_add_sub(self, name, immediate):
        a, b = self.operands(("i64", "i64"))
        if name == "i64.add":             # carry = (a.lo + b.lo mod 2^32) <u a.lo
            low = self.temp()
            self.emit(a.lo, b.lo, ("i32.add", None), ("local.tee", low), a.hi, b.hi, ("i32.add", None),
                      get(low), a.lo, ("i32.lt_u", None), ("i32.add", None))
        else:                             # borrow = a.lo <u b.lo
            self.emit(a.lo, b.lo, ("i32.sub", None), a.hi, b.hi, ("i32.sub", None),
                      a.lo, b.lo, ("i32.lt_u", None), ("i32.sub", None))
        self.push("i64")

    def op_bitwise(self, name, immediate):
        a, b = self.operands(("i64", "i64"))
        for x, y in ((a.lo, b.lo), (a.hi, b.hi)):
            self.emit(*bitwise_word(name.replace("i64", "i32"), x, y))
        self.push("i64")

    def op_eqz(self, name, immediate):
        a, = self.operands(("i64",))
        self.emit(const(0), a.lo, ("i32.eqz", None), a.hi, ("select", None))    # hi != 0 ? 0 : lo == 0
        self.push("i32")

    def op_compare(self, name, immediate):
        a, b = self.operands(("i64", "i64"))
        op = name[4:]
        if op in ("eq", "ne"):            # hi equal ? (lo eq / lo ne) : (0 / 1)
            self.emit(a.lo, b.lo, ("i32." + op, None), const(op == "ne"))
        else:
            low_op, high_op = COMPARISON_PARTS[op]
            self.emit(a.lo, b.lo, (low_op, None), a.hi, b.hi, (high_op, None))
        self.emit(a.hi, b.hi, ("i32.eq", None), ("select", None))
        self.push("i32")

    def op_bit_count(self, name, immediate):
        a, = self.operands(("i64",))
        if name == "i64.popcnt":
            self.emit(a.lo, ("i32.popcnt", None), a.hi, ("i32.popcnt", None), ("i32.add", None))
        else:       # clz: hi != 0 ? clz(hi) : 32 + clz(lo); ctz: lo != 0 ? ctz(lo) : 32 + ctz(hi)
            first, second = (a.hi, a.lo) if name == "i64.clz" else (a.lo, a.hi)
            op = name.replace("i64", "i32")
            self.emit(first, (op, None), second, (op, None), const(HALF_BITS), ("i32.add", None), first,
                      ("select", None))
        self.emit(const(0))
        self.push("i64")

    def op_mul(self, name, immediate):
        # a * b mod 2^64 = al*bl + 2^32 (al*bh + ah*bl) mod 2^64: the low word al*bl mod 2^32,
        # the high word floor(al*bl / 2^32) + al*bh + ah*bl mod 2^32 (i32.mul_hi_u, SPEC 12)
        a, b = self.operands(("i64", "i64"))
        self.emit(a.lo, b.lo, ("i32.mul", None),
                  a.lo, b.lo, (MUL_HI, None), a.lo, b.hi, ("i32.mul", None), ("i32.add", None),
                  a.hi, b.lo, ("i32.mul", None), ("i32.add", None))
        self.push("i64")

    def op_helper(self, name, immediate):
        a, b = self.operands(("i64", "i64"))
        self.emit(a.lo, a.hi, b.lo, b.hi, ("call", self.pass_.helper_index(HELPER_OPS[name])))
        self.push("i64")

    def op_shift(self, name, immediate):
        a, n = self.operands(("i64", "i64"))
        if n.lo[0] == "i32.const":
            self.emit(*constant_shift(name, a, n.lo[1] % 64))
        elif name == "i64.rotr":          # rotr by n = rotl by -n (mod 64)
            self.emit(a.lo, a.hi, const(0), n.lo, ("i32.sub", None), ("call", self.pass_.helper_index("rotl")))
        else:
            self.emit(a.lo, a.hi, n.lo, ("call", self.pass_.helper_index(name[4:])))
        self.push("i64")


def high_offset(offset):
    """The memarg offset of the high word. Past 2^32 - 1 it is clamped: such an access traps
    for every address anyway (address + offset + 8 > 2^32 > any memory)."""
    return min(offset + 4, WORD_MASK)


def bitwise_word(op, x, y):
    """Items for the word x OP y; a constant word 0 or all ones gives the result directly."""
    for constant, other in ((x, y), (y, x)):
        if constant[0] == "i32.const" and constant[1] in (0, WORD_MASK):
            if (op, constant[1]) in (("i32.and", WORD_MASK), ("i32.or", 0), ("i32.xor", 0)):
                return [other]
            if op != "i32.xor":
                return [constant]             # x & 0 = 0, x | -1 = -1
    return [x, y, (op, None)]


def shift_word(count, shift):
    """Items that shift the word on top by a constant count (none for 0)."""
    return [const(count), (shift, None)] if count else []


def constant_shift(name, a, count):
    """Items for a shift or rotation of the pair a by a constant count in 0..63."""
    if name == "i64.rotr":
        name, count = "i64.rotl", (64 - count) % 64
    if count == 0:
        return [a.lo, a.hi]
    low, high = a.lo, a.hi
    if name == "i64.rotl" and count >= HALF_BITS:     # rotate by 32: swap the words
        low, high, count = high, low, count - HALF_BITS
        if count == 0:
            return [low, high]
    up, down = [const(count), ("i32.shl", None)], [const(HALF_BITS - count), ("i32.shr_u", None)]
    if name == "i64.rotl":
        return [low, *up, high, *down, ("i32.add", None), high, *up, low, *down, ("i32.add", None)]
    if name == "i64.shl":
        if count >= HALF_BITS:             # the low word moves up whole, then shifts by count - 32
            return [const(0), low] + shift_word(count - HALF_BITS, "i32.shl")
        return [low, *up, high, *up, low, *down, ("i32.add", None)]
    shift = "i32.shr_s" if name == "i64.shr_s" else "i32.shr_u"
    if count >= HALF_BITS:                 # the high word moves down whole; its sign (or 0) fills
        fill = [high, const(HALF_BITS - 1), ("i32.shr_s", None)] if name == "i64.shr_s" else [const(0)]
        return [high] + shift_word(count - HALF_BITS, shift) + fill
    back = [const(HALF_BITS - count), ("i32.shl", None)]    # the high word's bits that move down
    return [low, const(count), ("i32.shr_u", None), high, *back, ("i32.add", None), high, const(count), (shift, None)]


I64_OPERATIONS = {"i64.const": FunctionLegalizer.op_const, "i64.extend_i32_s": FunctionLegalizer.op_extend_i32,
                  "i64.extend_i32_u": FunctionLegalizer.op_extend_i32, "i32.wrap_i64": FunctionLegalizer.op_wrap,
                  "i64.add": FunctionLegalizer.op_add_sub, "i64.sub": FunctionLegalizer.op_add_sub,
                  "i64.eqz": FunctionLegalizer.op_eqz, "i64.mul": FunctionLegalizer.op_mul, "i64.load": FunctionLegalizer.op_load,
                  "i64.store": FunctionLegalizer.op_store}
I64_OPERATIONS.update({"i64." + op: FunctionLegalizer.op_compare for op in ["eq", "ne"] + list(COMPARISON_PARTS)})
I64_OPERATIONS.update({"i64." + op: FunctionLegalizer.op_bitwise for op in ("and", "or", "xor")})
I64_OPERATIONS.update({"i64." + op: FunctionLegalizer.op_bit_count for op in ("clz", "ctz", "popcnt")})
I64_OPERATIONS.update({name: FunctionLegalizer.op_extend_in_place
                       for name in ("i64.extend8_s", "i64.extend16_s", "i64.extend32_s")})
I64_OPERATIONS.update({name: FunctionLegalizer.op_load for name in LOAD_WIDTHS})
I64_OPERATIONS.update({name: FunctionLegalizer.op_store for name in STORE_WIDTHS})
I64_OPERATIONS.update({name: FunctionLegalizer.op_helper for name in HELPER_OPS})
I64_OPERATIONS.update({name: FunctionLegalizer.op_shift for name in SHIFT_OPS})


# ---------------------------------------------------------------------------
# 5. The module
# ---------------------------------------------------------------------------

class ModuleLegalizer:
    """The module-wide state of the pass: original types, high-word globals, helpers added."""

    def __init__(self, module, make_function, make_instruction):
        self.module = module
        self.make_function = make_function
        self.make_instruction = make_instruction
        self.original_types = list(module.types)
        self.original_signatures = [(tuple(f.params), tuple(f.results)) for f in module.functions]
        self.original_globals = [g["type"] for g in module.globals]
        self.high_globals = {}       # i64 global -> index of its high-word global
        self.helpers = {}            # helper name -> function index

    def type_index(self, function_type):
        if function_type not in self.module.types:
            self.module.types.append(function_type)
        return self.module.types.index(function_type)

    def helper_index(self, name):
        """The function index of helper `name`, added (with the helpers it calls) when first used."""
        if name not in self.helpers:
            params, results, temps, _ = HELPERS[name]
            function = self.make_function(len(self.module.functions), (("i32",) * len(params), ("i32",) * results))
            function.names = ["i64 helper %s" % name]
            function.locals = ["i32"] * len(temps)
            function.offset = 0
            self.module.functions.append(function)
            self.helpers[name] = function.index
            function.code = helper_code(name, self.helper_index, self.make_instruction)
        return self.helpers[name]

    def uses_i64(self, function):
        """Does the function have i64 values or instructions (incl. calls and globals of i64)?"""
        if "i64" in tuple(function.params) + tuple(function.results) + tuple(function.locals):
            return True
        for instruction in function.code:
            name, immediate = instruction.name, instruction.immediate
            if "i64" in name:
                return True
            if name in BLOCKS:
                if "i64" in sum(block_signature(self.original_types, immediate) or ((), ()), ()):
                    return True
            elif name == "select" and immediate and "i64" in immediate:
                return True
            elif name == "call" and immediate < len(self.original_signatures):
                if "i64" in sum(self.original_signatures[immediate], ()):
                    return True
            elif name == "call_indirect" and immediate[0] < len(self.original_types):
                if "i64" in sum(self.original_types[immediate[0]], ()):
                    return True
            elif name in ("global.get", "global.set") and immediate < len(self.original_globals):
                if self.original_globals[immediate] == "i64":
                    return True
        return False

    def legalize_globals(self):
        """Each i64 global with a constant initializer: its low word stays global g, its high
        word is a new global at the end (indices of the others do not change)."""
        for index, global_ in enumerate(list(self.module.globals)):
            init = global_.get("init") or []
            if global_["type"] != "i64" or global_["import_from"] is not None or len(init) != 2 \
                    or init[0].name != "i64.const":
                continue
            low, high = halves(init[0].immediate)
            global_.update(type="i32", init=[init[0]._replace(name="i32.const", immediate=low), init[1]])
            self.high_globals[index] = len(self.module.globals)
            self.module.globals.append(dict(global_, init=[init[0]._replace(name="i32.const", immediate=high),
                                                           init[1]]))

    def run(self):
        module = self.module
        users = [f for f in module.functions if f.import_from is None and self.uses_i64(f)]
        if not users:
            return
        self.legalize_globals()
        module.types[:] = [(words(params), words(results)) for params, results in module.types]
        for function in list(module.functions):
            if function.import_from is not None:
                function.params, function.results = words(function.params), words(function.results)
        for function in users:
            walk = FunctionLegalizer(self, function)
            try:
                walk.walk()
            except GiveUp:
                continue                  # left as it is: the front end reports it
            function.code = walk.code
            function.locals = list(words(function.locals)) + ["i32"] * walk.temps_needed
            function.params, function.results = words(function.params), words(function.results)


def legalize_module(module, make_function, make_instruction):
    """Legalise the decoded module in place (see the module header): afterwards its code,
    types, locals and globals have no i64, except in functions the walk cannot type (left
    as they were, for the front end to report). `make_function(index, (params, results))`
    and `make_instruction(name, immediate, offset)` build the front end's objects.
    InvalidCode when a function that uses i64 does not validate."""
    ModuleLegalizer(module, make_function, make_instruction).run()
    return module
