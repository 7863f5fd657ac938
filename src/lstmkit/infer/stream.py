r"""Stateful streaming inference: :class:`Stream` over a trained run or a bare recurrent model.

A stream holds one model; :meth:`Stream.open` gives a :class:`Session`, one input stream with
its own recurrent state :math:`(h, c)` (one pair per layer) and whatever the model's read-out
keeps between chunks. ``session.feed(chunk)`` advances it by a chunk of any length >= 1 and
returns the model's output for what it has seen so far; :meth:`Stream.step` advances many
sessions in ONE batched call of the encoder (here a sentiment run trained with
``--no-bidirectional``)::

    stream = lstmkit.Stream(lstmkit.load("runs/uni"))  # or lstmkit.load(...).stream()
    a, b = stream.open(), stream.open()
    out = stream.step({a: "a gripping", b: "a dull"})  # {a: Prediction, b: Prediction}
    out = stream.step({a: "film"})                     # b waits; c may join at any step
    a.reset(); b.close()

The chunks of one step are padded to the longest and packed with each session's own length
(:func:`torch.nn.utils.rnn.pack_padded_sequence`), so a shorter chunk never advances its session
past its end: session ``b``'s state after a step is its state after its own chunk. There is no
fixed batch size: sessions join and leave between steps, and a step takes any subset of the
open sessions. (Keras' ``stateful=True`` fixes the batch size when the model is built, and
ONNX Runtime is stateless: its caller carries the state.)

The guarantee (tests/infer/test_stream.py, with hypothesis over random chunkings): in eval
mode, feeding the chunks of a sequence one after another gives the outputs of one call on the
whole sequence, to 1e-6 in float32, for every :class:`lstmkit.LSTM` variant (and
:class:`lstmkit.QuantizedLSTM`) and every task model below, and for sessions joining and leaving
a running batch; with layer norm the float32 rounding of a batched step reaches 4e-6 relative
(1e-15 in float64: rounding only). What each model returns:

- a bare :class:`lstmkit.LSTM` (or ``torch.nn.LSTM``/``GRU``/``RNN``): the chunk's outputs
  ``(T, D*P)`` as a tensor; chunks are ``(T, input_size)`` tensors.
- the text classifier (``sentiment``): a :class:`Prediction` for the prefix so far (the model
  on the prefix), from token ids or text (the run's tokenizer, per chunk: a word cut between two
  chunks is two words). Pooling runs over the prefix exactly: ``last`` keeps the last output,
  ``mean`` a running sum and count, ``max`` a running maximum, and ``attention`` a running
  log-sum-exp: with scores :math:`s_t` and :math:`m = \max_{t \le n} s_t`,

  .. math:: Z_n = \sum_{t \le n} e^{s_t - m}, \quad a_n = \sum_{t \le n} e^{s_t - m} y_t,
      \quad \text{pooled}_n = a_n / Z_n,

  where a new chunk with larger scores rescales :math:`Z` and :math:`a` by
  :math:`e^{m - m'}`. The run's ``max_tokens`` cut is not applied to a stream.
- the language model (``lm``): an :class:`LMOutput` with the scores at every step of the chunk
  and the next-token distribution after it; :meth:`Session.generate` samples a continuation
  from the session's state (and advances it).
- the spoken-word classifier: a :class:`Prediction` from normalised log-mel frames
  ``(T, n_mels)``; the CTC model (``asr-ctc``): a :class:`Transcript`, greedy-decoded
  incrementally. Frame stacking (``--subsample k``) buffers the frames that do not yet fill a
  group of k; the output after a chunk also reads that partial group padded with zeros, as the
  model does at the end of an utterance, without committing it (one more batched step of
  length 1 for the sessions that have one), so the partial transcript after each chunk is the
  whole-prefix greedy result and the last one is the utterance's.
  :meth:`Stream.open_audio` takes raw samples instead (:class:`AudioSession`).
- the long-time-lag tasks' models (adding, ...): the read-out ``(T, out)`` at every step of
  the chunk for a per-step model, else ``(out,)`` at its last step, from ``(T, I)`` rows.
- a bidirectional encoder cannot stream (its reverse direction starts at the end), nor can a
  translation model (the decoder reads the whole source): both raise a
  :class:`~lstmkit.utils.errors.UserError` saying so.

A zero-length chunk is an error (:class:`UserError`), as is a closed session, a session of
another stream, or a chunk of the wrong shape; a step checks every chunk before it changes any
session, so a bad chunk leaves all of them as they were. Streams compute without gradients;
one step runs at a time (a lock), so threads may share a stream.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstmkit.utils.errors import UserError

__all__ = [
    "AudioSession",
    "LMOutput",
    "Prediction",
    "Session",
    "Stream",
    "Transcript",
]

_ids = itertools.count(1)


# ---------------------------------------------------------------------------------------------
# outputs


@dataclass
class Prediction:
    """A classifier's running prediction: ``logits`` ``(C,)`` and ``probabilities`` ``(C,)``
    of the model on everything fed so far (``steps`` inputs), the top ``label`` (the run's label
    name, or the class index for a bare model)."""

    logits: Tensor
    probabilities: Tensor
    label: str | int
    steps: int
    labels: Sequence[str] | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready, as ``lstmkit predict`` prints a prediction."""
        names = self.labels or [str(k) for k in range(len(self.probabilities))]
        probs = {n: round(float(p), 4) for n, p in zip(names, self.probabilities, strict=True)}
        return {"label": self.label, "probabilities": probs, "steps": self.steps}


@dataclass
class LMOutput:
    """A language model's output for one chunk: ``scores`` ``(T, V)`` at each of its tokens
    (logits; log-probabilities with an adaptive softmax: the same distribution) and ``next``,
    the next-token probabilities ``(V,)`` after the chunk; ``steps``: tokens fed so far."""

    scores: Tensor
    next: Tensor
    steps: int
    pieces: Any = field(default=None, repr=False)

    def top(self, k: int = 5) -> list[tuple[int, float]]:
        """The ``k`` likeliest next tokens as ``(id, probability)``."""
        p, i = torch.topk(self.next, min(k, self.next.numel()))
        return [(int(j), float(q)) for j, q in zip(i, p, strict=True)]

    def to_dict(self, k: int = 5) -> dict:
        top = self.top(k)
        piece = self.pieces or str
        return {
            "steps": self.steps,
            "next": [{"id": j, "piece": piece(j), "p": round(q, 6)} for j, q in top],
        }


@dataclass
class Transcript:
    """A CTC model's incremental greedy transcript after a chunk: ``ids`` and ``text`` of the
    whole prefix (the last frame group, still partial, included), ``log_probs`` ``(T', V)`` of
    the frames committed by this chunk, ``frames`` input frames fed so far."""

    ids: list[int]
    text: str
    log_probs: Tensor
    frames: int

    def to_dict(self) -> dict:
        return {"text": self.text, "frames": self.frames}


# ---------------------------------------------------------------------------------------------
# what each model reads and returns


def _pool_update(kind: str, state, y: Tensor, scores: Tensor | None = None):
    """The running pooling state after the outputs ``y`` ``(T, D)`` (``scores`` ``(T,)`` for
    attention); ``state`` is None before the first step. A pure function: a provisional step
    (the partial frame group) updates a copy."""
    if kind == "last":
        return y[-1]
    if kind == "mean":
        total, n = state if state is not None else (torch.zeros_like(y[0]), 0)
        return total + y.sum(0), n + y.shape[0]
    if kind == "max":
        top = y.amax(0)
        return top if state is None else torch.maximum(state, top)
    # attention: a running log-sum-exp (module docstring)
    m_new = scores.max()
    if state is None:
        w = torch.exp(scores - m_new)
        return m_new, w.sum(), (w[:, None] * y).sum(0)
    m, z, acc = state
    m2 = torch.maximum(m, m_new)
    w = torch.exp(scores - m2)
    scale = torch.exp(m - m2)
    return m2, z * scale + w.sum(), acc * scale + (w[:, None] * y).sum(0)


def _pooled(kind: str, state) -> Tensor:
    if kind in ("last", "max"):
        return state
    if kind == "mean":
        total, n = state
        return total / n
    _, z, acc = state
    return acc / z


class _Kind:
    """One model's streaming form: how a chunk becomes encoder inputs, and the read-out."""

    name = "lstm"
    subsample = 1
    input_dim: int | None = None  # the feature size of a chunk's rows; None: token ids

    def __init__(self, encoder: nn.Module, labels=None, task=None):
        self.encoder = encoder
        self.labels = labels
        self.task = task
        self.dtype = _float_tensor(encoder).dtype

    def rows(self, chunk, device) -> Tensor:
        """The chunk as ``(n, input_dim)`` float rows (or ``(n,)`` token ids), checked."""
        if not isinstance(chunk, Tensor | np.ndarray | list | tuple):
            raise UserError(
                f"chunk: give a (T, {self.input_dim}) array, got {type(chunk).__name__}"
            )
        x = chunk if isinstance(chunk, Tensor) else torch.as_tensor(np.asarray(chunk))
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise UserError(
                f"chunk: expected shape (T, {self.input_dim}) (T >= 1 steps of "
                f"{self.input_dim} features), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            x = x.float()
        return x.to(device=device, dtype=self.dtype)  # finite: checked by the step, at once

    def embed(self, rows: Tensor) -> Tensor:
        return rows

    def init(self):
        return None

    def project(self, ys: list[Tensor]) -> list[Tensor]:
        """The read-out's per-step part for all sessions of a step in one call (``ys``: each
        session's committed outputs); identity unless a model has one."""
        return ys

    def read(self, head, y: Tensor | None, y_extra: Tensor | None, session: Session):
        """``(new head state, output)`` after committed outputs ``y`` ``(T, D)`` (None: none
        this step) and, for a partial frame group, the provisional output ``y_extra`` (1, D)."""
        return head, y


class _Classifier(_Kind):
    name = "classifier"

    def __init__(self, model, labels=None, task=None):
        super().__init__(model.encoder, labels, task)
        self.model = model
        self.pooling = model.pooling
        self.input_dim = None

    def rows(self, chunk, device) -> Tensor:
        return _token_rows(self, chunk, device, self.model.embedding.num_embeddings)

    def task_ids(self, text: str) -> list[int]:
        # the run's tokenizer, as predict reads a text (a text of unknown characters is <unk>)
        return self.task.data.encode([text])[0][0] if text.strip() else []

    def embed(self, rows: Tensor) -> Tensor:
        return self.model.embedding_dropout(self.model.embedding(rows))

    def _update(self, head, y):
        scores = self.model.attn(y).squeeze(-1) if self.pooling == "attention" else None
        return _pool_update(self.pooling, head, y, scores)

    def read(self, head, y, y_extra, session):
        if y is not None:
            head = self._update(head, y)
        view = head if y_extra is None else self._update(head, y_extra)
        logits = self.model.head(self.model.dropout(_pooled(self.pooling, view)))
        return head, _prediction(logits, self.labels, session.steps)


class _Sequence(_Kind):
    """The long-time-lag tasks' :class:`~lstmkit.models.encoder.SequenceModel`: the read-out
    at every step of the chunk (``per_step``) or at its last step (the model on the prefix)."""

    name = "sequence"

    def __init__(self, model, labels=None, task=None):
        super().__init__(model.encoder, labels, task)
        self.model = model
        self.input_dim = model.encoder.input_size

    def read(self, head, y, y_extra, session):
        out = self.model.head(y if self.model.per_step else y[-1])
        return head, out


def _prediction(logits: Tensor, labels, steps: int) -> Prediction:
    logits = logits.float().cpu()
    p = torch.softmax(logits, -1)
    j = int(p.argmax())
    return Prediction(logits, p, labels[j] if labels else j, steps, labels)


def _token_rows(kind: _Kind, chunk, device, vocab: int) -> Tensor:
    if isinstance(chunk, str):
        if kind.task is None:
            raise UserError("chunk: text needs a run's tokenizer (Stream(lstmkit.load(RUN)))")
        ids = kind.task_ids(chunk)
    elif isinstance(chunk, list | tuple) and all(type(t) is int for t in chunk):
        # the common case (a server's token lists): checked in Python, one tensor made
        if chunk and (min(chunk) < 0 or max(chunk) >= vocab):
            bad = min(chunk) if min(chunk) < 0 else max(chunk)
            raise UserError(f"chunk: token id {bad} is outside the vocabulary [0, {vocab})")
        return torch.tensor(chunk, dtype=torch.long, device=device)
    elif isinstance(chunk, Tensor | np.ndarray | list | tuple):
        ids = torch.as_tensor(np.asarray(chunk) if not isinstance(chunk, Tensor) else chunk)
        if ids.dim() != 1 or (ids.numel() and (ids.is_floating_point() or ids.dtype == torch.bool)):
            raise UserError(f"chunk: give token ids (a 1-D list of ints), got {tuple(ids.shape)}")
        ids = ids.long()
    else:
        raise UserError(f"chunk: give text or token ids, got {type(chunk).__name__}")
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
        raise UserError(f"chunk: token id {bad} is outside the vocabulary [0, {vocab})")
    return ids.to(device)


class _LM(_Kind):
    name = "lm"

    def __init__(self, model, labels=None, task=None):
        super().__init__(model.encoder, labels, task)
        self.model = model
        self.input_dim = None

    def rows(self, chunk, device) -> Tensor:
        return _token_rows(self, chunk, device, self.model.embedding.num_embeddings)

    def task_ids(self, text: str) -> list[int]:
        return self.task.encode_prompt(text, "unk")

    def embed(self, rows: Tensor) -> Tensor:
        return self.model.embedding(rows)

    def project(self, ys: list[Tensor]) -> list[Tensor]:
        m, y = self.model, torch.cat(ys)
        scores = m.decoder(y) if m.adaptive is None else m.adaptive.log_prob(y)
        return list(scores.split([len(y) for y in ys]))

    def read(self, head, y, y_extra, session):
        scores = y  # projected: the read-out's scores
        nxt = torch.softmax(scores[-1].float(), -1)
        pieces = self.task.piece if self.task is not None else None
        return scores[-1], LMOutput(scores, nxt, session.steps, pieces)


class _Speech(_Kind):
    """Shared by the word classifier and the CTC model: frames, stacked ``k`` at a time."""

    def __init__(self, model, labels=None, task=None):
        super().__init__(model.encoder.encoder, labels, task)
        self.model = model
        self.subsample = model.encoder.subsample
        self.input_dim = self.encoder.input_size // self.subsample


class _Words(_Speech):
    name = "spoken-words"

    def __init__(self, model, labels=None, task=None):
        super().__init__(model, labels, task)
        self.pooling = model.pooling

    def read(self, head, y, y_extra, session):
        if y is not None:
            head = _pool_update(self.pooling, head, y)
        view = head if y_extra is None else _pool_update(self.pooling, head, y_extra)
        logits = self.model.head(_pooled(self.pooling, view))
        return head, _prediction(logits, self.labels, session.steps)


class _Ctc(_Speech):
    name = "asr-ctc"

    def init(self):
        return ([], 0)  # the committed symbols and the last committed frame's best symbol

    def read(self, head, y, y_extra, session):
        ids, prev = head
        lp = self.model.head(y).log_softmax(-1) if y is not None else None
        if lp is not None:
            ids = list(ids)
            for s in lp.argmax(-1).tolist():
                if s != prev and s != 0:
                    ids.append(s)
                prev = s
        shown = ids
        if y_extra is not None:
            s = int(self.model.head(y_extra).log_softmax(-1).argmax(-1)[-1])
            if s != prev and s != 0:
                shown = [*ids, s]
        chars = self.task.chars if self.task is not None else None
        text = "".join(chars[i - 1] for i in shown) if chars else ""
        empty = torch.empty(0, self.model.head.out_features)
        log_probs = lp.float().cpu() if lp is not None else empty
        return (ids, prev), Transcript(shown, text, log_probs, session.steps)


def _quantized() -> type:
    from lstmkit.nn.quantized import QuantizedLSTM

    return QuantizedLSTM


def _has_cell(encoder: nn.Module) -> bool:
    """Whether the state is ``(h, c)`` (an LSTM, float or quantized) rather than ``h``."""
    return isinstance(encoder, nn.LSTM | _quantized())


def _float_tensor(module: nn.Module) -> Tensor:
    """A floating-point parameter or buffer of ``module`` (its compute dtype and device; a
    quantized LSTM keeps int8 or bf16 weights beside float32 scales)."""
    tensors = itertools.chain(module.parameters(), module.buffers())
    found = next((t for t in tensors if t.dtype in (torch.float32, torch.float64)), None)
    if found is None:
        raise UserError(f"Stream: {type(module).__name__} has no float32/float64 tensors")
    return found


def _kind_of(model: nn.Module, task=None) -> _Kind:
    from lstmkit.models.classifier import TextClassifier
    from lstmkit.models.encoder import SequenceModel
    from lstmkit.models.lm import LanguageModel
    from lstmkit.models.seq2seq import Seq2Seq
    from lstmkit.models.speech import CtcModel, WordClassifier

    labels = getattr(task, "labels", None) if task is not None else None
    if isinstance(model, Seq2Seq):
        raise UserError(
            "translation has no streaming form: the decoder attends over the whole source "
            "sentence (use run.translate([...]))"
        )
    if isinstance(model, TextClassifier):
        kind: _Kind = _Classifier(model, labels, task)
    elif isinstance(model, LanguageModel):
        kind = _LM(model, labels, task)
    elif isinstance(model, WordClassifier):
        kind = _Words(model, labels, task)
    elif isinstance(model, CtcModel):
        kind = _Ctc(model, labels, task)
    elif isinstance(model, SequenceModel):
        kind = _Sequence(model, labels, task)
    elif isinstance(model, nn.LSTM | nn.GRU | nn.RNN | _quantized()):
        kind = _Kind(model)
        kind.input_dim = model.input_size
    else:
        raise UserError(
            f"Stream: cannot stream a {type(model).__name__}; give a run (lstmkit.load) of the "
            "sentiment, lm, spoken-words, asr-ctc or a long-time-lag task, or an lstmkit.LSTM"
        )
    enc = kind.encoder
    if getattr(enc, "bidirectional", False):
        what = task.name if task is not None else type(model).__name__
        raise UserError(
            f"Stream: this {what} model has a bidirectional encoder (--bidirectional), which "
            "cannot stream: its reverse direction starts at the end of the sequence; train "
            "with --no-bidirectional to stream"
        )
    return kind


# ---------------------------------------------------------------------------------------------
# sessions and the stream


class Session:
    """One input stream of a :class:`Stream` (make one with :meth:`Stream.open`): its
    recurrent state, the buffered frames of a partial group, the read-out's running state.

    ``feed(chunk)`` is ``stream.step({session: chunk})[session]``; ``reset()`` starts a new
    sample (zero state), ``close()`` leaves the stream (a closed session refuses chunks)."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.id = next(_ids)
        self.closed = False
        self.reset()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.steps} steps"
        return f"Session(id={self.id}, {self.stream.kind}, {state})"

    def reset(self) -> None:
        """Forget everything fed so far: zero state, as a new session."""
        self.state = self.stream._zero_state()
        self.pending: Tensor | None = None  # rows short of a full frame group
        self.head = self.stream._kind.init()
        self.steps = 0
        self.last: Any = None

    def close(self) -> None:
        self.closed = True
        self.stream._sessions.pop(self.id, None)

    def feed(self, chunk) -> Any:
        """Advance by ``chunk`` (length >= 1) and return the output (module docstring)."""
        return self.stream.step({self: chunk})[self]

    @property
    def hx(self):
        """The recurrent state: ``(h, c)``, each ``(num_layers, P)`` / ``(num_layers, H)``
        (a tensor ``h`` for a GRU or RNN)."""
        return self.state

    def generate(
        self, length: int, *, temperature: float = 1.0, top_k: int = 0, seed: int | None = None
    ) -> Iterator[int]:
        """``length`` token ids sampled after what was fed (a language model only), each fed
        back, so the session's state continues with them. ``temperature`` 0: the likeliest
        token; ``top_k`` 0: all tokens; a run's special tokens are never drawn (as ``lstmkit
        generate``). ``stream.piece(token)`` gives a token's text."""
        from lstmkit.models.lm_decode import _sample, check_sampling

        kind = self.stream._kind
        if kind.name != "lm":
            raise UserError(f"generate: a language model only (this stream is {kind.name})")
        check_sampling(length, temperature, top_k)
        if self.last is None:
            raise UserError("generate: feed the session at least one token first")
        banned = torch.zeros(0, dtype=torch.long)
        if kind.task is not None:
            from lstmkit.data import prompt as text_io

            banned = torch.tensor(text_io.never_drawn(kind.task.tokenizer), dtype=torch.long)
        banned = banned[banned < self.last.numel()]
        # the generator and the draws of sample_tokens (lm_decode), so that a primed session
        # draws what lstmkit generate draws with the same seed
        gen = torch.Generator()
        gen.manual_seed(seed if seed is not None else torch.seed())
        for _ in range(length):
            scores = self.last.float().cpu().clone()
            scores[banned] = -math.inf
            token = _sample(scores, temperature, top_k, gen)
            self.feed([token])
            yield token


class AudioSession:
    """Raw audio in, a speech model's output after each chunk: samples at the run's sample
    rate (mono float, -1..1) go through kaldi-native-fbank's ``OnlineFbank`` (the options of
    :func:`lstmkit.data.audio.log_mel`, whose frames it gives exactly: frames need only their
    own samples), are normalised, and fed to a :class:`Session`.

    Normalisation: with ``--normalize global`` (the training set's statistics) each frame is
    normalised on arrival and the outputs equal the whole-utterance ones. ``bins`` and
    ``utterance`` use statistics of the whole utterance, which a stream does not have yet: the
    frames are normalised with the statistics of the frames so far (a running CMVN), so partial
    outputs differ from what the model gives the finished recording; :meth:`finish` returns the
    exact whole-utterance output (it normalises all frames and feeds them again)."""

    def __init__(self, stream: Stream) -> None:
        task = stream._kind.task
        if task is None or not hasattr(task, "cfg") or not hasattr(task.cfg, "spec"):
            raise UserError("open_audio: needs a speech run (spoken-words or asr-ctc)")
        self.stream = stream
        self.task = task
        self.spec = task.cfg.spec
        self.session = stream.open()
        self.reset()

    @property
    def id(self) -> int:
        return self.session.id

    def reset(self) -> None:
        import kaldi_native_fbank as knf

        from lstmkit.data.audio import fbank_options

        self.session.reset()
        self._fbank = knf.OnlineFbank(fbank_options(self.spec))
        self._samples = 0
        self._head = np.zeros(0, np.float32)  # the first window's samples, for a short recording
        self.frames = 0  # log-mel frames so far
        # per-utterance normalisation: every frame (for finish) and running sums (for the
        # running statistics); global normalisation keeps neither, and its frames are popped
        self._frames: list[np.ndarray] = []
        self._sum = np.zeros(self.spec.n_mels, np.float64)
        self._sumsq = np.zeros(self.spec.n_mels, np.float64)
        self.last: Any = None

    def close(self) -> None:
        self.session.close()

    @property
    def closed(self) -> bool:
        return self.session.closed

    def _new_frames(self) -> np.ndarray:
        n = self._fbank.num_frames_ready
        # copies: a frame is a view into the fbank's buffer, which pop frees
        new = [np.array(self._fbank.get_frame(t), np.float32) for t in range(self.frames, n)]
        if not new:
            return np.zeros((0, self.spec.n_mels), np.float32)
        self._fbank.pop(n - self.frames)  # the frames are read: the online fbank may drop them
        self.frames = n
        block = np.stack(new)
        if self.spec.normalize != "global":
            self._frames.append(block)
            self._sum += block.sum(0, dtype=np.float64)
            self._sumsq += (block.astype(np.float64) ** 2).sum(0)
        return block

    def _normalise(self, logmel: np.ndarray) -> np.ndarray:
        from lstmkit.data import audio

        if self.spec.normalize == "global":
            return audio.normalize(logmel, "global", self.task.feature_stats())
        n = self.frames
        if self.spec.normalize == "bins":
            mean, sq = self._sum / n, self._sumsq / n
        else:
            mean, sq = (
                self._sum.sum() / (n * self.spec.n_mels),
                self._sumsq.sum() / (n * len(self._sum)),
            )
        std = np.sqrt(np.maximum(sq - mean**2, 0.0))
        return ((logmel - mean) / (std + 1e-5)).astype(np.float32)

    def feed(self, samples) -> Any:
        """Accept ``samples`` (1-D, at the run's rate); the output after the frames they
        complete (the previous output while a chunk completes no frame; None before the
        first frame). ``stream.step({audio_session: samples, ...})`` batches many."""
        return self.stream.step({self: samples})[self]

    def _check(self, samples) -> np.ndarray:
        if self.closed:
            raise UserError(f"step: audio session {self.id} is closed")
        wave = np.asarray(samples, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise UserError(
                f"audio chunk of session {self.id}: give 1-D samples (>= 1), got shape {wave.shape}"
            )
        if not np.isfinite(wave).all():
            raise UserError(f"audio chunk of session {self.id}: holds NaN or infinite samples")
        return wave

    def _accept(self, wave: np.ndarray) -> np.ndarray | None:
        """The normalised frames that ``wave`` completes (None: none yet)."""
        self._fbank.accept_waveform(float(self.spec.sample_rate), wave)
        self._samples += wave.size
        if self._head.size < self.spec.window:
            self._head = np.concatenate([self._head, wave[: self.spec.window - self._head.size]])
        new = self._new_frames()
        return self._normalise(new) if len(new) else None

    def finish(self) -> Any:
        """The output for the whole recording, as the model gives it the finished utterance
        (a recording shorter than one window is zero-padded to one frame, as
        :func:`~lstmkit.data.audio.log_mel` does)."""
        from lstmkit.data import audio

        if self.closed:
            raise UserError(f"session {self.id} is closed")
        self._fbank.input_finished()
        new = self._new_frames()
        if not self.frames:
            if not self._samples:
                raise UserError(f"finish: session {self.id} was fed no audio")
            new = audio.log_mel(self._head, self.spec)  # one frame of the zero-padded wave
            self.frames = 1
            self._frames = [new]
        if self.spec.normalize == "global":
            if len(new):
                self.last = self.session.feed(self._normalise(new))
            return self.last
        whole = audio.normalize(np.concatenate(self._frames), self.spec.normalize)
        self.session.reset()
        self.last = self.session.feed(whole)
        return self.last


class Stream:
    """Streaming inference over ``model_or_run``: a :class:`lstmkit.api.Run` (``lstmkit.load``),
    a task model, or a bare ``lstmkit.LSTM`` / ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` in eval
    mode. See the module docstring for what each model takes and returns.

    ``open()`` a :class:`Session` (``open_audio()`` an :class:`AudioSession` for a speech run),
    ``step({session: chunk, ...})`` advances any open sessions in one batched encoder call,
    ``sessions`` lists the open ones. No fixed batch size: a step takes any number."""

    def __init__(self, model_or_run) -> None:
        task = getattr(model_or_run, "task", None)
        model = getattr(model_or_run, "model", model_or_run)
        if not isinstance(model, nn.Module):
            raise UserError(
                f"Stream: give a run (lstmkit.load) or a model, got {type(model_or_run).__name__}"
            )
        if model.training:
            raise UserError(
                "Stream: the model is in training mode (dropout, zoneout draws); call "
                "model.eval() first"
            )
        self.task = task
        self.model = model
        self._kind = _kind_of(model, task)
        self.device = _float_tensor(model).device  # the sessions' states live beside it
        self._sessions: dict[int, Session] = {}
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        """``lstm``, ``classifier``, ``lm``, ``spoken-words``, ``asr-ctc`` or ``sequence``."""
        return self._kind.name

    @property
    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def __repr__(self) -> str:
        return f"Stream({self.kind}, {len(self._sessions)} open sessions)"

    def open(self, *, prime: bool = False) -> Session:
        """A new session, zero state; it joins the next step it is given a chunk in.

        ``prime=True`` (a language-model run) first feeds a line end (where the vocabulary
        has one), as ``lstmkit generate``
        reads its prompt as the start of a line (:func:`lstmkit.data.prompt.start_ids`: a zero
        state is one the model hardly saw in training); then ``feed(prompt)`` and
        ``generate(n, seed=s)`` draw the tokens that ``run.generate(prompt, n, seed=s)`` does."""
        s = Session(self)
        self._sessions[s.id] = s
        if prime:
            if self.kind != "lm" or self.task is None:
                raise UserError("open(prime=True): for a language-model run only")
            # what start_ids puts before a prompt (a placeholder id here): the line end, or
            # nothing for a vocabulary without one
            line_end = self.task.start_ids([-1])[:-1]
            if line_end:
                s.feed(line_end)
        return s

    def open_audio(self) -> AudioSession:
        """A new raw-audio session of a speech run (:class:`AudioSession`)."""
        return AudioSession(self)

    def piece(self, token: int) -> str:
        """The text of a token id (a run's language model)."""
        if self.task is None or not hasattr(self.task, "piece"):
            raise UserError("piece: needs a language-model run")
        return self.task.piece(token)

    def _zero_state(self):
        enc = self._kind.encoder
        w = self._kind  # .dtype: the compute dtype
        L = enc.num_layers
        P = getattr(enc, "proj_size", 0) or enc.hidden_size
        h = torch.zeros(L, P, dtype=w.dtype, device=self.device)
        if _has_cell(enc):
            return h, torch.zeros(L, enc.hidden_size, dtype=w.dtype, device=self.device)
        return h

    # ----- the batched step
    def step(self, chunks: Mapping[Session | AudioSession, Any]) -> dict:
        """Advance each session by its chunk, all in one batched encoder call (the chunks
        padded to the longest, packed with their lengths), and return each one's output. Every
        chunk is checked first: a bad one raises and no session changes.

        :class:`AudioSession` keys take raw samples: their new frames join the same batch (a
        chunk that completes no frame gives the session's previous output)."""
        if not chunks:
            return {}
        with self._lock, torch.no_grad():
            audio = {a: c for a, c in chunks.items() if isinstance(a, AudioSession)}
            if not audio:
                return self._step(chunks)
            for a in audio:
                if a.stream is not self:
                    raise UserError(f"step: audio session {a.id} is not of this stream")
            waves = {a: a._check(c) for a, c in audio.items()}
            rest = {s: c for s, c in chunks.items() if not isinstance(s, AudioSession)}
            self._step(rest, check_only=True)
            frames = {a: a._accept(w) for a, w in waves.items()}  # cannot fail once checked
            fed = {**rest, **{a.session: f for a, f in frames.items() if f is not None}}
            out = self._step(fed) if fed else {}
            for a in audio:
                if frames[a] is not None:
                    a.last = out.pop(a.session)
                out[a] = a.last
            return out

    def _step(self, chunks: Mapping[Session, Any], check_only: bool = False) -> dict:
        kind = self._kind
        k = kind.subsample
        plan = []
        for s, chunk in chunks.items():
            if not isinstance(s, Session) or s.stream is not self:
                raise UserError(f"step: {s!r} is not a session of this stream")
            if s.closed:
                raise UserError(f"step: session {s.id} is closed")
            rows = kind.rows(chunk, self.device)
            if rows.shape[0] == 0:
                raise UserError(
                    f"step: session {s.id}'s chunk has 0 steps; a chunk needs at least one"
                )
            fed = rows.shape[0]
            if s.pending is not None:
                rows = torch.cat([s.pending, rows])
            full = rows.shape[0] // k * k
            plan.append((s, fed, rows[:full], rows[full:] if full < rows.shape[0] else None))
        if kind.input_dim is not None and plan:  # frames: one finiteness check for the step
            rows = [r for _, _, r, rest in plan for r in (r, rest) if r is not None]
            if not bool(torch.isfinite(torch.cat(rows)).all()):
                bad = next(
                    p[0]
                    for p in plan
                    if not all(bool(torch.isfinite(r).all()) for r in p[2:] if r is not None)
                )
                raise UserError(f"step: session {bad.id}'s chunk holds NaN or infinite values")
        if check_only:
            return {}
        # committed groups: one batched call
        committed = [(s, r) for s, _, r, _ in plan if len(r)]
        run = []
        if committed:  # one embedding call for all sessions' tokens
            embedded = kind.embed(torch.cat([r for _, r in committed]))
            parts = embedded.split([len(r) for _, r in committed])
            run = [
                (s, e.reshape(len(e) // k, -1)) for (s, _), e in zip(committed, parts, strict=True)
            ]
        ys, states = self._run([x for _, x in run], [s.state for s, _ in run])
        ys = kind.project(ys) if ys else ys
        done = {s.id: (y, st) for (s, _), y, st in zip(run, ys, states, strict=True)}
        # a partial group: read provisionally (zero padded, as the model pads the end)
        extra_run = []
        for s, _, _, rest in plan:
            if rest is not None:
                x = F.pad(kind.embed(rest), (0, 0, 0, k - rest.shape[0])).reshape(1, -1)
                extra_run.append((s, x))
        ys2, _ = self._run(
            [x for _, x in extra_run],
            [done[s.id][1] if s.id in done else s.state for s, _ in extra_run],
        )
        extra = {s.id: y for (s, _), y in zip(extra_run, ys2, strict=True)}
        out = {}
        updates = []
        for s, fed, _, rest in plan:
            y, state = done.get(s.id, (None, s.state))
            steps = s.steps + fed
            head, result = kind.read(s.head, y, extra.get(s.id), _View(steps))
            updates.append((s, state, rest, head, steps, result))
            out[s] = result
        for s, state, rest, head, steps, result in updates:
            s.state, s.pending, s.head, s.steps = state, rest, head, steps
            s.last = _kind_last(kind, head, result)
        return out

    def _run(self, xs: list[Tensor], states: list) -> tuple[list[Tensor], list]:
        """The encoder over the sequences ``xs`` (each ``(T_b, I)``) from ``states`` in one
        call: outputs ``(T_b, D*P)`` and the state after each sequence's own last step."""
        if not xs:
            return [], []
        enc = self._kind.encoder
        lengths = [x.shape[0] for x in xs]
        lstm = _has_cell(enc)
        if lstm:
            hx = (torch.stack([h for h, _ in states], 1), torch.stack([c for _, c in states], 1))
        else:
            hx = torch.stack(states, 1)
        x = nn.utils.rnn.pad_sequence(xs, batch_first=enc.batch_first)
        if len(set(lengths)) == 1:
            y, hn = enc(x, hx)  # equal lengths (one session, T = 1 steps): no packing needed
        else:
            packed = pack_padded_sequence(
                x, torch.tensor(lengths), batch_first=enc.batch_first, enforce_sorted=False
            )
            y, hn = enc(packed, hx)
            y, _ = pad_packed_sequence(y, batch_first=enc.batch_first)
        if not enc.batch_first:
            y = y.transpose(0, 1)
        ys = [y[b, :n] for b, n in enumerate(lengths)]
        if lstm:
            new = [(hn[0][:, b], hn[1][:, b]) for b in range(len(xs))]
        else:
            new = [hn[:, b] for b in range(len(xs))]
        return ys, new


@dataclass
class _View:
    """What a read-out sees of its session while a step is being computed."""

    steps: int


def _kind_last(kind: _Kind, head, result):
    """What a session keeps to continue from: a language model's last scores (for
    :meth:`Session.generate`), else the last output."""
    return head if kind.name == "lm" else result
