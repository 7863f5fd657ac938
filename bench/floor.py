"""Batch-1 LSTM inference against the machine's own floor (issue 19): `make bench-floor`.

``python bench/floor.py [--H 128,256,512,1024] [--threads 1,2] [--repeats 7] [--out PATH]``

1. The floor, measured on this machine by a small C++ microbenchmark compiled at bench time
   (``torch.utils.cpp_extension.load_inline``; about a minute the first time, then cached):
   the read bandwidth of a buffer resident in L2, in L3 and in main memory (a streaming read of
   half the cache at each level, its sizes read from /sys/devices/system/cpu), one thread and
   two, and the peak multiply-add rate of the vector units: float32 FMA (AVX-512 or AVX2),
   int8 dot products (VNNI) and bf16 dot products where the CPU has them.
2. Each candidate's time per step at batch 1, forward, one layer, as a multiple of its floor::

       floor = max(bytes of W_hh (+ W_hr) / bandwidth of the level they fit in,
                   multiply-adds per step / peak rate)

   with 4H(I + P) + PH multiply-adds per step (the input projection's share included). The
   weights count as living in L2 when each thread's share fits one core's L2, else in L3 when
   they fit it, else in main memory. Candidates: lstmkit's fused kernel in float32
   (``backend="cpu"``; vanilla, layer_norm, projection P=H/4, peephole, cifg), torch.nn.LSTM,
   torch's dynamic int8 LSTM (``torch.ao.quantization.quantize_dynamic``), ONNX Runtime's
   LSTM (a one-node graph built with onnx.helper, layout 0) and lstmkit's quantized models
   (``lstmkit.quantize``): int8 with int8 activations (``activations="int8"``, the default:
   integer dot products, VNNI), int8 weight-only (``activations="float"``: the int8 weights
   widened to float) and bf16. The int8 candidates are held to the int8 floor (bytes / 4, the
   VNNI peak), bf16 ones to the bf16 floor (bytes / 2, the bf16 dot-product peak).
3. Two threads at every H: the crossover where splitting the hidden units over two cores beats
   one thread (lstmkit with its split forced at every H, and with its default threshold).
4. Streaming: a call per step (T=1, state passed back), as a server or a device loop makes
   them, against a step inside one long call; the target is at most 1.5x.

Every candidate of a shape runs in the same process, warmed up, then in shuffled interleaved
rounds (lstmkit.bench's helpers); times are medians with their interquartile range (IQR), and
ratios to a baseline are the medians of the per-round ratios. A verdict needs the ratio's IQR
on one side of the target, else it says "noisy".
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import lstmkit
from lstmkit.bench import (
    MAX_REL_IQR,
    Spread,
    interleaved_times,
    judge,
    machine_info,
    warm_up,
    write_json_atomic,
)
from lstmkit.kernels.cpu import recurrence

I = 40  # noqa: E741 (input features: a keyword spotter's 40 filterbank channels)
# Steps per call: T=1000 where a call takes at most ~0.3 s, fewer at large H (per-step time is
# set by the weights' reads, so it does not depend on T once the call is long).
STEPS = {128: 1000, 256: 1000, 512: 400, 1024: 150}
FLOAT_VARIANTS = {
    "vanilla": {},
    "layer_norm": {"layer_norm": True},
    "projection": {"proj_size": -4},  # P = H // 4
    "peephole": {"peephole": True},
    "cifg": {"coupled": True},
}
# Targets of issue 19 (float32, one thread).
FLOOR_TARGET = 2.0  # time per step / floor
VS_TORCH_TARGET = 0.5  # lstmkit vanilla / torch.nn.LSTM at H <= 256
STREAM_TARGET = 1.5  # T=1 call per step / a step in one long call
INT8_VS_F32_TARGET = 0.5  # lstmkit int8 / lstmkit float32 at H >= 512

# --------------------------------------------------------------------------------------------
# The microbenchmark of the floor

_MICRO_SRC = r"""
#include <torch/extension.h>
#include <immintrin.h>
#include <omp.h>
#include <chrono>

static volatile float g_sink;

__attribute__((target("avx512f"))) static float read512(const float* p, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

__attribute__((target("avx2"))) static float read256(const float* p, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// GB/s of `threads` threads each reading its own `per_thread` floats `reps` times (the slowest
// thread's time; one untimed pass first brings each share into the cache it fits).
double read_bw(int64_t per_thread, int64_t reps, int64_t threads, bool wide) {
  double t_max = 0;
#pragma omp parallel num_threads(threads) reduction(max : t_max)
  {
    float* p = static_cast<float*>(std::aligned_alloc(64, per_thread * 4));
    for (int64_t i = 0; i < per_thread; ++i) p[i] = 1e-3f * float(i % 97);
    float s = wide ? read512(p, per_thread) : read256(p, per_thread);
#pragma omp barrier
    const double t0 = now();
    for (int64_t r = 0; r < reps; ++r) {
      s += wide ? read512(p, per_thread) : read256(p, per_thread);
      asm volatile("" ::: "memory");
    }
    t_max = now() - t0;
    g_sink = s;
    std::free(p);
  }
  return double(per_thread) * 4 * reps * threads / t_max / 1e9;
}

// Multiply-adds per second (in 1e9) of 16 independent FMA chains per thread.
__attribute__((target("avx512f"))) static float fma512(int64_t iters) {
  __m512 a[16];
  for (int r = 0; r < 16; ++r) a[r] = _mm512_set1_ps(float(r));
  const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) a[r] = _mm512_fmadd_ps(a[r], b, c);
  __m512 s = a[0];
  for (int r = 1; r < 16; ++r) s = _mm512_add_ps(s, a[r]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma256(int64_t iters) {
  __m256 a[16];
  for (int r = 0; r < 16; ++r) a[r] = _mm256_set1_ps(float(r));
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) a[r] = _mm256_fmadd_ps(a[r], b, c);
  __m256 s = a[0];
  for (int r = 1; r < 16; ++r) s = _mm256_add_ps(s, a[r]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[7];
}

// u8 x s8 dot products, 4 per 32-bit lane.
__attribute__((target("avx512f,avx512vnni"))) static int vnni512(int64_t iters) {
  __m512i a[16];
  for (int r = 0; r < 16; ++r) a[r] = _mm512_set1_epi32(r);
  const __m512i b = _mm512_set1_epi8(3), c = _mm512_set1_epi8(-2);
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) a[r] = _mm512_dpbusd_epi32(a[r], b, c);
  __m512i s = a[0];
  for (int r = 1; r < 16; ++r) s = _mm512_add_epi32(s, a[r]);
  return _mm512_reduce_add_epi32(s);
}

__attribute__((target("avx2,avxvnni"))) static int vnni256(int64_t iters) {
  __m256i a[16];
  for (int r = 0; r < 16; ++r) a[r] = _mm256_set1_epi32(r);
  const __m256i b = _mm256_set1_epi8(3), c = _mm256_set1_epi8(-2);
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) a[r] = _mm256_dpbusd_avx_epi32(a[r], b, c);
  __m256i s = a[0];
  for (int r = 1; r < 16; ++r) s = _mm256_add_epi32(s, a[r]);
  return _mm256_extract_epi32(s, 0);
}

// bf16 pairs into float32 lanes, 2 per lane.
__attribute__((target("avx512f,avx512bf16"))) static float bf16_512(int64_t iters) {
  __m512 a[16];
  for (int r = 0; r < 16; ++r) a[r] = _mm512_set1_ps(float(r));
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3f80), c = (__m512bh)_mm512_set1_epi16(0x3a83);
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) a[r] = _mm512_dpbf16_ps(a[r], b, c);
  __m512 s = a[0];
  for (int r = 1; r < 16; ++r) s = _mm512_add_ps(s, a[r]);
  return _mm512_reduce_add_ps(s);
}

// Peak multiply-adds per second (1e9) of `kind` on `threads` threads, or 0 without the
// instructions: fma (float32), vnni (int8), bf16.
double peak(const std::string& kind, int64_t iters, int64_t threads) {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  int64_t macs_per_iter = 0;  // per thread, per iteration of 16 instructions
  int mode = -1;
  if (kind == "fma") {
    mode = avx512 ? 0 : __builtin_cpu_supports("fma") ? 1 : -1;
    macs_per_iter = 16 * (avx512 ? 16 : 8);
  } else if (kind == "vnni") {
    mode = avx512 && __builtin_cpu_supports("avx512vnni") ? 2
           : __builtin_cpu_supports("avxvnni")             ? 3
                                                          : -1;
    macs_per_iter = 16 * (mode == 2 ? 64 : 32);
  } else if (kind == "bf16") {
    mode = avx512 && __builtin_cpu_supports("avx512bf16") ? 4 : -1;
    macs_per_iter = 16 * 32;
  }
  if (mode < 0) return 0.0;
  double t_max = 0;
#pragma omp parallel num_threads(threads) reduction(max : t_max)
  {
    const double t0 = now();
    float s = 0;
    switch (mode) {
      case 0: s = fma512(iters); break;
      case 1: s = fma256(iters); break;
      case 2: s = float(vnni512(iters)); break;
      case 3: s = float(vnni256(iters)); break;
      case 4: s = bf16_512(iters); break;
    }
    t_max = now() - t0;
    g_sink = s;
  }
  return double(macs_per_iter) * iters * threads / t_max / 1e9;
}

bool has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}
"""


def _micro():
    from torch.utils.cpp_extension import load_inline

    print(
        "floor: building the bandwidth/peak microbenchmark (about a minute the first time)",
        file=sys.stderr,
    )
    return load_inline(
        name="lstmkit_floor_micro",
        cpp_sources=[_MICRO_SRC],
        functions=["read_bw", "peak", "has_avx512"],
        extra_cflags=["-O3", "-fopenmp"],
        extra_ldflags=["-fopenmp"],
        verbose=False,
    )


def cache_sizes() -> dict[str, int]:
    """Bytes of L1d, L2 and L3 of cpu0 (per core for L1/L2; L3 as the OS reports it)."""
    sizes: dict[str, int] = {}
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    for d in sorted(root.glob("index*")):
        try:
            level = (d / "level").read_text().strip()
            kind = (d / "type").read_text().strip()
            text = (d / "size").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1], 1)
        sizes[f"L{level}"] = int(text.rstrip("KMG")) * mult
    return sizes


def _best_of(fn, repeats: int) -> float:
    """The highest of ``repeats`` rates: what the hardware can do (load only ever slows a
    measurement down, and on a shared machine most of them are)."""
    return max(fn() for _ in range(repeats))


@dataclass
class Floor:
    caches: dict[str, int]
    read_gbs: dict[int, dict[str, float]]  # threads -> level -> GB/s
    level_bytes: dict[str, int]  # the buffer size read at each level (per thread)
    peak_gmacs: dict[int, dict[str, float]]  # threads -> fma/vnni/bf16 -> 1e9 MAC/s
    vector_width: str

    def level_of(self, nbytes: float, threads: int) -> str:
        # A floor must be a lower bound: weights that can fit a level (each thread's share
        # within one core's L2) are counted at that level's speed.
        share = nbytes / threads
        if share <= self.caches.get("L2", 0):
            return "L2"
        if nbytes <= self.caches.get("L3", 0):
            return "L3"
        return "DRAM"

    def per_step_us(self, nbytes: float, macs: float, threads: int, kind: str) -> dict:
        level = self.level_of(nbytes, threads)
        bw = self.read_gbs[threads][level]
        # the faster of the kind's own instructions and float32 FMA: a kernel may widen bf16
        # weights to float32 and use FMA (on this kind of Xeon the bf16 dot is not faster)
        peaks = self.peak_gmacs[threads]
        peak = max(peaks.get(kind, 0.0), peaks["fma"])
        t_mem = nbytes / (bw * 1e9) * 1e6
        t_mac = macs / (peak * 1e9) * 1e6
        return {
            "us": max(t_mem, t_mac),
            "bound": "memory" if t_mem >= t_mac else "compute",
            "level": level,
            "bytes": nbytes,
            "macs": macs,
        }


def measure_floor(threads_list: list[int], repeats: int) -> Floor:
    micro = _micro()
    caches = cache_sizes()
    l2, l3 = caches.get("L2", 1 << 20), caches.get("L3", 32 << 20)
    level_bytes = {
        "L1": caches.get("L1", 32 << 10) // 2,
        "L2": l2 // 2,
        # weights that outgrow L2 (H=512: 4 MiB, H=1024: 16 MiB) stream from here
        "L3": max(min(l3 // 2, 8 << 20), 2 * l2),
        "DRAM": max(4 * l3, 256 << 20),
    }
    wide = bool(micro.has_avx512())
    read_gbs: dict[int, dict[str, float]] = {}
    peaks: dict[int, dict[str, float]] = {}
    for th in threads_list:
        read_gbs[th] = {}
        for level, nbytes in level_bytes.items():
            n = nbytes // 4 // 64 * 64
            reps = max(2, int(5e7 // nbytes))  # about 50 MB per measurement: a few ms
            read_gbs[th][level] = _best_of(
                lambda n=n, reps=reps, th=th: micro.read_bw(n, reps, th, wide), repeats
            )
        peaks[th] = {
            k: _best_of(lambda k=k, th=th: micro.peak(k, 200_000, th), repeats)
            for k in ("fma", "vnni", "bf16")
        }
        peaks[th] = {k: v for k, v in peaks[th].items() if v > 0}
    return Floor(caches, read_gbs, level_bytes, peaks, "avx512" if wide else "avx2")


# --------------------------------------------------------------------------------------------
# Candidates


def _torch_wrap(lstm: torch.nn.Module) -> torch.nn.Module:
    """quantize_dynamic swaps the children of a module, not the module itself."""
    return torch.nn.Sequential(lstm)


def _onnx_session(H: int, T: int, threads: int):
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    k = H**-0.5

    def u(*shape):
        return numpy_helper.from_array(rng.uniform(-k, k, shape).astype(np.float32))

    W, R, Bias = u(1, 4 * H, I), u(1, 4 * H, H), u(1, 8 * H)
    W.name, R.name, Bias.name = "W", "R", "B"
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h", "Y_c"], hidden_size=H)
    graph = helper.make_graph(
        [node],
        "lstm",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, 1, I])],
        [
            helper.make_tensor_value_info("Y", TensorProto.FLOAT, [T, 1, 1, H]),
            helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, 1, H]),
            helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, [1, 1, H]),
        ],
        initializer=[W, R, Bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = rng.standard_normal((T, 1, I)).astype(np.float32)
    return lambda: sess.run(None, {"X": x})


@dataclass
class Cand:
    name: str
    run: object
    nbytes: float  # recurrent weight bytes read per step
    macs: float
    kind: str  # fma / vnni / bf16: which peak bounds it
    int8: bool = False


def _weights(H: int, P: int) -> tuple[float, float]:
    """(float32 recurrent weight elements, multiply-adds) per step."""
    elems = 4 * H * P + (P * H if P != H else 0)
    macs = 4 * H * (I + P) + (P * H if P != H else 0)
    return elems, macs


def _no_grad(module: torch.nn.Module, x: torch.Tensor):
    module.eval()

    def run():
        with torch.no_grad():
            module(x)

    return run


def candidates(H: int, T: int, variants: list[str], notes: list[str]) -> list[Cand]:
    torch.manual_seed(0)
    x = torch.randn(T, 1, I)
    elems, macs = _weights(H, H)
    out = []
    for v in variants:
        kw = dict(FLOAT_VARIANTS[v])
        P = H
        if kw.get("proj_size", 0) < 0:
            kw["proj_size"] = P = H // -kw["proj_size"]
        m = lstmkit.LSTM(I, H, backend="cpu", **kw)
        e, mc = _weights(H, P)
        out.append(Cand(f"lstmkit {v}", _no_grad(m, x), 4 * e, mc, "fma"))
    out.append(Cand("torch.nn.LSTM", _no_grad(torch.nn.LSTM(I, H), x), 4 * elems, macs, "fma"))
    if "vanilla" in variants:
        # The recurrence alone (x W_ih^T + b_ih computed outside the timing): what the module
        # adds on top of the kernel.
        from lstmkit.reference.lstm import CellOptions, RecurrenceInputs

        m = lstmkit.LSTM(I, H, backend="cpu")
        with torch.no_grad():
            xg = x @ m.weight_ih_l0.t() + m.bias_ih_l0
        inp = RecurrenceInputs(
            xg, torch.zeros(1, H), torch.zeros(1, H), m.weight_hh_l0.detach(), m.bias_hh_l0.detach()
        )
        opts = CellOptions()
        out.append(
            Cand(
                "fused kernel alone (vanilla, no x W_ih)",
                lambda: recurrence.fused_forward(inp, None, False, opts, False),
                4 * elems,
                macs - 4 * H * I,
                "fma",
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        q = torch.ao.quantization.quantize_dynamic(
            _torch_wrap(torch.nn.LSTM(I, H)).eval(), {torch.nn.LSTM}, dtype=torch.qint8
        )
    out.append(Cand("torch quantize_dynamic int8", _no_grad(q, x), elems, macs, "vnni", True))
    try:
        out.append(Cand("onnxruntime LSTM", _onnx_session(H, T, 1), 4 * elems, macs, "fma"))
    except Exception as e:  # onnx/onnxruntime missing or refusing the graph: say so, go on
        notes.append(f"onnxruntime LSTM unavailable: {type(e).__name__}: {e}")
    quantize = getattr(lstmkit, "quantize", None)
    if quantize is None:
        if not any("lstmkit.quantize" in n for n in notes):
            notes.append("lstmkit.quantize is not in this lstmkit yet: no lstmkit int8/bf16 rows")
    else:
        quantized = (
            ("lstmkit int8", "int8", "int8", elems, "vnni"),
            ("lstmkit int8 weight-only", "int8", "float", elems, "vnni"),
            ("lstmkit bf16", "bf16", None, 2 * elems, "bf16"),
        )
        for name, mode, acts, nb, kind in quantized:
            try:
                m = quantize(lstmkit.LSTM(I, H).eval(), mode, acts)
                out.append(Cand(name, _no_grad(m, x), nb, macs, kind, mode == "int8"))
            except Exception as e:  # a mode this CPU or build lacks: one note, the rest runs
                notes.append(f"lstmkit.quantize(..., {mode!r}) at H={H}: {type(e).__name__}: {e}")
    return out


@contextlib.contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _floor_verdict(times_us: list[float], floor_us: float, target: float) -> tuple:
    sp = Spread.of([t / floor_us for t in times_us])
    if sp.rel_iqr > MAX_REL_IQR:
        return sp, "noisy"
    if sp.q3 <= target:
        return sp, "met"
    if sp.q1 > target:
        return sp, "missed"
    return sp, "noisy"


def bench_one_thread(H: int, fl: Floor, repeats: int, variants: list[str], notes: list[str]):
    T = STEPS.get(H, 1000)
    with threads(1):
        cands = candidates(H, T, variants, notes)
        runs = {c.name: c.run for c in cands}
        warm_up(runs, rounds=2, min_seconds=0.5)
        times = interleaved_times(runs, repeats)
    rows = []
    base = times["torch.nn.LSTM"]
    f32 = times.get("lstmkit vanilla")
    for c in cands:
        per_step = [t * 1e3 / T for t in times[c.name]]
        fl_c = fl.per_step_us(c.nbytes, c.macs, 1, c.kind)
        fsp, fverdict = _floor_verdict(per_step, fl_c["us"], FLOOR_TARGET)
        row = {
            "H": H,
            "T": T,
            "threads": 1,
            "name": c.name,
            "us_per_step": Spread.of(per_step).__dict__,
            "floor": fl_c,
            "x_floor": fsp.median,
            "x_floor_iqr": [fsp.q1, fsp.q3],
            "floor_target": FLOOR_TARGET if (c.name.startswith("lstmkit") or c.int8) else None,
        }
        row["floor_verdict"] = fverdict if row["floor_target"] else None
        vt = judge(
            times[c.name],
            base,
            VS_TORCH_TARGET if c.name == "lstmkit vanilla" and H <= 256 else None,
        )
        row["vs_torch"] = asdict(vt)
        if c.int8 and c.name.startswith("lstmkit") and f32 is not None:
            row["vs_lstmkit_f32"] = asdict(
                judge(times[c.name], f32, INT8_VS_F32_TARGET if H >= 512 else None)
            )
        if c.int8 and c.name.startswith("lstmkit"):
            for other in ("torch quantize_dynamic int8", "onnxruntime LSTM"):
                if other in times:
                    row[f"vs {other}"] = asdict(judge(times[c.name], times[other], 1.0))
        rows.append(row)
    return rows


def bench_two_threads(H: int, fl: Floor, repeats: int):
    """lstmkit vanilla at 1 thread, at 2 threads with its split forced at every size, and at 2
    threads with the default threshold; torch.nn.LSTM at 1 and 2 threads."""
    T = STEPS.get(H, 1000)
    ext = recurrence.load_extension()
    torch.manual_seed(0)
    x = torch.randn(T, 1, I)
    ours = lstmkit.LSTM(I, H, backend="cpu").eval()
    ref = torch.nn.LSTM(I, H).eval()
    default_split = ext._set_split_bytes(ext._set_split_bytes(0))  # read it back

    def at(n: int, fn, split: int | None = None):
        def run():
            prev_t = torch.get_num_threads()
            torch.set_num_threads(n)
            prev_s = ext._set_split_bytes(default_split if split is None else split)
            try:
                with torch.no_grad():
                    fn(x)
            finally:
                ext._set_split_bytes(prev_s)
                torch.set_num_threads(prev_t)

        return run

    runs = {
        "lstmkit 1 thread": at(1, ours),
        "lstmkit 2 threads (split)": at(2, ours, 0),
        "lstmkit 2 threads (default)": at(2, ours),
        "torch.nn.LSTM 1 thread": at(1, ref),
        "torch.nn.LSTM 2 threads": at(2, ref),
    }
    warm_up(runs, rounds=2, min_seconds=0.5)
    times = interleaved_times(runs, repeats)
    elems, macs = _weights(H, H)
    fl2 = fl.per_step_us(4 * elems, macs, 2, "fma") if 2 in fl.read_gbs else None
    rows = []
    for name, ts in times.items():
        per_step = [t * 1e3 / T for t in ts]
        rows.append(
            {
                "H": H,
                "T": T,
                "name": name,
                "us_per_step": Spread.of(per_step).__dict__,
                "vs_one_thread": asdict(judge(ts, times[name.split(" ")[0] + " 1 thread"], None)),
                "floor_2_threads": fl2,
            }
        )
    return rows


def bench_streaming(H: int, repeats: int, calls: int = 200):
    """Per step: T=1 calls with the state passed back, against a step of one T-long call."""
    T = STEPS.get(H, 1000)
    torch.manual_seed(0)
    x = torch.randn(max(T, calls), 1, I)
    xs = [x[t : t + 1] for t in range(calls)]
    x = x[:T]
    mods = {
        "lstmkit vanilla (cpu)": lstmkit.LSTM(I, H, backend="cpu").eval(),
        "lstmkit layer_norm": lstmkit.LSTM(I, H, layer_norm=True).eval(),
        "lstmkit vanilla (auto)": lstmkit.LSTM(I, H).eval(),
        "torch.nn.LSTM": torch.nn.LSTM(I, H).eval(),
    }
    runs = {}
    for name, m in mods.items():

        def long(m=m):
            with torch.no_grad():
                m(x)

        def stream(m=m):
            with torch.no_grad():
                state = None
                for xt in xs:
                    _, state = m(xt, state)

        runs[f"{name} long"] = long
        runs[f"{name} stream"] = stream

    # the fused kernel alone, one step per call: what the module adds on top of it
    w = mods["lstmkit vanilla (cpu)"]
    from lstmkit.reference.lstm import CellOptions, RecurrenceInputs

    opts = CellOptions()
    with torch.no_grad():
        xg_all = x @ w.weight_ih_l0.t() + w.bias_ih_l0
    h0, c0 = torch.zeros(1, H), torch.zeros(1, H)

    def kernel_stream():
        h, c = h0, c0
        for t in range(calls):
            inp = RecurrenceInputs(xg_all[t : t + 1], h, c, w.weight_hh_l0.detach(), None)
            _, h, c, _ = recurrence.fused_forward(inp, None, False, opts, False)

    runs["fused kernel alone stream"] = kernel_stream
    with threads(1):
        warm_up(runs, rounds=2, min_seconds=0.5)
        times = interleaved_times(runs, repeats)
    rows = []
    for name in mods:
        long_us = [t * 1e3 / T for t in times[f"{name} long"]]
        stream_us = [t * 1e3 / calls for t in times[f"{name} stream"]]
        target = STREAM_TARGET if name.startswith("lstmkit") else None
        v = judge(stream_us, long_us, target)
        rows.append(
            {
                "H": H,
                "name": name,
                "long_us_per_step": Spread.of(long_us).__dict__,
                "stream_us_per_step": Spread.of(stream_us).__dict__,
                "ratio": asdict(v),
            }
        )
    ks = [t * 1e3 / calls for t in times["fused kernel alone stream"]]
    rows.append(
        {"H": H, "name": "fused kernel alone", "stream_us_per_step": Spread.of(ks).__dict__}
    )
    return rows


# --------------------------------------------------------------------------------------------
# Report


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _sp(d: dict) -> str:
    return f"{d['median']:.3g} ({d['q1']:.3g}-{d['q3']:.3g})"


def format_floor(fl: Floor) -> str:
    lines = ["| threads | " + " | ".join(fl.level_bytes) + " | fma | vnni int8 | bf16 |"]
    lines.append("|" + "---|" * (len(fl.level_bytes) + 4))
    for th, bw in fl.read_gbs.items():
        pk = fl.peak_gmacs[th]
        cells = [f"{bw[k]:.1f} GB/s" for k in fl.level_bytes]
        cells += [f"{pk[k]:.0f} GMAC/s" if k in pk else "-" for k in ("fma", "vnni", "bf16")]
        lines.append(f"| {th} | " + " | ".join(cells) + " |")
    sizes = ", ".join(f"{k} {v / 2**20:.3g} MiB" for k, v in fl.level_bytes.items())
    caches = ", ".join(f"{k} {v / 2**20:.3g} MiB" for k, v in fl.caches.items())
    lines.append(f"\nread buffer per thread: {sizes}; caches of cpu0: {caches}")
    return "\n".join(lines)


def format_main(rows: list[dict]) -> str:
    out = [
        "| H | T | candidate | us/step median (IQR) | floor us (bound, level) | x floor | "
        "vs torch.nn.LSTM | verdicts |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fl = r["floor"]
        verdicts = []
        if r.get("floor_verdict"):
            verdicts.append(f"floor<={FLOOR_TARGET:g}x {r['floor_verdict']}")
        vt = r["vs_torch"]
        if vt["verdict"]:
            verdicts.append(f"<={VS_TORCH_TARGET:g}x torch {vt['verdict']}")
        for key in ("vs_lstmkit_f32", "vs torch quantize_dynamic int8", "vs onnxruntime LSTM"):
            if key in r and r[key]["verdict"]:
                verdicts.append(f"{key} {_fmt(r[key]['ratio'])} {r[key]['verdict']}")
        ratio = _fmt(vt["ratio"]) if vt["ratio"] is not None else f"noisy ({vt['why_noisy']})"
        out.append(
            f"| {r['H']} | {r['T']} | {r['name']} | {_sp(r['us_per_step'])} | "
            f"{fl['us']:.3g} ({fl['bound']}, {fl['level']}) | {r['x_floor']:.2f} | {ratio} | "
            f"{'; '.join(verdicts)} |"
        )
    return "\n".join(out)


def format_threads(rows: list[dict]) -> str:
    out = ["| H | candidate | us/step median (IQR) | vs its 1 thread | 2-thread floor us |"]
    out.append("|---|---|---|---|---|")
    for r in rows:
        v = r["vs_one_thread"]
        ratio = _fmt(v["ratio"]) if v["ratio"] is not None else "noisy"
        f2 = r["floor_2_threads"]
        out.append(
            f"| {r['H']} | {r['name']} | {_sp(r['us_per_step'])} | {ratio} | "
            f"{_fmt(f2['us'] if f2 else None)} |"
        )
    return "\n".join(out)


def crossover(rows: list[dict]) -> str:
    """The smallest H from which the forced 2-thread split is faster than 1 thread (and stays)."""
    wins = {}
    for r in rows:
        if r["name"] == "lstmkit 2 threads (split)":
            v = r["vs_one_thread"]
            wins[r["H"]] = v["ratio"] is not None and v["ratio_q3"] < 1.0
    hs = sorted(wins)
    for i, h in enumerate(hs):
        if all(wins[k] for k in hs[i:]):
            return f"two threads beat one from H={h} on (ratio IQR below 1 at every H >= {h})"
    return "two threads never clearly beat one here"


def format_stream(rows: list[dict]) -> str:
    out = ["| H | candidate | long call us/step | T=1 calls us/step | ratio | target 1.5x |"]
    out.append("|---|---|---|---|---|---|")
    for r in rows:
        if "ratio" not in r:
            out.append(f"| {r['H']} | {r['name']} | - | {_sp(r['stream_us_per_step'])} | - | - |")
            continue
        v = r["ratio"]
        ratio = _fmt(v["ratio"]) if v["ratio"] is not None else f"noisy ({v['why_noisy']})"
        out.append(
            f"| {r['H']} | {r['name']} | {_sp(r['long_us_per_step'])} | "
            f"{_sp(r['stream_us_per_step'])} | {ratio} | {v['verdict'] or '-'} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--H", default="128,256,512,1024", help="hidden sizes, comma-separated")
    ap.add_argument("--threads", default="1,2", help="1 and/or 2 (the crossover)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--variants", default=",".join(FLOAT_VARIANTS))
    ap.add_argument("--no-stream", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("docs/bench-floor.json"))
    args = ap.parse_args(argv)
    hs = [int(h) for h in args.H.split(",")]
    ths = [int(t) for t in args.threads.split(",")]
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in FLOAT_VARIANTS]
    if bad or not set(ths) <= {1, 2} or args.repeats < 1:
        ap.error(f"--variants from {','.join(FLOAT_VARIANTS)}; --threads 1,2; --repeats >= 1")
    if not recurrence.is_available():
        print(f"floor: the fused CPU kernel is unavailable: {recurrence.build_error()}")
        return 1
    t0 = time.perf_counter()
    info = machine_info()
    ext = recurrence.load_extension()
    info["lstmkit_gemv_isa"] = ext.gemv_isa()
    with contextlib.suppress(Exception):  # the quantized kernel's: its rows say when it is absent
        from lstmkit.kernels.cpu import quant

        info["lstmkit_quant_isa"] = quant.best_isa()
    info["load_average"] = list(os.getloadavg())
    fl = measure_floor(sorted(set(ths) | {1}), repeats=15)
    print(f"machine: {info}")
    print(format_floor(fl), flush=True)
    notes: list[str] = []
    main_rows, thread_rows, stream_rows = [], [], []
    for H in hs:
        main_rows += bench_one_thread(H, fl, args.repeats, variants, notes)
        print(format_main([r for r in main_rows if r["H"] == H]), flush=True)
    if 2 in ths:
        for H in hs:
            thread_rows += bench_two_threads(H, fl, args.repeats)
        print(format_threads(thread_rows))
        print(crossover(thread_rows), flush=True)
    if not args.no_stream:
        for H in hs:
            stream_rows += bench_streaming(H, args.repeats)
        print(format_stream(stream_rows), flush=True)
    for n in dict.fromkeys(notes):
        print(f"note: {n}")
    info["load_average_end"] = list(os.getloadavg())
    info["seconds"] = round(time.perf_counter() - t0, 1)
    payload = {
        "command": "python bench/floor.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info,
        "input_size": I,
        "floor": {
            "caches": fl.caches,
            "level_bytes": fl.level_bytes,
            "read_gbs": fl.read_gbs,
            "peak_gmacs": fl.peak_gmacs,
            "vector_width": fl.vector_width,
        },
        "one_thread": main_rows,
        "two_threads": thread_rows,
        "crossover": crossover(thread_rows) if thread_rows else None,
        "streaming": stream_rows,
        "notes": list(dict.fromkeys(notes)),
    }
    write_json_atomic(args.out, payload)
    print(f"wrote {args.out} ({info['seconds']} s; load average {info['load_average']} at start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
