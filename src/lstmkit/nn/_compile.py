"""Let torch.compile trace :class:`lstmkit.LSTM`.

Dynamo refuses to trace any instance of ``torch.nn.LSTM`` (``RNN``, ``GRU``) unless
``torch._dynamo.config.allow_rnn`` is True ("Attempted to wrap RNN, GRU, or LSTM"), and
lstmkit.LSTM subclasses ``torch.nn.LSTM`` so that it stays a drop-in. torch.export turns the
flag on for its own tracing; torch.compile does not. So importing lstmkit.nn turns it on:
once now if Dynamo is already imported, else as soon as ``torch._dynamo.config`` is imported
(importing Dynamo costs about 1.5 s, which a process that never compiles should not pay).

The flag is global: it also lets Dynamo trace ``torch.nn.LSTM``/``GRU``/``RNN`` themselves
(torch calls the support experimental) instead of graph-breaking on them. Set
``torch._dynamo.config.allow_rnn = False`` after importing lstmkit to get torch's default back;
lstmkit.LSTM then graph-breaks too.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

_CONFIG = "torch._dynamo.config"


def _enable(module) -> None:
    module.allow_rnn = True


class _Loader(importlib.abc.Loader):
    """The real loader of torch._dynamo.config, then the flag."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _enable(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _CONFIG:
            return None
        sys.meta_path.remove(self)  # once; the flag is set when the module has run
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def allow_dynamo_rnn() -> None:
    """Set ``torch._dynamo.config.allow_rnn = True`` now, or when Dynamo is first imported."""
    module = sys.modules.get(_CONFIG)
    if module is not None:
        _enable(module)
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
