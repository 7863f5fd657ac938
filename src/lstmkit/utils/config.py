"""Nested config dataclasses seen flat: the option names a user types, and back.

A field whose type is a dataclass is a section (a model config's ``encoder``); its fields are
options of their own, named as they are unless the field's metadata gives a ``prefix`` (two
sections of one config that would share names). :func:`flat_names` lists those names,
:func:`flatten` gives a config's values under them and :func:`nest` turns such flat values (the
command line's, or a checkpoint's from before the configs nested) into the nested dict that
rebuilds the config.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

CONFIG_SCHEMA = 3
"""Version of the stored config layout: 1 (no version recorded) kept every model option flat;
2 nested the speech models' recurrent options under ``encoder`` (the other tasks' still flat);
3 nests every task's model config (``encoder``; seq2seq's ``encoder`` and ``decoder``). Older
layouts are nested on load: :func:`nest` keeps what is nested already."""


def sections(cls: type) -> dict[str, tuple[type, str]]:
    """``{field: (dataclass, prefix)}`` of the fields of ``cls`` that are configs themselves."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: (hints[f.name], f.metadata.get("prefix", ""))
        for f in dataclasses.fields(cls)
        if dataclasses.is_dataclass(hints[f.name])
    }


def flat_names(cls: type, prefix: str = "") -> list[str]:
    """Every option name of ``cls``, the fields of its sections included."""
    subs = sections(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in subs:
            sub, p = subs[f.name]
            out += flat_names(sub, prefix + p)
        else:
            out.append(prefix + f.name)
    return out


def flatten(values: Any, cls: type | None = None, prefix: str = "") -> dict[str, Any]:
    """A config (or its nested dict, with ``cls``) as ``{option name: value}``."""
    cls = cls or type(values)
    subs = sections(cls)
    get = values.get if isinstance(values, dict) else lambda k, d=None: getattr(values, k, d)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        value = get(f.name, dataclasses.MISSING)
        if value is dataclasses.MISSING:
            continue
        if f.name in subs and (isinstance(value, dict) or dataclasses.is_dataclass(value)):
            sub, p = subs[f.name]
            out.update(flatten(value, sub, prefix + p))
        else:
            out[prefix + f.name] = value
    return out


def nest(cls: type, flat: dict[str, Any], prefix: str = "", *, top: bool = True) -> dict[str, Any]:
    """The nested dict of ``cls`` from flat option values; names ``cls`` does not have are
    kept at the top (for the caller to refuse), a section with none of its options given is
    left out (it keeps its default)."""
    subs = sections(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in subs:
            sub, p = subs[f.name]
            inner = nest(sub, flat, prefix + p, top=False)
            if inner:
                out[f.name] = inner
        elif prefix + f.name in flat:
            out[f.name] = flat[prefix + f.name]
    if top:
        known = set(flat_names(cls))
        out.update({k: v for k, v in flat.items() if k not in known})
    return out


def section_default(cls: type, name: str) -> Any:
    """The default value of the section ``name`` of ``cls`` (its default_factory's result)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def from_flat(cls: type, values: dict[str, Any] | None = None, /, **options: Any) -> Any:
    """A config of ``cls`` from option values named as the flags name them (a section's fields
    at the top, with the section's prefix): each section starts from its default, as on the
    command line. ``from_flat(SentimentModelConfig, hidden_size=16, embedding_dim=8)``."""
    flat = {**(values or {}), **options}
    unknown = sorted(set(flat) - set(flat_names(cls)))
    if unknown:
        raise TypeError(f"{cls.__name__} has no option(s) {', '.join(unknown)}")
    return _make(cls, nest(cls, flat))


def _make(cls: type, nested: dict[str, Any], base: Any = None) -> Any:
    subs = sections(cls)
    kwargs = {
        name: _make(subs[name][0], value, section_default(cls, name)) if name in subs else value
        for name, value in nested.items()
    }
    return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
