"""Result rows as files: JSON lines or CSV (torch-free, so the ONNX predictor shares it)."""

from __future__ import annotations

import csv
import io
import json


def format_results(results: list[dict], name: str = "") -> str:
    """JSON lines (UTF-8, not ``\\u`` escapes), or CSV when ``name`` ends in ``.csv``: one
    column per field, nested fields as ``probabilities.pos``, lists as JSON."""
    if not name.lower().endswith(".csv"):
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    rows = [flat_row(r) for r in results]
    header = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def flat_row(row: dict, prefix: str = "") -> dict:
    """``{"probabilities": {"pos": p}}`` as ``{"probabilities.pos": p}``; lists as JSON."""
    out: dict = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_row(value, name + "."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value, ensure_ascii=False)
        else:
            out[name] = value
    return out
