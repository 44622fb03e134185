"""examples/torch_port.py against wasmtf: the same residuals at every stage of every
position, and the same greedy tokens, on the compiled machine and the hand-compiled
copy model (runs only where torch is installed)."""
import importlib.util

import numpy as np
import pytest

from conftest import EXAMPLES_DIR, REPO
import compile_weights
import reference
import wasmtf

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch): the port is not run")


def load_torch_port():
    spec = importlib.util.spec_from_file_location("torch_port", REPO / "examples" / "torch_port.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def port_of(model, tmp_path):
    path = tmp_path / "model.npz"
    wasmtf.save(model, path)
    return load_torch_port().load_port(path)


def test_the_port_writes_the_machine_trace_token_for_token(tmp_path):
    machine = compile_weights.compile_machine()
    port, vocab = port_of(machine, tmp_path)
    assert vocab == machine["vocab"]
    instructions, input_bytes, golden = reference.parse_trace_file((EXAMPLES_DIR / "ex3_call_input_ref.txt").read_text())
    prompt = reference.program_tokens(instructions, input_bytes)
    tokens = prompt + golden
    with torch.no_grad():
        residuals, logits = port(torch.tensor(wasmtf.encode(machine, tokens)))
    predicted = [vocab[i] for i in logits[len(prompt) - 1:-1].argmax(dim=1).tolist()]
    assert predicted == golden                                    # token for token
    expected = np.array([record["residuals"] for record in wasmtf.forward(machine, tokens)])  # [T, 2L+1, D]
    assert residuals.shape == expected.shape
    # Every slot holds an exact integer (equal bit for bit in any summation order) except
    # the averages and what is computed from them (the cursor, queries): within 1e-9 of
    # an integer (compile_weights' exactness model), in an order-dependent last bit.
    np.testing.assert_allclose(residuals.numpy(), expected, rtol=0, atol=1e-6)


def test_the_port_decodes_the_copy_model(tmp_path):
    model = wasmtf.copy_model()
    port, vocab = port_of(model, tmp_path)
    expected = wasmtf.generate(model, ["{", "3", "5"])
    assert load_torch_port().greedy(port, vocab, ["{", "3", "5"], {"halt"}, max_new_tokens=50) == expected
