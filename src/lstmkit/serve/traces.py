"""The gate traces of one input as JSON: what ``lstmkit inspect`` draws, as numbers for the web
inspector and ``POST /v1/{run}/inspect``.

For a text classifier (sentiment) the units that matter most are those with the largest share,
in size, of the predicted class's score :math:`s_c = z_c - \\bar z`, split exactly over steps and
units by :func:`lstmkit.viz.token_shares.token_contributions` (with attention pooling the share
of unit :math:`u` at step :math:`t` is :math:`\\alpha_t (w_c - \\bar w)_u y_{t,u}`); for a language
model, those whose last output :math:`h_{T,u}` moves the next token's logit most,
:math:`|(w_k - \\bar w)_u h_{T,u}|` for the predicted token :math:`k`; for a speech model (frames,
first layer, forward direction as ``lstmkit inspect`` draws it), those whose cell state varies
most over time, :math:`\\operatorname{std}_t c_{t,u}`.
"""

from __future__ import annotations

from typing import Any

import torch

from lstmkit.nn import LSTM, record_gates
from lstmkit.tasks.base import Task
from lstmkit.utils.errors import UserError
from lstmkit.viz.token_gates import step_label
from lstmkit.viz.token_shares import token_contributions

GATES = ("i", "f", "o", "c")
TOP_UNITS = 12
"""Units whose traces are sent: the first ``TOP_UNITS`` by how much they matter."""
MAX_STEPS = 2_000
"""Steps (tokens or frames) sent; longer inputs are cut, and ``cut`` says how many were left."""


def _r(x: torch.Tensor) -> list:
    """Rounded to 4 places: enough for a picture, a third of the JSON."""
    return (
        [round(float(v), 4) for v in x.flatten().tolist()]
        if x.dim() <= 1
        else [_r(row) for row in x]
    )


def _trace(rec, layer: int, directions: int) -> dict[str, torch.Tensor]:
    """``{gate: (T, D*H)}`` of ``layer``, the directions side by side (batch of one)."""
    out = {}
    for g in GATES:
        parts = []
        for d in range(directions):
            t = getattr(rec[layer, d], g)
            parts.append((t[:, 0] if t.dim() == 3 and t.shape[1] == 1 else t[0]).float().cpu())
        out[g] = torch.cat(parts, 1)
    return out


def _units(gates: dict[str, torch.Tensor], order: list[int], H: int, score: torch.Tensor):
    arrows = ("→", "←")
    return [
        {
            "unit": u,
            "name": f"{arrows[u // H]}{u % H}" if gates["c"].shape[1] > H else f"{u}",
            "score": round(float(score[u]), 4),
            **{g: _r(gates[g][:, u]) for g in GATES},
        }
        for u in order
    ]


@torch.no_grad()
def inspect_text(task: Task, model, text: str, device: torch.device) -> dict[str, Any]:
    """The trace of one text through a sentiment or language model run (see the module)."""
    enc = getattr(model, "encoder", None)
    if not isinstance(enc, LSTM):
        raise UserError("inspect needs an LSTM model")
    H, D, layer = enc.hidden_size, 2 if enc.bidirectional else 1, enc.num_layers - 1
    if task.name == "sentiment":
        (ids,), _ = task.data.encode([text])
        if not ids:
            raise UserError("text: has no tokens")
        ids = ids[:MAX_STEPS]
        pieces = [task.tokenizer.token(i) for i in ids]
        tokens = torch.tensor([ids], dtype=torch.long, device=device)
        lengths = torch.tensor([len(ids)], dtype=torch.long, device=device)
        with record_gates(model) as rec:
            p = torch.softmax(model(tokens, lengths)[0].float(), -1).cpu()
        cls = int(p.argmax())
        parts = token_contributions(model, tokens, lengths, cls)
        per_unit = parts["units"].sum(0)
        order = [int(u) for u in per_unit.abs().argsort(descending=True, stable=True)]
        gates = _trace(rec, layer, D)
        return {
            "kind": "tokens",
            "steps": [step_label(s) for s in pieces],
            "prediction": {
                "label": task.labels[cls],
                "probabilities": {
                    lab: round(float(q), 4) for lab, q in zip(task.labels, p, strict=True)
                },
            },
            "shares": _r(parts["units"].sum(1)),
            "attention": None if parts["attention"] is None else _r(parts["attention"]),
            "ranked_by": f"share of the score of {task.labels[cls]!r} (logit less the mean)",
            "layer": layer + 1,
            "units": _units(gates, order[:TOP_UNITS], H, per_unit),
            "cut": 0,
        }
    if task.name == "lm":
        all_ids = task.encode_prompt(text, "unk")
        if not all_ids:
            raise UserError("text: has no tokens")
        ids = all_ids[:MAX_STEPS]
        with record_gates(model) as rec:
            logits, _ = model(torch.tensor([ids], device=device), None)
        last = logits[0, -1].float().cpu()
        k = int(last.argmax())
        gates = _trace(rec, layer, D)
        score = torch.zeros(gates["c"].shape[1])
        if model.decoder is not None:
            w = model.decoder.weight.float().cpu()
            h_last = _trace_h(rec, layer, D)[-1]  # the read-out sees the top layer's last h
            score = (w[k] - w.mean(0))[: h_last.numel()] * h_last
        order = [int(u) for u in score.abs().argsort(descending=True, stable=True)]
        p = torch.softmax(last, -1)
        top = p.argsort(descending=True)[:5]
        return {
            "kind": "tokens",
            "steps": [step_label(task.piece(i)) for i in ids],
            "prediction": {
                "label": task.piece(k),
                "probabilities": {task.piece(int(j)): round(float(p[j]), 4) for j in top},
            },
            "shares": None,
            "attention": None,
            "ranked_by": f"|share of the next token {task.piece(k)!r}'s logit| at the last step",
            "layer": layer + 1,
            "units": _units(gates, order[:TOP_UNITS], H, score),
            "cut": len(all_ids) - len(ids),
        }
    raise UserError(f"inspect of a {task.name} run takes an uploaded recording, not text")


def _trace_h(rec, layer: int, directions: int) -> torch.Tensor:
    parts = []
    for d in range(directions):
        t = rec[layer, d].h
        parts.append((t[:, 0] if t.dim() == 3 and t.shape[1] == 1 else t[0]).float().cpu())
    return torch.cat(parts, 1)


@torch.no_grad()
def inspect_audio(task: Task, model, path: str, device: torch.device) -> dict[str, Any]:
    """The trace of one recording through a speech run: the first layer's forward gates over
    the frames (as ``lstmkit inspect`` draws them), the units ranked by the spread of ``c``."""
    if not any(isinstance(m, LSTM) for m in model.modules()):
        raise UserError("inspect needs an LSTM model")
    batch = task._input_batch(path, device)
    with record_gates(model) as rec:
        what, marks = task.describe_audio(model, batch)
    gates = _trace(rec, 0, 1)
    T = gates["c"].shape[0]
    gates = {g: v[:MAX_STEPS] for g, v in gates.items()}
    score = gates["c"].std(0) if gates["c"].shape[0] > 1 else gates["c"].abs()[0]
    order = [int(u) for u in score.argsort(descending=True, stable=True)]
    H = gates["c"].shape[1]
    return {
        "kind": "frames",
        "steps": [str(t) for t in range(min(T, MAX_STEPS))],
        "prediction": {"label": what, "probabilities": {}},
        "shares": None,
        "attention": None,
        "marks": [int(m) for m in marks if m < MAX_STEPS],
        "ranked_by": "spread (std over frames) of the cell state c",
        "layer": 1,
        "units": _units(gates, order[:TOP_UNITS], H, score),
        "cut": max(0, T - MAX_STEPS),
    }
