"""spectest.py: the WebAssembly spec-test runner (`python wasmtf.py spectest FILE.wast...`).

A .wast script (parse_wast) holds modules, actions (invoke) and assertions; the
assertions on a module run as batches of calls in one flat program (run_calls).
Where the script's expectation depends on what the machine does not run (a
skipped state-changing assertion, memory beyond 16 MiB), wasmtime runs the same
calls and decides. Cost: one lowering and one run per CALLS_PER_PROGRAM calls.
Invariant: an assertion is passed, failed or skipped with its reason, never lost.
"""
import pathlib
import re

import compile_weights
import legalize
import reference
import wasmtf
from decoder import (WasmError, MissingToolError, decode_module, wat_to_wasm, find_export, reachable_functions,
                     grows_memory, tool, PAGE_BYTES)
from frontend import module_problems, lower_module, growth_limit, NO_RESULT_LINE, EXIT_OK, EXIT_FAILED
from reference import WORD_MODULUS


class WastString(bytes):
    """A string literal of a .wast script (its bytes, escapes decoded)."""


# A token: blanks, a line comment, a block comment's start, a parenthesis, a string or a symbol
# (a `;` that starts no comment is a character of a symbol, as in an annotation's `(@a , ; ])`).
WAST_TOKEN = re.compile(r'\s+|;;[^\n]*|\(;|[()]|"(?:[^"\\]|\\.)*"|(?:[^\s()";]|;(?!;))+', re.S)
BLOCK_COMMENT_MARK = re.compile(r"\(;|;\)")
# An escape in a string: \u{code point}, \hh (a byte) or one of WAST_ESCAPES.
WAST_ESCAPE = re.compile(rb"\\(?:u\{([0-9a-fA-F]+)\}|([0-9a-fA-F]{2})|(.))", re.S)
WAST_ESCAPES = {b"t": b"\t", b"n": b"\n", b"r": b"\r", b'"': b'"', b"'": b"'", b"\\": b"\\"}


def wast_string(literal):
    """The WastString of a string literal's text (between its quotes); WasmError for a bad escape."""
    def decode(match):
        code_point, byte, char = match.groups()
        return (chr(int(code_point, 16)).encode("utf-8") if code_point else
                bytes([int(byte, 16)]) if byte else WAST_ESCAPES[char])
    try:
        return WastString(WAST_ESCAPE.sub(decode, literal.encode("utf-8")))
    except (ValueError, KeyError, OverflowError):   # a surrogate or past U+10FFFF, an unknown letter
        raise WasmError("bad escape in the string \"%s\"" % literal[:60]) from None


def parse_wast(text):
    """The forms of a script, annotations left out: [(tree, source text, line)]; a tree is a list
    of trees, symbols (str) and WastStrings. WasmError for unbalanced text or text outside a form."""
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
            if tree and isinstance(tree[0], str) and tree[0].startswith("@"):
                continue                                 # an annotation `(@id ...)`: no part of the script
            if stack:
                stack[-1][0].append(tree)
            else:
                forms.append((tree, text[tree_start:position], line_of(tree_start)))
        elif not token[0].isspace() and not token.startswith(";;"):
            if not stack:
                raise WasmError("line %d: %r outside a command: a script is (...) commands" % (line_of(start), token))
            stack[-1][0].append(wast_string(token[1:-1]) if token[0] == '"' else token)
    if stack:
        raise WasmError("line %d: unclosed '('" % line_of(stack[-1][1]))
    return forms


# An integer literal of the text format: a sign, decimal or 0x hex digits, an underscore between two.
INTEGER_LITERAL = re.compile(r"[+-]?(?:0x[0-9a-fA-F](?:_?[0-9a-fA-F])*|[0-9](?:_?[0-9])*)")


def wast_integer(text):
    """The value of an INTEGER_LITERAL (Python's int() reads the same sign, 0x and underscores)."""
    return int(text, 16 if "0x" in text else 10)


def wast_values(trees):
    """[i32 words] for a list of `(i32.const N)` and `(i64.const N)` (an i64 as its low and
    high word, as legalize.py passes it), or None if any value is of another type or malformed."""
    values = []
    for tree in trees:
        if not (isinstance(tree, list) and len(tree) == 2 and tree[0] in ("i32.const", "i64.const")
                and isinstance(tree[1], str) and INTEGER_LITERAL.fullmatch(tree[1])):
            return None
        values += value_words(tree[0][:3], wast_integer(tree[1]))
    return values


def value_words(value_type, value):
    """The words of an i32 or i64 value (any sign), as the lowered program passes it."""
    return list(legalize.halves(value)) if value_type == "i64" else [value % WORD_MODULUS]


# The instructions that change memory, its size, tables or globals (local.set does not match).
STATE_CHANGE = re.compile(r"store|grow|fill|copy|init|rmw|cmpxchg|global\.set|table\.set")


def mutates_state(module, index):
    """Can calling function `index` change memory, its size, tables or globals?"""
    return any(STATE_CHANGE.search(instruction.name) for reachable in reachable_functions(module, [index])
               for instruction in module.functions[reachable].code)


def reference_runner(instructions, calls=1):
    """Run a program of `calls` calls in the reference interpreter, DEFAULT_MAX_STEPS steps
    a call at most: (status, output bytes), the status "running" if it did not stop."""
    try:
        machine = reference.execute(instructions, max_steps=reference.DEFAULT_MAX_STEPS * calls, keep_trace=False)
    except reference.StepLimitExceeded as limit:
        machine = limit.machine
    return machine.status, bytes(machine.output)


def transformer_runner(instructions, calls=1):
    """Run a program of `calls` calls inside the compiled transformer, DEFAULT_MAX_NEW_TOKENS
    tokens a call at most: (status, output bytes), the status "running" if it did not stop."""
    tokens = wasmtf.run_transformer(compile_weights.compile_machine(), instructions,
                                    max_new_tokens=wasmtf.DEFAULT_MAX_NEW_TOKENS * calls)
    status = tokens[-1] if tokens and tokens[-1] in reference.STOP_TOKENS else "running"
    return status, reference.output_bytes(tokens)


CALLS_PER_PROGRAM = 64       # a trap restarts the rest of a batch: keep batches short
UNFINISHED = "not finished within the runner's bound (%s steps or %s transformer tokens a call)" % (
    format(reference.DEFAULT_MAX_STEPS, ","), format(wasmtf.DEFAULT_MAX_NEW_TOKENS, ","))


def run_calls(module, calls, runner=reference_runner):
    """Run exported functions in order on one instance: (outcomes [("return", [values]) |
    ("trap", None) | ("unfinished", UNFINISHED)], replay: the state-changing calls done). A
    SPEC program cannot catch a trap: the calls after one run in a new program that first
    replays (silently) the state-changing calls that completed (a trapped call changed
    nothing, we assume). Once a call runs out of steps, it and the calls after are unfinished."""
    replay, outcomes, remaining = [], [], list(calls)
    mutating = {name: mutates_state(module, find_export(module, name)) for name, _ in calls}
    while remaining:
        batch = remaining[:CALLS_PER_PROGRAM]
        instructions = lower_module(module, calls=replay + batch, silent_calls=len(replay))
        status, output = runner(instructions, len(replay) + len(batch))
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
        if status == "running":
            return outcomes + [("unfinished", UNFINISHED)] * (len(remaining) - done), replay
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
    if module.memory is None or not grows_memory(module):
        return False
    maximum = WASM_MAX_PAGES if module.memory[1] is None else module.memory[1]
    return maximum > machine_pages(module)


def wasmtime_outcomes(binary, calls, memory_pages=None):
    """The outcomes of `calls` in wasmtime, as run_calls gives them, with memory.grow failing
    past `memory_pages` (None: WebAssembly's limit); None when the module cannot be
    instantiated on its own (it imports something)."""
    wasmtime = tool("wasmtime", "the spec-test runner")
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
        try:
            result = exports[name](store, *wasm_arguments(params, args))
        except (wasmtime.Trap, wasmtime.WasmtimeError):
            outcomes.append(("trap", None))
            continue
        values = [] if result is None else list(result) if isinstance(result, (list, tuple)) else [result]
        outcomes.append(("return", [word for t, value in zip(results, values) for word in value_words(t, value)]))
    return outcomes


def wasm_arguments(param_types, words):
    """The signed WebAssembly values of argument words (the calls fit the parameters): an i64
    from its low and high word."""
    values = []
    for value_type in param_types:
        bits = 64 if value_type == "i64" else 32
        value, words = sum(word << (32 * k) for k, word in enumerate(words[:bits // 32])), words[bits // 32:]
        values.append(value - (1 << bits) if value >> (bits - 1) else value)
    return values


def _fulfils(outcome, expected):
    """Does an outcome ("return", values) / ("trap", None) / ("error", message) meet an expectation?"""
    return outcome[0] == "trap" if expected == "trap" else outcome == ("return", expected)


# Assertions about other things than running valid modules.
NOT_RUN = {"assert_invalid": "validation: the front end expects valid modules",
           "assert_malformed": "text and binary parsing", "assert_unlinkable": "linking",
           "assert_exhaustion": "call stack exhaustion (the reference stops past %s calls with an error, not a trap)"
                                % format(reference.MAX_CALL_DEPTH, ","),
           "assert_uninstantiable": "instantiation traps"}


class Instance:
    """A module of the script with the calls queued on it."""

    def __init__(self, module, error=None, binary=None):
        self.module = module
        self.binary = binary        # the module's bytes (for wasmtime)
        self.error = error          # why its calls cannot run (skip reason), or None
        self.unknown_from = None    # queue index from which a skipped call or another module may have changed the state
        # queue: [(name, args, expected, line)], expected a list, "trap" or None (an invoke);
        # supported: export name -> skip reason or None
        self.queue, self.supported = [], {}


def _problem_kind(problem):
    """A short reason from a problem message: its last part (the instruction or feature),
    with the instructions of other value types grouped."""
    kind = problem.rsplit(": ", 1)[-1]
    other_type = re.match(r"(i64|f32|f64)\.", kind)
    return "%s instructions" % ("i64" if kind.startswith("i64") else "f32/f64") if other_type else kind


def _load_instance(tree, source):
    """The Instance of a `(module ...)` form (text, `binary` or `quote` strings)."""
    rest = tree[1:]
    if rest and isinstance(rest[0], str) and rest[0].startswith("$"):
        rest = rest[1:]                                  # the module's $name
    kind = rest[0] if rest and isinstance(rest[0], str) else None
    try:
        if kind == "binary":
            binary = b"".join(part for part in rest if isinstance(part, WastString))
        elif kind in ("definition", "instance"):
            raise WasmError("(module %s ...) forms are not run" % kind)
        else:                                            # the module's text, or its fields quoted
            binary = wat_to_wasm(source if kind != "quote" else "(module %s)" % b" ".join(
                part for part in rest if isinstance(part, WastString)).decode("utf-8", "replace"))
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
            name = call[0].decode("utf-8", "replace") if call and isinstance(call[0], WastString) else None
            if instance is None:
                reason = ("no module %s" % (target or "")).strip()
            elif name is None:
                reason = "no function name"
            else:
                reason = _call_problem(instance, name, call, head, tree)
            if reason is None:
                expected = None                          # a plain invoke asserts nothing
                if head != "invoke":
                    expected = "trap" if head == "assert_trap" else wast_values(tree[2:])
                instance.queue.append((name, wast_values(call[1:]), expected, line))
                continue
            if head != "invoke":
                skip(reason)
            if instance and not instance.error and instance.unknown_from is None and name is not None \
                    and _may_change_state(instance, name):
                instance.unknown_from = len(instance.queue)      # its effects are not run
        elif head == "register":     # other modules may import it: its state may change outside its calls
            registered = named.get(tree[2]) if len(tree) > 2 and isinstance(tree[2], str) else (instances or [None])[-1]
            if registered and not registered.error and registered.unknown_from is None:
                registered.unknown_from = len(registered.queue)
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


def _may_change_state(instance, name):
    """Can the exported function `name` change memory, its size, tables or globals?"""
    try:
        return mutates_state(instance.module, find_export(instance.module, name))
    except WasmError:
        return False                                     # no such function: nothing runs


def _call_problem(instance, name, call, head, tree):
    """Why a call of the export `name` cannot run (a skip reason), or None."""
    args = wast_values(call[1:])
    if instance.error:
        return instance.error
    if args is None or (head == "assert_return" and wast_values(tree[2:]) is None):
        return "values other than i32 and i64 constants"
    if name not in instance.supported:                # whether the export can run, once per name
        try:
            problems = module_problems(instance.module, [find_export(instance.module, name)])
            instance.supported[name] = "unsupported: %s" % _problem_kind(problems[0]) if problems else None
        except WasmError as error:
            instance.supported[name] = str(error)
    params = None if instance.supported[name] else instance.module.functions[find_export(instance.module, name)].params
    if params is not None and len(params) != len(args):
        return "arguments that do not fit the parameters (%d words for %d)" % (len(args), len(params))
    return instance.supported[name]


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
        if kind == "unfinished" and expected is not None:
            skip(value)
        if expected is None or kind == "unfinished":      # a plain invoke asserts nothing
            continue
        reason = None
        if machine_memory and _fulfils(webassembly[k], expected) and not _fulfils(machine_memory[k], expected):
            reason = "memory.grow beyond the machine's %d pages fails (-1), as WebAssembly allows" \
                % machine_pages(instance.module)
        elif instance.unknown_from is not None and k >= instance.unknown_from and (
                as_run is None or not _fulfils(as_run[k], expected)):
            reason = "the result depends on a state change not run here (a skipped call, or another module's)"
        if reason and (as_run is None or (kind, value) == as_run[k]):
            skip(reason)                          # the script's result is not the machine's to give
            continue
        if reason:                                # but the machine must still do what WebAssembly does
            expected = "trap" if as_run[k][0] == "trap" else as_run[k][1]
        if _fulfils((kind, value), expected):
            counts["passed"] += 1
        else:
            counts["failed"] += 1
            got = {"trap": "trap", "error": value}.get(kind) or [reference.to_signed(v) for v in value]
            failures.append("%s:%d: %s(%s): expected %s, got %s" % (
                file_name, line, name, ", ".join(str(reference.to_signed(a)) for a in args),
                expected if expected == "trap" else [reference.to_signed(v) for v in expected], got))


def command_spectest(paths, transformer=False):
    """Run the spec tests of each .wast file; print skip reasons, failures, one line per
    file and a total. Exit 1 if anything failed; WasmError (MissingToolError) for unusable input."""
    runner = transformer_runner if transformer else reference_runner
    totals, lines, skips, failures = [0, 0, 0], [], {}, []
    for path in paths:
        try:
            counts = spectest_file(path, runner, skips, failures)
        except MissingToolError:
            raise                                        # not this file's problem
        except (OSError, WasmError) as error:            # an unusable file: cli.main reports it (exit 2)
            raise WasmError("%s: %s" % (path, error)) from None
        totals = [t + c for t, c in zip(totals, counts)]
        lines.append("%s: %d passed, %d failed, %d skipped" % ((pathlib.Path(path).name,) + counts))
    for reason, count in sorted(skips.items(), key=lambda item: -item[1]):      # every count is at least 1
        print("skipped %5d  %s" % (count, reason))
    for line in ["FAILED " + failure for failure in failures] + lines:
        print(line)
    print("total: %d passed, %d failed, %d skipped" % tuple(totals))
    return EXIT_FAILED if totals[1] else EXIT_OK
