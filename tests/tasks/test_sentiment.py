import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lstmkit.infer.load import load_trained
from lstmkit.models.classifier import SentimentModelConfig, TextClassifier
from lstmkit.tasks.sentiment import SentimentConfig, SentimentTask
from lstmkit.train.config import TrainConfig
from lstmkit.train.trainer import train
from lstmkit.utils.config import from_flat
from lstmkit.utils.errors import UserError
from lstmkit.utils.metrics import macro_f1
from lstmkit.viz.token_shares import token_contributions

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "rt-polarity"
GOOD = ["great", "superb", "moving", "fine", "brilliant", "lovely"]
BAD = ["awful", "dull", "boring", "bad", "weak", "tedious"]
FILLER = ["the", "film", "plot", "a", "was", "cast", "story", "and"]


def write_reviews(path: Path, n: int = 400, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["review,label"]
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = list(rng.choice(FILLER, size=rng.integers(3, 9)))
        words.insert(rng.integers(0, len(words)), rng.choice(GOOD if label == "pos" else BAD))
        lines.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def small_model(**kw):
    return from_flat(SentimentModelConfig, hidden_size=16, embedding_dim=16, **kw)


def test_macro_f1_matches_hand_computation():
    conf = np.array([[5, 1], [3, 1]])  # rows true, columns predicted
    f_neg = 2 * 5 / (2 * 5 + 1 + 3)
    f_pos = 2 * 1 / (2 * 1 + 3 + 1)
    assert macro_f1(conf) == pytest.approx((f_neg + f_pos) / 2)


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_does_not_change_the_prediction(pooling, bidirectional):
    torch.manual_seed(0)
    model = TextClassifier(small_model(pooling=pooling, bidirectional=bidirectional), 30, 3)
    model.eval()
    short = [5, 6, 7]
    tokens, lengths = SentimentTask.collate([short, [4] * 9])
    alone = model(*SentimentTask.collate([short]))
    batched = model(tokens, lengths)
    torch.testing.assert_close(batched[0], alone[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_token_contributions_add_up_to_the_score(pooling, bidirectional):
    torch.manual_seed(1)
    model = TextClassifier(small_model(pooling=pooling, bidirectional=bidirectional), 30, 3)
    model.eval()
    tokens, lengths = SentimentTask.collate([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        logits = model(tokens, lengths)[0]
    for cls in range(3):
        parts = token_contributions(model, tokens, lengths, cls)
        assert parts["units"].shape == (5, (2 if bidirectional else 1) * 16)
        score = parts["units"].sum() + parts["bias"]
        torch.testing.assert_close(score, logits[cls] - logits.mean(), rtol=1e-5, atol=1e-5)
        assert (parts["attention"] is not None) == (pooling == "attention")


def test_last_pooling_takes_forward_end_and_backward_start():
    torch.manual_seed(0)
    model = TextClassifier(small_model(pooling="last"), 30, 2).eval()
    tokens, lengths = SentimentTask.collate([[5, 6, 7], [4] * 6])
    y = model.encode(tokens, lengths)
    h = model.encoder.hidden_size
    full = y[0, :3]
    expected = torch.cat([full[2, :h], full[0, h:]])
    torch.testing.assert_close(model.head(expected), model(tokens, lengths)[0])


def test_trains_predicts_and_inspects_end_to_end(tmp_path):
    data = write_reviews(tmp_path / "reviews.csv")
    cfg = SentimentConfig(train=str(data), text_column="review")
    task = SentimentTask(cfg, small_model(pooling="attention"))
    tcfg = TrainConfig(
        steps=150,
        batch_size=32,
        lr=1e-2,
        eval_every=50,
        out=str(tmp_path / "run"),
        progress=False,
        threads=1,
    )
    result = train(task, tcfg)
    assert result.test["accuracy"] >= 0.9
    assert 0.9 <= result.test["macro_f1"] <= 1.0
    events = [json.loads(x) for x in (tmp_path / "run" / "train.jsonl").read_text().splitlines()]
    data_event = next(e for e in events if e["event"] == "data")
    assert (
        data_event["train_examples"] + data_event["valid_examples"] + data_event["test_examples"]
        == 400
    )
    assert any("tok_per_s" in e for e in events if e["event"] == "train")

    task2, model, _ = load_trained(tmp_path / "run", torch.device("cpu"))
    assert task2.labels == ["neg", "pos"]
    with torch.no_grad():
        out = task2.predict(model, ["the plot was superb", "a dull boring film"], "cpu")
    assert [o["label"] for o in out] == ["pos", "neg"]
    assert sum(out[0]["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    import lstmkit.viz

    drawn = []
    real_plot_gates = lstmkit.viz.plot_gates
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            lstmkit.viz,
            "plot_gates",
            lambda *a, **k: drawn.append((a, k)) or real_plot_gates(*a, **k),
        )
        paths = task2.inspect(model, ["the cast was lovely"], tmp_path / "insp", "cpu")
    assert [p.suffix for p in paths] == [".png", ".html"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the PNG: both directions' gates, the sentence in the title
    (((gates, _), kw),) = drawn
    assert gates["i"].shape == (4, 2 * 16)
    assert "the cast was lovely" in kw["title"] and kw["title"].startswith("pos")
    assert {lab[0] for lab in kw["unit_labels"]} <= {"→", "←"}
    page = paths[1].read_text()
    assert "lovely" in page and "attention weight" in page and "<script" not in page
    rows = dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", page))
    values = {
        name: [float(v) for v in re.findall(r'data-value="([^"]+)"', cells)]
        for name, cells in rows.items()
    }
    share = values["share of the score of &#x27;pos&#x27;"]
    # the attention weights are the model's own
    tokens, lengths = SentimentTask.collate(task2.data.encode(["the cast was lovely"])[0])
    with torch.no_grad():
        model(tokens, lengths)
    np.testing.assert_allclose(values["attention weight"], model.last_attention[0], atol=1e-5)
    # the shading differs across tokens and follows the prediction: the word that decides it
    # pushes hardest towards 'pos'
    assert max(share) - min(share) > 0.5 * max(abs(v) for v in share)
    assert int(np.argmax(share)) == 3 and share[3] > 0


def test_confusion_matrix_counts_every_example(tmp_path):
    data = write_reviews(tmp_path / "r.csv", n=100)
    task = SentimentTask(SentimentConfig(train=str(data), text_column="review"), small_model())
    torch.manual_seed(0)
    model = task.build_model().eval()
    conf = task.confusion(model, "test", "cpu")
    assert conf.shape == (2, 2) and conf.sum() == len(task.splits()["test"].ids)


def test_splits_are_disjoint_and_cv_folds_cover_the_data(tmp_path):
    data = write_reviews(tmp_path / "r.csv", n=50)
    base = SentimentConfig(train=str(data), text_column="review", cv=5)
    seen = []
    for fold in range(5):
        t = SentimentTask(replace(base, fold=fold), small_model())
        raw = t.data.raw_splits()
        texts = [set(zip(raw[s].texts, range(len(raw[s])), strict=True)) for s in raw]
        assert sum(len(raw[s]) for s in raw) == 50
        seen.append(len(raw["test"]))
        assert all(len(x) for x in texts)
    assert sum(seen) == 50


def test_pretrained_vectors_fill_the_embedding(tmp_path):
    data = write_reviews(tmp_path / "r.csv", n=60)
    (tmp_path / "vec.txt").write_text("2 4\ngreat 1 2 3 4\nunseenword 0 0 0 0\n")
    cfg = SentimentConfig(
        train=str(data),
        text_column="review",
        embeddings=str(tmp_path / "vec.txt"),
        freeze_embeddings=True,
    )
    task = SentimentTask(cfg, from_flat(SentimentModelConfig, hidden_size=8, embedding_dim=4))
    model = task.build_model()
    row = model.embedding.weight[task.tokenizer.stoi["great"]]
    assert row.tolist() == [1, 2, 3, 4] and not model.embedding.weight.requires_grad
    assert task.report["pretrained_vectors"].startswith("1 of")
    bad = SentimentTask(cfg, from_flat(SentimentModelConfig, hidden_size=8, embedding_dim=5))
    with pytest.raises(UserError, match="--embedding-dim 4"):
        bad.build_model()


def test_bad_input_errors(tmp_path):
    one = tmp_path / "one.csv"
    one.write_text(
        "text,label\na,pos\nb,pos\nc,pos\nd,pos\ne,pos\nf,pos\ng,pos\nh,pos\ni,pos\nj,pos\n"
    )
    with pytest.raises(UserError, match="only one label"):
        SentimentTask(SentimentConfig(train=str(one)), small_model()).build_model()
    with pytest.raises(UserError, match="--train is required"):
        SentimentTask(SentimentConfig(), small_model()).build_model()
    with pytest.raises(UserError, match="--cv must be"):
        SentimentTask(SentimentConfig(train=str(one), cv=1), small_model())
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n\n")
    with pytest.raises(UserError, match="no examples"):
        SentimentTask(SentimentConfig(train=str(empty)), small_model()).splits()
    data = write_reviews(tmp_path / "r.csv", n=40)
    test = tmp_path / "t.csv"
    test.write_text("review,label\nfine film,neutral\n")
    cfg = SentimentConfig(train=str(data), test=str(test), text_column="review")
    with pytest.raises(UserError, match=r"t.csv: label\(s\) 'neutral' in the test set never"):
        SentimentTask(cfg, small_model()).splits()


def test_long_texts_are_cut_and_counted(tmp_path):
    data = write_reviews(tmp_path / "r.csv", n=40)
    cfg = SentimentConfig(train=str(data), text_column="review", max_tokens=4)
    task = SentimentTask(cfg, small_model())
    splits = task.splits()
    assert max(len(x) for s in splits.values() for x in s.ids) == 4
    assert task.data_report()["truncated"] > 0


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data/rt-polarity absent")
def test_rt_polarity_slice_trains_above_chance(tmp_path):
    files = f"{DATA / 'rt-polarity.pos'},{DATA / 'rt-polarity.neg'}"
    cfg = SentimentConfig(
        train=files, encoding="latin-1", cv=10, fold=3, tokenizer="bpe", vocab_size=2000
    )
    model_cfg = from_flat(
        SentimentModelConfig,
        hidden_size=32,
        embedding_dim=32,
        embedding_dropout=0.0,
        classifier_dropout=0.0,
    )
    task = SentimentTask(cfg, model_cfg)
    assert len(task.splits()["test"].ids) in (1066, 1067)
    tcfg = TrainConfig(
        steps=100,
        batch_size=50,
        lr=1e-2,
        eval_every=100,
        log_every=25,
        out=str(tmp_path / "r"),
        progress=False,
        threads=1,
    )
    result = train(task, tcfg)
    losses = [e["loss"] for e in result.history if e["event"] == "train"]
    assert losses[-1] < losses[0] - 0.02, losses  # it learns from the real sentences
    assert 0 <= result.test["accuracy"] <= 1
    moved = tmp_path / "elsewhere"
    (tmp_path / "r").rename(moved)
    task2, model, _ = load_trained(moved, torch.device("cpu"))
    (pred,) = task2.predict(model, ["an utterly charming and hilarious film"], "cpu")
    assert pred["label"] in ("pos", "neg")


def test_word_dropout_replaces_tokens_with_unk_only_in_training():
    from lstmkit.data.tokenize import UNK

    torch.manual_seed(0)
    model = TextClassifier(small_model(word_dropout=0.5), 30, 2)
    seen = []
    model.embedding.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    tokens, lengths = SentimentTask.collate([[5] * 200, [6] * 3])
    model.train()(tokens, lengths)
    dropped = (seen[-1][0] == UNK).float().mean()
    assert 0.4 < dropped < 0.6
    assert (seen[-1][1, 3:] == 0).all()  # padding stays padding
    model.eval()(tokens, lengths)
    assert (seen[-1] == tokens).all()
    with pytest.raises(UserError, match="--word-dropout"):
        TextClassifier(small_model(word_dropout=1.0), 30, 2)


def test_split_contractions_reaches_the_tokenizer_and_the_checkpoint_state(tmp_path):
    data = tmp_path / "r.csv"
    data.write_text("text,label\n" + "it isn't good,neg\nit's good,pos\n" * 10)
    cfg = SentimentConfig(train=str(data), split_contractions=True)
    task = SentimentTask(cfg, small_model())
    task.build_model()
    assert "n't" in task.tokenizer.stoi and "isn't" not in task.tokenizer.stoi
    state = json.loads(json.dumps(task.tokenizer.state()))
    assert state["contractions"] is True


def test_clitics_split_by_default_for_words_only_and_old_checkpoints_keep_theirs(tmp_path):
    data = tmp_path / "r.csv"
    data.write_text("text,label\n" + "it isn't good,neg\nit's good,pos\n" * 10)
    words = SentimentTask(SentimentConfig(train=str(data)), small_model())
    words.build_model()
    assert "n't" in words.tokenizer.stoi  # the default: clitics split
    chars = SentimentTask(SentimentConfig(train=str(data), tokenizer="char"), small_model())
    chars.build_model()  # no "needs --tokenizer word" error: char tokens ignore the default
    assert "'" in chars.tokenizer.stoi
    # a checkpoint written before the option existed: neither its task config nor its
    # tokenizer state names it, and it must go on tokenising as it was trained
    meta = {
        **words.describe(),
        "task_state": {**words.state(), "tokenizer": {**words.tokenizer.state(), "tokens": []}},
    }
    del meta["task_config"]["split_contractions"]
    del meta["task_state"]["tokenizer"]["contractions"]
    old = SentimentTask.from_checkpoint_meta(meta)
    assert old.tokenizer.split("isn't") == ["isn't"]


def test_cv_folds_and_their_validation_shares_are_stratified(tmp_path):
    data = tmp_path / "d.csv"
    labels = ["rare" if k % 5 == 0 else "common" for k in range(100)]
    data.write_text("text,label\n" + "".join(f"example {k},{y}\n" for k, y in enumerate(labels)))
    base = SentimentConfig(train=str(data), cv=10)
    tested = []
    for fold in range(10):
        raw = SentimentTask(replace(base, fold=fold), small_model()).data.raw_splits()
        assert len(raw["test"]) == 10 and raw["test"].labels.count("rare") == 2, fold
        assert len(raw["valid"]) == 9 and raw["valid"].labels.count("rare") in (1, 2)
        assert raw["train"].labels.count("rare") in (16, 17)
        assert not set(raw["test"].texts) & (set(raw["train"].texts) | set(raw["valid"].texts))
        tested += raw["test"].texts
    assert sorted(tested) == sorted(f"example {k}" for k in range(100))
    other = SentimentTask(replace(base, fold=0, split_seed=1), small_model()).data.raw_splits()
    first = SentimentTask(replace(base, fold=0), small_model()).data.raw_splits()
    assert other["test"].texts != first["test"].texts  # the seed still decides the folds


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data/rt-polarity absent")
def test_rt_polarity_folds_are_half_positive():
    files = f"{DATA / 'rt-polarity.pos'},{DATA / 'rt-polarity.neg'}"
    cfg = SentimentConfig(train=files, encoding="latin-1", cv=10, fold=9)
    raw = SentimentTask(cfg, small_model()).data.raw_splits()
    assert len(raw["test"]) == 1066 and raw["test"].labels.count("pos") == 533
    assert len(raw["train"]) in (8635, 8636)
    assert abs(raw["valid"].labels.count("pos") - len(raw["valid"]) / 2) <= 1


def test_default_schedule_keeps_mr_and_shrinks_for_small_sets():
    from lstmkit.tasks.sentiment import MIN_STEPS, default_schedule

    assert default_schedule(8636, 50) == (2500, 100, 100)  # MR's 10-fold training sets
    assert default_schedule(8635, 50) == (2500, 100, 100)
    assert default_schedule(800, 50) == (232, 9, 9)  # 14.5 epochs whatever the size
    assert default_schedule(4 * 8636, 50)[0] == 10000
    assert default_schedule(8636, 25)[0] == 5000  # epochs, whatever the batch
    assert default_schedule(10, 50)[0] == MIN_STEPS


def _parsed_train_config(args):
    from lstmkit.cli.main import _train_command
    from lstmkit.cli.options import build

    ctx = _train_command(SentimentTask).make_context("sentiment", list(args))
    values = ctx.params
    return build(SentimentConfig, values), build(TrainConfig, values)


def test_cli_defaults_leave_the_schedule_to_the_training_set(tmp_path):
    data = write_reviews(tmp_path / "r.csv", n=100)
    cfg, tcfg = _parsed_train_config(["--train", str(data), "--text-column", "review"])
    assert (tcfg.steps, tcfg.warmup_steps, tcfg.eval_every) == (0, 100, 0)
    task = SentimentTask(cfg, small_model())
    resolved = task.train_config(tcfg)
    assert (resolved.steps, resolved.warmup_steps, resolved.eval_every) == (23, 1, 1)
    assert task.report["schedule"].startswith("23 steps (14.4 epochs of 80)")
    given = task.train_config(replace(tcfg, steps=300))  # as before, evaluations follow
    assert (given.steps, given.warmup_steps, given.eval_every) == (300, 100, 12)
    fixed = replace(tcfg, steps=300, warmup_steps=0, eval_every=50)
    assert task.train_config(fixed) == fixed


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data/rt-polarity absent")
def test_mr_commands_of_readme_and_results_still_train_2500_steps():
    mr = ["--train", f"{DATA / 'rt-polarity.pos'},{DATA / 'rt-polarity.neg'}"]
    mr += ["--encoding", "latin-1", "--cv", "10", "--fold", "0"]
    results = "--embedding-dropout 0.5 --word-dropout 0.1 --pooling attention "
    results += "--split-contractions --lr 2e-3 --schedule cosine --warmup-steps 100 --ema 0.995 "
    results += "--steps 2500 --patience 8 --threads 1"
    for args in (mr, mr + results.split()):
        cfg, tcfg = _parsed_train_config(args)
        task = SentimentTask(cfg, SentimentModelConfig())
        n_train = len(task.data.raw_splits()["train"])
        task.splits = lambda n=n_train: {"train": _Sized(n)}  # the sizes, not the words
        t = task.train_config(tcfg)
        assert (t.steps, t.warmup_steps, t.eval_every, t.patience) == (2500, 100, 100, 8)
        assert (t.lr, t.schedule, t.ema, t.batch_size, t.clip_norm) == (
            2e-3,
            "cosine",
            0.995,
            50,
            5.0,
        )


class _Sized:
    def __init__(self, n):
        self.ids = [None] * n


def test_data_log_line_counts_lines_and_names_the_schedule(tmp_path):
    data = tmp_path / "d.tsv"
    rows = [f'"quoted" review {k} great\tpos' for k in range(30)]
    rows += [f"review {k} awful\tneg" for k in range(30)]
    data.write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    task = SentimentTask(SentimentConfig(train=str(data)), small_model())
    tcfg = TrainConfig(
        steps=0, warmup_steps=100, eval_every=10, out=str(tmp_path / "run"), progress=False
    )
    result = train(task, replace(tcfg, threads=1))
    assert result.state.step == 20
    events = [json.loads(x) for x in (tmp_path / "run" / "train.jsonl").read_text().splitlines()]
    data_event = next(e for e in events if e["event"] == "data")
    assert data_event["train_file"] == "60 examples from 61 lines: 1 header"
    assert data_event["schedule"] == (
        "20 steps (26.7 epochs of 48), warm-up 1, evaluation every 10 (set from the training set)"
    )


def test_new_formats_reach_the_task(tmp_path):
    data = tmp_path / "subj.txt"
    data.write_text("".join(f"{k % 2} sentence number {k}\n" for k in range(40)))
    task = SentimentTask(SentimentConfig(train=str(data)), small_model())
    task.splits()
    assert task.labels == ["0", "1"]
    assert "read as --format label-text" in task.report["train_notes"]
    table = tmp_path / "t.tsv"
    table.write_text("".join(f"sentence {k}\t{k % 2}\n" for k in range(40)))
    cfg = SentimentConfig(train=str(table), header=False, text_column="0", label_column="1")
    assert SentimentTask(cfg, small_model()).data_report()["train_file"] == (
        "40 examples from 40 lines"
    )
    with pytest.raises(UserError, match="--cv-jobs must be >= 1"):
        SentimentTask(replace(cfg, cv=2, cv_jobs=0), small_model())


def test_the_config_checks_itself_as_the_task_did():
    for bad, message in [
        (dict(cv=1), "--cv must be 0"),
        (dict(cv=3, fold=3), r"--fold must be in 0\.\.2"),
        (dict(cv_jobs=0), "--cv-jobs must be >= 1"),
        (dict(valid_fraction=1.0), r"--valid-fraction must be in \[0, 1\)"),
        (dict(encoding="klingon"), "unknown text encoding"),
    ]:
        with pytest.raises(UserError, match=message):
            SentimentConfig(train="x.csv", **bad)
