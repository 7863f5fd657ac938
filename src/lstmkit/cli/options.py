"""Click options generated from the typed config dataclasses, and configs built back from them.

Every field becomes ``--field-name`` (booleans ``--name/--no-name``) with the field's type, its
default, its ``help`` metadata and its ``choices``. Help output groups the options by section.
"""

from __future__ import annotations

import math
import re
import typing
from dataclasses import MISSING, asdict, fields, replace
from typing import Any

import click

from lstmkit.utils.config import flat_names, section_default, sections
from lstmkit.utils.errors import UserError

INT_LIMIT = 2**63 - 1  # what torch and the C++ kernel take as an int64
MAX_THREADS = 4096  # torch.set_num_threads takes an int32; no machine has more cores than this


class FiniteFloat(click.ParamType):
    """A float option: nan and inf are refused (they pass ``float()`` and then poison a run)."""

    name = "float"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        v = click.FLOAT.convert(value, param, ctx)  # click's own message for a non-number
        if not math.isfinite(v):
            raise click.ClickException(f"{_name(param)} must be a finite number, got {value}")
        return v


def _name(param: Any) -> str:
    return param.opts[0] if getattr(param, "opts", None) else str(getattr(param, "name", "value"))


class CountInt(click.ParamType):
    """An integer option within int64; counts and sizes (the default) are also >= 0. A field
    whose metadata says ``signed`` (a fold index, a seed with -1 for random) may be negative;
    ``max`` in the metadata lowers the bound (thread counts are int32 in torch)."""

    name = "integer"

    def __init__(self, signed: bool = False, maximum: int = INT_LIMIT) -> None:
        self.signed = signed
        self.maximum = maximum

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        v = click.INT.convert(value, param, ctx)  # click's own message for a non-integer
        if not self.signed and v < 0:
            raise click.ClickException(f"{_name(param)} must be >= 0, got {v}")
        if abs(v) > self.maximum:
            raise click.ClickException(f"{_name(param)} must be at most {self.maximum}, got {v}")
        return v


_TYPES = {int: CountInt(), float: FiniteFloat(), str: click.STRING}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class SectionOption(click.Option):
    """An option that remembers which config it came from, for the grouped help."""

    def __init__(self, *args: Any, section: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


class SectionedCommand(click.Command):
    """A command whose ``--help`` lists options under one heading per config section."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        groups: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Argument):
                continue  # click lists positional arguments itself
            record = param.get_help_record(ctx)
            if record is not None:
                groups.setdefault(getattr(param, "section", "") or "Other options", []).append(
                    record
                )
        for title, records in groups.items():
            with formatter.section(title):
                formatter.write_dl(records)


def options_for(
    cls: type, section: str, defaults: dict[str, Any] | None = None, prefix: str = ""
) -> list:
    """One click option per field of the dataclass ``cls``; a field that is a config itself
    (a model's ``encoder``) gives the options of its fields, named with the field's ``prefix``
    metadata and defaulting to the values of the field's default."""
    defaults = defaults or {}
    hints = typing.get_type_hints(cls)
    subs = sections(cls)
    out = []
    for f in fields(cls):
        if f.name in subs:
            sub, p = subs[f.name]
            inner = asdict(section_default(cls, f.name))
            inner.update({k[len(p) :]: v for k, v in defaults.items() if k.startswith(p)})
            out += _prefixed(options_for(sub, section, inner), prefix + p)
            continue
        typ = hints[f.name]
        default = defaults.get(f.name, f.default)
        required = default is MISSING
        meta = f.metadata
        text = meta.get("help", "")
        if meta.get("argument"):
            out.append(_argument(f, typ, default, required, text))
            continue
        if typ is bool or typ == bool | None:  # None: neither flag given (a run's own value)
            decl = [f"{flag(f.name)}/--no-{f.name.replace('_', '-')}", f.name]
            out.append(
                SectionOption(
                    decl,
                    default=default,
                    show_default=default is not None,
                    help=text,
                    section=section,
                )
            )
            continue
        if typ not in _TYPES:
            raise TypeError(f"{cls.__name__}.{f.name}: no CLI type for {typ!r}")
        ptype = _TYPES[typ]
        if "choices" in meta:
            ptype = click.Choice(meta["choices"])
        elif typ is int and (meta.get("signed") or "max" in meta):
            ptype = CountInt(bool(meta.get("signed")), int(meta.get("max", INT_LIMIT)))
        out.append(
            SectionOption(
                [flag(f.name), f.name],
                type=ptype,
                default=None if required else default,
                required=required,
                show_default=not required and default != "",
                help=text,
                section=section,
            )
        )
    return out


def _prefixed(params: list, prefix: str) -> list:
    """``params`` with their flag and parameter names prefixed (``--hidden-size`` ->
    ``--enc-hidden-size``)."""
    if not prefix:
        return params
    for param in params:
        param.name = prefix + param.name
        dash = flag(prefix)[2:]
        param.opts = ["--" + dash + o[2:] for o in param.opts]
        param.secondary_opts = ["--no-" + dash + o[5:] for o in param.secondary_opts]
    return params


class HelpArgument(click.Argument):
    """A positional argument that shows its help, like an option, in ``--help``."""

    def __init__(self, *args: Any, help: str = "", section: str = "Arguments", **kw: Any):
        super().__init__(*args, **kw)
        self.help = help
        self.section = section

    def get_help_record(self, ctx: click.Context) -> tuple[str, str]:
        return self.make_metavar(ctx), self.help


def _argument(f, typ, default, required: bool, text: str) -> click.Argument:
    if typ == tuple[str, ...]:
        return HelpArgument([f.name], nargs=-1, help=text)
    return HelpArgument([f.name], type=_TYPES[typ], required=required, help=text)


PATH_FIELDS = frozenset(
    {"train", "valid", "test", "data", "data_dir", "embeddings", "input", "output", "reference"}
    | {f"{split}_{side}" for split in ("train", "valid", "test") for side in ("src", "tgt")}
    | {"checkpoint", "out", "plots", "audio", "runs"}
)
"""Fields of these names hold local file or folder paths (comma-separated where a list)."""

_WRITTEN = frozenset({"output", "out", "plots"})
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def refuse_urls(cls: type, values: dict[str, Any]) -> None:
    """A URL given for a path is one error naming the option: files are not downloaded (as
    a path it read as ``file not found: https:/...``, the ``//`` folded by pathlib)."""
    for f in fields(cls):
        if f.name not in PATH_FIELDS or not values.get(f.name):
            continue
        value = values[f.name]
        for item in value if isinstance(value, tuple | list) else (value,):
            for part in str(item).split(","):
                if _URL.match(part.strip()):
                    name = f.name.upper() if f.metadata.get("argument") else flag(f.name)
                    if f.name in _WRITTEN:
                        what = "writes local files only: give a local path, copy it after"
                    else:
                        what = "reads local files only: download it first (e.g. curl -LO URL)"
                    raise UserError(f"{name}: {part.strip()} is a URL; lstmkit {what}")


def build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Instantiate ``cls`` from the parsed values of its own fields, its sections (nested
    configs) from theirs over the section's default (a URL for a path is refused first, naming
    the option). The config's ``__post_init__`` checks the values; a ValueError it raises is a
    :class:`UserError`."""
    own = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
    refuse_urls(cls, own)
    subs = sections(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name in subs:
            sub, p = subs[f.name]
            if any(
                k.startswith(prefix + p) and k[len(prefix + p) :] in flat_names(sub) for k in values
            ):
                inner = build(sub, values, prefix + p)
                kwargs[f.name] = replace(section_default(cls, f.name), **asdict(inner))
        elif f.name in own:
            kwargs[f.name] = own[f.name] if f.default is None else _value(own[f.name])
    try:
        return cls(**kwargs)
    except UserError:
        raise
    except ValueError as e:
        raise UserError(str(e)) from None


def _value(v: Any) -> Any:
    return "" if v is None else v


def check_unique(*classes: type) -> None:
    """Two sections may not share a flag name (the values would be ambiguous)."""
    seen: dict[str, str] = {}
    for cls in classes:
        for name in flat_names(cls):
            if name in seen:
                raise TypeError(f"option {flag(name)} is in both {seen[name]} and {cls}")
            seen[name] = cls.__name__
