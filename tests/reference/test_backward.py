"""The hand-written backward through time: gradcheck in float64 and agreement with autograd."""

import itertools

import pytest
import torch

from lstmkit.reference.backward import LSTMRecurrenceFunction
from lstmkit.reference.lstm import CellOptions, lstm_recurrence
from tests.recurrence_args import make_args

DT = torch.float64
VARIANTS = {
    "vanilla": {},
    "projection": {"proj": True},
    "peephole": {"peephole": True},
    "layer_norm": {"layer_norm": True},
    "coupled": {"coupled": True},
    "no_forget": {"no_forget": True},
    "zoneout": {"zoneout": True},
    "recurrent_dropout": {"dropout": True},
    "packed": {"packed": True},
    "all": {
        "proj": True,
        "peephole": True,
        "layer_norm": True,
        "zoneout": True,
        "dropout": True,
        "packed": True,
    },
}


def opts_for(flags):
    return CellOptions(
        coupled=flags.get("coupled", False), forget_gate=not flags.get("no_forget", False)
    )


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck(name, reverse):
    flags = VARIANTS[name]
    args, bs = make_args(**flags)
    opts = opts_for(flags)
    assert torch.autograd.gradcheck(
        lambda *a: LSTMRecurrenceFunction.apply(bs, reverse, opts, *a), tuple(args)
    )


@pytest.mark.parametrize(
    "flags",
    [
        dict(
            zip(
                (
                    "proj",
                    "peephole",
                    "layer_norm",
                    "zoneout",
                    "dropout",
                    "packed",
                    "coupled",
                    "no_forget",
                ),
                combo,
                strict=True,
            )
        )
        for combo in itertools.product([0, 1], repeat=8)
        if not (combo[6] and combo[7])
    ],
)
def test_matches_autograd_of_reference(flags):
    args, bs = make_args(**flags)
    opts = opts_for(flags)
    out, h, c = lstm_recurrence(args, batch_sizes=bs, opts=opts)
    out2, h2, c2 = LSTMRecurrenceFunction.apply(bs, False, opts, *args)
    torch.testing.assert_close(out2, out, atol=1e-12, rtol=0)
    weights = [torch.randn_like(t) for t in (out, h, c)]
    inputs = [a for a in args[:12] if a is not None]

    def grads(o, hh, cc):
        loss = sum((t * w).sum() for t, w in zip((o, hh, cc), weights, strict=True))
        return torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True)

    for g_ref, g in zip(grads(out, h, c), grads(out2, h2, c2), strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-10, rtol=0)
