"""Random arguments of the LSTM recurrence, shared by the reference and kernel tests."""

import torch

from lstmkit.reference.recurrence import RecurrenceInputs


def make_args(
    dtype=torch.float64,
    proj=False,
    peephole=False,
    layer_norm=False,
    zoneout=False,
    dropout=False,
    packed=False,
    T=4,
    B=3,
    H=4,
    grad=True,
    **_,
):
    """RecurrenceInputs (and batch_sizes) for one variant combination.

    Flags the recurrence tensors do not carry (coupled, no_forget) are accepted and ignored.
    """
    P = 3 if proj else H

    def r(*s, scale=1.0):
        return (torch.randn(*s, dtype=dtype) * scale).requires_grad_(grad)

    def mask(shape, p):
        return torch.bernoulli(torch.full(shape, p, dtype=dtype))

    args = RecurrenceInputs(
        r(T, B, 4 * H),
        r(B, P),
        r(B, H),
        r(4 * H, P, scale=H**-0.5),
        r(4 * H),
        r(P, H, scale=H**-0.5) if proj else None,
        *((r(H), r(H), r(H)) if peephole else (None, None, None)),
        *((r(4 * H), r(H), r(H)) if layer_norm else (None, None, None)),
        mask((T, B, P), 0.3) if zoneout else None,
        mask((T, B, H), 0.3) if zoneout else None,
        mask((B, P), 0.7) / 0.7 if dropout else None,
    )
    bs = None
    if packed:  # non-increasing, the last sequence one step long
        bs = torch.linspace(B, 1, T).round().long()
    return args, bs
