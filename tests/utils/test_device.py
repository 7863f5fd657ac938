"""``--device`` resolution (utils/device.py), shared by training and every use verb."""

import pytest
import torch

from lstmkit.utils.device import DEVICES, resolve_device
from lstmkit.utils.errors import UserError


def test_names_and_errors(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="--device must be auto, cpu or cuda, got 'gpu'"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="no CUDA device is available"):
        resolve_device("cuda")
    assert DEVICES == ("auto", "cpu", "cuda")


def test_each_process_takes_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [resolve_device("auto", rank) for rank in range(3)] == [
        torch.device("cuda", 0),
        torch.device("cuda", 1),
        torch.device("cuda", 0),
    ]


def test_a_numbered_gpu_is_that_gpu(monkeypatch):
    # lstmkit.load(..., device="cuda:1") is documented (api.load); the number picks the GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda", 0)
    with pytest.raises(UserError, match=r"device cuda:2: no such CUDA device \(2 available"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"no such CUDA device \(0 available"):
        resolve_device("cuda:0")
    with pytest.raises(UserError, match="--device must be"):
        resolve_device("cuda:x")
