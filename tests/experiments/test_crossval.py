import json
from dataclasses import replace

import pytest

from lstmkit.cli.main import cli_main
from lstmkit.experiments.crossval import cross_validate, format_summary, summarise
from lstmkit.models.classifier import SentimentModelConfig
from lstmkit.tasks.sentiment import SentimentConfig, SentimentTask
from lstmkit.train.config import TrainConfig
from lstmkit.utils.config import from_flat
from tests.tasks.test_sentiment import write_reviews


def test_summarise_gives_mean_and_sample_std():
    s = summarise([{"accuracy": 0.7}, {"accuracy": 0.8}, {"accuracy": 0.9}])
    assert s["accuracy"]["mean"] == pytest.approx(0.8)
    assert s["accuracy"]["std"] == pytest.approx(0.1)
    assert (s["accuracy"]["min"], s["accuracy"]["max"]) == (0.7, 0.9)


def test_cross_validation_trains_every_fold_and_resumes(tmp_path):
    data = write_reviews(tmp_path / "r.csv", n=60)
    cfg = SentimentConfig(train=str(data), text_column="review", cv=3)
    model_cfg = from_flat(SentimentModelConfig, hidden_size=8, embedding_dim=8)
    tcfg = TrainConfig(
        steps=10, batch_size=16, eval_every=5, out=str(tmp_path / "cv"), progress=False, threads=1
    )
    seen = []
    summary = cross_validate(
        SentimentTask, cfg, model_cfg, tcfg, on_fold=lambda k, r: seen.append(k)
    )
    assert seen == [0, 1, 2]
    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert saved["folds"] == 3 and len(saved["runs"]) == 3
    accs = [r["test"]["accuracy"] for r in saved["runs"]]
    assert saved["test"]["accuracy"]["mean"] == pytest.approx(sum(accs) / 3)
    assert "3-fold cross-validation" in format_summary(summary)
    # --resume keeps finished folds (their results are read back, not retrained)
    stamp = (tmp_path / "cv" / "fold-1" / "results.json").stat().st_mtime_ns
    from dataclasses import replace

    cross_validate(SentimentTask, cfg, model_cfg, replace(tcfg, resume=True))
    assert (tmp_path / "cv" / "fold-1" / "results.json").stat().st_mtime_ns == stamp


def test_cli_cv_runs_all_folds_and_fold_runs_one(tmp_path, capsys):
    data = write_reviews(tmp_path / "r.csv", n=40)
    common = [
        "train",
        "sentiment",
        "--train",
        str(data),
        "--text-column",
        "review",
        "--cv",
        "2",
        "--hidden-size",
        "8",
        "--embedding-dim",
        "8",
        "--steps",
        "4",
        "--eval-every",
        "4",
        "--no-progress",
        "--threads",
        "1",
    ]
    assert cli_main([*common, "--out", str(tmp_path / "all")]) == 0
    printed = capsys.readouterr().out
    assert "2-fold cross-validation" in printed and "[min, max]" in printed
    assert (tmp_path / "all" / "cv.json").exists()
    assert cli_main([*common, "--fold", "1", "--out", str(tmp_path / "one")]) == 0
    assert (tmp_path / "one" / "results.json").exists()
    assert cli_main([*common, "--fold", "2", "--out", str(tmp_path / "bad")]) == 2
    assert "--fold must be in 0..1" in capsys.readouterr().err


def _tiny_cv(tmp_path, **cfg_kw):
    data = write_reviews(tmp_path / "r.csv", n=40)
    cfg = SentimentConfig(train=str(data), text_column="review", cv=2, **cfg_kw)
    model_cfg = from_flat(SentimentModelConfig, hidden_size=8, embedding_dim=8)
    tcfg = TrainConfig(
        steps=4, batch_size=16, eval_every=4, out=str(tmp_path / "cv"), progress=False, threads=1
    )
    return cfg, model_cfg, tcfg


def test_resume_that_only_collects_keeps_the_folds_own_times(tmp_path):
    from dataclasses import replace

    from lstmkit.experiments.crossval import run_times

    cfg, model_cfg, tcfg = _tiny_cv(tmp_path)
    first = cross_validate(SentimentTask, cfg, model_cfg, tcfg)
    collected = cross_validate(SentimentTask, cfg, model_cfg, replace(tcfg, resume=True))
    for run in collected["runs"]:
        start, end, wall = run_times(tmp_path / "cv" / f"fold-{run['fold']}" / "train.jsonl")
        assert run["wall_time_s"] == round(wall, 3) and wall > 0
    assert [r["wall_time_s"] for r in collected["runs"]] == [
        r["wall_time_s"] for r in first["runs"]
    ]
    assert collected["wall_time_s"] >= round(max(r["wall_time_s"] for r in collected["runs"]), 1)
    assert collected["fold_wall_time_s"] > 0
    assert collected["fold_wall_time_s"] == pytest.approx(first["fold_wall_time_s"])
    assert collected["train_time_s"] == pytest.approx(first["train_time_s"], abs=0.002)
    assert first["train_time_s"] > 0
    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert saved["wall_time_s"] == collected["wall_time_s"]


def test_run_times_leave_out_the_gap_before_a_resume(tmp_path):
    from lstmkit.experiments.crossval import run_times

    log = tmp_path / "train.jsonl"
    events = [("start", 100.0), ("train", 110.0), ("resume", 500.0), ("test", 530.0)]
    log.write_text("".join(json.dumps({"event": e, "time": t}) + "\n" for e, t in events))
    assert run_times(log) == (100.0, 530.0, 40.0)
    assert run_times(tmp_path / "none.jsonl") is None


@pytest.mark.slow  # two spawned processes each import torch and lstmkit (10-20 s)
def test_cv_jobs_trains_folds_in_their_own_processes(tmp_path):
    import os

    cfg, model_cfg, tcfg = _tiny_cv(tmp_path, cv_jobs=2)
    seen = []
    summary = cross_validate(
        SentimentTask, cfg, model_cfg, tcfg, on_fold=lambda k, r: seen.append(k)
    )
    assert sorted(seen) == [0, 1] and summary["cv_jobs"] == 2
    processes = {r["process"] for r in summary["runs"]}
    assert len(processes) == 2 and os.getpid() not in processes  # a pool of two workers
    for k in range(2):
        saved = json.loads((tmp_path / "cv" / f"fold-{k}" / "config.json").read_text())
        assert saved["task_config"]["fold"] == k and saved["task_config"]["cv_jobs"] == 1
        assert saved["train_config"]["threads"] == 1
    accs = [r["test"]["accuracy"] for r in summary["runs"]]
    assert summary["test"]["accuracy"]["mean"] == pytest.approx(sum(accs) / 2)


def test_ctrl_c_in_a_fold_says_how_to_resume_the_cross_validation(tmp_path, monkeypatch):
    # a fold's own message names OUT/fold-N, whose --resume would train that fold alone
    import lstmkit.experiments.crossval as crossval
    from lstmkit.train.trainer import TrainingInterrupted

    def fake_fold(task_cls, cfg, model_cfg, fold_cfg, fold, k):
        if fold == 0:
            (tmp_path / "cv" / "fold-0" / "last").mkdir(parents=True)
            return {"test": {"accuracy": 0.5}, "valid": {}, "elapsed": 1.0}
        raise TrainingInterrupted(f"interrupted at step 3; `... --out {fold_cfg.out} --resume`")

    monkeypatch.setattr(crossval, "_train_fold", fake_fold)
    cfg = SentimentConfig(train="unused.csv", cv=3)
    tcfg = TrainConfig(out=str(tmp_path / "cv"), progress=False)
    with pytest.raises(TrainingInterrupted) as e:
        cross_validate(SentimentTask, cfg, SentimentModelConfig(), tcfg)
    message = str(e.value)
    assert f"`lstmkit train sentiment --out {tmp_path / 'cv'} --resume`" in message
    assert "folds finished: 1 of 3" in message and "fold-1" not in message

    def interrupted_at_once(task_cls, cfg, model_cfg, fold_cfg, fold, k):
        raise TrainingInterrupted("interrupted at step 1, before the first checkpoint")

    monkeypatch.setattr(crossval, "_train_fold", interrupted_at_once)
    with pytest.raises(TrainingInterrupted, match="nothing to resume; start again with"):
        cross_validate(
            SentimentTask, cfg, SentimentModelConfig(), replace(tcfg, out=str(tmp_path / "b"))
        )
