"""Self-contained HTML pages: the tokens of one text, each shaded by a value per token.

No script and no outside resources: the page opens from disk anywhere. Hovering a token shows
its values.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmkit.utils.io import atomic_write_text
from lstmkit.viz.plots import to_numpy

_POSITIVE = (30, 110, 220)  # blue
_NEGATIVE = (220, 80, 30)  # orange-red: apart from the blue for colour-blind readers too


@dataclass(frozen=True)
class TokenRow:
    """One row of a token page: a value per token.

    ``signed`` rows shade positive values blue and negative ones orange-red, unsigned rows blue;
    the strength is ``|value| / scale`` (``scale`` defaults to the row's largest ``|value|``;
    give rows that should be compared one ``scale``).
    """

    name: str
    values: Sequence[float]
    signed: bool = False
    scale: float | None = None


def write_token_page(
    path: str | os.PathLike,
    *,
    title: str,
    heading: str,
    text: str,
    pieces: Sequence[str],
    rows: Sequence[TokenRow],
    notes: Sequence[str] = (),
    lines: Sequence[str] = (),
) -> Path:
    """Write the page and return ``path``. ``lines`` are short plain-text lines under the
    heading (e.g. the class probabilities), ``notes`` the paragraphs under the table that say
    what the shading means."""
    n = len(pieces)
    body = []
    for row in rows:
        v = to_numpy(row.values, f"row {row.name!r}")
        if v.shape != (n,):
            raise ValueError(f"row {row.name!r} has shape {v.shape} but there are {n} tokens")
        scale = row.scale if row.scale is not None else float(np.nanmax(np.abs(v), initial=0.0))
        cells = []
        for piece, x in zip(pieces, v.tolist(), strict=True):
            a = 0.0 if not scale > 0 else min(1.0, abs(x) / scale)
            r, g, b = _NEGATIVE if row.signed and x < 0 else _POSITIVE
            value = f"{x:+.3f}" if row.signed else f"{x:.3f}"
            cells.append(
                f'<span title="{html.escape(row.name)} = {value}" '
                f'data-value="{x:.6g}" '
                f'style="background: rgba({r},{g},{b},{a:.2f})">{html.escape(piece)}</span>'
            )
        body.append(f"<tr><th>{html.escape(row.name)}</th><td>{' '.join(cells)}</td></tr>")
    head_lines = "".join(f"<p>{html.escape(s)}</p>" for s in lines)
    note_text = "".join(f"<p>{html.escape(s)}</p>" for s in notes)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}} th{{text-align:right;
padding-right:1em;font-weight:normal;color:#555;white-space:nowrap}} td span{{padding:2px 3px;
border-radius:3px;line-height:2}} table{{border-collapse:collapse}} td,th{{padding:6px}}
p.note{{color:#444}}</style></head><body>
<h2>{html.escape(heading)}</h2>{head_lines}<p><i>{html.escape(text)}</i></p>
<table>{"".join(body)}</table>
<div class="note">{note_text}</div>
</body></html>
"""
    atomic_write_text(path, page)
    return Path(path)
