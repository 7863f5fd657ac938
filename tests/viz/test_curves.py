"""Training curves drawn from train.jsonl events: what goes in each panel, and the PNG."""

import math

import numpy as np
import pytest

from lstmkit.viz.curves import baseline_of, metric_names, plot_training_curves


def _events(n_evals=4, every=10, loss_is_mse=True, resume_at=None):
    events = [{"event": "start", "step": 0, "world": 1}]
    for k in range(1, n_evals + 1):
        step = k * every
        events.append({"event": "train", "step": step, "loss": 1.0 / k, "lr": 0.01})
        mse = 0.5 / k
        valid = {"event": "valid", "step": step, "sequences": 16 * step, "mse": mse}
        valid |= {"loss": mse if loss_is_mse else mse + 1, "baseline_mse": 0.1667}
        events.append({**valid, "correct": 0.1 * k, "solved": False})
        if resume_at == step:
            events.append({"event": "resume", "step": step, "world": 1})
    events.append({"event": "test", "step": n_evals * every, "loss": 0.12, "mse": 0.12})
    return events


def _png_size(path):
    import matplotlib.image

    img = matplotlib.image.imread(path)
    return img.shape[1], img.shape[0]


def test_metric_names_are_the_logged_numbers_without_counters_or_baselines():
    assert metric_names(_events()) == ["loss", "lr", "mse", "correct"]


def test_baseline_of_a_metric_and_of_a_loss_that_is_the_mse():
    assert baseline_of(_events(), "mse") == ("baseline_mse", 0.1667)
    assert baseline_of(_events(), "loss") == ("baseline_mse", 0.1667)  # adding: loss == MSE
    assert baseline_of(_events(loss_is_mse=False), "loss") is None
    assert baseline_of(_events(), "correct") is None
    copy = [{"event": "valid", "step": 5, "loss": 0.2, "baseline_loss": 0.3}]
    assert baseline_of(copy, "loss") == ("baseline_loss", 0.3)


def test_one_run_draws_its_metrics_side_by_side(tmp_path):
    one = plot_training_curves(
        {"run": _events(resume_at=20)}, tmp_path / "one.png", metrics=["loss"], title="t"
    )
    two = plot_training_curves(
        {"run": _events()}, tmp_path / "two.png", metrics=["loss", "correct"], title="t"
    )
    assert one.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    (w1, h1), (w2, h2) = _png_size(one), _png_size(two)
    assert h1 == h2 and w2 > 1.8 * w1  # a second panel beside the first, not below it


def test_several_runs_are_columns_and_metrics_rows(tmp_path):
    runs = {"a": _events(), "b": _events(n_evals=2), "c": _events(loss_is_mse=False)}
    path = plot_training_curves(runs, tmp_path / "runs.png", metrics=["loss", "mse"])
    single = plot_training_curves({"a": _events()}, tmp_path / "a.png", metrics=["loss"])
    (w, h), (w1, h1) = _png_size(path), _png_size(single)
    assert w > 2.7 * w1 and h > 1.8 * h1


def test_a_metric_one_run_lacks_leaves_a_note_and_none_is_an_error(tmp_path):
    runs = {"a": _events(), "b": [{"event": "train", "step": 1, "loss": 1.0}]}
    assert plot_training_curves(runs, tmp_path / "p.png", metrics=["mse"]).exists()
    with pytest.raises(ValueError, match="no run logged accuracy"):
        plot_training_curves(runs, tmp_path / "q.png", metrics=["accuracy"])
    with pytest.raises(ValueError, match="no runs"):
        plot_training_curves({}, tmp_path / "q.png", metrics=["loss"])
    assert not (tmp_path / "q.png").exists()


def test_non_finite_values_are_left_out_not_drawn(tmp_path):
    events = _events()
    events.insert(2, {"event": "train", "step": 15, "loss": math.nan, "lr": 0.01})
    events.insert(2, {"event": "train", "step": 16, "loss": math.inf, "lr": 0.01})
    path = plot_training_curves({"r": events}, tmp_path / "nan.png", metrics=["loss"])
    img = np.asarray(__import__("matplotlib.image").image.imread(path))
    assert img.shape[2] in (3, 4) and img[..., :3].std() > 0  # drawn, not blank
