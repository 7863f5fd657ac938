"""The translation task: subwords, length buckets, and a tiny train/translate run on Multi30k."""

import gzip
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lstmkit.cli.main import cli_main
from lstmkit.data.tokenize import BOS, EOS, PAD
from lstmkit.models.seq2seq import Seq2SeqConfig
from lstmkit.tasks.translation import TranslationConfig, TranslationTask, make_batch
from lstmkit.utils.config import from_flat
from lstmkit.utils.errors import UserError
from lstmkit.viz.attention import word_labels
from tests.resume_check import assert_resume_is_exact

MULTI30K = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "multi30k"
needs_data = pytest.mark.skipif(
    not (MULTI30K / "train.de.gz").exists(),
    reason=f"Multi30k is not at {MULTI30K} (../shared/data/multi30k); skipping data tests",
)


def _lines(name: str, n: int) -> list[str]:
    with gzip.open(MULTI30K / name, "rt", encoding="utf-8") as f:
        return [next(f).rstrip("\n") for _ in range(n)]


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory):
    """The first pairs of each Multi30k split, as files (plain and gzipped) in a temp folder."""
    if not (MULTI30K / "train.de.gz").exists():
        pytest.skip(f"Multi30k is not at {MULTI30K} (../shared/data/multi30k)")
    d = tmp_path_factory.mktemp("m30k")
    for split, n, gz in (("train", 300, True), ("val", 12, False), ("test_2016_flickr", 12, False)):
        for lang in ("de", "en"):
            text = "".join(line + "\n" for line in _lines(f"{split}.{lang}.gz", n))
            path = d / f"{split}.{lang}{'.gz' if gz else ''}"
            path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return d


def _task(slice_dir, **kw) -> TranslationTask:
    cfg = TranslationConfig(data_dir=str(slice_dir), vocab_size=300, max_tokens=500, **kw)
    return TranslationTask(
        cfg, from_flat(Seq2SeqConfig, embed_size=16, enc_hidden_size=8, dec_hidden_size=16)
    )


@needs_data
def test_bpe_round_trip_on_multi30k(slice_dir):
    task = _task(slice_dir)
    src_tok, tgt_tok = task.tokenizers()
    assert src_tok is not tgt_tok
    for tok, lang in ((src_tok, "de"), (tgt_tok, "en")):
        for sentence in _lines(f"test_2016_flickr.{lang}.gz", 50):
            ids = tok.encode(sentence)
            assert PAD not in ids and BOS not in ids and EOS not in ids
            if 1 not in ids:  # no unknown characters: the text comes back exactly
                assert tok.decode(ids) == sentence
    shared = _task(slice_dir, shared_vocab=True)
    s, t = shared.tokenizers()
    assert s is t and shared.state()["tgt_tokenizer"] is None


@needs_data
def test_state_rebuilds_the_task_without_data(slice_dir, tmp_path):
    task = _task(slice_dir)
    state = json.loads(json.dumps(task.state()))
    gone = replace(task.cfg, data_dir=str(tmp_path / "nowhere"))
    again = TranslationTask(gone, task.model_cfg, state)
    sentence = "Ein Mann fährt Fahrrad."
    assert again.tokenizers()[0].encode(sentence) == task.tokenizers()[0].encode(sentence)
    assert len(again.build_model().out_bias) == len(task.tokenizers()[1])


@needs_data
def test_length_buckets_keep_padding_small_and_are_pure(slice_dir):
    task = _task(slice_dir)
    src, tgt = task.train_ids()
    real = padded = 0
    for step in range(40):
        b = task.train_batch(step, seed=3, batch_size=64, rank=0, world=1)
        lengths = b.src_len.numpy()
        real += lengths.sum()
        padded += b.src.numel()
        longest = max(b.src.shape[1], b.tgt_in.shape[1])
        assert longest * b.src.shape[0] <= 500 or b.src.shape[0] == 1
    assert 1 - real / padded < 0.15  # little padding waste on the source side
    # a pure function of (seed, step): a fresh task gives the same batch
    fresh = _task(slice_dir)
    a = task.train_batch(17, seed=3, batch_size=64, rank=0, world=1)
    b = fresh.train_batch(17, seed=3, batch_size=64, rank=0, world=1)
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    # two processes split the global batch between them
    halves = [task.train_batch(17, 3, 64, r, 2) for r in (0, 1)]
    assert sum(h.src.shape[0] for h in halves) == a.src.shape[0]
    assert task.batch_tokens(a) == int((a.tgt_out != 0).sum())
    assert np.isclose(task.train_skipped_long, 0)


def test_make_batch_shifts_the_target():
    b = make_batch([[5, 6, 7], [8]], [[9, 10], [11, 12, 13]])
    assert b.src.tolist() == [[5, 6, 7], [8, 0, 0]] and b.src_len.tolist() == [3, 1]
    assert b.tgt_in.tolist() == [[BOS, 9, 10, 0], [BOS, 11, 12, 13]]
    assert b.tgt_out.tolist() == [[9, 10, EOS, 0], [11, 12, 13, EOS]]


def test_option_errors():
    model = Seq2SeqConfig()
    for bad, match in (
        (dict(max_tokens=0), "--max-tokens must be >= 1"),
        (dict(label_smoothing=1.0), "--label-smoothing"),
        (dict(encoding="klingon"), "unknown text encoding"),
        (dict(beam=0), "--beam must be >= 1"),
    ):
        with pytest.raises(UserError, match=match):
            TranslationTask(TranslationConfig(**bad), model)
    task = TranslationTask(TranslationConfig(train_src="a.de"), model)
    with pytest.raises(UserError, match="--train-src and --train-tgt go together"):
        task.data("train")


def test_mismatched_training_files_via_the_cli(tmp_path, capsys):
    (tmp_path / "s.de").write_text("eins\nzwei\ndrei\n")
    (tmp_path / "t.en").write_text("one\ntwo\n")
    args = ["train", "translation", "--train-src", str(tmp_path / "s.de"), "--train-tgt"]
    args += [str(tmp_path / "t.en"), "--out", str(tmp_path / "run"), "--no-progress"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "s.de has 3 lines" in err and "t.en has 2" in err


TINY = ["--vocab-size", "300", "--embed-size", "24", "--enc-hidden-size", "16"]
TINY += ["--dec-hidden-size", "32", "--max-tokens", "800", "--steps", "12", "--eval-every", "6"]
TINY += [
    "--log-every",
    "4",
    "--beam",
    "3",
    "--no-progress",
    "--threads",
    "1",
    "--device",
    "cpu",
    "--lr",
    "0.005",
]


@pytest.fixture(scope="module")
def trained(slice_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("mt") / "run"
    args = ["train", "translation", "--data-dir", str(slice_dir), *TINY, "--out", str(out)]
    assert cli_main(args) == 0
    return out


@needs_data
def test_end_to_end_train_translate_inspect(trained, slice_dir, tmp_path, capsys):
    results = json.loads((trained / "results.json").read_text())
    assert results["steps"] == 12
    assert {"bleu", "chrf", "loss", "ppl"} <= set(results["test"])
    first = json.loads((trained / "train.jsonl").read_text().splitlines()[1])
    last_loss = [json.loads(x) for x in (trained / "train.jsonl").read_text().splitlines()]
    assert [e for e in last_loss if e["event"] == "train"][-1]["loss"] < first["loss"]
    assert "tok_per_s" in first
    capsys.readouterr()

    assert cli_main(["translate", str(trained), "Ein Mann fährt Fahrrad.", "Ein Hund."]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(isinstance(x, str) for x in lines)

    src = slice_dir / "test_2016_flickr.de"
    ref = slice_dir / "test_2016_flickr.en"
    hyp = tmp_path / "hyp.en"
    args = ["translate", str(trained / "best"), "--input", str(src), "--output", str(hyp)]
    assert cli_main([*args, "--reference", str(ref), "--beam", "1"]) == 0
    err = capsys.readouterr().err
    assert "BLEU" in err and "nrefs:1|case:mixed|eff:no|tok:13a" in err and "CHRF" in err
    assert len(hyp.read_text().splitlines()) == 12

    pngs = tmp_path / "att"
    import lstmkit.viz.plots

    drawn = []
    real = lstmkit.viz.plots.plot_heatmap
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            lstmkit.viz.plots, "plot_heatmap", lambda *a, **k: drawn.append(k) or real(*a, **k)
        )
        args = ["inspect", str(trained), "Zwei Hunde spielen im Schnee.", "--out", str(pngs)]
        assert cli_main(args) == 0
    (kw,) = drawn
    labels = kw["col_labels"] + kw["row_labels"]
    assert "Zwei" in kw["col_labels"] and not any("▁" in lab for lab in labels), labels
    png = pngs / "attention-1.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_data
def test_translate_errors(trained, tmp_path, capsys):
    short = tmp_path / "ref.en"
    short.write_text("one line\n")
    assert cli_main(["translate", str(trained), "a", "b", "--reference", str(short)]) == 2
    assert "has 1 lines but there are 2 sentences" in capsys.readouterr().err
    assert cli_main(["translate", str(trained)]) == 2
    assert "nothing to translate" in capsys.readouterr().err
    assert cli_main(["translate", str(trained), "--input", str(tmp_path / "nope.de")]) == 2
    assert "file not found" in capsys.readouterr().err
    latin = tmp_path / "latin.de"
    latin.write_bytes("Grüße\n".encode("latin-1"))
    assert cli_main(["translate", str(trained), "--input", str(latin)]) == 2
    assert "latin.de, line 1" in capsys.readouterr().err
    assert (
        cli_main(["translate", str(trained), "--input", str(latin), "--encoding", "latin-1"]) == 0
    )


@needs_data
def test_resumed_run_ends_at_the_same_weights(slice_dir, tmp_path):
    """Bucketed batches, dropout and the optimiser all continue exactly after --resume."""
    from lstmkit.train.config import TrainConfig
    from lstmkit.train.trainer import train

    def run(out, steps, resume=False):
        cfg = TrainConfig(
            steps=steps, batch_size=16, eval_every=3, lr=5e-3, device="cpu", progress=False,
            threads=1, out=str(out), resume=resume,
        )  # fmt: skip
        train(_task(slice_dir, valid_beam=1, select="loss"), cfg)

    assert_resume_is_exact(run, tmp_path, steps=6, stop=3)


@needs_data
def test_evaluate_data_reads_a_file_pair_or_a_prefix(trained, slice_dir, tmp_path, capsys):
    """`evaluate --data` scores new parallel text: SRC,TGT or a PREFIX of PREFIX.de/PREFIX.en
    (on the old code there was no --data); the run's own test split is named in words."""
    src, tgt = slice_dir / "val.de", slice_dir / "val.en"
    capsys.readouterr()
    assert cli_main(["evaluate", str(trained), "--data", f"{src},{tgt}", "--json"]) == 0
    by_pair = json.loads(capsys.readouterr().out)["data"]
    assert cli_main(["evaluate", str(trained), "--data", str(slice_dir / "val"), "--json"]) == 0
    by_prefix = json.loads(capsys.readouterr().out)["data"]
    assert {"bleu", "chrf", "loss"} <= set(by_pair) and by_pair == by_prefix
    # the validation split is the same 12 pairs: the same loss (BLEU differs by beam size)
    assert cli_main(["evaluate", str(trained), "--split", "valid", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"]["loss"] == pytest.approx(by_pair["loss"])
    assert cli_main(["evaluate", str(trained), "--data", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err and "PREFIX" in err


def test_attention_tick_labels_show_words_not_bpe_marks():
    pieces = ["▁Ein", "▁Mann", "▁fähr", "t", "▁Fahr", "rad", ".", "▁", "</s>"]
    assert word_labels(pieces) == ["Ein", "Mann", "fähr", "-t", "Fahr", "-rad", ".", "␣", "</s>"]
