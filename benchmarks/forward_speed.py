"""Tokens per second of wasmtf's sequential step on a machine-sized random model.

The compiled machine has about 7 layers, D = 40..150 and 20..30 active heads.
This builds random weights of that shape (see random_model) and times the
per-token step (a) with a null cache (insert does nothing, query
returns (0, 0)): the overhead of projections, FFN, head loop and logits,
excluding attention; (b) with the real caches, on the same weights.
Usage: python benchmarks/forward_speed.py [tokens]
"""
import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
import hull  # noqa: E402
import wasmtf  # noqa: E402

LAYERS, HEADS_PER_LAYER, V = 7, (5, 3, 8, 6, 4, 0, 0), 916  # 26 active heads


def random_model(D, F, seed=0):
    """Random weights shaped like the machine. Every active head is a
    latest-write lookup of the token i positions back, with the machine's
    parabolic keys (2p, -p^2 + 0.3 inv_log_pos) and queries HARD_K sqrt(2) (p - i, 1),
    so the hull takes its usual path; everything else is random and written
    only to slots 4.. so the positional slots 0..3 stay intact."""
    rng = np.random.default_rng(seed)
    POS, ILP, POS_SQ, ONE = 0, 1, 2, 3
    scale = hull.HARD_K * np.sqrt(2)
    model = {"vocab": [f"t{i}" for i in range(V)], "embed": rng.normal(size=(V, D)) / D,
             "head": rng.normal(size=(V, D)), "stop_ids": [0], "slot_names": [""] * D, "layers": []}
    model["embed"][:, :4] = 0
    model["embed"][1:, ONE] = 1                       # token 0 plays `{` (and the stop token)
    for n_heads in HEADS_PER_LAYER:
        w_qkv = np.zeros((3 * D, D))                  # [3D, D]
        for h in range(n_heads):
            back = 1 + h % 4                          # look 1..4 tokens back
            w_qkv[2 * h, [POS, ONE]] = scale, -scale * back
            w_qkv[2 * h + 1, ONE] = scale
            w_qkv[D + 2 * h, POS] = 2
            w_qkv[D + 2 * h + 1, [POS_SQ, ILP]] = -1, 0.3
            w_qkv[2 * D + 2 * h:2 * D + 2 * h + 2, 4:] = rng.normal(size=(2, D - 4)) / D
        w_out = rng.normal(size=(D, D)) / D           # [D, D]
        w_ffo = rng.normal(size=(D, F)) / (F * D)     # [D, F]
        w_out[:4] = w_ffo[:4] = 0
        w_in = rng.normal(size=(2 * F, D)) / D        # [2F, D]
        w_in[:, :4] = 0
        model["layers"].append({"w_qkv": w_qkv, "w_out": w_out, "w_in": w_in, "w_ffo": w_ffo,
                                "tie_latest": np.ones(D // 2, dtype=bool)})
    return model


def null_caches(plan):
    def insert(kx, ky, vx, vy):
        pass

    def query(qx, qy):
        return (0.0, 0.0)
    return [[(insert, query)] * len(layer["heads"]) for layer in plan["layers"]]


def tokens_per_second(plan, caches, n_tokens):
    start = time.perf_counter()
    token_id = 1
    for p in range(n_tokens):
        x = wasmtf.step(plan, caches, token_id, p)
        token_id = 1 + wasmtf.next_token(plan, x) % (V - 1)  # never the stop id 0
    return n_tokens / (time.perf_counter() - start)


if __name__ == "__main__":
    n_tokens = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    for D, F in ((40, 47), (150, 150)):
        plan = wasmtf.prepare(random_model(D, F))
        n_heads = sum(len(layer["heads"]) for layer in plan["layers"])
        rate = tokens_per_second(plan, null_caches(plan), n_tokens)
        print(f"D={D} F={F} L={LAYERS} active heads={n_heads}: null cache {rate:8.0f} tokens/s "
              f"({1e6 / rate:.1f} us per token excluding attention)")
        for kind in ("hull", "softmax"):
            try:
                rate = tokens_per_second(plan, wasmtf.new_caches(plan, kind), n_tokens)
            except ImportError as error:
                print(f"  {kind}: unavailable ({error})")
                continue
            print(f"  {kind:8} cache {rate:8.0f} tokens/s over {n_tokens} tokens")
