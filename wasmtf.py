"""wasmtf: run a compiled transformer, token by token, in plain NumPy.

The model is a standard decoder (SPEC 7.1): embedding plus three positional features,
L layers of attention with 2-D heads and a ReGLU feed-forward, an argmax output head,
float64, no normalisation, no biases; its weights are compiled, not trained
(compile_weights.py). This file runs them, looks inside them, reads and writes them.
Every head is *hard* (SPEC 9, hull.hard_attention): the value of the key with the
largest score q.k, exact ties resolved by its mode (latest: the last; average: the
mean), which a convex-hull cache (hull.py) answers in O(log t) amortized, not O(t).

Shape glossary
    V  vocabulary size          D  residual width (even)
    L  layers                   H  heads = D // 2, each of width 2
    F  feed-forward width       T  tokens (positions) so far
    A  active heads of a layer  (heads whose output can be non-zero)

The model dict (produced by compile_weights.py, read and written by load/save):
    vocab       list[str]         V token strings in id order
    embed       float64[V, D]     token embedding rows
    layers      L dicts:
      w_qkv     float64[3D, D]    rows 0..D-1 queries, D..2D-1 keys, 2D..3D-1
                                  values; head h uses rows 2h, 2h+1 of each block
      w_out     float64[D, D]     attention output projection
      w_in      float64[2F, D]    rows 0..F-1 gates (ReLU'd), F..2F-1 values
      w_ffo     float64[D, F]     feed-forward output projection
      tie_latest bool[H]          tie mode per head: latest (True) / average
    head        float64[V, D]     logits = head @ x
    stop_ids    list[int]         generation stops after one of these
    slot_names  list[str]         D residual slot names ('' where unnamed)
    slot_occupants optional       [2L+1][D] the name a slot holds at each stage (inspect)
    erase       optional          model.bin's informational erase lists

One named repacking, prepare(model) -> plan, restricts every product to the heads,
neurons and slots its weights touch (the compiled machine uses few of each; exact: only
zeros are dropped): step, forward_batch and speculative.BatchState read it;
examples/torch_port.py reads the dense arrays (tests/test_torch_port.py: the same
tokens, residuals within 1e-6).

Costs per token: L products of sizes 6A x D, D x 2A, 2F x D, D x F (on the slots
touched), one U x S product for the logits (output_head), and per active head one
cache insert and one query (hull: O(log T) amortized; brute: O(T); softmax: O(T)).

Contents: 1. the forward pass  2. caches and generation  3. batched form
4. model files  5. a hand-compiled model  6. programs, inspection, divergence.
`python wasmtf.py` runs the command line (cli.py).
"""
import math
import os
import struct
import sys
import zipfile
import zlib

if __name__ == "__main__":
    # One BLAS thread: the per-token products are tiny, and BLAS worker threads cost
    # more than they give on a shared machine (benchmarks/verify_speed.py).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402 (after the thread setting, which numpy reads on import)

import hull  # noqa: E402
import reference  # noqa: E402

HEAD_WIDTH = 2                  # every head reads and writes 2 residual slots
INV_LN2 = 1 / math.log(2)       # inv_log_pos(p) = 1/ln 2 - 1/ln(p+2), SPEC 7.1
DEFAULT_MAX_NEW_TOKENS = 50_000_000  # a safety stop; the Inkala Sudoku is ~9 million tokens
PROGRESS_EVERY = 4096                 # tokens between progress reports of a long run


class ModelFileError(ValueError):
    """A model file (or model dict) that is truncated or inconsistent."""


# ---------------------------------------------------------------------------
# 1. The forward pass
# ---------------------------------------------------------------------------

def inv_log_pos(p):
    """The positional feature of slot 1: 0 at p = 0, rising towards 1/ln 2; p is a position,
    or a range of them (then an array [T] of the same values, from math.log of each)."""
    if isinstance(p, range):
        logs = np.fromiter(map(math.log, range(p.start + 2, p.stop + 2)), np.float64, len(p))  # [T]
    else:
        logs = math.log(p + 2)
    return INV_LN2 - 1 / logs


def embed_tokens(embed, token_ids, start=0):
    """SPEC 7.1 step 1 for positions start, start+1, ...: each token's embedding row
    plus the positional features (position, inv_log_pos, position^2): x [T, D]."""
    x = embed[np.asarray(token_ids, dtype=np.int64)]                  # [T, D] (a copy)
    positions = np.arange(start, start + len(x), dtype=np.float64)    # [T]
    x[:, 0] += positions
    x[:, 1] += inv_log_pos(range(start, start + len(x)))
    x[:, 2] += positions * positions
    return x


def embed_position(embed, token_id, p):
    """embed_tokens for one token at position p: x [D] (the per-token form of step)."""
    x = embed[token_id].copy()  # [D]
    x[0] += p
    x[1] += inv_log_pos(p)
    x[2] += p * p
    return x


def reglu(f, n_neurons):
    """The feed-forward's activation on pre-activations f [2F, ...] (rows 0..F-1 gates,
    F..2F-1 values): max(gate, 0) * value, [F, ...]."""
    g = np.maximum(f[:n_neurons], 0.0)                  # [F, ..] relu(gate)
    g *= f[n_neurons:]                                  # [F, ..] times value
    return g


def head_rows(D, h):
    """Rows of w_qkv read by head h, in the order qx, qy, kx, ky, vx, vy."""
    return [block * D + HEAD_WIDTH * h + i for block in range(3) for i in range(HEAD_WIDTH)]


def active_heads(layer):
    """Heads whose value rows and output columns are not all zero: any other head returns 0
    whatever it attends to (a head with a zero query but non-zero values averages, it stays)."""
    D = layer["w_out"].shape[0]
    values = layer["w_qkv"][2 * D:].reshape(D // HEAD_WIDTH, HEAD_WIDTH * D)  # [H, 2D]: head h's value rows
    outputs = layer["w_out"].T.reshape(D // HEAD_WIDTH, HEAD_WIDTH * D)      # [H, 2D]: its output columns
    return np.flatnonzero(values.any(axis=1) & outputs.any(axis=1)).tolist()


class Linear:
    """y = w @ x for w [N, D] and x [D] (or [D, C]), reading only the non-zero columns of w.
    Dropping exact zeros changes no term, only the order in which BLAS adds the others (its
    kernels differ in order anyway); the compiled machine's dot products are exact in any
    order (tests/test_summation_order.py), so for it nothing changes."""

    def __init__(self, w):
        self.columns = np.flatnonzero(w.any(axis=0))               # [K] slots read
        self.w = np.ascontiguousarray(w[:, self.columns])          # [N, K]

    def __call__(self, x):
        return self.w @ x[self.columns]                            # [N, K] @ [K, ..] -> [N, ..]


class Scatter:
    """x[written] += w[written] @ y for w [D, N], y [N] (or [N, C]): only the slots w writes."""

    def __init__(self, w):
        self.rows = np.flatnonzero(w.any(axis=1))                  # [R] slots written
        self.w = np.ascontiguousarray(w[self.rows])                # [R, N]

    def add_to(self, x, y):
        x[self.rows] += self.w @ y                                 # [R, N] @ [N, ..] -> [R, ..]


def output_head(model):
    """The logits restricted to the residual slots the head reads, one row per distinct
    row of the head (kept at its lowest token id, in id order, so that argmax still
    returns the lowest id among exactly equal logits). Returns (slots, rows [U, S], ids [U])."""
    head = model["head"]                                          # [V, D]
    slots = np.flatnonzero(head.any(axis=0))                      # [S]
    _, first_ids = np.unique(head[:, slots], axis=0, return_index=True)
    ids = np.sort(first_ids)                                      # [U]
    return slots, np.ascontiguousarray(head[ids][:, slots]), ids


def prepare(model):
    """The plan (module docstring): per layer the active heads, their tie modes, and the
    products on the slots they read or write (Linear, Scatter): qkv [6A, D] (rows qx qy kx
    ky vx vy per active head), out [D, 2A], ffn_in [2F, D] and ffn_out [D, F] for the F
    neurons whose gate, value and output are non-zero; "logits" is output_head(model)."""
    D = model["embed"].shape[1]
    layers = []
    for layer in model["layers"]:
        heads = active_heads(layer)
        rows = [r for h in heads for r in head_rows(D, h)]
        out_cols = [HEAD_WIDTH * h + i for h in heads for i in range(HEAD_WIDTH)]
        F = layer["w_ffo"].shape[1]
        gates, values = layer["w_in"][:F], layer["w_in"][F:]  # [F, D] each
        live = gates.any(axis=1) & values.any(axis=1) & layer["w_ffo"].any(axis=0)  # [F]
        layers.append({"heads": heads, "tie_latest": [bool(layer["tie_latest"][h]) for h in heads],
                       "qkv": Linear(layer["w_qkv"][rows]), "out": Scatter(layer["w_out"][:, out_cols]),
                       "ffn_in": Linear(np.concatenate([gates[live], values[live]])),
                       "ffn_out": Scatter(layer["w_ffo"][:, live]), "F": int(live.sum())})
    return {"embed": model["embed"], "head": model["head"], "layers": layers,
            "vocab": model["vocab"], "stop_ids": set(model["stop_ids"]), "logits": output_head(model)}


def step(plan, caches, token_id, p, record=None):
    """One position of SPEC 7.1: returns the final residual x [D]. caches[l] lists (insert,
    query) bound methods, one pair per active head of layer l; with a `record` dict, the
    per-layer intermediates are appended to its "residuals", "qkv" and "attn" (forward)."""
    x = embed_position(plan["embed"], token_id, p)  # [D]
    if record is not None:
        record["residuals"].append(x.copy())
    for layer, heads in zip(plan["layers"], caches):
        if heads:
            qkv = layer["qkv"]
            u = qkv.w.dot(x[qkv.columns]).tolist()  # [6A, K] @ [K] -> 6A floats
            o = []                                 # 2A floats
            for (insert, query), qx, qy, kx, ky, vx, vy in zip(
                    heads, u[0::6], u[1::6], u[2::6], u[3::6], u[4::6], u[5::6]):
                insert(kx, ky, vx, vy)             # insert first: causal, self included
                o += query(qx, qy)
            out = layer["out"]
            x[out.rows] += out.w.dot(o)            # [R, 2A] @ [2A] -> [R]
        if record is not None:
            record["qkv"].append(u if heads else [])
            record["attn"].append(o if heads else [])
            record["residuals"].append(x.copy())
        if layer["F"]:                             # the feed-forward on the slots it reads and writes
            ffn_in, ffn_out = layer["ffn_in"], layer["ffn_out"]
            f = ffn_in.w.dot(x[ffn_in.columns])    # [2F', K] @ [K] -> [2F']
            x[ffn_out.rows] += ffn_out.w.dot(reglu(f, layer["F"]))  # [R, F'] @ [F'] -> [R]
        if record is not None:
            record["residuals"].append(x.copy())
    return x


def next_token(plan, x):
    """Argmax of the logits head @ x, on the slots and distinct rows of output_head;
    the lowest id on exact ties, as np.argmax over all V logits."""
    slots, rows, ids = plan["logits"]
    return int(ids[rows.dot(x[slots]).argmax()])  # [U, S] @ [S] -> [U]


LOGIT_BLOCK = 4_096  # columns per logits product of next_tokens ([U, block] floats at a time)


def next_tokens(plan, x):
    """next_token for every column of x [D, C]: [C] ids."""
    slots, rows, ids = plan["logits"]
    best = np.empty(x.shape[1], dtype=np.int64)                             # [C]
    for col in range(0, x.shape[1], LOGIT_BLOCK):
        logits = x[slots, col:col + LOGIT_BLOCK].T @ rows.T                 # [B, S] @ [S, U] -> [B, U]
        best[col:col + LOGIT_BLOCK] = ids[np.argmax(logits, axis=1)]
    return best


def run_layers(plan, x, attend):
    """Every layer of the plan on the residual columns x [D, C] of C consecutive
    positions, in place; attend(l, a, latest, q, k, v) answers active head a of
    layer l for those positions ([C, 2] each -> [C, 2]). The batched form of step."""
    for l, layer in enumerate(plan["layers"]):
        if layer["heads"]:
            u = layer["qkv"](x)                                  # [6A, C] rows qx qy kx ky vx vy per head
            o = np.empty((HEAD_WIDTH * len(layer["heads"]), x.shape[1]))  # [2A, C]
            for a, latest in enumerate(layer["tie_latest"]):
                q, k, v = u[6 * a:6 * a + 2].T, u[6 * a + 2:6 * a + 4].T, u[6 * a + 4:6 * a + 6].T  # [C, 2]
                o[2 * a:2 * a + 2] = attend(l, a, latest, q, k, v).T
            layer["out"].add_to(x, o)                            # x += w_out @ o
        layer["ffn_out"].add_to(x, reglu(layer["ffn_in"](x), layer["F"]))  # x += w_ffo @ reglu(w_in @ x)
    return x


# ---------------------------------------------------------------------------
# 2. Caches and generation
# ---------------------------------------------------------------------------

class AttentionTie(RuntimeError):
    """Softmax attention cannot reproduce a hard head: several entries share the best score."""


SOFTMAX_VISIBLE = 2.0 ** -52  # a softmax weight w (the best entry has weight 1) that float64
                              # can see next to the best entry: 1 + w > 1 (w >= 2^-52)


# When SoftmaxHead stops on a compiled machine: a latest head's writes of one key k
# at positions p1 < p2 <= P differ by the recency term
# d = 0.3 * (inv_log_pos(p2) - inv_log_pos(p1)) >= 0.3 / ((P + 2) ln(P + 1) ln(P + 2))
# (as 1/ln(P+1) - 1/ln(P+2) = ln((P+2)/(P+1)) / (ln(P+1) ln(P+2)) and
# ln(1 + x) >= x / (1 + x)). The two softmax weights differ visibly only if
#   (a) the float64 scores differ: ky = -k^2 + d and the score (two products,
#       one sum) each round with relative error 2^-53 on terms of size about
#       k^2 in key units, so d > 2^-50 (k^2 + 1) suffices, and
#   (b) exp(-HARD_K * d) < 2^-52: d > 52 ln 2 / HARD_K = 3.6e-9.
# Both hold, so every such head is tie-free under softmax, while
#   (P + 2) ln(P + 1) ln(P + 2) < 0.3 / max(2^-50 (k^2 + 1), 3.6e-9):
# keys k <= 2,000 up to P = 485,000 tokens (the softmax bound), k = 4,096 up
# to P = 142,000, k = 2^16 up to P = 1,470, k = 2^20 up to P = 25, k = 2^24
# never (a sufficient condition: beyond it ties may or may not occur). Keys written once (the
# position-keyed heads: previous tokens, fetch, immediates, byte reads) and
# the average heads (all tied keys exactly equal, the rest >= 0.567 lower)
# never tie. Memory keys are addresses up to 2^24, and no recency term can
# separate many writes there: ky = -k^2 + d has only 2^52 / k^2 float64
# values within the gap of 1 (16 at k = 2^24) for up to 2^25 positions, so
# a program that rewrites a high address stops here (use the hull cache).


class SoftmaxHead:
    """The standard KV cache with real softmax attention, O(t) per query. Scores are divided
    by sqrt(2) (PyTorch's MultiheadAttention); compiled queries carry HARD_K * sqrt(2), so an
    entry delta (in key units) below the best weighs exp(-HARD_K * delta): 0 for the gap
    1 - 0.433 after an exact key. Softmax gives exact ties equal weights ("latest wins" is
    not expressible), so a query stops with AttentionTie, naming head and position, when an
    entry other than SPEC 9's answer keeps a weight float64 can see (>= SOFTMAX_VISIBLE): for
    a latest head any second entry, for an average head one outside the exact tie. Where a
    compiled machine meets such ties: the derivation above."""

    def __init__(self, latest=False, name="a head"):
        self.latest = latest
        self.name = name                                # e.g. "layer 3 head 5", for AttentionTie
        self.n = 0
        self.keys = np.zeros((16, HEAD_WIDTH))          # [capacity, 2]
        self.values = np.zeros((16, HEAD_WIDTH))        # [capacity, 2]

    def __len__(self):
        return self.n

    def insert(self, kx, ky, vx, vy):
        if self.n == len(self.keys):  # double the capacity: amortized O(1)
            self.keys = np.concatenate([self.keys, np.zeros_like(self.keys)])
            self.values = np.concatenate([self.values, np.zeros_like(self.values)])
        self.keys[self.n] = (kx, ky)
        self.values[self.n] = (vx, vy)
        self.n += 1

    def query(self, qx, qy):
        if self.n == 0:
            return (0.0, 0.0)
        keys, values = self.keys[:self.n], self.values[:self.n]   # [t, 2]
        scores = (keys @ (qx, qy)) / math.sqrt(HEAD_WIDTH)         # [t]
        weights = np.exp(scores - scores.max())                   # [t], max weight 1
        visible = weights >= SOFTMAX_VISIBLE                      # [t] entries the answer mixes in
        mixed = visible if self.latest else visible & (scores < scores.max())
        if np.count_nonzero(mixed) > (1 if self.latest else 0):
            positions = np.flatnonzero(visible)
            shown = ", ".join(str(j) for j in positions[-4:])
            raise AttentionTie(
                f"softmax attention cannot tell apart the keys of {self.name} at position {self.n - 1}: "
                f"{len(positions)} entries (positions {shown}) score within float64 resolution of the best, "
                f"where hard attention takes {'the latest' if self.latest else 'only the exact ties'} "
                f"(see wasmtf.SoftmaxHead; use --cache hull)")
        out = (weights @ values) * (1 / weights.sum())            # [2]
        return (float(out[0]), float(out[1]))


def make_cache(kind, latest, name="a head"):
    """One head's cache: "hull" (O(log t)), "brute" (O(t), the SPEC 9 oracle), "softmax"."""
    if kind == "softmax":
        return SoftmaxHead(latest, name)
    if kind == "hull":
        return hull.HullHead(latest)
    if kind == "brute":
        return hull.BruteHead(latest)
    raise ValueError(f"unknown cache {kind!r}: choose hull, brute or softmax")


def new_caches(plan, kind):
    """Fresh caches for every active head: per layer a list of (insert, query)."""
    caches = []
    for l, layer in enumerate(plan["layers"]):
        heads = [make_cache(kind, latest, f"layer {l} head {h}")
                 for h, latest in zip(layer["heads"], layer["tie_latest"])]
        caches.append([(c.insert, c.query) for c in heads])
    return caches


UNKNOWN_TOKENS_SHOWN = 10  # an error names this many unknown tokens, then counts the rest


def encode(model, tokens):
    """Token strings -> ids; the unknown tokens are reported at once, in one line."""
    ids = {t: i for i, t in enumerate(model["vocab"])}
    unknown = [f"{t!r} at {i}" for i, t in enumerate(tokens) if t not in ids]
    if unknown:
        more = len(unknown) - UNKNOWN_TOKENS_SHOWN
        raise ValueError("tokens not in the model's vocabulary: " + ", ".join(unknown[:UNKNOWN_TOKENS_SHOWN])
                         + (f" and {more} more" if more > 0 else ""))
    if not tokens:
        raise ValueError("empty prompt")
    return [ids[t] for t in tokens]


def generate(model, prompt, cache="hull", max_new_tokens=DEFAULT_MAX_NEW_TOKENS, plan=None, progress=None):
    """The new tokens after `prompt` (its positions compute no logits), ending with a stop
    token unless max_new_tokens ran out first; progress(count, tokens so far) every
    PROGRESS_EVERY tokens; reference.CallStackExhausted past MAX_CALL_DEPTH calls in
    progress. speculative.generate gives the same tokens, checking a reference draft in batches."""
    plan = plan or prepare(model)
    ids = encode(model, prompt)
    caches = new_caches(plan, cache)
    for p, token_id in enumerate(ids[:-1]):
        step(plan, caches, token_id, p)
    generated = []
    token_id, p, depth = ids[-1], len(ids) - 1, 0
    while len(generated) < max_new_tokens:
        token_id = next_token(plan, step(plan, caches, token_id, p))
        generated.append(model["vocab"][token_id])
        if generated[-1] in CALL_DEPTH_CHANGE:  # call_commit / return_commit only
            depth += CALL_DEPTH_CHANGE[generated[-1]]
            check_call_depth(depth, len(generated))
        if token_id in plan["stop_ids"]:
            break
        p += 1
        if progress is not None and len(generated) % PROGRESS_EVERY == 0:
            progress(len(generated), generated)
    return generated


CALL_DEPTH_CHANGE = {reference.CALL_COMMIT: 1, reference.RETURN_COMMIT: -1}  # SPEC 4.2


def check_call_depth(depth, count):
    """Stop a generated trace with more calls in progress than the reference interpreter
    allows (reference.MAX_CALL_DEPTH, which keeps the machine's keys exact)."""
    if depth > reference.MAX_CALL_DEPTH:
        raise reference.CallStackExhausted(
            f"call stack exhausted: after {count:,} generated tokens the trace has call {depth} in progress "
            f"(the limit is {reference.MAX_CALL_DEPTH})")


def forward(model, tokens, cache="hull"):
    """The inspectable forward pass over a token list: one dict per position with
        token      str
        residuals  [2L+1, D]  x after the embedding, then after each attention / FFN
        q, k, v    [L, H, 2]  every head's query, key and value (0 for skipped heads)
        attn       [L, H, 2]  every head's result
        active     [L, H]     heads that ran (the others contribute exactly 0)
        logits     [V]
    Which earlier positions a head attended to: attended_positions(trace, p, l, h)."""
    plan = prepare(model)
    ids = encode(model, tokens)
    caches = new_caches(plan, cache)
    L, D = len(model["layers"]), model["embed"].shape[1]
    trace = []
    for p, token_id in enumerate(ids):
        record = {"residuals": [], "qkv": [], "attn": []}
        x = step(plan, caches, token_id, p, record)
        qkv = np.zeros((L, D // HEAD_WIDTH, 3, HEAD_WIDTH))  # [L, H, q/k/v, 2]
        attn = np.zeros((L, D // HEAD_WIDTH, HEAD_WIDTH))    # [L, H, 2]
        active = np.zeros((L, D // HEAD_WIDTH), dtype=bool)  # [L, H]
        for l, heads in enumerate(layer["heads"] for layer in plan["layers"]):  # A active heads
            qkv[l, heads] = np.reshape(record["qkv"][l], (len(heads), 3, HEAD_WIDTH))    # [A, 3, 2]
            attn[l, heads] = np.reshape(record["attn"][l], (len(heads), HEAD_WIDTH))     # [A, 2]
            active[l, heads] = True
        trace.append({"token": tokens[p], "residuals": np.array(record["residuals"]),
                      "q": qkv[:, :, 0], "k": qkv[:, :, 1], "v": qkv[:, :, 2],
                      "attn": attn, "active": active, "logits": plan["head"] @ x})
    return trace


def attended_positions(trace, p, l, h):
    """Positions j <= p whose key ties for the best score of head h, layer l at p (SPEC 9)."""
    keys = np.array([trace[j]["k"][l, h] for j in range(p + 1)])   # [p+1, 2]
    return np.flatnonzero(hull.tied_sets(keys, [trace[p]["q"][l, h]], first=p)[0]).tolist()


# ---------------------------------------------------------------------------
# 3. Batched form: all positions at once, as a port computes them
# ---------------------------------------------------------------------------

def forward_batch(model, token_ids, plan=None):
    """The whole sequence at once (teacher forcing), as a port computes it: (x [T, D],
    logits [T, V]), every head answering all T positions with hull.causal_hard_attention
    (SPEC 9, one HullHead per head). The sequential steps' results for weights exact in any
    summation order, as compiled ones are (Linear); speculative.BatchState is the bounded-memory
    form."""
    plan = plan or prepare(model)
    x = np.ascontiguousarray(embed_tokens(plan["embed"], token_ids).T)   # [D, T]
    run_layers(plan, x, lambda l, a, latest, q, k, v: hull.causal_hard_attention(k, v, q, latest))
    return x.T, x.T @ model["head"].T                                  # [T, D], [T, D] @ [D, V] -> [T, V]


# ---------------------------------------------------------------------------
# 4. Model files: transformer-vm's model.bin (SPEC 8) and wasmtf's .npz
# ---------------------------------------------------------------------------

def check_model(model, where):
    """Raise ModelFileError naming `where` unless every array has the right shape."""
    def fail(what):
        raise ModelFileError(f"{where}: {what}")
    vocab = model["vocab"]
    V = len(vocab)
    if len(set(vocab)) != V or not all(isinstance(t, str) and t for t in vocab):
        fail("vocabulary has empty, non-string or repeated tokens")
    arrays = {"embed": model["embed"], "head": model["head"]}
    for l, layer in enumerate(model["layers"]):
        arrays.update({f"layer {l} {key}": layer[key] for key in ("w_qkv", "w_out", "w_in", "w_ffo")})
    for name, array in arrays.items():
        if not (isinstance(array, np.ndarray) and array.dtype == np.float64 and array.ndim == 2):
            fail(f"{name} is not a float64 matrix")
        if not np.isfinite(array).all():
            fail(f"{name} has NaN or infinite entries")
    D = model["embed"].shape[1]
    F = model["layers"][0]["w_in"].shape[0] // 2 if model["layers"] else 0
    if model["embed"].shape != (V, D) or D == 0 or D % HEAD_WIDTH:
        fail(f"embedding shape {model['embed'].shape} is not [V={V}, even D]")
    expected = {"head": (V, D)}
    for l, layer in enumerate(model["layers"]):
        expected.update({f"layer {l} w_qkv": (3 * D, D), f"layer {l} w_out": (D, D),
                         f"layer {l} w_in": (2 * F, D), f"layer {l} w_ffo": (D, F)})
        if np.shape(layer["tie_latest"]) != (D // HEAD_WIDTH,):
            fail(f"layer {l} tie_latest has shape {np.shape(layer['tie_latest'])}, not [H={D // 2}]")
    wrong = [f"{name} {arrays[name].shape} != {shape}" for name, shape in expected.items()
             if arrays[name].shape != shape]
    if wrong:
        fail("inconsistent shapes: " + "; ".join(wrong))
    if not model["stop_ids"] or not all(0 <= i < V for i in model["stop_ids"]):
        fail(f"stop ids {model['stop_ids']} are not ids of the vocabulary")
    if len(model.get("slot_names", [""] * D)) != D:
        fail(f"{len(model['slot_names'])} slot names for D = {D} slots")


def read_model_bin(data, name):
    """Parse SPEC 8's layout from bytes; every short or bad field is a ModelFileError.
    Bytes after the last field (a trailer) are not read: model["trailer_bytes"] counts them."""
    offset = 0

    def take(n_bytes, what):
        nonlocal offset
        if offset + n_bytes > len(data):
            raise ModelFileError(f"{name}: truncated in {what} (needs {n_bytes} bytes at offset "
                                 f"{offset}, the file has {len(data)})")
        offset += n_bytes
        return data[offset - n_bytes:offset]

    def ints(count, what):
        return list(struct.unpack(f"<{count}i", take(4 * count, what)))

    def count(what):
        (value,) = ints(1, what)
        if value < 0:
            raise ModelFileError(f"{name}: {what} is {value}, negative")
        return value

    def flag(what):
        (value,) = ints(1, what)
        if value not in (0, 1):
            raise ModelFileError(f"{name}: {what} is {value}, not 0 or 1")
        return value == 1

    def matrix(rows, cols, what):
        return np.frombuffer(take(8 * rows * cols, what), dtype="<f8").reshape(rows, cols).astype(np.float64)

    V, D, L, H, F, stop = ints(6, "the header")
    if V < 1 or D < 2 or D % 2 or L < 0 or H != D // 2 or F < 0 or not 0 <= stop < V:
        raise ModelFileError(f"{name}: bad header V={V} D={D} L={L} H={H} F={F} stop={stop} "
                             f"(need V, D > 0, D even, H = D/2, F >= 0, 0 <= stop < V)")
    vocab = []
    for i in range(V):
        (length,) = struct.unpack("<I", take(4, f"the length of token {i}"))
        try:
            vocab.append(take(length, f"token {i}").decode("utf-8"))
        except UnicodeDecodeError:
            raise ModelFileError(f"{name}: token {i} is not UTF-8") from None
    model = {"vocab": vocab, "embed": matrix(V, D, "the embedding"), "layers": []}
    for l in range(L):
        model["layers"].append({
            "w_qkv": matrix(3 * D, D, f"layer {l} W_qkv"), "w_out": matrix(D, D, f"layer {l} W_out"),
            "w_in": matrix(2 * F, D, f"layer {l} W_in"), "w_ffo": matrix(D, F, f"layer {l} W_ffo"),
            "tie_latest": np.zeros(H, dtype=bool)})  # has_tiebreak = 0: all average
    model["head"] = matrix(V, D, "the output head")
    if flag("has_erase"):
        model["erase"] = []
        for l in range(L):
            halves = [ints(count(f"layer {l} erase count"), f"layer {l} erase list") for half in "af"]
            if not all(0 <= s < D for half in halves for s in half):
                raise ModelFileError(f"{name}: layer {l} erase list names a slot outside 0..{D - 1}")
            model["erase"].append(halves)
    if flag("has_tiebreak"):
        flags = np.array(ints(L * H, "the tie flags")).reshape(L, H)  # [L, H]
        for layer, layer_flags in zip(model["layers"], flags):
            layer["tie_latest"] = layer_flags == 1
    model["trailer_bytes"] = len(data) - offset  # a block some builds append: ignored, as their readers do
    trap = [vocab.index("trap")] if "trap" in vocab and vocab[stop] != "trap" else []
    model["stop_ids"] = [stop] + trap  # SPEC 4.8: trap also ends a run
    model["slot_names"] = [""] * D
    return model


def write_model_bin(model):
    """SPEC 8's layout as bytes; the one stop id written is halt's (or the first)."""
    vocab, D = model["vocab"], model["embed"].shape[1]
    L, F = len(model["layers"]), (model["layers"][0]["w_ffo"].shape[1] if model["layers"] else 0)
    halt = vocab.index("halt") if "halt" in vocab else None
    stop = halt if halt in model["stop_ids"] else model["stop_ids"][0]
    parts = [struct.pack("<6i", len(vocab), D, L, D // 2, F, stop)]
    for token in vocab:
        encoded = token.encode("utf-8")
        parts += [struct.pack("<I", len(encoded)), encoded]
    parts.append(model["embed"].astype("<f8").tobytes())
    for layer in model["layers"]:
        parts += [layer[key].astype("<f8").tobytes() for key in ("w_qkv", "w_out", "w_in", "w_ffo")]
    parts.append(model["head"].astype("<f8").tobytes())
    erase = model.get("erase")
    parts.append(struct.pack("<i", 1 if erase else 0))
    for halves in erase or []:
        for slots in halves:
            parts.append(struct.pack(f"<{1 + len(slots)}i", len(slots), *slots))
    flags = [int(latest) for layer in model["layers"] for latest in layer["tie_latest"]]
    parts.append(struct.pack(f"<{1 + len(flags)}i", 1, *flags))
    return b"".join(parts)


NPZ_LAYER_ARRAYS = {"w_qkv": "attn.{}.in_proj_weight", "w_out": "attn.{}.out_proj.weight",  # layer {}'s
                    "w_in": "ff_in.{}.weight", "w_ffo": "ff_out.{}.weight"}                  # .npz names


def npz_arrays(model):
    """The .npz contents: torch state_dict names of the reference architecture
    (load with `torch.nn.Module.load_state_dict({k: torch.from_numpy(v) ...})`)."""
    arrays = {"tok.weight": model["embed"], "head.weight": model["head"],
              "vocab": np.array(model["vocab"], dtype=str),
              "stop_tokens": np.array([model["vocab"][i] for i in model["stop_ids"]], dtype=str),
              "slot_names": np.array(model.get("slot_names", [""] * model["embed"].shape[1]), dtype=str),
              "tie_latest": np.array([layer["tie_latest"] for layer in model["layers"]], dtype=bool)
              .reshape(len(model["layers"]), model["embed"].shape[1] // HEAD_WIDTH)}
    for l, layer in enumerate(model["layers"]):
        arrays.update({name.format(l): layer[key] for key, name in NPZ_LAYER_ARRAYS.items()})
    if model.get("erase"):  # informational erase lists: counts [L, 2] and the slots in order
        arrays["erase_counts"] = np.array([[len(s) for s in halves] for halves in model["erase"]])
        arrays["erase_slots"] = np.array([s for halves in model["erase"] for h in halves for s in h], dtype=np.int64)
    return arrays


def model_from_npz(arrays, name):
    """Inverse of npz_arrays; missing arrays are all named at once, and an array
    of the wrong number of dimensions is named before any shape is read from it."""
    L = sum(1 for key in arrays if key.startswith("attn.") and key.endswith(".in_proj_weight"))
    needed = ["tok.weight", "head.weight", "vocab", "stop_tokens", "tie_latest"] + [
        name.format(l) for l in range(L) for name in NPZ_LAYER_ARRAYS.values()]
    missing = [key for key in needed if key not in arrays]
    if missing:
        raise ModelFileError(f"{name}: missing arrays {', '.join(missing)}")
    dimensions = {key: 2 for key in needed}
    dimensions.update({"vocab": 1, "stop_tokens": 1, "slot_names": 1})
    for key, ndim in dimensions.items():
        if key in arrays and arrays[key].ndim != ndim:
            raise ModelFileError(f"{name}: array {key} has shape {arrays[key].shape}, "
                                 f"not {'a list' if ndim == 1 else 'a matrix'}")
    V, D = len(arrays["vocab"]), arrays["tok.weight"].shape[1]
    if arrays["tok.weight"].shape[0] != V or D == 0 or D % HEAD_WIDTH:
        raise ModelFileError(f"{name}: array tok.weight has shape {arrays['tok.weight'].shape}, "
                             f"not [V={V} (the vocabulary), an even D]")
    vocab = [str(t) for t in arrays["vocab"]]
    unknown_stops = [str(t) for t in arrays["stop_tokens"] if str(t) not in vocab]
    if unknown_stops:
        raise ModelFileError(f"{name}: stop tokens {unknown_stops} are not in the vocabulary")
    tie_latest = arrays["tie_latest"]
    if tie_latest.shape != (L, D // HEAD_WIDTH):
        raise ModelFileError(f"{name}: tie_latest has shape {tie_latest.shape}, not [L={L}, H={D // 2}]")
    model = {"vocab": vocab, "embed": arrays["tok.weight"], "head": arrays["head.weight"],
             "stop_ids": [vocab.index(str(t)) for t in arrays["stop_tokens"]],
             "slot_names": [str(s) for s in arrays.get("slot_names", [""] * D)],
             "layers": [{**{key: arrays[name.format(l)] for key, name in NPZ_LAYER_ARRAYS.items()},
                         "tie_latest": tie_latest[l].astype(bool)} for l in range(L)]}
    if "erase_counts" in arrays:
        slots = iter(arrays["erase_slots"].tolist())
        model["erase"] = [[[next(slots) for _ in range(n)] for n in counts]
                          for counts in arrays["erase_counts"].tolist()]
    return model


ZIP_MAGIC = b"PK"         # an .npz is a zip archive of .npy files (an empty one starts PK too)
NPY_MAGIC = b"\x93NUMPY"  # one .npy array


def check_npz_archive(path):
    """Raise ModelFileError unless the file at `path` starts like a zip archive,
    naming what it is instead (numpy would try to unpickle it)."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(ZIP_MAGIC):
        return
    if data.startswith(NPY_MAGIC):
        raise ModelFileError(f"{path}: one .npy array, not an .npz archive of named arrays")
    try:
        read_model_bin(data, path)
    except ModelFileError:
        raise ModelFileError(f"{path}: not an .npz archive (a zip file of named arrays)") from None
    raise ModelFileError(f"{path}: a transformer-vm model.bin, not an .npz archive: name it .bin")


def baked_program_hash(model):
    """The program_hash of the program a specialized model holds in its weights (the
    vocabulary names it, SPEC 1.2), or None for a universal model."""
    prefix, suffix = reference.PROGRAM_MARK.split("%s")
    marks = [t[len(prefix):-len(suffix)] for t in model["vocab"] if t.startswith(prefix) and t.endswith(suffix)]
    return marks[0] if marks else None


def load(path):
    """Read a model file: transformer-vm's model.bin (*.bin) or wasmtf's *.npz."""
    path = str(path)
    try:
        if path.endswith(".npz"):
            check_npz_archive(path)
            with np.load(path, allow_pickle=False) as npz:
                model = model_from_npz({key: npz[key] for key in npz.files}, path)
        elif path.endswith(".bin"):
            with open(path, "rb") as f:
                model = read_model_bin(f.read(), path)
            if model["trailer_bytes"]:
                print(f"wasmtf: {path}: ignoring {model['trailer_bytes']:,} bytes after the model.bin fields",
                      file=sys.stderr)
        else:
            raise ModelFileError(f"{path}: unknown model file type (use .bin or .npz)")
    except ModelFileError:
        raise
    except (OSError, ValueError, TypeError, IndexError, EOFError, StopIteration,
            zipfile.BadZipFile, zlib.error) as error:  # whatever a damaged file makes numpy raise
        raise ModelFileError(f"{path}: cannot read the model ({error})") from None
    check_model(model, path)
    return model


def pad_feed_forward(model):
    """The same model with every layer's feed-forward padded to the widest, F, with
    zero neurons (they change nothing): both file formats store one F for all layers."""
    F = max((layer["w_ffo"].shape[1] for layer in model["layers"]), default=0)
    layers = []
    for layer in model["layers"]:
        D, width = layer["w_ffo"].shape
        w_in = np.zeros((2 * F, D))                       # [2F, D]
        w_in[:width] = layer["w_in"][:width]              # gates
        w_in[F:F + width] = layer["w_in"][width:]         # values
        w_ffo = np.zeros((D, F))                          # [D, F]
        w_ffo[:, :width] = layer["w_ffo"]
        layers.append({**layer, "w_in": w_in, "w_ffo": w_ffo})
    return {**model, "layers": layers}


def save(model, path):
    """Write a model file; the format follows the suffix (.bin or .npz)."""
    path = str(path)
    model = pad_feed_forward(model)
    check_model(model, "the model to save")
    if path.endswith(".npz"):
        with open(path, "wb") as f:
            np.savez(f, **npz_arrays(model))
    elif path.endswith(".bin"):
        with open(path, "wb") as f:
            f.write(write_model_bin(model))
    else:
        raise ModelFileError(f"{path}: unknown model file type (use .bin or .npz)")


# ---------------------------------------------------------------------------
# 5. A hand-compiled model: "the previous token plus one"
# ---------------------------------------------------------------------------

def copy_model():
    """A 1-layer model, built by hand, whose next token is the previous token + 1: from
    `{ 3 5` it writes two interleaved counts, 4 6 5 7 6 8 7 9 8 halt (`halt` is digit 10).
    Head 0 (latest): key (2j, -j^2) at j, query (p - 1, 1) at p (times HARD_K sqrt(2), as
    compiled weights), score (p-1)^2 - (j - (p-1))^2, largest at j = p - 1 (gap >= 1), reads
    code -> prev_code; one neuron adds 1 -> next_code; the logit of digit c is
    2 c next_code - c^2, largest at c = next_code."""
    vocab = sorted([str(d) for d in range(10)] + ["halt", "{"])
    code = {**{str(d): d for d in range(10)}, "halt": 10}
    slots = ["position", "inv_log_pos", "position_sq", "one", "code", "prev_code", "next_code", ""]
    POS, POS_SQ, ONE, CODE, PREV, NEXT = (slots.index(n) for n in
                                          ("position", "position_sq", "one", "code", "prev_code", "next_code"))
    V, D, F = len(vocab), len(slots), 1
    query_scale = hull.HARD_K * math.sqrt(HEAD_WIDTH)
    embed = np.zeros((V, D))                                # [V, D]; `{` stays all zero
    head = np.zeros((V, D))                                 # [V, D]
    for token, c in code.items():
        embed[vocab.index(token), [ONE, CODE]] = 1, c
        head[vocab.index(token), [NEXT, ONE]] = 2 * c, -c * c
    head[vocab.index("{"), ONE] = -1e5                      # never predict `{`
    w_qkv = np.zeros((3 * D, D))                            # [3D, D]
    w_qkv[0, [POS, ONE]] = query_scale, -query_scale        # qx = scale * (p - 1)
    w_qkv[1, ONE] = query_scale                             # qy = scale
    w_qkv[D + 0, POS] = 2                                   # kx = 2p
    w_qkv[D + 1, POS_SQ] = -1                               # ky = -p^2
    w_qkv[2 * D + 0, CODE] = 1                              # vx = code
    w_out = np.zeros((D, D))                                # [D, D]
    w_out[PREV, 0] = 1                                      # head 0's vx -> prev_code
    w_in = np.zeros((2 * F, D))                             # [2F, D]
    w_in[0, ONE] = 1                                        # gate: one
    w_in[F, [PREV, ONE]] = 1, 1                             # value: prev_code + 1
    w_ffo = np.zeros((D, F))                                # [D, F]
    w_ffo[NEXT, 0] = 1
    tie_latest = np.zeros(D // HEAD_WIDTH, dtype=bool)      # [H]
    tie_latest[0] = True
    return {"vocab": vocab, "embed": embed, "head": head, "stop_ids": [vocab.index("halt")],
            "slot_names": slots, "layers": [{"w_qkv": w_qkv, "w_out": w_out, "w_in": w_in,
                                             "w_ffo": w_ffo, "tie_latest": tie_latest}]}



# ---------------------------------------------------------------------------
# 6. Programs in a model, and what the model computes at a position
# ---------------------------------------------------------------------------

def program_prompt(model, instructions, input_bytes):
    """The prompt that runs a program in `model`: SPEC 2.1's program file for a universal
    model; `start` + input section (SPEC 2.2) for a specialized one (`start` is in its
    vocabulary). A model that names another program (SPEC 1.2) is an error; one that
    names none (transformer-vm's) is trusted to hold this one."""
    if reference.START not in model["vocab"]:
        return reference.program_tokens(instructions, input_bytes)
    baked = baked_program_hash(model)
    if baked is not None and baked != reference.program_hash(instructions):
        raise ValueError(f"the model holds the program with sha256 {baked[:16]}..., not this one "
                         f"({reference.program_hash(instructions)[:16]}...): run that program, or specialize this one")
    return reference.specialized_prompt(instructions, input_bytes)


def run_program(model, instructions, input_bytes, cache="hull", max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
                progress=None, plan=None):
    """Run a flat program inside the transformer: (prompt tokens, trace tokens)."""
    prompt = program_prompt(model, instructions, input_bytes)
    return prompt, generate(model, prompt, cache, max_new_tokens, plan, progress)


_PLANS = {}  # id(model) -> (model, prepare(model)): run_transformer prepares each model once


def run_transformer(model, instructions, input_bytes=None, cache="hull", max_new_tokens=None):
    """The trace tokens of a program run in `model` (ending with `halt` or `trap` unless
    max_new_tokens, by default DEFAULT_MAX_NEW_TOKENS, ran out first)."""
    if id(model) not in _PLANS:
        _PLANS[id(model)] = (model, prepare(model))
    return run_program(model, instructions, input_bytes, cache, max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
                       plan=_PLANS[id(model)][1])[1]


def dump_activations(model, tokens, path):
    """Save per-layer residuals [T, 2L+1, D] (after the embedding, then each
    attention and feed-forward half), head results [T, L, H, 2], logits [T, V]
    and the slot names, so that a port can compare layer by layer."""
    record = forward(model, tokens)
    np.savez(path, tokens=np.array(tokens), slot_names=np.array(model.get("slot_names", [])),
             residuals=np.array([r["residuals"] for r in record]),   # [T, 2L+1, D]
             attention=np.array([r["attn"] for r in record]),        # [T, L, H, 2]
             logits=np.array([r["logits"] for r in record]))         # [T, V]


def slot_occupants(model):
    """[2L+1][D]: the name each residual slot holds after the embedding and after each
    sub-layer. A compiled model reuses slots (compile_weights.slot_plan) and carries
    this table as model["slot_occupants"]; for any other model, or one read from a
    file, each stage shows the slot names as they are."""
    return model.get("slot_occupants") or [list(model["slot_names"])] * (1 + 2 * len(model["layers"]))


def inspect(model, tokens, position, cache="brute", occupants=None):
    """What the model computes at `position` of a token list:
        token        the token there
        residuals    [(stage name, {slot name: value})] after the embedding and each sub-layer
                     (a reused slot is named by the value it holds at that stage: `occupants`,
                     by default slot_occupants(model))
        heads        [(layer, head, output slot names, attended positions, value)]
        top_logits   the five best (logit, token)
    Print it with format_inspection."""
    trace = forward(model, tokens[:position + 1], cache=cache)
    record = trace[position]
    occupants = occupants or slot_occupants(model)
    stages = ["embedding"] + [f"layer {l} {part}" for l in range(len(model["layers"]))
                              for part in ("attention", "ffn")]
    residuals = [(stage, {n: float(x[i]) for i, n in enumerate(names) if n})
                 for stage, x, names in zip(stages, record["residuals"], occupants)]
    heads = []
    for l, layer in enumerate(model["layers"]):
        for h in np.flatnonzero(record["active"][l]).tolist():
            w_out = layer["w_out"][:, HEAD_WIDTH * h:HEAD_WIDTH * (h + 1)]  # each column writes one slot
            outs = [occupants[1 + 2 * l][s] for s in np.abs(w_out).argmax(axis=0)[w_out.any(axis=0)]]  # `value`'s order
            attended = attended_positions(trace, position, l, h)
            heads.append((l, h, outs, attended if len(attended) <= 4 else attended[:2] + ["..."],
                          tuple(record["attn"][l, h])))
    order = np.argsort(-record["logits"])[:5]
    return {"token": tokens[position], "residuals": residuals, "heads": heads,
            "top_logits": [(float(record["logits"][i]), model["vocab"][i]) for i in order]}


def format_inspection(info):
    """A printable report of inspect(): the heads, then per stage the values it wrote."""
    lines = [f"token {info['token']!r}"]
    for l, h, outs, attended, value in info["heads"]:
        value = tuple(float(v) for v in value)
        lines.append("  layer %d head %2d -> %-36s attends %s value %s" % (l, h, ",".join(outs), attended, value))
    before = {}
    for stage, values in info["residuals"]:
        changed = {n: v for n, v in values.items() if v != before.get(n, 0.0)}
        lines.append("  %s: %s" % (stage, ", ".join("%s=%.10g" % item for item in changed.items())))
        before = values
    lines.append("  top logits %s" % [(float(l), t) for l, t in info["top_logits"]])
    return "\n".join(lines)


def first_divergence(model, instructions, input_bytes=None, cache="hull", occupants=None):
    """None when the transformer's trace equals the reference; else a dict with the
    trace index, expected and produced tokens, and inspect() at the position that
    predicted the wrong token (for debugging: print format_inspection(d["inspect"]))."""
    expected = reference.run_reference(instructions, input_bytes)
    produced = run_transformer(model, instructions, input_bytes, cache=cache, max_new_tokens=len(expected))
    if produced == expected:
        return None
    index = next((i for i, (a, b) in enumerate(zip(produced, expected)) if a != b), min(len(produced), len(expected)))
    prompt = program_prompt(model, instructions, input_bytes)
    tokens = prompt + expected
    return {"index": index, "expected": expected[index:index + 1], "produced": produced[index:index + 1],
            "inspect": inspect(model, tokens, len(prompt) + index - 1, occupants=occupants)}


if __name__ == "__main__":
    # `python wasmtf.py ...` (the README's first command) runs the command line. This is
    # the entry point, not an import cycle: run as a script, this file is the module
    # `__main__`, so `import cli` loads cli.py, which imports the module `wasmtf` (this
    # file once more, as a library, where this block does not run). The import graph of
    # the modules (wasmtf <- cli) has no edge back; tests/test_budget.py checks it and
    # reads this block as the entry point.
    import cli
    sys.exit(cli.run_as_script())
