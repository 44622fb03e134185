"""The graph language and evaluator (graph.py), the scheduler and emitter of
compile_weights.py, on small graphs whose values are checked by name through the
real forward pass."""
from fractions import Fraction

import pytest

import conftest  # noqa: F401  (puts the repository on sys.path)
import compile_weights as cw
import graph
import reference
import wasmtf


def tiny_graph():
    """Previous-token lookup, a cumulative sum (rounded), a step gadget, a product,
    and a cleared latest-write lookup keyed by a computed value."""
    g = graph.Graph()
    one, position, position_sq = graph.Lin.of(1), graph.Lin({"position": 1}), graph.Lin({"position_sq": 1})
    byte = g.feature("byte", lambda t: reference.byte_value(t) or 0)
    is_byte = g.feature("is_byte", lambda t: int(reference.byte_value(t) is not None))
    prev, = g.lookup(["prev_byte"], position - 1, position, position_sq, [byte])
    mean, = g.mean(["mean_is_byte"], [is_byte])
    count = g.ffn("byte_count+bias", [(1, mean, position), (graph.ROUND_BIAS, one, one)]) - graph.ROUND_BIAS
    exact_count = g.ffn("byte_count", [(1, one, count)])
    count_sq = g.ffn("byte_count_sq", [(1, count, count)])
    big = g.ffn("prev_is_big", graph.step_terms(one, prev - 128))
    product = g.ffn("byte_times_prev", [(1, byte, prev)])
    not_byte = g.ffn("not_byte", [(1, one, one), (-1, one, is_byte)])
    # the byte written when the byte count was k, read back two bytes later
    found, = g.lookup(["byte_at_count_minus_2"], exact_count - 2, exact_count, count_sq, [byte], clear=not_byte)
    for token in reference.VOCAB:
        g.outputs[token] = graph.Lin()
    # the output head reads these, so they stay in their slots to the end (slot_plan)
    g.outputs["halt"] = exact_count + big + product + found
    return g


PROMPT = ["{", "i32.const", "01", "02", "ff", "80", "halt", "07", "}", "03", "04"]


def test_schedule_places_every_node_after_its_inputs():
    g = tiny_graph()
    ready, layers = cw.schedule(g)
    assert ready["prev_byte"] == 0 and ready["mean_is_byte"] == 0   # attention of layer 0
    assert ready["byte_count+bias"] == 1 and ready["byte_count"] == 3  # ffn 0, ffn 1
    assert ready["byte_at_count_minus_2"] == 4                          # attention of layer 2
    assert max(layers) == 2


def test_evaluator_values():
    ev = graph.GraphEvaluator(tiny_graph())
    envs = [ev.step(t) for t in PROMPT]
    assert [e["prev_byte"] for e in envs[1:]] == [0, 0, 1, 2, 255, 128, 0, 7, 0, 3]
    assert envs[5]["mean_is_byte"] == Fraction(4, 5)
    assert [e["byte_count"] for e in envs] == [0, 0, 1, 2, 3, 4, 4, 5, 5, 6, 7]
    assert [e["prev_is_big"] for e in envs][5:7] == [1, 1]
    assert envs[-1]["byte_at_count_minus_2"] == 7   # count 7 - 2 = 5: the byte `07`
    assert envs[4]["byte_at_count_minus_2"] == 1    # count 3 - 2 = 1: the byte `01`


@pytest.mark.parametrize("cache", ["hull", "brute"])
def test_weights_reproduce_the_evaluator_slot_by_slot(cache):
    g = tiny_graph()
    model = cw.emit(g)
    ev = graph.GraphEvaluator(g)
    trace = wasmtf.forward(model, PROMPT, cache=cache)
    _, held, clears = cw.slot_plan(g)
    cleared = {name for names in clears.values() for name in names}
    for p, token in enumerate(PROMPT):
        env = ev.step(token)
        final = trace[p]["residuals"][-1]
        for s, names in enumerate(held):  # a reused slot ends with its last value, or 0 once cleared
            name = names[-1]
            expected = 0 if name in cleared else float(env[name])
            if name not in ("inv_log_pos",) and not name.endswith("+bias"):
                assert final[s] == pytest.approx(expected, abs=1e-9), (p, name)
        # the rounded sum is exact (ROUND_BIAS), not merely close
        byte_count_slot = next(s for s, names in enumerate(held) if names[-1] == "byte_count")
        assert final[byte_count_slot] == env["byte_count"]


def test_model_dict_shape():
    model = cw.compile_machine()
    V, D = model["embed"].shape
    assert model["vocab"] == reference.VOCAB and V == 916 + len(reference.EXTENSION_OPCODES)
    assert [model["vocab"][i] for i in model["stop_ids"]] == ["halt", "trap"]
    assert len(model["slot_names"]) == D and D % 2 == 0
    assert model["slot_names"][:4] == ["position", "inv_log_pos", "position_sq", "one"]
    assert not model["embed"][reference.TOKEN_ID["{"]].any()
    for layer in model["layers"]:
        F = layer["w_ffo"].shape[1]
        assert layer["w_qkv"].shape == (3 * D, D) and layer["w_out"].shape == (D, D)
        assert layer["w_in"].shape == (2 * F, D) and len(layer["tie_latest"]) == D // 2
    shape = cw.describe_shape(model)
    # issue 11's budget: at most 6 layers, 20 heads, twice the base machine's 520,376 parameters
    assert shape["layers"] <= 6 and sum(shape["heads"]) <= 20 and shape["parameters"] <= 2 * 520_376


def test_query_rows_carry_the_hard_scale():
    """Latest-mode heads: the query's second row is HARD_K*sqrt(2) on `one` (SPEC 7.1)."""
    model = cw.compile_machine()
    layer = model["layers"][0]
    assert layer["tie_latest"][0]
    assert layer["w_qkv"][1, 3] == pytest.approx(cw.QUERY_SCALE)
    assert cw.QUERY_SCALE == pytest.approx(14142135623.730951)


def test_inspect_names_values_and_attention_targets():
    model = cw.compile_machine()
    tokens = reference.program_tokens([("i32.const", 7), ("output", 0), ("halt", 0)])
    info = wasmtf.inspect(model, tokens, len(tokens) - 1)
    latest = {}  # each name's value at the last stage that holds it (slots are reused)
    for _, values in info["residuals"]:
        latest.update(values)
    assert latest["cursor"] == pytest.approx(0) and latest["stack_depth"] == 3
    fetch = [h for h in info["heads"] if "op_code_at_pc" in h[2]][0]
    assert fetch[3] == [1]                       # fetched the opcode token of instruction 0
    assert info["top_logits"][0][1] == "07"
    assert "op_code_at_pc" in wasmtf.format_inspection(info)


def test_slot_reuse_by_liveness():
    """A reused slot is cleared (exactly 0) after its last reader and before its next writer."""
    g = cw.build_machine()
    ready, _ = cw.schedule(g)
    slot, held, clears = cw.slot_plan(g)
    clear_stage = {name: 2 * layer + 1 for layer, names in clears.items() for name in names}
    model = cw.compile_machine()
    assert model["slot_names"][:len(held)] == ["|".join(names) for names in held]
    assert any(len(names) > 1 for names in held)
    for names in held:
        for before, after in zip(names, names[1:]):
            assert ready[before] < clear_stage[before] < ready[after], (before, after)
    assert all(slot[name] == s for s, names in enumerate(held) for name in names)
