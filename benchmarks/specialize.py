"""Programs in the weights (compile_weights section 4): what a specialized model costs.

    python benchmarks/specialize.py             # all four tables
    python benchmarks/specialize.py --tokens N  # tokens per decoding run (default 30,000)

1. weight growth per program instruction: fetch neurons and parameters against the
   program size, as a least-squares slope over the demos;
2. every demo's specialized model: shape, parameters, .npz and model.bin sizes;
3. the time to specialize (build + emit) and to save, per demo (Sudoku's target: < 5 s);
4. sequential decoding (hull cache) of specialized and universal models on Hungarian
   and collatz, interleaved round by round on the same prefix of the trace (the
   machine is shared and noisy: compare the ratio, not the absolute rates).
Every decoded prefix is checked against the reference trace.
"""
import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import compile_weights as cw  # noqa: E402
import frontend  # noqa: E402
import reference  # noqa: E402
import wasmtf  # noqa: E402

DEMOS = ["hello", "add", "addition", "fibonacci", "collatz", "hungarian", "sudoku"]
SPEED_DEMOS = ["hungarian", "collatz"]
ROUNDS = 3        # interleaved decoding rounds per model and demo (the median is reported)
SPECIALIZE_REPEATS = 3


def load(name):
    return frontend.load_program_file(REPO / "examples" / (name + ".wasm"))


def nonzero_parameters(model):
    arrays = [model["embed"], model["head"]] + [layer[k] for layer in model["layers"]
                                                for k in ("w_qkv", "w_out", "w_in", "w_ffo")]
    return sum(int(np.count_nonzero(a)) for a in arrays)


def fetch_layer_width(model):
    """Neurons of the widest feed-forward: the fetch layer (layer 2) of a specialized model."""
    return max(layer["w_ffo"].shape[1] for layer in model["layers"])


def growth_and_sizes(programs):
    universal = cw.compile_machine()
    u_shape = cw.describe_shape(universal)
    print(f"universal machine: {u_shape}, {nonzero_parameters(universal):,} non-zero parameters")
    print(f"\n{'demo':10} {'instr':>6} {'fetch neurons':>13} {'d_ffn':>26} {'parameters':>11} "
          f"{'non-zero':>9} {'.npz bytes':>11} {'.bin bytes':>11} {'universal .bin':>14}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wasmtf.save(universal, pathlib.Path(tmp) / "u.bin")
        u_bin = (pathlib.Path(tmp) / "u.bin").stat().st_size
        for name, (instructions, _) in programs.items():
            model = cw.specialize(instructions)
            shape = cw.describe_shape(model)
            sizes = []
            for suffix in (".npz", ".bin"):
                path = pathlib.Path(tmp) / (name + suffix)
                wasmtf.save(model, path)
                sizes.append(path.stat().st_size)
            neurons = len(cw.fetch_neurons(instructions))
            rows.append((len(instructions), neurons, shape["parameters"], nonzero_parameters(model)))
            print(f"{name:10} {len(instructions):6,} {neurons:13,} {str(shape['d_ffn']):>26} "
                  f"{shape['parameters']:11,} {nonzero_parameters(model):9,} {sizes[0]:11,} {sizes[1]:11,} "
                  f"{u_bin:14,}")
    n, neurons, params, nonzero = (np.array(column, dtype=float) for column in zip(*rows))
    slope = lambda y: np.polyfit(n, y, 1)[0]  # least squares over the demos
    print(f"\ngrowth per instruction (least-squares slope over the {len(rows)} demos): "
          f"{slope(neurons):.3f} fetch neurons, {slope(params):,.0f} parameters "
          f"(3 * D = {3 * cw.describe_shape(cw.specialize(programs['hello'][0]))['d_model']} per neuron: "
          f"two rows of W_in, one column of W_ffo), {slope(nonzero):.1f} non-zero parameters; "
          f"transformer-vm: 2 neurons per step")


def specialize_times(programs):
    print(f"\n{'demo':10} {'instr':>6} {'specialize s':>13} {'+ save .npz s':>14}   (median of {SPECIALIZE_REPEATS})")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (instructions, _) in programs.items():
            build, total = [], []
            for _ in range(SPECIALIZE_REPEATS):
                start = time.perf_counter()
                model = cw.specialize(instructions)
                built = time.perf_counter()
                wasmtf.save(model, pathlib.Path(tmp) / "m.npz")
                build.append(built - start)
                total.append(time.perf_counter() - start)
            print(f"{name:10} {len(instructions):6,} {np.median(build):13.2f} {np.median(total):14.2f}")


def decoding_speed(programs, tokens):
    universal = cw.compile_machine()
    print(f"\nsequential decoding, hull cache, first {tokens:,} trace tokens, {ROUNDS} interleaved rounds "
          f"(median tokens/s)")
    print(f"{'demo':10} {'universal':>10} {'specialized':>12} {'ratio spec/univ':>16}  check")
    for name in SPEED_DEMOS:
        instructions, input_bytes = programs[name]
        expected = reference.run_reference(instructions, input_bytes)[:tokens]
        models = {"universal": universal, "specialized": cw.specialize(instructions)}
        plans = {kind: wasmtf.prepare(model) for kind, model in models.items()}
        rates = {kind: [] for kind in models}
        equal = True
        for _ in range(ROUNDS):
            for kind, model in models.items():
                prompt = wasmtf.program_prompt(model, instructions, input_bytes)
                start = time.perf_counter()
                trace = wasmtf.generate(model, prompt, max_new_tokens=len(expected), plan=plans[kind])
                rates[kind].append(len(trace) / (time.perf_counter() - start))
                equal &= trace == expected
        u, s = np.median(rates["universal"]), np.median(rates["specialized"])
        print(f"{name:10} {u:10,.0f} {s:12,.0f} {s / u:16.2f}  {'equal' if equal else 'DIFFERENT'}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=30_000, help="trace tokens per decoding run")
    args = parser.parse_args()
    programs = {name: load(name) for name in DEMOS}
    growth_and_sizes(programs)
    specialize_times(programs)
    decoding_speed(programs, args.tokens)


if __name__ == "__main__":
    main()
