"""The only place that decides what runs an LSTM's recurrence: :func:`plan`.

:func:`plan` takes a module's :class:`~lstmkit.reference.options.VariantOptions`, its
``backend`` option, the device and dtype and the input kind (a sequence or one step, packed or
not, gates recorded or not, with a projection or not) and returns a frozen :class:`Plan`: which
backend runs, or an error that lists what is supported.

Backends:

- ``"torch"``: PyTorch's own fused LSTM (``torch.nn.LSTM``/``LSTMCell``), vanilla math only.
  ``"auto"`` picks it for vanilla layers except where the fused CPU kernel is faster (see
  :func:`vanilla_uses_torch`), and for the vanilla cell.
- ``"cpu"``: the fused C++ recurrence (:mod:`lstmkit.kernels.cpu.recurrence`), every variant.
- ``"triton"``: the persistent Triton kernels (:mod:`lstmkit.kernels.triton.recurrence`),
  every variant, float32/bfloat16/float16, on CUDA (or on the CPU in Triton's interpreter with
  ``TRITON_INTERPRET=1``, for tests). Verified in the interpreter only so far, so ``"auto"``
  does not pick it yet; ask for it by name.
- ``"python"``: the hand-written forward/backward in PyTorch
  (:class:`lstmkit.reference.backward.LSTMRecurrenceFunction`), any device.
- ``"reference"``: eager autograd through :func:`lstmkit.reference.lstm.lstm_recurrence`,
  the slowest, the ground truth and the only one with higher derivatives.

While torch.compile or torch.export traces a module (:func:`tracing`), the ``cpu``,
``python`` and ``triton`` recurrences run as ``torch.library`` custom ops
(:mod:`lstmkit.kernels.ops`), which Dynamo keeps as one graph node with dynamic shapes; in eager
mode they call their autograd Functions directly, which costs less per call.

Every recurrence backend has the signature ``fn(inputs: RecurrenceInputs, batch_sizes, reverse,
opts) -> (out, h_n, c_n)`` (see :mod:`lstmkit.reference.recurrence`); a one-step cell runs it
with ``T = 1``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensor

from lstmkit.kernels import ops
from lstmkit.kernels.cpu import recurrence as cpu_recurrence
from lstmkit.kernels.triton import recurrence as triton_recurrence
from lstmkit.reference.backward import LSTMRecurrenceFunction
from lstmkit.reference.lstm import lstm_recurrence, recurrence_forward
from lstmkit.reference.options import DEFAULT_OPTS, CellOptions, VariantOptions
from lstmkit.reference.recurrence import RecurrenceInputs, SavedTensors, check_recurrence_args

BACKENDS = ("auto", "torch", "cpu", "triton", "python", "reference")

RecurrenceFn = Callable[..., tuple[Tensor, Tensor, Tensor]]

_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


CPU_DTYPES = (torch.float32, torch.float64)
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check_triton(device: torch.device, dtype: torch.dtype) -> None:
    reason = triton_recurrence.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"backend='triton' cannot run here: {reason}")
    if device.type != "cuda" and not triton_recurrence.interpreting():
        raise ValueError(f"backend='triton' needs CUDA tensors, got device {device}")
    if dtype not in TRITON_DTYPES:
        raise ValueError(f"backend='triton' supports {TRITON_DTYPES}, got {dtype}")


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """Turn ``"auto"`` into a concrete recurrence backend for ``device``; check the others."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        raise ValueError(
            "backend='torch' runs only the vanilla LSTM (no variant options, no gate recording); "
            "use backend='auto', 'cpu', 'python' or 'reference' for variants"
        )
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"backend='cpu' needs CPU tensors, got device {device}")
    if backend == "cpu" and dtype not in CPU_DTYPES:
        raise ValueError(f"backend='cpu' supports {CPU_DTYPES}, got {dtype}")
    if backend == "cpu" and not cpu_recurrence.is_available():
        raise RuntimeError(f"the fused CPU kernel failed to build: {cpu_recurrence.build_error()}")
    if backend == "triton":
        _check_triton(device, dtype)
    if backend != "auto":
        return backend
    if device.type == "cpu" and dtype not in CPU_DTYPES:
        _warn_once(f"lstmkit: the fused CPU kernel runs {CPU_DTYPES}; {dtype} uses the slower loop")
        return "python"
    if device.type == "cpu":
        if cpu_recurrence.is_available():
            return "cpu"
        _warn_once(
            "lstmkit: fused CPU kernel unavailable "
            f"({cpu_recurrence.build_error()}); using the slower PyTorch reference loop"
        )
        return "python"
    _warn_once(
        f"lstmkit: no fused kernel for LSTM variants on {device.type} yet; "
        "using the PyTorch reference loop"
    )
    return "python"


def tracing(x: Tensor) -> bool:
    """Whether ``x`` is being traced rather than computed: torch.compile (Dynamo), torch.export
    (strict or not; both report :func:`torch.compiler.is_compiling`) or a fake tensor (shapes
    without data, as in a user's ``FakeTensorMode``). About 0.3 us, paid by every eager call."""
    return torch.compiler.is_compiling() or isinstance(x, FakeTensor)


def _traceable(backend: str, eager: RecurrenceFn, forward) -> RecurrenceFn:
    """``eager`` (the backend's autograd Function), except while tracing, where the backend's
    custom op (:mod:`lstmkit.kernels.ops`) stands in: Dynamo cannot see through the C++
    extension or a Triton launch, and fake tensors would crash them. With grad mode off the
    backend's ``forward`` runs directly, saving nothing: an autograd Function's apply costs
    more than a whole batch-1 step of the kernel (bench/stream_calls.py)."""

    def run(inputs, batch_sizes=None, reverse=False, opts=DEFAULT_OPTS):
        if tracing(inputs.xg):
            return ops.run(backend, inputs, batch_sizes, reverse, opts)
        if not torch.is_grad_enabled():
            if not isinstance(inputs, RecurrenceInputs):
                raise TypeError(
                    f"the recurrence takes RecurrenceInputs, got {type(inputs).__name__}"
                )
            check_recurrence_args(inputs, batch_sizes, opts)
            out, h_n, c_n, _ = forward(inputs, batch_sizes, reverse, opts, False)
            return out, h_n, c_n
        return eager(inputs, batch_sizes, reverse, opts)

    run.__name__ = run.__qualname__ = f"{backend}_recurrence"
    return run


_TABLE: dict[str, RecurrenceFn] = {
    "cpu": _traceable(
        "cpu", cpu_recurrence.FusedLSTMRecurrenceFunction.run, cpu_recurrence.fused_forward
    ),
    "triton": _traceable(
        "triton", triton_recurrence.TritonLSTMRecurrenceFunction.run, triton_recurrence.forward
    ),
    "python": _traceable("python", LSTMRecurrenceFunction.run, recurrence_forward),
    # Eager autograd through plain PyTorch ops: Dynamo traces it as it is (unrolled over T).
    "reference": lstm_recurrence,
}


def vanilla_uses_torch(
    device: torch.device, dtype: torch.dtype, proj_size: int, packed: bool = False
) -> bool:
    """For ``backend="auto"`` and vanilla math: run PyTorch's own LSTM, or our recurrence?

    On CPU the fused kernel takes over where PyTorch leaves its oneDNN path:

    - with a projection (PyTorch warns and loops over ATen ops): 2-7 times faster;
    - on a ``PackedSequence``: PyTorch's packed CPU LSTM trains at about half the speed of its
      padded one, the fused kernel at the padded speed; a training step of the speech and
      translation encoders takes 0.5-0.85 of PyTorch's time, inference the same
      (``bench/packed.py``, docs/BENCHMARKS.md).
    """
    return not (
        (proj_size > 0 or packed)
        and device.type == "cpu"
        and dtype in CPU_DTYPES
        and cpu_recurrence.is_available()
    )


def _cpu_kernel(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the fused CPU kernel can run tensors of this device and dtype."""
    return device.type == "cpu" and dtype in CPU_DTYPES and cpu_recurrence.is_available()


def recurrence(backend: str) -> RecurrenceFn:
    """The recurrence function of a concrete backend (see :func:`resolve_backend`)."""
    if backend not in _TABLE:
        raise ValueError(f"no recurrence for backend {backend!r}; supported: {sorted(_TABLE)}")
    return _TABLE[backend]


def trace_forward(
    backend: str,
    inputs: RecurrenceInputs,
    batch_sizes: Tensor | None,
    reverse: bool,
    opts: CellOptions,
) -> SavedTensors:
    """Run the forward once without autograd and return its saved tensors (gates, cells).

    Used only when gates are recorded, so the recording costs nothing otherwise.
    """
    with torch.no_grad():
        if backend in ops.BACKENDS and tracing(inputs.xg):
            return ops.saved_tensors(backend, inputs, batch_sizes, reverse, opts)
        if backend == "cpu":
            return cpu_recurrence.fused_forward(inputs, batch_sizes, reverse, opts, True)[3]
        return recurrence_forward(inputs, batch_sizes, reverse, opts, True)[3]


@dataclass(frozen=True)
class Plan:
    """What runs one call of a module: the whole decision of :func:`plan`.

    ``backend`` is concrete (``"torch"``, ``"cpu"``, ``"triton"``, ``"python"`` or
    ``"reference"``). ``recurrence`` is that backend's recurrence function, None for
    ``"torch"`` (the module then calls PyTorch's own LSTM).
    """

    backend: str
    recurrence: RecurrenceFn | None = None

    @property
    def uses_torch(self) -> bool:
        return self.backend == "torch"

    def trace(
        self,
        inputs: RecurrenceInputs,
        batch_sizes: Tensor | None,
        reverse: bool,
        opts: CellOptions,
    ) -> SavedTensors:
        """The saved tensors (gates, cells) of this plan's forward, for recording gates."""
        return trace_forward(self.backend, inputs, batch_sizes, reverse, opts)


def check_options(options: VariantOptions, backend: str, *, cell: bool = False) -> None:
    """Raise ValueError unless ``backend`` names a backend that can run ``options`` at all.

    What the constructors check; :func:`plan` checks the rest (device, dtype) at each call.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch" and not options.is_vanilla:
        what = "cell" if cell else "LSTM"
        raise ValueError(
            f"backend='torch' runs only the vanilla {what}; with variant options use "
            "backend='auto', 'cpu', 'python' or 'reference'"
        )


def plan(
    options: VariantOptions,
    backend: str,
    device: torch.device,
    dtype: torch.dtype,
    *,
    proj: bool = False,
    packed: bool = False,
    recording: bool = False,
    step: bool = False,
    traced: bool = False,
) -> Plan:
    """Decide what runs one call of an :class:`lstmkit.LSTM` (``step=False``) or
    :class:`lstmkit.LSTMCell` (``step=True``, one time step).

    - ``backend="torch"``: PyTorch's own kernel; vanilla only (else ValueError). When gates are
      recorded it cannot show them, so the recurrence ``"auto"`` would pick runs instead.
    - ``backend="auto"``: for vanilla math PyTorch's kernel, except that a layer with a
      projection or packed input on the CPU runs the fused CPU kernel
      (:func:`vanilla_uses_torch`); with variants the fused CPU kernel on CPU, else the
      hand-written loop. A cell with variants runs the eager reference step (autograd, higher
      derivatives, as a cell has always done); a vanilla cell runs PyTorch's cell.
    - ``traced=True`` (torch.compile or torch.export is tracing the call, see :func:`tracing`):
      while exporting, or compiling with grad mode on, ``"auto"`` runs a vanilla layer on the
      fused CPU kernel too where it can (CPU, float32/64, kernel built). torch's LSTM there is
      ``aten.lstm``, which torch.export specialises on the sequence length and AOT autograd
      unrolls over time for the backward; the kernel is one custom op per layer and direction
      with dynamic batch and time (:mod:`lstmkit.kernels.ops`). Compiled inference keeps
      torch's LSTM: its oneDNN kernel is faster, and Dynamo keeps its time dimension dynamic.
    - a named recurrence backend (``"cpu"``, ``"triton"``, ``"python"``, ``"reference"``): that
      one, checked against the device and dtype (see :func:`resolve_backend`); a cell runs it
      for one step.
    """
    check_options(options, backend, cell=step)
    vanilla = options.is_vanilla
    if not recording and vanilla:
        if backend == "torch":
            return Plan("torch")
        # torch.export fixes aten.lstm's sequence length, and AOT autograd unrolls its backward
        # over time; compiled inference keeps it (oneDNN, faster than the kernel, T dynamic).
        kernel_instead = (
            traced
            and (torch.compiler.is_exporting() or torch.is_grad_enabled())
            and _cpu_kernel(device, dtype)
        )
        torch_layer = vanilla_uses_torch(device, dtype, int(proj), packed) and not kernel_instead
        if backend == "auto" and (step or torch_layer):
            return Plan("torch")
    if step and backend == "auto":
        return Plan("reference", recurrence("reference"))
    name = resolve_backend("auto" if backend == "torch" else backend, device, dtype)
    return Plan(name, recurrence(name))
