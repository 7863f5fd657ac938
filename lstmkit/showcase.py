"""A short tour of the core API: what ``lstmkit demo`` runs until the task demo lands.

It checks the drop-in against torch.nn.LSTM on this machine, runs every variant through the
fast path, and records gates, printing what it sees.
"""

from __future__ import annotations

import time
import warnings

import torch

import lstmkit
from lstmkit.kernels import dispatch


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def main() -> int:
    torch.manual_seed(0)
    # torch's own note that oneDNN skips projections is not news to the user of this tour
    warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
    backend = dispatch.resolve_backend("auto", torch.device("cpu"))
    print(
        f"lstmkit {lstmkit.__version__} on torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads\n"
    )

    # 1. Drop-in: load torch's weights, compare outputs and gradients.
    ref = torch.nn.LSTM(16, 32, num_layers=2, bidirectional=True, proj_size=8, batch_first=True)
    ours = lstmkit.LSTM(
        16, 32, num_layers=2, bidirectional=True, proj_size=8, batch_first=True, backend=backend
    )
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 20, 16)
    (o1, (h1, c1)), (o2, (h2, c2)) = ref(x), ours(x)
    g1 = torch.autograd.grad(o1.sum(), list(ref.parameters()))
    g2 = torch.autograd.grad(o2.sum(), list(ours.parameters()))
    grad_diff = max(_max_diff(a, b) for a, b in zip(g1, g2, strict=True))
    print(
        "1. drop-in for torch.nn.LSTM (2 layers, bidirectional, proj_size=8), "
        f"run on lstmkit's own '{backend}' kernel:"
    )
    print(
        f"   max |output diff| {_max_diff(o1, o2):.2e}, |h_n| {_max_diff(h1, h2):.2e}, "
        f"|c_n| {_max_diff(c1, c2):.2e}, |grad| {grad_diff:.2e}\n"
    )

    # 2. Variants through the fused path.
    print(f"2. variants (backend '{backend}'), T=100 B=32 I=128 H=256, forward+backward:")
    x = torch.randn(100, 32, 128, requires_grad=True)
    variants = {
        "torch.nn.LSTM": None,
        "layer_norm": {"layer_norm": True},
        "peephole": {"peephole": True},
        "coupled (CIFG)": {"coupled": True},
        "zoneout 0.1": {"zoneout_h": 0.1, "zoneout_c": 0.1},
        "projection 64": {"proj_size": 64},
    }
    base = None
    for name, kw in variants.items():
        m = torch.nn.LSTM(128, 256) if kw is None else lstmkit.LSTM(128, 256, **kw)
        m(x)[0].sum().backward()  # warm-up (builds the kernel on first use)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            m(x)[0].sum().backward()
            times.append(time.perf_counter() - t0)
        t = sorted(times)[2] * 1e3
        base = base or t
        print(f"   {name:<16} {t:7.1f} ms   {t / base:4.2f}x torch")
    print("   (full table: lstmkit bench)\n")

    # 3. Gates.
    m = lstmkit.LSTM(1, 8, forget_bias=1.0).eval()
    seq = torch.zeros(30, 1, 1)
    seq[5] = 1.0
    with lstmkit.record_gates(m) as gates:
        m(seq)
    tr = gates[0, 0]
    print("3. gate recording (untrained LSTM, H=8, an impulse at t=5):")
    print("   mean over units   t=4    t=5    t=6")
    for k in ("i", "f", "o", "c"):
        v = getattr(tr, k)[:, 0].mean(-1)
        print(f"   {k:<16} {v[4]:6.3f} {v[5]:6.3f} {v[6]:6.3f}")
    print("\nNext: `make test` runs the suite; `lstmkit bench` prints the speed table.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
