"""The networks the tasks train, each module with its config dataclass and its decoders.

- :mod:`~lstmkit.models.encoder`: :class:`RecurrentConfig` (the recurrent options every model
  nests as ``encoder``, derived from :class:`lstmkit.LSTMConfig` by :func:`lstm_option_fields`
  and checked on construction), :func:`build_encoder` and :class:`SequenceModel` (encoder and
  read-out).
- :mod:`~lstmkit.models.classifier`: the text classifier (sentiment).
- :mod:`~lstmkit.models.lm`: the language model, its dropouts and adaptive softmax.
- :mod:`~lstmkit.models.speech`: the speech encoder, word classifier, CTC model and decoders.
- :mod:`~lstmkit.models.seq2seq`: the attention encoder-decoder (its config nests ``encoder``
  and ``decoder``, flags ``--enc-*`` and ``--dec-*``), greedy and beam search.

Each model config checks its own values in ``__post_init__``, so one built from Python is
checked as one built from flags (``lstmkit.utils.config.from_flat`` builds one from flag-named
values, each section over its default).

Models import from :mod:`lstmkit.nn`, :mod:`lstmkit.data` and :mod:`lstmkit.utils` only; the
tasks import them.
"""
