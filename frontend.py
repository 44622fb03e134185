"""frontend.py: a decoded WebAssembly module in, a flat program of SPEC 3.1 out.

    .c/.wat/.wasm --(decoder.py)--> Module --(lower_module)--> [(opcode, imm), ...]

Supported: i32 and i64 (two i32 words each: legalize.py, run by decode_module)
instructions of WebAssembly 1.0 + sign extension, MVP control flow incl. br_table,
block parameters and multiple results, call_indirect through constant tables,
globals, one memory up to 256 pages, memory.size / memory.grow, and the imports
env.output_byte and env.putchar. Everything else is reported, all of it before
anything runs (UnsupportedError).
Every i32 numeric instruction is a machine instruction of its own (SPEC 3.1 and
the extension of SPEC 12; division and remainder trap by themselves).

Program: the harness (`input_base A` when compute takes the input, data segments
and globals as word stores, the start function, the entry's calls, `halt`), the
shared `trap` (when a branch reaches it), each function reached (prologue
`local.set n-1 ... local.set 0`), print_hex if used; every branch, call and
return immediate is relative (target - i - 1; a return's F - R - 1).
Memory (machine addresses = wasm addresses): the module's M = minimum pages * 64
KiB bytes (a growable memory up to 255 pages or its maximum); then the RESERVED
area (print_hex's scratch, the memory size word, print_hex's table, a word per
global), where WebAssembly traps and bounds checks keep the module out; with all
16 MiB (our C programs) it is the memory's last bytes, which a C program reaches
only through a wild pointer (data segments there are rejected). With M < 2^24 a
load/store first compares its address with M - offset - width and branches to
`trap`; at 2^24 the machine traps by itself.

Costs (machine instructions per WebAssembly instruction): 1 for a numeric
instruction, a local, a constant, br, br_if, return and call (+1 per parameter:
the callee's prologue); clang's sign-extension idiom (x << 24) >> 24: 1; `if` 2;
a load/store 1 plus its bounds check (5, 7 for a store; 8/10 for a growable
memory); a mutable global 2 to read, 4 to write; br_table and call_indirect 4 per
case tested; a branch that unwinds the stack +1 per value dropped, +2 per value
kept (+2 more for br_if).
Lowering is linear in the module size.
"""
import collections
import pathlib

import reference
from decoder import (WasmError, MissingToolError, Instruction, decode_module, wat_to_wasm, compile_c,
                     validation_error, PAGE_BYTES, MAX_PAGES, find_export, constant_of, memory_bytes,
                     reachable_functions, table_contents, indirect_targets, grows_memory)
from legalize import CodeWalk, block_signature, where
from reference import WORD_BYTES, WORD_MODULUS, LOCALS_PER_FRAME, MEMORY_SIZE


class UnsupportedError(WasmError):
    """The module is valid WebAssembly but uses something wasmtf does not lower.
    `.problems` lists every such use (function, byte offset, what), found before anything runs."""

    def __init__(self, problems):
        self.problems = list(problems)
        # the first line tells the whole story (how many, and the first); then every problem, indented
        if len(self.problems) == 1:
            super().__init__("unsupported: %s" % self.problems[0])
        else:
            super().__init__("%d unsupported instructions or features, the first: %s\n  %s"
                             % (len(self.problems), self.problems[0], "\n  ".join(self.problems)))


# ---------------------------------------------------------------------------
# 1. Items, and the shared routine
# ---------------------------------------------------------------------------
# The lowering writes items: (opcode, immediate) pairs whose immediate may be a
# Label (assemble resolves it), Labels, and Origins (for the profile).

class Label:
    """A position in the flat program, fixed when the program is assembled."""
    __slots__ = ("name",)

    def __init__(self, name=""):
        self.name = name


class Origin:
    """Marks where the flat instructions after it come from (for the profile): a
    source function and the WebAssembly instruction lowered there, the harness,
    or a routine. `assemble` skips it."""
    __slots__ = ("function", "instruction", "routine")

    def __init__(self, function, instruction, routine=False):
        self.function = function          # a display name (see function_name)
        self.instruction = instruction    # a WebAssembly instruction's name, "prologue", "harness", ...
        self.routine = routine            # True for the code of a shared routine


def print_hex_items(entry, scratch):
    """The routine print_hex(x), a flat function (SPEC 3.4 calling convention): prints x as
    8 lower-case hex digits and a newline (the entry harness's output), byte by byte from
    the top, its two digits read from the hex table after the 4 `scratch` bytes it uses
    (which the harness writes when it prints results). Locals x, n, v start at 0 (SPEC 4.8
    d4). Steps from the `call` to the `return`: at most 86 (a worst case, measured)."""
    x, n, v = 0, 1, 2
    table, byte = scratch + HEX_TABLE_OFFSET, Label("print_hex.byte")
    return [entry, Origin("routine print_hex", "print_hex", routine=True), ("local.set", x),
            ("i32.const", scratch), ("local.get", x), ("i32.store", 0), ("i32.const", 4), ("local.set", n),
            byte, ("local.get", n), ("i32.const", 1), ("i32.sub", 0), ("local.tee", n),
            ("i32.const", scratch), ("i32.add", 0), ("i32.load8_u", 0), ("local.tee", v),
            ("local.get", v), ("i32.add", 0), ("local.set", v),                     # v = 2 * byte
            ("local.get", v), ("i32.load8_u", table), ("output", 0),
            ("local.get", v), ("i32.load8_u", table + 1), ("output", 0),
            ("local.get", n), ("br_if", byte), ("i32.const", 10), ("output", 0), ("return", entry)]


def assemble(items):
    """Resolve labels: branch/call/return immediates become target - i - 1 (mod 2^32)."""
    position = {}
    count = 0
    for item in items:
        if isinstance(item, Label):
            position[item] = count
        elif not isinstance(item, Origin):
            count += 1
    program = []
    for item in items:
        if isinstance(item, (Label, Origin)):
            continue
        opcode, immediate = item
        if isinstance(immediate, Label):
            immediate = (position[immediate] - len(program) - 1) % WORD_MODULUS
        program.append((opcode, immediate))
    return program


def instruction_origins(items):
    """The Origin of each instruction of assemble(items), in program order."""
    origins, current = [], None
    for item in items:
        if isinstance(item, Origin):
            current = item
        elif not isinstance(item, Label):
            origins.append(current)
    return origins


# ---------------------------------------------------------------------------
# 2. Lowering
# ---------------------------------------------------------------------------

SCRATCH_BYTES = 2 * WORD_BYTES                      # print_hex's scratch (it uses one word)
MEMORY_SIZE_OFFSET = SCRATCH_BYTES                  # a growable memory's current size in bytes (a word)
HEX_TABLE_OFFSET = MEMORY_SIZE_OFFSET + WORD_BYTES  # then the table of hex digit pairs (print_hex)
HEX_TABLE = "".join("%02x" % value for value in range(reference.BYTE_VALUES)).encode("ascii")
RESERVED_HEADER_BYTES = HEX_TABLE_OFFSET + len(HEX_TABLE)   # then a word per global
NATIVE = set(reference.OPCODES) - {"halt", "return", "call", "br", "br_if", "global.get", "global.set",
                                   "output", "input_base", "trap"}
MEMORY_WIDTH = {**{name: width for name, (width, _) in reference.LOADS.items()}, **reference.STORES}   # bytes
# The FunctionLowering method for each instruction that is not the machine's own (NATIVE: lower_native).
LOWERING = {"nop": "lower_nop", "unreachable": "lower_unreachable", "block": "lower_block",
            "loop": "lower_block", "if": "lower_block", "else": "lower_else", "end": "lower_end",
            "br": "lower_br", "br_if": "lower_br_if", "br_table": "lower_br_table", "return": "lower_br",
            "call": "lower_call", "call_indirect": "lower_call_indirect", "local.get": "lower_local",
            "local.set": "lower_local", "local.tee": "lower_local", "global.get": "lower_global_get",
            "global.set": "lower_global_set", "memory.size": "lower_memory_size",
            "memory.grow": "lower_memory_size"}
LOWERING.update({name: "lower_memory_access" for name in MEMORY_WIDTH})
SUPPORTED = NATIVE | set(LOWERING)
# The output imports, each a call that becomes the `output` instruction (low 8 bits printed):
# void output_byte(int) (runtime.h's), and the C library's int putchar(int), which returns
# the character written, (unsigned char) c.
OUTPUT_IMPORTS = {("env", "output_byte"): (("i32",), ()), ("env", "putchar"): (("i32",), ("i32",))}
NO_RESULT_LINE = b"-\n"      # what the harness prints for a call without a result


def function_name(function):
    """How the profile names a function: its name-section name, else its export name, else its index."""
    return function.debug_name or (function.names[0] if function.names else "function %d" % function.index)


def growth_limit(module):
    """The most pages memory.grow may reach (not the top page, which holds the reserved
    area; not past the maximum: beyond, it returns -1), or None when it cannot grow."""
    if module.memory is None or not grows_memory(module):
        return None
    minimum, maximum = module.memory
    limit = min(MAX_PAGES - 1 if maximum is None else maximum, MAX_PAGES - 1)
    return limit if limit > minimum else None


def reserved_size(module):
    return RESERVED_HEADER_BYTES + WORD_BYTES * len(module.globals)


def reserved_base(module):
    """Where the scratch bytes, the memory size and the globals live (see the module header)."""
    limit = growth_limit(module)
    size = memory_bytes(module) if limit is None else limit * PAGE_BYTES
    if size + reserved_size(module) <= MEMORY_SIZE:
        return size
    return MEMORY_SIZE - (reserved_size(module) + 7) // 8 * 8     # the top bytes, 8-aligned


def module_problems(module, roots):
    """Everything unsupported that the functions `roots` (and the start function) could reach."""
    problems = []
    if module.memory_imported:
        problems.append("imported memory %s.%s" % module.memory_imported)
    if module.memory is not None and module.memory[0] > MAX_PAGES:
        problems.append("memory of %d pages: more than the machine's %d pages (16 MiB)"
                        % (module.memory[0], MAX_PAGES))
    base = reserved_base(module)
    reserved_end = base + reserved_size(module)
    for offset_expression, data, at in module.data:
        if offset_expression is None:
            continue                          # passive segments are only used by memory.init
        start = constant_of(module, offset_expression)
        if start is None:
            problems.append("data segment at byte offset 0x%x: offset is not an i32.const" % at)
        elif start + len(data) > memory_bytes(module):
            problems.append("data segment at byte offset 0x%x: bytes %d..%d outside the %d-byte memory"
                            % (at, start, start + len(data), memory_bytes(module)))
        elif data and start < reserved_end and base < start + len(data):
            problems.append("data segment at byte offset 0x%x overlaps the reserved area %d..%d"
                            % (at, base, reserved_end))
    for index, global_ in enumerate(module.globals):
        if global_["import_from"] is None and global_["type"] == "i32" \
                and constant_of(module, global_["init"]) is None:
            problems.append("global %d: initializer is not an i32.const" % index)
    roots = list(roots) + ([module.start] if module.start is not None else [])
    for index in reachable_functions(module, roots):
        problems += function_problems(module, module.functions[index])
    return problems


def function_problems(module, function):
    """The unsupported features and instructions of one function, each with its byte offset."""
    problems = []
    if function.import_from is not None:
        wanted = OUTPUT_IMPORTS.get(function.import_from)
        if wanted is None:
            problems.append("%s: calls the import %s.%s (only env.output_byte and env.putchar are allowed)"
                            % ((function.label(),) + function.import_from))
        elif (function.params, function.results) != wanted:
            problems.append("%s: %s.%s must have type (%s) -> (%s)" % ((function.label(),) + function.import_from
                                                                      + tuple(", ".join(t) for t in wanted)))
        return problems
    types = set(function.params) | set(function.results) | set(function.locals)
    if types - {"i32"}:
        problems.append("%s: value types %s (only i32 and i64)" % (function.label(), ", ".join(sorted(types - {"i32"}))))
    temporaries = len(temporaries_of(module, function))
    if len(function.params) + len(function.locals) + temporaries > LOCALS_PER_FRAME:
        problems.append("%s: %d locals + %d temporaries exceed the %d locals of a frame"
                        % (function.label(), len(function.params) + len(function.locals), temporaries,
                           LOCALS_PER_FRAME))
    for instruction in function.code:
        name, immediate = instruction.name, instruction.immediate
        what = None
        if name not in SUPPORTED:
            what = name
        elif name in ("block", "loop", "if"):
            signature = block_signature(module.types, immediate)
            if signature is None:
                what = "%s with type index %d, which does not exist" % (name, immediate[1])
            elif set(signature[0] + signature[1]) - {"i32"}:
                what = "%s with %s values" % (name, "/".join(sorted(set(signature[0] + signature[1]) - {"i32"})))
        elif name in ("memory.size", "memory.grow") and immediate != 0:
            what = "%s of memory %d (one memory, index 0)" % (name, immediate)
        elif name == "select" and immediate not in (None, ("i32",)):
            what = "select of %s" % (immediate,)
        elif name in ("global.get", "global.set"):
            global_ = module.globals[immediate] if immediate < len(module.globals) else None
            if global_ is None:
                what = "global %d does not exist" % immediate
            elif global_["import_from"] is not None:
                what = "%s of imported global %s.%s" % ((name,) + global_["import_from"])
            elif global_["type"] != "i32":
                what = "%s of a %s global" % (name, global_["type"])
        elif name == "call_indirect" and (immediate[0] >= len(module.types)
                                          or table_contents(module, immediate[1]) is None):
            what = "call_indirect through an imported, missing or non-constant table"
        elif name == "call" and immediate >= len(module.functions):
            what = "call of function %d, which does not exist" % immediate
        if what:
            problems.append("%s: %s" % (where(function, instruction.offset), what))
    return problems


def temporaries_of(module, function):
    """The extra locals a function's lowering uses, as offsets after its own locals: one
    for an address or br_table index, then one per value a branch keeps (at least one)."""
    kept = [len(function.results), 1]
    for instruction in function.code:
        if instruction.name in ("block", "loop", "if"):
            signature = block_signature(module.types, instruction.immediate) or ((), ())
            kept += [len(signature[0]), len(signature[1])]
    return list(range(1 + max(kept)))


# Where a block's flat code jumps: `end` just after it, `target` where a branch to its label
# goes (a loop's start, else its end), `else_arm` an if's else arm (or its end; None if no if).
Jumps = collections.namedtuple("Jumps", "end target else_arm")


class FunctionLowering(CodeWalk):
    """Lower one function's body to flat items; tracks the operand stack height to unwind branches."""

    error = WasmError

    def __init__(self, program, function):
        super().__init__(function)
        self.program = program
        self.module = program.module
        self.name = function_name(function)
        self.items = []
        self.height = 0
        temporaries = [len(self.local_types) + k for k in temporaries_of(program.module, function)]
        self.address_temp = temporaries[0]      # holds an address / a br_table index
        self.value_temps = temporaries[1:]      # hold the values a branch keeps / a stored value
        self.value_temp = self.value_temps[0]

    def emit(self, opcode, immediate=0):
        self.items.append((opcode, immediate))

    def pop(self, instruction, count=1):
        if self.height - count < self.frames[-1].height:
            self.fail("%s needs %d operands, the stack has %d"
                      % (instruction.name, count, self.height - self.frames[-1].height))
        self.height -= count

    def set_stack(self, height, value_types):
        self.height = height + len(value_types)

    def lower(self):
        function = self.function
        self.items += [self.program.entries[function.index], Origin(self.name, "prologue")]
        self.items += [("local.set", i) for i in reversed(range(len(function.params)))]
        self.walk()
        return self.items

    def step(self, code, position):
        instruction = code[position]
        extend = self.sign_extension_idiom(code, position)
        if extend:                             # (x << 24) >> 24 etc.: one extend8_s/16_s
            instruction = Instruction(extend, None, instruction.offset)
            position += 3
        self.items.append(Origin(self.name, instruction.name))
        if self.is_putchar_call(instruction) and position + 1 < len(code) and code[position + 1].name == "drop":
            self.lower_call(instruction, result_used=False)   # `call putchar; drop`: just `output`
            return position + 2
        getattr(self, LOWERING.get(instruction.name, "lower_native"))(instruction)   # a method per kind
        return position + 1

    def branch_items(self, depth):
        """An unconditional branch to label `depth`: the unwinding (drop the values between
        the label's height and the `arity` values it carries, on top) plus the jump."""
        frame, carried = self.branch_target(depth)
        arity = len(carried)
        extra = self.height - frame.height - arity
        if extra < 0:
            self.fail("branch needs %d values, the stack has %d" % (arity, self.height - frame.height))
        kept = self.value_temps[:arity] if extra else []
        unwind = [("local.set", t) for t in reversed(kept)] + [("drop", 0)] * extra + [("local.get", t) for t in kept]
        if frame.kind == "function":
            return unwind + [("return", self.program.entries[self.function.index])]
        return unwind + [("br", frame.jumps.target)]

    def lower_nop(self, instruction):
        pass

    def lower_unreachable(self, instruction):
        self.emit("trap")
        self.unreachable = True

    def lower_block(self, instruction):
        """block/loop/if: no code for a block; a loop's label is its first instruction;
        an if is `i32.eqz; br_if` to its else arm (or its end when there is none)."""
        params, results = block_signature(self.module.types, instruction.immediate)
        self.pop(instruction, len(params) + (instruction.name == "if"))
        end = Label()
        jumps = Jumps(end, Label() if instruction.name == "loop" else end,
                      Label() if instruction.name == "if" else None)
        if instruction.name == "loop":
            self.items.append(jumps.target)
        elif instruction.name == "if":
            self.items += [("i32.eqz", 0), ("br_if", jumps.else_arm)]
        self.open_block(instruction.name, params, results, jumps)

    def lower_else(self, instruction):
        frame = self.begin_else()
        self.items += [("br", frame.jumps.end), frame.jumps.else_arm]

    def lower_end(self, instruction):
        """The end of a block (its label), or of the function (its return)."""
        frame = self.end_block()
        if frame.kind == "if":                 # no else arm
            if len(frame.results) != len(frame.params):
                self.fail("an if without else must leave its parameters as results")
            self.items.append(frame.jumps.else_arm)
        if frame.kind == "function":
            self.items.append(("return", self.program.entries[self.function.index]))
        else:
            self.items.append(frame.jumps.end)

    def lower_br(self, instruction):
        """br, and return: a branch to the function's label."""
        depth = len(self.frames) - 1 if instruction.name == "return" else instruction.immediate
        self.items += self.branch_items(depth)
        self.unreachable = True

    def lower_br_if(self, instruction):
        """br_if: direct, or, when the branch must unwind, `i32.eqz; br_if skip; unwind; br`."""
        self.pop(instruction)
        items = self.branch_items(instruction.immediate)
        if len(items) == 1 and items[0][0] == "br":
            self.emit("br_if", items[0][1])
        else:
            skip = Label()
            self.items += [("i32.eqz", 0), ("br_if", skip)] + items + [skip]

    def lower_br_table(self, instruction):
        """A chain of `index == i` tests; targets that need unwinding get a stub after the chain."""
        labels, default = instruction.immediate
        self.pop(instruction)
        self.emit("local.set", self.address_temp)
        stubs = {}
        for case, depth in enumerate(labels):
            items = self.branch_items(depth)
            self.items += [("local.get", self.address_temp), ("i32.const", case), ("i32.eq", 0)]
            if len(items) == 1 and items[0][0] == "br":
                self.emit("br_if", items[0][1])
            else:
                stubs.setdefault(depth, (Label(), items))
                self.emit("br_if", stubs[depth][0])
        self.items += self.branch_items(default)
        for stub, items in stubs.values():
            self.items += [stub] + items
        self.unreachable = True

    def is_putchar_call(self, instruction):
        """A call of the output import that returns the byte (env.putchar)."""
        functions = self.module.functions
        return (instruction.name == "call" and instruction.immediate < len(functions)
                and functions[instruction.immediate].import_from in OUTPUT_IMPORTS
                and bool(functions[instruction.immediate].results))

    def call_items(self, index, result_used=True):
        """The call of function `index`; an output import is the `output` instruction, and
        putchar's result, when used, is the byte written: c & 0xFF (c kept in a temporary)."""
        function = self.module.functions[index]
        if function.import_from not in OUTPUT_IMPORTS:
            return [("call", self.program.called(index))]
        if not (function.results and result_used):
            return [("output", 0)]
        return [("local.tee", self.value_temp), ("output", 0), ("local.get", self.value_temp),
                ("i32.const", 0xFF), ("i32.and", 0)]

    def lower_call(self, instruction, result_used=True):
        callee = self.module.functions[instruction.immediate]
        self.pop(instruction, len(callee.params))
        self.items += self.call_items(callee.index, result_used)
        self.height += len(callee.results) if result_used else 0

    def lower_call_indirect(self, instruction):
        """A chain of `slot == k` tests over the table's functions of the right type, each
        to its own `call`; any other slot (out of range, empty, other type) traps."""
        type_index, table = instruction.immediate
        params, results = self.module.types[type_index]
        self.pop(instruction, 1 + len(params))
        slot_temp = self.address_temp
        targets = set(indirect_targets(self.module, type_index, table))
        cases, done = {}, Label()
        self.emit("local.set", slot_temp)
        for slot, function in enumerate(table_contents(self.module, table)):
            if function in targets:
                cases.setdefault(function, Label())
                self.items += [("local.get", slot_temp), ("i32.const", slot), ("i32.eq", 0),
                               ("br_if", cases[function])]
        self.emit("br", self.program.trap_label)
        for function, label in cases.items():
            self.items += [label] + self.call_items(function) + [("br", done)]
        self.items.append(done)
        self.height += len(results)

    def lower_local(self, instruction):
        self.local_type(instruction.immediate)          # it exists
        self.lower_native(instruction)

    def lower_global_get(self, instruction):
        """A mutable global is a word of the reserved area; an immutable one is its constant."""
        index = instruction.immediate
        global_ = self.module.globals[index]
        if global_["mutable"]:
            self.items += [("i32.const", self.program.global_address(index)), ("i32.load", 0)]
        else:
            self.emit("i32.const", constant_of(self.module, global_["init"]))
        self.height += 1

    def lower_global_set(self, instruction):
        index = instruction.immediate
        if not self.module.globals[index]["mutable"]:
            self.fail("global.set of immutable global %d" % index)
        self.pop(instruction)
        self.items += [("local.set", self.value_temp), ("i32.const", self.program.global_address(index)),
                       ("local.get", self.value_temp), ("i32.store", 0)]

    def lower_memory_access(self, instruction):
        """A load or store, after a bounds check when the module's memory is below 16 MiB."""
        name, offset = instruction.name, instruction.immediate
        store = "store" in name
        if self.module.memory is None:
            self.fail("%s without a memory" % name)
        self.pop(instruction, 2 if store else 1)
        check = self.program.bounds_check_items(offset + MEMORY_WIDTH[name], self.address_temp)
        if store and check:       # the address is under the value: set the value aside
            check = [("local.set", self.value_temp)] + check + [("local.get", self.value_temp)]
        self.items += check + [(name, offset)]
        self.height += 0 if store else 1

    def lower_memory_size(self, instruction):
        """memory.size, or memory.grow (the page count on top): old size, or -1 past the limit.
        A growable memory keeps its size in bytes in a reserved word; pages = its upper half."""
        if self.module.memory is None:
            self.fail("%s without a memory" % instruction.name)
        grow = instruction.name == "memory.grow"
        if grow:
            self.pop(instruction)
        self.height += 1
        count, old = self.value_temp, self.address_temp
        limit, pages = self.program.growth_limit, self.module.memory[0]
        size_address = self.program.base + MEMORY_SIZE_OFFSET
        if limit is None and not grow:
            self.emit("i32.const", pages)
        elif limit is None:        # fixed: memory.grow succeeds only for 0 pages
            self.items += [("local.set", count), ("i32.const", pages), ("i32.const", WORD_MODULUS - 1),
                           ("local.get", count), ("i32.eqz", 0), ("select", 0)]
        elif not grow:
            self.items += [("i32.const", size_address), ("i32.load16_u", 2)]
        else:
            fail, done = Label(), Label()
            self.items += [("local.set", count), ("i32.const", size_address), ("i32.load16_u", 2),
                           ("local.set", old),
                           ("local.get", count), ("i32.const", limit), ("local.get", old), ("i32.sub", 0),
                           ("i32.gt_u", 0), ("br_if", fail),                     # count > limit - old: fail
                           ("i32.const", size_address), ("local.get", old), ("local.get", count),
                           ("i32.add", 0), ("i32.store16", 2),                    # pages = old + count
                           ("local.get", old), ("br", done),
                           fail, ("i32.const", WORD_MODULUS - 1), done]

    def lower_native(self, instruction):
        """An instruction of the machine itself: the same opcode and immediate."""
        name = instruction.name
        if name not in NATIVE:
            self.fail("%s is not supported" % name)
        pushes = reference.STORES_TO_STACK[name]
        self.pop(instruction, pushes - reference.STACK_DELTA[name])
        immediate = instruction.immediate if isinstance(instruction.immediate, int) else 0   # not select's type
        self.emit(name, immediate)
        self.height += pushes

    @staticmethod
    def sign_extension_idiom(code, position):
        """"i32.extend8_s"/"i32.extend16_s" when code[position:] starts with
        `i32.const c; i32.shl; i32.const c; i32.shr_s`, c = 24/16 (how clang -mcpu=mvp
        sign-extends a char/short), else None."""
        window = code[position:position + 4]
        if [i.name for i in window] != ["i32.const", "i32.shl", "i32.const", "i32.shr_s"] \
                or window[0].immediate != window[2].immediate:
            return None
        return {24: "i32.extend8_s", 16: "i32.extend16_s"}.get(window[0].immediate)

    def check_end(self, frame):
        if self.height != frame.height + len(frame.results):
            self.fail("block ends with %d values, its type says %d" % (self.height - frame.height, len(frame.results)))


class ProgramLowering:
    """The whole program: harness, shared trap (if used), functions (lowered on demand), print_hex."""

    def __init__(self, module):
        self.module = module
        self.base = reserved_base(module)
        self.growth_limit = growth_limit(module)   # computed once: it scans the whole module
        self.scratch = self.base
        self.entries = {}            # function index -> Label; "print_hex" -> Label
        self.pending = []            # function indices to lower, in order of first call
        self.trap_label = Label("trap")

    def global_address(self, index):
        return self.base + RESERVED_HEADER_BYTES + WORD_BYTES * index

    def bounds_check_items(self, reach, address_temp):
        """Code that traps unless address + reach <= the memory size (address on top, kept):
        address >u M - reach (5 instructions), against the size word for a growable memory
        (8; 14 when reach exceeds the initial size); none for 2^24 bytes (SPEC 4.8 traps)."""
        size = memory_bytes(self.module)
        limit = self.growth_limit
        trap = self.trap_label
        if limit is None and size == MEMORY_SIZE and reach <= MEMORY_SIZE:
            return []
        if reach > (size if limit is None else limit * PAGE_BYTES):
            return [("trap", 0)]
        keep = [("local.tee", address_temp)]
        if limit is None:
            return keep + [("i32.const", size - reach), ("i32.gt_u", 0), ("br_if", trap),
                           ("local.get", address_temp)]
        size_word = [("i32.const", self.base + MEMORY_SIZE_OFFSET), ("i32.load", 0)]
        too_small = []
        if reach > size:          # the memory may still be smaller than reach: check that first
            too_small = size_word + [("i32.const", reach), ("i32.lt_u", 0), ("br_if", trap)]
        return (keep + too_small + size_word + [("i32.const", reach), ("i32.sub", 0), ("i32.gt_u", 0),
                                                 ("br_if", trap), ("local.get", address_temp)])

    def called(self, index):
        """The entry Label of function `index`, which will be lowered."""
        if index not in self.entries:
            self.entries[index] = Label("function %d" % index)
            self.pending.append(index)
        return self.entries[index]

    def initial_memory(self, hex_table):
        """(address, word) stores for the data segments, the mutable globals and, when
        results are printed, the hex digit table (non-zero words only)."""
        image = {}

        def put(address, data):
            image.update((address + k, value) for k, value in enumerate(data))
        if hex_table:
            put(self.scratch + HEX_TABLE_OFFSET, HEX_TABLE)
        for offset_expression, data, _ in self.module.data:
            if offset_expression is not None:
                put(constant_of(self.module, offset_expression), data)
        if self.growth_limit is not None:
            put(self.base + MEMORY_SIZE_OFFSET, reference.word_bytes(memory_bytes(self.module)))
        for index, global_ in enumerate(self.module.globals):
            value = constant_of(self.module, global_.get("init") or [])   # an imported global has none
            if global_["mutable"] and value is not None:  # other types: reported where used
                put(self.global_address(index), reference.word_bytes(value))
        words = {}
        for address, value in image.items():
            if value:
                aligned = address - address % WORD_BYTES
                words[aligned] = words.get(aligned, 0) | value << (reference.BYTE_BITS * (address - aligned))
        return sorted(words.items())

    def lower(self, calls, input_address=None, print_results=True, silent_calls=0):
        """Harness + functions + print_hex as flat items. `calls`: [(function index, args)]."""
        module = self.module
        items = [Origin("harness", "harness")]
        if input_address is not None:
            items.append(("input_base", input_address))
        prints = print_results and any(module.functions[index].results for index, _ in calls[silent_calls:])
        for address, word in self.initial_memory(prints):
            items += [("i32.const", address), ("i32.const", word), ("i32.store", 0)]
        if module.start is not None:
            items.append(("call", self.called(module.start)))
        for number, (index, args) in enumerate(calls):
            function = module.functions[index]
            items += [("i32.const", value % WORD_MODULUS) for value in args]
            items.append(("call", self.called(index)))
            if not print_results or number < silent_calls:
                items += [("drop", 0)] * len(function.results)
            elif function.results:          # the results, first to last, from main's locals
                items += [("local.set", k) for k in reversed(range(len(function.results)))]
                for k in range(len(function.results)):
                    items += [("local.get", k), ("call", self.entries.setdefault("print_hex", Label("print_hex")))]
            else:
                for byte in NO_RESULT_LINE:
                    items += [("i32.const", byte), ("output", 0)]
        items.append(("halt", 0))
        harness_end = len(items)
        for index in self.pending:                    # grows while lowering reaches more functions
            items += FunctionLowering(self, module.functions[index]).lower()
        if "print_hex" in self.entries:
            items += print_hex_items(self.entries["print_hex"], self.scratch)
        if any(isinstance(item, tuple) and item[1] is self.trap_label for item in items):
            items[harness_end:harness_end] = [self.trap_label, Origin("harness", "trap"), ("trap", 0)]   # only when a branch can reach it
        return items


def input_address(module):
    """A = (__heap_base + 15) & ~15: where compute(input) finds its input (SPEC 5); None
    when the module does not export __heap_base as a constant global."""
    kind, index = module.exports.get("__heap_base", (None, None))
    if kind != "global" or module.globals[index]["import_from"] is not None:
        return None
    heap_base = constant_of(module, module.globals[index]["init"])
    return None if heap_base is None else (heap_base + 15) & ~15


def lower_module(module, entry="compute", args=None, calls=None, silent_calls=0):
    """The flat program (list of (opcode, imm)) that runs the module: assemble(lowered_items(...))."""
    return assemble(lowered_items(module, entry, args, calls, silent_calls))


def lowered_items(module, entry="compute", args=None, calls=None, silent_calls=0):
    """The flat program that runs the module, as items: (opcode, imm) pairs, Labels, Origins.

    - entry "compute" with args None: the C ABI of SPEC 5 (compute(input) gets
      `input_base A` as instruction 0 and A as its argument; a result is dropped);
    - else: calls the export `entry` with `args` and prints each result as 8 hex
      digits and a newline ("-" and a newline for none; an i64 is two words, low first);
    - calls=[(name, args), ...]: several calls so, the first `silent_calls` unprinted.
    The complete check runs first: UnsupportedError lists every unsupported
    use in the functions the calls can reach; WasmError for an invalid module."""
    if isinstance(module, (bytes, bytearray)):
        module = decode_module(module)
    c_abi = calls is None and entry == "compute" and args is None
    if calls is None:
        calls = [(entry, args or [])]
    calls = [(find_export(module, name), list(call_args)) for name, call_args in calls]
    address, problems = None, []
    compute = module.functions[calls[0][0]] if c_abi else None
    if compute is not None and compute.params:           # compute(input): A, then zeros
        address = input_address(module)
        if address is None:
            problems.append("compute(input) needs the global export __heap_base "
                            "(link with --export=__heap_base)")
        calls = [(compute.index, [address or 0] + [0] * (len(compute.params) - 1))]
    problems += module_problems(module, [index for index, _ in calls])
    for index, call_args in calls:
        function = module.functions[index]
        if len(call_args) != len(function.params):
            problems.append("%s takes %d arguments, %d given" % (function.label(), len(function.params),
                                                                 len(call_args)))
    if problems:
        raise UnsupportedError(problems)
    return ProgramLowering(module).lower(calls, address, not c_abi, silent_calls)


# ---------------------------------------------------------------------------
# 3. Program files
# ---------------------------------------------------------------------------

def lower_binary(binary, path):
    """lower_module(decode_module(binary)) with errors that start with `path`;
    a module that wasmtime finds invalid is reported as `invalid module: <its reason>`
    (the front end checks what it lowers, not every validation rule)."""
    try:
        return lower_module(decode_module(binary))
    except WasmError as error:
        try:
            reason = validation_error(binary)
        except MissingToolError as missing:
            raise WasmError("%s: %s\n  (%s)" % (path, error, missing)) from None
        if reason is not None:
            raise WasmError("%s: invalid module: %s" % (path, reason)) from None
        raise WasmError("%s: %s" % (path, error)) from None


def load_program_file(path, input_text=None):
    """(instructions: a reference.Program, checked here once; input_bytes) from a .c,
    .wasm, .wat or program .txt file. input_text replaces a .txt file's input section;
    for a compiled compute(input) it is the input (empty when None)."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    try:
        input_bytes = None if input_text is None else input_text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise WasmError("--input: character %d is not encodable as UTF-8 (%r)"
                        % (error.start, input_text[error.start])) from None
    if suffix == ".txt":
        instructions, file_input = reference.read_program(path)
        return instructions, (file_input if input_bytes is None else input_bytes)
    instructions = reference.check_program(lower_binary(program_binary(path), path))
    return instructions, compute_input(path, instructions, input_bytes)


def program_binary(path, keep_names=False):
    """The WebAssembly binary of a .c, .wasm or .wat file (keep_names: see compile_c)."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix == ".c":
        return compile_c(path, keep_names)
    if suffix == ".wasm":
        return path.read_bytes()
    if suffix == ".wat":
        return wat_to_wasm(reference.read_text(path))
    raise WasmError("%s: unknown program kind %r (use .c, .wasm, .wat or .txt)" % (path, suffix))


def compute_input(path, instructions, input_bytes):
    """The input of a compiled program: the given bytes (empty when None) for
    compute(input); None for compute(), which must not be given any."""
    if reference.has_input_section(instructions):
        return input_bytes or b""
    if input_bytes:
        raise WasmError("%s: an input is given but compute takes no parameter" % path)
    return None


EXIT_OK, EXIT_FAILED = 0, 1
