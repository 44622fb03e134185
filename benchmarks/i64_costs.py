"""Trace tokens per i64 operation (legalize.py) against the i32 operations, side by side.

    python benchmarks/i64_costs.py

Each figure is the cost of one statement `r = a OP b` (a, b, r locals): the
trace tokens of a call of a function whose body is that statement, minus
those of the same call with an empty body (both on the reference
interpreter, whose trace the transformer writes token for token).

Every i32 numeric operation is a machine instruction (SPEC 12; division and
remainder since opcodes 51-54), so the i32 column is the native cost. Ratios:
i64 / i32 of the same operation, and i64 / the i32 add (or i32 mul)
statement, the issue's yardsticks.
"""
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import frontend  # noqa: E402
import legalize  # noqa: E402
import reference  # noqa: E402

NATIVE_OP_TOKENS = 5          # a value-producing group: 4 byte tokens + commit (SPEC 4.1)
A64, B64 = 0x0123456789ABCDEF, 0x00000000FEDCBA98      # a 64-bit and a 32-bit operand
A32, B32 = 0x89ABCDEF, 0x7EDCBA98
SHIFT = 13                    # the variable shift count

# (row name, i64 expression, i32 expression or None); $a $b are the operands.
ROWS = [
    ("add", "(i64.add (local.get $a) (local.get $b))", "(i32.add (local.get $a) (local.get $b))"),
    ("sub", "(i64.sub (local.get $a) (local.get $b))", "(i32.sub (local.get $a) (local.get $b))"),
    ("eq", "(i64.eq (local.get $a) (local.get $b))", "(i32.eq (local.get $a) (local.get $b))"),
    ("lt_s", "(i64.lt_s (local.get $a) (local.get $b))", "(i32.lt_s (local.get $a) (local.get $b))"),
    ("ge_u", "(i64.ge_u (local.get $a) (local.get $b))", "(i32.ge_u (local.get $a) (local.get $b))"),
    ("eqz", "(i64.eqz (local.get $a))", "(i32.eqz (local.get $a))"),
    ("and", "(i64.and (local.get $a) (local.get $b))", "(i32.and (local.get $a) (local.get $b))"),
    ("xor", "(i64.xor (local.get $a) (local.get $b))", "(i32.xor (local.get $a) (local.get $b))"),
    ("mul", "(i64.mul (local.get $a) (local.get $b))", "(i32.mul (local.get $a) (local.get $b))"),
    ("div_u", "(i64.div_u (local.get $a) (local.get $b))", "(i32.div_u (local.get $a) (local.get $b))"),
    ("div_s", "(i64.div_s (local.get $a) (local.get $b))", "(i32.div_s (local.get $a) (local.get $b))"),
    ("rem_u", "(i64.rem_u (local.get $a) (local.get $b))", "(i32.rem_u (local.get $a) (local.get $b))"),
    ("div_u 10", "(i64.div_u (local.get $a) (i64.const 10))", "(i32.div_u (local.get $a) (i32.const 10))"),
    ("rem_u 10", "(i64.rem_u (local.get $a) (i64.const 10))", "(i32.rem_u (local.get $a) (i32.const 10))"),
    ("shl n", "(i64.shl (local.get $a) (local.get $n))", "(i32.shl (local.get $a) (local.get $n))"),
    ("shr_u n", "(i64.shr_u (local.get $a) (local.get $n))", "(i32.shr_u (local.get $a) (local.get $n))"),
    ("shr_s n", "(i64.shr_s (local.get $a) (local.get $n))", "(i32.shr_s (local.get $a) (local.get $n))"),
    ("rotl n", "(i64.rotl (local.get $a) (local.get $n))", "(i32.rotl (local.get $a) (local.get $n))"),
    ("shl 13", "(i64.shl (local.get $a) (i64.const 13))", "(i32.shl (local.get $a) (i32.const 13))"),
    ("shr_u 32", "(i64.shr_u (local.get $a) (i64.const 32))", None),
    ("shr_u 13", "(i64.shr_u (local.get $a) (i64.const 13))", "(i32.shr_u (local.get $a) (i32.const 13))"),
    ("clz", "(i64.clz (local.get $a))", "(i32.clz (local.get $a))"),
    ("popcnt", "(i64.popcnt (local.get $a))", "(i32.popcnt (local.get $a))"),
    ("extend_i32_s", "(i64.extend_i32_s (i32.wrap_i64 (local.get $a)))", None),
    ("load", "(i64.load (i32.const 8))", "(i32.load (i32.const 8))"),
]
RESULT_TYPE = {"eq": "i32", "lt_s": "i32", "ge_u": "i32", "eqz": "i32"}


def module_text(width):
    """One exported function per row (and `empty`), params $a $b $n of the width."""
    functions = []
    for index, (name, expression64, expression32) in enumerate(ROWS + [("empty", None, None)]):
        expression = expression64 if width == "i64" else expression32
        if name != "empty" and expression is None:
            continue
        result = RESULT_TYPE.get(name, width)
        body = "" if name == "empty" else "(local.set $r %s)" % expression
        functions.append('(func (export "%s") (param $a %s) (param $b %s) (param $n %s) (local $r %s) %s)'
                         % (name, width, width, width, result, body))
    return "(module (memory 1) %s)" % "\n".join(functions)


def tokens(module, name, args):
    """Trace tokens of calling `name`."""
    lowering = frontend.ProgramLowering(module)
    items = lowering.lower([(frontend.find_export(module, name), args)], None, True, 0)
    trace = reference.run_reference(frontend.assemble(items), max_steps=10_000_000)
    assert trace[-1] == "halt", (name, trace[-1])
    return len(trace)


def measure():
    """{(width, row): statement tokens}."""
    costs = {}
    for width, args in (("i64", [*legalize.halves(A64), *legalize.halves(B64), SHIFT, 0]),
                        ("i32", [A32, B32, SHIFT])):
        module = frontend.decode_module(frontend.wat_to_wasm(module_text(width)))
        empty = tokens(module, "empty", args)
        for name, expression64, expression32 in ROWS:
            if (expression64 if width == "i64" else expression32) is not None:
                costs[(width, name)] = tokens(module, name, args) - empty
    return costs


def main():
    costs = measure()
    print("statement r = a OP b: trace tokens (a = 0x%016x, b = 0x%016x, n = %d; i32: a = 0x%08x, b = 0x%08x)"
          % (A64, B64, SHIFT, A32, B32))
    print("%-13s | %8s %8s %7s | %s" % ("operation", "i64", "i32", "ratio", "i64 vs the i32 add (mul) statement"))
    for name, _, _ in ROWS:
        i64, i32 = costs[("i64", name)], costs.get(("i32", name))
        row = "%-13s | %8d %8s %7s |" % (name, i64, i32 if i32 else "-", "%.1fx" % (i64 / i32) if i32 else "-")
        yardstick = "mul" if name == "mul" else "add"
        print(row + " %.1fx (vs i32 %s)" % (i64 / costs[("i32", yardstick)], yardstick))
    print("i32 add statement = %d tokens (i32.add alone: %d); i32 mul statement: %d tokens"
          % (costs[("i32", "add")], NATIVE_OP_TOKENS, costs[("i32", "mul")]))


if __name__ == "__main__":
    main()
