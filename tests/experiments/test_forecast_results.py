"""The forecast results' summary: mean and sample spread over seeds, failed runs left out."""

import pytest

from lstmkit.experiments.forecast_results import PUBLISHED, summarise


def test_summary_over_seeds():
    runs = [
        {"model": "lstm", "horizon": 24, "cpu_s": 10, "test": {"mse": 0.1, "mae": 0.2}},
        {"model": "lstm", "horizon": 24, "cpu_s": 12, "test": {"mse": 0.3, "mae": 0.4}},
        {"model": "lstm", "horizon": 48, "error": 2},
    ]
    s = summarise(runs)
    assert list(s) == ["lstm@24"]
    assert s["lstm@24"]["mse_mean"] == pytest.approx(0.2)
    assert s["lstm@24"]["mse_sd"] == pytest.approx(0.1414213562)
    assert s["lstm@24"]["seeds"] == 2
    assert PUBLISHED[("informer", "S")]["DeepAR"][24] == 0.107


def test_added_runs_replace_the_same_model_horizon_and_seed_in_place():
    from lstmkit.experiments.forecast_results import merge_runs

    old = [{"model": "a", "horizon": 96, "seed": 0, "v": 1},
           {"model": "b", "horizon": 96, "seed": 0, "v": 2}]  # fmt: skip
    new = [{"model": "b", "horizon": 96, "seed": 0, "v": 3},
           {"model": "b", "horizon": 96, "seed": 1, "v": 4}]  # fmt: skip
    assert [r["v"] for r in merge_runs(old, new)] == [1, 3, 4]
