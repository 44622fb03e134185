"""profiling.py: the instruction-mix profile (`python wasmtf.py profile FILE`).

Where a run's trace tokens go: each executed instruction's group (a reference run)
is charged to its machine opcode and, for a compiled program, to the source function
and WebAssembly instruction it was lowered from (its Origin); a routine's tokens to
the instruction whose lowering called it. Cost: one reference run, one walk of its trace.
Invariant: each table but "routine" adds up to the trace's tokens and executed instructions.
"""
import collections
import pathlib

import reference
from decoder import decode_module
from frontend import (lowered_items, assemble, instruction_origins, program_binary, compute_input, load_program_file,
                      EXIT_OK, EXIT_FAILED)


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
