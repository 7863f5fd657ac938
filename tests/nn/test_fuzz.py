"""Fuzzing the module boundary: random shapes, dtypes, states and packings.

Every case must either run (and, for the vanilla LSTM, match torch.nn.LSTM) or raise
ValueError/TypeError/RuntimeError with a message. The cases run in one subprocess per batch,
so that a native crash (heap corruption, a bad read in a kernel) fails the test instead of
killing pytest; hypothesis draws the batches, derandomized so that CI sees the same cases.
"""

import json
import subprocess
import sys
import textwrap

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lstmkit.kernels.cpu import recurrence as cpu_recurrence

BACKENDS = ["auto", "python", "reference"] + (["cpu"] if cpu_recurrence.is_available() else [])
VARIANTS = [{}, {"peephole": True}, {"layer_norm": True}, {"proj_size": 2}, {"coupled": True}]

# The first value of each choice is the valid, common one: hypothesis starts from those, so
# every batch holds runs that must match torch as well as the invalid inputs around them.
case = st.fixed_dictionaries(
    {
        "backend": st.sampled_from(BACKENDS),
        "variant": st.sampled_from(VARIANTS),
        "module_dtype": st.sampled_from(["float32", "float64"]),
        "input_dtype": st.sampled_from(["same", "same", "float32", "float64", "int64", "float16"]),
        "kind": st.sampled_from(["padded", "packed", "packed", "batch_first", "unbatched"]),
        "T": st.sampled_from([3, 1, 2, 4, 0]),
        "B": st.sampled_from([2, 1, 3, 0]),
        "features": st.sampled_from([3, 3, 3, 2]),  # mostly the right input_size
        "rank_delta": st.sampled_from([0, 0, 0, 1, -1]),
        "packing": st.sampled_from(["valid", "random"]),
        "lengths": st.lists(st.integers(1, 4), min_size=1, max_size=3),
        # zeros and increases, with the data's rows mostly their sum: what used to corrupt the heap
        "batch_sizes": st.lists(st.sampled_from([2, 0, 1, 3]), min_size=0, max_size=4),
        "rows_delta": st.sampled_from([0, 0, 1, -1]),
        "hx": st.sampled_from(["none", "right", "none", "wrong_batch", "wrong_layers"]),
        "num_layers": st.sampled_from([1, 2]),
        "bidirectional": st.booleans(),
    }
)

RUNNER = textwrap.dedent(
    """
    import json, sys, torch, lstmkit
    from torch.nn.utils.rnn import PackedSequence
    torch.set_num_threads(1)
    TOL = {torch.float32: 1e-5, torch.float64: 1e-10}

    def make(c):
        torch.manual_seed(0)
        mdt = getattr(torch, c["module_dtype"])
        idt = mdt if c["input_dtype"] == "same" else getattr(torch, c["input_dtype"])
        kw = dict(num_layers=c["num_layers"], bidirectional=c["bidirectional"], dtype=mdt)
        m = lstmkit.LSTM(3, 4, backend=c["backend"], batch_first=c["kind"] == "batch_first",
                         **kw, **c["variant"])
        T, B, I = c["T"], c["B"], c["features"]
        if c["kind"] == "packed" and c["packing"] == "valid":
            seqs = [torch.randn(n, I).to(idt) for n in c["lengths"]]
            x = torch.nn.utils.rnn.pack_sequence(seqs, enforce_sorted=False)
            B = len(seqs)
        elif c["kind"] == "packed":  # anything: most of these are not a packing
            bs = torch.tensor(c["batch_sizes"], dtype=torch.int64)
            rows = max(0, sum(c["batch_sizes"]) + c["rows_delta"])
            x = PackedSequence._make((torch.randn(rows, I).to(idt), bs, None, None))
            B = int(bs[0]) if len(bs) else 0
        else:
            shape = {"padded": (T, B, I), "batch_first": (B, T, I), "unbatched": (T, I)}
            shape = shape[c["kind"]]
            if c["rank_delta"]:
                shape = shape + (1,) if c["rank_delta"] > 0 else shape[1:]
            x = torch.randn(*shape).to(idt)
        hx = None
        if c["hx"] != "none":
            L = c["num_layers"] * (2 if c["bidirectional"] else 1)
            L += c["hx"] == "wrong_layers"
            Bh = max(B, 0) + (c["hx"] == "wrong_batch")
            P = c["variant"].get("proj_size", 0) or 4
            lead = (L,) if c["kind"] == "unbatched" and c["hx"] != "wrong_batch" else (L, Bh)
            hx = (torch.randn(*lead, P, dtype=mdt), torch.randn(*lead, 4, dtype=mdt))
        return m, x, hx

    for k, line in enumerate(sys.stdin):
        c = json.loads(line)
        m, x, hx = make(c)
        try:
            out, (h, cn) = m(x, hx)
        except (ValueError, TypeError, RuntimeError) as e:
            print(json.dumps({"k": k, "status": "error", "type": type(e).__name__,
                              "msg": str(e)}), flush=True)
            continue
        except Exception as e:
            print(json.dumps({"k": k, "status": "bad-exception", "type": type(e).__name__,
                              "msg": str(e)}), flush=True)
            continue
        diff = None
        if not c["variant"] or c["variant"].get("proj_size"):  # vanilla math: torch's numbers
            ref = torch.nn.LSTM(3, 4, batch_first=c["kind"] == "batch_first",
                                num_layers=c["num_layers"], bidirectional=c["bidirectional"],
                                proj_size=c["variant"].get("proj_size", 0),
                                dtype=m.weight_ih_l0.dtype)
            ref.load_state_dict(m.state_dict())
            out_r, (h_r, c_r) = ref(x, hx)
            data = lambda o: o.data if isinstance(o, PackedSequence) else o
            diff = max((a - b).abs().max().item() if a.numel() else 0.0
                       for a, b in ((data(out), data(out_r)), (h, h_r), (cn, c_r)))
            diff = diff / TOL[m.weight_ih_l0.dtype]
        print(json.dumps({"k": k, "status": "ok", "diff": diff}), flush=True)
    print(json.dumps({"status": "done"}))
    """
)


def run_batch(cases):
    return subprocess.run(
        [sys.executable, "-c", RUNNER],
        input="".join(json.dumps(c) + "\n" for c in cases),
        capture_output=True,
        text=True,
        timeout=120,
    )


@settings(
    max_examples=2,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each try is a subprocess
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(case, min_size=50, max_size=50))
def test_module_boundary_fuzz(cases):
    r = run_batch(cases)
    assert r.returncode == 0, (
        f"the subprocess died (exit {r.returncode}): a native crash on one of these cases\n"
        f"{r.stderr[-3000:]}\nlast results:\n{r.stdout[-1500:]}"
    )
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert results[-1] == {"status": "done"}
    assert len(results) == len(cases) + 1
    for res in results[:-1]:
        c = cases[res["k"]]
        assert res["status"] in ("ok", "error"), (c, res)
        if res["status"] == "error":
            assert res["msg"].strip(), (c, res)
        elif res["diff"] is not None:
            assert res["diff"] <= 1.0, (c, res)  # within the dtype's tolerance of torch


# Only packings, mostly invalid ones (zeros, increases, sums off by one), on every backend and
# variant: the inputs that corrupted the heap inside torch's unpacking.
packing_case = case.map(
    lambda c: {**c, "kind": "packed", "packing": "random", "input_dtype": "same", "features": 3}
)


@settings(
    max_examples=2,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each try is a subprocess
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(packing_case, min_size=30, max_size=30))
def test_packing_fuzz(cases):
    test_module_boundary_fuzz.hypothesis.inner_test(cases)
