"""The front end: WebAssembly (or C, or .wat) in, a flat program of SPEC 3.1 out.

    C --(zig's clang)--> .wasm --(decode_module)--> Module --(lower_module)--> [(opcode, imm), ...]

Contents, top to bottom:
  1. errors
  2. the decoder: WebAssembly binary format, version 1 (MVP + sign extension);
     malformed input -> WasmError naming the byte offset
  3. shared routines: the harness's print_hex, written once per program in a
     small assembly text, exact for every operand, bounded
  4. lowering: structured control flow -> relative branches, globals -> memory,
     data segments, bounds checks, the entry harness; the complete check first
  5. C compilation and program files (`compile`, `run` accept .c .wasm .wat .txt)
  6. the WebAssembly spec-test runner (`spectest`)
  7. the instruction-mix profile (`profile`): where a run's trace tokens go, by
     machine opcode, source function and WebAssembly instruction

Program layout (SPEC 6.2 in spirit): a harness first (`input_base A` when
compute takes the input, the data segments and globals as word stores, a call
of the start function, the calls of the entry with their arguments, `halt`),
the shared `trap` (only when a bounds check or call_indirect branches to it: a
program without trapping paths has no `trap`), then each function reached,
prologue `local.set n-1 ... local.set 0`, `return` with F - R - 1, then the
routines used. Every branch, call and return immediate is relative (target - i - 1).

Supported: the i32 and i64 instructions of WebAssembly 1.0 + sign extension
(i64 by legalize.py, which decode_module runs: every i64 becomes two i32
words, so the rest of this file sees i32 only; why legalising rather than
a 64-bit machine: legalize.py's header), MVP control flow incl.
br_table, block parameters and multiple results, call_indirect through
constant tables, globals, one memory up to 256 pages, memory.size /
memory.grow, and the imports env.output_byte and env.putchar. Everything
else is reported.
Every i32 numeric instruction is a machine instruction of its own (SPEC 3.1
and the extension of SPEC 12; division and remainder trap by themselves).

Memory map (machine addresses = wasm addresses):
  - the module's memory: M bytes = minimum pages * 64 KiB (<= 2^24); a memory
    that memory.grow can grow may reach 255 pages (or its declared maximum);
  - the RESERVED area: 8 scratch bytes for the routines, the current memory
    size (a word, for growable memories), then a word per global (global g at
    reserved + 12 + 4g). It sits right above the module's largest memory,
    where WebAssembly traps and the bounds checks keep the module out. A
    module with all 16 MiB (our C programs) has no room above: its reserved
    area is the last bytes of the memory, which a C program reaches only
    through a wild pointer (its stack sits at 0..64 KiB and overflows below
    address 0, which traps as in WebAssembly; data and input lie above the
    stack); data segments there are rejected.
  - bounds checks: with M < 2^24, each load/store first compares its address
    with M - offset - width (5 instructions, 7 for a store; 8/10 against the
    size word of a growable memory) and branches to the shared `trap`; with
    M = 2^24 the machine traps by itself (SPEC 4.8).

Costs (machine instructions executed per WebAssembly instruction): 1 for a
numeric instruction, a local, a constant, br, br_if, return and call (+1 per
parameter: the callee's prologue); clang's sign-extension idiom
(x << 24) >> 24 or (x << 16) >> 16: 1 (extend8_s/extend16_s); `if` 2; a
load/store 1 plus its bounds check (above); a mutable global 2 to read, 4 to
write; br_table and call_indirect 4 per case tested (a chain of comparisons);
a branch that unwinds the stack +1 per value dropped, +2 per value kept
(+2 more for br_if).
Lowering is linear in the module size.
"""
import collections
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import legalize
import reference
from reference import WORD_MODULUS, LOCALS_PER_FRAME, MEMORY_SIZE

# ---------------------------------------------------------------------------
# 1. Errors
# ---------------------------------------------------------------------------


class WasmError(ValueError):
    """A malformed or invalid module (the message names the byte offset), or a C compile failure."""


class MissingToolError(WasmError):
    """A tool the command needs (a test/tool dependency: wasmtime, ziglang) is not installed:
    an error, never a reason to skip."""


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
# 2. The decoder (WebAssembly core spec, chapter 5 "Binary Format")
# ---------------------------------------------------------------------------

WASM_MAGIC = b"\0asm"
WASM_VERSION = b"\x01\0\0\0"
PAGE_BYTES = 1 << 16                      # a WebAssembly page: 64 KiB
MAX_PAGES = MEMORY_SIZE // PAGE_BYTES     # 256 pages = the machine's 16 MiB
VALUE_TYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128",
               0x70: "funcref", 0x6F: "externref"}
REFERENCE_TYPE_PREFIXES = (0x63, 0x64)     # `ref null ht`, `ref ht`, each followed by a heap type
SECTION_NAMES = {0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory",
                 6: "global", 7: "export", 8: "start", 9: "element", 10: "code", 11: "data",
                 12: "data count"}
SECTION_ORDER = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 10, 11]   # the data count section precedes code
MAX_LOCALS_DECLARED = 50_000              # a sanity bound (the machine has 256 locals per frame)

# Instructions by opcode byte: name and immediate kind. Kinds: "" none, "block"
# block type, "u32" an index or label, "u32_u32" two indices (call_indirect: type,
# table), "br_table", "memarg" (align, offset), "i32"/"i64" signed LEB128,
# "f32"/"f64" raw bytes, "select_t" a vector of value types, "reftype" a heap type.
OPCODES = {0x00: ("unreachable", ""), 0x01: ("nop", ""), 0x02: ("block", "block"),
           0x03: ("loop", "block"), 0x04: ("if", "block"), 0x05: ("else", ""), 0x0B: ("end", ""),
           0x0C: ("br", "u32"), 0x0D: ("br_if", "u32"), 0x0E: ("br_table", "br_table"),
           0x0F: ("return", ""), 0x10: ("call", "u32"), 0x11: ("call_indirect", "u32_u32"),
           0x1A: ("drop", ""), 0x1B: ("select", ""), 0x1C: ("select", "select_t"),
           0x20: ("local.get", "u32"), 0x21: ("local.set", "u32"), 0x22: ("local.tee", "u32"),
           0x23: ("global.get", "u32"), 0x24: ("global.set", "u32"), 0x25: ("table.get", "u32"),
           0x26: ("table.set", "u32"), 0x3F: ("memory.size", "u32"), 0x40: ("memory.grow", "u32"),
           0x41: ("i32.const", "i32"), 0x42: ("i64.const", "i64"), 0x43: ("f32.const", "f32"),
           0x44: ("f64.const", "f64"), 0xD0: ("ref.null", "reftype"), 0xD1: ("ref.is_null", ""),
           0xD2: ("ref.func", "u32")}
_MEMORY_OPS = ("i32.load i64.load f32.load f64.load i32.load8_s i32.load8_u i32.load16_s i32.load16_u "
               "i64.load8_s i64.load8_u i64.load16_s i64.load16_u i64.load32_s i64.load32_u i32.store "
               "i64.store f32.store f64.store i32.store8 i32.store16 i64.store8 i64.store16 i64.store32")
_NUMERIC_OPS = (  # 0x45 .. 0xC4, in opcode order
    "i32.eqz i32.eq i32.ne i32.lt_s i32.lt_u i32.gt_s i32.gt_u i32.le_s i32.le_u i32.ge_s i32.ge_u "
    "i64.eqz i64.eq i64.ne i64.lt_s i64.lt_u i64.gt_s i64.gt_u i64.le_s i64.le_u i64.ge_s i64.ge_u "
    "f32.eq f32.ne f32.lt f32.gt f32.le f32.ge f64.eq f64.ne f64.lt f64.gt f64.le f64.ge "
    "i32.clz i32.ctz i32.popcnt i32.add i32.sub i32.mul i32.div_s i32.div_u i32.rem_s i32.rem_u "
    "i32.and i32.or i32.xor i32.shl i32.shr_s i32.shr_u i32.rotl i32.rotr "
    "i64.clz i64.ctz i64.popcnt i64.add i64.sub i64.mul i64.div_s i64.div_u i64.rem_s i64.rem_u "
    "i64.and i64.or i64.xor i64.shl i64.shr_s i64.shr_u i64.rotl i64.rotr "
    "f32.abs f32.neg f32.ceil f32.floor f32.trunc f32.nearest f32.sqrt f32.add f32.sub f32.mul "
    "f32.div f32.min f32.max f32.copysign f64.abs f64.neg f64.ceil f64.floor f64.trunc f64.nearest "
    "f64.sqrt f64.add f64.sub f64.mul f64.div f64.min f64.max f64.copysign "
    "i32.wrap_i64 i32.trunc_f32_s i32.trunc_f32_u i32.trunc_f64_s i32.trunc_f64_u i64.extend_i32_s "
    "i64.extend_i32_u i64.trunc_f32_s i64.trunc_f32_u i64.trunc_f64_s i64.trunc_f64_u "
    "f32.convert_i32_s f32.convert_i32_u f32.convert_i64_s f32.convert_i64_u f32.demote_f64 "
    "f64.convert_i32_s f64.convert_i32_u f64.convert_i64_s f64.convert_i64_u f64.promote_f32 "
    "i32.reinterpret_f32 i64.reinterpret_f64 f32.reinterpret_i32 f64.reinterpret_i64 "
    "i32.extend8_s i32.extend16_s i64.extend8_s i64.extend16_s i64.extend32_s")
OPCODES.update({0x28 + k: (name, "memarg") for k, name in enumerate(_MEMORY_OPS.split())})
OPCODES.update({0x45 + k: (name, "") for k, name in enumerate(_NUMERIC_OPS.split())})
# The 0xFC prefix: saturating truncations, bulk memory and table operations.
PREFIXED_FC = {k: (name, "") for k, name in enumerate(
    "i32.trunc_sat_f32_s i32.trunc_sat_f32_u i32.trunc_sat_f64_s i32.trunc_sat_f64_u "
    "i64.trunc_sat_f32_s i64.trunc_sat_f32_u i64.trunc_sat_f64_s i64.trunc_sat_f64_u".split())}
PREFIXED_FC.update({8: ("memory.init", "u32_u32"), 9: ("data.drop", "u32"), 10: ("memory.copy", "u32_u32"),
                    11: ("memory.fill", "u32"), 12: ("table.init", "u32_u32"), 13: ("elem.drop", "u32"),
                    14: ("table.copy", "u32_u32"), 15: ("table.grow", "u32"), 16: ("table.size", "u32"),
                    17: ("table.fill", "u32")})
# Opcodes of WebAssembly proposals that the decoder does not read: named in the error.
PROPOSAL_OPCODES = {0x06: ("try", "exception-handling"), 0x07: ("catch", "exception-handling"),
                    0x08: ("throw", "exception-handling"), 0x09: ("rethrow", "exception-handling"),
                    0x0A: ("throw_ref", "exception-handling"), 0x18: ("delegate", "exception-handling"),
                    0x19: ("catch_all", "exception-handling"), 0x1F: ("try_table", "exception-handling"),
                    0x12: ("return_call", "tail-call"), 0x13: ("return_call_indirect", "tail-call"),
                    0x14: ("call_ref", "function-references"), 0x15: ("return_call_ref", "tail-call"),
                    0xD3: ("ref.eq", "garbage-collection"), 0xD4: ("ref.as_non_null", "function-references"),
                    0xD5: ("br_on_null", "function-references"), 0xD6: ("br_on_non_null", "function-references")}
TAG_SECTION = 13   # the exception-handling proposal's section of exception tags
PROPOSAL_PREFIXES = {0xFB: "garbage-collection", 0xFD: "SIMD", 0xFE: "threads (atomic)"}
NATURAL_ALIGNMENT = {"8": 0, "16": 1, "32": 2}  # log2 bytes, by the width in the name (default: the type's)


class Reader:
    """A cursor over module bytes; every read checks bounds and names the offset when it fails."""

    def __init__(self, data, position=0, end=None):
        self.data = data
        self.position = position
        self.end = len(data) if end is None else end

    def fail(self, what, at=None):
        at = self.position if at is None else at
        raise WasmError("byte offset %d (0x%x): %s" % (at, at, what))

    def byte(self):
        if self.position >= self.end:
            self.fail("unexpected end (truncated module or section)")
        value = self.data[self.position]
        self.position += 1
        return value

    def bytes(self, count):
        if count > self.end - self.position:
            self.fail("unexpected end: %d bytes needed, %d left" % (count, self.end - self.position))
        chunk = self.data[self.position:self.position + count]
        self.position += count
        return chunk

    def leb(self, bits, signed):
        """An unsigned or signed LEB128 number of at most `bits` bits (core spec 5.2.2)."""
        start = self.position
        result, shift = 0, 0
        max_bytes = (bits + 6) // 7
        for _ in range(max_bytes):
            value = self.byte()
            result |= (value & 0x7F) << shift
            shift += 7
            if not value & 0x80:
                break
        else:
            self.fail("bad LEB128: longer than %d bytes" % max_bytes, start)
        if signed:
            if value & 0x40:
                result -= 1 << shift
            if not -(1 << (bits - 1)) <= result < (1 << (bits - 1)):
                self.fail("bad LEB128: signed value out of %d-bit range" % bits, start)
        elif result >= 1 << bits:
            self.fail("bad LEB128: unsigned value out of %d-bit range" % bits, start)
        return result

    def u32(self):
        return self.leb(32, signed=False)

    def name(self):
        at = self.position
        try:
            return self.bytes(self.u32()).decode("utf-8")
        except UnicodeDecodeError:
            self.fail("name is not valid UTF-8", at)

    def value_type(self):
        at = self.position
        code = self.byte()
        if code in REFERENCE_TYPE_PREFIXES:   # (ref null? heaptype) of typed function references
            self.leb(33, signed=True)
            return "ref"
        if code not in VALUE_TYPES:
            self.fail("unknown value type 0x%02x" % code, at)
        return VALUE_TYPES[code]

    def limits(self):
        """(min, max or None); flags 0/1 only (shared and 64-bit memories are reported by the caller)."""
        at = self.position
        flags = self.byte()
        if flags not in (0, 1):
            self.fail("unsupported limits flags 0x%02x (shared or 64-bit memory)" % flags, at)
        minimum = self.u32()
        maximum = self.u32() if flags == 1 else None
        if maximum is not None and maximum < minimum:
            self.fail("limits: maximum %d below minimum %d" % (maximum, minimum), at)
        return minimum, maximum


# One decoded instruction: its name, immediate (int, tuple or None) and byte offset in the module.
Instruction = collections.namedtuple("Instruction", "name immediate offset")


def read_instruction(reader):
    """Decode one instruction with its immediate. Unknown opcodes are a WasmError."""
    at = reader.position
    code = reader.byte()
    if code == 0xFC:
        sub = reader.u32()
        if sub not in PREFIXED_FC:
            reader.fail("unknown opcode 0xfc %d" % sub, at)
        name, kind = PREFIXED_FC[sub]
    elif code in PROPOSAL_PREFIXES:
        reader.fail("an instruction with the 0x%02x prefix (the %s proposal): not supported"
                    % (code, PROPOSAL_PREFIXES[code]), at)
    elif code in PROPOSAL_OPCODES:
        name, proposal = PROPOSAL_OPCODES[code]
        reader.fail("%s (opcode 0x%02x, the %s proposal): not supported" % (name, code, proposal), at)
    elif code in OPCODES:
        name, kind = OPCODES[code]
    else:
        reader.fail("unknown opcode 0x%02x" % code, at)
    if kind == "":
        immediate = None
    elif kind == "block":
        # empty (0x40), one value type, or a type index (s33): a multi-value block
        first = reader.data[reader.position] if reader.position < reader.end else None
        if first == 0x40:
            reader.byte()
            immediate = ()
        elif first in VALUE_TYPES or first in REFERENCE_TYPE_PREFIXES:
            immediate = (reader.value_type(),)
        else:
            immediate = ("type", reader.leb(33, signed=True))
    elif kind == "u32":
        immediate = reader.u32()
    elif kind == "u32_u32":
        immediate = (reader.u32(), reader.u32())
    elif kind == "br_table":
        labels = [reader.u32() for _ in range(reader.u32())]
        immediate = (labels, reader.u32())
    elif kind == "memarg":
        align, offset = reader.u32(), reader.u32()
        width = re.search(r"(8|16|32)(_[su])?$", name)
        natural = NATURAL_ALIGNMENT[width.group(1)] if width else (3 if name[1:3] == "64" else 2)
        if align > natural:
            reader.fail("%s: alignment 2^%d exceeds the natural alignment 2^%d" % (name, align, natural), at)
        immediate = offset
    elif kind == "i32":
        immediate = reader.leb(32, signed=True) % WORD_MODULUS
    elif kind == "i64":
        immediate = reader.leb(64, signed=True)
    elif kind in ("f32", "f64"):
        immediate = reader.bytes(4 if kind == "f32" else 8)
    elif kind == "select_t":
        immediate = tuple(reader.value_type() for _ in range(reader.u32()))
    else:  # "reftype": a heap type (s33)
        immediate = reader.leb(33, signed=True)
    return Instruction(name, immediate, at)


def read_expression(reader):
    """Instructions up to the `end` that closes the expression (nested blocks counted)."""
    code = []
    depth = 0
    while True:
        instruction = read_instruction(reader)
        code.append(instruction)
        if instruction.name in ("block", "loop", "if"):
            depth += 1
        elif instruction.name == "end":
            if depth == 0:
                return code
            depth -= 1


class Function:
    """A function of the module: imported (`import_from` = (module, name)) or defined (`code`)."""

    def __init__(self, index, type_, import_from=None):
        self.index = index
        self.params, self.results = type_
        self.import_from = import_from
        self.locals = []        # declared locals' value types (after the parameters)
        self.code = []          # Instructions of the body, ending with its final `end`
        self.offset = None      # byte offset of the body
        self.names = []         # export names
        self.debug_name = None  # its name in the custom section "name", if any

    def label(self):
        names = ("'%s'" % self.names[0]) if self.names else "(no export name)"
        return "function %d %s" % (self.index, names)


class Module:
    """A decoded module: plain attributes, one per section."""

    def __init__(self):
        self.types = []            # (params, results) tuples of value-type names
        self.functions = []        # Function, imports first
        self.tables = []           # ("imported" or "defined", min, max)
        self.memory = None         # (min_pages, max_pages or None)
        self.memory_imported = None  # (module, name) of an imported memory
        self.globals = []          # dicts: type, mutable, init (Instruction list) or import_from
        self.exports = {}          # name -> (kind, index); kind "func" "table" "memory" "global"
        self.start = None          # function index
        self.elements = []         # active segments: (table, offset expression, [function or None], offset)
        self.data = []             # (offset expression, bytes, byte offset of the segment)
        self.debug_names = {}      # function index -> name, from the custom section "name"


EXPORT_KINDS = {0: "func", 1: "table", 2: "memory", 3: "global"}


def decode_module(data):
    """Decode a WebAssembly binary (version 1) into a Module; WasmError on malformed input."""
    data = bytes(data)
    reader = Reader(data)
    if data[:4] != WASM_MAGIC:
        raise WasmError("byte offset 0: bad magic %r (expected %r): not a WebAssembly binary" % (data[:4], WASM_MAGIC))
    if data[4:8] != WASM_VERSION:
        raise WasmError("byte offset 4: unsupported version %r (expected 1)" % data[4:8])
    reader.position = 8
    module = Module()
    last_order = -1
    while reader.position < len(data):
        section_at = reader.position
        section_id = reader.byte()
        size = reader.u32()
        if size > len(data) - reader.position:
            reader.fail("section %d size %d runs past the end of the module (%d bytes left)"
                        % (section_id, size, len(data) - reader.position), section_at)
        body = Reader(data, reader.position, reader.position + size)
        reader.position += size
        if section_id == 0:      # a custom section: its name, then anything; only "name" is read
            if body.name() == "name":
                module.debug_names = _function_names(body)
            continue
        if section_id == TAG_SECTION:
            reader.fail("tag section (id 13, the exception-handling proposal): not supported", section_at)
        if section_id not in SECTION_NAMES:
            reader.fail("unknown section id %d" % section_id, section_at)
        order = SECTION_ORDER.index(section_id)
        if order <= last_order:
            reader.fail("%s section out of order or repeated" % SECTION_NAMES[section_id], section_at)
        last_order = order
        _read_section(module, section_id, body)
        if body.position != body.end:
            body.fail("%s section: %d bytes left over (bad section size)"
                      % (SECTION_NAMES[section_id], body.end - body.position))
    defined = [f for f in module.functions if f.import_from is None]
    if any(f.offset is None for f in defined):
        raise WasmError("function and code sections disagree: %d functions declared, no body for some"
                        % len(defined))
    for name, (kind, index) in module.exports.items():
        limit = {"func": len(module.functions), "global": len(module.globals),
                 "memory": 1, "table": len(module.tables)}[kind]
        if index >= limit:
            raise WasmError("export %r: %s index %d out of range" % (name, kind, index))
        if kind == "func":
            module.functions[index].names.append(name)
    if module.start is not None and module.start >= len(module.functions):
        raise WasmError("start function %d out of range" % module.start)
    for index, name in module.debug_names.items():
        if index < len(module.functions):
            module.functions[index].debug_name = name
    try:
        return legalize.legalize_module(module, Function, Instruction)   # i64 -> pairs of i32
    except legalize.InvalidCode as error:
        raise WasmError(str(error)) from None


NAME_SUBSECTION_FUNCTIONS = 1    # the name section's subsection of function names (core spec 7.4.2)


def _function_names(body):
    """{function index: name} from the custom section "name" (a debugging aid, so a
    malformed one is ignored, as the core spec's appendix asks)."""
    names = {}
    try:
        while body.position < body.end:
            subsection, size = body.byte(), body.u32()
            content = Reader(body.data, body.position, min(body.position + size, body.end))
            body.position = content.end
            if subsection == NAME_SUBSECTION_FUNCTIONS:
                for _ in range(content.u32()):
                    index = content.u32()
                    names[index] = content.name()
    except WasmError:
        pass
    return names


def _read_section(module, section_id, body):
    """Fill the module's fields from one section (`body` covers exactly its bytes)."""
    count = body.u32()
    if section_id == 1:      # type
        for _ in range(count):
            at = body.position
            if body.byte() != 0x60:
                body.fail("function type must start with 0x60", at)
            params = tuple(body.value_type() for _ in range(body.u32()))
            results = tuple(body.value_type() for _ in range(body.u32()))
            module.types.append((params, results))
    elif section_id == 2:    # import
        for _ in range(count):
            source = (body.name(), body.name())
            at = body.position
            kind = body.byte()
            if kind == 0:
                type_index = body.u32()
                if type_index >= len(module.types):
                    body.fail("import %s.%s: type index %d out of range" % (source + (type_index,)), at)
                module.functions.append(Function(len(module.functions), module.types[type_index], source))
            elif kind == 1:
                body.value_type()
                module.tables.append(("imported",) + body.limits())
            elif kind == 2:
                module.memory = body.limits()
                module.memory_imported = source
            elif kind == 3:
                value_type, mutable = body.value_type(), body.byte()
                module.globals.append({"type": value_type, "mutable": mutable == 1, "import_from": source})
            else:
                body.fail("unknown import kind %d" % kind, at)
    elif section_id == 3:    # function
        for _ in range(count):
            at = body.position
            type_index = body.u32()
            if type_index >= len(module.types):
                body.fail("function type index %d out of range" % type_index, at)
            module.functions.append(Function(len(module.functions), module.types[type_index]))
    elif section_id == 4:    # table
        for _ in range(count):
            body.value_type()
            module.tables.append(("defined",) + body.limits())
    elif section_id == 5:    # memory
        if count + (module.memory is not None) > 1:
            body.fail("more than one memory")
        for _ in range(count):
            module.memory = body.limits()
    elif section_id == 6:    # global
        for _ in range(count):
            value_type = body.value_type()
            at = body.position
            mutable = body.byte()
            if mutable not in (0, 1):
                body.fail("global mutability must be 0 or 1", at)
            module.globals.append({"type": value_type, "mutable": mutable == 1,
                                   "init": read_expression(body), "import_from": None})
    elif section_id == 7:    # export
        for _ in range(count):
            name = body.name()
            at = body.position
            kind = body.byte()
            if kind not in EXPORT_KINDS:
                body.fail("unknown export kind %d" % kind, at)
            if name in module.exports:
                body.fail("duplicate export name %r" % name, at)
            module.exports[name] = (EXPORT_KINDS[kind], body.u32())
    elif section_id == 8:    # start: the "count" is the function index
        module.start = count
    elif section_id == 9:    # element segments: function references for the tables
        for _ in range(count):
            at = body.position
            flags = body.u32()
            if flags > 7:
                body.fail("unknown element segment flags %d" % flags, at)
            table = body.u32() if flags in (2, 6) else 0
            offset = read_expression(body) if flags in (0, 2, 4, 6) else None   # active segments
            if flags in (1, 2, 3):
                if body.byte() != 0:
                    body.fail("element kind must be 0 (funcref)")
            elif flags in (5, 6, 7):
                body.value_type()
            if flags < 4:      # function indices
                entries = [body.u32() for _ in range(body.u32())]
            else:              # expressions: ref.func f (or ref.null: no function)
                expressions = [read_expression(body) for _ in range(body.u32())]
                entries = [e[0].immediate if e[0].name == "ref.func" else None for e in expressions]
            if flags & 1 == 0:
                module.elements.append((table, offset, entries, at))
    elif section_id == 12:   # data count
        pass
    elif section_id == 10:   # code
        defined = [f for f in module.functions if f.import_from is None]
        if count != len(defined):
            body.fail("code section has %d bodies for %d declared functions" % (count, len(defined)))
        for function in defined:
            size = body.u32()
            start = body.position
            if size > body.end - start:
                body.fail("function body size %d runs past the section end" % size)
            code_reader = Reader(body.data, start, start + size)
            total = 0
            for _ in range(code_reader.u32()):
                at = code_reader.position
                repeat = code_reader.u32()
                total += repeat
                if total > MAX_LOCALS_DECLARED:
                    code_reader.fail("too many locals (%d)" % total, at)
                function.locals.extend([code_reader.value_type()] * repeat)
            function.offset = code_reader.position
            function.code = read_expression(code_reader)
            if code_reader.position != code_reader.end:
                code_reader.fail("function body has %d bytes after its final end"
                                 % (code_reader.end - code_reader.position))
            body.position = code_reader.end
    elif section_id == 11:   # data
        for _ in range(count):
            at = body.position
            flags = body.u32()                    # 0 active, 1 passive, 2 active with a memory index
            if flags > 2:
                body.fail("unknown data segment flags %d" % flags, at)
            if flags == 2 and body.u32() != 0:
                body.fail("data segment for a memory other than 0", at)
            offset = None if flags == 1 else read_expression(body)
            module.data.append((offset, body.bytes(body.u32()), at))


# ---------------------------------------------------------------------------
# 3. Shared routines
# ---------------------------------------------------------------------------
# Each routine is a flat function (SPEC 3.4 calling convention: arguments
# pushed left to right, the prologue pops them into locals 0..n-1, results
# stay on the operand stack). They are written below in a small assembly
# language: one instruction per `;`-separated statement, `name:` defines a
# label, `#` starts a comment; an argument is a local's name, a label, a
# routine name (for `call`), an integer, S / S+k = the scratch bytes, or
# H / H+k = the hex digit table.
# `return` needs no argument (its F-R-1 is computed). Every frame starts with
# zeroed locals (SPEC 4.8 d4), which the routines rely on.
# Step counts are instructions executed from the `call` to the `return`, measured
# as worst cases over special and random operands.

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


BRANCH_OPS = ("br", "br_if", "call", "return")   # immediates relative to the target (SPEC 3.3)

ROUTINES = {}   # name -> (parameters, temporaries, assembly text, routines it calls)


def routine(name, params, temps, text, calls=()):
    ROUTINES[name] = (params.split(), temps.split(), text, tuple(calls))


routine("print_hex", "x", "n v", """
    # Prints x as 8 lower-case hex digits and a newline (the entry harness's output):
    # byte by byte from the top, its two digits read from the table at H (which the
    # harness writes when it prints results). Steps: at most 86.
    i32.const S ; local.get x ; i32.store 0
    i32.const 4 ; local.set n
byte:
    local.get n ; i32.const 1 ; i32.sub ; local.tee n
    i32.const S ; i32.add ; i32.load8_u 0 ; local.tee v ; local.get v ; i32.add ; local.set v   # 2 * byte
    local.get v ; i32.load8_u H ; output ; local.get v ; i32.load8_u H+1 ; output
    local.get n ; br_if byte
    i32.const 10 ; output ; return
""")

def assemble_routine(name, entries, scratch):
    """The routine's flat items (labels and (opcode, immediate-or-Label) pairs);
    `scratch` is the reserved area's address (S), the hex table follows (H)."""
    params, temps, text, _ = ROUTINES[name]
    local_index = {local: i for i, local in enumerate(params + temps)}
    labels = {label: Label("%s.%s" % (name, label)) for label in re.findall(r"^(\w+):", text, re.M)}
    statements = [statement.split() for line in text.splitlines() for statement in line.split("#")[0].split(";")]
    items = [entries[name], Origin("routine " + name, name, routine=True)]
    items += [("local.set", i) for i in reversed(range(len(params)))]
    for words in filter(None, statements):
        if len(words) == 1 and words[0].endswith(":"):
            items.append(labels[words[0][:-1]])
            continue
        opcode = words[0]
        argument = words[1] if len(words) > 1 else None
        if opcode == "return":
            immediate = entries[name]
        elif argument is None:
            immediate = 0
        elif argument in local_index:
            immediate = local_index[argument]
        elif argument in labels:
            immediate = labels[argument]
        elif argument in entries:
            immediate = entries[argument]
        elif argument[0] in "SH":
            area = scratch if argument[0] == "S" else scratch + HEX_TABLE_OFFSET
            immediate = area + int(argument[1:] or 0)
        else:
            immediate = int(argument, 0) % WORD_MODULUS
        items.append((opcode, immediate))
    return items


def closure(roots, successors):
    """The set of `roots` and everything `successors(item)` leads to, transitively."""
    seen, pending = set(), list(roots)
    while pending:
        item = pending.pop()
        if item not in seen:
            seen.add(item)
            pending += successors(item)
    return seen


def routines_needed(names):
    """`names` and every routine they call, transitively, in a fixed order."""
    needed = closure(names, lambda name: ROUTINES[name][3])
    return [name for name in ROUTINES if name in needed]


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
# 4. Lowering
# ---------------------------------------------------------------------------

SCRATCH_BYTES = 8            # the routines' scratch: two words
MEMORY_SIZE_OFFSET = SCRATCH_BYTES   # a growable memory's current size in bytes (a word)
HEX_TABLE_OFFSET = 12        # then the 512-byte table of hex digit pairs (print_hex)
HEX_TABLE = "".join("%02x" % value for value in range(256)).encode("ascii")
RESERVED_HEADER_BYTES = HEX_TABLE_OFFSET + len(HEX_TABLE)   # the globals follow
GLOBAL_BYTES = 4             # one word per global
MAX_TABLE_SLOTS = 1 << 16    # call_indirect tests each slot in turn: larger tables are reported
NATIVE = set(reference.OPCODES) - {"halt", "return", "call", "br", "br_if", "global.get", "global.set",
                                   "output", "input_base", "trap"}
MEMORY_WIDTH = {"i32.load": 4, "i32.load8_s": 1, "i32.load8_u": 1, "i32.load16_s": 2, "i32.load16_u": 2,
                "i32.store": 4, "i32.store8": 1, "i32.store16": 2}
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


def _where(function, instruction):
    return "%s, byte offset 0x%x" % (function.label(), instruction.offset)


def reachable_functions(module, roots):
    """Indices of the functions that `roots` can call, transitively (roots included)."""
    def callees(index):
        found = []
        for instruction in module.functions[index].code:
            if instruction.name == "call" and instruction.immediate < len(module.functions):
                found.append(instruction.immediate)
            elif instruction.name == "call_indirect":
                found += indirect_targets(module, *instruction.immediate)
        return found
    return sorted(closure(roots, callees))


def table_contents(module, table):
    """The function (or None) in each slot of a defined table after its active element
    segments; None when it cannot be known here (imported, non-constant or out of bounds)."""
    if table >= len(module.tables) or module.tables[table][0] == "imported" \
            or module.tables[table][1] > MAX_TABLE_SLOTS:
        return None
    contents = [None] * module.tables[table][1]
    for segment_table, offset, entries, _ in module.elements:
        if segment_table == table:
            start = constant_of(module, offset)
            if start is None or start + len(entries) > len(contents):
                return None
            contents[start:start + len(entries)] = entries
    return contents


def indirect_targets(module, type_index, table):
    """The functions call_indirect can reach: the table's functions of the right type."""
    contents = table_contents(module, table) or []
    wanted = module.types[type_index] if type_index < len(module.types) else None
    return sorted({f for f in contents if f is not None and f < len(module.functions)
                   and (module.functions[f].params, module.functions[f].results) == wanted})


def memory_bytes(module):
    """The initial size of the module's memory in bytes (its minimum)."""
    return 0 if module.memory is None else module.memory[0] * PAGE_BYTES


def growth_limit(module):
    """The most pages memory.grow may reach, or None when the memory cannot grow here.

    Growth stops below the top page (it holds the reserved area) and at the
    declared maximum; beyond it memory.grow returns -1, as WebAssembly allows."""
    uses_grow = any(i.name == "memory.grow" for f in module.functions for i in f.code)
    if module.memory is None or not uses_grow:
        return None
    minimum, maximum = module.memory
    limit = min(MAX_PAGES - 1 if maximum is None else maximum, MAX_PAGES - 1)
    return limit if limit > minimum else None


def reserved_size(module):
    return RESERVED_HEADER_BYTES + GLOBAL_BYTES * len(module.globals)


def reserved_base(module):
    """Where the scratch bytes, the memory size and the globals live (see the module header)."""
    limit = growth_limit(module)
    size = memory_bytes(module) if limit is None else limit * PAGE_BYTES
    if size + reserved_size(module) <= MEMORY_SIZE:
        return size
    return MEMORY_SIZE - (reserved_size(module) + 7) // 8 * 8     # the top bytes, 8-aligned


def constant_of(module, expression):
    """The value of a constant expression `i32.const C end`, else None."""
    if len(expression) == 2 and expression[0].name == "i32.const":
        return expression[0].immediate
    return None


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
        problems.append("%s: value types %s (only i32)" % (function.label(), ", ".join(sorted(types - {"i32"}))))
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
            signature = block_signature(module, immediate)
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
            problems.append("%s: %s" % (_where(function, instruction), what))
    return problems


def block_signature(module, block_type):
    """(params, results) of a block type: (), (t,) or ("type", index); None for a bad index."""
    if block_type and block_type[0] == "type":
        index = block_type[1]
        return module.types[index] if 0 <= index < len(module.types) else None
    return (), tuple(block_type)


def temporaries_of(module, function):
    """The extra locals a function's lowering uses, as offsets after its own locals: one
    for an address or br_table index, then one per value a branch keeps (at least one)."""
    kept = [len(function.results), 1]
    for instruction in function.code:
        if instruction.name in ("block", "loop", "if"):
            signature = block_signature(module, instruction.immediate) or ((), ())
            kept += [len(signature[0]), len(signature[1])]
    return list(range(1 + max(kept)))


class Frame:
    """A structured-control label during lowering."""

    def __init__(self, kind, height, arity, params=0):
        self.kind = kind          # "function", "block", "loop", "if"
        self.height = height      # operand stack height at entry (below the block's values)
        self.arity = arity        # values left on the stack at its end
        self.params = params      # values it takes from the stack at entry
        self.end = Label()        # just after its end
        self.target = Label() if kind == "loop" else self.end   # where a branch to this label goes
        self.else_label = Label() if kind == "if" else None     # the start of the else arm (or the end)


class FunctionLowering:
    """Lower one function's body to flat items; tracks the operand stack height to unwind branches."""

    def __init__(self, program, function):
        self.program = program
        self.module = program.module
        self.function = function
        self.items = []
        self.height = 0
        self.frames = []
        n_locals = len(function.params) + len(function.locals)
        temporaries = [n_locals + k for k in temporaries_of(program.module, function)]
        self.address_temp = temporaries[0]      # holds an address / a br_table index
        self.value_temps = temporaries[1:]      # hold the values a branch keeps / a stored value
        self.value_temp = self.value_temps[0]

    def fail(self, instruction, what):
        raise WasmError("%s: invalid module: %s" % (_where(self.function, instruction), what))

    def emit(self, opcode, immediate=0):
        self.items.append((opcode, immediate))

    def pop(self, instruction, count=1):
        if self.height - count < self.frames[-1].height:
            self.fail(instruction, "%s needs %d operands, the stack has %d"
                      % (instruction.name, count, self.height - self.frames[-1].height))
        self.height -= count

    def lower(self):
        function = self.function
        entry = self.program.entries[function.index]
        name = function_name(function)
        self.items += [entry, Origin(name, "prologue")]
        self.items += [("local.set", i) for i in reversed(range(len(function.params)))]
        self.frames.append(Frame("function", 0, len(function.results)))
        code = function.code
        position = 0
        while position < len(code):
            instruction = code[position]
            position += 1
            extend = self.sign_extension_idiom(code, position - 1)
            if extend:                         # (x << 24) >> 24 etc.: one extend8_s/16_s
                instruction = Instruction(extend, None, instruction.offset)
                position += 3
            self.items.append(Origin(name, instruction.name))
            if self.is_putchar_call(instruction) and position < len(code) and code[position].name == "drop":
                self.lower_call(instruction, result_used=False)   # `call putchar; drop`: just `output`
                position += 1
                continue
            getattr(self, LOWERING.get(instruction.name, "lower_native"))(instruction)   # a method per kind
            if self.unreachable:
                position = self.skip_dead_code(code, position)
        return self.items

    unreachable = False

    def skip_dead_code(self, code, position):
        """After br/return/unreachable: skip to the `else`/`end` of the current block."""
        self.unreachable = False
        depth = 0
        while position < len(code):
            name = code[position].name
            if name in ("block", "loop", "if"):
                depth += 1
            elif name == "end" and depth > 0:
                depth -= 1
            elif name in ("end", "else") and depth == 0:
                self.height = self.frames[-1].height + self.frames[-1].arity   # values as if branched
                return position
            position += 1
        return position

    def unwind(self, frame, arity):
        """Drop the values between the frame's height and the `arity` values on top."""
        extra = self.height - frame.height - arity
        if extra < 0:
            return None
        kept = self.value_temps[:arity] if extra else []
        return ([("local.set", t) for t in reversed(kept)] + [("drop", 0)] * extra
                + [("local.get", t) for t in kept])

    def branch_items(self, instruction, depth):
        """Unwinding plus the jump for an unconditional branch to label `depth`."""
        if depth >= len(self.frames):
            self.fail(instruction, "branch depth %d, only %d labels" % (depth, len(self.frames)))
        frame = self.frames[-1 - depth]
        arity = frame.params if frame.kind == "loop" else frame.arity
        items = self.unwind(frame, arity)
        if items is None:
            self.fail(instruction, "branch needs %d values, the stack has %d" % (arity, self.height - frame.height))
        if frame.kind == "function":
            return items + [("return", self.program.entries[self.function.index])]
        return items + [("br", frame.target)]

    def lower_nop(self, instruction):
        pass

    def lower_unreachable(self, instruction):
        self.emit("trap")
        self.unreachable = True

    def lower_block(self, instruction):
        """block/loop/if: no code for a block; a loop's label is its first instruction;
        an if is `i32.eqz; br_if` to its else arm (or its end when there is none)."""
        params, results = block_signature(self.module, instruction.immediate)
        self.pop(instruction, len(params) + (instruction.name == "if"))
        frame = Frame(instruction.name, self.height, len(results), len(params))
        if frame.kind == "loop":
            self.items.append(frame.target)
        elif frame.kind == "if":
            self.items += [("i32.eqz", 0), ("br_if", frame.else_label)]
        self.frames.append(frame)
        self.height += len(params)

    def lower_else(self, instruction):
        frame = self.frames[-1]
        if frame.kind != "if" or frame.else_label is None:
            self.fail(instruction, "else without if")
        self.check_end(instruction, frame)
        self.items += [("br", frame.end), frame.else_label]
        frame.else_label = None
        self.height = frame.height + frame.params

    def lower_end(self, instruction):
        """The end of a block (its label), or of the function (its return)."""
        frame = self.frames[-1]
        self.check_end(instruction, frame)
        if frame.kind == "if" and frame.else_label is not None:
            if frame.arity != frame.params:
                self.fail(instruction, "an if without else must leave its parameters as results")
            self.items.append(frame.else_label)
        if frame.kind == "function":
            self.items += self.branch_items(instruction, 0)
        else:
            self.items.append(frame.end)
            self.height = frame.height + frame.arity
        self.frames.pop()

    def lower_br(self, instruction):
        """br, and return: a branch to the function's label."""
        depth = len(self.frames) - 1 if instruction.name == "return" else instruction.immediate
        self.items += self.branch_items(instruction, depth)
        self.unreachable = True

    def lower_br_if(self, instruction):
        """br_if: direct, or, when the branch must unwind, `i32.eqz; br_if skip; unwind; br`."""
        self.pop(instruction)
        items = self.branch_items(instruction, instruction.immediate)
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
            items = self.branch_items(instruction, depth)
            self.items += [("local.get", self.address_temp), ("i32.const", case), ("i32.eq", 0)]
            if len(items) == 1 and items[0][0] == "br":
                self.emit("br_if", items[0][1])
            else:
                stubs.setdefault(depth, (Label(), items))
                self.emit("br_if", stubs[depth][0])
        self.items += self.branch_items(instruction, default)
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
        if instruction.immediate >= len(self.function.params) + len(self.function.locals):
            self.fail(instruction, "local %d does not exist" % instruction.immediate)
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
            self.fail(instruction, "global.set of immutable global %d" % index)
        self.pop(instruction)
        self.items += [("local.set", self.value_temp), ("i32.const", self.program.global_address(index)),
                       ("local.get", self.value_temp), ("i32.store", 0)]

    def lower_memory_access(self, instruction):
        """A load or store, after a bounds check when the module's memory is below 16 MiB."""
        name, offset = instruction.name, instruction.immediate
        store = "store" in name
        if self.module.memory is None:
            self.fail(instruction, "%s without a memory" % name)
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
            self.fail(instruction, "%s without a memory" % instruction.name)
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
            self.fail(instruction, "%s is not supported" % name)
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

    def check_end(self, instruction, frame):
        if self.height != frame.height + frame.arity:
            self.fail(instruction, "block ends with %d values, its type says %d"
                      % (self.height - frame.height, frame.arity))


class ProgramLowering:
    """The whole program: harness, shared trap (if used), functions (lowered on demand), routines."""

    def __init__(self, module):
        self.module = module
        self.base = reserved_base(module)
        self.growth_limit = growth_limit(module)   # computed once: it scans the whole module
        self.scratch = self.base
        self.entries = {}            # function index -> Label; routine name -> Label
        self.pending = []            # function indices to lower, in order of first call
        self.trap_label = Label("trap")

    def global_address(self, index):
        return self.base + RESERVED_HEADER_BYTES + GLOBAL_BYTES * index

    def bounds_check_items(self, reach, address_temp):
        """Code that traps unless address + reach <= the memory size (address on top, kept).

        Fixed memory of M < 2^24 bytes: address >u M - reach (5 instructions). Growable
        memory: the same against the size word (8 instructions; 14 when reach exceeds the
        initial size). A memory of 2^24 bytes needs none: the machine traps (SPEC 4.8)."""
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

    def routine_entry(self, name):
        for needed in routines_needed([name]):
            if needed not in self.entries:
                self.entries[needed] = Label(needed)
        return self.entries[name]

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
            put(self.base + MEMORY_SIZE_OFFSET, memory_bytes(self.module).to_bytes(4, "little"))
        for index, global_ in enumerate(self.module.globals):
            value = constant_of(self.module, global_["init"])
            if global_["mutable"] and value is not None:  # other types: reported where used
                put(self.global_address(index), value.to_bytes(4, "little"))
        words = {}
        for address, value in image.items():
            if value:
                aligned = address - address % 4
                words[aligned] = words.get(aligned, 0) | value << (8 * (address - aligned))
        return sorted(words.items())

    def lower(self, calls, input_address=None, print_results=True, silent_calls=0):
        """Harness + functions + routines as flat items. `calls`: [(function index, args)]."""
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
                    items += [("local.get", k), ("call", self.routine_entry("print_hex"))]
            else:
                for byte in NO_RESULT_LINE:
                    items += [("i32.const", byte), ("output", 0)]
        items.append(("halt", 0))
        harness_end = len(items)
        for index in self.pending:                    # grows while lowering reaches more functions
            items += FunctionLowering(self, module.functions[index]).lower()
        for name in ROUTINES:
            if name in self.entries:
                items += assemble_routine(name, self.entries, self.scratch)
        if any(isinstance(item, tuple) and item[1] is self.trap_label for item in items):
            items[harness_end:harness_end] = [self.trap_label, Origin("harness", "trap"), ("trap", 0)]   # only when a branch can reach it
        return items


def find_export(module, name):
    """The function index exported as `name`; WasmError if there is none."""
    kind, index = module.exports.get(name, (None, None))
    if kind != "func":
        raise WasmError("the module exports no function %r (function exports: %s)"
                        % (name, ", ".join(sorted(n for n, (k, _) in module.exports.items() if k == "func"))
                           or "none"))
    return index


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

    - entry "compute" with args None: the C ABI of SPEC 5. compute(input) gets
      `input_base A` as instruction 0 and A as its argument (its other
      parameters 0); compute() none; any result is dropped. Output comes from
      env.output_byte and env.putchar only.
    - otherwise: calls the exported function `entry` with the i32 `args` and
      prints its results, each as 8 lower-case hex digits and a newline (a
      function without results prints "-" and a newline). An i64 argument
      or result is two words, low then high (legalize.py).
    - calls=[(name, args), ...] runs several exported functions in order, each
      printed that way (the spec-test runner's batches), except the first
      `silent_calls` calls, whose results are dropped.
    The complete check runs first: UnsupportedError lists every unsupported
    use in the functions the calls can reach; WasmError for an invalid module.
    """
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
# 5. C compilation and program files
# ---------------------------------------------------------------------------

REPO = pathlib.Path(__file__).resolve().parent
EXAMPLES_DIR = REPO / "examples"         # runtime.h lives here
STRIP_NAMES = "-Wl,--strip-all"
# The clang of the `ziglang` package (python -m ziglang cc ...), one flag per line:
C_FLAGS = [
    "--target=wasm32-freestanding",      # 32-bit WebAssembly, no operating system
    "-mcpu=mvp",                         # WebAssembly 1.0 only: no bulk memory, no multi-value...
    "-O2",                               # short code: every instruction is a transformer step
    "-g0",                               # no debug info (it holds paths: builds would differ)
    "-nostdlib",                         # there is no libc; runtime.h is the whole runtime
    "-fno-builtin",                      # no memcpy/memset calls invented by the compiler
    "-fno-jump-tables",                  # switch -> compare chains, not br_table
    "-include", "runtime.h",             # putchar, print_str, print_int, parse_int ... (SPEC 5)
    "-Wl,--no-entry",                    # a library: the harness calls compute
    "-Wl,--export=compute",              # the entry point
    "-Wl,--export=__heap_base",          # the input goes at (__heap_base + 15) & ~15
    "-Wl,-z,stack-size=65536",           # 64 KiB C stack, first in memory (data above it)
    "-Wl,--initial-memory=16777216",     # 256 pages = the machine's 16 MiB: no bounds checks needed
    "-Wl,--max-memory=16777216",         # and it never grows
    STRIP_NAMES,                         # no name section: the same .wasm from any checkout
]


def compile_c(path, keep_names=False):
    """C source -> WebAssembly binary (bytes) with zig's clang; WasmError with the
    compiler's messages when ziglang is missing or the compilation fails.
    keep_names: keep the name section (function names, for the profile)."""
    try:
        import ziglang  # noqa: F401  (only to give a clear message when it is missing)
    except ImportError:
        raise MissingToolError("compiling C needs the `ziglang` package (pip install ziglang)") from None
    with tempfile.TemporaryDirectory() as work:
        output = os.path.join(work, "program.wasm")
        flags = [flag for flag in C_FLAGS if not (keep_names and flag == STRIP_NAMES)]
        command = ([sys.executable, "-m", "ziglang", "cc"] + flags
                   + ["-I", str(EXAMPLES_DIR), "-o", output, str(path)])
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not os.path.exists(output):
            messages = (result.stderr or result.stdout).strip() or "(the compiler printed nothing)"
            errors = [line for line in messages.splitlines() if "error:" in line]
            summary = ("%d error%s, the first: %s" % (len(errors), "" if len(errors) == 1 else "s", errors[0])
                       if errors else messages.splitlines()[0])
            raise WasmError("compiling %s failed (%s)\n%s" % (path, summary, messages))
        with open(output, "rb") as f:
            return f.read()


def wat_to_wasm(text):
    """WebAssembly text -> binary, with wasmtime's assembler (a test/tool dependency)."""
    try:
        import wasmtime
    except ImportError:
        raise MissingToolError("assembling .wat needs the `wasmtime` package (pip install wasmtime)") from None
    try:
        return bytes(wasmtime.wat2wasm(text))
    except Exception as error:  # wasmtime raises its own error type
        raise WasmError("the .wat text does not assemble: %s" % str(error).strip().splitlines()[0]) from None


def validation_error(binary):
    """wasmtime's reason why `binary` is not a valid module, None if it is valid.
    Asked about modules the front end rejects, to tell an invalid module (first
    reason) from a valid one using what wasmtf does not support."""
    try:
        import wasmtime
    except ImportError:
        raise MissingToolError("telling an invalid module from an unsupported one needs the `wasmtime` package "
                               "(pip install wasmtime)") from None
    try:
        wasmtime.Module.validate(wasmtime.Engine(), binary)
    except Exception as error:  # wasmtime raises its own error type
        return (str(error).strip().splitlines() or ["rejected by wasmtime"])[0]
    return None


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
    """(instructions, input_bytes) from a .c, .wasm, .wat or program .txt file.

    input_text (a str) replaces a .txt file's input section; for a compiled
    compute(input) it is the input (empty when None). Raises WasmError /
    UnsupportedError / reference.ProgramError / OSError with a clear message."""
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
    instructions = lower_binary(program_binary(path), path)
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


EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


# ---------------------------------------------------------------------------
# 6. The WebAssembly spec-test runner (`python wasmtf.py spectest FILE.wast...`)
# ---------------------------------------------------------------------------
# A .wast script is a list of S-expressions: modules, actions (invoke) and
# assertions. Each module becomes an instance; the assertions on it run as
# batches of calls in one program (SPEC programs cannot catch a trap: after a
# trap the batch restarts with the calls that changed memory or globals
# replayed first; a trapped call is assumed to have changed nothing before
# its trap). Everything that is not run is counted, with its reason.

class WastString(bytes):
    """A string literal of a .wast script (its bytes, escapes decoded)."""


# A token: blanks, a line comment, a block comment's start, a parenthesis, a string or a symbol.
WAST_TOKEN = re.compile(r'\s+|;;[^\n]*|\(;|[()]|"(?:[^"\\]|\\.)*"|[^\s()";]+', re.S)
BLOCK_COMMENT_MARK = re.compile(r"\(;|;\)")
# An escape in a string: \u{code point}, \hh (a byte) or one of WAST_ESCAPES.
WAST_ESCAPE = re.compile(rb"\\(?:u\{([0-9a-fA-F]+)\}|([0-9a-fA-F]{2})|(.))", re.S)
WAST_ESCAPES = {b"t": b"\t", b"n": b"\n", b"r": b"\r", b'"': b'"', b"'": b"'", b"\\": b"\\"}


def wast_string(literal):
    """The WastString of a string literal's text (between its quotes)."""
    def decode(match):
        code_point, byte, char = match.groups()
        if code_point:
            return chr(int(code_point, 16)).encode("utf-8")
        return bytes([int(byte, 16)]) if byte else WAST_ESCAPES[char]
    return WastString(WAST_ESCAPE.sub(decode, literal.encode("utf-8")))


def parse_wast(text):
    """The top-level forms of a script: [(tree, source text, line)]; a tree is a list
    of trees, symbols (str) and WastStrings. WasmError for unbalanced text."""
    forms, stack, position = [], [], 0

    def line_of(offset):
        return text.count("\n", 0, offset) + 1

    while position < len(text):
        token = WAST_TOKEN.match(text, position)
        if token is None:
            raise WasmError("line %d: unexpected %r" % (line_of(position), text[position]))
        start, position, token = position, token.end(), token.group()
        if token == "(;":                              # nested block comments are counted
            depth = 1
            while depth:
                mark = BLOCK_COMMENT_MARK.search(text, position)
                position = len(text) if mark is None else mark.end()
                depth = 0 if mark is None else depth + (1 if mark.group() == "(;" else -1)
        elif token == "(":
            stack.append(([], start))
        elif token == ")":
            if not stack:
                raise WasmError("line %d: unbalanced ')'" % line_of(start))
            tree, tree_start = stack.pop()
            if stack:
                stack[-1][0].append(tree)
            else:
                forms.append((tree, text[tree_start:position], line_of(tree_start)))
        elif stack and not token[0].isspace() and not token.startswith(";;"):
            stack[-1][0].append(wast_string(token[1:-1]) if token[0] == '"' else token)
    if stack:
        raise WasmError("line %d: unclosed '('" % line_of(stack[-1][1]))
    return forms


def wast_integer(text):
    """An integer literal of the text format: sign, decimal or 0x hex, underscores."""
    text = text.replace("_", "")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    return sign * (int(digits[2:], 16) if digits.startswith("0x") else int(digits, 10))


def wast_values(trees):
    """[i32 words] for a list of `(i32.const N)` and `(i64.const N)` (an i64 as its low and
    high word, as legalize.py passes it), or None if any value is of another type."""
    values = []
    for tree in trees:
        if not (isinstance(tree, list) and len(tree) == 2 and tree[0] in ("i32.const", "i64.const")):
            return None
        value = wast_integer(tree[1])
        values += [value % WORD_MODULUS] if tree[0] == "i32.const" else list(legalize.halves(value))
    return values


def mutates_state(module, index):
    """Can calling function `index` change memory, its size or globals?"""
    return any(instruction.name in ("global.set", "memory.grow") or ".store" in instruction.name
               for reachable in reachable_functions(module, [index])
               for instruction in module.functions[reachable].code)


def reference_runner(instructions):
    machine = reference.execute(instructions)
    return machine.status, bytes(machine.output)


def transformer_runner(instructions):
    """Run a program inside the compiled transformer: (status, output bytes)."""
    import compile_weights
    tokens = compile_weights.run_transformer(instructions)
    status = tokens[-1] if tokens and tokens[-1] in reference.STOP_TOKENS else "end"
    return status, reference.output_bytes(tokens)


CALLS_PER_PROGRAM = 64       # a trap restarts the rest of a batch: keep batches short


def run_calls(module, calls, runner=reference_runner):
    """Run exported functions in order on one instance: (outcomes, replay), outcomes
    [("return", [values]) | ("trap", None)], replay the state-changing calls done.

    A trap ends a program, so the calls after it run in a new program that first
    replays (silently) the state-changing calls that completed."""
    replay, outcomes = [], []
    remaining = list(calls)
    mutating = {name: mutates_state(module, find_export(module, name)) for name, _ in calls}
    while remaining:
        batch = remaining[:CALLS_PER_PROGRAM]
        instructions = lower_module(module, calls=replay + batch, silent_calls=len(replay))
        status, output = runner(instructions)
        lines = output.split(b"\n")[:-1]
        done = 0
        for name, args in batch:                       # the calls that completed
            count = max(1, len(module.functions[find_export(module, name)].results))   # printed lines
            if len(lines) < count:
                break
            values, lines = lines[:count], lines[count:]
            outcomes.append(("return", [] if values == [NO_RESULT_LINE.strip()] else
                             [int(line, 16) for line in values]))
            if mutating[name]:
                replay.append((name, args))
            done += 1
        if status == "halt" and done == len(batch):
            remaining = remaining[done:]
            continue
        if status != "trap" or done >= len(batch):
            raise WasmError("the program stopped with %r after %d of %d calls" % (status, done, len(batch)))
        outcomes.append(("trap", None))
        remaining = remaining[done + 1:]
    return outcomes, replay


# What the machine runs of a script is a WebAssembly execution too: the calls that
# are not skipped, with memory.grow failing (-1) past the machine's pages, as
# WebAssembly lets a host do. Where the script expects something else from that
# very execution (wasmtime decides), the assertion is about what the machine does
# not run: effects of a skipped state-changing assertion, or memory beyond 16 MiB.
WASM_MAX_PAGES = 1 << 16                  # WebAssembly's own limit: 4 GiB


def machine_pages(module):
    """The pages the module's memory can have on the machine (memory.grow fails beyond)."""
    limit = growth_limit(module)
    return module.memory[0] if limit is None else limit


def grows_beyond_machine(module):
    """Could memory.grow succeed in WebAssembly where it fails on the machine?"""
    if module.memory is None or not any(i.name == "memory.grow" for f in module.functions for i in f.code):
        return False
    maximum = WASM_MAX_PAGES if module.memory[1] is None else module.memory[1]
    return maximum > machine_pages(module)


def wasmtime_outcomes(binary, calls, memory_pages=None):
    """The outcomes of `calls` in wasmtime, as run_calls gives them, with memory.grow failing
    past `memory_pages` (None: WebAssembly's limit); None when the module cannot be
    instantiated on its own (it imports something)."""
    try:
        import wasmtime
    except ImportError:
        raise MissingToolError("the spec-test runner needs the `wasmtime` package (pip install wasmtime)") from None
    store = wasmtime.Store(wasmtime.Engine())
    if memory_pages is not None:
        store.set_limits(memory_size=memory_pages * PAGE_BYTES)
    try:
        exports = wasmtime.Instance(store, wasmtime.Module(store.engine, binary), []).exports(store)
    except (wasmtime.WasmtimeError, wasmtime.Trap):
        return None
    outcomes = []
    for name, args in calls:
        function_type = exports[name].type(store)
        params, results = [str(t) for t in function_type.params], [str(t) for t in function_type.results]
        if len(args) != sum(2 if t == "i64" else 1 for t in params):
            outcomes.append(("error", "%d argument words for parameters %s" % (len(args), params)))
            continue
        try:
            result = exports[name](store, *wasm_arguments(params, args))
        except (wasmtime.Trap, wasmtime.WasmtimeError):
            outcomes.append(("trap", None))
            continue
        values = [] if result is None else list(result) if isinstance(result, (list, tuple)) else [result]
        outcomes.append(("return", [word for t, value in zip(results, values) for word in
                                    (legalize.halves(value) if t == "i64" else [value % WORD_MODULUS])]))
    return outcomes


def wasm_arguments(param_types, words):
    """The signed WebAssembly values of argument words: an i64 from its low and high word."""
    values, position = [], 0
    for value_type in param_types:
        if value_type == "i64":
            value = words[position] + (words[position + 1] << 32)
            values.append(value - (1 << 64) if value >> 63 else value)
        else:
            values.append(reference.to_signed(words[position]))
        position += 2 if value_type == "i64" else 1
    return values


def _fulfils(outcome, expected):
    """Does an outcome ("return", values) / ("trap", None) / ("error", message) meet an expectation?"""
    return outcome[0] == "trap" if expected == "trap" else outcome == ("return", expected)


# Assertions about other things than running valid modules.
NOT_RUN = {"assert_invalid": "validation: the front end expects valid modules",
           "assert_malformed": "text and binary parsing", "assert_unlinkable": "linking",
           "assert_exhaustion": "call stack exhaustion (the reference stops past 16,383 calls with an error, not a trap)",
           "assert_uninstantiable": "instantiation traps"}


class Instance:
    """A module of the script with the calls queued on it."""

    def __init__(self, module, error=None, binary=None):
        self.module = module
        self.binary = binary        # the module's bytes (for wasmtime)
        self.error = error          # why its calls cannot run (skip reason), or None
        self.unknown_from = None    # queue index from which a skipped assertion may have changed the state
        self.queue = []             # (name, args, expected, line) ; expected: list, "trap" or None (invoke)
        self.supported = {}         # export name -> skip reason or None


def _problem_kind(problem):
    """A short reason from a problem message: its last part (the instruction or feature),
    with the instructions of other value types grouped."""
    kind = problem.rsplit(": ", 1)[-1]
    if re.match(r"(i64|f32|f64)\.", kind):
        return "%s instructions" % ("i64" if kind.startswith("i64") else "f32/f64")
    return kind


def _load_instance(tree, source):
    """The Instance of a `(module ...)` form (text, or `binary` strings)."""
    rest = tree[1:]
    if rest and isinstance(rest[0], str) and rest[0].startswith("$"):
        rest = rest[1:]                                  # the module's $name
    kind = rest[0] if rest and isinstance(rest[0], str) else None
    try:
        if kind == "binary":
            binary = b"".join(part for part in rest if isinstance(part, WastString))
        elif kind in ("quote", "definition", "instance"):
            raise WasmError("(module %s ...) forms are not run" % kind)
        else:
            binary = wat_to_wasm(source)
        return Instance(decode_module(binary), binary=binary)
    except MissingToolError:
        raise                                            # not a module's problem: the run cannot go on
    except WasmError as error:
        return Instance(None, "module not loaded: %s" % str(error).splitlines()[0][:80])


def _action(tree):
    """The `(invoke $module? "name" args...)` of an invoke, assert_return or assert_trap, else None."""
    head = tree[0] if tree else None
    action = tree if head == "invoke" else (tree[1] if head in ("assert_return", "assert_trap")
                                            and len(tree) > 1 else None)
    if isinstance(action, list) and len(action) >= 2 and action[0] == "invoke":
        return action
    return None


def spectest_file(path, runner, skips, failures):
    """Run one .wast file; returns (passed, failed, skipped)."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    file_name = pathlib.Path(path).name

    def skip(reason):
        skips[reason] = skips.get(reason, 0) + 1
        counts["skipped"] += 1

    instances, named = [], {}
    for tree, source, line in parse_wast(reference.read_text(path)):
        head = tree[0] if tree and isinstance(tree[0], str) else None
        action = _action(tree)
        if head == "module":
            instances.append(_load_instance(tree, source))
            if len(tree) > 1 and isinstance(tree[1], str) and tree[1].startswith("$"):
                named[tree[1]] = instances[-1]
        elif action is not None:
            target = action[1] if isinstance(action[1], str) and action[1].startswith("$") else None
            instance = named.get(target) if target else (instances[-1] if instances else None)
            call = action[2:] if target else action[1:]
            if instance is None or not call or not isinstance(call[0], WastString):
                reason = "no module or no function name"
            else:
                reason = _call_problem(instance, file_name, call, head, tree)
            if reason is None:
                expected = None                          # a plain invoke asserts nothing
                if head != "invoke":
                    expected = "trap" if head == "assert_trap" else wast_values(tree[2:])
                instance.queue.append((call[0].decode("utf-8"), wast_values(call[1:]), expected, line))
            elif head != "invoke":
                skip(reason)
                if instance is not None and not instance.error and instance.unknown_from is None \
                        and _may_change_state(instance, call):
                    instance.unknown_from = len(instance.queue)  # its effects are not run
            elif instance is not None and not instance.error:   # its state is now unknown
                instance.error = "an earlier invoke on this module was not run (%s)" % reason
        elif head == "register":
            continue                                     # linking: importing modules are reported
        elif head in ("assert_return", "assert_trap") and len(tree) > 1 and isinstance(tree[1], list):
            skip({"get": "global reads (get)", "module": "assert_trap of a module instantiation"}.get(
                tree[1][0] if tree[1] else None, "malformed %s" % head))
        elif head and head.startswith("assert_"):
            skip("%s (%s)" % (head, NOT_RUN.get(head, "not run")))
        else:
            skip("unknown command %r" % head)
    for instance in instances:
        _run_instance(instance, runner, file_name, counts, failures, skip)
    return counts["passed"], counts["failed"], counts["skipped"]


def _may_change_state(instance, call):
    """Can the function a call names change memory, its size or globals?"""
    try:
        return mutates_state(instance.module, find_export(instance.module, call[0].decode("utf-8", "replace")))
    except WasmError:
        return False                                     # no such function: nothing runs


def _call_problem(instance, file_name, call, head, tree):
    """Why a call cannot run (a skip reason), or None."""
    function_name = call[0].decode("utf-8", "replace")
    if instance.error:
        return instance.error
    if wast_values(call[1:]) is None or (head == "assert_return" and wast_values(tree[2:]) is None):
        return "values of types other than i32 and i64"
    if function_name not in instance.supported:       # whether the export can run, once per name
        reason = None
        try:
            index = find_export(instance.module, function_name)
            problems = module_problems(instance.module, [index])
            if problems:
                reason = "unsupported: %s" % _problem_kind(problems[0])
        except WasmError as error:
            reason = str(error)
        instance.supported[function_name] = reason
    return instance.supported[function_name]


def _run_instance(instance, runner, file_name, counts, failures, skip):
    if not instance.queue:
        return
    calls = [(name, args) for name, args, _, _ in instance.queue]
    try:
        outcomes, _ = run_calls(instance.module, calls, runner)
    except (WasmError, reference.ProgramError, reference.ExecutionError, RuntimeError) as error:
        outcomes = [("error", str(error).splitlines()[0])] * len(calls)
    # WebAssembly's outcomes of the calls the machine runs (see above), when they can differ
    # from the script's: with unbounded memory and with the machine's pages.
    beyond_machine = grows_beyond_machine(instance.module)
    webassembly = machine_memory = None
    if instance.unknown_from is not None or beyond_machine:
        webassembly = wasmtime_outcomes(instance.binary, calls)
    if beyond_machine and webassembly is not None:
        machine_memory = wasmtime_outcomes(instance.binary, calls, machine_pages(instance.module))
    as_run = machine_memory or webassembly        # WebAssembly doing exactly what the machine does
    for k, ((name, args, expected, line), (kind, value)) in enumerate(zip(instance.queue, outcomes)):
        if expected is None:                      # a plain invoke: no assertion
            continue
        reason = None
        if machine_memory and _fulfils(webassembly[k], expected) and not _fulfils(machine_memory[k], expected):
            reason = "memory.grow beyond the machine's %d pages fails (-1), as WebAssembly allows" \
                % machine_pages(instance.module)
        elif instance.unknown_from is not None and k >= instance.unknown_from and (
                as_run is None or not _fulfils(as_run[k], expected)):
            reason = "the result depends on an earlier assertion that was not run and changes state"
        if reason and (as_run is None or (kind, value) == as_run[k]):
            skip(reason)                          # the script's result is not the machine's to give
            continue
        if reason:                                # but the machine must still do what WebAssembly does
            expected = "trap" if as_run[k][0] == "trap" else as_run[k][1]
        ok = _fulfils((kind, value), expected)
        if ok:
            counts["passed"] += 1
        else:
            counts["failed"] += 1
            got = {"trap": "trap", "error": value}.get(kind) or [reference.to_signed(v) for v in value]
            failures.append("%s:%d: %s(%s): expected %s, got %s" % (
                file_name, line, name, ", ".join(str(reference.to_signed(a)) for a in args),
                expected if expected == "trap" else [reference.to_signed(v) for v in expected], got))


def command_spectest(paths, transformer=False):
    """Run the spec tests of each .wast file; print skip reasons, failures, one line per
    file and a total. Exit 1 if anything failed, 2 for unusable input."""
    runner = transformer_runner if transformer else reference_runner
    totals = [0, 0, 0]
    lines, skips, failures = [], {}, []
    for path in paths:
        try:
            counts = spectest_file(path, runner, skips, failures)
        except MissingToolError as error:
            print("wasmtf: error: %s" % error, file=sys.stderr)
            return EXIT_BAD_INPUT
        except (OSError, WasmError) as error:
            print("wasmtf: error: %s: %s" % (path, error), file=sys.stderr)
            return EXIT_BAD_INPUT
        totals = [t + c for t, c in zip(totals, counts)]
        lines.append("%s: %d passed, %d failed, %d skipped" % ((pathlib.Path(path).name,) + counts))
    for reason, count in sorted(skips.items(), key=lambda item: -item[1]):
        if count:
            print("skipped %5d  %s" % (count, reason))
    for failure in failures:
        print("FAILED %s" % failure)
    for line in lines:
        print(line)
    print("total: %d passed, %d failed, %d skipped" % tuple(totals))
    return EXIT_FAILED if totals[1] else EXIT_OK


# ---------------------------------------------------------------------------
# 7. The instruction-mix profile (`python wasmtf.py profile FILE`)
# ---------------------------------------------------------------------------
# Where a run's trace tokens go: the reference interpreter runs the program,
# then each executed instruction's group is charged to the machine opcode,
# and, for a compiled program, to the source function and the WebAssembly
# instruction it was lowered from (its Origin). A routine's tokens are charged
# to the WebAssembly instruction whose lowering called it, so `i32.xor` counts
# the whole cost of an xor.

PROFILE_ROWS = 12             # rows shown per table by default


def profile_program(path, input_text=None, max_steps=reference.DEFAULT_MAX_STEPS):
    """The profile of one run of a .c, .wasm, .wat or program .txt file: a dict of
    status, steps, tokens and Counters of (tokens, executed instructions) keyed by
    "opcode", "function", "instruction" (WebAssembly), "function instruction" and
    "routine" (tokens spent inside routines, by WebAssembly instruction)."""
    path = pathlib.Path(path)
    input_bytes = None if input_text is None else input_text.encode("utf-8")
    if path.suffix.lower() == ".txt":
        instructions, input_bytes = load_program_file(path, input_text)
        origins = None
    else:
        items = lowered_items(decode_module(program_binary(path, keep_names=True)))
        instructions, origins = assemble(items), instruction_origins(items)
        input_bytes = compute_input(path, instructions, input_bytes)
    machine = reference.execute(instructions, input_bytes, max_steps)
    tables = {key: collections.Counter() for key in ("opcode", "function", "instruction",
                                                     "function instruction", "routine")}
    charged, saved = None, []     # the Origin a routine's code is charged to; one entry per open call
    for record in reference.walk_trace(instructions, machine.trace):
        pc, opcode, tokens = record["pc"], record["opcode"], len(record["group"])
        keys = {"opcode": opcode}
        if origins is not None:
            origin = charged or origins[pc]
            keys.update({"function": origin.function, "instruction": origin.instruction,
                         "function instruction": (origin.function, origin.instruction)})
            if origins[pc].routine:
                keys["routine"] = origin.instruction
            if opcode == "call":
                saved.append(charged)
                if charged is None and origins[reference.branch_target(pc, record["immediate"])].routine:
                    charged = origins[pc]
            elif opcode == "return" and saved:
                charged = saved.pop()
        for table, key in keys.items():
            tables[table][key, "tokens"] += tokens
            tables[table][key, "executed"] += 1
    return dict(status=machine.status, steps=machine.steps, tokens=len(machine.trace), tables=tables)


def format_profile(profile, rows=PROFILE_ROWS):
    """The profile as text: a summary line, then a table per view, largest first."""
    total = profile["tokens"]
    lines = ["%s instructions executed, %s trace tokens, %s"
             % (format(profile["steps"], ","), format(total, ","), profile["status"])]
    views = [("function", "source function (the routines its instructions call included)"),
             ("instruction", "WebAssembly instruction (its lowered code and the routines it calls)"),
             ("routine", "routines (inside the routine, by the WebAssembly instruction that calls it)"),
             ("function instruction", "source function and WebAssembly instruction"),
             ("opcode", "machine instruction")]
    for table, title in views:
        counts = profile["tables"][table]
        keys = sorted({key for key, _ in counts}, key=lambda key: -counts[key, "tokens"])
        if not keys:
            continue
        lines += ["", "tokens by %s:" % title, "%12s %6s %10s  %s" % ("tokens", "share", "executed", table)]
        for key in keys[:rows]:
            name = "  ".join(key) if isinstance(key, tuple) else key
            lines.append("%12s %5.1f%% %10s  %s" % (format(counts[key, "tokens"], ","),
                                                     100 * counts[key, "tokens"] / total,
                                                     format(counts[key, "executed"], ","), name))
        if len(keys) > rows:
            rest = sum(counts[key, "tokens"] for key in keys[rows:])
            lines.append("%12s %5.1f%% %10s  (%d more)" % (format(rest, ","), 100 * rest / total, "", len(keys) - rows))
    return "\n".join(lines)


def command_profile(path, input_text=None, rows=PROFILE_ROWS):
    """Print the profile of one run; exit 0 after halt, 1 when the program trapped."""
    profile = profile_program(path, input_text)
    print(format_profile(profile, rows))
    return EXIT_OK if profile["status"] == "halt" else EXIT_FAILED
