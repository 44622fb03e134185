"""Insert+query steps per second of HullHead and BruteHead, t = 10^3 .. 10^6.

One step = insert(key, value) then query(q), as the forward pass does for
each head at each position. Three key families:

* parabolic, increasing k: the machine's position lookups, key
  (2p, -p^2 + 0.3*inv_log_pos(p)) at position p, query c*(k*, 1) for a random
  earlier position k*, c = HARD_K*sqrt(2) (the hull's parabolic path);
* parabolic, any order: memory-style lookups, k a random address in [0, t)
  (repeats included: keys under column tops), same recency term and queries
  (the parabolic path);
* random keys: uniform in [-1, 1]^2, random query directions (the general path).

For each t it prints the hull's steps per second over a whole run of t steps,
the hull's and the brute scan's cost per step at size t (the mean over the
last steps of a run, the brute scan being filled without queries first), and
their ratio; then the positions per second of causal_hard_attention (all
positions of a sequence at once, one HullHead) on the same keys; then, per family, the
cost per step at the largest t over that at 10^3, and per t the cost of
"parabolic, any order" over "parabolic, increasing k". Targets: hull >=
150,000 steps/s on parabolic keys; per-step cost at 10^6 <= 1.5x that at
10^3; hull >= 100x faster than brute at 10^5 (issue 17: on both parabolic
families); any order <= 2x increasing k at every t (issue 17).

--against REV also runs git revision REV's hull.py (written to a temporary
directory and imported as another module) on the same steps, alternating with
this checkout's, and prints its cost per step at t and REV's / this one's.

    python benchmarks/hull_scaling.py [MAX_T] [--against REV]
"""
import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from hull import HARD_K, BruteHead, HullHead, causal_hard_attention  # noqa: E402
from revision import module_at  # noqa: E402 (benchmarks/revision.py)

QUERY_SCALE = HARD_K * np.sqrt(2)     # as the compiled query rows (SPEC 7.1)
INV_LN2 = 1.0 / np.log(2.0)
SIZES = (10 ** 3, 10 ** 4, 10 ** 5, 10 ** 6)
# CPU seconds of this process: the machine is shared, and a step that waits
# for a core should not count (cache misses caused by others still do).
clock = time.process_time
HULL_WINDOW = 10 ** 4                 # steps timed at the end of a run for "cost at t"
BRUTE_WINDOW = {10 ** 3: 1000, 10 ** 4: 1000, 10 ** 5: 200, 10 ** 6: 40}


def parabolic_steps(t, increasing, rng):
    """Keys (2k, -k^2 + 0.3*inv_log_pos(p)), values, queries c*(k*, 1): Python floats."""
    positions = np.arange(t)                                        # [t]
    if increasing:
        ks = positions.astype(np.float64)                           # [t]
    else:
        ks = rng.integers(0, t, size=t).astype(np.float64)         # [t]
    recency = 0.3 * (INV_LN2 - 1.0 / np.log(positions + 2.0))     # [t]
    earlier = (rng.random(t) * (positions + 1)).astype(np.int64)   # [t], in [0, p]
    targets = ks[earlier]                                           # [t] a key written before
    return list(zip((2.0 * ks).tolist(), (-ks * ks + recency).tolist(),
                    positions.astype(np.float64).tolist(), np.ones(t).tolist(),
                    (QUERY_SCALE * targets).tolist(), np.full(t, QUERY_SCALE).tolist()))


def random_steps(t, rng):
    keys = rng.uniform(-1.0, 1.0, size=(t, 2))                      # [t, 2]
    values = rng.uniform(-1.0, 1.0, size=(t, 2))                    # [t, 2]
    queries = rng.normal(size=(t, 2))                               # [t, 2]
    return list(zip(*keys.T.tolist(), *values.T.tolist(), *queries.T.tolist()))


def run(head, steps):
    """Seconds for all steps and for the last HULL_WINDOW of them."""
    insert = head.insert
    query = head.query
    window_start = max(len(steps) - HULL_WINDOW, 0)
    start = clock()
    for kx, ky, vx, vy, qx, qy in steps[:window_start]:
        insert(kx, ky, vx, vy)
        query(qx, qy)
    middle = clock()
    for kx, ky, vx, vy, qx, qy in steps[window_start:]:
        insert(kx, ky, vx, vy)
        query(qx, qy)
    end = clock()
    return end - start, (end - middle) / (len(steps) - window_start)


def brute_cost_at(steps, window):
    """Seconds per step of BruteHead once it holds len(steps) - window keys."""
    head = BruteHead(latest=True)
    for kx, ky, vx, vy, _, _ in steps[:-window]:
        head.insert(kx, ky, vx, vy)
    start = clock()
    for kx, ky, vx, vy, qx, qy in steps[-window:]:
        head.insert(kx, ky, vx, vy)
        head.query(qx, qy)
    return (clock() - start) / window


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("max_t", nargs="?", default=str(SIZES[-1]), help="largest t (default 1e6)")
    parser.add_argument("--against", metavar="REV", help="also run git revision REV's hull.py")
    args = parser.parse_args()
    max_t = int(float(args.max_t))
    with tempfile.TemporaryDirectory() as directory:
        other = module_at(args.against, "hull", directory) if args.against else None
        report(max_t, other, args.against)


def report(max_t, other, revision):
    rng = np.random.default_rng(2026)
    families = {
        "parabolic, increasing k": lambda t: parabolic_steps(t, True, rng),
        "parabolic, any order": lambda t: parabolic_steps(t, False, rng),
        "random keys": lambda t: random_steps(t, rng),
    }
    extra_head = ("  %13s %11s" % (f"{revision} us/step", f"{revision}/this")) if other else ""
    extra_under = ("  %13s %11s" % ("(at t)", "(at t)")) if other else ""
    print("%-24s %9s %13s %13s %14s %11s" % ("keys", "t", "hull steps/s", "hull us/step",
                                             "brute us/step", "brute/hull") + extra_head)
    print("%-24s %9s %13s %13s %14s %11s" % ("", "", "(whole run)", "(at t)", "(at t)", "(at t)")
          + extra_under)
    summary = {}
    for name, make_steps in families.items():
        for t in [size for size in SIZES if size <= max_t]:
            steps = make_steps(t)
            repeats = 3 if t <= 10 ** 5 else 1           # best of: the machine is shared
            timings, other_timings = [], []
            for _ in range(repeats):                     # alternating with REV's
                timings.append(run(HullHead(latest=True), steps))
                if other:
                    other_timings.append(run(other.HullHead(latest=True), steps))
            total = min(total for total, _ in timings)
            hull_cost = min(cost for _, cost in timings)
            brute_cost = brute_cost_at(steps, min(BRUTE_WINDOW[t], t))
            summary[name, t] = (t / total, hull_cost, brute_cost)
            extra = ""
            if other:
                other_cost = min(cost for _, cost in other_timings)
                extra = "  %13.2f %11.2f" % (1e6 * other_cost, other_cost / hull_cost)
            print("%-24s %9d %13.0f %13.2f %14.2f %11.0f" % (name, t, t / total, 1e6 * hull_cost,
                                                              1e6 * brute_cost, brute_cost / hull_cost) + extra)
    print()
    print("%-24s %9s %13s" % ("causal_hard_attention", "t", "positions/s"))
    for name, make_steps in families.items():
        for t in [size for size in SIZES if size <= max_t]:
            steps = np.array(make_steps(t))                  # [t, 6]
            start = clock()
            causal_hard_attention(steps[:, 0:2], steps[:, 2:4], steps[:, 4:6], latest=True)
            print("%-24s %9d %13.0f" % (name, t, t / (clock() - start)))
    print()
    for name in families:
        sizes = [t for t in SIZES if (name, t) in summary]
        first, last = sizes[0], sizes[-1]
        growth = summary[name, last][1] / summary[name, first][1]
        print("%-24s cost per step at t=%d / at t=%d: %.2f" % (name, last, first, growth))
    for t in SIZES:
        if ("parabolic, any order", t) in summary:
            ratio = summary["parabolic, any order", t][1] / summary["parabolic, increasing k", t][1]
            print("parabolic cost per step at t=%-8d any order / increasing k: %.2f" % (t, ratio))


if __name__ == "__main__":
    main()
