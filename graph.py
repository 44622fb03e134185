"""The graph language and its exact evaluator: what a machine's graph is and what it means.

A graph is named inputs (positional values, features of the token), then nodes in
creation order (a topological order): hard-attention lookups (the latest write under a
key, or the average over positions 1..p) and feed-forward nodes (sums of ReGLU neurons
coef * a * max(b, 0)), over linear expressions `Lin` of named values, and a logit per
vocabulary token. compile_weights.py turns a graph into weights and builds the machine's.

Sections: 1. the graph language and its generic term builders, each with its derivation
2. the exact graph evaluator: evaluate(graph, prompt) runs a graph token by token in
Python integers and Fractions, no weights, the oracle ladder's second rung (reference
interpreter -> graph evaluator -> weights).

Exactness model (of the weights a graph compiles to; the builders below keep it): every
value the machine compares or uses as a key is an integer below 2^53 held exactly in
float64; a dot product of such values is exact in any summation order as long as every
partial sum stays below 2^53 (this is why gating constants are chosen per use). The only
inexact quantities are averages (sum * (1/count)); the ones used as keys are rounded
back to integers (ROUND_BIAS), the cursor is used only in queries, where an error of
1e-9 cannot change an argmax over integer keys.

Costs: the evaluator computes every node once per token (a latest lookup: a bisection).
"""
import bisect
from fractions import Fraction

import reference

# ---------------------------------------------------------------------------
# 1. The graph language
# ---------------------------------------------------------------------------

ROUNDED_SUFFIX = "+bias"  # names the slots that hold ROUND_BIAS + an integer sum
ROUND_BIAS = 3 << 51    # 1.5 * 2^52; float64 spacing is exactly 1 in [2^52, 2^53): adding
                        # it rounds a value within 0.5 of an integer to that integer
STEP_GATE = 1 << 35     # "M" of gated_step_terms: > every gated sum of words and immediates (< 2^34);
                        # times an is_op gate (partial sums < 2^14, build_machine) still < 2^49: exact


class Lin:
    """A linear expression over named residual values: {name: coefficient}.
    Constants are multiples of the input `one` (0 at position 0, so that the
    position-0 token `{` has an all-zero residual and is every head's null entry)."""

    def __init__(self, terms=None):
        self.terms = {k: v for k, v in (terms or {}).items() if v != 0}

    @staticmethod
    def of(x):
        if isinstance(x, Lin):
            return x
        return Lin({"one": x})  # a number

    def __add__(self, other):
        other = Lin.of(other)
        terms = dict(self.terms)
        for k, v in other.terms.items():
            terms[k] = terms.get(k, 0) + v
        return Lin(terms)

    __radd__ = __add__

    def __neg__(self):
        return Lin({k: -v for k, v in self.terms.items()})

    def __sub__(self, other):
        return self + (-Lin.of(other))

    def __rsub__(self, other):
        return Lin.of(other) - self

    def __mul__(self, c):
        return Lin({k: v * c for k, v in self.terms.items()})

    __rmul__ = __mul__

    def key(self):
        return tuple(sorted(self.terms.items()))

    def __repr__(self):
        return " + ".join("%s*%s" % (v, k) for k, v in self.terms.items()) or "0"


POSITIONAL = ("position", "inv_log_pos", "position_sq", "one")  # residual slots 0, 1, 2, 3
ONE, POSITION, POSITION_SQ = Lin({"one": 1}), Lin({"position": 1}), Lin({"position_sq": 1})


class Graph:
    """Named inputs, then nodes in creation order (which is a topological order).

    A node is a dict:
      lookup  names, mode ("latest" | "average"), query, key, key_sq, clear, values
      ffn     name, terms [(coef, a, b)]: value = sum coef * a * max(b, 0)
    `outputs` maps every vocabulary token to its logit (a Lin)."""

    def __init__(self):
        self.features = {}  # embedding feature name -> function(token) -> number
        self.position_zero_features = set()  # features that keep their value at position 0
        self.nodes = []
        self.names = set(POSITIONAL)
        self.outputs = {}

    def _new_name(self, name):
        assert name not in self.names, "duplicate node name %r" % name
        self.names.add(name)
        return name

    def feature(self, name, value_of_token, at_position_zero=False):
        """An embedding feature: value_of_token(token) for every token but the position-0
        tokens `{` and `start` (0: their row is every head's null entry), unless
        at_position_zero: a feature that only the output head may read (so that the
        null entry stays all-zero for every head and neuron)."""
        self.features[self._new_name(name)] = value_of_token
        if at_position_zero:
            self.position_zero_features.add(name)
        return Lin({name: 1})

    def ffn(self, name, terms):
        """A feed-forward node: sum of ReGLU neurons coef * a * max(b, 0), one slot."""
        terms = [(c, Lin.of(a), Lin.of(b)) for c, a, b in terms]
        self.nodes.append({"kind": "ffn", "name": self._new_name(name), "terms": terms})
        return Lin({name: 1})

    def lookup(self, names, query, key, key_sq, values, clear=None):
        """Hard attention, latest-write: the values at the latest position whose
        key equals the query, among positions whose `clear` is 0.

        Key k scores q^2 - (q-k)^2 for the query q, plus a recency term below 1 that
        favours later positions (compile_weights makes it a head). For integer keys the
        exact key beats every other and, among equal keys, the later position wins. The
        position-0 entry scores exactly 0 (its residual is zero): when no key scores
        >= 0 (nothing near q) the lookup returns 0. Otherwise, without an exact key,
        the nearest key wins: callers check exactness themselves. `key_sq` must equal
        key^2 exactly; `clear` must be one residual value (so that
        compile_weights.CLEAR_BIG never meets cancellation in a dot product)."""
        if clear is not None:
            assert len(clear.terms) == 1, "clear must be a single residual value"
        values = [Lin.of(v) for v in values]
        assert 1 <= len(values) <= 2 and len(names) == len(values)
        self.nodes.append({"kind": "lookup", "mode": "latest", "names": [self._new_name(n) for n in names],
                           "query": Lin.of(query), "key": Lin.of(key), "key_sq": Lin.of(key_sq),
                           "clear": clear, "values": values})
        return [Lin({n: 1}) for n in names]

    def mean(self, names, values):
        """Average attention over positions 1..p: query (0, 1), key (0, one), tie mode
        average; every position >= 1 ties at score 1, position 0 scores 0 and drops out."""
        values = [Lin.of(v) for v in values]
        self.nodes.append({"kind": "lookup", "mode": "average", "names": [self._new_name(n) for n in names],
                           "query": Lin(), "key": Lin(), "key_sq": Lin(), "clear": None, "values": values})
        return [Lin({n: 1}) for n in names]


def step_terms(a, b, coef=1):
    """a * [b >= 0] for integer b: reglu(a, b+1) - reglu(a, b) (two neurons)."""
    return [(coef, a, b + 1), (-coef, a, b)]


def gated_step_terms(x, gate, coef=1, big=STEP_GATE):
    """[x >= 0 and gate] for integer x, gate = 1 or <= 0 (exact integers):
    the step on x + big*(gate-1), which is x when gate = 1 and < 0 otherwise (|x| < big).
    Exactness: every partial sum of the pre-activation's dot product must stay below
    2^53: big * (the gate's partial sums) + |x| (an is_op gate: < 2^14 * 2^35 = 2^49)."""
    shift = big * (Lin.of(gate) - 1)
    return step_terms(ONE, x + shift, coef)


def scaled(terms, factor):
    """The same neurons with their output coefficients multiplied by `factor`."""
    return [(c * factor, a, b) for c, a, b in terms]


def gated_terms(value, gate, coef=1):
    """value * gate for gate = 1 or <= 0: reglu(value, gate), one neuron, or one more
    per rounded sum in `value` (see exact_parts)."""
    return [(coef, part, gate) for part in exact_parts(value)]


def exact_parts(lin):
    """Split a linear expression so that every rounded sum (a slot holding
    ROUND_BIAS + n, read as c * (slot - ROUND_BIAS)) gets a neuron row of its own with
    exactly two non-zero terms, c*slot - c*ROUND_BIAS*one. Two products and one sum are
    exact in any order when the result is a small integer, while a row mixing
    c * 6.8e15 with small terms loses them whenever a matrix product happens to add the
    small terms to the big one first (c > 1 puts the partial sums past 2^53)."""
    lin = Lin.of(lin)
    parts = []
    for name, c in lin.terms.items():
        if name.endswith(ROUNDED_SUFFIX) and abs(c) != 1:
            parts.append(Lin({name: c, "one": -c * ROUND_BIAS}))
    rest = lin - sum(parts, Lin())
    return [rest] + parts if rest.terms else parts


def exact_sum(g, name, mean):
    """Sum over positions 1..p = mean * p, rounded to the integer it is: the slot gets
    ROUND_BIAS + mean*p (two terms of one dot product, one rounding), so it holds
    ROUND_BIAS + sum exactly; readers subtract ROUND_BIAS with coefficient exactly 1."""
    return g.ffn(name + ROUNDED_SUFFIX, [(1, mean, POSITION), (ROUND_BIAS, ONE, ONE)]) - ROUND_BIAS


# ---------------------------------------------------------------------------
# 2. The graph evaluator (exact arithmetic, no weights)
# ---------------------------------------------------------------------------

class _LatestTable:
    """Exact semantics of a latest-write lookup: the latest uncleared entry per key,
    the nearest key when there is no exact one (the later of two equidistant keys)."""

    def __init__(self):
        self.keys = []      # sorted distinct keys
        self.latest = {}    # key -> (position, values)

    def insert(self, p, key, values):
        if key not in self.latest:
            bisect.insort(self.keys, key)
        self.latest[key] = (p, values)

    def query(self, q, n_values):
        if q in self.latest:
            return self.latest[q][1]
        i = bisect.bisect_left(self.keys, q)
        candidates = [self.keys[j] for j in (i - 1, i) if 0 <= j < len(self.keys)]
        best = max(candidates, key=lambda k: (-(q - k) ** 2, self.latest[k][0]), default=None)
        if best is None or q * q - (q - best) ** 2 < 0:  # no key, or every key scores below the null entry
            return [0] * n_values
        return self.latest[best][1]


def _value(lin, env):
    return sum(c * env[k] for k, c in lin.terms.items())


class GraphEvaluator:
    """Runs a graph token by token with Python integers and Fractions: the middle
    rung between the reference interpreter and the weights."""

    def __init__(self, graph):
        self.graph = graph
        self.tables = [_LatestTable() if n["kind"] == "lookup" and n["mode"] == "latest" else [0, 0]
                       for n in graph.nodes]
        self.p = 0
        self.env = None

    def step(self, token):
        """Process one token at the next position; returns the env of named values."""
        p = self.p
        env = {"position": p, "inv_log_pos": 0, "position_sq": p * p, "one": 0 if p == 0 else 1}
        for name, f in self.graph.features.items():
            env[name] = f(token) if p > 0 or name in self.graph.position_zero_features else 0
        for node, table in zip(self.graph.nodes, self.tables):
            if node["kind"] == "ffn":
                env[node["name"]] = sum(c * _value(a, env) * max(_value(b, env), 0) for c, a, b in node["terms"])
                continue
            values = [_value(v, env) for v in node["values"]]
            if node["mode"] == "average":
                if p > 0:
                    table[0] += 1
                    table[1] = [s + v for s, v in zip(table[1], values)] if table[1] else values
                outs = [Fraction(s, table[0]) for s in table[1]] if p > 0 else [0] * len(values)
            else:
                clear = _value(node["clear"], env) if node["clear"] is not None else 0
                if p > 0 and clear <= 0:
                    table.insert(p, _value(node["key"], env), values)
                outs = table.query(_value(node["query"], env), len(values)) if p > 0 else [0] * len(values)
            for name, v in zip(node["names"], outs):
                env[name] = v
        self.p += 1
        self.env = env
        return env

    def next_token(self):
        """Argmax of the exact logits (the lowest vocabulary id among equal maxima)."""
        return max(sorted(self.graph.outputs),  # in id order (SPEC 1.2): max keeps the first maximum
                   key=lambda token: _value(self.graph.outputs[token], self.env))


def evaluate(graph, prompt, max_new_tokens=100_000):
    """Generate with the graph evaluator: the trace tokens after the prompt."""
    ev = GraphEvaluator(graph)
    for token in prompt:
        ev.step(token)
    trace = []
    while len(trace) < max_new_tokens:
        token = ev.next_token()
        trace.append(token)
        if token in reference.STOP_TOKENS:
            break
        ev.step(token)
    return trace
