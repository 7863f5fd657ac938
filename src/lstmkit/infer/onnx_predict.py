"""``lstmkit predict model.onnx INPUTS...``: an exported model (``lstmkit export``) run by ONNX
Runtime, without torch.

This module imports numpy, onnxruntime and lstmkit's torch-free parts only (the tokenizers,
the audio features, the prompt encoding), so an exported model is usable where torch is not
installed: ``python -m lstmkit.infer.onnx_predict model.onnx INPUTS...`` prints what
``lstmkit predict RUN INPUTS...`` prints, one JSON object per input. Everything it needs comes
from the export's metadata (:mod:`lstmkit.infer.export`): the tokenizer, the labels, the
feature settings, the decoding options.

The seq2seq model's search runs here in numpy over two ONNX Runtime sessions, the encoder and
the decoder step: :func:`greedy_search` and :func:`beam_search` follow
:func:`lstmkit.models.seq2seq.greedy_decode` and :func:`~lstmkit.models.seq2seq.beam_search`
step for step (the same candidates, the same order among them, the same length
normalisation), and the CTC decoders those of :mod:`lstmkit.models.speech`.

A forecast export reads ``--input recent.csv`` as its table (:func:`forecast`): the reader
and checks of :mod:`lstmkit.data.timeseries` (torch-free), the run's scaler and calendar
features from the metadata's ``forecast`` section, and the same CSV columns as ``lstmkit
predict RUN --input recent.csv`` (Student-t quantiles sampled with numpy: the same estimator,
not the same draws).
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from lstmkit.utils.errors import UserError
from lstmkit.utils.io import atomic_write_text
from lstmkit.utils.records import format_results

METADATA_KEY = "lstmkit"  # lstmkit.infer.export.METADATA_KEY (that module imports torch)
METADATA_FORMAT = "lstmkit-onnx"
PAD, UNK, BOS, EOS = range(4)  # lstmkit.data.tokenize's special ids
BATCH = 64  # inputs per run: memory bounded whatever the count


def is_onnx_path(path: str) -> bool:
    """True where ``path`` names an ONNX file (``predict`` routes it here)."""
    return str(path).lower().endswith(".onnx")


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # warnings about unused initialisers are not the user's
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for a damaged file
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable ONNX model ({detail[:200]})") from None


def read_metadata(session, path: Path) -> dict:
    """The lstmkit metadata of an ONNX session's model; one :class:`UserError` line when the
    file is not an lstmkit export."""
    props = session.get_modelmeta().custom_metadata_map
    text = props.get(METADATA_KEY)
    if text is None:
        raise UserError(
            f"{path}: an ONNX model, but not an lstmkit export (no '{METADATA_KEY}' metadata); "
            "make one with `lstmkit export RUN --out FILE.onnx`"
        )
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: its lstmkit metadata is not JSON ({e.msg})") from None
    if not isinstance(meta, dict) or meta.get("format") != METADATA_FORMAT:
        raise UserError(f"{path}: its lstmkit metadata is not of format {METADATA_FORMAT!r}")
    return meta


class OnnxRun:
    """An exported model: its metadata and an ONNX Runtime session per graph."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise UserError(
                f"{path}: file not found" if not path.exists() else f"{path}: not a file"
            )
        first = _session(path)
        self.path = path
        self.meta = read_metadata(first, path)
        self.task = str(self.meta.get("task", ""))
        graphs = self.meta.get("graphs") or {}
        names = list(graphs)
        if not names:
            raise UserError(f"{path}: its lstmkit metadata lists no graphs")
        self.sessions = {names[0]: first}
        for name in names[1:]:
            other = path.with_name(str(graphs[name]["file"]))
            if not other.is_file():
                raise UserError(
                    f"{path}: its {name} graph {other.name} is missing (export writes it beside "
                    f"{path.name}; copy both)"
                )
            self.sessions[name] = _session(other)

    def run(self, graph: str, **inputs: np.ndarray) -> list[np.ndarray]:
        try:
            return self.sessions[graph].run(None, inputs)
        except Exception as e:  # ORT's own types: inputs the graph does not take
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                f"{self.path}: ONNX Runtime refused the inputs ({detail[:300]})"
            ) from None


# ----------------------------------------------------------------------------- the tasks


def predict_file(path: str | Path, items: list[str]) -> list[dict]:
    """One result per input, as ``lstmkit predict RUN`` gives them, from the export at
    ``path`` (``lstmkit predict model.onnx`` calls this)."""
    return predict_run(OnnxRun(path), items)


def predict_run(run: OnnxRun, items: list[str]) -> list[dict]:
    """:func:`predict_file` of an export already open."""
    path = run.path
    if "forecast" in run.meta:
        raise UserError(
            f"predict {path}: a forecast export reads its recent rows from a table; give "
            "--input recent.csv"
        )
    if not items:
        raise UserError(f"predict {path}: give the inputs (as arguments, or --input FILE)")
    task = run.task
    if task == "sentiment":
        return _sentiment(run, items)
    if task == "lm":
        return _lm(run, items)
    if task == "spoken-words":
        return [_classify_audio(run, p) for p in items]
    if task == "asr-ctc":
        return [{"input": r["input"], "text": r["text"]} for r in transcribe(run, items)]
    if task == "translation":
        return [
            {"source": s, "translation": t}
            for s, t in zip(items, translate(run, items), strict=True)
        ]
    if "marked_pairs" in run.meta:
        return [_marked_pairs(run, text, f"input {k + 1}") for k, text in enumerate(items)]
    raise UserError(
        f"predict {path}: task {task!r} reads its inputs with torch; use `lstmkit predict RUN`"
    )


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def _pad(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    tokens = np.full((len(rows), int(lengths.max())), PAD, dtype=np.int64)
    for k, r in enumerate(rows):
        tokens[k, : len(r)] = r
    return tokens, lengths


def _tokenizer(state: dict):
    from lstmkit.data.tokenize import TextTokenizer

    return TextTokenizer.from_state(state)


def _sentiment(run: OnnxRun, texts: list[str]) -> list[dict]:
    """The classifier's labels and probabilities (``SentimentTask.predict``): texts cut to
    ``max_tokens``, one of unknown characters only is one ``<unk>``."""
    meta = run.meta
    tok, labels, cut = _tokenizer(meta["tokenizer"]), meta["labels"], meta.get("max_tokens", 0)
    ids = [(x[:cut] if cut else x) or [UNK] for x in tok.encode_batch(texts)]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    probs = np.zeros((len(ids), len(labels)), dtype=np.float32)
    for k in range(0, len(order), BATCH):
        part = order[k : k + BATCH]
        tokens, lengths = _pad([ids[i] for i in part])
        (logits,) = run.run("model", tokens=tokens, lengths=lengths)
        probs[part] = _softmax(logits)
    return [
        {
            "text": text,
            "label": labels[int(p.argmax())],
            "probabilities": {lab: round(float(q), 4) for lab, q in zip(labels, p, strict=True)},
        }
        for text, p in zip(texts, probs, strict=True)
    ]


def _zeros_state(run: OnnxRun, graph: str, batch: int) -> dict[str, np.ndarray]:
    """Zero arrays for the graph's float inputs other than the first (the state)."""
    ports = run.meta["graphs"][graph]["inputs"][1:]
    return {
        p["name"]: np.zeros([batch if d == "B" else d for d in p["shape"]], dtype=np.float32)
        for p in ports
    }


def stream_nll(run: OnnxRun, ids: np.ndarray, seq_len: int) -> tuple[float, int]:
    """:func:`lstmkit.models.lm_decode.stream_nll` of one stream: ``ids[:-1]`` in chunks of
    ``seq_len`` with the state carried from chunk to chunk (the graph's state outputs fed back
    as its inputs), the summed negative log-likelihood of ``ids[1:]``."""
    x, y = ids[:-1].astype(np.int64), ids[1:].astype(np.int64)
    state = _zeros_state(run, "model", 1)
    names = list(state)
    total = 0.0
    for s in range(0, len(x), seq_len):
        scores, *new = run.run("model", tokens=x[None, s : s + seq_len], **state)
        logp = _log_softmax(scores[0].astype(np.float32))
        target = y[s : s + seq_len]
        total += float(-logp[np.arange(len(target)), target].sum(dtype=np.float32))
        state = dict(zip(names, new, strict=True))
    return total, len(x)


TOKEN_UNITS_KEY = "token"


def lm_metrics(total_nll: float, count: int, words: int, kind: str) -> dict:
    """:func:`lstmkit.tasks.lm.lm_metrics` (that module imports torch)."""
    from lstmkit.data.corpus_splits import TOKEN_UNITS

    loss = total_nll / max(count, 1)
    out: dict = {"loss": loss, "ppl": math.exp(min(loss, 700.0))}
    out["word_ppl"] = math.exp(min(total_nll / max(words, 1), 700.0))
    if kind == "char":
        out["bpc"] = loss / math.log(2)
    out["tokens"] = float(count)
    out["words"] = float(words)
    out[TOKEN_UNITS_KEY] = TOKEN_UNITS[kind]
    return out


def _lm(run: OnnxRun, texts: list[str]) -> list[dict]:
    """Each text's loss, perplexities and bits per character (``LanguageModelTask.predict``)."""
    from lstmkit.data.prompt import encode_prompt

    tok = _tokenizer(run.meta["tokenizer"])
    out = []
    for text in texts:
        ids = np.asarray(encode_prompt(tok, text, "unk"), dtype=np.int64)
        if len(ids) < 2:
            raise UserError(f"predict: {text!r} has fewer than 2 tokens to score")
        total, count = stream_nll(run, ids, int(run.meta["seq_len"]))
        words = len(text.split()) + text.count("\n") - 1
        out.append({"text": text, **lm_metrics(total, count, words, tok.kind)})
    return out


def audio_features(meta: dict, path: str) -> tuple[np.ndarray, int]:
    """Normalised log-mel frames ``(T, n_mels)`` of the recording at ``path`` (read, mixed to
    mono and resampled as the run reads audio), and its number of samples."""
    from lstmkit.data import audio

    f = meta["features"]
    spec = audio.FeatureSpec(
        f["sample_rate"], f["n_mels"], f["win_ms"], f["hop_ms"], f["normalize"]
    )
    wave = audio.load_audio(path, f["sample_rate"])
    stats = None
    if f["normalize"] == "global":
        stats = (
            np.asarray(f["feature_mean"], np.float32),
            np.asarray(f["feature_std"], np.float32),
        )
    feats = audio.normalize(audio.log_mel(wave, spec), f["normalize"], stats)
    return np.asarray(feats, dtype=np.float32), len(wave)


def _classify_audio(run: OnnxRun, path: str) -> dict:
    """The five likeliest labels of a recording (``SpokenWordsTask.classify``)."""
    feats, _ = audio_features(run.meta, path)
    (logits,) = run.run("model", features=feats[None], lengths=np.array([len(feats)]))
    p = _softmax(logits[0].astype(np.float32))
    top = np.argsort(-p, kind="stable")[:5]
    labels = run.meta["labels"]
    return {
        "input": path,
        "label": labels[int(top[0])],
        "probabilities": {labels[int(j)]: round(float(p[j]), 4) for j in top},
    }


# ----------------------------------------------------------------------------- CTC


def ctc_greedy(log_probs: np.ndarray, length: int | None = None) -> list[int]:
    """:func:`lstmkit.models.speech.ctc_greedy`: the likeliest symbol per frame, repeats
    merged, blanks (0) removed."""
    best = np.asarray(log_probs)[: length if length is not None else len(log_probs)].argmax(-1)
    out, prev = [], 0
    for s in best.tolist():
        if s != prev and s != 0:
            out.append(s)
        prev = s
    return out


def ctc_beam_search(
    log_probs: np.ndarray, beam_size: int = 8, length: int | None = None
) -> list[int]:
    """:func:`lstmkit.models.speech.ctc_beam_search` (CTC prefix beam search, Hannun et al.
    2014), in numpy: each prefix keeps the log-probabilities of its frame paths ending in a
    blank (``pb``) and in its last symbol (``pnb``); the ``beam_size`` likeliest prefixes
    survive each frame, only the frame's ``beam_size`` likeliest symbols are tried."""
    if beam_size < 1:
        raise UserError(f"--beam-size must be >= 1, got {beam_size}")
    lp = np.asarray(log_probs, dtype=np.float64)
    lp = lp[: length if length is not None else lp.shape[0]]
    neg = -math.inf
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg)}
    for row in lp:
        candidates = [int(c) for c in np.argsort(-row)[:beam_size] if c != 0]
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix, blank=neg, nonblank=neg, _n=nxt):
            cur = _n.setdefault(prefix, [neg, neg])
            cur[0] = np.logaddexp(cur[0], blank)
            cur[1] = np.logaddexp(cur[1], nonblank)

        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            add(prefix, blank=total + row[0])
            for c in candidates:
                p = row[c]
                if prefix and prefix[-1] == c:
                    add(prefix + (c,), nonblank=pb + p)
                    add(prefix, nonblank=pnb + p)
                else:
                    add(prefix + (c,), nonblank=total + p)
        ranked = sorted(nxt.items(), key=lambda kv: -np.logaddexp(*kv[1]))[:beam_size]
        beams = {k: (v[0], v[1]) for k, v in ranked}
    return list(max(beams.items(), key=lambda kv: np.logaddexp(*kv[1]))[0])


def transcribe(run: OnnxRun, paths: list[str], decoder: str = "", beam_size: int = 0) -> list[dict]:
    """``AsrCtcTask.transcribe``: one ``{"input", "text", "seconds", "compute_s"}`` per file,
    decoded as the run decodes (its ``--decoder`` and ``--beam-size`` unless given)."""
    dec = run.meta["decoding"]
    decoder, beam_size = decoder or dec["decoder"], beam_size or dec["beam_size"]
    chars, rate = dec["chars"], run.meta["features"]["sample_rate"]
    out = []
    for path in paths:
        t0 = time.perf_counter()
        feats, samples = audio_features(run.meta, path)
        log_probs, lengths = run.run("model", features=feats[None], lengths=np.array([len(feats)]))
        n = int(lengths[0])
        ids = (
            ctc_beam_search(log_probs[0], beam_size, n)
            if decoder == "beam"
            else ctc_greedy(log_probs[0], n)
        )
        out.append(
            {
                "input": str(path),
                "text": "".join(chars[i - 1] for i in ids),
                "seconds": round(samples / rate, 4),
                "compute_s": round(time.perf_counter() - t0, 4),
            }
        )
    return out


# ----------------------------------------------------------------------------- seq2seq


def max_lengths(src_len: np.ndarray, ratio: float) -> np.ndarray:
    """:func:`lstmkit.models.seq2seq.max_lengths`, in float32 as torch computes it."""
    return np.ceil(src_len.astype(np.float32) * np.float32(ratio)).astype(np.int64) + 5


class _Decoder:
    """The encoder's memory and the decoder-step session of one batch."""

    def __init__(self, run: OnnxRun, src: np.ndarray, src_len: np.ndarray):
        self.run = run
        values, keys, mask, h, c = run.run("encoder", src=src, src_len=src_len)
        self.memory = {"values": values, "keys": keys, "mask": mask}
        self.h, self.c = h, c
        E = run.meta["state"]["embed_size"]
        self.feed = np.zeros((src.shape[0], E), dtype=np.float32)

    def select(self, rows: np.ndarray, memory: bool = False) -> None:
        """Keep (and repeat) the rows ``rows`` of the state (and of the memory)."""
        self.h, self.c, self.feed = self.h[:, rows], self.c[:, rows], self.feed[rows]
        if memory:
            self.memory = {k: v[rows] for k, v in self.memory.items()}

    def step(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log-probabilities ``(B, V)`` of the next token after ``tokens``, and the attention."""
        logp, self.feed, self.h, self.c, weights = self.run.run(
            "decoder",
            prev_tokens=tokens.astype(np.int64),
            feed=self.feed,
            h=self.h,
            c=self.c,
            **self.memory,
        )
        return logp, weights


def greedy_search(
    run: OnnxRun, src: np.ndarray, src_len: np.ndarray, ratio: float
) -> list[list[int]]:
    """:func:`lstmkit.models.seq2seq.greedy_decode`'s tokens: the likeliest token at every
    step, for the batch at once, until ``</s>`` or the length limit."""
    dec = _Decoder(run, src, src_len)
    B = src.shape[0]
    limit = max_lengths(src_len, ratio)
    y = np.full(B, BOS, dtype=np.int64)
    done = np.zeros(B, dtype=bool)
    tokens = []
    for t in range(int(limit.max())):
        logp, _ = dec.step(y)
        y = logp.argmax(-1)
        tokens.append(y)
        done |= (y == EOS) | (t + 1 >= limit)
        if done.all():
            break
    rows = np.stack(tokens, 1).tolist()
    out = []
    for b in range(B):
        row = rows[b][: int(limit[b])]
        out.append(row[: row.index(EOS)] if EOS in row else row)
    return out


def beam_search(
    run: OnnxRun,
    src: np.ndarray,
    src_len: np.ndarray,
    *,
    beam: int,
    len_penalty: float,
    ratio: float,
) -> list[list[int]]:
    r""":func:`lstmkit.models.seq2seq.beam_search`'s tokens: ``beam`` open hypotheses per
    sentence; a hypothesis ends at ``</s>`` among the ``beam`` best candidates of a step or at
    the length limit; a sentence is done with ``beam`` ended ones, and the best by
    :math:`\log p(y \mid x) / |y|^{\alpha}` is returned."""
    if beam < 1:
        raise UserError(f"--beam must be >= 1, got {beam}")
    K = beam
    B = src.shape[0]
    dec = _Decoder(run, src, src_len)
    dec.select(np.repeat(np.arange(B), K), memory=True)
    y = np.full(B * K, BOS, dtype=np.int64)
    scores = np.zeros((B, K), dtype=np.float32)
    scores[:, 1:] = -np.inf  # all beams start equal: expand only the first one at t=0
    hist = np.zeros((B * K, 0), dtype=np.int64)
    limit = max_lengths(src_len, ratio).tolist()
    ended: list[list[tuple[list[int], float, float]]] = [[] for _ in range(B)]
    done = [False] * B
    rank = np.arange(2 * K)
    base = (np.arange(B) * K)[:, None]

    def end(b: int, toks: list[int], steps: int, logprob: float) -> None:
        norm = logprob / steps**len_penalty if math.isfinite(logprob) else logprob
        ended[b].append((toks, logprob, norm))

    for t in range(max(limit)):
        logp, _ = dec.step(y)
        V = logp.shape[-1]
        cand = (scores[:, :, None] + logp.reshape(B, K, V)).reshape(B, K * V)
        n = min(2 * K, K * V)
        top_i = np.argsort(-cand, axis=1, kind="stable")[:, :n]
        top_s = np.take_along_axis(cand, top_i, 1)
        parent_k, tok = top_i // V, top_i % V
        is_eos = tok == EOS
        # the first K candidates that do not end go on (there are at least K: one </s> per beam)
        order = np.argsort(is_eos * (2 * K) + rank[:n], axis=1, kind="stable")[:, :K]
        next_s, next_parent, next_tok = (
            np.take_along_axis(x, order, 1) for x in (top_s, parent_k, tok)
        )
        parent = (base + next_parent).reshape(-1)
        ending = np.argwhere(is_eos & (rank[:n] < K) & np.isfinite(top_s)).tolist()
        rows = hist.tolist()
        for b, r in ending:
            if not done[b]:
                p = b * K + int(parent_k[b, r])
                end(b, rows[p], len(rows[p]) + 1, float(top_s[b, r]))
        hist = np.concatenate([hist[parent], next_tok.reshape(-1, 1)], axis=1)
        cut = [b for b in range(B) if not done[b] and t + 1 >= limit[b]]
        if cut:
            rows = hist.tolist()
            for b in cut:
                for k in range(K):
                    end(b, rows[b * K + k], t + 1, float(next_s[b, k]))
        for b in range(B):
            done[b] = done[b] or len(ended[b]) >= K
        if all(done):
            break
        scores, y = next_s, next_tok.reshape(-1)
        dec.select(parent)
    return [max(e, key=lambda h: h[2])[0] for e in ended]


def translate(run: OnnxRun, sentences: list[str], beam: int = 0) -> list[str]:
    """Detokenised translations (``TranslationTask.translate``), decoded ``decode_batch``
    sentences of similar length at a time with the run's ``--beam`` (greedy for 1) unless
    ``beam`` is given; an empty source is read as one ``</s>``, as the run reads it."""
    from lstmkit.data.bitext import by_length

    meta = run.meta
    src_tok = _tokenizer(meta["src_tokenizer"])
    tgt_state = meta.get("tgt_tokenizer")
    tgt_tok = src_tok if tgt_state is None else _tokenizer(tgt_state)
    d = meta["decoding"]
    beam = beam or d["beam"]
    ids = src_tok.encode_batch(list(sentences))
    out: list[str] = [""] * len(ids)
    for part in by_length(ids, d["decode_batch"]):
        src, src_len = _pad([ids[i] or [EOS] for i in part])
        if beam == 1:
            hyps = greedy_search(run, src, src_len, d["max_len_ratio"])
        else:
            hyps = beam_search(
                run, src, src_len, beam=beam, len_penalty=d["len_penalty"], ratio=d["max_len_ratio"]
            )
        for i, h in zip(part, hyps, strict=True):
            out[i] = tgt_tok.decode(h)
    return out


# ----------------------------------------------------------------------------- long time lags

_NUMBER = re.compile(r"^(-?\d+(?:\.\d*)?|-?\.\d+)(\*?)$")  # as lstmkit.tasks.longlag reads them


def _marked_pairs(run: OnnxRun, text: str, where: str) -> dict:
    """The adding and multiplication tasks' prediction for ``"0.3 0.7* 0.1 0.9* 0.2"`` (values,
    the two marked ones followed by ``*``), read as ``_MarkedPairsTask.parse`` reads it."""
    spec = run.meta["marked_pairs"]
    values, marked = [], []
    for j, tok in enumerate(text.split()):
        m = _NUMBER.match(tok)
        if not m:
            raise UserError(
                f"{where}: token {j + 1} {tok!r} is not a number (write values like 0.25, "
                "and 0.25* for the two marked ones)"
            )
        values.append(float(m.group(1)))
        if m.group(2):
            marked.append(j)
    if len(marked) != 2:
        raise UserError(f"{where}: mark exactly two values with '*', found {len(marked)}")
    t = len(values)
    markers = np.zeros(t, dtype=np.float32)
    markers[marked] = 1.0
    if spec["uses_end_markers"]:
        if t - 1 in marked:
            raise UserError(
                f"{where}: the last value carries the end marker -1 in this task's form; "
                "mark two values before it"
            )
        markers[0] = markers[-1] = -1.0
        if 0 in marked:
            values[0] = spec["neutral"]
    x = np.stack([np.asarray(values, dtype=np.float32), markers], -1)[None]
    picked = [values[j] for j in marked]
    if spec["target"] == "product":
        target = math.prod(picked)
    elif spec["target"] == "sum":
        target = sum(picked)
    else:  # hochreiter1997's adding target
        target = 0.5 + sum(picked) / 4
    target = float(np.float32(target))  # the run holds its target in a float32 tensor
    (out,) = run.run("model", x=x, lengths=np.array([t], dtype=np.int64))
    pred = float(out.reshape(-1)[0])
    return {
        "input": text,
        "prediction": pred,
        "target": target,
        "error": pred - target,
        "correct": abs(pred - target) < spec["tolerance"],
    }


# ----------------------------------------------------------------------------- forecast


def takes_table(path: str | Path) -> bool:
    """True where the export at ``path`` reads a table as its input (a forecast export:
    ``--input recent.csv`` is the recent rows, not one input per line)."""
    return "forecast" in OnnxRun(path).meta


def predict_table(path: str | Path, table: str | Path) -> list[dict]:
    """``lstmkit predict RUN --input recent.csv``'s rows from the forecast export at ``path``
    (:func:`forecast`)."""
    return forecast(OnnxRun(path), table)[0]


def recent_window(meta: dict, table: str | Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The last ``lookback`` rows of a recent table, read as ``ForecastTask._read_recent``
    reads it (:mod:`lstmkit.data.timeseries`, which imports no torch: the same reader, checks
    and messages): times and raw values of the run's input columns, and a summary line."""
    from lstmkit.data import timeseries as ts

    f = meta["forecast"]
    where = f"--input {table}"
    series = ts.read_series([str(table)], f["time_column"], list(f["inputs"]), "")
    if len(series) != 1:
        raise UserError(f"{where}: give one series")
    s = ts.regularize(series[0], f["fill"], where)
    freq = np.timedelta64(int(f["freq_s"]), "s")
    if s.freq != freq:
        raise UserError(f"{where}: step {s.freq} differs from the training data's {freq}")
    L = int(f["lookback"])
    if len(s.times) < L:
        raise UserError(f"{where}: {len(s.times)} rows, fewer than the run's --lookback {L}")
    read = len(series[0].times)
    summary = f"{read} rows of {table} ({s.filled} filled; the last {L} are the lookback)"
    return s.times[-L:], s.values[-L:], summary


def forecast_quantiles(p: np.ndarray, f: dict) -> dict[str, np.ndarray]:
    r"""The point forecast and the 10/50/90% quantiles of parameters ``p (H, C, P)`` (float32,
    the scaled units), each ``(H, C)`` still scaled, as ``ForecastTask._forecast`` reads them:

    - the point: the mean (``p[..., 0]``), or for quantile heads the level nearest 0.5;
    - Gaussian: :math:`\mu + \sigma \Phi^{-1}(q)` (``statistics.NormalDist().inv_cdf``; torch
      computes :math:`\Phi^{-1}` in float32: equal to an ulp or so);
    - Student-t: the empirical quantiles (linear interpolation, as ``torch.quantile``) of
      ``samples`` draws :math:`\mu + \sigma z / \sqrt{\chi^2_\nu / \nu}` from numpy's
      generator seeded 0: the same estimator as the torch path, not the same draws (torch
      draws its chi-squares from the global generator), so the two differ by the sampling
      error of a 200-sample quantile;
    - quantile heads: as they are."""
    from statistics import NormalDist

    lik = f["likelihood"]
    if lik == "quantile":
        levels = list(f["levels"])
        k = min(range(len(levels)), key=lambda i: abs(levels[i] - 0.5))
        out = {"point": p[..., k]}
        for j, q in enumerate(levels):
            out[f"q{q:g}"] = p[..., j]
        return out
    out = {"point": p[..., 0]}
    if lik == "gaussian":
        for q in f["output_levels"]:
            out[f"q{q:g}"] = p[..., 0] + p[..., 1] * np.float32(NormalDist().inv_cdf(q))
    elif lik == "student-t":
        rng = np.random.default_rng(0)
        mu, sigma, nu = (p[..., k].astype(np.float64) for k in range(3))
        shape = (int(f["samples"]), *mu.shape)
        z = rng.standard_normal(shape)
        chi2 = rng.chisquare(np.broadcast_to(nu, shape))
        draws = mu + sigma * z / np.sqrt(chi2 / nu)
        for q in f["output_levels"]:
            out[f"q{q:g}"] = np.quantile(draws, q, axis=0)
    return out


def forecast(run: OnnxRun, table: str | Path) -> tuple[list[dict], str]:
    r"""The forecast after a recent table (``ForecastTask.read_input_file`` then ``predict``):
    its last ``lookback`` rows scaled by the run's scaler, with the calendar features of those
    rows and of the ``horizon`` rows after them where the run has them, through the graph;
    the parameters read as :func:`forecast_quantiles` reads them and put back in the data's
    units (:math:`v = z \sigma + \mu`). One row per step: the time, ``step``, each output's
    point forecast and its ``_q0.1``... columns, as ``lstmkit predict RUN --input`` writes
    them; and the summary line it prints."""
    from lstmkit.data.timeseries import calendar_features

    f = run.meta["forecast"]
    times, values, summary = recent_window(run.meta, table)
    H, C = int(f["horizon"]), len(f["outputs"])
    mean = np.asarray(f["scaler"]["mean"], dtype=np.float64)
    std = np.asarray(f["scaler"]["std"], dtype=np.float64)
    future_t = times[-1] + np.timedelta64(int(f["freq_s"]), "s") * np.arange(1, H + 1)
    x = ((values - mean) / std).astype(np.float32)
    feeds = {}
    if f["calendar"]["enabled"]:
        x = np.concatenate([x, calendar_features(times).astype(np.float32)], 1)
        feeds["future"] = calendar_features(future_t).astype(np.float32)[None]
    (params,) = run.run("model", x=x[None], **feeds)
    fc = {
        k: v * std[:C] + mean[:C]
        for k, v in forecast_quantiles(params[0].astype(np.float32), f).items()
    }
    rows = []
    for k in range(H):
        row: dict = {f["time_column"]: str(future_t[k]).replace("T", " "), "step": k + 1}
        for j, c in enumerate(f["outputs"]):
            row[c] = float(fc["point"][k, j])
            for key in fc:
                if key != "point":
                    row[f"{c}_{key}"] = float(fc[key][k, j])
        rows.append(row)
    first = str(future_t[0]).replace("T", " ")
    return rows, f"{summary}; forecasting {H} rows from {first}"


# ----------------------------------------------------------------------------- without torch


def _lines(path: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield line.rstrip("\n")


USAGE = "python -m lstmkit.infer.onnx_predict MODEL.onnx [INPUTS...] [--input FILE] [--output FILE]"


def main(argv: list[str] | None = None) -> int:
    """``python -m lstmkit.infer.onnx_predict MODEL.onnx [INPUTS...] [--input FILE]
    [--output FILE]``: one JSON line per input, as ``lstmkit predict`` prints them, or written
    to ``--output`` (CSV for a .csv name); a forecast export reads ``--input recent.csv`` as
    its table. Bad input is one line, status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if not args or args[0] in ("-h", "--help"):
            print(USAGE, file=sys.stderr)
            return 0 if args else 2
        model, rest = args[0], args[1:]
        items: list[str] = []
        files: list[str] = []
        output = ""
        while rest:
            a = rest.pop(0)
            if a in ("--input", "--output"):
                if not rest:
                    raise UserError(f"{a}: give a file")
                if a == "--input":
                    files.append(rest.pop(0))
                else:
                    output = rest.pop(0)
            else:
                items.append(a)
        for name in files:
            if not Path(name).exists():  # lstmkit.infer.inputs.check_input_path's message
                raise UserError(f"--input: file not found: {name}")
        run = OnnxRun(model)
        if "forecast" in run.meta:
            if items or len(files) != 1:
                raise UserError(
                    f"predict {model}: a forecast export reads its recent rows from one table; "
                    "give --input recent.csv"
                )
            results, summary = forecast(run, files[0])
            print(f"lstmkit: read {summary}", file=sys.stderr)
        else:
            for name in files:
                items += list(_lines(name))
            results = predict_run(run, items)
        if output:
            atomic_write_text(output, format_results(results, output))
        else:
            for r in results:
                print(json.dumps(r, ensure_ascii=False))
    except UserError as e:
        print(f"lstmkit: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"lstmkit: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
