"""The networks the tasks train, each module with its config dataclass and its decoders.

- :mod:`~lstmkit.models.encoder`: :class:`RecurrentConfig` (the recurrent options every model
  nests as ``encoder``), :func:`build_encoder` and :class:`SequenceModel` (encoder and read-out).
- :mod:`~lstmkit.models.classifier`: the text classifier (sentiment).
- :mod:`~lstmkit.models.lm`: the language model, its dropouts and adaptive softmax.
- :mod:`~lstmkit.models.speech`: the speech encoder, word classifier, CTC model and decoders.
- :mod:`~lstmkit.models.seq2seq`: the attention encoder-decoder, greedy and beam search.

Models import from :mod:`lstmkit.nn`, :mod:`lstmkit.data` and :mod:`lstmkit.utils` only; the
tasks import them.
"""
