"""decoder.py: WebAssembly in (binary, text or C), a decoded Module out.

    .c --(compile_c: zig's clang)--> .wasm <--(wat_to_wasm: wasmtime)-- .wat
    .wasm --(decode_module)--> Module --(legalize.py: i64 -> pairs of i32)--> Module

Reads WebAssembly 1.0's binary format (core spec chapter 5) with sign extension,
multi-value blocks, bulk-memory and reference-type encodings; other proposals'
opcodes and sections are named in the error. Then questions about a decoded module
(exports, constants, what a call can reach, tables). Cost: linear in the module size.
Invariants: malformed input raises WasmError naming the byte offset, never another
exception; the decoder checks what it reads (section order and sizes, indices,
LEB128 ranges, alignment), not every validation rule (validation_error asks
wasmtime); a missing tool (wasmtime, ziglang) is a MissingToolError, never a skip.
"""
import collections
import importlib
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import legalize
from reference import WORD_MODULUS, MEMORY_SIZE


class WasmError(ValueError):
    """A malformed or invalid module (the message names the byte offset), or a C compile failure."""


class MissingToolError(WasmError):
    """A tool the command needs (a test/tool dependency: wasmtime, ziglang) is not installed."""


# ---------------------------------------------------------------------------
# The binary format (WebAssembly core spec, chapter 5)
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
PROPOSAL_OPCODES = {code: (name, proposal) for proposal, names in [
    ("exception-handling", {0x06: "try", 0x07: "catch", 0x08: "throw", 0x09: "rethrow", 0x0A: "throw_ref",
                            0x18: "delegate", 0x19: "catch_all", 0x1F: "try_table"}),
    ("tail-call", {0x12: "return_call", 0x13: "return_call_indirect", 0x15: "return_call_ref"}),
    ("function-references", {0x14: "call_ref", 0xD4: "ref.as_non_null", 0xD5: "br_on_null", 0xD6: "br_on_non_null"}),
    ("garbage-collection", {0xD3: "ref.eq"})] for code, name in names.items()}
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
# Questions about a decoded module
# ---------------------------------------------------------------------------

MAX_TABLE_SLOTS = 1 << 16    # call_indirect tests each slot in turn: larger tables are reported


def find_export(module, name):
    """The function index exported as `name`; WasmError if there is none."""
    kind, index = module.exports.get(name, (None, None))
    if kind != "func":
        raise WasmError("the module exports no function %r (function exports: %s)"
                        % (name, ", ".join(sorted(n for n, (k, _) in module.exports.items() if k == "func"))
                           or "none"))
    return index


def constant_of(module, expression):
    """The value of a constant expression `i32.const C end`, else None."""
    if len(expression) == 2 and expression[0].name == "i32.const":
        return expression[0].immediate
    return None


def memory_bytes(module):
    """The initial size of the module's memory in bytes (its minimum)."""
    return 0 if module.memory is None else module.memory[0] * PAGE_BYTES


def grows_memory(module):
    """Does any function of the module use memory.grow?"""
    return any(instruction.name == "memory.grow" for function in module.functions for instruction in function.code)


def closure(roots, successors):
    """The set of `roots` and everything `successors(item)` leads to, transitively."""
    seen, pending = set(), list(roots)
    while pending:
        item = pending.pop()
        if item not in seen:
            seen.add(item)
            pending += successors(item)
    return seen


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


# ---------------------------------------------------------------------------
# The binary of a .wat text or a C file, and validation (wasmtime, zig's clang)
# ---------------------------------------------------------------------------

def tool(package, purpose):
    """The module of a test/tool dependency (wasmtime, ziglang); MissingToolError, saying
    what needs it, when it is not installed."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise MissingToolError("%s needs the `%s` package (pip install %s)" % (purpose, package, package)) from None


def wat_to_wasm(text):
    """WebAssembly text -> binary, with wasmtime's assembler."""
    wasmtime = tool("wasmtime", "assembling .wat")
    try:
        return bytes(wasmtime.wat2wasm(text))
    except Exception as error:  # wasmtime raises its own error type
        raise WasmError("the .wat text does not assemble: %s" % str(error).strip().splitlines()[0]) from None


def validation_error(binary):
    """wasmtime's (first) reason why `binary` is not a valid module, None if it is valid:
    tells an invalid module from a valid one using what wasmtf does not support."""
    wasmtime = tool("wasmtime", "telling an invalid module from an unsupported one")
    try:
        wasmtime.Module.validate(wasmtime.Engine(), binary)
    except Exception as error:  # wasmtime raises its own error type
        return (str(error).strip().splitlines() or ["rejected by wasmtime"])[0]
    return None


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

# What a C programmer meets first, by the compiler's words (a regular expression): a hint
# appended to the error. The last: a function of one's own named as one of runtime.h's.
C_HINTS = {"export not found: compute": "; wasmtf calls `void compute(const char *input)`, not main(): rename it",
           "file not found": "; there is no libc: runtime.h (included by itself) has putchar, printf, sscanf",
           "undefined symbol": "; there is no libc: runtime.h has putchar, printf, sscanf, str_len, mem*; no malloc",
           r"runtime\.h:\d+:\d+: note: previous (definition|declaration) is here|error: expected identifier or"
           r" '\('\n(.*\n){0,3}.*runtime\.h:\d+:\d+: note: expanded from macro":
               "; runtime.h (included by itself) already defines that name: use its, or rename yours"}


def compile_c(path, keep_names=False):
    """C source -> WebAssembly binary (bytes) with zig's clang; WasmError with the compiler's
    messages when it fails. keep_names: keep the name section (function names, for the profile)."""
    tool("ziglang", "compiling C")      # (run below as python -m ziglang)
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
            hints = "".join(hint for symptom, hint in C_HINTS.items() if re.search(symptom, messages))
            raise WasmError("compiling %s failed (%s)%s\n%s" % (path, summary, hints, messages))
        with open(output, "rb") as f:
            return f.read()
