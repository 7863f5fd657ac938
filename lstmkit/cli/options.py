"""Click options generated from the typed config dataclasses, and configs built back from them.

Every field becomes ``--field-name`` (booleans ``--name/--no-name``) with the field's type, its
default, its ``help`` metadata and its ``choices``. Help output groups the options by section.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, fields
from typing import Any

import click

_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING}


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


def options_for(cls: type, section: str, defaults: dict[str, Any] | None = None) -> list:
    """One click option per field of the dataclass ``cls``."""
    defaults = defaults or {}
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        typ = hints[f.name]
        default = defaults.get(f.name, f.default)
        required = default is MISSING
        meta = f.metadata
        text = meta.get("help", "")
        if meta.get("argument"):
            out.append(_argument(f, typ, default, required, text))
            continue
        if typ is bool:
            decl = [f"{flag(f.name)}/--no-{f.name.replace('_', '-')}", f.name]
            out.append(
                SectionOption(decl, default=default, show_default=True, help=text, section=section)
            )
            continue
        if typ not in _TYPES:
            raise TypeError(f"{cls.__name__}.{f.name}: no CLI type for {typ!r}")
        ptype = click.Choice(meta["choices"]) if "choices" in meta else _TYPES[typ]
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


def build(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate ``cls`` from the parsed values of its own fields."""
    return cls(**{f.name: _value(values[f.name]) for f in fields(cls) if f.name in values})


def _value(v: Any) -> Any:
    return "" if v is None else v


def check_unique(*classes: type) -> None:
    """Two sections may not share a flag name (the values would be ambiguous)."""
    seen: dict[str, str] = {}
    for cls in classes:
        for f in fields(cls):
            if f.name in seen:
                raise TypeError(f"option {flag(f.name)} is in both {seen[f.name]} and {cls}")
            seen[f.name] = cls.__name__
