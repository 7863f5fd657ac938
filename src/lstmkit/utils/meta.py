"""Metadata of config dataclass fields, read by the command line to build its options."""

from __future__ import annotations


def help_meta(text: str, **extra: object) -> dict[str, object]:
    """``field(metadata=...)`` for an option: its help text, plus ``choices``, ``argument``..."""
    return {"help": text, **extra}
