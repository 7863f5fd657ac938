"""Bad arguments and inputs raise ValueError/TypeError naming the argument."""

import pytest
import torch

import lstmkit


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"proj_size": 6}, ValueError, "proj_size must be smaller than hidden_size"),
        ({"proj_size": -1}, ValueError, "proj_size must be >= 0"),
        ({"zoneout_h": 1.0}, ValueError, r"zoneout_h must be in \[0, 1\)"),
        ({"zoneout_c": -0.1}, ValueError, "zoneout_c"),
        ({"recurrent_dropout": 1.5}, ValueError, "recurrent_dropout"),
        ({"dropout": 0.2}, ValueError, "needs num_layers > 1"),
        ({"num_layers": 0}, ValueError, "num_layers must be >= 1"),
        ({"num_layers": 2.0}, TypeError, "num_layers must be an int"),
        ({"coupled": True, "forget_gate": False}, ValueError, "contradict"),
        ({"backend": "gpu"}, ValueError, "backend must be one of"),
        ({"backend": "torch", "layer_norm": True}, ValueError, "backend='torch' runs only"),
        ({"layer_norm": 1}, TypeError, "layer_norm must be a bool"),
    ],
)
def test_bad_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        lstmkit.LSTM(4, 6, **kwargs)


@pytest.mark.parametrize("variant", [{}, {"layer_norm": True}])
def test_bad_inputs(variant):
    m = lstmkit.LSTM(4, 6, 2, **variant)
    with pytest.raises(ValueError, match=r"input must be 3-D .* got 4-D"):
        m(torch.randn(2, 3, 4, 1))
    with pytest.raises(ValueError, match="input_size=4 features"):
        m(torch.randn(5, 2, 3))
    with pytest.raises(TypeError, match="dtype torch.float64 but the module's weights"):
        m(torch.randn(5, 2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating-point"):
        m(torch.ones(5, 2, 4, dtype=torch.long))
    with pytest.raises(
        ValueError, match=r"input has 0 time steps \(dimension 0 of shape \(0, 2, 4\)\)"
    ):
        m(torch.randn(0, 2, 4))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        m([[1.0]])
    x = torch.randn(5, 2, 4)
    with pytest.raises(
        ValueError, match=r"hx\[0\] \(h_0\) must have shape \(2, 2, 6\), got \(1, 2, 6\)"
    ):
        m(x, (torch.zeros(1, 2, 6), torch.zeros(2, 2, 6)))
    with pytest.raises(ValueError, match=r"hx\[1\] \(c_0\) must have shape \(2, 2, 6\)"):
        m(x, (torch.zeros(2, 2, 6), torch.zeros(2, 3, 6)))
    with pytest.raises(TypeError, match="hx must be a tuple"):
        m(x, torch.zeros(2, 2, 6))
    with pytest.raises(ValueError, match="for unbatched input must have shape"):
        m(torch.randn(5, 4), (torch.zeros(2, 1, 6), torch.zeros(2, 1, 6)))


def test_backend_cpu_needs_cpu_tensors():
    from lstmkit.kernels.dispatch import resolve_backend

    with pytest.raises(ValueError, match="needs CPU tensors"):
        resolve_backend("cpu", torch.device("meta"))
