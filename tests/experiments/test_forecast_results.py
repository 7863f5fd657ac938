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


def test_the_report_is_rewritten_after_every_run(tmp_path, monkeypatch):
    """A long report cut off (here the second run raises) keeps the runs it finished."""
    import json

    from lstmkit.experiments import forecast_results as fr

    calls = []

    def fake_run(protocol, features, horizon, model, seed, *rest):
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return {"model": model, "horizon": horizon, "seed": seed, "cpu_s": 1.0,
                "test": {"mse": 0.5, "mae": 0.4}}  # fmt: skip

    monkeypatch.setattr(fr, "run_one", fake_run)
    monkeypatch.setattr(fr, "ETTH1", tmp_path)  # exists
    report = tmp_path / "r.json"
    base = {"protocol": "ltsf", "features": "M", "partial": "note",
            "runs": [{"model": "dlinear", "horizon": 96, "seed": 0, "cpu_s": 2.0,
                      "test": {"mse": 0.4, "mae": 0.3}}]}  # fmt: skip
    report.write_text(json.dumps(base))
    with pytest.raises(KeyboardInterrupt):
        fr.main(["--protocol", "ltsf", "--features", "M", "--models", "lstm-seg",
                 "--horizons", "96", "--seeds", "0,1", "--add-to", str(report)])  # fmt: skip
    out = json.loads(report.read_text())
    assert [(r["model"], r["seed"]) for r in out["runs"]] == [("dlinear", 0), ("lstm-seg", 0)]
    assert out["summary"]["lstm-seg@96"]["mse_mean"] == 0.5
    assert out["partial"] == "note"
