"""The language-model task: loss and metrics against hand computations, truncated BPTT against
one pass over the whole sequence, weight tying, dropout, generation and the error paths."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lstmkit.cli.main import cli_main
from lstmkit.data.tokenize import EOS, UNK
from lstmkit.models.lm import LMModelConfig, embedding_dropout, variational_dropout
from lstmkit.tasks.lm import LanguageModelTask, LMConfig, stream_nll
from lstmkit.utils.config import from_flat
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
    return LanguageModelTask(cfg, model or from_flat(LMModelConfig, hidden_size=16, num_layers=1))


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
    task = make_task(
        text_file, model=from_flat(LMModelConfig, hidden_size=12, num_layers=2), seq_len=5
    )
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
    tied = make_task(
        text_file, model=from_flat(LMModelConfig, hidden_size=16, num_layers=1, tie_weights=True)
    )
    model = tied.build_model()
    assert model.decoder.weight is model.embedding.weight
    n_untied = sum(p.numel() for p in make_task(text_file).build_model().parameters())
    assert sum(p.numel() for p in model.parameters()) == n_untied - model.embedding.weight.numel()
    with pytest.raises(UserError, match="--tie-weights needs --embed-size equal to .* 16"):
        bad = from_flat(LMModelConfig, hidden_size=16, num_layers=1, tie_weights=True, embed_size=8)
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
    cfg = from_flat(
        LMModelConfig,
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
        make_task(text_file, model=replace(cfg, encoder=replace(cfg.encoder, bidirectional=True)))


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_baseline_cells_carry_their_state(text_file, cell):
    task = make_task(
        text_file, model=from_flat(LMModelConfig, cell=cell, hidden_size=8, num_layers=1)
    )
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
            logits[[0, 1, 2, 3]] = -math.inf  # <pad>, <unk>, <s> (and for chars </s>) never drawn
            ids.append(int(logits.argmax()))
            expected.append(ids[-1])
    assert greedy[:5] == expected
    assert all(t > 3 for t in a)


class SpecialsFirst(torch.nn.Module):
    """A language model whose logits put <pad>, <unk>, <s>, </s> first, then ``favourite``."""

    def __init__(self, vocab, favourite):
        super().__init__()
        self.logits = torch.zeros(vocab)
        self.logits[:4] = torch.tensor([10.0, 9.0, 8.0, 7.0])
        self.logits[favourite] = 6.0

    def forward(self, x, state=None):
        return self.logits.expand(*x.shape, -1).clone(), state


def test_special_tokens_are_never_printed_literally(text_file):
    """A briefly trained char model could print '</s>': <pad>, <unk>, <s> are never drawn, and
    for characters neither is </s> (their lines end with '\n'); a word model's </s> is a line
    end, printed as one."""
    task = make_task(text_file)
    a = task.tokenizer.stoi["a"]
    model = SpecialsFirst(len(task.tokenizer), a)
    for kw in ({"temperature": 0}, {"seed": 1}, {"seed": 2, "top_k": 5}):
        text = "".join(task.piece(t) for t in task.generate(model, [], 40, **kw))
        assert set(text) <= set(TEXT) and "<" not in text and "a" in text
    assert "".join(task.piece(t) for t in task.generate(model, [], 3, temperature=0)) == "aaa"
    words = make_task(text_file, tokenizer="word")
    model = SpecialsFirst(len(words.tokenizer), words.tokenizer.stoi["speak"])
    tokens = list(words.generate(model, [], 3, temperature=0))
    assert tokens == [EOS] * 3 and "".join(words.piece(t) for t in tokens) == "\n\n\n"


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
        make_task(blank, tokenizer="word").build_model()


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
    task = make_task(text_file, model=from_flat(LMModelConfig, hidden_size=6, num_layers=2))
    (png,) = task.inspect(task.build_model().eval(), ["Speak, speak."], tmp_path, "cpu")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    gru = make_task(
        text_file, model=from_flat(LMModelConfig, cell="gru", hidden_size=6, num_layers=1)
    )
    with pytest.raises(UserError, match="inspect needs an LSTM"):
        gru.inspect(gru.build_model(), [], tmp_path, "cpu")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_resumed_run_ends_at_the_same_weights(text_file, tmp_path, cell):
    """The carried state is saved with last/: stopping and resuming changes nothing."""
    from lstmkit.train.config import TrainConfig
    from lstmkit.train.trainer import train

    def run(out, steps, resume=False):
        task = make_task(
            text_file, model=from_flat(LMModelConfig, cell=cell, hidden_size=8, num_layers=2)
        )
        cfg = TrainConfig(
            steps=steps, batch_size=2, eval_every=5, lr=1e-2, device="cpu", progress=False,
            threads=1, out=str(out), resume=resume,
        )  # fmt: skip
        train(task, cfg)

    assert_resume_is_exact(run, tmp_path, steps=10, stop=5)


# PTB/WikiText style: tokenized, lower-cased, rare words already <unk>
PRETOKENIZED = (
    "mr. smith 's well-known firm said <unk> shares rose\n"
    "the <unk> 's well-known chief said mr. jones is n't here\n"
    "\n"
    "shares of the firm rose N %\n"
) * 5


@pytest.fixture
def ptb_file(tmp_path):
    p = tmp_path / "ptb.train.txt"
    p.write_text(PRETOKENIZED)
    return p


def test_pretokenized_corpus_keeps_its_words_and_unknowns(ptb_file, capsys):
    task = make_task(ptb_file, tokenizer="whitespace", valid_fraction=0.2)
    lines = PRETOKENIZED.split("\n")[:-1]
    train_lines, valid_lines = lines[:16], lines[16:]  # the cut moves on to a line end
    words = {w for line in train_lines for w in line.split()} - {"<unk>"}
    assert len(words) == 17  # mr. 's well-known n't N % ... each one word
    assert sorted(task.tokenizer.itos[4:]) == sorted(words)
    report = task.data_report()
    n_train = sum(len(line.split()) + 1 for line in train_lines)  # + one <eos> per line
    assert report["train_tokens"] == n_train == report["train_words"] == 4 * (10 + 12 + 1 + 8)
    assert report["valid_tokens"] == sum(len(line.split()) + 1 for line in valid_lines)
    assert report["train_unk"] == 8 and report["valid_unk"] == 2  # the data's <unk>, as <unk>
    assert report["vocab"] == 4 + 17 and report["types"] == 17 + 2  # + <unk>, <eos>
    assert report["token"] == "whitespace-separated word or <eos> per line"
    err = capsys.readouterr().err
    assert "one token = one whitespace-separated word or <eos> per line" in err
    ids = task._load()["train"]
    assert task.tokenizer.token(ids[9]) == "<eos>" and int(ids[6]) == UNK
    # the regex tokenizer of the same text: <unk> kept whole by --unk-token, the rest in pieces
    regex = make_task(ptb_file, tokenizer="word", valid_fraction=0.2)
    assert "smith" in regex.tokenizer.stoi and "<" not in regex.tokenizer.stoi
    # mr . / ' s / well - known: 8 more per 4 lines; the empty line gives no </s>
    assert regex.data_report()["train_tokens"] == n_train + 4 * (8 - 1)
    assert regex.data_report()["train_words"] == n_train


def _ppl_by_hand(task, model, split):
    """Total NLL of the split from the model's logits over the whole stream, and its words."""
    ids = torch.from_numpy(task._load()[split]).long()
    with torch.no_grad():
        logits, _ = model(ids[:-1][None])
    total = float(F.cross_entropy(logits[0], ids[1:], reduction="sum"))
    return total, len(ids) - 1


def test_perplexity_is_reported_per_word_as_the_papers_do(ptb_file):
    whitespace = make_task(ptb_file, tokenizer="whitespace", valid_fraction=0.2, eval_streams=1)
    model = whitespace.build_model().eval()
    m = whitespace.evaluate(model, "valid", torch.device("cpu"))
    total, n = _ppl_by_hand(whitespace, model, "valid")
    assert n == (10 + 12 + 1 + 8) - 1 == m["tokens"] == m["words"]
    assert m["word_ppl"] == pytest.approx(math.exp(total / n), rel=1e-5)
    assert m["ppl"] == pytest.approx(m["word_ppl"], rel=1e-9)
    # regex pieces: ppl is per piece; word_ppl is the same likelihood over the same words
    regex = make_task(ptb_file, tokenizer="word", valid_fraction=0.2, eval_streams=1)
    model = regex.build_model().eval()
    m = regex.evaluate(model, "valid", torch.device("cpu"))
    total, n = _ppl_by_hand(regex, model, "valid")
    assert n == m["tokens"] == (10 + 12 + 0 + 8 + 4 + 4) - 1 and m["words"] == 31 - 1
    assert m["ppl"] == pytest.approx(math.exp(total / n), rel=1e-5)
    assert m["word_ppl"] == pytest.approx(math.exp(total / 30), rel=1e-5)
    assert m["token"].startswith("regex piece")
    (r,) = regex.predict(model, ["mr. jones 's firm\nrose"], torch.device("cpu"))
    # words: mr. jones 's firm <eos> rose; tokens: mr . jones ' s firm </s> rose
    assert r["words"] == 6 - 1 and r["tokens"] == 8 - 1


def test_data_unknown_token_is_not_an_unknown_prompt_word(ptb_file):
    task = make_task(ptb_file, tokenizer="whitespace")
    ids = task.encode_prompt("the <unk> 's firm")
    assert ids[1] == UNK and task.tokenizer.decode(ids) == "the <unk> 's firm"
    with pytest.raises(UserError, match="'zebra'"):
        task.encode_prompt("the zebra")
    assert task.start_ids([7]) == [EOS, 7] and task.echo("the") == "the "


@pytest.mark.parametrize(
    "extra",
    [["--valid-fraction", "0"], ["--valid-fraction", "0.001", "--tokenizer", "whitespace"]],
)
def test_no_validation_text_is_one_error_line(ptb_file, tmp_path, capsys, extra):
    out = tmp_path / "run"
    args = ["train", "lm", "--train", str(ptb_file), "--steps", "2", "--out", str(out)]
    assert cli_main([*args, "--no-progress", "--device", "cpu", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err[-1:]) == 1 and err[-1].startswith("lstmkit: error: no validation text (")
    assert "--valid FILE or a --valid-fraction above 0" in err[-1]
    assert "KeyError" not in "".join(err)


def test_adaptive_softmax_scores_are_log_probabilities(ptb_file):
    cfg = from_flat(LMModelConfig, hidden_size=16, num_layers=1, adaptive_softmax="6,12")
    task = make_task(ptb_file, model=cfg, tokenizer="whitespace")
    model = task.build_model().eval()
    assert model.decoder is None and model.adaptive.cutoffs == [6, 12, len(task.tokenizer)]
    batch = task.train_batch(0, 0, 2, 0, 1)
    logp, _ = model(batch.inputs)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(logp.shape[:2]))
    by_hand = -logp.gather(-1, batch.targets.unsqueeze(-1)).mean()
    torch.testing.assert_close(task.loss(model, batch), by_hand)
    ids = task._load()["valid"]
    total, count = stream_nll(model, ids, 3, 2, torch.device("cpu"))  # padded streams: -100
    # by hand: the 8 predictions in 3 pieces of 3, 2, 3, each read from a zero state
    pieces = [ids[0:4], ids[3:6], ids[5:9]]
    assert count == len(ids) - 1 == 8
    assert total == pytest.approx(sum(-logp_of(model, p) for p in pieces), rel=1e-5)
    model.train()
    task.loss(model, task.train_batch(1, 0, 2, 0, 1)).backward()
    assert model.adaptive.head.weight.grad.abs().sum() > 0
    assert len(list(task.generate(model, task.encode_prompt("the"), 4, seed=0))) == 4


def logp_of(model, ids):
    x = torch.from_numpy(ids).long()
    with torch.no_grad():
        logp, _ = model(x[:-1][None])
    return float(logp[0].gather(-1, x[1:, None]).sum())


@pytest.mark.parametrize(
    "cfg, message",
    [
        (dict(adaptive_softmax="6,12", tie_weights=True), "--tie-weights shares"),
        (dict(adaptive_softmax="12,6"), "increasing integers"),
        (dict(adaptive_softmax="6,x"), "increasing integers"),
        (dict(adaptive_softmax="6,21"), "below the vocabulary size 21"),
    ],
)
def test_adaptive_softmax_errors(ptb_file, cfg, message):
    with pytest.raises(UserError, match=message):
        model = from_flat(LMModelConfig, hidden_size=12, num_layers=1, **cfg)
        make_task(ptb_file, model=model, tokenizer="whitespace").build_model()


def test_word_level_run_from_the_command_line(ptb_file, tmp_path):
    import json

    out = tmp_path / "run"
    args = ["train", "lm", "--train", str(ptb_file), "--tokenizer", "whitespace"]
    args += ["--hidden-size", "8", "--num-layers", "1", "--adaptive-softmax", "8"]
    args += ["--steps", "3", "--batch-size", "2", "--seq-len", "6", "--eval-every", "3"]
    args += ["--no-progress", "--device", "cpu", "--threads", "1", "--out", str(out)]
    assert cli_main(args) == 0
    valid = json.loads((out / "results.json").read_text())["valid"]
    assert valid["ppl"] == pytest.approx(valid["word_ppl"], rel=1e-9)
    assert valid["token"] == "whitespace-separated word or <eos> per line"
