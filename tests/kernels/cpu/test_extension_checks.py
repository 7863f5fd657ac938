"""The C++ extension's own checks (TORCH_CHECK), called directly, past the Python ones.

Each case runs in a subprocess: before these checks, some inputs crashed the process
(H = 0 divided by zero) instead of raising.
"""

import subprocess
import sys
import textwrap

import pytest

from lstmkit.kernels.cpu import recurrence

if not recurrence.is_available():
    pytest.skip(
        f"fused CPU extension unavailable: {recurrence.build_error()}", allow_module_level=True
    )


def test_extension_rejects_what_it_cannot_run():
    code = textwrap.dedent(
        """
        import torch
        from lstmkit.kernels.cpu import recurrence
        from lstmkit.reference.options import CellOptions
        from lstmkit.reference.recurrence import RecurrenceInputs
        ext = recurrence.load_extension()
        T, B, H = 3, 2, 4
        f = torch.float64
        def call(xg, h0, c0, w, bs=None, ln=None, eps=1e-5):
            inputs = RecurrenceInputs(xg, h0, c0, w, ln_weight_hh=ln)
            return ext.forward(inputs, bs, False, CellOptions(layer_norm_eps=eps), True)
        good = (torch.randn(T, B, 4 * H, dtype=f), torch.zeros(B, H, dtype=f),
                torch.zeros(B, H, dtype=f), torch.randn(4 * H, H, dtype=f))
        call(*good)  # the baseline runs
        cases = {
            "H = 0": lambda: call(torch.randn(T, B, 0, dtype=f), torch.zeros(B, 0, dtype=f),
                                  torch.zeros(B, 0, dtype=f), torch.randn(0, 0, dtype=f)),
            "bs float": lambda: call(*good, bs=torch.tensor([2.0, 1.5, 1.0])),
            "bs int32": lambda: call(*good, bs=torch.tensor([2, 1, 1], dtype=torch.int32)),
            "bs > B": lambda: call(*good, bs=torch.tensor([3, 1, 1])),
            "sparse xg": lambda: call(good[0].to_sparse(), *good[1:]),
            "eps 0": lambda: call(*good, ln=torch.ones(4 * H, dtype=f), eps=0.0),
            "eps nan": lambda: call(*good, ln=torch.ones(4 * H, dtype=f), eps=float("nan")),
        }
        for name, fn in cases.items():
            try:
                fn()
            except RuntimeError as e:
                print("raised", name, "|", str(e).splitlines()[0], flush=True)
            else:
                print("ACCEPTED", name, flush=True)
        print("done")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "ACCEPTED" not in r.stdout, r.stdout
    assert r.stdout.count("raised") == 7, r.stdout
    assert "H >= 1" in r.stdout
    assert "layer_norm_eps must be positive and finite" in r.stdout
