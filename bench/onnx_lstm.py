"""ONNX Runtime running an exported lstmkit.LSTM vs lstmkit eager on CPU (issue 18).

For vanilla, layer norm and projection at H=128/256: batch 1 streaming (T=1 calls carrying
the state) in microseconds per step, and batch 32 x T=64 throughput in sequence-steps per
second. For vanilla (native ONNX LSTM node) also a hand-built graph holding only ORT's own LSTM
node for the shape: the export should be within 10% of it. Prints a table with the machine line
and writes docs/bench-onnx.json.

    .venv/bin/python bench/onnx_lstm.py [--quick] [--json docs/bench-onnx.json]

With ``--quantized`` (issue 19): vanilla at H=128/512/1024, batch 1, time per step of ORT's
``DynamicQuantizeLSTM`` (the int8 export of ``lstmkit.quantize``), ORT's float ``LSTM`` (the
float export) and lstmkit's int8 eager ``QuantizedLSTM``, streaming (T=1 calls carrying the
state) and one T=1000 call, interleaved (lstmkit.bench.interleaved_times); writes
docs/bench-onnx-quantized.json.

    .venv/bin/python bench/onnx_lstm.py --quantized [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

import lstmkit
from lstmkit.bench import machine_info, write_json_atomic
from lstmkit.export import to_onnx

VARIANTS = {"vanilla": {}, "layer_norm": {"layer_norm": True}, "projection": {}}
I = 64


def _session(path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # the same single thread as torch below
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _native_only(path: Path, H: int) -> None:
    """A graph with nothing but ORT's LSTM node (layout 0) for the vanilla shape."""
    rng = np.random.default_rng(0)
    init = [
        helper.make_tensor(n, TensorProto.FLOAT, s, rng.standard_normal(s).astype(np.float32))
        for n, s in (("W", [1, 4 * H, I]), ("R", [1, 4 * H, H]), ("B", [1, 8 * H]))
    ]
    node = helper.make_node(
        "LSTM", ["x", "W", "R", "B", "", "h0", "c0"], ["y", "h_n", "c_n"], hidden_size=H
    )
    f = TensorProto.FLOAT
    g = helper.make_graph(
        [node],
        "native",
        [
            helper.make_tensor_value_info("x", f, ["T", "B", I]),
            helper.make_tensor_value_info("h0", f, [1, "B", H]),
            helper.make_tensor_value_info("c0", f, [1, "B", H]),
        ],
        [helper.make_tensor_value_info(n, f, None) for n in ("y", "h_n", "c_n")],
        init,
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), path)


def _median(fn, reps: int) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _stream_ort(sess, H, P, steps, native=False):
    x = np.random.randn(1, 1, I).astype(np.float32)
    h, c = np.zeros((1, 1, P), np.float32), np.zeros((1, 1, H), np.float32)

    def run():
        nonlocal h, c
        for _ in range(steps):
            _, h, c = sess.run(None, {"x": x, "h0": h, "c0": c})

    return run


def _stream_torch(m, H, P, steps):
    x = torch.randn(1, 1, I)
    state = (torch.zeros(1, 1, P), torch.zeros(1, 1, H))

    def run():
        nonlocal state
        with torch.inference_mode():
            for _ in range(steps):
                _, state = m(x, state)

    return run


def quantized_main(a) -> int:
    """ORT DynamicQuantizeLSTM vs ORT float LSTM vs lstmkit int8 eager, batch 1."""
    from lstmkit.bench import interleaved_times
    from lstmkit.nn.quantized import QuantizedLSTM

    reps, steps, T = (3, 20, 200) if a.quick else (7, 100, 1000)
    tmp = Path(tempfile.mkdtemp())
    rows = []
    for H in (128, 512, 1024):
        m = lstmkit.LSTM(I, H).eval()
        q = QuantizedLSTM.from_float(m, "int8")
        to_onnx(m, torch.randn(4, 2, I), tmp / f"f{H}.onnx")
        to_onnx(q, torch.randn(4, 2, I), tmp / f"q{H}.onnx")
        sessions = {
            "ort_dq_lstm": _session(tmp / f"q{H}.onnx"),
            "ort_float": _session(tmp / f"f{H}.onnx"),
        }
        stream = {k: _stream_ort(s, H, H, steps) for k, s in sessions.items()}
        stream["lstmkit_int8"] = _stream_torch(q, H, H, steps)
        xl = np.random.randn(T, 1, I).astype(np.float32)
        z = np.zeros((1, 1, H), np.float32)
        feeds = {"x": xl, "h0": z, "c0": z}
        long = {k: (lambda s=s, f=feeds: s.run(None, f)) for k, s in sessions.items()}
        xt = torch.from_numpy(xl)

        def eager_long(q=q, xt=xt):
            with torch.inference_mode():
                q(xt)

        long["lstmkit_int8"] = eager_long
        for fn in (*stream.values(), *long.values()):
            fn()  # warm up
        ts = interleaved_times(stream, reps)
        tl = interleaved_times(long, reps)
        r = {"H": H}
        for k in stream:
            r[f"stream_us_{k}"] = statistics.median(ts[k]) / steps * 1e3
            r[f"t{T}_us_{k}"] = statistics.median(tl[k]) / T * 1e3
        rows.append(r)
    mi = machine_info()
    mi["onnxruntime"] = ort.__version__
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"machine: {mi['cpu']} ({' '.join(mi['isa'])}), {mi['cores']} cores, 1 thread, "
        f"torch {mi['torch']}, onnxruntime {mi['onnxruntime']}; load average {' '.join(load)}"
    )
    names = ("ort_dq_lstm", "ort_float", "lstmkit_int8")
    print(
        f"{'H':>5}  us/step B=1: "
        + "  ".join(f"{'T=1 ' + n:>17}" for n in names)
        + "  "
        + "  ".join(f"{f'T={T} ' + n:>20}" for n in names)
    )
    for r in rows:
        print(
            f"{r['H']:>5}  {'':12}"
            + "  ".join(f"{r[f'stream_us_{n}']:>17.1f}" for n in names)
            + "  "
            + "  ".join(f"{r[f't{T}_us_{n}']:>20.1f}" for n in names)
        )
    out = Path(a.json if a.json != "docs/bench-onnx.json" else "docs/bench-onnx-quantized.json")
    write_json_atomic(out, {"machine": mi, "loadavg": load, "T": T, "B": 1, "rows": rows})
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--quantized", action="store_true", help="the int8 comparison (see doc)")
    ap.add_argument("--json", default="docs/bench-onnx.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.quantized:
        return quantized_main(a)
    reps, steps, T, B = (3, 50, 32, 32) if a.quick else (5, 200, 64, 32)
    rows = []
    tmp = Path(tempfile.mkdtemp())
    for H in (128, 256):
        for name, kw in VARIANTS.items():
            proj = H // 4 if name == "projection" else 0
            P = proj or H
            m = lstmkit.LSTM(I, H, proj_size=proj, **kw).eval()
            path = tmp / f"{name}{H}.onnx"
            to_onnx(m, torch.randn(4, 2, I), path)
            ops = sorted({n.op_type for n in onnx.load(path).graph.node} & {"LSTM", "Scan"})
            sess = _session(path)
            r = {"variant": name, "H": H, "graph": "+".join(ops)}
            r["stream_us_ort"] = _median(_stream_ort(sess, H, P, steps), reps) / steps * 1e6
            r["stream_us_eager"] = _median(_stream_torch(m, H, P, steps), reps) / steps * 1e6
            xb = np.random.randn(T, B, I).astype(np.float32)
            feeds = {
                "x": xb,
                "h0": np.zeros((1, B, P), np.float32),
                "c0": np.zeros((1, B, H), np.float32),
            }
            t_ort = _median(lambda s=sess, f=feeds: s.run(None, f), reps)
            xt = torch.from_numpy(xb)
            with torch.inference_mode():
                t_eager = _median(lambda m=m, xt=xt: m(xt), reps)
            r["b32_steps_per_s_ort"] = T * B / t_ort
            r["b32_steps_per_s_eager"] = T * B / t_eager
            if name == "vanilla":
                npath = tmp / f"native{H}.onnx"
                _native_only(npath, H)
                ns = _session(npath)
                r["stream_us_ort_native_only"] = (
                    _median(_stream_ort(ns, H, P, steps), reps) / steps * 1e6
                )
                r["b32_steps_per_s_ort_native_only"] = (
                    T * B / _median(lambda s=ns, f=feeds: s.run(None, f), reps)
                )
            rows.append(r)
    mi = machine_info()
    mi["onnxruntime"] = ort.__version__
    print(
        f"machine: {mi['cpu']} ({' '.join(mi['isa'])}), {mi['cores']} cores, 1 thread, "
        f"torch {mi['torch']}, onnxruntime {mi['onnxruntime']}"
    )
    print(
        f"{'variant':<11}{'H':>4} {'graph':<6}{'stream us/step ORT':>19}{'eager':>8}"
        f"{'ORT-only':>9}{'b32 steps/s ORT':>16}{'eager':>9}{'ORT-only':>10}"
    )
    for r in rows:
        print(
            f"{r['variant']:<11}{r['H']:>4} {r['graph']:<6}{r['stream_us_ort']:>19.1f}"
            f"{r['stream_us_eager']:>8.1f}{r.get('stream_us_ort_native_only', float('nan')):>9.1f}"
            f"{r['b32_steps_per_s_ort']:>16.0f}{r['b32_steps_per_s_eager']:>9.0f}"
            f"{r.get('b32_steps_per_s_ort_native_only', float('nan')):>10.0f}"
        )
    write_json_atomic(Path(a.json), {"machine": mi, "T": T, "B": B, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
