"""The recurrence backends as ``torch.library`` custom ops: what torch.compile and torch.export see.

Dynamo cannot trace into the C++ extension (it reads the NamedTuples of
:mod:`lstmkit.reference.recurrence` by attribute through pybind11) nor into a Triton launcher,
and fake tensors (shapes without data, as torch.export and torch.compile trace with) crash the
extension. So each backend with its own forward and backward is registered as a pair of
custom ops, namespace ``lstmkit``:

- ``lstmkit::recurrence_cpu`` / ``recurrence_cpu_backward``: the fused C++ kernel (CPU);
- ``lstmkit::recurrence_python`` / ``recurrence_python_backward``: the hand-written PyTorch
  forward and backward (:mod:`lstmkit.reference.backward`), any device; opaque to the compiler,
  so its Python time loop is neither unrolled nor specialised on ``T``;
- ``lstmkit::recurrence_triton`` / ``recurrence_triton_backward``: the Triton kernels (CUDA, or
  CPU tensors under ``TRITON_INTERPRET=1``).

Each forward op takes the fields of :class:`~lstmkit.reference.recurrence.RecurrenceInputs`
flattened (optional tensors as ``Tensor?``), ``batch_sizes``, ``reverse`` and the
:class:`~lstmkit.reference.options.CellOptions` scalars, and returns ``out (T, B, P),
h_n (B, P), c_n (B, H)`` followed by the ten :class:`~lstmkit.reference.recurrence.
SavedTensors` fields. A custom op cannot return None, so a saved tensor the variant has not
(or every saved tensor when ``save`` is false) comes back as an empty ``(0,)`` tensor; ``c_out``
comes back only with the cell layer norm (else it is ``c_new``, and an op's outputs may not
alias each other). The fake implementations give those shapes for symbolic ``T`` and ``B``,
and :func:`torch.library.register_autograd` ties each forward to its backward op, so the
compiled and exported graphs hold one node per layer and direction, with dynamic batch and
time.

In eager mode the modules do not go through these ops: a custom op's dispatch costs tens of
microseconds of Python, as much as a whole batch-1 step. :func:`lstmkit.kernels.dispatch.
recurrence` routes through :func:`run` only while compiling or exporting (or on fake tensors).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from lstmkit.kernels.cpu import recurrence as cpu_recurrence
from lstmkit.reference.backward import recurrence_backward
from lstmkit.reference.lstm import recurrence_forward
from lstmkit.reference.options import CellOptions
from lstmkit.reference.recurrence import (
    GRAD_FIELDS,
    N_GRAD_ARGS,
    RecurrenceGrads,
    RecurrenceInputs,
    SavedTensors,
    check_recurrence_args,
)

__all__ = ["BACKENDS", "backward_op", "forward_op", "run", "saved_tensors"]

BACKENDS = ("cpu", "python", "triton")

_N_IN = len(RecurrenceInputs._fields)  # 15
_N_SAVED = len(SavedTensors._fields)  # 10
_OPT = {"bias_hh", "weight_hr", "weight_ci", "weight_cf", "weight_co", "ln_weight_hh"}
_OPT |= {"ln_weight_c", "ln_bias_c", "zoneout_h", "zoneout_c", "dropout_h"}


def _args(fields, optional) -> str:
    return ", ".join(f"Tensor{'?' if f in optional else ''} {f}" for f in fields)


_SCALARS = "Tensor? batch_sizes, bool reverse, bool coupled, bool forget_gate, float layer_norm_eps"
_IN = _args(RecurrenceInputs._fields, _OPT)
_FWD_SCHEMA = f"({_IN}, {_SCALARS}, bool save) -> ({', '.join(['Tensor'] * (3 + _N_SAVED))})"
_SAVED_ARGS = _args(SavedTensors._fields, {"c_out", "r_hat", "rstd_hh", "c_hat", "rstd_c", "m"})
_BWD_SCHEMA = (
    f"({_IN}, {_SAVED_ARGS}, Tensor dout, Tensor dh_n, Tensor dc_n, {_SCALARS}, bool[] needs)"
    f" -> ({', '.join(['Tensor'] * N_GRAD_ARGS)})"
)


def _saved_present(inputs: RecurrenceInputs) -> SavedTensors:
    """Which saved tensors this variant has (True/False per field), from its inputs alone."""
    ln_hh, ln_c, proj = (
        inputs.ln_weight_hh is not None,
        inputs.ln_weight_c is not None,
        inputs.weight_hr is not None,
    )
    return SavedTensors(True, True, True, True, ln_c, ln_hh, ln_hh, ln_c, ln_c, proj)


def _fresh(outs: list[Tensor], inputs: tuple) -> list[Tensor]:
    """``outs`` with a copy of any that shares memory with an input or an earlier output: a
    custom op's outputs must be new tensors (a kernel may hand back its input, or one buffer
    under two names)."""
    seen = {t.untyped_storage().data_ptr() for t in inputs if torch.is_tensor(t) and t.numel()}
    res = []
    for t in outs:
        if t.numel():
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen:
                t = t.clone()
                ptr = t.untyped_storage().data_ptr()
            seen.add(ptr)
        res.append(t)
    return res


def _define(backend: str, forward: Callable, backward: Callable, saved_dtype: Callable):
    """The forward and backward ops of one backend, their fake kernels and their autograd.

    ``forward``/``backward`` have the signatures of :func:`~lstmkit.reference.lstm.
    recurrence_forward` and :func:`~lstmkit.reference.backward.recurrence_backward`;
    ``saved_dtype(xg)`` is the dtype the backend saves in (the Triton kernels save float32).
    """
    fwd_name, bwd_name = f"lstmkit::recurrence_{backend}", f"lstmkit::recurrence_{backend}_backward"

    def fwd_impl(*args):
        inputs = RecurrenceInputs(*args[:_N_IN])
        bs, reverse, coupled, forget_gate, eps, save = args[_N_IN:]
        opts = CellOptions(coupled, forget_gate, eps)
        check_recurrence_args(inputs, bs, opts)
        out, h_n, c_n, saved = forward(inputs, bs, reverse, opts, save)
        new = inputs.xg.new_empty  # one empty tensor per absent output: outputs may not alias
        if saved is None:
            tail = [new(0) for _ in range(_N_SAVED)]
        else:
            keep = _saved_present(inputs)
            tail = [t if k else new(0) for t, k in zip(saved, keep, strict=True)]
        return tuple(_fresh([out, h_n, c_n, *tail], args[:_N_IN]))

    fwd_op = torch.library.custom_op(fwd_name, fwd_impl, mutates_args=(), schema=_FWD_SCHEMA)

    @fwd_op.register_fake
    def _(*args):
        inputs = RecurrenceInputs(*args[:_N_IN])
        save = args[-1]
        xg, h0 = inputs.xg, inputs.h0
        T, B, G = xg.shape
        H, P = G // 4, h0.shape[1]
        new = xg.new_empty
        sd = saved_dtype(xg)
        shapes = SavedTensors(
            (T, B, G), (T, B, H), (T, B, P), (T, B, H), (T, B, H),
            (T, B, G), (T, B, 1), (T, B, H), (T, B, 1), (T, B, H),
        )  # fmt: skip
        keep = _saved_present(inputs)
        tail = [
            xg.new_empty(s, dtype=sd) if save and k else new(0)
            for s, k in zip(shapes, keep, strict=True)
        ]
        return (new(T, B, P), new(B, P), new(B, H), *tail)

    def bwd_impl(*args):
        inputs = RecurrenceInputs(*args[:_N_IN])
        saved = SavedTensors(*args[_N_IN : _N_IN + _N_SAVED])
        if saved.c_out is None:
            saved = saved._replace(c_out=saved.c_new)
        k = _N_IN + _N_SAVED
        dout, dh_n, dc_n, bs, reverse, coupled, forget_gate, eps, needs = args[k:]
        opts = CellOptions(coupled, forget_gate, eps)
        grads = backward(inputs, saved, dout, dh_n, dc_n, bs, reverse, opts, tuple(needs))
        outs = [
            g if (g is not None and n and x is not None) else inputs.xg.new_empty(0)
            for g, n, x in zip(grads, needs, inputs[:N_GRAD_ARGS], strict=True)
        ]
        return tuple(_fresh(outs, args))

    bwd_op = torch.library.custom_op(bwd_name, bwd_impl, mutates_args=(), schema=_BWD_SCHEMA)

    @bwd_op.register_fake
    def _(*args):
        inputs = RecurrenceInputs(*args[:_N_IN])
        needs = args[-1]
        return tuple(
            torch.empty_like(x) if (x is not None and n) else inputs.xg.new_empty(0)
            for x, n in zip(inputs[:N_GRAD_ARGS], needs, strict=True)
        )

    def setup_context(ctx, inputs, output):
        rec = RecurrenceInputs(*inputs[:_N_IN])
        keep = _saved_present(rec)
        saved = [t if k else None for t, k in zip(output[3:], keep, strict=True)]
        bs = inputs[_N_IN]
        ctx.save_for_backward(*inputs[:_N_IN], *saved, bs)
        ctx.flags = inputs[_N_IN + 1 : _N_IN + 5]  # reverse, coupled, forget_gate, eps
        ctx.saved_any = inputs[-1]

    def backward_fn(ctx, dout, dh_n, dc_n, *_saved_grads):
        if not ctx.saved_any:
            raise RuntimeError(
                f"{fwd_name} ran with save=False, so it kept nothing to differentiate; "
                "call it through lstmkit.kernels.ops.run, which saves whenever a grad is needed"
            )
        tensors = ctx.saved_tensors
        needs = [bool(n) for n in ctx.needs_input_grad[:N_GRAD_ARGS]]
        # Unused outputs may come without a gradient; the backward wants zeros there.
        inputs = RecurrenceInputs(*tensors[:_N_IN])
        xg = inputs.xg
        T, B = xg.shape[0], xg.shape[1]
        if dout is None:
            dout = xg.new_zeros(T, B, inputs.h0.shape[1])
        if dh_n is None:
            dh_n = xg.new_zeros(B, inputs.h0.shape[1])
        if dc_n is None:
            dc_n = xg.new_zeros(B, inputs.c0.shape[1])
        grads = bwd_op(
            *tensors[: _N_IN + _N_SAVED], dout, dh_n, dc_n, tensors[-1], *ctx.flags, needs
        )
        grads = [
            g if n and x is not None else None
            for g, n, x in zip(grads, needs, inputs[:N_GRAD_ARGS], strict=True)
        ]
        return (*grads, *([None] * (_N_IN - N_GRAD_ARGS)), None, None, None, None, None, None)

    fwd_op.register_autograd(backward_fn, setup_context=setup_context)
    return fwd_op, bwd_op


def _cpu_forward(inputs, batch_sizes, reverse, opts, save):
    return cpu_recurrence.fused_forward(inputs, batch_sizes, reverse, opts, save)


def _cpu_backward(inputs, saved, dout, dh_n, dc_n, batch_sizes, reverse, opts, needs=None):
    return cpu_recurrence.fused_backward(
        inputs, saved, dout, dh_n, dc_n, batch_sizes, reverse, opts, needs
    )


def _triton_forward(inputs, batch_sizes, reverse, opts, save):
    from lstmkit.kernels.triton.lstm_fwd import triton_forward  # imports triton

    return triton_forward(inputs, batch_sizes, reverse, opts, save)


def _triton_backward(inputs, saved, dout, dh_n, dc_n, batch_sizes, reverse, opts, needs=None):
    from lstmkit.kernels.triton.lstm_bwd import triton_backward  # imports triton

    return triton_backward(inputs, saved, dout, dh_n, dc_n, batch_sizes, reverse, opts, needs)


_OPS = {
    "cpu": _define("cpu", _cpu_forward, _cpu_backward, lambda xg: xg.dtype),
    "python": _define("python", recurrence_forward, recurrence_backward, lambda xg: xg.dtype),
    "triton": _define("triton", _triton_forward, _triton_backward, lambda xg: torch.float32),
}


def forward_op(backend: str):
    """The forward custom op of ``backend`` (``torch.ops.lstmkit.recurrence_<backend>``)."""
    return _OPS[backend][0]


def backward_op(backend: str):
    """The backward custom op of ``backend``."""
    return _OPS[backend][1]


def run(
    backend: str,
    inputs: RecurrenceInputs,
    batch_sizes: Tensor | None,
    reverse: bool,
    opts: CellOptions,
) -> tuple[Tensor, Tensor, Tensor]:
    """``out, h_n, c_n`` of ``backend``'s recurrence through its custom op: the signature of
    every recurrence (see :mod:`lstmkit.reference.recurrence`), traceable by Dynamo.

    The saved tensors are computed only when a gradient can be asked for (grad mode on and
    some differentiable input requiring grad), as the eager autograd Functions do.
    """
    save = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in inputs[:N_GRAD_ARGS]
    )
    res = _OPS[backend][0](
        *inputs,
        batch_sizes,
        bool(reverse),
        opts.coupled,
        opts.forget_gate,
        float(opts.layer_norm_eps),
        save,
    )
    return res[0], res[1], res[2]


def saved_tensors(
    backend: str,
    inputs: RecurrenceInputs,
    batch_sizes: Tensor | None,
    reverse: bool,
    opts: CellOptions,
) -> SavedTensors:
    """The :class:`~lstmkit.reference.recurrence.SavedTensors` of ``backend``'s forward through
    its custom op (None where the variant has none), for recording gates while tracing."""
    res = _OPS[backend][0](
        *inputs,
        batch_sizes,
        bool(reverse),
        opts.coupled,
        opts.forget_gate,
        float(opts.layer_norm_eps),
        True,
    )
    keep = _saved_present(inputs)
    saved = SavedTensors(*(t if k else None for t, k in zip(res[3:], keep, strict=True)))
    return saved if saved.c_out is not None else saved._replace(c_out=saved.c_new)


assert GRAD_FIELDS == RecurrenceInputs._fields[:N_GRAD_ARGS]
assert RecurrenceGrads._fields == GRAD_FIELDS
