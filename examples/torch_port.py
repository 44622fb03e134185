"""torch_port.py: wasmtf's architecture (SPEC 7.1) in PyTorch, as a port would write it.

The reference a port is checked against is wasmtf (tests/test_torch_port.py runs
this file token for token against it when torch is installed; notebook 4 uses it).
Parameter names are those of wasmtf's .npz (`wasmtf.save(model, "m.npz")`):
tok.weight, attn.{l}.in_proj_weight and attn.{l}.out_proj.weight (as in
torch.nn.MultiheadAttention with bias=False; head h uses dimensions 2h, 2h+1),
ff_in.{l}.weight, ff_out.{l}.weight, head.weight, and the buffer tie_latest [L, H].

Everything is float64. Hard attention is written out as SPEC 9 and
hull.hard_attention say: every score two products and one sum (qy == 0: by
extreme kx), the tied set compared exactly, latest heads taking the last tied
position, average heads the mean. Cost: O(T^2) per head, all positions at once.

    python examples/torch_port.py m.npz "{" ...     # the greedy tokens after a prompt
"""
import math
import sys

import numpy as np
import torch


class HardAttentionTransformer(torch.nn.Module):
    """SPEC 7.1 with the parameter names of wasmtf's .npz."""

    def __init__(self, V, D, F, L):
        super().__init__()
        self.D, self.F, self.L = D, F, L
        self.tok = torch.nn.Embedding(V, D)
        # in_proj_weight [3D, D] (queries, keys, values), out_proj.weight [D, D]; head h = dims 2h, 2h+1
        self.attn = torch.nn.ModuleList(torch.nn.MultiheadAttention(D, D // 2, bias=False) for _ in range(L))
        self.ff_in = torch.nn.ModuleList(torch.nn.Linear(D, 2 * F, bias=False) for _ in range(L))
        self.ff_out = torch.nn.ModuleList(torch.nn.Linear(F, D, bias=False) for _ in range(L))
        self.head = torch.nn.Linear(D, V, bias=False)
        self.register_buffer("tie_latest", torch.zeros(L, D // 2, dtype=torch.bool))

    @staticmethod
    def hard_attention(q, k, v, latest):
        """SPEC 9 for all positions: q, k, v [H, T, 2], latest [H] -> [H, T, 2]."""
        T = q.shape[1]
        kx, ky = k[..., 0][:, None, :], k[..., 1][:, None, :]                       # [H, 1, T]
        qx, qy = q[..., :1], q[..., 1:]                                             # [H, T, 1]
        scores = torch.where(qy != 0, qx * kx + qy * ky, torch.sign(qx) * kx)      # [H, T, T]: 2 products, 1 sum
        future = torch.ones(T, T, dtype=torch.bool).triu(1)                         # [T, T] j > i
        scores = scores.masked_fill(future, -math.inf)
        tied = scores == scores.amax(dim=-1, keepdim=True)                          # [H, T, T]
        counts = tied.sum(dim=-1, keepdim=True).double()                            # [H, T, 1]
        average = (tied.double() @ v) * (1 / counts)                                # [H, T, 2]
        last = T - 1 - tied.flip(-1).to(torch.int64).argmax(dim=-1)                 # [H, T] latest tied j
        newest = torch.gather(v, 1, last[..., None].expand(-1, -1, 2))              # [H, T, 2]
        return torch.where(latest[:, None, None], newest, average)

    def forward(self, ids):
        """ids [T] -> residuals [T, 2L+1, D] (as wasmtf.dump_activations), logits [T, V]."""
        T, D, H = ids.shape[0], self.D, self.D // 2
        p = torch.arange(T, dtype=torch.float64)                                     # [T]
        x = self.tok.weight[ids].clone()                                             # [T, D]
        x[:, 0] += p
        x[:, 1] += torch.tensor([1 / math.log(2) - 1 / math.log(i + 2) for i in range(T)],  # libm's log,
                                dtype=torch.float64)                                   # as SPEC 7.1
        x[:, 2] += p * p
        residuals = [x]
        for l in range(self.L):
            w = self.attn[l].in_proj_weight                                          # [3D, D]
            q, k, v = ((x @ w[i * D:(i + 1) * D].T).view(T, H, 2).transpose(0, 1) for i in range(3))  # [H, T, 2]
            o = self.hard_attention(q, k, v, self.tie_latest[l])                     # [H, T, 2]
            x = x + o.transpose(0, 1).reshape(T, D) @ self.attn[l].out_proj.weight.T
            residuals.append(x)
            f = self.ff_in[l](x)                                                     # [T, 2F]
            x = x + self.ff_out[l](torch.relu(f[:, :self.F]) * f[:, self.F:])
            residuals.append(x)
        return torch.stack(residuals, dim=1), self.head(x)


def load_port(npz_path):
    """The port with the weights of a wasmtf .npz file, float64, in eval mode; and the vocabulary."""
    with np.load(npz_path) as arrays:
        L = int(arrays["tie_latest"].shape[0])
        V, D = arrays["tok.weight"].shape
        F = arrays["ff_out.0.weight"].shape[1] if L else 0
        model = HardAttentionTransformer(V, D, F, L).double()
        model.load_state_dict({key: torch.from_numpy(arrays[key]) for key in model.state_dict()})
        vocab = [str(token) for token in arrays["vocab"]]
    return model.eval(), vocab


def greedy(model, vocab, prompt, stop_tokens, max_new_tokens):
    """Greedy decoding by whole forward passes (O(T^3) overall: a check, not a runtime)."""
    ids = [vocab.index(token) for token in prompt]
    generated = []
    with torch.no_grad():
        while len(generated) < max_new_tokens:
            _, logits = model(torch.tensor(ids))
            generated.append(vocab[int(logits[-1].argmax())])
            if generated[-1] in stop_tokens:
                break
            ids.append(vocab.index(generated[-1]))
    return generated


if __name__ == "__main__":
    port, tokens = load_port(sys.argv[1])
    with np.load(sys.argv[1]) as npz:
        stops = {str(token) for token in npz["stop_tokens"]}
    print(" ".join(greedy(port, tokens, sys.argv[2:], stops, max_new_tokens=200)))
