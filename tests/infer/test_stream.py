"""lstmkit.infer.stream: streaming the chunks of a sequence equals one call on the whole sequence
(1e-6, float32), over random chunkings drawn by hypothesis, for every lstmkit.LSTM variant in
eval mode and every task model with a recurrent state, and for sessions joining and leaving a
running batch; the reference is always the model itself called once on the whole (or prefix)
sequence, never the stream's own code."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lstmkit
from lstmkit.infer.stream import Stream
from lstmkit.models.classifier import TextClassifier
from lstmkit.models.encoder import RecurrentConfig
from lstmkit.models.speech import CtcModel, SpeechModelConfig, WordClassifier, ctc_greedy
from lstmkit.utils.errors import UserError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"
TOL = {"atol": 1e-6, "rtol": 1e-6}
LN_TOL = {"atol": 5e-6, "rtol": 1e-4}
"""Layer norm divides by the standard deviation of 4H pre-activations, which magnifies the
rounding of the input projection: a one-step call computes it by the C++ step's own GEMV and
layer norm (lstmkit.nn.LSTM's StepPlan), one long call by BLAS and F.layer_norm, whose blocking
depends on the batch. Up to 2.3e-6 (3.9e-5 relative) seen in float32 over the random running
batches, 1e-15 in float64 (tested below: the math is the same)."""
F64_TOL = {"atol": 1e-12, "rtol": 1e-12}
FEW = settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))

VARIANTS = {
    "vanilla": {},
    "layer_norm": {"layer_norm": True},
    "peephole": {"peephole": True},
    "coupled": {"coupled": True},
    "no_forget_gate": {"forget_gate": False},
    "projection": {"proj_size": 3},
    "zoneout": {"zoneout_h": 0.3, "zoneout_c": 0.2},
    "recurrent_dropout": {"recurrent_dropout": 0.3},
    "two_layers": {"num_layers": 2, "dropout": 0.2},
}


@st.composite
def chunking(draw, total_max: int = 12):
    """A sequence length T and chunk lengths (each 1..5) summing to T."""
    T = draw(st.integers(1, total_max))
    sizes, left = [], T
    while left:
        n = draw(st.integers(1, min(left, 5)))
        sizes.append(n)
        left -= n
    return T, sizes


def _cuts(sizes):
    start = 0
    for n in sizes:
        yield slice(start, start + n)
        start += n


# ---------------------------------------------------------------------------------------------
# bare lstmkit.LSTM


@pytest.mark.parametrize("backend", ["auto", "cpu"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@FEW
@given(plan=chunking(), batch_first=st.booleans())
def test_lstm_chunks_equal_one_call(variant, backend, plan, batch_first):
    T, sizes = plan
    torch.manual_seed(len(sizes))
    m = lstmkit.LSTM(3, 5, backend=backend, batch_first=batch_first, **VARIANTS[variant]).eval()
    x = torch.randn(T, 3)
    with torch.no_grad():
        whole, (h, c) = m(x)
    s = Stream(m).open()
    outs = [s.feed(x[sl]) for sl in _cuts(sizes)]
    tol = LN_TOL if variant == "layer_norm" else TOL
    torch.testing.assert_close(torch.cat(outs), whole, **tol)
    torch.testing.assert_close(s.hx[0], h, **tol)
    torch.testing.assert_close(s.hx[1], c, **tol)


@pytest.mark.parametrize("cell", [torch.nn.GRU, torch.nn.LSTM])
def test_torch_layers_stream(cell):
    m = cell(3, 4, num_layers=2).eval()
    x = torch.randn(9, 3)
    with torch.no_grad():
        whole, _ = m(x)
    stream = Stream(m)
    s, other = stream.open(), stream.open()
    parts = []
    for sl, n in ((slice(0, 4), 2), (slice(4, 5), 3), (slice(5, 9), 1)):  # ragged: packed
        parts.append(stream.step({s: x[sl], other: torch.randn(n, 3)})[s])
    torch.testing.assert_close(torch.cat(parts), whole, **TOL)


@pytest.mark.parametrize("mode", ["int8", "bf16"])
@pytest.mark.parametrize("variant", ["vanilla", "projection", "two_layers"])
@FEW
@given(plan=chunking())
def test_quantized_lstm_streams(variant, mode, plan):
    """lstmkit.quantize's QuantizedLSTM: the stream equals one call of the quantized model."""
    T, sizes = plan
    torch.manual_seed(T)
    q = lstmkit.quantize(lstmkit.LSTM(3, 5, **VARIANTS[variant]).eval(), mode).eval()
    x = torch.randn(T, 3)
    with torch.no_grad():
        whole, _ = q(x)
    s = Stream(q).open()
    torch.testing.assert_close(torch.cat([s.feed(x[sl]) for sl in _cuts(sizes)]), whole, **TOL)


@st.composite
def schedule(draw):
    """Four sessions' sequences and a running batch: at each step a random subset of the open
    sessions gets its next chunk; a session opens at a random step and closes when done."""
    lengths = draw(st.lists(st.integers(1, 9), min_size=4, max_size=4))
    joins = draw(st.lists(st.integers(0, 3), min_size=4, max_size=4))
    seed = draw(st.integers(0, 2**16))
    return lengths, joins, seed


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("variant", ["vanilla", "projection", "layer_norm"])
@FEW
@given(sched=schedule())
def test_running_batch_join_and_leave(variant, dtype, sched):
    lengths, joins, seed = sched
    rng = np.random.default_rng(seed)
    m = lstmkit.LSTM(3, 5, **VARIANTS[variant]).to(dtype).eval()
    xs = [torch.randn(n, 3, dtype=dtype) for n in lengths]
    stream = Stream(m)
    sessions: dict[int, object] = {}
    fed = [0] * 4
    outs: list[list[torch.Tensor]] = [[] for _ in range(4)]
    step = 0
    while any(fed[b] < lengths[b] for b in range(4)):
        for b in range(4):
            if joins[b] == step and b not in sessions:
                sessions[b] = stream.open()
        ready = [b for b in sessions if fed[b] < lengths[b] and rng.random() < 0.7]
        chunks = {}
        for b in ready:
            n = int(rng.integers(1, lengths[b] - fed[b] + 1))
            chunks[sessions[b]] = xs[b][fed[b] : fed[b] + n]
            fed[b] += n
        result = stream.step(chunks)
        assert set(result) == set(chunks)
        for b in ready:
            outs[b].append(result[sessions[b]])
            if fed[b] == lengths[b]:
                sessions[b].close()
        step += 1
        if step > 3 and not sessions:
            for b in range(4):  # a session whose join step passed before its turn
                if b not in sessions and fed[b] == 0:
                    sessions[b] = stream.open()
    assert stream.sessions == []
    tol = F64_TOL if dtype == torch.float64 else LN_TOL if variant == "layer_norm" else TOL
    with torch.no_grad():
        for b in range(4):
            torch.testing.assert_close(torch.cat(outs[b]), m(xs[b])[0], **tol)


def test_step_checks_every_chunk_before_changing_any():
    m = lstmkit.LSTM(3, 4).eval()
    stream = Stream(m)
    a, b = stream.open(), stream.open()
    x = torch.randn(5, 3)
    a.feed(x[:2])
    before = tuple(t.clone() for t in a.hx)
    with pytest.raises(UserError, match="0 steps"):
        stream.step({a: x[2:4], b: x[:0]})
    with pytest.raises(UserError, match=r"shape \(T, 3\)"):
        stream.step({a: x[2:4], b: torch.randn(2, 4)})
    with pytest.raises(UserError, match=f"session {b.id}'s chunk holds NaN"):
        stream.step({a: x[2:4], b: torch.full((2, 3), float("nan"))})
    assert all(torch.equal(u, v) for u, v in zip(a.hx, before, strict=True)) and a.steps == 2
    with torch.no_grad():
        torch.testing.assert_close(torch.cat([a.hx[0]]), m(x[:2])[1][0], **TOL)
    b.close()
    with pytest.raises(UserError, match="closed"):
        b.feed(x)
    with pytest.raises(UserError, match="not a session of this stream"):
        Stream(m).step({a: x})
    a.reset()
    with torch.no_grad():
        torch.testing.assert_close(a.feed(x), m(x)[0], **TOL)


def test_refusals_name_the_reason():
    with pytest.raises(UserError, match="training mode"):
        Stream(lstmkit.LSTM(3, 4))
    with pytest.raises(UserError, match="bidirectional"):
        Stream(lstmkit.LSTM(3, 4, bidirectional=True).eval())
    with pytest.raises(UserError, match="bidirectional"):
        lstmkit.load(FIXTURES / "sentiment").stream()
    with pytest.raises(UserError, match="translation has no streaming form"):
        lstmkit.load(FIXTURES / "translation").stream()


# ---------------------------------------------------------------------------------------------
# task models


@pytest.mark.parametrize("per_step", [False, True])
@FEW
@given(plan=chunking())
def test_sequence_model_streams(per_step, plan):
    from lstmkit.models.encoder import SequenceModel

    T, sizes = plan
    torch.manual_seed(T)
    enc = RecurrentConfig(hidden_size=5, num_layers=2, coupled=True)
    m = SequenceModel(enc, 2, 3, per_step=per_step).eval()
    x = torch.randn(T, 2)
    s = Stream(m).open()
    for sl in _cuts(sizes):
        got = s.feed(x[sl])
        with torch.no_grad():
            want = m(x[None, : sl.stop])[0]
        torch.testing.assert_close(got, want[sl] if per_step else want, **TOL)


def test_adding_run_streams():
    run = lstmkit.load(FIXTURES / "adding", "cpu")
    x = torch.rand(6, run.model.encoder.input_size)
    s = run.stream().open()
    s.feed(x[:2])
    with torch.no_grad():
        torch.testing.assert_close(s.feed(x[2:]), run.model(x[None])[0], **TOL)


@pytest.fixture(scope="module")
def sentiment_run():
    return lstmkit.load(FIXTURES / "sentiment", "cpu")


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=chunking())
def test_classifier_running_prediction(sentiment_run, pooling, plan):
    T, sizes = plan
    task = sentiment_run.task
    cfg = dataclasses.replace(
        task.model_cfg,
        pooling=pooling,
        encoder=RecurrentConfig(hidden_size=4, bidirectional=False, peephole=True),
    )
    torch.manual_seed(T)
    model = TextClassifier(cfg, len(task.tokenizer), len(task.labels)).eval()
    run = type(sentiment_run)(sentiment_run.path, task, model, sentiment_run.checkpoint, "cpu")
    ids = torch.randint(4, len(task.tokenizer), (T,))
    s = run.stream().open()
    for sl in _cuts(sizes):
        got = s.feed(ids[sl].tolist())
        n = sl.stop
        with torch.no_grad():
            want = model(ids[None, :n], torch.tensor([n]))[0]
        torch.testing.assert_close(got.logits, want, **TOL)
        assert got.label == task.labels[int(want.argmax())] and got.steps == n
    assert set(got.to_dict()["probabilities"]) == set(task.labels)


def test_classifier_text_chunks_use_the_run_tokenizer(sentiment_run):
    task = sentiment_run.task
    cfg = dataclasses.replace(task.model_cfg, encoder=RecurrentConfig(hidden_size=4))
    model = TextClassifier(cfg, len(task.tokenizer), len(task.labels)).eval()
    run = type(sentiment_run)(sentiment_run.path, task, model, sentiment_run.checkpoint, "cpu")
    s = run.stream().open()
    s.feed("good fine")
    got = s.feed("movie")
    want = run.predict(["good fine movie"])[0]
    assert got.to_dict()["probabilities"] == want["probabilities"]


@pytest.fixture(scope="module")
def lm_run():
    return lstmkit.load(FIXTURES / "lm", "cpu")


@FEW
@given(plan=chunking(16))
def test_lm_scores_and_next_token(lm_run, plan):
    T, sizes = plan
    ids = torch.randint(4, lm_run.task.tokenizer.__len__(), (T,))
    with torch.no_grad():
        whole, _ = lm_run.model(ids[None])
    s = lm_run.stream().open()
    outs = [s.feed(ids[sl]) for sl in _cuts(sizes)]
    torch.testing.assert_close(torch.cat([o.scores for o in outs]), whole[0], **TOL)
    torch.testing.assert_close(outs[-1].next, torch.softmax(whole[0, -1], -1), **TOL)


def test_lm_generation_continues_from_the_session(lm_run):
    stream = lm_run.stream()
    s = stream.open()
    s.feed("the q")
    drawn = list(s.generate(6, temperature=0))
    ids = lm_run.task.encode_prompt("the q", "unk")
    with torch.no_grad():  # greedy by hand: the model on the whole prefix at each step
        for token in drawn:
            logits = lm_run.model(torch.tensor([ids]))[0][0, -1]
            logits[[0, 1, 2, 3]] = -float("inf")  # never drawn for characters
            assert token == int(logits.argmax())
            ids.append(token)
    assert s.steps == len(ids)
    assert all(isinstance(stream.piece(t), str) for t in drawn)
    V = len(lm_run.task.tokenizer)
    for bad in ([1, V], [-1], torch.tensor([V]), [0.5]):
        with pytest.raises(UserError, match="outside the vocabulary|token ids"):
            s.feed(bad)
    assert s.steps == len(ids)  # refused chunks change nothing


@pytest.fixture(scope="module")
def words_run():
    return lstmkit.load(FIXTURES / "spoken-words", "cpu")


@pytest.mark.parametrize(("subsample", "pooling"), [(1, "mean"), (3, "max"), (2, "last")])
@FEW
@given(plan=chunking(14))
def test_spoken_words_running_prediction(words_run, subsample, pooling, plan):
    T, sizes = plan
    if subsample == 1 and pooling == "mean":
        model = words_run.model  # the fixture itself
    else:
        cfg = dataclasses.replace(words_run.task.model_cfg, subsample=subsample, pooling=pooling)
        torch.manual_seed(T)
        model = WordClassifier(cfg, 8, 2).eval()
    feats = torch.randn(T, 8)
    s = Stream(model).open()
    for sl in _cuts(sizes):
        got = s.feed(feats[sl])
        with torch.no_grad():
            want = model(feats[None, : sl.stop], torch.tensor([sl.stop]))[0]
        torch.testing.assert_close(got.logits, want, **TOL)


def _ctc_model(layers=2, subsample=3, proj=0):
    enc = RecurrentConfig(hidden_size=6, num_layers=layers, proj_size=proj, bidirectional=False)
    return CtcModel(SpeechModelConfig(encoder=enc, subsample=subsample), 8, 5).eval()


@pytest.mark.parametrize(("subsample", "proj"), [(3, 0), (1, 2)])
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=chunking(20))
def test_ctc_incremental_greedy(subsample, proj, plan):
    T, sizes = plan
    torch.manual_seed(T)
    model = _ctc_model(subsample=subsample, proj=proj)
    with torch.no_grad():  # sharpen the head so that blanks and symbols alternate
        model.head.weight.mul_(8)
    feats = torch.randn(T, 8)
    s = Stream(model).open()
    committed = []
    for sl in _cuts(sizes):
        got = s.feed(feats[sl])
        committed.append(got.log_probs)
        with torch.no_grad():
            lp, n = model(feats[None, : sl.stop], torch.tensor([sl.stop]))
        assert got.ids == ctc_greedy(lp[0], int(n[0]))  # the prefix's greedy transcript
    whole = lp[0, : int(n[0])]
    full_groups = T // subsample
    torch.testing.assert_close(torch.cat(committed), whole[:full_groups], **TOL)


# ---------------------------------------------------------------------------------------------
# raw audio


def _wave(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(cuts=st.lists(st.integers(1, 900), min_size=1, max_size=6))
def test_audio_session_frames_and_final_output(words_run, cuts):
    from lstmkit.data import audio

    task = words_run.task
    wave = _wave(0.3, task.cfg.sample_rate)
    a = words_run.stream().open_audio()
    bounds = sorted({0, *(c for c in np.cumsum(cuts) if c < len(wave)), len(wave)})
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        a.feed(wave[lo:hi])
    final = a.finish()
    np.testing.assert_array_equal(np.concatenate(a._frames), audio.log_mel(wave, task.cfg.spec))
    with torch.no_grad():
        f = torch.from_numpy(task.features(wave))[None]
        want = words_run.model(f, torch.tensor([f.shape[1]]))[0]
    torch.testing.assert_close(final.logits, want, **TOL)


def test_audio_session_global_normalisation_is_exact_at_every_chunk(words_run):
    from lstmkit.data import audio

    task = words_run.task
    task.cfg = dataclasses.replace(task.cfg, normalize="global")
    task._stats = (np.full(8, -3.0, np.float32), np.full(8, 2.0, np.float32))
    try:
        wave = _wave(0.25, task.cfg.sample_rate, seed=1)
        a = words_run.stream().open_audio()
        logmel = audio.log_mel(wave, task.cfg.spec)
        feats = torch.from_numpy(audio.normalize(logmel, "global", task._stats))
        for lo in range(0, len(wave), 333):
            got = a.feed(wave[lo : lo + 333])
            n = a.frames
            if n:
                with torch.no_grad():
                    want = words_run.model(feats[None, :n], torch.tensor([n]))[0]
                torch.testing.assert_close(got.logits, want, **TOL)
        assert a.frames == len(logmel) and not a._frames  # global: no frames kept
    finally:
        task.cfg = dataclasses.replace(task.cfg, normalize="bins")
        task._stats = None


def test_audio_session_refusals(words_run, lm_run):
    a = words_run.stream().open_audio()
    with pytest.raises(UserError, match="1-D samples"):
        a.feed(np.zeros((2, 3)))
    with pytest.raises(UserError, match="fed no audio"):
        a.finish()
    with pytest.raises(UserError, match="speech run"):
        lm_run.stream().open_audio()


def test_ctc_run_audio_session_ends_with_the_transcribe_result(tmp_path):
    """An asr-ctc run (built here: no fixture) streamed from raw samples: the partial
    transcripts are text of the run's characters, and finish() gives transcribe's text."""
    from types import SimpleNamespace

    import soundfile as sf

    from lstmkit.tasks.speech import AsrCtcTask, CtcConfig

    cfg = CtcConfig(sample_rate=8000, n_mels=8, normalize="bins")
    task = AsrCtcTask(
        cfg,
        SpeechModelConfig(encoder=RecurrentConfig(hidden_size=6, bidirectional=False), subsample=3),
        {"chars": "ab "},
    )
    torch.manual_seed(3)
    model = task.build_model().eval()
    with torch.no_grad():
        model.head.weight.mul_(8)
    wave = _wave(0.4, 8000, seed=2)
    sf.write(tmp_path / "a.wav", wave, 8000, subtype="FLOAT")  # the same samples back
    a = Stream(SimpleNamespace(task=task, model=model)).open_audio()
    partial = [a.feed(wave[lo : lo + 700]) for lo in range(0, len(wave), 700)]
    assert all(set(p.text) <= set("ab ") for p in partial if p is not None)
    final = a.finish()
    (want,) = task.transcribe(model, [str(tmp_path / "a.wav")], "cpu", "greedy", 1)
    assert final.text == want["text"] != ""
    assert final.text == "".join("ab "[i - 1] for i in final.ids)


@pytest.mark.parametrize("line_end", [False, True])
def test_lm_primed_session_samples_what_generate_samples(lm_run, line_end):
    from types import SimpleNamespace

    task, model = lm_run.task, lm_run.model
    if line_end:  # the fixture's characters have no line end: the same task with one
        state = task.state()
        state["tokenizer"] = {**state["tokenizer"], "tokens": [*task.tokenizer.itos, "\n"]}
        task = type(task)(task.cfg, task.model_cfg, state)
        model = task.build_model().eval()
        assert task.start_ids([5]) == [len(task.tokenizer) - 1, 5]
    stream = Stream(SimpleNamespace(task=task, model=model))
    prompt = task.encode_prompt("to be", "error")
    s = stream.open(prime=True)
    s.feed(prompt)
    got = list(s.generate(25, temperature=0.9, top_k=8, seed=7))
    want = list(task.generate(model, prompt, 25, temperature=0.9, top_k=8, seed=7))
    assert got == want and s.steps == len(prompt) + 25 + line_end
    with pytest.raises(UserError, match="language-model run only"):
        Stream(lstmkit.LSTM(3, 4).eval()).open(prime=True)


def _ragged_batch_check(variant: str, device: str, tol: dict) -> None:
    torch.manual_seed(0)
    m = lstmkit.LSTM(3, 8, **VARIANTS[variant]).to(device).eval()
    xs = [torch.randn(n, 3, device=device) for n in (7, 4, 9)]
    stream = Stream(m)
    ss = [stream.open() for _ in xs]
    outs: list[list[torch.Tensor]] = [[] for _ in xs]
    for lo, hi in ((0, 2), (2, 3), (3, 9)):
        got = stream.step({s: x[lo:hi] for s, x in zip(ss, xs, strict=True) if len(x[lo:hi])})
        for b, s in enumerate(ss):
            if s in got:
                outs[b].append(got[s])
    with torch.no_grad():
        for b, x in enumerate(xs):
            torch.testing.assert_close(torch.cat(outs[b]), m(x)[0], **tol)


def test_ragged_batch_check_on_cpu():
    _ragged_batch_check("peephole", "cpu", TOL)  # the CUDA test's own check, run here


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_lstm_streams_on_cuda(variant):
    """The GPU backends (Triton where the variant has it): a running batch of three sessions
    with ragged chunks equals each sequence's own call. Not run on the CPU-only machine this
    was written on; 1e-5 there, as the GPU kernels' rounding was not measured."""
    _ragged_batch_check(variant, "cuda", {"atol": 1e-5, "rtol": 1e-5})


def test_audio_sessions_share_one_step(words_run):
    """Audio sessions in one step give what each gives alone; a bad chunk changes none."""
    rate = words_run.task.cfg.sample_rate
    waves = [_wave(0.2, rate, seed=k) for k in range(3)]
    stream = words_run.stream()
    together = [stream.open_audio() for _ in waves]
    alone = [stream.open_audio() for _ in waves]
    with pytest.raises(UserError, match=f"session {together[1].id}: holds NaN"):
        stream.step({together[0]: waves[0][:500], together[1]: np.full(10, np.nan)})
    assert together[0].frames == 0
    for lo, hi in ((0, 90), (90, 700), (700, 1600)):  # the first chunk completes no frame
        out = stream.step({a: w[lo:hi] for a, w in zip(together, waves, strict=True)})
        for a, b, w in zip(together, alone, waves, strict=True):
            want = b.feed(w[lo:hi])
            if want is None:
                assert out[a] is None
            else:
                torch.testing.assert_close(out[a].logits, want.logits, **TOL)
