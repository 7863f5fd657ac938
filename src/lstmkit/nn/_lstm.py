"""``lstmkit.LSTM``: a drop-in for :class:`torch.nn.LSTM` with variants and gate recording."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from lstmkit.kernels import dispatch
from lstmkit.kernels.cpu import recurrence as cpu_recurrence
from lstmkit.nn import _checks
from lstmkit.nn._compile import allow_dynamo_rnn
from lstmkit.nn._record import GateRecorder, GateTrace
from lstmkit.nn._variants import VariantModule
from lstmkit.nn.config import LSTMConfig
from lstmkit.reference.lstm import RecurrenceInputs, recorded_gates
from lstmkit.reference.options import VariantOptions
from lstmkit.reference.variants import variational_dropout_mask, zoneout_mask

allow_dynamo_rnn()  # torch.compile refuses any nn.LSTM subclass otherwise (see nn/_compile.py)


class LSTM(VariantModule, nn.LSTM):
    r"""A multi-layer LSTM, a drop-in for :class:`torch.nn.LSTM`, with variants.

    For each element of the input sequence each layer computes

    .. math::
        \begin{array}{ll}
        i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    and with ``proj_size > 0`` :math:`h_t = W_{hr}(o_t \odot \tanh(c_t))`.

    Constructor arguments, parameter names and shapes, the forward contract (batched or
    unbatched tensors, ``batch_first``, optional ``(h_0, c_0)``, PackedSequence in and out) and,
    with default options, the numbers are those of :class:`torch.nn.LSTM`, so state dicts load
    both ways. The vanilla configuration runs on PyTorch's own fused kernel.

    Variant options (keyword only), each an option of the same layer:

    - ``layer_norm``: :math:`\text{gates} = LN(W_{ih}x)\gamma_{ih} + b_{ih} +
      LN(W_{hh}h)\gamma_{hh} + b_{hh}` and :math:`h_t = o_t \odot \tanh(LN(c_t)\gamma_c +
      \beta_c)` (Ba et al. 2016, as haste's LayerNormLSTM). Parameters ``ln_weight_ih_l{k}``,
      ``ln_weight_hh_l{k}``, ``ln_weight_c_l{k}``, ``ln_bias_c_l{k}``.
    - ``peephole``: :math:`i_t, f_t` also see :math:`w_{ci,cf} \odot c_{t-1}` and :math:`o_t`
      sees :math:`w_{co} \odot c_t` (Gers & Schmidhuber 2000). Parameters ``weight_ci_l{k}``,
      ``weight_cf_l{k}``, ``weight_co_l{k}``.
    - ``coupled``: CIFG, :math:`f_t = 1 - i_t` (Greff et al. 2017).
    - ``forget_gate=False``: :math:`f_t = 1`, the 1997 LSTM.
      For both, the forget-gate rows of the weights stay (unused) so that shapes match torch.
    - ``zoneout_h``, ``zoneout_c``: :math:`h_t = d_t \odot h_{t-1} + (1 - d_t) \odot \tilde
      h_t` with :math:`d_t \sim \text{Bernoulli}(z)` per unit and step in training and
      :math:`d_t = z` in eval (Krueger et al. 2017).
    - ``recurrent_dropout``: one dropout mask per sequence on :math:`h_{t-1}` before
      :math:`W_{hh}` in training (Gal & Ghahramani 2016).
    - ``weight_drop``: DropConnect on the recurrent weights (Wan et al. 2013; AWD-LSTM, Merity
      et al. 2018): in training, each forward call draws one mask per layer and direction and
      uses :math:`W'_{hh} = \frac{M}{1 - p} \odot W_{hh}`, :math:`M_{jk} \sim
      \text{Bernoulli}(1 - p)`, at every time step of the call; in eval :math:`W_{hh}` as is.
      The recurrence itself stays vanilla, so the vanilla LSTM keeps PyTorch's fused kernel.
    - ``forget_bias``: initial value of the forget-gate bias (Jozefowicz et al. 2015 use 1).
    - ``backend``: ``"auto"`` (default), ``"torch"``, ``"cpu"``, ``"python"``, ``"reference"``;
      see :mod:`lstmkit.kernels.dispatch`.

    ``forward(input, hx=None, *, return_gates=False)``: with ``return_gates=True`` a third value
    is returned, ``{(layer, direction): GateTrace}`` with ``i, f, g, o, c, h`` over time; see also
    :func:`lstmkit.record_gates`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        layer_norm: bool = False,
        peephole: bool = False,
        coupled: bool = False,
        forget_gate: bool = True,
        zoneout_h: float = 0.0,
        zoneout_c: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        forget_bias: float = 0.0,
        layer_norm_eps: float = 1e-5,
        backend: str = "auto",
    ) -> None:
        _checks.check_int("input_size", input_size, 1)
        _checks.check_int("hidden_size", hidden_size, 1)
        _checks.check_int("num_layers", num_layers, 1)
        _checks.check_factory(device, dtype)
        _checks.check_rate("weight_drop", weight_drop)
        _checks.check_int("proj_size", proj_size, 0)
        for name, v in (
            ("bias", bias),
            ("batch_first", batch_first),
            ("bidirectional", bidirectional),
        ):
            _checks.check_bool(name, v)
        opts = self._check_variants(
            backend,
            cell=False,
            layer_norm=layer_norm,
            peephole=peephole,
            coupled=coupled,
            forget_gate=forget_gate,
            zoneout_h=zoneout_h,
            zoneout_c=zoneout_c,
            recurrent_dropout=recurrent_dropout,
            weight_drop=weight_drop,
            forget_bias=forget_bias,
            layer_norm_eps=layer_norm_eps,
        )
        _checks.check_rate("dropout", dropout)
        if dropout > 0 and num_layers == 1:
            raise ValueError(
                f"dropout={dropout} acts between layers, so it needs num_layers > 1 "
                "(got num_layers=1); for dropout inside the recurrence use recurrent_dropout "
                "or zoneout_h/zoneout_c"
            )
        if proj_size >= hidden_size:
            raise ValueError(
                f"proj_size must be smaller than hidden_size, got proj_size={proj_size} "
                f">= hidden_size={hidden_size}"
            )
        self._variant_ready = False
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device,
            dtype,
        )
        self._init_variants(opts, backend)
        self._gate_recorder: tuple[GateRecorder, str] | None = None
        self._plans: dict[tuple, dispatch.Plan] = {}
        self._register_variant_parameters(self._suffixes(), {"device": device, "dtype": dtype})
        self._variant_ready = True
        self._reset_variant_parameters(self._suffixes())

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg: LSTMConfig, device=None, dtype=None) -> LSTM:
        kw = cfg.to_dict()
        return cls(**kw, device=device, dtype=dtype)

    @property
    def config(self) -> LSTMConfig:
        return LSTMConfig(
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            bias=self.bias,
            batch_first=self.batch_first,
            dropout=float(self.dropout),
            bidirectional=self.bidirectional,
            proj_size=self.proj_size,
            **{name: getattr(self.variant_options, name) for name in VariantOptions.fields()},
            backend=self.backend,
        )

    def _suffixes(self) -> list[str]:
        D = 2 if self.bidirectional else 1
        return [
            f"_l{k}" + ("_reverse" if d else "") for k in range(self.num_layers) for d in range(D)
        ]

    def reset_parameters(self) -> None:
        # torch's init first, untouched, so that with default options the same seed gives the
        # same weights as torch.nn.LSTM.
        super().reset_parameters()
        if getattr(self, "_variant_ready", False):
            self._reset_variant_parameters(self._suffixes())

    def extra_repr(self) -> str:
        s = super().extra_repr()
        cfg, default = self.config, LSTMConfig(self.input_size, self.hidden_size)
        for name in (
            "layer_norm",
            "peephole",
            "coupled",
            "forget_gate",
            "zoneout_h",
            "zoneout_c",
            "recurrent_dropout",
            "weight_drop",
            "forget_bias",
            "backend",
        ):
            if getattr(cfg, name) != getattr(default, name):
                s += f", {name}={getattr(cfg, name)!r}"
        return s

    def __getstate__(self):
        # The cached plans hold functions that do not pickle (torch.save(model), deepcopy).
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        return {**state, "_plans": {}, "_step": None}

    # -- the streaming step -------------------------------------------------------------------

    def _make_step(self):
        """The C++ ``StepPlan`` of one-step calls (see ``forward``), cached in ``_step``, or
        False where it cannot serve this module: another backend than ``auto``/``cpu``, no
        kernel, parameters off the CPU or not float32/float64, or a parametrization (whose
        weights are recomputed at every access). Dropped whenever a parameter is set,
        deleted or moved (``__setattr__``, ``__delattr__``, ``_apply``); in-place updates need
        nothing, the plan holding the parameters themselves."""
        step = False
        w = self.weight_hh_l0
        if (
            self.backend in ("auto", "cpu")
            and w.device.type == "cpu"
            and w.dtype in (torch.float32, torch.float64)
            and not torch.nn.utils.parametrize.is_parametrized(self)
            and cpu_recurrence.is_available()
        ):
            opts = self.variant_options
            names = (
                "weight_ih", "bias_ih", "ln_weight_ih", "weight_hh", "bias_hh", "weight_hr",
                "weight_ci", "weight_cf", "weight_co", "ln_weight_hh", "ln_weight_c", "ln_bias_c",
            )  # fmt: skip
            have = {n for n, _ in self.named_parameters(recurse=False)}
            layers = [
                # the parameters themselves, not detached aliases: `.data =` swaps a
                # parameter's storage under the same tensor, which the plan then sees (it runs
                # only with grad mode off, so nothing is recorded)
                [getattr(self, n + sfx) if n + sfx in have else None for n in names]
                for sfx in self._suffixes()
            ]
            if not opts.peephole:  # unused parameters are not read
                for ws in layers:
                    ws[6] = ws[7] = ws[8] = None
            step = cpu_recurrence.step_plan(
                layers,
                self.num_layers,
                2 if self.bidirectional else 1,
                self.input_size,
                self.hidden_size,
                self.proj_size,
                self.batch_first,
                opts.coupled,
                opts.forget_gate,
                float(opts.layer_norm_eps),
                float(opts.zoneout_h),
                float(opts.zoneout_c),
            )
        self.__dict__["_step"] = step
        return step

    def __setattr__(self, name, value):
        self.__dict__.pop("_step", None)
        super().__setattr__(name, value)

    def __delattr__(self, name):
        self.__dict__.pop("_step", None)
        super().__delattr__(name)

    def _apply(self, fn, *args, **kwargs):
        self.__dict__.pop("_step", None)
        return super()._apply(fn, *args, **kwargs)

    def __setstate__(self, state):
        super().__setstate__(state)
        if "_plans" not in self.__dict__:  # pickled before the cache existed
            self._plans = {}

    # -- forward ------------------------------------------------------------------------------

    def forward(self, input, hx=None, *, return_gates: bool = False):  # noqa: A002 (torch's name)
        # A streaming call (one time step, eval, nothing to differentiate) goes straight to the
        # C++ step of the whole stack: the general path below costs several times a step at
        # B = 1 (bench/stream_calls.py). The plan answers None for anything it does not take
        # (T > 1, another dtype, a subclass, a bad shape, autocast), which then runs below.
        if (
            not self.training
            and not return_gates
            and self._gate_recorder is None
            and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
        ):
            step = self.__dict__.get("_step")
            if step is None:
                step = self._make_step()
            if step is not False:
                result = step(input, hx)
                if result is not None:
                    return result
        data = input.data if isinstance(input, PackedSequence) else input
        if isinstance(data, Tensor):
            # Before asking autocast, which raises an internal error for the meta device.
            _checks.check_device("input.data" if data is not input else "input", data)
        if isinstance(data, Tensor) and torch.is_autocast_enabled(data.device.type):
            w = self.weight_ih_l0
            recording = self._gate_recorder is not None or return_gates
            if not self._plan(w, isinstance(input, PackedSequence), recording).uses_torch:
                # Our recurrences keep one dtype throughout: under autocast they run in the
                # weights' dtype, while the layers around them keep autocast's precision.
                # (torch's own path casts for cuDNN itself.)
                input = _cast_input(input, w.dtype)
                hx = None if hx is None else tuple(h.to(w.dtype) for h in hx)
                with torch.autocast(data.device.type, enabled=False):
                    return self._forward(input, hx, return_gates)
        return self._forward(input, hx, return_gates)

    def _forward(self, input, hx, return_gates: bool):  # noqa: A002
        recorder: GateRecorder | None = None
        module_name = ""
        if self._gate_recorder is not None:
            recorder, module_name = self._gate_recorder
        elif return_gates:
            recorder = GateRecorder()
        x, batch_sizes, sorted_idx, unsorted_idx, is_batched = self._check_input(input)
        hx = self._check_hx(hx, x, batch_sizes, is_batched)
        w_hh = self._dropped_weight_hh()
        plan = self._plan(x, batch_sizes is not None, recorder is not None)
        if plan.uses_torch and batch_sizes is None and self._one_step(x) and not self.proj_size:
            result = self._torch_one_step(x, hx, w_hh, is_batched)
        elif plan.uses_torch:
            result = self._torch_forward(input, hx, w_hh)
        else:
            result = self._forward_recurrence(
                plan,
                x,
                hx,
                batch_sizes,
                sorted_idx,
                unsorted_idx,
                is_batched,
                recorder,
                module_name,
                w_hh,
            )
        if return_gates:
            return result[0], result[1], recorder.as_dict()
        return result

    def _dropped_weight_hh(self) -> dict[str, Tensor]:
        """``{"weight_hh_l0": W'_hh, ...}``: this call's DropConnect weights (empty in eval)."""
        if not (self.weight_drop and self.training):
            return {}
        return {
            f"weight_hh{sfx}": F.dropout(getattr(self, f"weight_hh{sfx}"), self.weight_drop, True)
            for sfx in self._suffixes()
        }

    def _one_step(self, x: Tensor) -> bool:
        """Whether ``x`` (checked, not packed) is one time step, outside tracing."""
        time_dim = 1 if (self.batch_first and x.dim() == 3) else 0
        return x.shape[time_dim] == 1 and not dispatch.tracing(x)

    def _torch_one_step(self, x: Tensor, hx, w_hh: dict[str, Tensor], is_batched: bool):
        """One time step of torch's LSTM on torch's fused cell, ``torch.lstm_cell`` per layer and
        direction: the same math (both directions see the one step), while ``torch.lstm`` at
        ``T = 1`` costs about ten times more per call on the CPU (its oneDNN setup), which a
        streaming caller pays at every step (bench/stream_calls.py)."""
        D = 2 if self.bidirectional else 1
        H = self.hidden_size
        xt = x.reshape(-1, self.input_size)  # (B, I): T = 1 in either layout; unbatched B = 1
        if hx is None:
            h0 = c0 = xt.new_zeros(self.num_layers * D, xt.shape[0], H)
        else:
            h0, c0 = hx if is_batched else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        layer_in = xt
        hs, cs = [], []
        for k in range(self.num_layers):
            outs = []
            for d in range(D):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                idx = k * D + d
                b_ih, b_hh = (
                    (getattr(self, "bias_ih" + sfx), getattr(self, "bias_hh" + sfx))
                    if self.bias
                    else (None, None)
                )
                w = w_hh["weight_hh" + sfx] if w_hh else getattr(self, "weight_hh" + sfx)
                h, c = torch.lstm_cell(
                    layer_in, (h0[idx], c0[idx]), getattr(self, "weight_ih" + sfx), w, b_ih, b_hh
                )
                outs.append(h)
                hs.append(h)
                cs.append(c)
            layer_in = outs[0] if D == 1 else torch.cat(outs, 1)
            if self.dropout and self.training and k < self.num_layers - 1:
                layer_in = F.dropout(layer_in, self.dropout, True)
        h_n, c_n = torch.stack(hs), torch.stack(cs)
        if not is_batched:  # (1, D*H) is already the unbatched (T, D*H) output
            return layer_in, (h_n.squeeze(1), c_n.squeeze(1))
        return layer_in.unsqueeze(1 if self.batch_first else 0), (h_n, c_n)

    def _torch_forward(self, input, hx, w_hh: dict[str, Tensor]):  # noqa: A002
        if not w_hh:
            return super().forward(input, hx)
        # torch's kernel reads self._flat_weights: lend it the masked W_hh for this call only
        # (the parameters stay untouched, so gradients reach them through the mask).
        flat = self._flat_weights
        names = self._flat_weights_names
        self._flat_weights = [w_hh.get(n, w) for n, w in zip(names, flat, strict=True)]
        try:
            return super().forward(input, hx)
        finally:
            self._flat_weights = flat

    def _plan(self, x: Tensor, packed: bool, recording: bool) -> dispatch.Plan:
        """The dispatch's :class:`~lstmkit.kernels.dispatch.Plan` for this call, cached per
        (backend, device, dtype, packed, recording): a streaming caller asks for the same one at
        every step, and the options cannot change after construction. Not cached while
        tracing (the plan differs there, and a traced cache write is a side effect)."""
        traced = dispatch.tracing(x)
        key = (self.backend, x.device, x.dtype, packed, recording)
        if not traced:
            cached = self._plans.get(key)
            if cached is not None:
                return cached
        plan = dispatch.plan(
            self.variant_options,
            self.backend,
            x.device,
            x.dtype,
            proj=self.proj_size > 0,
            packed=packed,
            recording=recording,
            traced=traced,
        )
        if not traced:
            self._plans[key] = plan
        return plan

    def _check_input(self, input):
        w = self.weight_ih_l0
        if isinstance(input, PackedSequence):
            data = _checks.check_tensor("input.data", input.data, w)
            if data.dim() != 2 or data.shape[1] != self.input_size:
                raise ValueError(
                    f"packed input.data must have shape (N, input_size={self.input_size}), "
                    f"got {tuple(data.shape)}"
                )
            # torch's own unpacking trusts these: a bad packing corrupts the heap.
            bs = _checks.check_batch_sizes(input.batch_sizes, data.shape[0])
            _checks.check_sorting(
                input.sorted_indices, input.unsorted_indices, int(bs[0]), data.device
            )
            return data, bs, input.sorted_indices, input.unsorted_indices, True
        x = _checks.check_tensor("input", input, w)
        if x.dim() not in (2, 3):
            raise ValueError(
                "input must be 3-D (T, B, I) / (B, T, I) with batch_first, "
                f"or 2-D (T, I) unbatched, got {x.dim()}-D with shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"input must have input_size={self.input_size} features in its last dimension, "
                f"got shape {tuple(x.shape)}"
            )
        time_dim = 1 if (self.batch_first and x.dim() == 3) else 0
        if x.shape[time_dim] == 0:
            raise ValueError(
                f"input has 0 time steps (dimension {time_dim} of shape {tuple(x.shape)}); "
                "an LSTM needs at least one"
            )
        return x, None, None, None, x.dim() == 3

    def _check_hx(self, hx, x, batch_sizes, is_batched):
        if hx is None:
            return None
        if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError(f"hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
        w = self.weight_ih_l0
        h0 = _checks.check_tensor("hx[0] (h_0)", hx[0], w)
        c0 = _checks.check_tensor("hx[1] (c_0)", hx[1], w)
        LD = self.num_layers * (2 if self.bidirectional else 1)
        P = self.proj_size or self.hidden_size
        if batch_sizes is not None:
            B = int(batch_sizes[0])
        elif is_batched:
            B = x.shape[0] if self.batch_first else x.shape[1]
        else:
            B = None
        if B is None:
            _checks.check_shape("hx[0] (h_0) for unbatched input", h0, (LD, P))
            _checks.check_shape("hx[1] (c_0) for unbatched input", c0, (LD, self.hidden_size))
        else:
            _checks.check_shape("hx[0] (h_0)", h0, (LD, B, P))
            _checks.check_shape("hx[1] (c_0)", c0, (LD, B, self.hidden_size))
        return (h0, c0)

    def _forward_recurrence(
        self,
        plan: dispatch.Plan,
        x,
        hx,
        batch_sizes,
        sorted_idx,
        unsorted_idx,
        is_batched,
        recorder,
        module_name,
        w_hh: dict[str, Tensor] | None = None,
    ):
        D = 2 if self.bidirectional else 1
        H = self.hidden_size
        P = self.proj_size or H
        packed = batch_sizes is not None
        if packed:
            x_tb, _ = torch.nn.utils.rnn.pad_packed_sequence(PackedSequence(x, batch_sizes))
            batch_sizes = batch_sizes.cpu()
        else:
            if not is_batched:
                x = x.unsqueeze(0 if self.batch_first else 1)
            x_tb = x.transpose(0, 1) if self.batch_first else x
        T, B = x_tb.shape[0], x_tb.shape[1]
        if hx is None:
            zeros = x_tb.new_zeros
            h0, c0 = zeros(self.num_layers * D, B, P), zeros(self.num_layers * D, B, H)
        else:
            h0, c0 = hx
            if not is_batched:
                h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
            if sorted_idx is not None:
                h0, c0 = h0.index_select(1, sorted_idx), c0.index_select(1, sorted_idx)
        run = plan.recurrence
        opts = self.variant_options.cell_options
        layer_in = x_tb
        h_n, c_n = [], []
        for k in range(self.num_layers):
            outs = []
            for d in range(D):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                idx = k * D + d
                inputs = self._layer_inputs(layer_in, sfx, h0[idx], c0[idx], T, B, P, w_hh)
                reverse = d == 1
                out, h, c = run(inputs, batch_sizes, reverse, opts)
                if recorder is not None:
                    saved = plan.trace(inputs, batch_sizes, reverse, opts)
                    trace = self._trace(
                        saved,
                        inputs,
                        out,
                        module_name,
                        k,
                        d,
                        batch_sizes,
                        unsorted_idx,
                        is_batched,
                        B,
                    )
                    recorder.add(trace)
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_in = outs[0] if D == 1 else torch.cat(outs, -1)
            if self.dropout and self.training and k < self.num_layers - 1:
                layer_in = F.dropout(layer_in, self.dropout, True)
        out = layer_in
        h_n, c_n = torch.stack(h_n, 0), torch.stack(c_n, 0)
        if packed:
            lengths = (torch.arange(B).unsqueeze(0) < batch_sizes.unsqueeze(1)).sum(0)
            data = torch.nn.utils.rnn.pack_padded_sequence(out, lengths).data
            output = PackedSequence(data, batch_sizes, sorted_idx, unsorted_idx)
            if unsorted_idx is not None:
                h_n, c_n = h_n.index_select(1, unsorted_idx), c_n.index_select(1, unsorted_idx)
            return output, (h_n, c_n)
        if self.batch_first:
            out = out.transpose(0, 1)
        if not is_batched:
            out = out.squeeze(0 if self.batch_first else 1)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return out, (h_n, c_n)

    def _layer_inputs(self, layer_in, sfx, h0, c0, T, B, P, w_hh=None) -> RecurrenceInputs:
        """Input projection for all steps at once, then the recurrence's inputs."""
        H = self.hidden_size
        opts = self.variant_options

        def p(name: str) -> Tensor:
            return getattr(self, name + sfx)

        # Only the parameters this variant has are looked up: getattr with a default on a
        # missing one raises and catches AttributeError inside nn.Module, ~1 us each per call.
        ci, cf, co = (
            (p("weight_ci"), p("weight_cf"), p("weight_co")) if opts.peephole else (None,) * 3
        )
        ln_hh, ln_c, ln_b = (
            (p("ln_weight_hh"), p("ln_weight_c"), p("ln_bias_c"))
            if opts.layer_norm
            else (None,) * 3
        )
        xg = self._input_projection(layer_in, sfx)
        like = xg
        zh = (
            zoneout_mask((T, B, P), self.zoneout_h, self.training, like) if self.zoneout_h else None
        )
        zc = (
            zoneout_mask((T, B, H), self.zoneout_c, self.training, like) if self.zoneout_c else None
        )
        dm = None
        if self.recurrent_dropout and self.training:
            dm = variational_dropout_mask((B, P), self.recurrent_dropout, like)
        return RecurrenceInputs(
            xg=xg.contiguous(),
            h0=h0.contiguous(),
            c0=c0.contiguous(),
            weight_hh=w_hh["weight_hh" + sfx] if w_hh else p("weight_hh"),
            bias_hh=p("bias_hh") if self.bias else None,
            weight_hr=p("weight_hr") if self.proj_size else None,
            weight_ci=ci,
            weight_cf=cf,
            weight_co=co,
            ln_weight_hh=ln_hh,
            ln_weight_c=ln_c,
            ln_bias_c=ln_b,
            zoneout_h=zh,
            zoneout_c=zc,
            dropout_h=dm,
        )

    def _trace(self, saved, inputs, h, module_name, k, d, batch_sizes, unsorted_idx, is_batched, B):
        parts = recorded_gates(inputs, saved, h)
        if batch_sizes is not None:
            active = _active_mask(batch_sizes, B, like=parts["c"])
            parts = {key: v * active for key, v in parts.items()}
            if unsorted_idx is not None:
                parts = {key: v.index_select(1, unsorted_idx) for key, v in parts.items()}
        else:
            if self.batch_first:
                parts = {key: v.transpose(0, 1) for key, v in parts.items()}
            if not is_batched:
                parts = {key: v.squeeze(0 if self.batch_first else 1) for key, v in parts.items()}
        parts = {key: v.detach().clone() for key, v in parts.items()}
        return GateTrace(module=module_name, layer=k, direction=d, **parts)


def _active_mask(batch_sizes: Tensor, B: int, like: Tensor) -> Tensor:
    """(T, B, 1) with 1 where row b is active at step t."""
    rows = torch.arange(B).unsqueeze(0) < batch_sizes.unsqueeze(1)
    return rows.unsqueeze(-1).to(dtype=like.dtype, device=like.device)


def _cast_input(input, dtype: torch.dtype):
    if isinstance(input, PackedSequence):
        return input._replace(data=input.data.to(dtype))
    return input.to(dtype)
