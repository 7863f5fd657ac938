"""The language-model task: loss and metrics against hand computations, truncated BPTT against
one pass over the whole sequence, weight tying, dropout, generation and the error paths."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lstmkit.tasks.lm import (
    LanguageModelTask,
    LMConfig,
    LMModelConfig,
    embedding_dropout,
    stream_nll,
    variational_dropout,
)
from lstmkit.utils.errors import UserError
from tests.resume_check import assert_resume_is_exact

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n"
) * 6


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text(TEXT)
    return p


def make_task(path, model=None, **cfg):
    cfg = LMConfig(train=str(path), seq_len=cfg.pop("seq_len", 8), **cfg)
    return LanguageModelTask(cfg, model or LMModelConfig(hidden_size=16, num_layers=1))


def test_vocabulary_round_trips_through_checkpoint_state(text_file):
    task = make_task(text_file)
    meta = task.describe()
    again = LanguageModelTask.from_checkpoint_meta(meta)
    assert again.tokenizer.itos == task.tokenizer.itos
    assert again._splits is None  # rebuilt without reading the training files
    ids = again.encode_prompt("Speak, speak.\n")
    assert again.tokenizer.decode(ids) == "Speak, speak.\n"
    stats = meta["task_state"]["data"]
    assert stats["tokens"]["train"] + stats["tokens"]["valid"] == len(TEXT)
    assert stats["train"]["empty_lines"] == TEXT.count("\n\n")
    report = task.data_report()  # what the trainer logs: nothing dropped unseen
    assert report["train_files_empty_lines"] == TEXT.count("\n\n")
    assert report["train_tokens"] + report["valid_tokens"] == len(TEXT)
    assert report["vocab"] == len(task.tokenizer)


def test_loss_is_cross_entropy_of_the_next_token(text_file):
    task = make_task(text_file)
    model = task.build_model().eval()
    batch = task.train_batch(0, seed=0, batch_size=3, rank=0, world=1)
    logits, _ = model(batch.inputs)
    logp = torch.log_softmax(logits, -1)
    by_hand = -logp.gather(-1, batch.targets.unsqueeze(-1)).mean()
    torch.testing.assert_close(task.loss(model, batch), by_hand)
    assert torch.equal(batch.targets[:, :-1], batch.inputs[:, 1:])


def test_carried_state_equals_one_pass_over_the_streams(text_file):
    task = make_task(text_file, model=LMModelConfig(hidden_size=12, num_layers=2), seq_len=5)
    model = task.build_model().eval()  # no dropout, same function as in training
    layout = task.layout(3)
    steps = [task.train_batch(s, 0, 3, 0, 1) for s in range(layout.n_chunks)]
    losses = torch.stack([task.loss(model, b) for b in steps])
    x = torch.cat([b.inputs for b in steps], 1)
    y = torch.cat([b.targets for b in steps], 1)
    logits, _ = model(x)
    nll = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")
    expected = torch.stack([nll[:, s * 5 : (s + 1) * 5].mean() for s in range(len(steps))])
    torch.testing.assert_close(losses, expected)


def test_state_resets_at_a_pass_start_and_after_a_jump(text_file):
    task = make_task(text_file)
    model = task.build_model().eval()
    n = task.layout(2).n_chunks
    task.loss(model, task.train_batch(1, 0, 2, 0, 1))
    for step in (3, n):  # 3 does not follow 1 (a resume); n starts the second pass
        b = task.train_batch(step, 0, 2, 0, 1)
        fresh = F.cross_entropy(model(b.inputs)[0].flatten(0, 1), b.targets.flatten())
        torch.testing.assert_close(task.loss(model, b), fresh)


def test_evaluation_metrics_and_streams_equal_one_long_sequence(text_file):
    task = make_task(text_file)
    model = task.build_model().eval()
    ids = task._load()["valid"]
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(ids[:-1]).long()[None])
    whole = F.cross_entropy(logits[0], torch.from_numpy(ids[1:]).long(), reduction="sum")
    total, count = stream_nll(model, ids, 1, 7, torch.device("cpu"))
    assert count == len(ids) - 1
    assert total == pytest.approx(float(whole), rel=1e-5)
    m = task.evaluate(model, "valid", torch.device("cpu"))
    assert m["ppl"] == pytest.approx(math.exp(m["loss"]))
    assert m["bpc"] == pytest.approx(m["loss"] / math.log(2))
    assert task.evaluate(model, "test", torch.device("cpu")) == {}  # no test text: no metrics


def test_weight_tying_shares_one_tensor(text_file):
    tied = make_task(text_file, model=LMModelConfig(hidden_size=16, num_layers=1, tie_weights=True))
    model = tied.build_model()
    assert model.decoder.weight is model.embedding.weight
    n_untied = sum(p.numel() for p in make_task(text_file).build_model().parameters())
    assert sum(p.numel() for p in model.parameters()) == n_untied - model.embedding.weight.numel()
    bad = LMModelConfig(hidden_size=16, num_layers=1, tie_weights=True, embed_size=8)
    with pytest.raises(UserError, match="--tie-weights needs --embed-size equal to .* 16"):
        make_task(text_file, model=bad).build_model()


def test_embedding_and_variational_dropout():
    w = torch.ones(50, 4)
    d = embedding_dropout(w, 0.5, True)
    assert set(d.unique().tolist()) <= {0.0, 2.0}
    assert ((d == 0).all(1) | (d == 2).all(1)).all()  # whole rows
    assert embedding_dropout(w, 0.5, False) is w
    x = torch.ones(3, 20, 6)
    y = variational_dropout(x, 0.5, True)
    assert (y == y[:, :1]).all()  # one mask per sequence, the same at every step
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    assert variational_dropout(x, 0.5, False) is x


def test_awd_options_and_any_variant_train(text_file):
    cfg = LMModelConfig(
        hidden_size=8,
        num_layers=2,
        weight_drop=0.3,
        dropout_embed=0.1,
        dropout_input=0.2,
        dropout_output=0.2,
        layer_norm=True,
    )
    task = make_task(text_file, model=cfg)
    model = task.build_model().train()
    loss = task.loss(model, task.train_batch(0, 0, 2, 0, 1))
    loss.backward()
    assert model.encoder.weight_hh_l0.grad.abs().sum() > 0
    with pytest.raises(UserError, match="--bidirectional"):
        make_task(text_file, model=replace(cfg, bidirectional=True)).build_model()


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_baseline_cells_carry_their_state(text_file, cell):
    task = make_task(text_file, model=LMModelConfig(cell=cell, hidden_size=8, num_layers=1))
    model = task.build_model()
    for step in range(2):
        task.loss(model, task.train_batch(step, 0, 2, 0, 1)).backward()
    assert task._carry[0] == 1 and isinstance(task._carry[1], torch.Tensor)
    assert not task._carry[1].requires_grad


def test_generation_is_seeded_and_top_k_1_is_argmax(text_file):
    task = make_task(text_file)
    model = task.build_model()
    prompt = task.encode_prompt("First")
    a = list(task.generate(model, prompt, 30, seed=4))
    b = list(task.generate(model, prompt, 30, seed=4))
    assert a == b and len(a) == 30
    greedy = list(task.generate(model, prompt, 20, temperature=0))
    assert list(task.generate(model, prompt, 20, top_k=1, seed=9)) == greedy
    # greedy by hand: argmax of the logits after each token
    ids, expected = task.start_ids(prompt), []
    with torch.no_grad():
        for _ in range(5):
            logits = model(torch.tensor([ids]))[0][0, -1]
            logits[[0, 1, 2]] = -math.inf  # <pad>, <unk>, <s> are never drawn
            ids.append(int(logits.argmax()))
            expected.append(ids[-1])
    assert greedy[:5] == expected
    assert all(t > 2 for t in a)


def test_prompt_outside_the_vocabulary(text_file, capsys):
    task = make_task(text_file)
    with pytest.raises(UserError, match=r"not in the model's vocabulary: 'é' \(U\+00E9\), 'Z'"):
        task.encode_prompt("caféZ")
    assert task.encode_prompt("caféZ", "drop") == task.encode_prompt("caf")
    assert task.encode_prompt("Z", "unk") == [1]
    assert "1 prompt token(s) not in the vocabulary read as <unk>" in capsys.readouterr().err
    nl = task.tokenizer.stoi["\n"]
    assert task.start_ids([]) == [nl]  # generation starts after a line end
    assert task.start_ids([7, 8]) == [nl, 7, 8] and task.start_ids([nl, 7]) == [nl, 7]


def test_word_level_model(text_file):
    task = make_task(text_file, tokenizer="word", lowercase=True)
    model = task.build_model()
    assert "speak" in task.tokenizer.stoi and "Speak" not in task.tokenizer.stoi
    ids = task.encode_prompt("Speak, speak")
    assert task.tokenizer.decode(ids) == "speak , speak"
    m = task.evaluate(model, "valid", torch.device("cpu"))
    assert "bpc" not in m and m["ppl"] == pytest.approx(math.exp(m["loss"]))
    assert task.echo("you are") == "you are "


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: LMConfig(train=""), "--train: give the training text"),
        (lambda p: LMConfig(train=str(p), valid_fraction=0.6, test_fraction=0.4), "must leave"),
        (lambda p: LMConfig(train=str(p), seq_len=0), "--seq-len must be >= 1"),
        (lambda p: LMConfig(train=str(p), encoding="klingon"), "unknown text encoding"),
    ],
)
def test_bad_options(text_file, make, message):
    with pytest.raises(UserError, match=message):
        LanguageModelTask(make(text_file), LMModelConfig())


def test_bad_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(UserError, match="empty.txt is empty"):
        make_task(empty).build_model()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nfine\n\xff\xfe\n")
    with pytest.raises(UserError, match=r"bad.txt, line 3: byte 0xff"):
        make_task(bad).build_model()
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\n")  # words: empty lines give no tokens
    with pytest.raises(UserError, match="fewer than 2 tokens"):
        make_task(blank, valid_fraction=0.0, tokenizer="word").build_model()


def test_rebuilt_task_needs_no_training_file(text_file, tmp_path):
    meta = make_task(text_file).describe()
    moved = Path(text_file).rename(tmp_path / "gone.txt")
    task = LanguageModelTask.from_checkpoint_meta(meta)
    model = task.build_model()
    assert len(list(task.generate(model, task.encode_prompt("All"), 5, seed=0))) == 5
    assert moved.exists()
    with pytest.raises(UserError, match="--train: file not found"):
        task.evaluate(model, "valid", torch.device("cpu"))


def test_predict_scores_texts(text_file):
    task = make_task(text_file)
    model = task.build_model().eval()
    (r,) = task.predict(model, ["Speak, speak."], torch.device("cpu"))
    ids = np.asarray(task.encode_prompt("Speak, speak."))
    total, count = stream_nll(model, ids, 1, 8, torch.device("cpu"))
    assert r["loss"] == pytest.approx(total / count) and r["tokens"] == count


def test_inspect_plots_the_top_layer(text_file, tmp_path, monkeypatch):
    import lstmkit.tasks.lm as lm

    monkeypatch.setattr(lm, "INSPECT_MAX", 10)
    task = make_task(text_file, model=LMModelConfig(hidden_size=6, num_layers=2))
    (png,) = task.inspect(task.build_model().eval(), ["Speak, speak."], tmp_path, "cpu")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    gru = make_task(text_file, model=LMModelConfig(cell="gru", hidden_size=6, num_layers=1))
    with pytest.raises(UserError, match="inspect needs an LSTM"):
        gru.inspect(gru.build_model(), [], tmp_path, "cpu")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_resumed_run_ends_at_the_same_weights(text_file, tmp_path, cell):
    """The carried state is saved with last/: stopping and resuming changes nothing."""
    from lstmkit.train.config import TrainConfig
    from lstmkit.train.trainer import train

    def run(out, steps, resume=False):
        task = make_task(text_file, model=LMModelConfig(cell=cell, hidden_size=8, num_layers=2))
        cfg = TrainConfig(
            steps=steps, batch_size=2, eval_every=5, lr=1e-2, device="cpu", progress=False,
            threads=1, out=str(out), resume=resume,
        )  # fmt: skip
        train(task, cfg)

    assert_resume_is_exact(run, tmp_path, steps=10, stop=5)
