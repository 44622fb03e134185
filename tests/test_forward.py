"""The forward pass (wasmtf.py): hand-compiled models, the three caches, the
batched form, the inspectable trace, model files and the command line."""
import math
import struct

import numpy as np
import pytest

from conftest import REPO  # noqa: F401  (puts the repository on sys.path)
import cli
import compile_weights
import hull
import wasmtf

CACHES = ("hull", "brute", "softmax")
QUERY_SCALE = hull.HARD_K * math.sqrt(2)


def tie_model():
    """One layer, three heads reading slot `code` (slot 4), all writing their vx:
    head 0 average and head 1 latest over the equal keys (0, one) (query (0, one)),
    head 2 a zero query (qy = 0, qx = 0: every position, SPEC 9) with average.
    Tokens: `{` (position 0, all zero) and the digits 0..9 with code = digit."""
    model = wasmtf.copy_model()
    D = model["embed"].shape[1]
    ONE, CODE = 3, 4
    w_qkv = np.zeros((3 * D, D))
    w_out = np.zeros((D, D))
    for h, out_slot in ((0, 5), (1, 6), (2, 7)):
        if h < 2:
            w_qkv[2 * h + 1, ONE] = QUERY_SCALE  # query (0, one)
        w_qkv[D + 2 * h + 1, ONE] = 1            # key (0, one)
        w_qkv[2 * D + 2 * h, CODE] = 1           # value (code, 0)
        w_out[out_slot, 2 * h] = 1
    layer = {"w_qkv": w_qkv, "w_out": w_out, "w_in": np.zeros((0, D)), "w_ffo": np.zeros((D, 0)),
             "tie_latest": np.array([False, True, False, False])}
    model["layers"] = [layer]
    return model


# --- the forward pass --------------------------------------------------------

@pytest.mark.parametrize("cache", CACHES)
def test_copy_model_counts_with_every_cache(cache):
    generated = wasmtf.generate(wasmtf.copy_model(), ["{", "3", "5"], cache=cache)
    assert generated == "4 6 5 7 6 8 7 9 8 halt".split()


def test_caches_agree_on_all_short_prompts():
    model = wasmtf.copy_model()
    digits = [str(d) for d in range(10)]
    for a in digits:
        for b in digits[::3]:
            results = [wasmtf.generate(model, ["{", a, b], cache=c, max_new_tokens=40) for c in CACHES]
            assert results[0] == results[1] == results[2]
            assert results[0][-1] == "halt"


def test_max_new_tokens_and_position_of_the_first_logits():
    model = wasmtf.copy_model()
    assert wasmtf.generate(model, ["{", "3", "5"], max_new_tokens=3) == ["4", "6", "5"]
    assert wasmtf.generate(model, ["{", "7"]) == "1 8 2 9 3 halt".split()  # `{` has code 0


def test_unknown_prompt_tokens_are_all_named():
    with pytest.raises(ValueError, match=r"'x' at 1, 'yy' at 3"):
        wasmtf.generate(wasmtf.copy_model(), ["{", "x", "3", "yy"])


def test_positional_features_are_exact():
    x = wasmtf.embed_position(np.zeros((1, 4)), 0, 0)
    assert list(x) == [0.0, 0.0, 0.0, 0.0]  # inv_log_pos(0) is exactly 0
    x = wasmtf.embed_position(np.zeros((1, 4)), 0, 1000)
    assert list(x[:3]) == [1000.0, 1 / math.log(2) - 1 / math.log(1002), 1e6]


def test_the_per_token_embedding_is_the_batched_one():
    embed = np.random.default_rng(3).normal(size=(5, 6))
    ids = [4, 0, 2, 2, 1, 3] + np.random.default_rng(4).integers(0, 5, 5_000).tolist()
    for start in (0, 1, 70_000, 2 ** 24 - 7):
        batch = wasmtf.embed_tokens(embed, ids, start)                  # [T, D]
        assert np.array_equal(batch, [wasmtf.embed_position(embed, t, start + i) for i, t in enumerate(ids)])


@pytest.mark.parametrize("cache", ("hull", "brute"))
def test_hand_checked_ties_average_versus_latest(cache):
    trace = wasmtf.forward(tie_model(), ["{", "2", "4", "9"], cache=cache)
    x = trace[-1]["residuals"][-1]
    assert x[5] == 5.0    # average over positions 1..3 of 2, 4, 9 (position 0 scores 0 < scale)
    assert x[6] == 9.0    # latest of the tied positions
    assert x[7] == 3.75   # zero query: every position 0..3 (position 0's value is 0)
    assert trace[-1]["active"][0].tolist() == [True, True, True, False]
    assert wasmtf.attended_positions(trace, 3, 0, 0) == [1, 2, 3]
    assert wasmtf.attended_positions(trace, 3, 0, 2) == [0, 1, 2, 3]


def test_softmax_averages_exact_ties_and_stops_on_a_latest_tie():
    with pytest.raises(wasmtf.AttentionTie, match="layer 0 head 1 at position 2: 2 entries"):
        wasmtf.forward(tie_model(), ["{", "2", "4", "9"], cache="softmax")  # softmax cannot express "latest"
    model = tie_model()
    model["layers"][0]["tie_latest"][1] = False  # the same keys, averaged
    x = wasmtf.forward(model, ["{", "2", "4", "9"], cache="softmax")[-1]["residuals"][-1]
    assert list(x[5:8]) == [5.0, 5.0, 3.75]


def latest_key_model(k):
    """tie_model with head 1 a compiled latest-write lookup of the constant key k:
    query (k, one) * QUERY_SCALE, key (2k, -k^2 + 0.3 * inv_log_pos) (SPEC 7.2)."""
    model = tie_model()
    w_qkv = model["layers"][0]["w_qkv"]
    D, ONE, INV_LOG_POS = w_qkv.shape[1], 3, 1
    w_qkv[2, ONE] = k * QUERY_SCALE
    w_qkv[D + 2, ONE] = 2 * k
    w_qkv[D + 3, ONE] = -k * k
    w_qkv[D + 3, INV_LOG_POS] = 0.3
    return model


@pytest.mark.parametrize("k", [1, 2 ** 12, 2 ** 24])
def test_softmax_gives_the_latest_write_or_stops_where_keys_tie_in_float64(k):
    """At k = 2^24, -k^2 + d is a multiple of 1/32: the recency terms 0.3 * inv_log_pos of
    positions 3, 4 and 5 (0.246, 0.265, 0.279) all round to -k^2 + 1/4, so their scores tie
    exactly; the hard caches take the latest write, softmax would average them and stops
    instead (the bound in wasmtf.SoftmaxHead)."""
    tokens = ["{", "2", "4", "9", "7", "3"]
    latest = [0.0, 2.0, 4.0, 9.0, 7.0, 3.0]
    for cache in ("hull", "brute"):
        trace = wasmtf.forward(latest_key_model(k), tokens, cache=cache)
        assert [t["residuals"][-1][6] for t in trace] == latest
        assert wasmtf.attended_positions(trace, 5, 0, 1) == ([5] if k < 2 ** 24 else [3, 4, 5])
    if k < 2 ** 24:
        trace = wasmtf.forward(latest_key_model(k), tokens, cache="softmax")
        assert [t["residuals"][-1][6] for t in trace] == latest
    else:
        with pytest.raises(wasmtf.AttentionTie, match=r"layer 0 head 1 at position 4: 2 entries \(positions 3, 4\)"):
            wasmtf.forward(latest_key_model(k), tokens, cache="softmax")


def test_trace_shows_what_each_head_attended_to():
    model = wasmtf.copy_model()
    trace = wasmtf.forward(model, ["{", "3", "5", "4"], cache="brute")
    assert len(trace) == 4 and trace[3]["residuals"].shape == (3, 8)
    assert wasmtf.attended_positions(trace, 3, 0, 0) == [2]
    assert trace[3]["v"][0, 0].tolist() == [4.0, 0.0]
    assert trace[3]["attn"][0, 0].tolist() == [5.0, 0.0]
    assert model["vocab"][int(np.argmax(trace[3]["logits"]))] == "6"


def test_batched_form_equals_the_sequential_steps():
    model = wasmtf.copy_model()
    tokens = ["{", "3", "5"] + wasmtf.generate(model, ["{", "3", "5"])
    ids = wasmtf.encode(model, tokens)
    x, logits = wasmtf.forward_batch(model, ids)
    trace = wasmtf.forward(model, tokens, cache="brute")
    assert np.array_equal(x, np.array([t["residuals"][-1] for t in trace]))
    assert [model["vocab"][i] for i in np.argmax(logits, axis=1)[2:-1]] == tokens[3:]
    tie = tie_model()
    x, _ = wasmtf.forward_batch(tie, wasmtf.encode(tie, ["{", "2", "4", "9"]))
    assert list(x[3, 5:8]) == [5.0, 9.0, 3.75]


def test_argmax_takes_the_lowest_id_on_exact_ties():
    """next_token scores the distinct rows of the head on the slots it reads."""
    head = np.array([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    plan = {"logits": wasmtf.output_head({"head": head})}
    assert wasmtf.next_token(plan, np.array([1.0, 1.0, 5.0])) == 1     # ids 1, 2, 3 tie; 1, 3 one row
    assert wasmtf.next_token(plan, np.array([1.0, 0.5, 5.0])) == 2
    assert wasmtf.next_token(plan, np.array([-1.0, -1.0, 5.0])) == 0


# --- model files --------------------------------------------------------------

def assert_same_model(a, b):
    assert a["vocab"] == b["vocab"] and a["stop_ids"] == b["stop_ids"]
    for key in ("embed", "head"):
        assert a[key].dtype == b[key].dtype == np.float64 and np.array_equal(a[key], b[key])
    assert len(a["layers"]) == len(b["layers"])
    for la, lb in zip(a["layers"], b["layers"]):
        for key in ("w_qkv", "w_out", "w_in", "w_ffo"):
            assert np.array_equal(la[key], lb[key]) and la[key].shape == lb[key].shape
        assert list(la["tie_latest"]) == list(lb["tie_latest"])


def odd_model():
    """copy_model with awkward floats, a trap token, erase lists, and two layers."""
    model = wasmtf.copy_model()
    rng = np.random.default_rng(7)
    model["vocab"] = model["vocab"][:-1] + ["trap", "{"]
    model["embed"] = np.vstack([model["embed"][:-1], rng.normal(size=8), model["embed"][-1:]])
    model["head"] = np.vstack([model["head"][:-1], -np.ones(8) / 3, model["head"][-1:]])
    model["stop_ids"] = [model["vocab"].index("halt"), model["vocab"].index("trap")]
    extra = {key: rng.normal(size=model["layers"][0][key].shape) * 1e-300 for key in ("w_qkv", "w_out", "w_in", "w_ffo")}
    model["layers"].append({**extra, "tie_latest": np.array([True, False, True, True])})
    model["erase"] = [[[5], []], [[6, 7], [1]]]
    return model


@pytest.mark.parametrize("suffix", (".bin", ".npz"))
def test_round_trips_are_lossless(tmp_path, suffix):
    model = odd_model()
    wasmtf.save(model, tmp_path / f"m{suffix}")
    loaded = wasmtf.load(tmp_path / f"m{suffix}")
    assert_same_model(model, loaded)
    assert loaded["erase"] == model["erase"]
    if suffix == ".npz":
        assert loaded["slot_names"] == model["slot_names"]


def test_model_bin_layout_and_byte_exact_round_trip(tmp_path):
    model = wasmtf.copy_model()
    wasmtf.save(model, tmp_path / "m.bin")
    data = (tmp_path / "m.bin").read_bytes()
    V, D, L, H, F = 12, 8, 1, 4, 1
    assert struct.unpack("<6i", data[:24]) == (V, D, L, H, F, model["vocab"].index("halt"))
    floats = 2 * V * D + L * (3 * D * D + D * D + 2 * F * D + D * F)
    vocab_bytes = sum(4 + len(t) for t in model["vocab"])
    assert len(data) == 24 + vocab_bytes + 8 * floats + 4 + 4 + 4 * L * H
    wasmtf.save(wasmtf.load(tmp_path / "m.bin"), tmp_path / "again.bin")
    assert (tmp_path / "again.bin").read_bytes() == data
    wasmtf.save(wasmtf.load(tmp_path / "m.bin"), tmp_path / "m.npz")
    wasmtf.save(wasmtf.load(tmp_path / "m.npz"), tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == data


def test_npz_uses_the_torch_state_dict_names(tmp_path):
    wasmtf.save(wasmtf.copy_model(), tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as npz:
        assert npz["attn.0.in_proj_weight"].shape == (24, 8)
        assert sorted(npz.files) == sorted(["tok.weight", "head.weight", "vocab", "stop_tokens", "slot_names",
                                            "tie_latest", "attn.0.in_proj_weight", "attn.0.out_proj.weight",
                                            "ff_in.0.weight", "ff_out.0.weight"])
        assert npz["stop_tokens"].tolist() == ["halt"]


def test_model_bin_trap_is_a_stop_token_too(tmp_path):
    model = odd_model()
    del model["erase"]
    model["stop_ids"] = model["stop_ids"][:1]  # model.bin stores halt only
    wasmtf.save(model, tmp_path / "m.bin")
    loaded = wasmtf.load(tmp_path / "m.bin")
    assert [loaded["vocab"][i] for i in loaded["stop_ids"]] == ["halt", "trap"]


def test_machine_model_bin_stores_halt_a_port_finds_trap_by_name(tmp_path):
    """SPEC 8: the header's one stop id is halt's; `trap`'s id (the numbers SPEC 8 and
    the README give) comes from the vocabulary block, as a port must find it."""
    wasmtf.save(compile_weights.compile_machine(), tmp_path / "machine.bin")
    data = (tmp_path / "machine.bin").read_bytes()
    V, D, L, H, F, stop = struct.unpack("<6i", data[:24])
    vocab = wasmtf.read_model_bin(data, "machine.bin")["vocab"]
    assert (V, vocab[stop], stop, vocab.index("trap")) == (935, "halt", 606, 924)


def bad_files(data):
    """(description, corrupted bytes, expected message) for a valid model.bin."""
    header = list(struct.unpack("<6i", data[:24]))

    def with_header(**changes):
        fields = dict(zip("V D L H F stop".split(), header), **changes)
        return struct.pack("<6i", *fields.values()) + data[24:]
    return [
        ("empty", b"", "truncated in the header"),
        ("cut in the vocabulary", data[:30], "truncated in the length of token 1"),
        ("cut in a matrix", data[:len(data) // 2], "truncated in layer 0"),
        ("cut in the tie flags", data[:-3], "truncated in the tie flags"),
        ("odd D", with_header(D=7), "bad header"),
        ("H != D/2", with_header(H=3), "bad header"),
        ("stop id outside the vocabulary", with_header(stop=99), "bad header"),
        ("more layers than stored", with_header(L=2), "truncated"),
        ("bad has_erase", data[:-4 * 4 - 8] + struct.pack("<i", 7) + data[-4 * 4 - 4:], "has_erase is 7"),
        ("non-UTF-8 token", data[:28] + b"\xff" + data[29:], "token 0 is not UTF-8"),
        ("repeated token", data[:28] + b"1" + data[29:], "repeated tokens"),
    ]


def test_bad_model_bin_files_are_rejected_with_a_clear_message(tmp_path):
    wasmtf.save(wasmtf.copy_model(), tmp_path / "good.bin")
    for description, data, message in bad_files((tmp_path / "good.bin").read_bytes()):
        path = tmp_path / "bad.bin"
        path.write_bytes(data)
        with pytest.raises(wasmtf.ModelFileError, match=message) as error:
            wasmtf.load(path)
        assert str(path) in str(error.value), description


def test_a_trailer_after_the_model_bin_fields_is_ignored_with_a_note(tmp_path, capsys):
    """Some transformer-vm builds append a block (one writes 536 bytes of per-head
    types) after the tie flags: the fields are read, the trailer is counted."""
    model = odd_model()
    data = wasmtf.write_model_bin(wasmtf.pad_feed_forward(model))
    trailer = bytes(range(256)) * 2 + b"\xff" * 24                     # 536 bytes
    (tmp_path / "trailer.bin").write_bytes(data + trailer)
    (tmp_path / "plain.bin").write_bytes(data)
    plain, loaded = wasmtf.load(tmp_path / "plain.bin"), wasmtf.load(tmp_path / "trailer.bin")
    err = capsys.readouterr().err.splitlines()
    assert err == [f"wasmtf: {tmp_path / 'trailer.bin'}: ignoring 536 bytes after the model.bin fields"]
    assert plain["trailer_bytes"] == 0 and loaded["trailer_bytes"] == 536
    assert loaded["vocab"] == plain["vocab"] and loaded["stop_ids"] == plain["stop_ids"]
    for key in ("embed", "head"):
        assert np.array_equal(loaded[key], plain[key])
    for got, want in zip(loaded["layers"], plain["layers"]):
        assert all(np.array_equal(got[key], want[key]) for key in want)
    assert cli.main(["info", str(tmp_path / "trailer.bin")]) == 0
    assert "trailer: 536 bytes after the model.bin fields (ignored)" in capsys.readouterr().out
    assert cli.main(["info", str(tmp_path / "plain.bin")]) == 0
    captured = capsys.readouterr()
    assert "trailer" not in captured.out and captured.err == ""
    (tmp_path / "short.bin").write_bytes(data[:-1])                  # short of its fields: still an error
    with pytest.raises(wasmtf.ModelFileError, match="short.bin: truncated in the tie flags"):
        wasmtf.load(tmp_path / "short.bin")


def test_bad_npz_files_are_rejected_with_a_clear_message(tmp_path):
    wasmtf.save(wasmtf.copy_model(), tmp_path / "good.npz")
    arrays = dict(np.load(tmp_path / "good.npz"))
    cases = [
        ("ff_out.0.weight", None, "missing arrays ff_out.0.weight"),
        ("ff_out.0.weight", np.zeros((8, 2)), r"inconsistent shapes: layer 0 w_ffo \(8, 2\)"),
        ("tie_latest", np.zeros((1, 3), bool), "tie_latest has shape"),
        ("stop_tokens", np.array(["stop"]), "stop tokens"),
        ("head.weight", np.zeros((12, 8), np.float32), "head is not a float64 matrix"),
        ("vocab", np.array(["1"] + arrays["vocab"].tolist()[1:]), "repeated tokens"),
    ]
    for key, value, message in cases:
        changed = {k: v for k, v in arrays.items() if k != key}
        if value is not None:
            changed[key] = value
        np.savez(tmp_path / "bad.npz", **changed)
        with pytest.raises(wasmtf.ModelFileError, match=message):
            wasmtf.load(tmp_path / "bad.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:100])
    with pytest.raises(wasmtf.ModelFileError, match="cut.npz: cannot read the model"):
        wasmtf.load(tmp_path / "cut.npz")
    with pytest.raises(wasmtf.ModelFileError, match="missing.npz: cannot read"):
        wasmtf.load(tmp_path / "missing.npz")


# --- the command line ---------------------------------------------------------

def test_generate_convert_info_and_errors(tmp_path, capsys):
    wasmtf.save(wasmtf.copy_model(), tmp_path / "m.npz")
    assert cli.main(["convert", str(tmp_path / "m.npz"), str(tmp_path / "m.bin")]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'm.bin'}: ")
    assert cli.main(["generate", str(tmp_path / "m.bin"), "{", "3", "5"]) == 0
    assert capsys.readouterr().out.strip() == "4 6 5 7 6 8 7 9 8 halt"
    assert cli.main(["generate", str(tmp_path / "m.bin"), "{", "3", "--max-tokens", "2"]) == 1
    assert cli.main(["generate", str(tmp_path / "m.bin"), "{", "3", "--max-new-tokens", "2"]) == 1  # old name
    assert cli.main(["info", str(tmp_path / "m.bin")]) == 0
    assert "layer 0: 1 active heads" in capsys.readouterr().out
    assert cli.main(["generate", str(tmp_path / "m.bin"), "{", "z"]) == 2
    assert cli.main(["info", str(tmp_path / "nothing.bin")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "wasmtf: error: tokens not in the model's vocabulary: 'z' at 1"
    assert err[1].startswith("wasmtf: error: ") and "nothing.bin" in err[1]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["generate", "--bogus"])
    assert exit_info.value.code == 2


def test_every_truncation_and_damaged_npz_is_a_model_file_error(tmp_path):
    wasmtf.save(odd_model(), tmp_path / "good.bin")
    data = (tmp_path / "good.bin").read_bytes()
    for cut in range(len(data)):
        with pytest.raises(wasmtf.ModelFileError, match="cut.bin: "):
            wasmtf.read_model_bin(data[:cut], "cut.bin")
    wasmtf.save(odd_model(), tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    rng = np.random.default_rng(1)
    for position in rng.integers(0, len(data), 50):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
        try:
            wasmtf.load(tmp_path / "damaged.npz")  # a flipped byte in a float or a name can still load
        except wasmtf.ModelFileError as error:
            assert "damaged.npz: " in str(error)


def random_tie_model(seed, D=8, V=6):
    """One layer of random small-integer heads (many exact ties, qy >= 0, some
    qy = 0 and some zero queries), each head's output in its own slot."""
    rng = np.random.default_rng(seed)
    H, ONE = D // 2, 3
    embed = rng.integers(-2, 3, size=(V, D)).astype(float)  # [V, D]
    embed[:, :3] = 0
    embed[:, ONE] = 1
    embed[0] = 0                                             # token 0 plays `{`
    w_qkv = rng.integers(-1, 2, size=(3 * D, D)).astype(float)  # [3D, D]
    w_qkv[:, 1] = 0                                          # keep inv_log_pos out: exact integers
    for h in range(H):
        w_qkv[2 * h + 1] = 0
        w_qkv[2 * h + 1, ONE] = rng.integers(0, 3)           # qy = 0, 1 or 2 times `one`
    w_out = np.zeros((D, D))
    w_out[np.arange(D), rng.permutation(D)] = 1              # one term per row: exact sums
    layer = {"w_qkv": w_qkv, "w_out": w_out, "w_in": np.zeros((0, D)), "w_ffo": np.zeros((D, 0)),
             "tie_latest": rng.random(H) < 0.5}
    return {"vocab": [f"t{i}" for i in range(V)], "embed": embed, "head": np.zeros((V, D)),
            "stop_ids": [0], "slot_names": [""] * D, "layers": [layer]}


@pytest.mark.parametrize("seed", range(20))
def test_batched_form_equals_the_caches_on_random_ties(seed):
    model = random_tie_model(seed)
    ids = [0] + list(np.random.default_rng(seed).integers(1, 6, size=40))
    x, _ = wasmtf.forward_batch(model, ids)
    for cache in ("hull", "brute"):
        trace = wasmtf.forward(model, [model["vocab"][i] for i in ids], cache=cache)
        assert np.array_equal(x, np.array([t["residuals"][-1] for t in trace])), cache


@pytest.mark.parametrize("command", [name for name, _, _ in cli.COMMANDS])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0 and "usage: wasmtf.py " + command in capsys.readouterr().out
