"""Compile a graph into transformer weights; the WebAssembly machine as a graph.

Entry points: compile_machine() -> the universal machine's model dict (wasmtf.py's
docstring); specialize(instructions) -> the model dict with that program in its weights;
graph.evaluate(compile_weights.build_machine(), prompt) -> its trace tokens, exactly.
Running and inspecting a model live with the forward pass (wasmtf); the model carries
"slot_occupants" for wasmtf.inspect.

Sections: 1. the scheduler and weight emitter 2. the machine as named stages (every
opcode of SPEC 3.1 and 12, `trap`, SPEC 4.8) 3. compile_machine 4. specialize.

Exactness: graph.py's model; each gating constant below is chosen per use to keep it.
Costs: building and emitting the machine is linear in its nodes and neurons (dense
matrices of a few hundred x D; benchmarks/machine_speed.py measures it).
"""
import math
import functools
from fractions import Fraction

import numpy as np

import hull
import reference
from graph import (Graph, Lin, ONE, POSITION, POSITION_SQ, POSITIONAL, ROUNDED_SUFFIX, exact_sum, gated_step_terms,
                   gated_terms, scaled, step_terms)

# ---------------------------------------------------------------------------
# 1. The scheduler and the weight emitter
# ---------------------------------------------------------------------------

# Stages: the attention of layer l is stage 2l, its feed-forward 2l+1; inputs are
# ready at stage -1. A lookup of layer l reads values ready at stage <= 2l-1, a
# feed-forward node of layer l values ready at <= 2l. Greedy ASAP placement: each
# node goes to the earliest layer its inputs allow (creation order is topological),
# which also minimises the layer count (the critical path).

# A latest-write lookup (graph.Graph.lookup) becomes a head with the 2-D query
# (q, 1) * QUERY_SCALE and the key (2k, -k^2 - CLEAR_BIG*clear + LATEST_ALPHA*ilp),
# ilp = inv_log_pos: score/QUERY_SCALE = q^2 - (q-k)^2 - CLEAR_BIG*clear + 0.3*ilp. For
# integer keys the exact key beats every other by >= 1 - 0.433 > 0 and, among equal keys,
# the larger inv_log_pos (the later position) wins; exact float ties go to the latest
# entry (SPEC 9).
QUERY_SCALE = hull.HARD_K * math.sqrt(2)  # SPEC 7.1: a score gap of 1 becomes 1.4e10
LATEST_ALPHA = 0.3      # recency term 0.3*inv_log_pos < 0.3/ln2 = 0.433 < 1 = the gap
                        # between an exact key and its neighbour (q^2-(q-k)^2 <= q^2-1)
CLEAR_BIG = 1e30        # a cleared key sits 1e30 below any real key (real |k^2| < 2^52)
POSITION_ZERO_TOKENS = (reference.PROGRAM_START, reference.START)  # `{` (universal), `start` (specialized)


def schedule(graph):
    """Returns ({node name: stage}, [layer of each node])."""
    ready = {name: -1 for name in list(POSITIONAL) + list(graph.features)}
    layers = []
    for node in graph.nodes:
        last = max([ready[k] for lin in _node_lins(node) for k in lin.terms] + [-1])
        if node["kind"] == "lookup":
            layer = max(0, -(-(last + 1) // 2))
            for name in node["names"]:
                ready[name] = 2 * layer
        else:
            layer = max(0, -(-last // 2))
            ready[node["name"]] = 2 * layer + 1
        layers.append(layer)
    return ready, layers


def _row(lin, slot, D, scale=1.0):
    """One weight row [D] for a linear expression, checked to be exact in any
    summation order where it reads a rounded sum (see exact_parts)."""
    rounded = [name for name in lin.terms if name.endswith(ROUNDED_SUFFIX)]
    others = set(lin.terms) - set(rounded) - {"one"}
    for name in rounded:
        coefficient = lin.terms[name] * scale
        assert abs(coefficient) == 1 or not others, \
            "row %s reads %s with coefficient %r beside other terms: split it (exact_parts)" % (
                sorted(lin.terms), name, coefficient)
    row = np.zeros(D)  # [D]
    for name, c in lin.terms.items():
        row[slot[name]] += c * scale
    return row


def _node_lins(node):
    """Every linear expression a node reads."""
    if node["kind"] == "ffn":
        return [lin for _, a, b in node["terms"] for lin in (a, b)]
    return [node["query"], node["key"], node["key_sq"]] + node["values"] + (
        [node["clear"]] if node["clear"] is not None else [])


# The machine state of SPEC 4.2 (pc, stack depth, call depth): each keeps a slot of its
# own to the end of the residual stream, readable there by name (notebooks, tools).
READABLE_STATE = ("cursor", "stack_depth", "call_depth")


def slot_plan(graph):
    """Residual slots by liveness: ({name: slot}, [[names held by slot s, in order]],
    {FFN layer: [names it clears]}).

    A value written at stage w and last read at stage r (a lookup of layer l reads at
    stage 2l, a feed-forward node at 2l+1; the output head reads after the last stage)
    leaves its slot free for a value written at a stage > c, c = r or r + 1 (the first
    feed-forward stage >= r: it reads the value before it writes). When the slot is
    taken, one neuron -relu(one) * value in the feed-forward at stage c clears it; the
    clear is exact: the slot receives -v for its own v (a single neuron's output), so
    it holds exactly 0. A slot never taken again is not cleared.
    The positional slots 0-3 are never reused (the forward pass writes them), nor
    are the READABLE_STATE values' slots."""
    ready, node_layers = schedule(graph)
    last_read = {}
    for node, layer in zip(graph.nodes, node_layers):
        stage = 2 * layer + (1 if node["kind"] == "ffn" else 0)
        for lin in _node_lins(node):
            for name in lin.terms:
                last_read[name] = max(last_read.get(name, -1), stage)
    end = 2 * (max(node_layers) + 1)
    for lin in graph.outputs.values():
        for name in lin.terms:
            last_read[name] = end
    names = list(graph.features) + [n for node in graph.nodes
                                    for n in (node["names"] if node["kind"] == "lookup" else [node["name"]])]
    slot = {name: i for i, name in enumerate(POSITIONAL)}
    held = [[name] for name in POSITIONAL]
    free = []            # (stage of the clear, slot, the value to clear)
    clears = {}
    for name in sorted(names, key=lambda n: ready[n]):  # stable: creation order within a stage
        written = ready[name]
        choice = None if name in READABLE_STATE else next((entry for entry in free if entry[0] < written), None)
        if choice is None:
            slot[name] = len(held)
            held.append([name])
        else:
            free.remove(choice)
            clear_stage, slot[name], before = choice
            clears.setdefault((clear_stage - 1) // 2, []).append(before)
            held[slot[name]].append(name)
        read = max(last_read.get(name, written), written)
        if read < end and name not in READABLE_STATE:
            clear_stage = read if read % 2 else read + 1
            if clear_stage == written:  # an unread feed-forward value: clear it one layer later
                clear_stage += 2
            free.append((clear_stage, slot[name], name))
    return slot, held, clears


def slot_occupants(graph, held, clears, D):
    """[2L+1][D]: the name each slot holds after the embedding and after each sub-layer
    (the last one written there and not yet cleared; '' for none): a reused slot
    (slot_plan) holds its names one after another. wasmtf.inspect names values by it."""
    ready, node_layers = schedule(graph)
    cleared_at = {name: 2 * layer + 1 for layer, names in clears.items() for name in names}

    def holds(name, stage):  # written by this stage and not yet cleared
        return name in POSITIONAL or ready[name] <= stage < cleared_at.get(name, stage + 1)
    return [[([n for n in held[s] if holds(n, stage)] or [""])[-1] if s < len(held) else "" for s in range(D)]
            for stage in range(-1, 2 * (max(node_layers) + 1))]


def emit(graph):
    """The model dict of wasmtf.py (see its module docstring) for a graph, with
    "slot_occupants" (see slot_occupants) for wasmtf.inspect."""
    _, node_layers = schedule(graph)
    L = max(node_layers) + 1
    slot, held, clears = slot_plan(graph)
    slot_names = ["|".join(names) for names in held]
    heads_per_layer = [sum(1 for n, l in zip(graph.nodes, node_layers) if n["kind"] == "lookup" and l == layer)
                       for layer in range(L)]
    D = max(len(slot_names), 2 * max(heads_per_layer))
    D += D % 2
    slot_names += [""] * (D - len(slot_names))

    vocab = sorted(graph.outputs)  # ids in Unicode code-point order (SPEC 1.2)
    V = len(vocab)
    embed = np.zeros((V, D))  # [V, D]
    for t, token in enumerate(vocab):
        for name, f in graph.features.items():
            if token not in POSITION_ZERO_TOKENS or name in graph.position_zero_features:
                embed[t, slot[name]] = f(token)
        if token not in POSITION_ZERO_TOKENS:  # the position-0 tokens: `one` = 0 (SPEC 1.3)
            embed[t, slot["one"]] = 1.0

    layers = []
    for layer in range(L):
        nodes = [n for n, l in zip(graph.nodes, node_layers) if l == layer]
        w_qkv = np.zeros((3 * D, D))  # [3D, D]
        w_out = np.zeros((D, D))      # [D, D]
        tie_latest = np.zeros(D // 2, dtype=bool)  # [H]
        for h, n in enumerate(n for n in nodes if n["kind"] == "lookup"):  # an average's query, key: 0
            tie_latest[h] = n["mode"] == "latest"
            ky = ONE if n["mode"] == "average" else (-n["key_sq"] + LATEST_ALPHA * Lin({"inv_log_pos": 1})
                                                     - CLEAR_BIG * (n["clear"] or Lin()))
            w_qkv[[2 * h, 2 * h + 1, D + 2 * h, D + 2 * h + 1]] = [  # qx, qy, kx, ky
                _row(n["query"], slot, D, QUERY_SCALE), _row(ONE, slot, D, QUERY_SCALE),
                _row(n["key"], slot, D, 2.0), _row(ky, slot, D)]
            for i, (value, name) in enumerate(zip(n["values"], n["names"])):
                w_qkv[2 * D + 2 * h + i] = _row(value, slot, D)
                w_out[slot[name], 2 * h + i] = 1.0
        neurons = {}  # (gate key, value key) -> index; equal neurons are shared
        gates, values, outputs = [], [], []
        clearing = [{"kind": "ffn", "name": name, "terms": [(-1, Lin({name: 1}), ONE)]}
                    for name in clears.get(layer, [])]
        for n in [n for n in nodes if n["kind"] == "ffn"] + clearing:
            for c, a, b in n["terms"]:
                k = (b.key(), a.key())
                if k not in neurons:
                    neurons[k] = len(gates)
                    gates.append(_row(b, slot, D))
                    values.append(_row(a, slot, D))
                outputs.append((slot[n["name"]], neurons[k], c))
        F = len(gates)
        w_in = np.array(gates + values) if F else np.zeros((0, D))  # [2F, D]
        w_ffo = np.zeros((D, F))                                   # [D, F]
        for s, j, c in outputs:
            w_ffo[s, j] += c
        layers.append({"w_qkv": w_qkv, "w_out": w_out, "w_in": w_in, "w_ffo": w_ffo, "tie_latest": tie_latest})

    head = np.array([_row(graph.outputs[token], slot, D) for token in vocab])  # [V, D]
    return {"vocab": vocab, "embed": embed, "layers": layers, "head": head,
            "stop_ids": [vocab.index(t) for t in reference.STOP_TOKENS], "slot_names": slot_names,
            "slot_occupants": slot_occupants(graph, held, clears, D)}


def describe_shape(model):
    """d_model, layers, heads used per layer, d_ffn per layer, parameters."""
    D = model["embed"].shape[1]
    heads = [int(np.any(l["w_out"].reshape(D, D // 2, 2), axis=(0, 2)).sum()) for l in model["layers"]]
    ffn = [l["w_ffo"].shape[1] for l in model["layers"]]
    params = model["embed"].size + model["head"].size + sum(
        l["w_qkv"].size + l["w_out"].size + l["w_in"].size + l["w_ffo"].size for l in model["layers"])
    return {"d_model": D, "layers": len(model["layers"]), "heads": heads, "d_ffn": ffn, "parameters": params}


# ---------------------------------------------------------------------------
# 2. The machine
# ---------------------------------------------------------------------------
# How the machine reads the trace (everything is recomputed from the tokens):
#   * J = bytes since the last non-byte token (capped at 4): byte J of the
#     current group is emitted next; at J = 0 the current token is a terminal
#     (or `}`), so the next instruction's first token is emitted, unless the
#     current token is `branch_taken` (then offset byte 0 follows). A division's
#     group has 8 bytes: J_full (uncapped, from the position of the latest
#     non-byte token) tells its bytes 4..7 and its commit apart.
#   * cursor (pc) = sum of delta_cursor (1 per terminal) + at every jump
#     terminal the signed word of the 4 bytes before it; stack depth = sum of
#     stack deltas (`}` +3, `out(..)` -1: output pops); call depth likewise.
#   * the stack: each commit with sts=1 is a write of (word, position) keyed by
#     the depth after it; a byte of a stack word is read back from the token
#     at position - 4 + J.
#   * memory and locals share one lookup, keyed by address (< 2^24) or by
#     -(1 + 1024*call_depth + 4*index + byte) (negative: disjoint from addresses,
#     and small, which keeps softmax attention able to see recency); a found value carries its
#     own key (and, for locals, the frame's start) so that "exact key, same
#     frame, else 0" is one equality test.
# Layers: 0 previous tokens + depth sums + the group's start; 1 cursor sum; 2 fetch, stack, operand
# bytes, frame; 3 memory/locals; 4 byte reads (their queries need the shift count's
# byte split, computed in feed-forward 2); the last feed-forward (5) forms the output.

# The machine's code of each opcode (0 = no opcode): table order, except that i32.mul_hi_u
# follows i32.mul, so that one quadratic gate, is_op(i32.mul) + is_op(i32.mul_hi_u), selects
# both (the low half of i32.mul_hi_u's group is i32.mul's group: build_machine).
MACHINE_ORDER = [op for op in reference.OPCODES if op != reference.MUL_HI]
MACHINE_ORDER.insert(MACHINE_ORDER.index("i32.mul") + 1, reference.MUL_HI)
OPCODE_CODE = {name: i + 1 for i, name in enumerate(MACHINE_ORDER)}
COMMITS = {reference.commit_token(sd, sts, bt): (sd, sts, bt)
           for sd, sts in reference.COMMIT_KINDS for bt in (0, 1)}
STACK_BASE_DEPTH = 3        # `}` sets the depth to 3: top/second/third keys stay >= 1
LOCALS_BASE = 1             # locals keys are -(LOCALS_BASE + ...) <= -1 < 0 <= addresses
LOCALS_STRIDE = 1024        # 256 locals x 4 bytes per call depth
FRAME_SCALE = 1 << 18       # > 256 * LOCALS_STRIDE: the frame start dominates the key
LOCALS_TAG = 1 << 44        # > 256 * 2^33 and > FRAME_SCALE * 2^25: locals never match memory
KEY_BIG = 1 << 34           # > every memory key (address + offset < 2^33 + 4); 5476*2^34 < 2^53
MEMORY_LIMIT = reference.MEMORY_SIZE
WORD = reference.WORD_MODULUS     # 2^32
SIGN = reference.SIGN_BIT         # 2^31
DIVISION_GATE = 1 << 33     # > |w| and |w - 2^31| for every word w < 2^32: a gate <= 0 turns a gated
                            # word's pre-activation negative; times the is_op sums (< 2^15) < 2^48: exact
LOADS = reference.LOADS     # opcode -> (width, signed)
STORES = reference.STORES   # opcode -> width
MUL_HI = reference.MUL_HI
VALUE_OPS = (["i32.const", "local.get", "local.set", "local.tee", "select", "i32.add", "i32.sub", "i32.eqz"]
             + list(reference.COMPARISONS) + list(LOADS) + list(STORES)
             + [op for op in reference.EXTENSION_OPCODES if op not in reference.DIVISIONS])
BRANCH_OPS = ["br", "br_if", "call", "return"]
LEFT_SHIFTS, RIGHT_SHIFTS = ("i32.shl", "i32.rotl"), ("i32.shr_u", "i32.shr_s", "i32.rotr")
SHIFTS = LEFT_SHIFTS + RIGHT_SHIFTS
IMMEDIATE_READERS = ("i32.const", "br", "br_if", "call", "return")  # p1 reads the immediate's bytes
FAMILY_WEIGHT = 10 ** 6 # the token-family selector beats every quadratic score (< 2^16)


def _byte(token):
    if len(token) == 1 and token not in "{}":
        return ord(token)  # ASCII alias
    return reference.byte_value(token)


def token_features():
    """The embedding features: name -> function(token)."""
    def commit(token, i):
        return COMMITS[token][i] if token in COMMITS else 0
    terminal = lambda t: t in COMMITS or t.startswith("out(") or t in ("call_commit", "return_commit")
    return {
        "is_byte": lambda t: int(_byte(t) is not None),
        "byte_value": lambda t: _byte(t) or 0,
        "byte_high_nibble": lambda t: (_byte(t) or 0) >> 4,
        "carry": lambda t: int(t.endswith("'")),
        "run_mark": lambda t: 1 if _byte(t) is not None else (-1 if t in OPCODE_CODE else 0),
        "delta_stack": lambda t: commit(t, 0) - int(t.startswith("out(")) + STACK_BASE_DEPTH * (t == "}"),
        "delta_call": lambda t: int(t == "call_commit") - int(t == "return_commit"),
        "delta_cursor": lambda t: int(terminal(t)),
        "is_jump": lambda t: int(commit(t, 2) == 1 or t in ("call_commit", "return_commit")),
        "not_sts": lambda t: 1 - commit(t, 1),
        "not_call_commit": lambda t: int(t != "call_commit"),
        "is_close": lambda t: int(t == "}"),
        "is_branch_taken": lambda t: int(t == "branch_taken"),
        "op_code": lambda t: OPCODE_CODE.get(t, 0),
        "op_code_sq": lambda t: OPCODE_CODE.get(t, 0) ** 2,
    }


def build_machine(program=None):
    """The graph of the universal machine (see the section comment above); with
    `program` (a list of instructions), the same graph with that program in its
    weights: the opcode and immediate lookups become feed-forward functions of the
    cursor (section 4, fetch_from_weights), and the prompt is `start` + input section.

    Lookups (20 heads):
      layer  lookup             query                 key          ignores            values
      0      prev1..prev4       position - i          position     -                  byte, run mark
      0      group start        1                     1            byte tokens        position
      0      depth sums         (average)                                             stack delta, call delta
      1      cursor sums        (average)                                             cursor delta + jump, p*[`}`]
      2      opcode             5*cursor + 1          position     -                  code, code^2
      2      immediate          5*cursor + 5          position     -                  imm (assembled at its last byte)
      2      top/second/third   depth - 0/1/2         depth        non-sts tokens     word, position
      2      top/second bytes   depth - 0/1 (x2)      depth        non-sts tokens     bytes 0,1 | bytes 2,3
      2      frame              call depth            call depth   non-call_commit    position (frame start)
      3      memory/locals      address+J | locals    write key    non-writes         byte + 256*key (+frame)
      4      p1, p2             a byte's position     position     -                  byte, its high nibble
    The last feed-forward turns (opcode, J, values) into output channels; the
    output head scores every token from them (family flag * FAMILY_WEIGHT plus
    2*v*channel - v^2, maximal at v = channel)."""
    g = Graph()
    s = {"program": program, "f": {name: g.feature(name, fn) for name, fn in token_features().items()}}
    for stage in (recent_tokens_and_depth_sums,   # layer 0
                  cursor_and_depths,              # layer 1
                  fetch_and_stack_reads,          # layer 2
                  opcode_flags, division_digits, multiplication_columns, memory_access, operand_signs,
                  shift_counts_and_bit_counts, byte_read_queries, shift_offsets,
                  memory_and_byte_reads,          # layers 3 and 4
                  remainder_top_byte):
        s.update(stage(g, **s))  # each stage reads the values earlier ones returned, by name
    output_head(g, output_channels(g, s))         # the last feed-forward, the output head
    if program is not None:
        add_specialized_tokens(g, program)
    return g


def wrapped_byte_at(index, J, is_op, flag):
    """Query terms: a's byte at index mod 4 (index in -4..7), for the opcode of is_op and
    flag only, relative to the default query position second_pos - 4 + J (for p2)."""
    return (gated_terms(index - J, is_op) + gated_step_terms(-index - 1, flag, 4)
            + gated_step_terms(index - 4, flag, -4))


def nibble_bits(g, name, byte, high):
    """The bits of a byte read (one node each), from its nibbles (low = byte - 16 high):
    bit_j of a nibble n is sum_{m=1..15} (bit_j(m) - bit_j(m-1)) [n >= m], steps on the
    integers n - m (the emitter shares the neurons relu(n - m) among the bits)."""
    bits = []
    for j in range(reference.BYTE_BITS):
        nibble = high if j >= 4 else byte - 16 * high
        jumps = [((m >> j % 4 & 1) - ((m - 1) >> j % 4 & 1), m) for m in range(1, 16)]  # (bit(m) - bit(m-1), m)
        bits.append(g.ffn("%s_bit%d" % (name, j), [t for jump, m in jumps if jump
                                                   for t in step_terms(ONE, nibble - m, jump)]))
    return bits


# The ALU's byte gadgets: a byte's value or high bit, and the low byte of a column sum.
GATE_BIG = 1 << 46      # "M" of the gating trick: larger than any |x| gated (< 2^45), for exact 0/1 gates


def exact_byte_terms(x, gate, coef=1):
    """x if 0 <= x <= 255 (and gate), else 0, for integer x: the hat
    relu(x) - 256 relu(x-255) + 255 relu(x-256): 255 at x=255, 0 from x=256 on."""
    shift = GATE_BIG * (Lin.of(gate) - 1)
    return [(coef, ONE, x + shift), (-256 * coef, ONE, x - 255 + shift), (255 * coef, ONE, x - 256 + shift)]


def high_byte_terms(x, gate, coef=1):
    """[128 <= x <= 255] (and gate) for integer x: relu(x-127) - relu(x-128) - relu(x-255) + relu(x-256)."""
    shift = GATE_BIG * (Lin.of(gate) - 1)
    return [(coef, ONE, x - 127 + shift), (-coef, ONE, x - 128 + shift),
            (-coef, ONE, x - 255 + shift), (coef, ONE, x - 256 + shift)]


COLUMN_LIMIT = 1 << 18   # every column sum below is in [0, 2^18) (bound at its use)
HIGH_HALF_SLACK = Fraction(1, 32)  # added to i32.mul_hi_u's high-half columns: >= the terms
                                   # they leave out (< 2^-6, checked where they are built)
FLOOR_STAGE = 1 << 13    # column = FLOOR_STAGE * q1 + v1 with q1 < 2^18 / 2^13 = 32 and v1 < 2^13
STAGE_STEPS = 31         # = 2^18 / 2^13 - 1 = 2^13 / 2^8 - 1 steps per stage


def low_byte_of_column(g, name, column):
    """n mod 256 + e for a column c = n + e (a residual value), n an integer in [0, 2^18) and
    0 <= e < 1/2 (e = 0 for i32.mul; the high half of i32.mul_hi_u leaves e < 1/8): a staged floor.

    Every step is [x >= 0] = relu(2x + 1) - relu(2x) with x = c - t for an integer t: when
    n >= t, x >= 0 and the step is 1; when n <= t - 1, x <= e - 1 and 2x + 1 <= 2e - 1 < 0,
    so it is 0. Exactly 0 or 1 either way: 2x is a multiple of 2^-23 below 2^19, so 2x + 1
    is exact too.
    Stage 1 (node `name_q1`): q1 = floor(n / 2^13) = sum_{m=1..31} [n >= m 2^13], 31 steps.
    Stage 2 (returned terms, for the node that consumes the byte): v1 = c - 2^13 q1 =
    (n mod 2^13) + e; floor((n mod 2^13) / 256) = sum_{m=1..31} [v1 >= 256 m], 31 steps;
    the result is v1 - 256 floor(...) = (n mod 256) + e. 124 neurons instead of the
    2 * 1,023 steps of one stage. Exactness: every pre-activation is 2c, 2 q1 and a
    constant: multiples of 2^-23 below 2^20."""
    q1 = g.ffn(name + "_q1", [t for m in range(1, STAGE_STEPS + 1)
                              for t in step_terms(ONE, 2 * (column - m * FLOOR_STAGE))])
    v1 = column - FLOOR_STAGE * q1
    return [(1, v1, ONE)] + [t for m in range(1, STAGE_STEPS + 1)
                             for t in step_terms(ONE, 2 * (v1 - m * reference.BYTE_VALUES), -reference.BYTE_VALUES)]


def recent_tokens_and_depth_sums(g, f, program, **_):
    """Layer 0: the previous four tokens, J (the bytes so far in the group) and [J == k],
    J_full, the jump offset, and the stack and call depth sums."""
    prev_byte, prev_mark = {}, {0: f["run_mark"]}
    for i in range(1, 5):
        prev_byte[i], prev_mark[i] = g.lookup(["prev%d_byte" % i, "prev%d_mark" % i],
                                              POSITION - i, POSITION, POSITION_SQ,
                                              [f["byte_value"], f["run_mark"]])
    mean_stack, mean_call = g.mean(["mean_stack_delta", "mean_call_delta"], [f["delta_stack"], f["delta_call"]])

    depth_b, call_b = exact_sum(g, "stack_depth", mean_stack), exact_sum(g, "call_depth", mean_call)
    if program is not None:  # no `}` in a specialized prompt: its +3 is a constant (section 4)
        depth_b = depth_b + STACK_BASE_DEPTH
    # J >= k: the current token and the k-1 before it are bytes (marks are +1, 0 or -1)
    j_at_least = {1: f["is_byte"]}
    for k in range(2, 5):
        j_at_least[k] = g.ffn("j_ge%d" % k, [(1, ONE, sum(prev_mark[m] for m in range(k)) - (k - 1))])
    J = sum(j_at_least.values())
    j_is = {k: (ONE if k == 0 else j_at_least[k]) - j_at_least[k + 1] for k in range(4)}  # [J == k]
    # Division groups are 9 tokens (SPEC 12.2): J (capped at 4) cannot tell their bytes
    # 4..7 apart. One more head of layer 0 finds the latest non-byte token (the terminal
    # before the group): J_full = position - its position = the bytes so far, uncapped.
    # Its key is the constant 1 (clear = is_byte), so the latest uncleared entry wins.
    group_start, = g.lookup(["group_start"], ONE, ONE, ONE, [POSITION], clear=f["is_byte"])
    j_full = POSITION - group_start
    # [J_full == n] for the phases of a division group: the hat
    # relu(x-n+1) - 2 relu(x-n) + relu(x-n-1) on the integer x = J_full (exact: positions)
    j_full_is = {n: g.ffn("j_full_is%d" % n, [(1, ONE, j_full - n + 1), (-2, ONE, j_full - n),
                                               (1, ONE, j_full - n - 1)]) for n in range(4, 9)}
    # an opcode token (mark -1), or one of the 4 bytes after one: a byte of the program
    # prefix, or in the trace the high half of an i32.mul_hi_u group (`i32.mul_hi_u` H0..H3)
    after_opcode = g.ffn("after_opcode_token", [(1, ONE, -f["run_mark"])] + [
        (1, ONE, sum(prev_mark[m] for m in range(i)) - prev_mark[i] - i) for i in range(1, 5)])
    word_before = sum(prev_byte[4 - k] * 256 ** k for k in range(4))  # bytes at p-4 .. p-1, LE
    jump = g.ffn("jump_offset", gated_terms(word_before, f["is_jump"])
                 + gated_step_terms(prev_byte[1] - 128, f["is_jump"], -WORD))
    close_term = g.ffn("close_position_term", [(1, POSITION, f["is_close"])])
    return dict(prev_byte=prev_byte, call_b=call_b, depth_b=depth_b, J=J, j_at_least=j_at_least, j_is=j_is,
                j_full=j_full, j_full_is=j_full_is, after_opcode=after_opcode, word_before=word_before,
                jump=jump, close_term=close_term)


def cursor_and_depths(g, f, call_b, close_term, depth_b, jump, **_):
    """Layer 1: the cursor (pc), the position of `}`, the stack and call depths."""
    mean_cursor, mean_close = g.mean(["mean_cursor_delta", "mean_close_position"],
                                     [f["delta_cursor"] + jump, close_term])
    cursor = g.ffn("cursor", [(1, mean_cursor, POSITION)])  # within 1e-9 of an integer: queries only
    close_b = exact_sum(g, "close_position", mean_close)
    depth = g.ffn("stack_depth", [(1, ONE, depth_b)])
    depth_sq = g.ffn("stack_depth_sq", [(1, depth_b, depth_b)])
    call_depth = g.ffn("call_depth", [(1, ONE, call_b)])
    call_depth_sq = g.ffn("call_depth_sq", [(1, call_b, call_b)])
    return dict(cursor=cursor, mean_cursor=mean_cursor, close_b=close_b, depth=depth, depth_sq=depth_sq,
                call_depth=call_depth, call_depth_sq=call_depth_sq)


def fetch_and_stack_reads(g, f, program, call_depth, call_depth_sq, cursor, depth, depth_sq, j_is,
                          mean_cursor, prev_byte, word_before, **_):
    """Layer 2: the fetched opcode and immediate, the top three stack words and the
    bytes of the top two, the frame start."""
    if program is None:
        op_x, op_y = g.lookup(["op_code_at_pc", "op_code_sq_at_pc"], 5 * cursor + 1, POSITION, POSITION_SQ,
                              [f["op_code"], f["op_code_sq"]])
        imm_here = sum(prev_byte[3 - k] * 256 ** k for k in range(3)) + f["byte_value"] * 256 ** 3
        imm, = g.lookup(["immediate"], 5 * cursor + 5, POSITION, POSITION_SQ, [imm_here])
        immediate_byte = None  # p1 reads the immediate's bytes from the prompt
    else:
        op_x, op_y, imm, immediate_byte = fetch_from_weights(g, program, exact_sum(g, "cursor", mean_cursor), j_is)

    def stack_read(o, names, values):  # the word o below the top, keyed by the depth at its commit
        return g.lookup(names, depth - o, depth, depth_sq, values, clear=f["not_sts"])
    top, top_pos = stack_read(0, ["top_word", "top_position"], [word_before, POSITION])
    second, second_pos = stack_read(1, ["second_word", "second_position"], [word_before, POSITION])
    third_pos, = stack_read(2, ["third_position"], [POSITION])
    # the bytes of the top and second words (little endian), two per head: at the
    # word's commit the layer-0 lookups prev4..prev1 hold its bytes 0..3
    operand_bytes = {name: [b for low in (0, 2) for b in stack_read(
        o, ["%s_byte%d" % (name, low), "%s_byte%d" % (name, low + 1)], [prev_byte[4 - low], prev_byte[3 - low]])]
        for o, name in enumerate(["top", "second"])}
    frame, = g.lookup(["frame_start"], call_depth, call_depth, call_depth_sq, [POSITION],
                      clear=f["not_call_commit"])
    return dict(frame=frame, top=top, op_x=op_x, op_y=op_y, imm=imm, immediate_byte=immediate_byte,
                second=second, second_pos=second_pos, third_pos=third_pos, top_pos=top_pos,
                operand_bytes=operand_bytes)


def opcode_flags(g, op_x, op_y, after_opcode, j_at_least, **_):
    """is_op(op) = 1 - (code - k)^2 (k = op's code): 1 for the fetched opcode, <= 0 for every
    other; the opcode flags (exact 0/1 nodes where a gate needs one) and their gates."""
    def is_op(op):
        k = OPCODE_CODE[op]
        return 2 * k * op_x - op_y - (k * k - 1) * ONE

    def gate(op, phase):
        """1 for opcode `op` in `phase` (a 0/1 value), <= 0 otherwise."""
        return flag[op] + phase - 1

    # Gates: gate(op, phase) = flag[op] + phase - 1 is 1 for the opcode in that phase and <= 0
    # otherwise. flag[op] is is_op(op) itself (no neuron, no residual slot), an integer whose
    # dot product has partial sums below 2^14 (2 k code + code^2 + k^2 <= 12,100 for codes
    # <= 55): a relu gate reads it exactly, and so does a gated step whose big is at most
    # 2^38 (STEP_GATE, gated_step_terms' default: big * 2^14 < 2^53). Where a gated step needs a
    # larger big (the memory values of loads and local.get, below 2^46, and the sign bytes
    # the loads and extends share), or where the flags of opcodes with non-adjacent codes
    # are added (the shifts' left/right sums), an exact 0/1 flag node stands in; i32.add keeps
    # its node as the decode example of notebooks/02_compiling_a_machine.
    exact_flag_ops = ["i32.add", "local.get"] + list(LOADS) + list(reference.EXTENDS) + list(SHIFTS)
    flag = {op: g.ffn("is_" + op, [(1, ONE, is_op(op))]) if op in exact_flag_ops else is_op(op)
            for op in reference.OPCODES}
    # i32.mul_hi_u's group is i32.mul's group with the token `i32.mul_hi_u` in place of its
    # commit (the low half), then bytes and a commit like i32.mul's (the high half): the output
    # channels treat the high half as i32.mul. after_opcode is 1 in the high half (the token
    # `i32.mul_hi_u`, then H0..H3) and 0 in every other group of the trace; is_op(i32.mul) is
    # 0 on i32.mul_hi_u (adjacent codes, MACHINE_ORDER), so both flags are 1 or <= 0:
    #   flag[i32.mul] = is_op(i32.mul) + after_opcode: 1 for i32.mul and the high half,
    #   flag[i32.mul_hi_u] = is_op(i32.mul_hi_u) - after_opcode: 1 in the low half only.
    # Partial sums: those of is_op plus at most 5 (after_opcode's neurons): below 2^14 still.
    flag["i32.mul"] = is_op("i32.mul") + after_opcode
    flag[MUL_HI] = is_op(MUL_HI) - after_opcode
    return dict(is_op=is_op, flag=flag, gate=gate)


def division_digits(g, f, is_op, j_at_least, j_full_is, j_is, prev_byte, second, top, **_):
    """Division and remainder: the digit phase's remainder, divisor and nibbles."""
    # -- division and remainder (SPEC 12.2): D3 D2 D1 D0 R0 R1 R2 R3 commit ----------
    # a = second, b = top; |x| = x - 2 relu(x - 2^31) for a word x (the signed ops' magnitude,
    # 2^31 for INT_MIN). Digit phase (J = 0..3 emits D_k, k = 3 - J): with the magnitudes
    # A = |a|, B0 = |b| (a, b for the unsigned ops), the remainder so far
    #   R_k = A - B0 * sum_{i>k} D_i 256^i   (0 <= R_k < 256 * B0 * 256^k by induction)
    # and B_k = B0 * 256^k give D_k = floor(R_k / B_k) in 0..255, found in two nibble steps:
    # h = sum_{m=1..15} [R_k >= 16 m B_k] (layer 3), R' = R_k - 16 h B_k (layer 4),
    # l = sum_{m=1..15} [R' >= m B_k] (the output layer), D_k = 16 h + l.
    # The digits written so far are the current token (d = 0) and prev_d: D_i = X_d with
    # d = i - k - 1, so R_k = A - sum_d B0 * X_d * 256^(4-J+d). Z_d = X_d 256^(4-J+d) (layer 1,
    # gated by [J == j]); N_d = Z_d * B0 (layer 2): one ReGLU neuron Z_d relu(b + G) for
    # the unsigned ops and Z_d relu(b + G) - 2 Z_d relu(b - 2^31 + G) for the signed ones, G =
    # DIVISION_GATE (gate - 1) with the gate an is_op sum (1 for the op, <= 0 otherwise: the
    # pairs div_s/div_u and rem_s/rem_u have adjacent codes, so is_op(x) + is_op(y) is 1 on
    # both and <= 0 elsewhere; DIVISION_GATE times such a sum stays below 2^48). Exactness:
    # Z_d b = X_d b 2^(8e) is a 40-bit integer times a power of two, so each neuron is exact,
    # and so is the node's sum of its (at most two) non-zero neurons, both multiples of 2^(8e)
    # below 2^(42+8e), whose exact value N_d <= B0 * (the quotient so far) 256^(k+1) <= A
    # < 2^33 is representable. (One node for all d would add a 2^64 neuron of d = 2 to a
    # 2^48 one of d = 0 that needs unit precision: hence three nodes.) B_k = P B0 with
    # P = 256^(3-J) likewise (P B0 < 2^56, a 32-bit integer times a power of two). The
    # magnitude A (one or two neurons per pair of ops) is gated to the digit phase and the
    # node adds the phase flag, so that
    # R = A' - 1 - sum N_d is R_k in the digit phase and -1 everywhere else: there every
    # step [R - 16 m B >= 0] (B = 0 there) is 0, h = 0 and R' = -1, so the digit neurons
    # need no gate of their own. A step whose pre-activation is not exact has a true value
    # below -2^53 + 2^33 (16 m B_k > 2^53 while R_k < 2^33), so its rounded value is still
    # negative and the step 0: rounding never changes a step.
    div_pair = is_op("i32.div_s") + is_op("i32.div_u")
    rem_pair = is_op("i32.rem_s") + is_op("i32.rem_u")

    def magnitude_terms(factor, word, digit_gate):
        """factor * |word| (signed ops) or factor * word, for the division op whose pair
        gate and digit_gate are 1; 0 for every other op (word < 2^32 < DIVISION_GATE)."""
        return ([(1, factor, word + DIVISION_GATE * (pair + digit_gate - 2)) for pair in (div_pair, rem_pair)]
                + [(-2, factor, word - SIGN + DIVISION_GATE * (is_op(op) + digit_gate - 2))
                   for op in ("i32.div_s", "i32.rem_s")])

    digit_phase = ONE - j_at_least[4]  # J <= 3
    written_back = [f["byte_value"]] + [prev_byte[d] for d in range(1, 5)]  # X_0 .. X_4
    digits_so_far = [g.ffn("division_z%d" % d, [(1, written_back[d] * 256 ** (4 - j + d), j_is[j])
                                                 for j in range(d + 1, 4)]) for d in range(3)]
    subtracted = [g.ffn("division_n%d" % d, magnitude_terms(z, top, ONE)) for d, z in enumerate(digits_so_far)]
    # B_k in the digit phase, B0 at J_full = 7 (the remainder's byte 3 below reads it), else 0
    scale = sum(j_is[j] * 256 ** (3 - j) for j in range(4)) + j_full_is[7]
    divisor = g.ffn("division_divisor", magnitude_terms(scale, top, ONE))
    dividend = g.ffn("division_dividend", magnitude_terms(ONE, second, digit_phase)
                     + [(1, ONE, pair - j_at_least[4]) for pair in (div_pair, rem_pair)])
    remainder = dividend - 1 - sum(subtracted, Lin())
    high_nibble = g.ffn("division_high_nibble", [t for m in range(1, 16)
                                                 for t in step_terms(ONE, remainder - 16 * m * divisor)])
    low_remainder = g.ffn("division_low_remainder", [(1, remainder, ONE), (-16, high_nibble, divisor)])
    return dict(div_pair=div_pair, rem_pair=rem_pair, written_back=written_back, divisor=divisor,
                high_nibble=high_nibble, low_remainder=low_remainder)


def multiplication_columns(g, f, after_opcode, is_op, j_full_is, j_is, operand_bytes, prev_byte, rem_pair,
                           written_back, **_):
    """The column of i32.mul, both halves of i32.mul_hi_u and the remainder's bytes 0..2,
    and its low byte."""
    # i32.mul, and the low half of i32.mul_hi_u's group (the same bytes, a*b mod 2^32):
    # result byte k (emitted at J = k) is c_k mod 256 for the column sum
    #   c_k = sum_{i+j<=k} a_i b_j 256^(i+j-k) - sum_{i<k} r_i 256^(i-k),
    # a = second (bytes a_i), b = top, r_i = the result bytes already written (the
    # current token is r_{k-1}, prev_m is r_{k-1-m}). L_k = sum_{i+j<=k} a_i b_j 256^(i+j)
    # equals a*b mod 256^k (terms with i+j >= k are multiples of 256^k), whose bytes are
    # r_0..r_{k-1}; so L_k - R_k = 256^k floor(L_k / 256^k): c_k is an integer >= 0, and
    # c_k = floor(L_k / 256^k) = byte k of a*b plus 256 * (higher bytes of L_k).
    # Bound: c_3 <= sum_s (s+1) 255^2 256^(s-3) < 4*255^2 + 3*255^2/256 + 3 < 2^18 = COLUMN_LIMIT.
    # Each product is one ReGLU neuron a_i * relu(b_j + 256 (low_gate + [J==k] - 2)): b_j when
    # both gates are 1, else the pre-activation is <= 255 - 256 < 0 (the gates are <= 0 off).
    # low_gate = is_op(i32.mul) + is_op(i32.mul_hi_u) - high: the two codes are adjacent
    # (MACHINE_ORDER), so the is_op sum 2 - (code - k)^2 - (code - k - 1)^2 is 1 for both
    # opcodes and <= -3 for every other; `high` (0/1) is 1 in the high half of i32.mul_hi_u.
    # Exact in any summation order: every term is a multiple of 256^-3 = 2^-24 and the sum of
    # their magnitudes is below 2^19, so every partial sum needs at most 43 bits < 53.
    assert OPCODE_CODE[MUL_HI] == OPCODE_CODE["i32.mul"] + 1
    high = after_opcode  # after the token `i32.mul_hi_u`: J = 0..4 of the high half
    low_gate = is_op("i32.mul") + is_op(MUL_HI) - high
    a_bytes, b_bytes = operand_bytes["second"], operand_bytes["top"]
    written = [f["byte_value"]] + [prev_byte[m] for m in range(1, 4)]  # r_{k-1}, r_{k-2}, ...

    def written_below(k):  # sum_{i<k} r_i 256^(i-k): the result bytes before byte k
        return sum(written[k - 1 - i] * Fraction(256) ** (i - k) for i in range(k))
    column_terms = []
    for k in range(4):
        for i in range(k + 1):
            for j in range(k + 1 - i):
                column_terms.append((Fraction(256) ** (i + j - k), a_bytes[i],
                                     b_bytes[j] + 256 * (low_gate + j_is[k] - 2)))
        column_terms += gated_terms(-written_below(k), low_gate + j_is[k] - 1)
    # i32.mul_hi_u's high half: H = floor(a*b / 2^32), byte H_k emitted at J = k after the
    # token `i32.mul_hi_u` (the current token is that token at k = 0, else H_{k-1}). With
    # l_s = sum_{i+j=s} a_i b_j and R_k = H mod 256^k (the bytes H_0..H_{k-1} written),
    #   W_k = sum_{s<=4+k} l_s 256^(s-4-k) - R_k 256^-k = N_k + f 256^-k,
    # N_k an integer >= 0 with N_k mod 256 = H_k, f = (a*b mod 2^32) / 2^32 in [0, 1): a*b
    # minus the sum is a multiple of 256^(5+k), and a*b = 2^32 (H + f). (W_k >= f 256^-k:
    # the sum is at least its residue mod 256^(5+k), 2^32 (H mod 256^(k+1) + f).) The
    # fraction f 256^-k is below 2^-8 for k >= 1; at k = 0 the low word's bytes L3, L2, just
    # written (prev1, prev2), take all of f away but (256 L1 + L0) / 2^32 < 2^-16.
    # The column drops the terms of l_s for s <= k+1 (at most D_k = sum_{s<=k+1} (pairs of s)
    # 255^2 256^(s-4-k) < 2^-6, checked below) and adds HIGH_HALF_SLACK = 2^-5 >= D_k:
    #   column = N_k + e,  0 <= e < 2^-5 + 2^-8 < 1/8,
    # which low_byte_of_column turns into H_k + e; the output head's square score reads it as
    # H_k (the gap to H_k +- 1 is 1 - 2e > 3/4). Gates as above with high_gate =
    # is_op(i32.mul_hi_u) + high - 1 (1 in the high half, <= 0 elsewhere). Exact in any
    # summation order: the terms kept are multiples of 2^-24 (s >= k+2: 256^(s-4-k) >= 2^-16;
    # written bytes 256^(i-k) >= 2^-24; the slack 2^-5) and the column is below 2^18.
    high_gate = is_op(MUL_HI) + high - 1
    square = (reference.BYTE_VALUES - 1) ** 2
    pairs = [sum(1 for i in range(4) if 0 <= s - i <= 3) for s in range(8)]  # (i, j) with i + j = s
    low_word_top = [prev_byte[1] * Fraction(1, 256), prev_byte[2] * Fraction(1, 256 ** 2)]  # L3, L2
    for k in range(4):
        dropped = sum(pairs[s] * square * Fraction(256) ** (s - 4 - k) for s in range(k + 2))
        largest = sum(pairs[s] * square * Fraction(256) ** (s - 4 - k) for s in range(5 + k)) + HIGH_HALF_SLACK
        assert dropped <= HIGH_HALF_SLACK and largest < COLUMN_LIMIT
        for i in range(4):
            for j in range(4):
                if k + 2 <= i + j <= 4 + k:
                    column_terms.append((Fraction(256) ** (i + j - 4 - k), a_bytes[i],
                                         b_bytes[j] + 256 * (high_gate + j_is[k] - 2)))
        below = sum(low_word_top) if k == 0 else written_below(k)
        column_terms += gated_terms(HIGH_HALF_SLACK * ONE - below, high_gate + j_is[k] - 1)
    # i32.rem_s / rem_u, result bytes k = 0..2 (J_full = 4 + k), in the same column:
    # the result V = a - s * b * Q mod 2^32 with s = -1 when a and b have opposite signs
    # (rem_s) and +1 otherwise (|a| = a or -a and |b| = b or -b mod 2^32, V = +-(|a| - |b| Q)
    # with the sign of a). Modulo 256^(k+1) it is X_k = sum_{i<=k} a_i 256^i - s P_k with
    # P_k = sum_{i+j<=k} D_i b_j 256^(i+j) (D_i = the digits: X_{k+i}, all within reach),
    # so c_k = (X_k - sum_{i<k} r_i 256^i) / 256^k + offset is an integer = r_k mod 256.
    # s comes from the current token's mark m (rem_s marks its bytes when the signs
    # differ: s = 1 - 2m). Bound: P_k / 256^k <= 255^2 (3 + 2/256 + 1/65536) < 195,590 for
    # k <= 2, so with offset (1 - m)(2^18 - 256) (a multiple of 256) c_k lies in [0, 2^18):
    # m = 0: (-195,591, 256) + 2^18 - 256; m = 1: [0, 256 + 195,590). Each product is
    # b_j relu(D_i + 256 (gate - 1)): D_i when the gate (pair, phase, mark) is 1, else 0.
    for k in range(3):
        phase = rem_pair + j_full_is[4 + k] - 1
        column_terms += gated_terms(sum(a_bytes[i] * Fraction(256) ** (i - k) for i in range(k + 1)), phase)
        column_terms += gated_terms(-written_below(k), phase)
        column_terms += gated_terms((COLUMN_LIMIT - 256) * (ONE - f["carry"]), phase)
        for i in range(k + 1):
            for j in range(k + 1 - i):
                digit = written_back[k + i]
                column_terms.append((-Fraction(256) ** (i + j - k), b_bytes[j],
                                     digit + 256 * (phase - 1) - 256 * f["carry"]))
                column_terms.append((Fraction(256) ** (i + j - k), b_bytes[j],
                                     digit + 256 * (phase - 1) + 256 * (f["carry"] - 1)))
    return dict(mul_byte_terms=low_byte_of_column(g, "mul_column", g.ffn("mul_column", column_terms)))


def memory_access(g, f, J, after_opcode, call_depth, close_b, frame, imm, is_op, second, top, **_):
    """The write key, value and clear of the memory/locals lookup, and its query."""
    # memory and locals: one lookup; a write is a non-prefix byte of a store, of
    # local.set/tee, or of the input section (instruction 0 = input_base), one entry
    # (condition, key, value, sign of the key) per writing opcode
    def writes_at(op):  # 1 at a non-prefix byte of op's group, <= 0 elsewhere
        return is_op(op) + f["is_byte"] - after_opcode - 1
    store_key = second + imm + J - 1                  # address + offset + J - 1: the byte stored
    input_key = imm + POSITION - close_b - 1          # input_base's imm + the byte's index after `}`
    local_offset = 4 * imm + J - 1                    # byte J - 1 of local imm (4 bytes a local)
    local_write_key = -(LOCALS_BASE + LOCALS_STRIDE * call_depth + local_offset)
    writes = ([(writes_at(op), store_key, 256 * store_key, 1) for op in STORES]
              + [(writes_at("input_base"), input_key, 256 * input_key, 1)]
              + [(writes_at(op), local_write_key, 256 * local_offset + FRAME_SCALE * frame + LOCALS_TAG, -1)
                 for op in ("local.set", "local.tee")])
    mem_key = g.ffn("memory_key", [t for c, k, _, _ in writes for t in gated_terms(k, c)])
    # key^2 = |k| * max(|k| + KEY_BIG*(c-1), 0): |k| when the write happens, 0 otherwise
    mem_key_sq = g.ffn("memory_key_sq", [(1, sign * k, sign * k + KEY_BIG * (c - 1)) for c, k, _, sign in writes])
    mem_clear = g.ffn("memory_clear", [(1, ONE, ONE)] + [(-1, ONE, c) for c, _, _, _ in writes])
    mem_value = g.ffn("memory_value", [t for c, _, v, _ in writes for t in gated_terms(f["byte_value"] + v, c)])
    address = top + imm + J
    local_key = -(LOCALS_BASE + LOCALS_STRIDE * call_depth + 4 * imm + J)
    mem_query = g.ffn("memory_query", [(1, address, ONE)] + gated_terms(local_key - address, is_op("local.get")))
    return dict(mem_key=mem_key, mem_key_sq=mem_key_sq, mem_clear=mem_clear, mem_value=mem_value,
                address=address, mem_query=mem_query)


def operand_signs(g, operand_bytes, second, top, **_):
    """The signs of the top two words; division's opposite signs and div_s overflow."""
    b_bytes = operand_bytes["top"]  # b of the division
    sign_top = g.ffn("sign_top", step_terms(ONE, top - SIGN))
    sign_second = g.ffn("sign_second", step_terms(ONE, second - SIGN))
    # division: [a and b have opposite signs]; [a = INT_MIN and b = -1] (div_s traps): the
    # hat on x = (a - 2^31) - 2^33 sum_j (255 - b_j), which is a - 2^31 when b = -1 and
    # below -2^32 otherwise (|x| < 2^44: exact)
    opposite_signs = g.ffn("division_opposite_signs", [(1, ONE, sign_second - sign_top),
                                                       (1, ONE, sign_top - sign_second)])
    overflow_x = second - SIGN - (1 << 33) * sum(255 - b for b in b_bytes)
    division_overflow = g.ffn("division_overflow", [(1, ONE, overflow_x + 1), (-2, ONE, overflow_x),
                                                    (1, ONE, overflow_x - 1)])
    return dict(sign_top=sign_top, sign_second=sign_second, opposite_signs=opposite_signs,
                division_overflow=division_overflow)


def shift_counts_and_bit_counts(g, J, operand_bytes, **_):
    """The shift count's byte/bit split and the source byte indices; the zero-byte
    prefixes of ctz and clz and the popcount of the top word's bytes 2 and 3."""
    # Shifts and rotates by s = count mod 32 = 8 q + r (q whole bytes, r bits; the count's
    # low byte t = top_byte0 decides: s = t mod 32). Result byte k is 8 bits of the 16-bit
    # window W = 256 hi + lo of two bytes of a (the second word):
    #   left  (shl, rotl):            hi = a_{k-q}, lo = a_{k-q-1}, byte = bits 8-r .. 15-r of W
    #   right (shr_u, shr_s, rotr):   lo = a_{k+q}, hi = a_{k+q+1}, byte = bits r .. r+7 of W
    # (left: floor(a 2^r / 256^(k-q)) mod 256, the bytes below lo add less than one unit of
    # 2^(r-8) to a fraction that stays below 1 - 2^(r-8); right: nested floors.) A byte index
    # outside 0..3 wraps for the rotates and is 0 (shl, shr_u) or the sign fill (shr_s).
    # The p1/p2 byte reads fetch lo/hi (at the wrapped index); the bit offset o = 8 - r
    # (left) or r (right) selects which bits of W the output adds. Exactness: every value
    # here is an integer below 2^9 (t, q, r, J, indices, bits, 0/1 flags) or a position, and
    # every gate adds GATE_BIG * (flag - 1) to such an integer: below 2^47, exact.
    top_bytes = operand_bytes["top"]
    count = top_bytes[0]
    # [t >= 8m] for m = 1..31 (31 steps, shared): q = floor(t/8) mod 4 and r = t - 8 floor(t/8)
    eighths = [step_terms(ONE, count - 8 * m) for m in range(1, 32)]
    shift_bytes = g.ffn("shift_bytes", [t for m, steps in enumerate(eighths, 1)
                                        for t in scaled(steps, 1 if m % 4 else -3)])
    shift_bits = g.ffn("shift_bits", [(1, count, ONE)] + [t for steps in eighths for t in scaled(steps, -8)])
    # the byte indices of lo and hi (J = k): they reach -4 .. 7 (J <= 4, q <= 3)
    source_index = {op: (J - shift_bytes - 1, J - shift_bytes) if op in LEFT_SHIFTS else
                    (J + shift_bytes, J + shift_bytes + 1) for op in SHIFTS}

    # i32.ctz: Z_i = [bytes 0..i of the top word are all 0] = relu(1 - a_0 - ... - a_i)
    # (bytes are integers >= 0); the first non-zero byte is byte i* = Z_0 + Z_1 + Z_2
    # (byte 3 when all are 0), which p1 reads; ctz = 8 i* + ctz8'(that byte) below.
    first_nonzero_byte = sum((g.ffn("top_bytes_zero_to%d" % i, [(1, ONE, ONE - sum(top_bytes[:i + 1]))])
                              for i in range(3)), Lin())
    # i32.clz likewise from the top: Z'_i = [bytes 3..3-i are 0]; p2 reads byte 3 - i'
    # (i' = Z'_0 + Z'_1 + Z'_2); clz = 8 i' + clz8'(that byte)
    leading_zero_bytes = sum((g.ffn("top_bytes_zero_from%d" % (3 - i), [(1, ONE, ONE - sum(top_bytes[3 - i:]))])
                              for i in range(3)), Lin())
    # i32.popcnt: p1 and p2 read the top's bytes 0 and 1 (their bits below); bytes 2 and 3
    # by nibbles: high nibble h = sum_{m=1..15} [a >= 16 m] (15 steps), then the popcount
    # of each nibble n (low = a - 16 h) as sum_{m=1..15} (pc(m) - pc(m-1)) [n >= m]
    upper = top_bytes[2:]
    upper_high = [g.ffn("popcnt_high_nibble%d" % (2 + i), [t for m in range(1, 16)
                                                           for t in step_terms(ONE, byte - 16 * m)])
                  for i, byte in enumerate(upper)]
    nibbles = [n for byte, high in zip(upper, upper_high) for n in (byte - 16 * high, high)]
    upper_popcount = g.ffn("popcnt_bytes23", [
        t for n in nibbles for m in range(1, 16)
        for t in step_terms(ONE, n - m, bin(m).count("1") - bin(m - 1).count("1"))])
    return dict(shift_bits=shift_bits, source_index=source_index, first_nonzero_byte=first_nonzero_byte,
                leading_zero_bytes=leading_zero_bytes, upper_popcount=upper_popcount)


def byte_read_queries(g, program, J, cursor, div_pair, first_nonzero_byte, frame, is_op, flag, j_at_least, j_full,
                      j_full_is, leading_zero_bytes, rem_pair, second_pos, source_index, third_pos,
                      top, top_pos, **_):
    """The queries of the byte reads p1 and p2."""
    # byte reads: P1 = immediate byte J or a byte of the top word; P2 = a byte of
    # the second word, or of the third (select, c != 0), or of the calling `call` (return)
    top_byte_at = top_pos - 4 + J
    imm_byte_at = 5 * cursor + 2 + J if program is None else NO_POSITION * ONE
    # division, result byte k = J_full - 4: div copies D_k (at position - 2k); rem's byte 3
    # needs D2 (p1, position - 5) and D3 (p2, position - 6)
    division_reads = (gated_terms(POSITION - 2 * (j_full - 4) - top_byte_at, div_pair + j_at_least[4] - 1)
                      + gated_terms(POSITION - 5 - top_byte_at, rem_pair + j_full_is[7] - 1))
    p1_query = g.ffn("p1_query", [(1, top_byte_at, ONE)] + division_reads
                     + gated_terms(first_nonzero_byte - J, is_op("i32.ctz")) + [
        t for op in IMMEDIATE_READERS for t in gated_terms(imm_byte_at - top_byte_at, is_op(op))]
        + [t for op in SHIFTS for t in gated_terms(second_pos - top_pos, is_op(op))
           + wrapped_byte_at(source_index[op][0], J, is_op(op), flag[op])])
    select_gate = top - 1 + KEY_BIG * (is_op("select") - 1)
    p2_query = g.ffn("p2_query", [(1, second_pos - 4 + J, ONE)] + step_terms(third_pos - second_pos, select_gate)
                     + gated_terms(frame - second_pos, is_op("return"))
                     + gated_terms(top_pos - 1 - leading_zero_bytes - (second_pos - 4 + J), is_op("i32.clz"))
                     + gated_terms(top_pos - 3 - (second_pos - 4 + J), is_op("i32.popcnt"))
                     + gated_terms(POSITION - 6 - (second_pos - 4 + J), rem_pair + j_full_is[7] - 1)
                     + [t for op in SHIFTS for t in wrapped_byte_at(source_index[op][1], J, is_op(op), flag[op])])
    return dict(p1_query=p1_query, p2_query=p2_query)


def shift_offsets(g, flag, shift_bits, sign_second, source_index, **_):
    """The shifts' bit offset, whether lo/hi are inside the word, and shr_s's sign fill."""
    left = sum((flag[op] for op in LEFT_SHIFTS), Lin())   # exact 0/1: one opcode at a time
    right = sum((flag[op] for op in RIGHT_SHIFTS), Lin())
    # the bit offset o in 0..8: [r == o] for right shifts, [r == 8 - o] for left ones, each
    # [r >= rho and side] - [r >= rho + 1 and side] (side = the exact 0/1 flag sum)
    def bits_are(rho, side):
        return gated_step_terms(shift_bits - rho, side) + scaled(gated_step_terms(shift_bits - rho - 1, side), -1)
    offset_is = [g.ffn("shift_offset_is%d" % o, (bits_are(o, right) if o < 8 else [])
                       + (bits_are(8 - o, left) if o > 0 else [])) for o in range(9)]
    # lo / hi is a byte of a (1) or outside it (0): shl drops indices < 0, shr_u/shr_s > 3
    inside = [g.ffn("shift_%s_inside" % name, [(1, ONE, ONE)]
                    + gated_step_terms(-source_index["i32.shl"][which] - 1, flag["i32.shl"], -1)
                    + [t for op in ("i32.shr_u", "i32.shr_s")
                       for t in gated_step_terms(source_index[op][which] - 4, flag[op], -1)])
              for which, name in ((0, "lo"), (1, "hi"))]
    sign_fill = g.ffn("shift_sign_fill", gated_terms(sign_second, flag["i32.shr_s"]))
    return dict(offset_is=offset_is, inside=inside, sign_fill=sign_fill)


def memory_and_byte_reads(g, f, program, immediate_byte, mem_clear, mem_key, mem_key_sq, mem_query, mem_value,
                          p1_query, p2_query, **_):
    """Layers 3 and 4: the memory/locals lookup, p1 and p2 and their bits."""
    found, = g.lookup(["memory_found"], mem_query, mem_key, mem_key_sq, [mem_value], clear=mem_clear)
    p1, p1_high = g.lookup(["p1_byte", "p1_high_nibble"], p1_query, POSITION, POSITION_SQ,
                           [f["byte_value"], f["byte_high_nibble"]])
    if program is not None:
        p1 = p1 + immediate_byte  # p1 found nothing (NO_POSITION) when this is the immediate's byte J
    p2, p2_high = g.lookup(["p2_byte", "p2_high_nibble"], p2_query, POSITION, POSITION_SQ,
                           [f["byte_value"], f["byte_high_nibble"]])

    p1_bits, p2_bits = nibble_bits(g, "p1", p1, p1_high), nibble_bits(g, "p2", p2, p2_high)
    return dict(found=found, p1=p1, p2=p2, p1_bits=p1_bits, p2_bits=p2_bits)


def remainder_top_byte(g, f, divisor, flag, j_full_is, p1, p2, prev_byte, second, sign_second, **_):
    """i32.rem_s / rem_u's result byte 3."""
    # i32.rem_s / rem_u, result byte 3 (J_full = 7): c_3 = (V - W) / 2^24 with W = the bytes
    # r_0..r_2 written (current token, prev1, prev2) and V = |a| - |b| Q (a >= 0 or unsigned:
    # |a| = a) or 2^32 - (|a| - |b| Q) = a + |b| Q (a < 0): both a -+ B Q with B = |b| (the
    # divisor node holds B0 at J_full = 7). Q = D0 + 256 D1 + 2^16 D2 + 2^24 D3 (prev3, prev4,
    # p1, p2). c_3 is an integer in [0, 256] (256 when a < 0 and the remainder is 0: the
    # output takes it mod 256). B Q <= |a| < 2^33: each product neuron B relu(Q + 2^33 (gate-1))
    # is exact (B is a gated-off 2^56 elsewhere, times 0), and every term is a multiple of
    # 2^-24 below 2^9 in magnitude: exact in any order.
    quotient = prev_byte[3] + 256 * prev_byte[4] + 65536 * p1 + (1 << 24) * p2
    below = f["byte_value"] * 65536 + prev_byte[1] * 256 + prev_byte[2]
    rem_top = j_full_is[7] + flag["i32.rem_s"] + flag["i32.rem_u"] - 1
    top_byte_terms = gated_terms((second - below) * Fraction(1, 1 << 24), rem_top)
    for coef, gate_ in ((-1, flag["i32.rem_u"] + j_full_is[7] - 1),
                        (-1, flag["i32.rem_s"] + j_full_is[7] - sign_second - 1),
                        (1, flag["i32.rem_s"] + j_full_is[7] + sign_second - 2)):
        top_byte_terms.append((Fraction(coef, 1 << 24), divisor, quotient + (1 << 33) * (gate_ - 1)))
    return dict(remainder_byte3=g.ffn("remainder_byte3", top_byte_terms))


def group_channels(ch, f, div_pair, division_overflow, divisor, flag, gate, high_nibble, imm, j_at_least,
                   j_full_is, low_remainder, opposite_signs, p1, rem_pair, remainder_byte3, second, top, **_):
    """The token family of each phase of each group (byte, commit, ...), division's and
    the branches' values."""
    BT, carry = f["is_branch_taken"], f["carry"]
    start = ONE - j_at_least[1] - BT
    branch_bytes = BT + j_at_least[1] - j_at_least[4]

    def on(gate_, **channels):  # channel name -> its value when gate_ is 1
        for name, c in channels.items():
            ch[name].append((c, ONE, gate_))

    for op in VALUE_OPS:
        width = STORES.get(op, 4)
        sd, sts = reference.STACK_DELTA[op], reference.STORES_TO_STACK[op]
        g_bytes, g_end = gate(op, ONE - j_at_least[width]), gate(op, j_at_least[width])
        on(g_bytes, byte=1)
        if op == MUL_HI:  # the low half: its token in place of the commit (see the output head)
            on(g_end, branch_taken=1, bt=1)
            continue
        on(g_end, commit=1, sd=sd, sts=sts)
        if op in LOADS or op in STORES:
            base = top if op in LOADS else second
            bound = base + imm + (LOADS[op][0] if op in LOADS else width) - MEMORY_LIMIT - 1
            trap = gated_step_terms(bound, gate(op, start))
            ch["trap"] += trap
            ch["byte"] += scaled(trap, -1)  # the trap token replaces the group
    g_start = {op: gate(op, start) for op in reference.OPCODES}
    # division: 8 bytes (J_full <= 7), then commit(-1,sts=1,bt=0) at J_full = 8; the trap
    # replaces the group at J = 0 when b = 0, or for div_s of INT_MIN by -1
    for op in reference.DIVISIONS:
        on(flag[op] - j_full_is[8], byte=1)
        on(flag[op] + j_full_is[8] - 1, commit=1, sd=reference.STACK_DELTA[op], sts=1)
    division_trap = [t for pair in (div_pair, rem_pair) for t in gated_step_terms(-top, pair + start - 1)]
    division_trap += [(1, ONE, division_overflow + flag["i32.div_s"] + start - 2)]
    ch["trap"] += division_trap
    ch["byte"] += scaled(division_trap, -1)
    # digits (self-gated: h = 0 and R' = -1 outside the digit phase, see above)
    ch["value"] += [(16, high_nibble, ONE)] + [t for m in range(1, 16)
                                               for t in step_terms(ONE, low_remainder - m * divisor)]
    # div result bytes: D_k (p1), or for div_s with opposite signs 0 - D_k - borrow (the
    # current token's mark; D0 is unmarked) byte by byte, borrow-marked as i32.sub
    ch["value"] += gated_terms(p1, flag["i32.div_u"] + j_at_least[4] - 1)
    ch["value"] += gated_terms(p1, flag["i32.div_s"] + j_at_least[4] - opposite_signs - 1)
    negate = flag["i32.div_s"] + j_at_least[4] + opposite_signs - 2
    s_neg = -p1 - carry
    ch["value"] += gated_terms(s_neg, negate) + [(256, ONE, negate)] + gated_step_terms(s_neg, negate, -256)
    ch["mark"] += [(1, ONE, negate)] + gated_step_terms(s_neg, negate, -1)
    # rem result bytes 0..2 come from mul_column; byte 3 here (mod 256); rem_s marks its
    # bytes when the signs differ
    ch["value"] += [(1, remainder_byte3, ONE)] + step_terms(ONE, remainder_byte3 - 256, -256)
    ch["mark"] += [(1, ONE, flag["i32.rem_s"] + opposite_signs - 1)]
    on(g_start["drop"], commit=1, sd=-1)
    on(g_start["output"], out=1)
    ch["value"] += gated_terms(p1, g_start["output"])
    on(g_start["halt"], halt=1)
    on(g_start["trap"], trap=1)
    for op in BRANCH_OPS:
        g_bytes = gate(op, branch_bytes)
        on(g_bytes, byte=1)
        if op != "return":
            ch["value"] += gated_terms(p1, g_bytes)
        if op != "br_if":
            on(g_start[op], branch_taken=1)
    taken = gated_step_terms(top - 1, g_start["br_if"])
    ch["branch_taken"] += taken
    on(g_start["br_if"], commit=1, sd=-1)
    ch["commit"] += scaled(taken, -1)  # taken: branch_taken instead of commit(-1,sts=0,bt=0)
    ch["sd"] += taken
    on(gate("br", j_at_least[4]), commit=1, bt=1)
    on(gate("br_if", j_at_least[4]), commit=1, sd=-1, bt=1)
    on(gate("call", j_at_least[4]), call_commit=1)
    on(gate("return", j_at_least[4]), return_commit=1)
    return dict(carry=carry, branch_bytes=branch_bytes, g_start=g_start)


def result_channels(ch, J, address, branch_bytes, carry, first_nonzero_byte, found, frame, g_start,
                    gate, imm, inside, j_at_least, j_is, leading_zero_bytes, mul_byte_terms, offset_is, p1,
                    p1_bits, p2, p2_bits, second, sign_fill, sign_second, sign_top, top,
                    upper_popcount, **_):
    """The result bytes (value and mark channels) of the value opcodes."""
    # i32.and / or / xor, byte-serial: byte J of both operands is p1 (top) and p2 (second);
    # and = sum_j 2^j relu(bit_j(p1) + bit_j(p2) - 1) (one neuron per bit), or = p1 + p2 - and,
    # xor = p1 + p2 - 2 and. All values are integers below 2^9: exact.
    def and_byte_terms(gate_, coef=1):
        """coef * (p1 AND p2) when gate_ = 1 (gate_ <= 0: 0): 2^j relu(x_j + y_j - 1 + 4 (gate_ - 1)),
        the pre-activation <= 2 - 1 - 4 < 0 when the gate is off."""
        return [(coef * 2 ** j, ONE, x + y - 1 + 4 * (gate_ - 1)) for j, (x, y) in enumerate(zip(p1_bits, p2_bits))]

    def g_bytes(op):
        return gate(op, ONE - j_at_least[4])

    for op in ("i32.const", "local.set", "local.tee") + tuple(STORES):
        ch["value"] += gated_terms(p1, gate(op, ONE - j_at_least[STORES.get(op, 4)]))
    ch["value"] += gated_terms(p2, g_bytes("select"))
    expected_local = 256 * (4 * imm + J) + FRAME_SCALE * frame + LOCALS_TAG
    ch["value"] += exact_byte_terms(found - expected_local, g_bytes("local.get"))
    # add / sub / return: byte-serial with the current token's mark as carry-in
    s_add = p2 + p1 + carry
    ch["value"] += gated_terms(s_add, g_bytes("i32.add")) + gated_step_terms(s_add - 256, g_bytes("i32.add"), -256)
    ch["mark"] += gated_step_terms(s_add - 256, g_bytes("i32.add"))
    for op, s, g_ in (("i32.sub", p2 - p1 - carry, g_bytes("i32.sub")),
                      ("return", p1 - p2 - carry, gate("return", branch_bytes))):
        ch["value"] += gated_terms(s, g_) + [(256, ONE, g_)] + gated_step_terms(s, g_, -256)
        ch["mark"] += [(1, ONE, g_)] + gated_step_terms(s, g_, -1)
    # i32.mul, i32.mul_hi_u: mul_column is 0 outside the bytes of their groups, so is its low byte
    ch["value"] += mul_byte_terms
    # eqz and comparisons: one result byte at J = 0 (later bytes are 0)
    ch["value"] += [(1, ONE, g_start["i32.eqz"])] + gated_step_terms(top - 1, g_start["i32.eqz"], -1)
    signed = {False: (second, top), True: (second - WORD * sign_second, top - WORD * sign_top)}
    for op in reference.COMPARISONS:
        relation, is_signed = op[4:6], op.endswith("_s")  # "i32.lt_s" -> "lt", signed
        a, b = signed[is_signed]
        g0 = g_start[op]
        less, greater = gated_step_terms(b - a - 1, g0), gated_step_terms(a - b - 1, g0)
        always = [(1, ONE, g0)]
        ch["value"] += {"eq": always + scaled(less + greater, -1), "ne": less + greater,
                        "lt": less, "gt": greater, "le": always + scaled(greater, -1),
                        "ge": always + scaled(less, -1)}[relation]
    # loads: memory bytes J < width; sign extensions: the top word's bytes J < width (p1);
    # the signed ones mark the sign byte (J = width - 1) when it is >= 128 and fill the
    # bytes J >= width from the current token's mark (0xff' after a marked byte, else 00)
    sign_extensions = [(op, width, is_signed, found - 256 * address) for op, (width, is_signed) in LOADS.items()]
    sign_extensions += [(op, width, True, p1) for op, width in reference.EXTENDS.items()]
    for op, width, is_signed, byte in sign_extensions:
        # (a load's `byte` is 0..255 only when the key matched; p1 always is)
        value_gate = gate(op, ONE - j_at_least[width])
        ch["value"] += exact_byte_terms(byte, value_gate) if op in LOADS else gated_terms(byte, value_gate)
        if is_signed:
            ch["mark"] += high_byte_terms(byte, gate(op, j_is[width - 1]))
            fill = gate(op, j_at_least[width] - j_at_least[4])
            ch["value"] += gated_terms(255 * carry, fill)
            ch["mark"] += gated_terms(carry, fill)
    # ctz = 8 i* + ctz8'(p1) with ctz8'(b) = sum_{j<8} [bits 0..j of b are 0] =
    # relu(1 - sum_{l<=j} bit_l), 8 for b = 0 (ctz(0) = 8*3 + 8 = 32); clz = 8 i' + clz8'(p2),
    # clz8'(b) = sum_{j<8} [bits 7-j..7 are 0]. One result byte at J = 0, later bytes 0;
    # the gate adds 2 (g0 - 1) <= -2 to the pre-activation (<= 1) when off.
    g0 = g_start["i32.clz"]
    ch["value"] += gated_terms(8 * leading_zero_bytes, g0)
    ch["value"] += [(1, ONE, ONE - sum(p2_bits[7 - j:]) + 2 * (g0 - 1)) for j in range(reference.BYTE_BITS)]
    ch["value"] += gated_terms(sum(p1_bits) + sum(p2_bits) + upper_popcount, g_start["i32.popcnt"])
    g0 = g_start["i32.ctz"]
    ch["value"] += gated_terms(8 * first_nonzero_byte, g0)
    ch["value"] += [(1, ONE, ONE - sum(p1_bits[:j + 1]) + 2 * (g0 - 1)) for j in range(reference.BYTE_BITS)]
    # shifts and rotates: bit j of the byte is bit j + o of W = 256 p2 + p1 (o = the offset),
    # the bit when its byte is inside a, else the sign fill (shr_s); each bit one neuron
    # relu(bit + 2 (offset_is_o + inside + [J < 4] - 3)): the bit when all three are 1, else
    # its pre-activation is <= 1 - 2 < 0 (all are exact 0/1 values). The fill of shr_s
    # sets bits 0..7-o (from lo) or 8-o..7 (from hi) when that byte is outside a: one
    # neuron each, relu(outside + offset_is_o + sign_fill + [J < 4] - 3) in {0, 1}.
    for o in range(9):
        gate_o = offset_is[o] + ONE - j_at_least[4]
        for j in range(reference.BYTE_BITS):
            m = j + o
            bit, src = (p1_bits[m], inside[0]) if m < 8 else (p2_bits[m - 8], inside[1])
            ch["value"].append((2 ** j, ONE, bit + 2 * (gate_o + src - 3)))
        from_lo, from_hi = 2 ** (8 - o) - 1, 256 - 2 ** (8 - o)  # the bits each byte gives
        for src, bits_value in ((inside[0], from_lo), (inside[1], from_hi)):
            if bits_value:
                ch["value"].append((bits_value, ONE, (ONE - src) + gate_o + sign_fill - 3))
    # and / or / xor
    for op, and_coef in (("i32.and", 1), ("i32.or", -1), ("i32.xor", -2)):
        if op != "i32.and":
            ch["value"] += gated_terms(p1 + p2, g_bytes(op))
        ch["value"] += and_byte_terms(g_bytes(op), and_coef)


def output_channels(g, s):
    """The output channels (last feed-forward): one node per channel."""
    ch = {name: [] for name in ("byte", "commit", "out", "branch_taken", "call_commit", "return_commit",
                                "halt", "trap", "value", "mark", "sd", "sts", "bt")}
    result_channels(ch, **s, **group_channels(ch, **s))
    return {name: g.ffn("out_" + name, terms) for name, terms in ch.items()}


def output_head(g, channel):
    """The logit of every token from the output channels."""

    def square_score(v, ch_name):
        return 2 * v * channel[ch_name] - v * v * ONE

    for token in reference.VOCAB:
        b = reference.byte_value(token)
        if b is not None:
            m = int(token.endswith("'"))
            logit = FAMILY_WEIGHT * channel["byte"] + square_score(b, "value") + square_score(m, "mark")
        elif token.startswith("out("):
            logit = FAMILY_WEIGHT * channel["out"] + square_score(reference.out_value(token), "value")
        elif token in COMMITS:
            sd, sts, bt = COMMITS[token]
            logit = (FAMILY_WEIGHT * channel["commit"] + square_score(sd, "sd") + square_score(sts, "sts")
                     + square_score(bt, "bt"))
        elif token in ("branch_taken", "call_commit", "return_commit", "halt", "trap"):
            logit = FAMILY_WEIGHT * channel[token]
        elif token == MUL_HI:
            # an opcode name that is also a trace token (SPEC 12.2): like branch_taken, it
            # ends no group and restarts J; it shares its channel and is told apart by
            # bt = 1 (branch_taken's logit is its square score at bt = 0, which is 0)
            logit = FAMILY_WEIGHT * channel["branch_taken"] + square_score(1, "bt")
        else:
            logit = -2 * FAMILY_WEIGHT * ONE  # prompt-only tokens are never produced
        g.outputs[token] = logit


# ---------------------------------------------------------------------------
# 3. The universal machine's weights
# ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def compile_machine():
    """The model dict of the universal machine (built once per process)."""
    return emit(build_machine())


# ---------------------------------------------------------------------------
# 4. A program in the weights: the specialized machine (SPEC 2.2, 7.5)
# ---------------------------------------------------------------------------
# The universal machine fetches instruction c (c = the cursor) by attention over
# the prompt: the opcode at position 5c+1, the immediate at 5c+5, its byte J at
# 5c+2+J (p1). The specialized machine is the same graph (build_machine(program))
# with those three reads replaced by feed-forward functions of c, and a prompt
# `start` + input section. Everything else is the universal machine.
#
# The cursor, exactly. cursor_b = ROUND_BIAS + mean * p rounds to the integer c
# (the cursor sum is an integer below 2^20, mean * p is within 1e-9 of it): the
# gate c - k of a neuron reads that slot with coefficient 1 and `one` with
# -(ROUND_BIAS + k), an integer of [2^52, 2^53), so c - k is exact.
#
# The fields of instruction i, F(i) = (code, code^2, imm byte 0..3, reads_immediate),
# with F(i) = 0 for i < 0 and i >= N, are the values at the integers of the
# piecewise-linear function through the points (i, F(i)):
#     P(x) = sum_{k=-1..N} w_k relu(x - k),   w_k = F(k+1) - 2 F(k) + F(k-1).
# Proof, for integer x: P(x) = sum_{k<x} w_k (x - k) = sum_{j<x} sum_{k<=j} w_k
# = sum_{j<x} (F(j+1) - F(j)) = F(x) (both sums telescope; F(j) = 0 for j < 0).
# One neuron reglu(one, c - k) per k carries all seven fields (its output column
# holds w_k for each): N + 2 neurons for N instructions, and none at a k where
# every field is linear through k (w_k = 0: straight runs of the program cost
# nothing). transformer-vm spends two neurons per step (a bump per cursor value).
#
# Exact in any summation order: relu(c - k) is an integer <= c + 1 and every w_k
# an integer with |w_k| <= 4 max|F| (max|F| = the largest code^2), so every partial
# sum is below (N + 1)(N + 2) * 4 max|F| < 2^53 for c <= N and N <= MAX_BAKED_INSTRUCTIONS.
#
# Reachable cursors: a valid program's cursor stays in 0..N-1 (branches target
# instructions, SPEC 3.3) or reaches N when it runs past its last instruction (the
# reference run ends there, without a stop token). At c >= N every field is 0:
# code 0 is no opcode, is_op(op) <= 0 for all of them, no output family fires
# (the universal machine reads code 0 from `}` there too).
#
# Dispatch is unchanged: is_op(op) = 2k code - code^2 - (k^2 - 1), now of
# feed-forward outputs. They arrive one sub-layer later than the fetch heads'
# (layer 2's feed-forward instead of its attention), so every node that reads them
# moves one layer down: 5 layers instead of 4, with the 2 fetch heads gone.
#
# The immediate's bytes for p1 (IMMEDIATE_READERS): p1 queries NO_POSITION, where no
# key is (the null entry wins: p1 = 0), and immediate_byte_j adds
# sum_k byte_k [J = k] reads_immediate, three 0/1 flags gated in one neuron per byte.
#
# The prompt. `}` added 3 to the stack depth and marked the start of the input
# section: the depth gets STACK_BASE_DEPTH as a constant, and close_position is 0
# (every use is position - close_position, the same for input byte k at position
# close + 1 + k in both prompts). Position 0 (`start`) is every head's null entry
# and computes nothing, so a program without an input section writes its first
# token from there: the feature is_start, read only by the output head, gives that
# token (a constant of the program: instruction 0 on the initial state) logit 1 and
# leaves every other token at 0. From position 1 on, every residual value equals
# the universal machine's at the same trace token (absolute positions enter only
# through differences), so the traces are equal token for token.

NO_POSITION = -1           # a query that no key answers: keys are positions k >= 1 and the
                           # null entry (0, 0); q = -1 scores 1 - (1 + k)^2 + 0.433 < 0 = null
FETCHED_FIELDS = ("op_code_at_pc", "op_code_sq_at_pc", "immediate_byte0", "immediate_byte1",
                  "immediate_byte2", "immediate_byte3", "reads_immediate")
MAX_FIELD = len(OPCODE_CODE) ** 2  # the largest |F|: code^2 (bytes <= 255, flags <= 1)
MAX_BAKED_INSTRUCTIONS = 1 << 16   # memory, not exactness, sets it: the fetch layer holds 3D
                                   # floats per neuron (2^16 neurons ~ 200 MB); exactness allows
                                   # (N + 1)(N + 2) * 4 * MAX_FIELD < 2^53, i.e. N < 1.2 million
assert (MAX_BAKED_INSTRUCTIONS + 1) * (MAX_BAKED_INSTRUCTIONS + 2) * 4 * MAX_FIELD < 2 ** 53


def instruction_fields(opcode, immediate):
    """F(i): the values the fetch yields for one instruction, in FETCHED_FIELDS order."""
    code = OPCODE_CODE[opcode]
    return (code, code * code, *reference.word_bytes(immediate), int(opcode in IMMEDIATE_READERS))


def fetch_neurons(program):
    """[(k, w_k)] for the interpolant P above: w_k = the second difference of F at k, one
    weight per field, for k = -1..N, leaving out the k where every w_k is 0."""
    zero = (0,) * len(FETCHED_FIELDS)
    fields = [zero] + [instruction_fields(op, imm) for op, imm in program] + [zero, zero]  # F(-1..N+1)
    second_differences = [(k, tuple(after - 2 * at + before for after, at, before   # fields[k] = F(k-1)
                                    in zip(fields[k + 2], fields[k + 1], fields[k])))  # (fields[-1] = 0)
                          for k in range(-1, len(program) + 1)]
    return [(k, w) for k, w in second_differences if any(w)]


def fetch_from_weights(g, program, cursor, j_is):
    """The fetch of the specialized machine (the derivation above): (op_x, op_y, imm,
    immediate_byte) as feed-forward functions of the exact cursor and j_is[k] = [J == k]."""
    neurons = fetch_neurons(program)
    field = {name: g.ffn(name, [(w[i], ONE, cursor - k) for k, w in neurons if w[i]])
             for i, name in enumerate(FETCHED_FIELDS)}
    byte = [field["immediate_byte%d" % k] for k in range(4)]
    imm = sum(byte[k] * 256 ** k for k in range(4))
    immediate_byte = g.ffn("immediate_byte_j", [
        t for k in range(4) for t in gated_terms(byte[k], j_is[k] + field["reads_immediate"] - 1)])
    return field["op_code_at_pc"], field["op_code_sq_at_pc"], imm, immediate_byte


def first_token(program):
    """The first trace token of a program without an input section: what instruction 0
    writes on the initial state."""
    try:
        machine = reference.execute(program, max_steps=1)
    except reference.StepLimitExceeded as stopped:
        machine = stopped.machine
    except reference.ExecutionError as error:
        raise reference.ProgramError("instruction 0 cannot run on the initial state (%s)" % error) from None
    return machine.trace[0]


def add_specialized_tokens(g, program):
    """The specialized vocabulary (SPEC 1.2): the universal one plus `start` and the token
    naming the program (neither is ever produced), and the first token from position 0."""
    is_start = g.feature("is_start", lambda t: int(t == reference.START), at_position_zero=True)
    g.outputs[reference.START] = -2 * FAMILY_WEIGHT * ONE
    g.outputs[reference.PROGRAM_MARK % reference.program_hash(program)] = -2 * FAMILY_WEIGHT * ONE
    if not reference.has_input_section(program):
        token = first_token(program)
        g.outputs[token] = g.outputs[token] + is_start  # 1 at position 0, where every logit is 0


def specialize(program):
    """The model dict of the machine with `program` (a list of instructions) in its
    weights: its prompt is reference.specialized_prompt(program, input), its trace the
    universal machine's (SPEC 2.2). ProgramError unless the program is valid and small enough."""
    reference.check_program(program)
    if len(program) > MAX_BAKED_INSTRUCTIONS:
        raise reference.ProgramError("the program has %d instructions; a specialized model holds at most %d"
                                     % (len(program), MAX_BAKED_INSTRUCTIONS))
    return emit(build_machine(program))
