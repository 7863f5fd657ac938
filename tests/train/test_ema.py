"""--ema: the moving average of the weights, what is saved, and resume."""

import pytest
import torch
from torch import nn

from lstmkit.tasks.longlag import AddingTask
from lstmkit.train.checkpoint import load_checkpoint
from lstmkit.train.config import TrainConfig
from lstmkit.train.ema import WeightAverage
from lstmkit.train.trainer import check_config, train
from lstmkit.utils.errors import UserError


def test_average_follows_the_recursion_with_its_warm_up_ramp():
    lin = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = WeightAverage(lin, decay=0.9)
    expected = 0.0
    for t, w in enumerate([1.0, 2.0, -3.0, 4.0, 0.5] * 20, start=1):
        with torch.no_grad():
            lin.weight.fill_(w)
        ema.update()
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * w
        assert ema.average[0].item() == pytest.approx(expected, rel=1e-6)
    assert ema.current_decay() == 0.9  # the ramp has reached the decay


def test_applied_swaps_the_average_in_and_restores_the_weights():
    lin = nn.Linear(3, 2)
    frozen = nn.Parameter(torch.ones(2), requires_grad=False)
    lin.register_parameter("frozen", frozen)
    ema = WeightAverage(lin, decay=0.5)
    assert [n for n, _ in ema.named] == ["weight", "bias"]  # frozen parameters are not averaged
    raw = {k: v.clone() for k, v in lin.state_dict().items()}
    for a in ema.average:
        a.add_(1.0)
    with ema.applied():
        torch.testing.assert_close(lin.weight, raw["weight"] + 1)
    for k, v in lin.state_dict().items():
        assert torch.equal(v, raw[k]), k


def test_bad_decay_names_the_option():
    with pytest.raises(UserError, match="--ema"):
        check_config(TrainConfig(ema=1.0))
    with pytest.raises(UserError, match="--ema"):
        WeightAverage(nn.Linear(1, 1), 0.0)


def _task():
    return AddingTask(
        AddingTask.Config(seq_len=10, n_valid=100, n_test=100),
        AddingTask.ModelConfig(hidden_size=8),
    )


def _cfg(out, **kw):
    base = dict(batch_size=16, lr=1e-2, device="cpu", progress=False, threads=1)
    base |= dict(ema=0.8, stop_when_solved=False)
    return TrainConfig(out=str(out), **{**base, **kw})


def test_best_holds_the_average_and_resume_continues_it(tmp_path):
    # one evaluation, at the last step: best/ is the average at step 20, last/ the raw weights
    train(_task(), _cfg(tmp_path / "whole", steps=20, eval_every=20))
    best = load_checkpoint(tmp_path / "whole" / "best")
    last = load_checkpoint(tmp_path / "whole" / "last", trainer=True)
    assert best.meta["step"] == last.meta["step"] == 20
    assert last.trainer_meta["ema_updates"] == 20
    for name, value in best.weights.items():
        assert torch.equal(value, last.trainer_tensors["ema." + name]), name
    assert not torch.equal(best.weights["head.weight"], last.weights["head.weight"])

    # stopped at 10 and resumed to 20: the same average as the run that was never stopped
    train(_task(), _cfg(tmp_path / "split", steps=10, eval_every=10))
    train(_task(), _cfg(tmp_path / "split", steps=20, eval_every=10, resume=True))
    again = load_checkpoint(tmp_path / "split" / "last", trainer=True)
    for name, value in last.trainer_tensors.items():
        if name.startswith("ema."):
            assert torch.equal(value, again.trainer_tensors[name]), name

    # a run trained without --ema cannot be resumed with it
    train(_task(), _cfg(tmp_path / "plain", steps=10, eval_every=10, ema=0.0))
    with pytest.raises(UserError, match="without --ema"):
        train(_task(), _cfg(tmp_path / "plain", steps=20, eval_every=10, resume=True))
