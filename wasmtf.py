"""wasmtf: run a compiled transformer, token by token, in plain NumPy.

The model is a standard decoder (SPEC 7.1): embedding plus three positional
features, L layers of attention with 2-D heads and a ReGLU feed-forward, and
an argmax output head, all in float64, no normalisation, no biases. Its
weights are compiled, not trained (compile_weights.py); this file only runs
them. Every attention head is *hard*: it returns the value of the key with
the largest score q.k (SPEC 9), which a convex-hull cache (hull.py) answers
in O(log t) amortized per token instead of O(t).

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
    erase       optional          model.bin's informational erase lists

Costs per token: L products of sizes 6A x D, D x 2A, 2F x D, D x F, one V x D
product for the logits, and per active head one cache insert and one query
(hull: O(log T) amortized; brute: O(T); softmax: O(T), vectorised).

Contents: 1. the forward pass  2. caches and generation  3. batched form
4. model files  5. the hand-compiled demo model  6. the command line.
"""
import argparse
import math
import os
import pathlib
import shutil
import signal
import struct
import sys
import time
import zipfile
import zlib

if __name__ == "__main__":
    # One BLAS thread: the per-token products are tiny, and on this 2-core machine the
    # batched verification ran 2-4x slower with OpenBLAS's worker threads (speculative.py).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402 (after the thread setting, which numpy reads on import)

import hull  # noqa: E402
import reference  # noqa: E402

HEAD_WIDTH = 2                  # every head reads and writes 2 residual slots
INV_LN2 = 1 / math.log(2)       # inv_log_pos(p) = 1/ln 2 - 1/ln(p+2), SPEC 7.1
HARD_K = 1e10                   # query rows carry HARD_K * sqrt(2) (SPEC 7.1)
DEFAULT_MAX_NEW_TOKENS = 50_000_000  # a safety stop; the Inkala Sudoku is ~9 million tokens
PROGRESS_EVERY = 4096                 # tokens between progress reports of a long run


class ModelFileError(ValueError):
    """A model file (or model dict) that is truncated or inconsistent."""


# ---------------------------------------------------------------------------
# 1. The forward pass
# ---------------------------------------------------------------------------

def inv_log_pos(p):
    """The positional feature of slot 1: 0 at p = 0, rising towards 1/ln 2."""
    return INV_LN2 - 1 / math.log(p + 2)


def embed_position(embed, token_id, p):
    """SPEC 7.1 step 1: the token's embedding row plus the positional features."""
    x = embed[token_id].copy()  # [D]
    x[0] += p
    x[1] += inv_log_pos(p)
    x[2] += p * p
    return x  # [D]


def feed_forward(w_in, w_ffo, x):
    """ReGLU: gate = f[:F], value = f[F:], g = max(gate, 0) * value; x [D] or [T, D]."""
    n_neurons = w_in.shape[0] // 2                      # F
    f = x @ w_in.T                                      # [.., D] @ [D, 2F] -> [.., 2F]
    g = np.maximum(f[..., :n_neurons], 0.0)             # [.., F] relu(gate)
    g *= f[..., n_neurons:]                             # [.., F] times value
    return g @ w_ffo.T                                  # [.., F] @ [F, D] -> [.., D]


def head_rows(D, h):
    """Rows of w_qkv read by head h, in the order qx, qy, kx, ky, vx, vy."""
    return [block * D + HEAD_WIDTH * h + i for block in range(3) for i in range(HEAD_WIDTH)]


def active_heads(layer):
    """Heads whose output can be non-zero: value rows and output columns not all zero.

    A head with zero value rows returns 0 whatever it attends to (the average or
    the latest of zeros), so skipping it is exact. A head with a zero query but
    non-zero values is NOT skippable: it averages over every position."""
    D = layer["w_out"].shape[0]
    heads = []
    for h in range(D // HEAD_WIDTH):
        cols = slice(HEAD_WIDTH * h, HEAD_WIDTH * (h + 1))
        values = layer["w_qkv"][2 * D + HEAD_WIDTH * h:2 * D + HEAD_WIDTH * (h + 1)]  # [2, D]
        if values.any() and layer["w_out"][:, cols].any():
            heads.append(h)
    return heads


class Linear:
    """y = w @ x for a weight matrix w [N, D] and a residual x [D] (or columns
    [D, C]), reading only the non-zero columns of w.

    Dropping exact zeros changes no term of a sum, only the order in which
    BLAS adds the others (matrix-vector and matrix-matrix kernels add in
    different orders anyway). For the compiled machine that changes nothing:
    its rounded sums are read through neuron rows with exactly two non-zero
    terms, exact in any order (tests/test_summation_order.py). No fixed order
    could make every model's sums equal across kernels: that takes weights
    like the machine's."""

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
    """Precompute, per layer, the weights restricted to active heads and live neurons.

    A plan layer holds w_heads [6A, D] (rows qx qy kx ky vx vy per active head),
    w_out_heads [D, 2A], and w_in [2F', D], w_ffo [D, F'] for the F' neurons
    whose gate, value and output are all non-zero; and the same products on
    the residual slots they read or write only: qkv, ffn_in (Linear), out,
    ffn_out (Scatter), F = F'. The plan's "logits" is output_head(model).
    Dropping exact zeros does not change any result, only the (unspecified)
    summation order of BLAS (see Linear)."""
    D = model["embed"].shape[1]
    layers = []
    for layer in model["layers"]:
        heads = active_heads(layer)
        rows = [r for h in heads for r in head_rows(D, h)]
        out_cols = [HEAD_WIDTH * h + i for h in heads for i in range(HEAD_WIDTH)]
        F = layer["w_ffo"].shape[1]
        gates, values = layer["w_in"][:F], layer["w_in"][F:]  # [F, D] each
        live = gates.any(axis=1) & values.any(axis=1) & layer["w_ffo"].any(axis=0)  # [F]
        prepared = {
            "heads": heads,
            "tie_latest": [bool(layer["tie_latest"][h]) for h in heads],
            "w_heads": np.ascontiguousarray(layer["w_qkv"][rows]),          # [6A, D]
            "w_out_heads": np.ascontiguousarray(layer["w_out"][:, out_cols]),  # [D, 2A]
            "w_in": np.concatenate([gates[live], values[live]]),             # [2F', D]
            "w_ffo": np.ascontiguousarray(layer["w_ffo"][:, live]),           # [D, F']
            "F": int(live.sum()),
        }
        prepared.update(qkv=Linear(prepared["w_heads"]), out=Scatter(prepared["w_out_heads"]),
                        ffn_in=Linear(prepared["w_in"]), ffn_out=Scatter(prepared["w_ffo"]))
        layers.append(prepared)
    return {"embed": model["embed"], "head": model["head"], "layers": layers,
            "vocab": model["vocab"], "stop_ids": set(model["stop_ids"]), "logits": output_head(model)}


def step(plan, caches, token_id, p, record=None):
    """One position of SPEC 7.1: returns the final residual x [D].

    caches[l] lists (insert, query) bound methods, one pair per active head of
    layer l. With a `record` dict, the per-layer intermediates are appended to
    record["residuals"], record["qkv"] and record["attn"] (see forward).
    The products read and write only the slots their weights touch (prepare)."""
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
        n_neurons = layer["F"]
        if n_neurons:                              # feed_forward on the slots it reads and writes
            ffn_in, ffn_out = layer["ffn_in"], layer["ffn_out"]
            f = ffn_in.w.dot(x[ffn_in.columns])    # [2F', K] @ [K] -> [2F']
            g = np.maximum(f[:n_neurons], 0.0)     # [F'] relu(gate)
            g *= f[n_neurons:]                     # [F'] times value
            x[ffn_out.rows] += ffn_out.w.dot(g)    # [R, F'] @ [F'] -> [R]
        if record is not None:
            record["residuals"].append(x.copy())
    return x


def next_token(plan, x):
    """Argmax of the logits head @ x, on the slots and distinct rows of output_head;
    the lowest id on exact ties, as np.argmax over all V logits."""
    slots, rows, ids = plan["logits"]
    return int(ids[rows.dot(x[slots]).argmax()])  # [U, S] @ [S] -> [U]


# ---------------------------------------------------------------------------
# 2. Caches and generation
# ---------------------------------------------------------------------------

class AttentionTie(RuntimeError):
    """Softmax attention cannot reproduce a hard head: several entries share the best score."""


SOFTMAX_VISIBLE = 2.0 ** -52  # a softmax weight w (the best entry has weight 1) that float64
                              # can see next to the best entry: 1 + w > 1 (w >= 2^-52)


class SoftmaxHead:
    """The standard KV cache with real softmax attention, O(t) per query.

    PyTorch's MultiheadAttention convention: scores are divided by sqrt(head
    width) = sqrt(2). The compiled query rows carry HARD_K * sqrt(2), so the
    weight of an entry whose score is delta (in key units) below the best is
    exp(-HARD_K * delta): for the gap of 1 - 0.433 between an exact key and
    its neighbour, exactly 0. Softmax cannot express "latest wins": it gives an
    exact tie equal weights. So the query stops with AttentionTie, naming the
    head and position, when an entry other than the answer SPEC 9 picks keeps
    a weight float64 can see (>= SOFTMAX_VISIBLE): for a latest head any
    second entry, for an average head an entry outside the exact tie.

    When it happens (the compiled machine): a latest head's writes of one key k
    at positions p1 < p2 <= P differ by the recency term
    d = 0.3 * (inv_log_pos(p2) - inv_log_pos(p1)) >= 0.3 / ((P + 2) ln(P + 1) ln(P + 2))
    (as 1/ln(P+1) - 1/ln(P+2) = ln((P+2)/(P+1)) / (ln(P+1) ln(P+2)) and
    ln(1 + x) >= x / (1 + x)). The two softmax weights differ visibly only if
      (a) the float64 scores differ: ky = -k^2 + d and the score (two products,
          one sum) each round with relative error 2^-53 on terms of size about
          k^2 in key units, so d > 2^-50 (k^2 + 1) suffices, and
      (b) exp(-HARD_K * d) < 2^-52: d > 52 ln 2 / HARD_K = 3.6e-9.
    Both hold, so every such head is tie-free under softmax, while
      (P + 2) ln(P + 1) ln(P + 2) < 0.3 / max(2^-50 (k^2 + 1), 3.6e-9):
    keys k <= 2,000 up to P = 485,000 tokens (the softmax bound), k = 4,096 up
    to P = 142,000, k = 2^16 up to P = 1,470, k = 2^20 up to P = 25, k = 2^24
    never (a sufficient condition: beyond it ties may or may not occur). Keys written once (the
    position-keyed heads: previous tokens, fetch, immediates, byte reads) and
    the average heads (all tied keys exactly equal, the rest >= 0.567 lower)
    never tie. Memory keys are addresses up to 2^24, and no recency term can
    separate many writes there: ky = -k^2 + d has only 2^52 / k^2 float64
    values within the gap of 1 (16 at k = 2^24) for up to 2^25 positions, so
    a program that rewrites a high address stops here (use the hull cache)."""

    def __init__(self, latest=False, name="a head"):
        self.latest = latest  # softmax cannot express "latest wins": ties are detected instead
        self.name = name      # e.g. "layer 3 head 5", for the AttentionTie message
        self.n = 0
        self.keys = np.zeros((16, HEAD_WIDTH))    # [capacity, 2]
        self.values = np.zeros((16, HEAD_WIDTH))  # [capacity, 2]

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


def generate(model, prompt, cache="hull", max_new_tokens=DEFAULT_MAX_NEW_TOKENS, plan=None, progress=None,
             speculative=False, program=None):
    """Generate from prompt tokens; returns the new tokens, ending with a stop token
    unless max_new_tokens ran out first. Prompt positions compute no logits.
    progress(count, tokens), if given, is called every PROGRESS_EVERY generated tokens
    with the tokens so far (the speculative path passes the count only).
    speculative=True gives the same tokens: the reference interpreter drafts the
    trace of a program prompt, or of `program` = (instructions, input bytes) (a
    specialized prompt does not hold its program), piece by piece, and the transformer
    checks it in batched steps (speculative.py), decoding on token by token after a
    disagreement. A trace with more calls in progress than reference.MAX_CALL_DEPTH
    raises reference.CallStackExhausted."""
    if speculative:
        import speculative as speculative_decoding
        if program is None:
            draft = speculative_decoding.draft_pieces_for_prompt(prompt, max_new_tokens)  # drafted as verified
        else:
            draft = speculative_decoding.reference_draft_pieces(*program, max_tokens=max_new_tokens)
        return speculative_decoding.generate_speculative(model, prompt, draft, max_new_tokens,
                                                         plan=plan, progress=progress)
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
        for l, layer in enumerate(plan["layers"]):
            for a, h in enumerate(layer["heads"]):
                qkv[l, h] = np.reshape(record["qkv"][l][6 * a:6 * a + 6], (3, HEAD_WIDTH))
                attn[l, h] = record["attn"][l][2 * a:2 * a + 2]
                active[l, h] = True
        trace.append({"token": tokens[p], "residuals": np.array(record["residuals"]),
                      "q": qkv[:, :, 0], "k": qkv[:, :, 1], "v": qkv[:, :, 2],
                      "attn": attn, "active": active, "logits": plan["head"] @ x})
    return trace


def attended_positions(trace, p, l, h):
    """Positions j <= p whose key ties for the best score of head h, layer l at p
    (SPEC 9: each score computed as two products and one sum)."""
    qx, qy = trace[p]["q"][l, h]
    keys = np.array([trace[j]["k"][l, h] for j in range(p + 1)])  # [p+1, 2]
    if qy == 0:                                                     # SPEC 9: by extreme kx
        scores = np.sign(qx) * keys[:, 0]                           # [p+1]
    else:
        scores = qx * keys[:, 0] + qy * keys[:, 1]                  # [p+1]
    return [int(j) for j in np.flatnonzero(scores == scores.max())]


# ---------------------------------------------------------------------------
# 3. Batched form: all positions at once, for verifying whole traces
# ---------------------------------------------------------------------------

def embed_batch(model, token_ids):
    """SPEC 7.1 step 1 for positions 0..T-1 (inv_log_pos exactly as in embed_position)."""
    T = len(token_ids)
    x = model["embed"][np.asarray(token_ids, dtype=np.int64)]  # [T, D] (a copy)
    positions = np.arange(T, dtype=np.float64)                 # [T]
    x[:, 0] += positions
    x[:, 1] += [inv_log_pos(p) for p in range(T)]
    x[:, 2] += positions * positions
    return x  # [T, D]


def forward_batch(model, token_ids):
    """The whole sequence at once (teacher forcing): returns (x [T, D], logits [T, V]).

    Every head answers all T positions at once with hull.causal_hard_attention
    (SPEC 9, O(T log^2 T)). The same results as the sequential steps for weights
    whose dot products are exact in any summation order, as the compiled ones are
    (tests/test_summation_order.py). speculative.py is the bounded-memory version."""
    x = embed_batch(model, token_ids)  # [T, D]
    D = x.shape[1]
    for layer in model["layers"]:
        u = x @ layer["w_qkv"].T       # [T, D] @ [D, 3D] -> [T, 3D]
        o = np.zeros_like(x)           # [T, D]
        for h in active_heads(layer):
            q, k, v = (u[:, block * D + HEAD_WIDTH * h:block * D + HEAD_WIDTH * (h + 1)]
                       for block in range(3))  # [T, 2] each
            o[:, HEAD_WIDTH * h:HEAD_WIDTH * (h + 1)] = hull.causal_hard_attention(
                k, v, q, bool(layer["tie_latest"][h]))  # [T, 2]
        x = x + o @ layer["w_out"].T   # [T, D] @ [D, D] -> [T, D]
        x = x + feed_forward(layer["w_in"], layer["w_ffo"], x)  # [T, D]
    return x, x @ model["head"].T      # [T, D], [T, D] @ [D, V] -> [T, V]


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
        arrays[f"attn.{l}.in_proj_weight"] = layer["w_qkv"]     # [3D, D]
        arrays[f"attn.{l}.out_proj.weight"] = layer["w_out"]    # [D, D]
        arrays[f"ff_in.{l}.weight"] = layer["w_in"]             # [2F, D]
        arrays[f"ff_out.{l}.weight"] = layer["w_ffo"]           # [D, F]
    if model.get("erase"):  # informational erase lists: counts [L, 2] and the slots in order
        arrays["erase_counts"] = np.array([[len(s) for s in halves] for halves in model["erase"]])
        arrays["erase_slots"] = np.array([s for halves in model["erase"] for h in halves for s in h], dtype=np.int64)
    return arrays


def model_from_npz(arrays, name):
    """Inverse of npz_arrays; missing arrays are all named at once, and an array
    of the wrong number of dimensions is named before any shape is read from it."""
    L = sum(1 for key in arrays if key.startswith("attn.") and key.endswith(".in_proj_weight"))
    needed = ["tok.weight", "head.weight", "vocab", "stop_tokens", "tie_latest"] + [
        f"{prefix}.{l}.{suffix}" for l in range(L) for prefix, suffix in
        (("attn", "in_proj_weight"), ("attn", "out_proj.weight"), ("ff_in", "weight"), ("ff_out", "weight"))]
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
    D = arrays["tok.weight"].shape[-1]
    tie_latest = arrays["tie_latest"]
    if tie_latest.shape != (L, D // HEAD_WIDTH):
        raise ModelFileError(f"{name}: tie_latest has shape {tie_latest.shape}, not [L={L}, H={D // 2}]")
    model = {"vocab": vocab, "embed": arrays["tok.weight"], "head": arrays["head.weight"],
             "stop_ids": [vocab.index(str(t)) for t in arrays["stop_tokens"]],
             "slot_names": [str(s) for s in arrays.get("slot_names", [""] * D)],
             "layers": [{"w_qkv": arrays[f"attn.{l}.in_proj_weight"],
                         "w_out": arrays[f"attn.{l}.out_proj.weight"],
                         "w_in": arrays[f"ff_in.{l}.weight"], "w_ffo": arrays[f"ff_out.{l}.weight"],
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
    """A 1-layer model, built by hand, whose next token is the previous token + 1.

    Vocabulary: the digits 0..9, `halt` (digit "10"), `{` (position 0).
    Slots: position, inv_log_pos, position_sq (SPEC 7.1), one, code (the
    digit), prev_code, next_code. From prompt `{ 3 5` it writes two
    interleaved counts: 4 6 5 7 6 8 7 9 8 halt.
      attention, head 0 (tie mode latest): key (2j, -j^2) at position j, query
        (p - 1, 1) at p, so score = 2(p-1)j - j^2 = (p-1)^2 - (j - (p-1))^2 is
        largest at j = p - 1 (gap >= 1); value (code, 0) -> prev_code.
        The query carries HARD_K * sqrt(2) like compiled weights (SPEC 7.1).
      feed-forward: one neuron, gate `one`, value prev_code + one -> next_code.
      head: logit of digit c = 2 c next_code - c^2 (largest at c = next_code).
    """
    vocab = sorted([str(d) for d in range(10)] + ["halt", "{"])
    code = {**{str(d): d for d in range(10)}, "halt": 10}
    slots = ["position", "inv_log_pos", "position_sq", "one", "code", "prev_code", "next_code", ""]
    POS, POS_SQ, ONE, CODE, PREV, NEXT = (slots.index(n) for n in
                                          ("position", "position_sq", "one", "code", "prev_code", "next_code"))
    V, D, F = len(vocab), len(slots), 1
    query_scale = HARD_K * math.sqrt(HEAD_WIDTH)
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
# 6. The command line: a table of subcommands, each a small function
# ---------------------------------------------------------------------------

DEMO_PROGRAM = "examples/add.wasm"   # 3 + 5, compiled from examples/add.c
CACHES = ("hull", "brute", "softmax")


PROGRESS_LINE_SECONDS = 10  # stderr not a terminal (CI, a pipe): one progress line this often
# The live line on a terminal (VT100 escapes): at the start of an empty line it is
# drawn after "\r" and erased with "\r" + erase-to-end-of-line; after output that
# does not end its line, the cursor is saved, the line drawn after the output, and
# erased by restoring the cursor (the output stays where it was); it is cut to the
# terminal's width, since a wrapped line could scroll the screen under the saved cursor.
ERASE_TO_END, SAVE_CURSOR, RESTORE_CURSOR = "\033[K", "\0337", "\0338"


class Progress:
    """Tokens, tokens/s, elapsed time and the token limit on stderr: a live line
    when stderr is a terminal, else one line every PROGRESS_LINE_SECONDS; always
    a final summary line. With stream_output, the program's output (its out(...)
    tokens) goes to stdout as the tokens arrive, the live line cleared first."""

    def __init__(self, what="tokens", limit=None, stream_output=False):
        self.what = what
        self.limit = limit
        self.start = time.perf_counter()
        self.live = sys.stderr.isatty()
        self.next_line = self.start + PROGRESS_LINE_SECONDS
        self.erase = None                # how to erase the live line on the terminal, None if none is shown
        self.stream_output = stream_output
        self.streamed = 0                # tokens whose output was written
        self.output_ends_line = True     # the output so far ends with a newline (or there is none)
        self.column = 0                  # output bytes after its last newline (where the cursor is)

    def status(self, count):
        elapsed = time.perf_counter() - self.start
        limit = f" (limit {self.limit:,})" if self.limit else ""
        return f"{count:,} {self.what}, {count / max(elapsed, 1e-9):,.0f} {self.what}/s, {elapsed:.1f} s{limit}"

    def clear(self):
        """Erase the live line, if one is shown, so that output continues where it was."""
        if self.erase is not None:
            print(self.erase, end="", file=sys.stderr, flush=True)
            self.erase = None

    def write_output(self, tokens):
        """Write the output bytes of `tokens` (a continuation of the trace) to stdout."""
        data = reference.output_bytes(tokens)
        if data:
            self.clear()
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            self.output_ends_line = data.endswith(b"\n")
            self.column = len(data) - 1 - data.rindex(b"\n") if b"\n" in data else self.column + len(data)

    def __call__(self, count, tokens=None):
        if self.stream_output and tokens is not None:
            self.write_output(tokens[self.streamed:count])
            self.streamed = count
        if self.live:
            self.clear()
            column = 0 if self.output_ends_line else self.column
            text = f"  {self.status(count)}"[:max(shutil.get_terminal_size().columns - 1 - column, 0)]
            if self.output_ends_line:
                start, self.erase = "\r", "\r" + ERASE_TO_END
            else:
                start, self.erase = SAVE_CURSOR, RESTORE_CURSOR + ERASE_TO_END
            print(start + text, end="", file=sys.stderr, flush=True)
        elif time.perf_counter() >= self.next_line:
            print(f"wasmtf: {self.status(count)}", file=sys.stderr, flush=True)
            self.next_line = time.perf_counter() + PROGRESS_LINE_SECONDS

    def finish(self, count):
        self.clear()
        if self.live and not self.output_ends_line:  # the summary starts its own line on the terminal
            print(file=sys.stderr)
        elapsed = time.perf_counter() - self.start
        print(f"wasmtf: {count:,} {self.what} in {elapsed:.2f} s ({count / max(elapsed, 1e-9):,.0f} {self.what}/s)",
              file=sys.stderr)


def load_program(path, input_text=None):
    """A program file (.txt), WebAssembly (.wasm, .wat) or C (.c): (instructions, input bytes)."""
    import frontend
    return frontend.load_program_file(path, input_text)


def load_machine(path=None):
    """The compiled WebAssembly machine, or the weights in `path` (.npz or model.bin).
    Compiling takes well under a second, so nothing is cached on disk."""
    if path is not None:
        return load(path)
    import compile_weights
    return compile_weights.compile_machine()


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
                progress=None, speculative=False, plan=None):
    """Run a flat program inside the transformer: (prompt tokens, trace tokens)."""
    prompt = program_prompt(model, instructions, input_bytes)
    trace = generate(model, prompt, cache=cache, max_new_tokens=max_new_tokens, plan=plan, progress=progress,
                     speculative=speculative, program=(instructions, input_bytes))
    return prompt, trace


def check_before_running(instructions, input_bytes, max_tokens):
    """Raise reference.ExecutionError if the reference interpreter rejects the run
    (a stack underflow, e.g. `drop` on an empty stack; running past the last
    instruction), as the `reference` command would, before the transformer
    generates anything. The check runs as many steps as `reference` does (its
    step limit) or as the token limit allows (each step writes >= 1 token),
    whichever is fewer; it keeps no trace, and the reference runs some hundred
    times faster than the transformer."""
    steps = min(max_tokens, reference.DEFAULT_MAX_STEPS)
    try:
        machine = reference.execute(instructions, input_bytes, max_steps=steps, keep_trace=False)
    except reference.StepLimitExceeded:
        return  # nothing wrong within the token limit; the run will stop at it
    if machine.status == "end":
        raise reference.ExecutionError(reference.stop_problem("end", machine.pc))


def report_end(trace, instructions=None):
    """Exit code of a finished run: 0 after `halt`; 1, with one line on stderr, otherwise.
    A trap is reported with the instruction the trace says it ran last."""
    if trace and trace[-1] == "halt":
        return 0
    if trace and trace[-1] == "trap" and instructions is not None:
        for last in reference.walk_trace(instructions, trace):  # keeps only the last record
            pass
        print(f"wasmtf: {reference.stop_problem('trap', last['pc'])}", file=sys.stderr)
    elif trace and trace[-1] == "trap":
        print("wasmtf: the program trapped", file=sys.stderr)
    else:
        print(f"wasmtf: no stop token within {len(trace):,} tokens", file=sys.stderr)
    return 1


def cmd_demo(args):
    """run the built-in demo: 3 + 5, compiled from C, inside the transformer"""
    here = pathlib.Path(__file__).resolve().parent
    print(f"wasmtf demo: {DEMO_PROGRAM} (from examples/add.c) runs inside the compiled transformer.\n")
    print((here / "examples" / "add.c").read_text())
    instructions, input_bytes = load_program(here / DEMO_PROGRAM)
    print(f"The flat program: {len(instructions)} instructions (SPEC 3.1)")
    for index, (opcode, immediate) in enumerate(instructions):
        print(f"  {index:4d}  {opcode} {reference.to_signed(immediate)}")
    progress = Progress(limit=DEFAULT_MAX_NEW_TOKENS)
    prompt, trace = run_program(load_machine(), instructions, input_bytes, progress=progress)
    progress.clear()
    print(f"\nThe trace the transformer wrote after its {len(prompt)}-token prompt, one group per instruction:")
    print(reference.describe_trace(instructions, trace))
    progress.finish(len(trace))
    matches = trace == reference.run_reference(instructions, input_bytes)
    print("\noutput:", reference.output_bytes(trace).decode("utf-8", "replace"), end="")
    print("ok: the trace equals the reference interpreter's, token for token" if matches
          else "FAILED: the trace differs from the reference interpreter's")
    return report_end(trace, instructions) if matches else 1


def positive_int(text):
    """An argparse type: a whole number >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def file_name(text):
    """An argparse type: a non-empty file name."""
    if not text:
        raise argparse.ArgumentTypeError("an empty file name")
    return text


def max_tokens_argument(parser):
    parser.add_argument("--max-tokens", type=positive_int, default=DEFAULT_MAX_NEW_TOKENS, metavar="N",
                        help=f"stop after N generated tokens (default {DEFAULT_MAX_NEW_TOKENS:,}; "
                             "a long run reports its progress on stderr)")


def run_arguments(parser):
    parser.add_argument("file", help="program: .c (needs ziglang), .wasm, .wat or a program .txt")
    parser.add_argument("--input", help="input string (replaces the file's input section)")
    parser.add_argument("--cache", choices=CACHES, help="attention cache (default hull; not with --speculative)")
    parser.add_argument("--model", type=file_name,
                        help="weights to run (.npz or model.bin; default: the compiled machine)")
    parser.add_argument("--trace", action="store_true", help="print the instruction-level trace")
    parser.add_argument("--tokens", action="store_true",
                        help="print prompt and trace tokens in the *_ref.txt layout (compare with `reference`)")
    max_tokens_argument(parser)
    parser.add_argument("--speculative", action="store_true",
                        help="draft with the reference interpreter, verify in batched steps (same trace)")


def cmd_run(args):
    """run a program inside the transformer and print its output (as it is written)"""
    if args.speculative and args.cache is not None:
        raise ValueError("--cache has no effect with --speculative (the draft is verified with exact "
                         "hard attention over all positions at once): give one or the other")
    instructions, input_bytes = load_program(args.file, args.input)
    model = load_machine(args.model)
    check_before_running(instructions, input_bytes, args.max_tokens)
    streaming = not (args.tokens or args.trace)
    progress = Progress(limit=args.max_tokens, stream_output=streaming)
    prompt, trace = run_program(model, instructions, input_bytes, args.cache or "hull",
                                args.max_tokens, progress, args.speculative)
    progress.clear()
    if args.tokens:
        sys.stdout.write(reference.format_trace_file(prompt, trace))
    elif args.trace:
        print(reference.describe_trace(instructions, trace))
    else:
        progress.write_output(trace[progress.streamed:])
    sys.stdout.flush()
    progress.finish(len(trace))
    return report_end(trace, instructions)


def program_arguments(parser):
    parser.add_argument("file", help="program: .c (needs ziglang), .wasm, .wat or a program .txt")
    parser.add_argument("--input", help="input string (replaces the file's input section)")


def reference_arguments(parser):
    program_arguments(parser)
    parser.add_argument("--specialized", action="store_true",
                        help="with the specialized prompt, `start` + input (SPEC 2.2; the same trace)")


def cmd_reference(args):
    """print the prompt and the reference interpreter's trace (the *_ref.txt layout)"""
    instructions, input_bytes = load_program(args.file, args.input)
    return reference.print_reference(instructions, input_bytes, specialized=args.specialized)


def compile_arguments(parser):
    program_arguments(parser)
    parser.add_argument("-o", "--output", help="program file to write (default: stdout)")


def cmd_compile(args):
    """compile C or WebAssembly to a program file"""
    instructions, input_bytes = load_program(args.file, args.input)
    text = reference.format_program(instructions, input_bytes)
    if args.output is None:
        sys.stdout.write(text)
    else:
        pathlib.Path(args.output).write_text(text)
        print(f"wrote {args.output}: {len(instructions)} instructions", file=sys.stderr)
    return 0


def cmd_weights(args):
    """compile the machine and save its weights (.npz, or model.bin for transformer-vm runners)"""
    import compile_weights
    model = load_machine()
    save(model, args.output)
    print(f"wrote {args.output}: {compile_weights.describe_shape(model)}")
    return 0


def specialize_arguments(parser):
    program_arguments(parser)
    parser.add_argument("-o", "--output", required=True, help="prog.npz or prog.bin")


PROMPT_SHOWN = 12  # tokens of the specialized prompt that `specialize` prints


def cmd_specialize(args):
    """bake a program into the weights: a model whose prompt is `start` + input (SPEC 2.2)"""
    import compile_weights
    instructions, input_bytes = load_program(args.file, args.input)
    start = time.perf_counter()
    model = compile_weights.specialize(instructions)
    save(model, args.output)
    print(f"wasmtf: specialized and saved in {time.perf_counter() - start:.2f} s", file=sys.stderr)
    prompt = reference.specialized_prompt(instructions, input_bytes)
    shown = " ".join(prompt[:PROMPT_SHOWN]) + (" ..." if len(prompt) > PROMPT_SHOWN else "")
    print(f"wrote {args.output}: {len(instructions)} instructions in the weights, program sha256 "
          f"{reference.program_hash(instructions)}; {compile_weights.describe_shape(model)}")
    print(f"prompt: {shown}  (run it: wasmtf.py run {args.file} --model {args.output})")
    return 0


def crosscheck_arguments(parser):
    parser.add_argument("model", help="weights to check (.npz or transformer-vm model.bin)")
    program_arguments(parser)
    parser.add_argument("--against", type=file_name,
                        help="expected trace file of this program (*_ref.txt layout; default: the reference)")
    parser.add_argument("--cache", choices=CACHES, default="hull")
    parser.add_argument("--dump-activations", metavar="OUT.npz",
                        help="save every layer's residual stream for the prompt and trace")


def cmd_crosscheck(args):
    """run weights on a program and compare with the reference trace, token for token"""
    model = load(args.model)
    instructions, input_bytes = load_program(args.file, args.input)
    prompt = program_prompt(model, instructions, input_bytes)
    if args.against:
        prompt, expected = expected_trace(args.against, instructions, input_bytes, prompt, args.file)
    else:
        expected = reference.execute(instructions, input_bytes).trace
    progress = Progress(limit=len(expected))
    actual = generate(model, prompt, cache=args.cache, max_new_tokens=len(expected), progress=progress)
    progress.finish(len(actual))
    if args.dump_activations:
        dump_activations(model, prompt + expected, args.dump_activations)
    if actual == expected:
        print(f"ok: {len(expected):,} trace tokens equal")
        return 0
    import compile_weights
    print(reference.diff_traces(expected, actual, instructions))
    first = next(i for i, (a, b) in enumerate(zip(expected + [None], actual + [None])) if a != b)
    tokens = prompt + actual[:first]
    info = compile_weights.inspect(model, tokens, len(tokens) - 1, cache=args.cache)
    (best, best_token), (runner_up, runner_up_token) = info["top_logits"][:2]
    print(f"the model predicted {best_token!r} (runner-up {runner_up_token!r}, logit margin {best - runner_up:.6g})"
          f" after position {len(tokens) - 1}; what it computed there:")
    print(compile_weights.format_inspection(info))
    return 1


def expected_trace(path, instructions, input_bytes, prompt, program_path):
    """(prompt, trace tokens) of the trace file `path`, which must be a trace of this
    program and input with at least one token after its prompt. A trace whose prompt
    has no input section (transformer-vm's, for the empty input) gives that prompt."""
    try:
        traced_instructions, traced_input, expected = reference.parse_trace_file(reference.read_text(path))
    except reference.ProgramError as error:
        raise reference.ProgramError(f"--against {path}: not a trace file ({error})") from None
    if traced_instructions != instructions:
        raise ValueError(f"{path} is the trace of another program than {program_path}")
    if traced_input is None and reference.has_input_section(instructions) and not input_bytes:
        prompt = prompt[:prompt.index(reference.PROGRAM_END) + 1]   # transformer-vm's: no input section
    elif traced_input is None and input_bytes:
        raise ValueError(f"{path}: its prompt has no input section, but the input is {input_bytes!r}")
    elif (traced_input or b"") != (input_bytes or b""):
        raise ValueError(f"{path}: its input is {traced_input!r}, not {input_bytes or b''!r}")
    if not expected:
        raise ValueError(f"--against {path}: a program file, not a trace (no tokens after the prompt)")
    return prompt, expected


def dump_activations(model, tokens, path):
    """Save per-layer residuals [T, 2L+1, D] (after the embedding, then each
    attention and feed-forward half), head results [T, L, H, 2], logits [T, V]
    and the slot names, so that a port can compare layer by layer."""
    record = forward(model, tokens)
    np.savez(path, tokens=np.array(tokens), slot_names=np.array(model.get("slot_names", [])),
             residuals=np.array([r["residuals"] for r in record]),   # [T, 2L+1, D]
             attention=np.array([r["attn"] for r in record]),        # [T, L, H, 2]
             logits=np.array([r["logits"] for r in record]))         # [T, V]


def spectest_arguments(parser):
    parser.add_argument("files", nargs="+", help="WebAssembly spec-test scripts (.wast)")
    parser.add_argument("--transformer", action="store_true", help="run the cases inside the transformer")


def cmd_spectest(args):
    """run WebAssembly spec tests (assert_return / assert_trap) on the reference or the transformer"""
    import spectest
    return spectest.command_spectest(args.files, transformer=args.transformer)


def profile_arguments(parser):
    program_arguments(parser)
    parser.add_argument("--rows", type=positive_int, default=12, help="rows per table (default 12)")


def cmd_profile(args):
    """which instructions and source functions a run's trace tokens go to (on the reference interpreter)"""
    import profiling
    return profiling.command_profile(args.file, args.input, args.rows)


def generate_arguments(parser):
    parser.add_argument("model", help="model file (.bin or .npz)")
    parser.add_argument("tokens", nargs="*", help="prompt tokens (or use --prompt-file)")
    parser.add_argument("--prompt-file", type=file_name, help="file of whitespace-separated prompt tokens")
    parser.add_argument("--cache", choices=CACHES, default="hull")
    max_tokens_argument(parser)
    parser.add_argument("--max-new-tokens", type=positive_int, dest="max_tokens",
                        help=argparse.SUPPRESS)  # the old name of --max-tokens


def cmd_generate(args):
    """generate tokens from a prompt until a stop token"""
    model = load(args.model)
    prompt = list(args.tokens)
    if args.prompt_file:
        prompt += reference.read_text(args.prompt_file).split()
    progress = Progress(limit=args.max_tokens)
    generated = generate(model, prompt, cache=args.cache, max_new_tokens=args.max_tokens, progress=progress)
    progress.clear()
    print(" ".join(generated))
    stopped = bool(generated) and generated[-1] in [model["vocab"][i] for i in model["stop_ids"]]
    if not stopped:
        print(f"wasmtf: no stop token within {args.max_tokens:,} new tokens", file=sys.stderr)
    return 0 if stopped else 1


def convert_arguments(parser):
    parser.add_argument("source", help="model file to read (.bin or .npz)")
    parser.add_argument("target", help="model file to write (.bin or .npz)")


def cmd_convert(args):
    """convert a model file between model.bin and .npz"""
    import compile_weights
    model = load(args.source)
    save(model, args.target)
    print(f"wrote {args.target}: {compile_weights.describe_shape(model)}")
    return 0


def cmd_info(args):
    """print a model file's sizes, active heads and stop tokens"""
    model = load(args.model)
    V, D = model["embed"].shape
    layers = model["layers"]
    F = layers[0]["w_ffo"].shape[1] if layers else 0
    print(f"V={V} D={D} L={len(layers)} H={D // 2} F={F}")
    for l, layer in enumerate(layers):
        heads = active_heads(layer)
        latest = sum(bool(layer["tie_latest"][h]) for h in heads)
        print(f"layer {l}: {len(heads)} active heads ({latest} latest), "
              f"{int(layer['w_ffo'].any(axis=0).sum())} live neurons")
    print("stop tokens:", " ".join(model["vocab"][i] for i in model["stop_ids"]))
    if model.get("trailer_bytes"):
        print(f"trailer: {model['trailer_bytes']:,} bytes after the model.bin fields (ignored)")
    baked = baked_program_hash(model)
    print(f"specialized: the program with sha256 {baked} is in the weights; prompt `start` + input (SPEC 2.2)"
          if baked else "universal: the prompt holds the program (SPEC 2.1)")
    return 0


COMMANDS = [
    # (name, add the sub-parser's arguments, run(args) -> exit code; its docstring is the help)
    ("demo", lambda parser: None, cmd_demo),
    ("run", run_arguments, cmd_run),
    ("reference", reference_arguments, cmd_reference),
    ("compile", compile_arguments, cmd_compile),
    ("weights", lambda parser: parser.add_argument("-o", "--output", default="weights.npz",
                                                   help="weights.npz or model.bin"), cmd_weights),
    ("specialize", specialize_arguments, cmd_specialize),
    ("crosscheck", crosscheck_arguments, cmd_crosscheck),
    ("spectest", spectest_arguments, cmd_spectest),
    ("profile", profile_arguments, cmd_profile),
    ("generate", generate_arguments, cmd_generate),
    ("convert", convert_arguments, cmd_convert),
    ("info", lambda parser: parser.add_argument("model", help="model file (.bin or .npz)"), cmd_info),
]


def main(argv=None):
    """Exit codes: 0 success, 1 failed run, 2 bad usage or bad input."""
    parser = argparse.ArgumentParser(prog="wasmtf.py", description=__doc__.splitlines()[0])
    parser.set_defaults(run=cmd_demo)
    subparsers = parser.add_subparsers(title="commands")
    for name, add_arguments, run in COMMANDS:
        subparser = subparsers.add_parser(name, help=run.__doc__, description=run.__doc__)
        add_arguments(subparser)
        subparser.set_defaults(run=run)
    args = parser.parse_args(argv)  # bad usage: argparse prints it and exits with 2
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader of stdout stopped (`... | head`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush at exit
        return 1
    except (ValueError, OSError) as error:  # bad files, programs, modules, tokens
        print_error(error)
        return 2
    except (reference.StepLimitExceeded, reference.ExecutionError, AttentionTie) as error:  # a failed run
        print_error(error)
        return 1


def print_error(error):
    """`wasmtf: error: ` and the message's first line, which tells the whole story;
    any further lines (every unsupported instruction, a compiler's messages) follow indented."""
    first, *details = str(error).splitlines() or [""]
    print(f"wasmtf: error: {first}", file=sys.stderr)
    for line in details:
        print(line if line[:1].isspace() else "  " + line, file=sys.stderr)


if __name__ == "__main__":
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # a closed pipe ends the process quietly
    sys.exit(main())
