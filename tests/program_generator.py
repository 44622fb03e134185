"""Random valid programs that always halt (or trap), for tests of the reference and the model.

    random_program(rng, n_instructions=40) -> (instructions, input_bytes or None)

A program is main (statements, then `halt`) followed by a few functions.
Every statement leaves the operand stack as it found it; values are built by
small expression trees. What a program can contain: arithmetic and
comparisons on edge bit patterns (0, 1, -1, INT_MIN, INT_MAX) and random
words, select, locals 0..255 (loop counters live in locals 254, 255), loads
and stores of every width and sign (in a scratch area and at the very top of
memory), loops with bounded counters, forward skips (`br`, `br_if`), calls
with parameters and results, nested calls, bounded recursion, output,
`input_base` with an input, and sometimes a trap (the `trap` instruction or
an out-of-bounds access) at a random point.

Why it halts: loops count a private local down from 1..3; a function calls
only functions defined after it, except the recursive one, which recurses on
its argument n (a constant 0..3) down to 0.
"""
import reference

WORD = reference.WORD_MODULUS
EDGE_WORDS = [0, 1, WORD - 1, 1 << 31, (1 << 31) - 1]   # 0, 1, -1, INT_MIN, INT_MAX
SMALL_WORD_LIMIT = 300                                 # small operands exercise single-byte carries
BINARY_OPS = ["i32.add", "i32.sub", "i32.eq", "i32.ne", "i32.lt_s", "i32.lt_u", "i32.gt_s", "i32.gt_u",
              "i32.le_s", "i32.le_u", "i32.ge_s", "i32.ge_u"]
LOADS = {opcode: width for opcode, (width, _) in reference.LOADS.items()}   # bytes touched
STORES = reference.STORES
SCRATCH_ADDRESS, SCRATCH_BYTES = 0x2000, 64      # loads and stores hit this area (so loads see stores) ...
MAX_OFFSET = 8                                   # ... with offsets 0..8
INPUT_ADDRESS = 0x3000
MAX_INPUT_BYTES = 8
MAX_LOOP_NESTING = 2
LOOP_COUNTER_LOCAL = reference.LOCALS_PER_FRAME - MAX_LOOP_NESTING   # a loop at nesting k counts in local 254 + k
MAX_LOOP_COUNT = 3
MAX_RECURSION_ARGUMENT = 3
MAX_EXPRESSION_DEPTH = 2
MAX_PARAMETERS = 3


class Function:
    """A function to generate: its entry label, parameter count, whether it returns a value."""

    def __init__(self, index, parameters, returns_value):
        self.index = index
        self.parameters = parameters
        self.returns_value = returns_value
        self.entry = None  # label, set when generated


class Builder:
    """Instructions with symbolic targets: ("br", label) is resolved to target - index - 1."""

    def __init__(self, rng, with_input):
        self.rng = rng
        self.code = []           # (opcode, immediate) or (opcode, Label)
        self.places = {}         # label -> instruction index
        self.with_input = with_input
        self.functions = []
        self.recursive = None
        self.input_length = 0

    def emit(self, opcode, immediate=0):
        self.code.append((opcode, immediate))

    def new_label(self):
        return object()

    def place(self, label):
        self.places[label] = len(self.code)

    def jump(self, opcode, label):
        """br / br_if / call / return to a label; `return` targets its function's entry (F - R - 1)."""
        self.code.append((opcode, label))

    def resolve(self):
        instructions = []
        for index, (opcode, immediate) in enumerate(self.code):
            if not isinstance(immediate, int):
                immediate = (self.places[immediate] - index - 1) % WORD
            instructions.append((opcode, immediate))
        return instructions

    # -- values: each pushes exactly one word ---------------------------------

    def random_word(self):
        choice = self.rng.random()
        if choice < 0.4:
            return self.rng.choice(EDGE_WORDS)
        if choice < 0.7:
            return self.rng.randrange(SMALL_WORD_LIMIT)
        return self.rng.randrange(WORD)

    def random_local(self):
        return self.rng.randrange(8) if self.rng.random() < 0.8 else self.rng.randrange(LOOP_COUNTER_LOCAL)

    def scratch_access(self, width):
        """(address, offset) of an in-bounds access: in the scratch area, or ending exactly at 2**24."""
        offset = self.rng.randrange(MAX_OFFSET + 1)
        if self.rng.random() < 0.1:
            return reference.MEMORY_SIZE - width - offset, offset
        return SCRATCH_ADDRESS + self.rng.randrange(SCRATCH_BYTES), offset

    def value(self, depth, caller):
        kinds = ["const", "local", "load"]
        if depth < MAX_EXPRESSION_DEPTH:
            kinds += ["binary", "binary", "eqz", "select", "tee"]
            if any(f.returns_value for f in self.callable_from(caller)):
                kinds.append("call")
        if self.with_input:
            kinds.append("input")
        kind = self.rng.choice(kinds)
        if kind == "const":
            self.emit("i32.const", self.random_word())
        elif kind == "local":
            self.emit("local.get", self.random_local())
        elif kind == "load":
            opcode = self.rng.choice(list(LOADS))
            address, offset = self.scratch_access(LOADS[opcode])
            self.emit("i32.const", address)
            self.emit(opcode, offset)
        elif kind == "binary":
            self.value(depth + 1, caller)
            self.value(depth + 1, caller)
            self.emit(self.rng.choice(BINARY_OPS))
        elif kind == "eqz":
            self.value(depth + 1, caller)
            self.emit("i32.eqz")
        elif kind == "select":
            for _ in range(3):
                self.value(depth + 1, caller)
            self.emit("select")
        elif kind == "tee":
            self.value(depth + 1, caller)
            self.emit("local.tee", self.random_local())
        elif kind == "call":
            self.call(self.rng.choice([f for f in self.callable_from(caller) if f.returns_value]), caller)
        else:  # a byte of the input (or its NUL, or a zero after it)
            self.emit("i32.const", INPUT_ADDRESS + self.rng.randrange(self.input_length + 2))
            self.emit("i32.load8_u")

    def callable_from(self, caller):
        """Functions defined after `caller` (main = None calls any): no call cycles."""
        first = 0 if caller is None else caller.index + 1
        return [f for f in self.functions if f.index >= first]

    def call(self, function, caller):
        for _ in range(function.parameters):
            self.value(MAX_EXPRESSION_DEPTH, caller)
        self.jump("call", function.entry)

    # -- statements: each leaves the stack as it found it ---------------------

    def statement(self, loop_nesting, caller):
        kinds = ["output", "set", "drop", "store", "store", "skip"]
        if loop_nesting < MAX_LOOP_NESTING:
            kinds.append("loop")
        if self.callable_from(caller):
            kinds.append("call")
        if self.recursive is not None and caller is None:
            kinds.append("recurse")
        kind = self.rng.choice(kinds)
        if kind in ("output", "set", "drop"):
            self.value(0, caller)
            if kind == "output":
                self.emit("output")
            elif kind == "set":
                self.emit("local.set", self.random_local())
            else:
                self.emit("drop")
        elif kind == "store":
            opcode = self.rng.choice(list(STORES))
            address, offset = self.scratch_access(STORES[opcode])
            self.emit("i32.const", address)
            self.value(1, caller)
            self.emit(opcode, offset)
        elif kind == "skip":
            after = self.new_label()
            if self.rng.random() < 0.5:
                self.jump("br", after)
            else:
                self.value(1, caller)
                self.jump("br_if", after)
            self.statement(MAX_LOOP_NESTING, caller)
            self.place(after)
        elif kind == "loop":
            self.loop(loop_nesting, caller)
        elif kind == "call":
            function = self.rng.choice(self.callable_from(caller))
            self.call(function, caller)
            if function.returns_value:
                self.emit("drop" if self.rng.random() < 0.5 else "output")
        else:
            self.emit("i32.const", self.rng.randrange(MAX_RECURSION_ARGUMENT + 1))
            self.jump("call", self.recursive.entry)

    def loop(self, loop_nesting, caller):
        """counter = 1..3; do { body } while (--counter != 0)."""
        counter = LOOP_COUNTER_LOCAL + loop_nesting
        self.emit("i32.const", self.rng.randint(1, MAX_LOOP_COUNT))
        self.emit("local.set", counter)
        head = self.new_label()
        self.place(head)
        for _ in range(self.rng.randint(1, 2)):
            self.statement(loop_nesting + 1, caller)
        self.emit("local.get", counter)
        self.emit("i32.const", 1)
        self.emit("i32.sub")
        self.emit("local.tee", counter)
        self.jump("br_if", head)

    def trap_statement(self):
        """A statement that traps: the `trap` instruction or an access just past 2**24."""
        opcode = self.rng.choice(["trap"] + list(LOADS) + list(STORES))
        if opcode == "trap":
            self.emit("trap")
            return
        width = {**LOADS, **STORES}[opcode]
        offset = self.rng.randrange(MAX_OFFSET + 1)
        address = reference.MEMORY_SIZE - width - offset + self.rng.randint(1, width)
        if self.rng.random() < 0.2:
            address, offset = WORD - 1, 1 + offset          # would wrap to a low address: traps anyway
        self.emit("i32.const", address)
        if opcode in STORES:
            self.emit("i32.const", self.random_word())
        self.emit(opcode, offset)

    def function_body(self, function, n_instructions):
        self.place(function.entry)
        for local in reversed(range(function.parameters)):   # prologue: pop the arguments
            self.emit("local.set", local)
        start = len(self.code)
        while len(self.code) - start < n_instructions:
            self.statement(0, function)
        if function.returns_value:
            self.value(0, function)
        self.jump("return", function.entry)

    def recursive_body(self, function):
        """rec(n): if n != 0 { rec(n - 1); print something }; return."""
        self.place(function.entry)
        done = self.new_label()
        self.emit("local.set", 0)
        self.emit("local.get", 0)
        self.emit("i32.eqz")
        self.jump("br_if", done)
        self.emit("local.get", 0)
        self.emit("i32.const", 1)
        self.emit("i32.sub")
        self.jump("call", function.entry)
        self.emit("local.get", 0)
        self.emit("i32.const", ord("0"))
        self.emit("i32.add")
        self.emit("output")
        self.place(done)
        self.jump("return", function.entry)


def random_input(rng):
    """Mostly printable characters, sometimes a space, a brace or a byte >= 0x80 (written as hex)."""
    length = rng.randrange(MAX_INPUT_BYTES + 1)
    alphabet = list(range(reference.FIRST_PRINTABLE, reference.LAST_PRINTABLE + 1))
    unusual = [0x20, ord("{"), ord("}"), 0x80, 0xFF, 0x0A]
    return bytes(rng.choice(unusual) if rng.random() < 0.1 else rng.choice(alphabet) for _ in range(length))


def random_program(rng, n_instructions=40, p_input=0.3, p_trap=0.1, max_functions=3):
    """A valid program of about n_instructions in main (plus functions), and its input.

    rng: a random.Random. Returns (instructions, input_bytes); input_bytes is
    None unless instruction 0 is input_base. The run ends with `halt`, or
    with `trap` (probability about p_trap).
    """
    with_input = rng.random() < p_input
    builder = Builder(rng, with_input)
    input_bytes = None
    if with_input:
        input_bytes = random_input(rng)
        builder.input_length = len(input_bytes)
        builder.emit("input_base", INPUT_ADDRESS)
    count = rng.randint(0, max_functions)
    builder.functions = [Function(i, rng.randint(0, MAX_PARAMETERS), rng.random() < 0.5) for i in range(count)]
    for function in builder.functions:
        function.entry = builder.new_label()
    if rng.random() < 0.5:
        builder.recursive = Function(count, 1, False)
        builder.recursive.entry = builder.new_label()
    trap_at = rng.randrange(n_instructions) if rng.random() < p_trap else None
    while len(builder.code) < n_instructions:
        if trap_at is not None and len(builder.code) >= trap_at:
            builder.trap_statement()
            trap_at = None
        builder.statement(0, None)
    builder.emit("halt")
    for function in builder.functions:
        builder.function_body(function, max(2, n_instructions // 4))
    if builder.recursive is not None:
        builder.recursive_body(builder.recursive)
    return builder.resolve(), input_bytes
