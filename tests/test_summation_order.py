"""The compiled weights must not depend on the order in which a matrix product
adds: a torch port, BLAS's matrix-matrix kernels and the sequential
matrix-vector steps all add in different orders. Two checks on the worked
examples: the batched forward pass (matrix-matrix products) predicts every
trace token, and so does the sequential pass on a model whose residual slots
are permuted (every dot product then adds its terms in another order)."""
import numpy as np
import pytest

from conftest import EXAMPLES_DIR
from test_alu import spec_worked_examples
import compile_weights
import graph
import reference
import wasmtf

# the SPEC 12 worked examples (every extension opcode) by their index; "divisions": the
# division's extreme operands (divisors -1 and 2^32 - 1 make B_k = |b| 256^k up to 2^56)
PROGRAMS = ["ex1_arith", "ex2_loop_memory", "ex3_call_input", "random/rand003", 0, 1, 2, 3, "divisions"]
MASK = 0xFFFFFFFF
DIVISION_OPERANDS = [(MASK, MASK), (0x80000000, MASK), (MASK, 1), (0x80000000, 1), (MASK - 1, 3),
                     (0x7FFFFFFF, 0x80000000), (0xDEADBEEF, 0xFFFF), (12345, MASK - 9), (MASK, 0x10001)]


def division_program():
    instructions = []
    for opcode in ("i32.div_s", "i32.div_u", "i32.rem_s", "i32.rem_u"):
        for a, b in DIVISION_OPERANDS:
            if not (opcode == "i32.div_s" and (a, b) == (0x80000000, MASK)):
                instructions += [("i32.const", a), ("i32.const", b), (opcode, 0), ("drop", 0)]
    return instructions + [("halt", 0)]


def read_example(name):
    if name == "divisions":
        instructions = division_program()
        return reference.program_tokens(instructions), reference.run_reference(instructions)
    if isinstance(name, int):
        instructions, trace = spec_worked_examples()[name]
        return reference.program_tokens(instructions), trace
    instructions, input_bytes = reference.read_program(EXAMPLES_DIR / (name + ".txt"))
    prompt = reference.program_tokens(instructions, input_bytes)
    return prompt, reference.run_reference(instructions, input_bytes)


def permuted(model, order):
    """The same model with residual slot i moved to position order[i] (slots 0-2 stay:
    they receive the positional features; head columns of w_qkv rows and w_out
    columns stay in place)."""
    D = model["embed"].shape[1]
    inverse = np.argsort(order)                      # new slot -> old slot
    layers = [{**layer,
               "w_qkv": layer["w_qkv"][:, inverse],   # [3D, D]: permute the inputs
               "w_out": layer["w_out"][inverse],      # [D, D]: permute the outputs
               "w_in": layer["w_in"][:, inverse],     # [2F, D]
               "w_ffo": layer["w_ffo"][inverse]}      # [D, F]
              for layer in model["layers"]]
    return {**model, "embed": model["embed"][:, inverse], "head": model["head"][:, inverse],
            "layers": layers, "slot_names": [model["slot_names"][i] for i in inverse]}


@pytest.mark.parametrize("name", PROGRAMS)
def test_batched_products_predict_the_trace(name):
    model = compile_weights.compile_machine()
    prompt, trace = read_example(name)
    ids = wasmtf.encode(model, prompt + trace)
    _, logits = wasmtf.forward_batch(model, ids[:-1])                   # [T-1, V]
    predicted = [model["vocab"][i] for i in np.argmax(logits[len(prompt) - 1:], axis=1)]
    assert predicted == trace


@pytest.mark.parametrize("seed", [1, 2])
def test_permuted_slots_give_the_same_trace(seed):
    model = compile_weights.compile_machine()
    D = model["embed"].shape[1]
    order = np.concatenate([np.arange(3), 3 + np.random.default_rng(seed).permutation(D - 3)])
    shuffled = permuted(model, order)
    for name in PROGRAMS:
        prompt, trace = read_example(name)
        assert wasmtf.generate(shuffled, prompt, cache="hull") == trace, name


def test_the_emitter_rejects_a_rounded_sum_mixed_into_a_row(monkeypatch):
    """Without exact_parts the machine would read 256 * (rounded sum) beside small
    terms (the input bytes' memory value); the emitter refuses such a row."""
    monkeypatch.setattr(graph, "exact_parts", lambda lin: [graph.Lin.of(lin)])
    with pytest.raises(AssertionError, match="close_position"):
        compile_weights.emit(compile_weights.build_machine())
