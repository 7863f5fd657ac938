"""What a text classifier read in one text: each token's share of the predicted class's score.

:func:`token_contributions` splits the score exactly over the time steps and units, from how
the classifier pools; :func:`draw_token_shares` draws it for ``lstmkit inspect`` of a
sentiment run: a PNG of the gates of both directions (the units that weigh most in the score)
under each token's share, and an HTML page of the tokens shaded by that share (and by the
attention weights, with attention pooling).

The classifier is any module with ``encode(tokens, lengths)``, a linear ``head``, ``pooling``
(``last``, ``mean``, ``max`` or ``attention``, then ``attn`` scores each step) and an
:class:`lstmkit.LSTM` ``encoder``, as :class:`lstmkit.models.classifier.TextClassifier`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from lstmkit.nn import record_gates

SHARE_RULE = {
    "attention": "its attention weight × (w_c − mean w)·y_t, the class weights w against the "
    "encoder output y_t",
    "mean": "(w_c − mean w)·y_t / T, the class weights w against the encoder output y_t",
    "max": "(w_c − mean w)·y_t over the units whose maximum over time is at that token",
    "last": "(w_c − mean w)·y_t at the last token (forward units) and the first (backward)",
}
"""How each pooling gives a token its share of the score, in words (for the captions)."""

ARROWS = ("→", "←")


@torch.no_grad()
def token_contributions(model: nn.Module, tokens: Tensor, lengths: Tensor, cls: int) -> dict:
    """Exact split of the score of class ``cls`` (its logit less the mean logit) over the time
    steps and units of one text, from how the classifier pools.

    Returns ``units`` ``(T, D*H)``: the share of each unit at each step, which add up to the
    score less ``bias`` (the class bias less the mean bias); ``attention`` ``(T,)`` with
    attention pooling, else None. ``tokens`` and ``lengths`` hold one text, ``(1, T)`` and
    ``(1,)``.
    """
    y = model.encode(tokens, lengths)[0].float()
    T = int(lengths[0])
    y = y[:T]
    W, b = model.head.weight.float(), model.head.bias.float()
    w = W[cls] - W.mean(0)  # (D*H,)
    attention = None
    if model.pooling == "attention":
        attention = torch.softmax(model.attn(y).squeeze(-1).float(), 0)
        weight = attention[:, None].expand_as(y)
    elif model.pooling == "mean":
        weight = torch.full_like(y, 1.0 / T)
    elif model.pooling == "max":
        weight = torch.zeros_like(y)
        weight[y.argmax(0), torch.arange(y.shape[1])] = 1.0
    else:  # last: the forward half at the last step, the backward half at the first
        weight = torch.zeros_like(y)
        half = y.shape[1] // 2 if model.encoder.bidirectional else y.shape[1]
        weight[T - 1, :half] = 1.0
        weight[0, half:] = 1.0
    return {
        "units": (weight * y * w).cpu(),
        "attention": attention.cpu() if attention is not None else None,
        "bias": float(b[cls] - b.mean()),
    }


def short(text: str, n: int = 60) -> str:
    """``text`` on one line, cut to ``n`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def draw_token_shares(
    model: nn.Module,
    ids: list[int],
    pieces: Sequence[str],
    text: str,
    labels: Sequence[str],
    stem: Path,
    device,
) -> list[Path]:
    """``STEM.png`` (gates under the token shares) and ``STEM.html`` (the shaded tokens) for
    the text ``text``, tokenised as ``ids`` (shown as ``pieces``); ``labels`` name the
    classes."""
    from lstmkit.viz import LinePanel, plot_gates  # looked up here: matplotlib on first use
    from lstmkit.viz.html import TokenRow, write_token_page

    enc = model.encoder
    H, D, layer = enc.hidden_size, 2 if enc.bidirectional else 1, enc.num_layers - 1
    tokens = torch.tensor([ids], dtype=torch.long, device=device)
    lengths = torch.tensor([len(ids)], dtype=torch.long, device=device)
    with torch.no_grad(), record_gates(model) as rec:
        p = torch.softmax(model(tokens, lengths)[0].float(), -1)
    cls = int(p.argmax())
    label = labels[cls]
    parts = token_contributions(model, tokens, lengths, cls)
    units = parts["units"]  # (T, D*H): each unit's share of the score at each step
    # the traces of the last layer, the one the classifier reads; (T, 1, H) when packed
    traces = [rec[layer, d] for d in range(D)]
    gates = {
        g: torch.cat(
            [
                (getattr(t, g)[:, 0] if t.i.shape[0] != 1 else getattr(t, g)[0]).cpu()
                for t in traces
            ],
            dim=1,
        )
        for g in ("i", "f", "o", "c")
    }
    per_unit = units.sum(0)
    shown = [int(u) for u in per_unit.abs().argsort(descending=True, stable=True)[:16]]
    unit_labels = [f"{ARROWS[u // H]}{u % H} ({float(per_unit[u]):+.2f})" for u in shown]
    steps = {"forward →": units[:, :H].sum(1)}
    if D == 2:
        steps["backward ←"] = units[:, H:].sum(1)
        steps["both"] = units.sum(1)
    panels = [
        LinePanel(
            f"each token's share of the score of {label!r}",
            steps,
            ylabel="share",
            emphasize="both" if D == 2 else None,
            zero_line=True,
        )
    ]
    if parts["attention"] is not None:
        panels.append(LinePanel("attention weight", {"attention": parts["attention"]}, ylabel="α"))
    directions = "forward → and backward ← directions" if D == 2 else "forward direction"
    rule = SHARE_RULE[model.pooling]
    caption = (
        f"Units shown: the {len(shown)} of {D * H} ({directions}, layer {layer + 1}) "
        f"with the largest share, in size, of the score of {label!r} (its logit less "
        f"the mean logit), largest first; in brackets that share. A token's share is {rule}; "
        "the encoder output at a token has read the tokens before it (forward) or after it "
        "(backward), not that token alone."
    )
    png = plot_gates(
        gates,
        stem.with_suffix(".png"),
        step_labels=list(pieces),
        units=shown,
        unit_labels=unit_labels,
        c_lines=0,
        line_panels=panels,
        title=f"{label} ({float(p[cls]):.2f}): “{short(text)}”",
        caption=caption,
    )
    total = units.sum(1)
    scale = float(torch.cat(list(steps.values())).abs().max())
    rows = [TokenRow(f"share of the score of {label!r}", total, signed=True, scale=scale)]
    if D == 2:
        rows += [
            TokenRow("read by the forward direction", steps["forward →"], True, scale),
            TokenRow("read by the backward direction", steps["backward ←"], True, scale),
        ]
    if parts["attention"] is not None:
        rows.append(TokenRow("attention weight", parts["attention"]))
    probs = ", ".join(f"{lab} {float(q):.3f}" for lab, q in zip(labels, p, strict=True))
    notes = [
        f"Blue: the token's share pushes towards {label!r}; orange-red: against it; "
        "the darker, the larger (rows of shares on one scale). Hover for values.",
        f"A token's share is {rule}, summed over the units of layer {layer + 1}; the shares add "
        f"up to the score of {label!r} (its logit less the mean logit, here "
        f"{float(total.sum() + parts['bias']):+.3f}) less a constant "
        f"{float(parts['bias']):+.3f}. The encoder output at a token has read the tokens before "
        "it (forward) or after it (backward), not that token alone.",
    ]
    if parts["attention"] is not None:
        notes.append("Attention weight: the softmax weight of the token in the pooling.")
    page = write_token_page(
        stem.with_suffix(".html"),
        title=f"lstmkit inspect: {text[:60]}",
        heading=f"{label} ({float(p[cls]):.2f})",
        text=text,
        pieces=list(pieces),
        rows=rows,
        lines=[probs],
        notes=notes,
    )
    return [png, page]
