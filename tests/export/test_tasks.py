"""Every task's model exported to ONNX (issue 18, part 3): the tiny tracked checkpoints of
tests/fixtures/checkpoints (adding, sentiment, lm, translation, spoken-words) and a CTC model,
exported through their export forms (lstmkit.export.tasks); each file passes onnx.checker and
carries its metadata; ONNX Runtime's outputs equal the eager model's to 1e-5 at batch and time
sizes other than those exported; ``lstmkit predict model.onnx`` prints what ``lstmkit predict
RUN`` prints, on the fixtures' inputs and on slices of the real data in ../shared/data (the
predictor without torch: tests/infer/test_torch_free.py)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from lstmkit.cli.main import cli_main  # noqa: E402
from lstmkit.export import ExportError  # noqa: E402
from lstmkit.export.tasks import export_forms  # noqa: E402
from lstmkit.infer import onnx_predict  # noqa: E402
from lstmkit.infer.export import export_task_model, metadata_path  # noqa: E402
from lstmkit.infer.load import load_trained  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints"
DATA = ROOT.parent / "shared" / "data"
CPU = torch.device("cpu")
TOL = 1e-5
NAMES = ["adding", "sentiment", "lm", "translation", "spoken-words"]


class Exports:
    """Each fixture exported once, when a test first asks for it."""

    def __init__(self, root: Path):
        self.root, self.done = root, {}

    def __call__(self, name: str):
        if name not in self.done:
            task, model, ckpt = load_trained(FIXTURES / name, CPU)
            out = self.root / name / "model.onnx"
            out.parent.mkdir()
            result = export_task_model(task, model, ckpt, out)
            self.done[name] = SimpleNamespace(task=task, model=model, out=out, result=result)
        return self.done[name]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Exports:
    return Exports(tmp_path_factory.mktemp("exports"))


def session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def close(got: np.ndarray, want: torch.Tensor) -> None:
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=TOL, atol=TOL)


def padded_lengths(B: int, T: int) -> torch.Tensor:
    return torch.tensor([max(1, T - 2 * k) for k in range(B)])


# --------------------------------------------------------------------------- the files


@pytest.mark.parametrize("name", NAMES)
def test_each_graph_passes_the_checker_and_carries_the_metadata(exported, name):
    e = exported(name)
    meta = json.loads(metadata_path(e.out).read_text(encoding="utf-8"))
    assert meta["format"] == "lstmkit-onnx" and meta["task"] == e.task.name
    assert [p.name for p in e.result.paths] == [
        *(g["file"] for g in meta["graphs"].values()),
        metadata_path(e.out).name,
    ]
    for graph in meta["graphs"].values():
        path = e.out.with_name(graph["file"])
        onnx.checker.check_model(str(path), full_check=True)
        proto = onnx.load(str(path))
        props = {p.key: p.value for p in proto.metadata_props}
        assert json.loads(props["lstmkit"]) == meta
        assert props["task"] == e.task.name
        # the graph's inputs are those the metadata names, with its symbolic dimensions
        inputs = {i.name: i for i in proto.graph.input}
        assert list(inputs) == [p["name"] for p in graph["inputs"]]
        for port in graph["inputs"]:
            dims = inputs[port["name"]].type.tensor_type.shape.dim
            assert len(dims) == len(port["shape"])
            for d, want in zip(dims, port["shape"], strict=True):
                assert (d.dim_value == want) if isinstance(want, int) else bool(d.dim_param)
    if name in ("sentiment", "lm"):
        assert meta["tokenizer"] == e.task.tokenizer.state()
    if name in ("sentiment", "spoken-words"):
        assert meta["labels"] == e.task.labels
    if name == "spoken-words":
        assert meta["features"]["sample_rate"] == 8000 and meta["features"]["n_mels"] == 8
    if name == "translation":
        assert meta["decoding"]["beam"] == e.task.cfg.beam
        assert meta["src_tokenizer"] == e.task.tokenizers()[0].state()


# --------------------------------------------------------------------------- ORT vs eager


def test_adding_onnx_equals_eager(exported):
    e = exported("adding")
    x, lengths = torch.rand(5, 13, 2), padded_lengths(5, 13)
    (got,) = session(e.out).run(None, {"x": x.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        close(got, e.model(x, lengths))


def test_sentiment_onnx_equals_eager(exported):
    e = exported("sentiment")
    lengths = padded_lengths(5, 11)
    tokens = torch.randint(4, len(e.task.tokenizer), (5, 11))
    tokens[torch.arange(11)[None] >= lengths[:, None]] = 0
    (got,) = session(e.out).run(None, {"tokens": tokens.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        close(got, e.model(tokens, lengths))


def test_lm_onnx_equals_eager_with_the_state_in_and_out(exported):
    e = exported("lm")
    tokens = torch.randint(4, len(e.task.tokenizer), (2, 9))
    h, c = torch.randn(1, 2, 4), torch.randn(1, 2, 4)
    s = session(e.out)
    logits, h1, c1 = s.run(None, {"tokens": tokens.numpy(), "h": h.numpy(), "c": c.numpy()})
    with torch.no_grad():
        want, (wh, wc) = e.model(tokens, (h, c))
    close(logits, want)
    close(h1, wh)
    close(c1, wc)
    # streaming: two chunks with the state carried are the whole sequence at once
    a = s.run(None, {"tokens": tokens[:, :4].numpy(), "h": h.numpy(), "c": c.numpy()})
    b = s.run(None, {"tokens": tokens[:, 4:].numpy(), "h": a[1], "c": a[2]})
    close(np.concatenate([a[0], b[0]], 1), want)
    close(b[1], wh)


def test_spoken_words_onnx_equals_eager(exported):
    e = exported("spoken-words")
    x, lengths = torch.randn(4, 17, 8), padded_lengths(4, 17)
    (got,) = session(e.out).run(None, {"features": x.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        close(got, e.model(x, lengths))


def test_translation_encoder_and_decoder_step_equal_eager(exported):
    e = exported("translation")
    m = e.model
    lengths = padded_lengths(4, 9)
    src = torch.randint(4, m.src_embed.num_embeddings, (4, 9))
    src[torch.arange(9)[None] >= lengths[:, None]] = 0
    values, keys, mask, h, c = session(e.out).run(
        None, {"src": src.numpy(), "src_len": lengths.numpy()}
    )
    dec = session(e.out.with_name("model.decoder.onnx"))
    with torch.no_grad():
        memory, state = m.encode(src, lengths)
        close(values, memory.values)
        close(keys, memory.keys)
        assert (mask == memory.mask.numpy()).all()
        close(h, torch.stack([s[0] for s in state]))
        feed_t, y = m.init_feed(4, memory.values), torch.full((4,), 2)
        feed = feed_t.numpy()
        for _ in range(3):  # a few steps, each fed its own outputs
            logp, feed, h, c, att = dec.run(
                None,
                {"prev_tokens": y.numpy(), "feed": feed, "h": h, "c": c, "values": values}
                | {"keys": keys, "mask": mask},
            )
            feed_t, state, weights = m.step(m.embed_target(y), feed_t, state, memory)
            close(logp, torch.log_softmax(m.logits(feed_t), -1))
            close(att, weights)
            close(h, torch.stack([s[0] for s in state]))
            close(c, torch.stack([s[1] for s in state]))
            y = torch.from_numpy(logp.argmax(-1))


# --------------------------------------------------------------------------- predict


def _predict(capsys, target: str, inputs: list[str]) -> list[dict]:
    capsys.readouterr()
    assert cli_main(["predict", target, *inputs, "--device", "cpu"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def same_predictions(got: list[dict], want: list[dict], rel: float = 1e-5) -> None:
    """Labels and texts equal; numbers to ``rel`` (probabilities are rounded to 4 decimals, so
    one may sit on the other side of a rounding boundary: 1e-4)."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for k, v in w.items():
            if k == "probabilities":
                assert g[k].keys() == v.keys()
                assert g[k] == pytest.approx(v, abs=1.01e-4)
            elif isinstance(v, float) and not isinstance(v, bool):
                assert g[k] == pytest.approx(v, rel=rel, abs=1e-6), k
            else:
                assert g[k] == v, k


INPUTS = {
    "adding": ["0.3 0.9* 0.1 0.5* 0.2", "0.5* 0.1 0.2 0.7*", "0.1* 0.2 0.3 0.4 0.5 0.6* 0.7"],
    "sentiment": ["good fine movie", "bad awful film", "a movie", "zzz"],
    "lm": ["the cat", "to be or not to be, that is the question"],
    "translation": ["ein mann 3", "ein mann 12", "zwei"],
}


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_predict_on_the_export_prints_what_predict_on_the_run_prints(exported, name, capsys):
    e = exported(name)
    want = _predict(capsys, str(FIXTURES / name), INPUTS[name])
    same_predictions(_predict(capsys, str(e.out), INPUTS[name]), want)


def test_spoken_words_predict_on_the_export_equals_the_run(exported, tmp_path, capsys):
    from tests.fixtures.checkpoints.make_spoken_words import inputs

    e = exported("spoken-words")
    wavs = inputs(tmp_path)
    want = _predict(capsys, str(FIXTURES / "spoken-words"), wavs)
    got = _predict(capsys, str(e.out), wavs)
    same_predictions(got, want)
    assert [p["label"] for p in got] == ["low", "high", "low"]  # what the fixture learned


# --------------------------------------------------------------------------- real data


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared/data: see its SOURCE.md files)")
    return path


def test_real_data_sentiment_rt_polarity(exported, capsys, tmp_path):
    d = _need(DATA / "rt-polarity")
    lines = []
    for name in ("rt-polarity.pos", "rt-polarity.neg"):
        with open(d / name, encoding="latin-1") as f:
            lines += [next(f).strip() for _ in range(25)]
    e = exported("sentiment")
    (tmp_path / "mr.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    want = cli_main(["predict", str(FIXTURES / "sentiment"), "--input", str(tmp_path / "mr.txt")])
    want = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    got = onnx_predict.predict_file(e.out, lines)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    same_predictions(got, want)


def test_real_data_lm_tinyshakespeare(exported):
    path = _need(DATA / "tinyshakespeare" / "input.txt")
    text = path.read_text(encoding="utf-8")[:600]
    e = exported("lm")
    from lstmkit.infer.predict import predict_items

    want = predict_items(e.task, e.model, [text], CPU)
    same_predictions(onnx_predict.predict_file(e.out, [text]), want)


def test_real_data_spoken_words_fsdd(exported):
    folder = _need(DATA / "fsdd" / "recordings")
    wavs = [str(folder / f"{d}_jackson_0.wav") for d in range(10)]
    e = exported("spoken-words")
    from lstmkit.infer.predict import predict_items

    want = predict_items(e.task, e.model, wavs, CPU)
    got = onnx_predict.predict_file(e.out, wavs)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    same_predictions(got, want)


def test_real_data_translation_multi30k(exported):
    path = _need(DATA / "multi30k" / "test_2016_flickr.de.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        sentences = [next(f).strip() for _ in range(6)]
    e = exported("translation")
    want = e.task.translate(e.model, sentences, CPU)  # the run's --beam (5)
    assert onnx_predict.translate(onnx_predict.OnnxRun(e.out), sentences) == want
    greedy = e.task.translate(e.model, sentences, CPU, beam=1)
    assert onnx_predict.translate(onnx_predict.OnnxRun(e.out), sentences, beam=1) == greedy


# --------------------------------------------------------------------------- every form


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_the_classifier_form_equals_the_model_for_every_pooling(pooling, bidirectional):
    from lstmkit.models.classifier import SentimentModelConfig, TextClassifier
    from lstmkit.models.encoder import RecurrentConfig

    enc = RecurrentConfig(hidden_size=5, num_layers=2, bidirectional=bidirectional)
    cfg = SentimentModelConfig(encoder=enc, embedding_dim=4, pooling=pooling)
    model = TextClassifier(cfg, 20, 3).eval()
    lengths = padded_lengths(4, 7)
    tokens = torch.randint(4, 20, (4, 7)).masked_fill(torch.arange(7) >= lengths[:, None], 0)
    with torch.no_grad():
        close(export_forms(model)["model"](tokens, lengths).numpy(), model(tokens, lengths))


@pytest.mark.parametrize(
    "options",
    [
        {"attention": "bahdanau", "input_feed": False, "tie_embeddings": False},
        {"attention": "dot", "embed_size": 6},
        {"decoder": {"layer_norm": True, "num_layers": 2, "zoneout_h": 0.2, "peephole": True}},
    ],
)
def test_the_decoder_step_form_equals_the_model_step(options):
    """Every attention and decoder variant (layer norm, peepholes, zoneout's eval form, two
    layers): the step form (the reference cell step) is the model's step."""
    from dataclasses import replace

    from lstmkit.models.seq2seq import DecoderConfig, EncoderConfig, Seq2Seq, Seq2SeqConfig

    options = dict(options)
    dec = DecoderConfig(hidden_size=10, **options.pop("decoder", {}))
    cfg = Seq2SeqConfig(embed_size=4, attention_size=3, encoder=EncoderConfig(hidden_size=5))
    cfg = replace(cfg, decoder=dec, **options)
    model = Seq2Seq(cfg, 15, 12).eval()
    forms = export_forms(model)
    src, lengths = torch.randint(4, 15, (3, 5)), torch.tensor([5, 3, 2])
    with torch.no_grad():
        values, keys, mask, h, c = forms["encoder"](src, lengths)
        memory, state = model.encode(src, lengths)
        feed, y = model.init_feed(3, values), torch.full((3,), 2)
        mine = feed
        for _ in range(3):
            logp, mine, h, c, att = forms["decoder"](y, mine, h, c, values, keys, mask)
            feed, state, weights = model.step(model.embed_target(y), feed, state, memory)
            close(logp.numpy(), torch.log_softmax(model.logits(feed), -1))
            close(att.numpy(), weights)
            y = logp.argmax(-1)


# --------------------------------------------------------------------------- CTC, baselines


def _ctc_task(bidirectional: bool):
    from lstmkit.models.encoder import RecurrentConfig
    from lstmkit.models.speech import SpeechModelConfig
    from lstmkit.tasks.speech import AsrCtcTask, CtcConfig

    enc = RecurrentConfig(hidden_size=5, num_layers=2, bidirectional=bidirectional)
    cfg = CtcConfig(sample_rate=8000, n_mels=6, decoder="beam", beam_size=3)
    task = AsrCtcTask(cfg, SpeechModelConfig(encoder=enc, subsample=2), state={"chars": "ab c"})
    return task, task.build_model().eval()


def test_ctc_export_equals_eager_and_transcribes_as_the_run(tmp_path):
    """Two bidirectional layers over stacked frames (``--subsample 2``), decoded with the run's
    beam search; the unidirectional case is the adding and spoken-words fixtures'."""
    task, model = _ctc_task(bidirectional=True)
    out = tmp_path / "ctc.onnx"
    export_task_model(task, model, SimpleNamespace(path=tmp_path), out)
    x, lengths = torch.randn(3, 15, 6), torch.tensor([15, 10, 5])
    log_probs, out_lengths = session(out).run(
        None, {"features": x.numpy(), "lengths": lengths.numpy()}
    )
    with torch.no_grad():
        want, want_len = model(x, lengths)
    assert (out_lengths == want_len.numpy()).all() and list(out_lengths) == [8, 5, 3]
    for b, n in enumerate(out_lengths):  # the frames a decoder reads
        close(log_probs[b, :n], want[b, :n])
    rng = np.random.default_rng(0)
    wavs = []
    for k in range(2):
        wavs.append(str(tmp_path / f"{k}.wav"))
        sf.write(wavs[-1], (0.1 * rng.normal(size=1600 + 400 * k)).astype(np.float32), 8000)
    with torch.no_grad():  # as lstmkit predict runs it
        want = task.predict(model, wavs, CPU)  # beam search, beam 3 (the run's)
    assert onnx_predict.predict_file(out, wavs) == want


def test_a_gru_encoder_exports_with_torchs_ops_and_a_bidirectional_one_is_refused(tmp_path):
    from lstmkit.export import export_model
    from lstmkit.models.encoder import RecurrentConfig, SequenceModel

    model = SequenceModel(RecurrentConfig(cell="gru", hidden_size=3), 2, 1).eval()
    form = export_forms(model)["model"].eval()
    x, lengths = torch.randn(4, 9, 2), padded_lengths(4, 9)
    with torch.no_grad():
        want = model(x, lengths)
        close(form(x, lengths).numpy(), want)
        B, T = torch.export.Dim("B"), torch.export.Dim("T")
        export_model(
            form,
            form.example(),
            tmp_path / "gru.onnx",
            input_names=["x", "lengths"],
            output_names=["outputs"],
            dynamic_shapes=({0: B, 1: T}, {0: B}),
        )
    (got,) = session(tmp_path / "gru.onnx").run(None, {"x": x.numpy(), "lengths": lengths.numpy()})
    close(got, want)
    bi = SequenceModel(RecurrentConfig(cell="gru", hidden_size=3, bidirectional=True), 2, 1)
    with pytest.raises(ExportError, match="--cell gru with --bidirectional"):
        export_forms(bi.eval())
