# The two commands of the README: `make demo` and `make test`. Both create .venv if missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# torch is pinned for the venv: pip takes the CPU wheel on this machine's disk. An unpinned or
# newer torch would pull a CUDA build of several GB.
TORCH   := torch==2.13.0
# The fused CPU kernel's source: an edit rebuilds it at the next make (pip install, setup.py).
KERNEL  := src/lstmkit/kernels/cpu/lstm.cpp src/lstmkit/kernels/cpu/lstm_quant.cpp

# After the install: one line when the kernel was not built (pip -q hides setup.py's own line).
define KERNEL_CHECK
import importlib.util, sys
if importlib.util.find_spec("lstmkit.kernels.cpu._lstm_cpu") is None:
    print("lstmkit: the fused CPU kernel was not built at install (no C++ compiler?); lstmkit "
          "will build it at first use if it can, else run the slower PyTorch loop", file=sys.stderr)
endef
export KERNEL_CHECK

.PHONY: demo test fuzz lint format bench bench-backends bench-gpu bench-lm bench-packed bench-adamw bench-floor bench-serve bench-onnx bench-compile bench-stream-calls bench-quant-accuracy results-longlag results-forecast clean

# What the library needs at run time (make demo, bench, results): torch, lstmkit and its
# dependencies, the kernel compiled. --no-build-isolation: setup.py compiles the kernel against
# the venv's pinned torch; an isolated build would download another torch (a CUDA build of GBs)
# to compile against (pyproject.toml). So setuptools and torch go in first.
$(BIN)/.installed: pyproject.toml setup.py Makefile $(KERNEL)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 'setuptools>=77'
	$(BIN)/pip install -q $(TORCH)
	@echo "lstmkit: installing; the fused CPU kernel (lstm.cpp) compiles now, once: 1-3 minutes"
	$(BIN)/pip install -q --no-build-isolation -e .
	@$(BIN)/python -c "$$KERNEL_CHECK"
	touch $@

# The dev extras on top (make test, lint, fuzz): pytest, hypothesis, ruff, triton (its CPU
# interpreter runs the kernel tests), librosa (the speech features' reference; it brings scipy,
# numba, llvmlite, scikit-learn). Reinstalling lstmkit here does not compile again: setup.py
# keeps the in-place kernel whose record matches.
$(BIN)/.installed-dev: $(BIN)/.installed
	$(BIN)/pip install -q --no-build-isolation -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/lstmkit demo

# LSTMKIT_FORBID_JIT: a test that would compile the kernel at run time fails instead (the install
# built it; minutes of silent recompiling inside a test run were issue 16's first complaint).
# Two pytest workers (pytest-xdist), one per core of the CI machine: the suite is ~3,000 tests,
# most of them one-threaded Python; the 25 slowest are listed at the end of the log.
test: $(BIN)/.installed-dev lint
	LSTMKIT_FORBID_JIT=1 $(BIN)/python -m pytest -q -n 2 --durations=25

# The long robustness runs (about 4 minutes): random CLI options and input files under a memory
# cap, and two trainers raced on one folder; the figures go in docs/RELIABILITY.md.
fuzz: $(BIN)/.installed-dev
	LSTMKIT_FUZZ_REPORT=docs/fuzz-report.json $(BIN)/python -m pytest -q -m fuzz tests

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(BIN)/.installed-dev
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(BIN)/.installed
	$(BIN)/lstmkit bench --out docs/bench-cpu.json

bench-backends: $(BIN)/.installed
	$(BIN)/python bench/cpu_backends.py --out bench-out/cpu_backends.json

# GPU speed table (issue 7): Triton kernels vs cuDNN vs a PyTorch loop; needs CUDA.
bench-gpu: $(BIN)/.installed-dev
	$(BIN)/python bench/gpu.py

# Packed sequences on CPU: lstmkit's auto routing vs torch.nn.LSTM (docs/BENCHMARKS.md).
bench-packed: $(BIN)/.installed
	$(BIN)/python bench/packed.py --repeats 9 --out docs/bench-packed.json

# Batch-1 inference against this machine's floor (issue 19): L2/L3/DRAM read bandwidth and the
# vector units' peak measured here, every candidate's time per step as a multiple of it, the
# two-thread crossover and streaming T=1 calls (about 3-5 minutes; compiles a microbenchmark once).
bench-floor: $(BIN)/.installed-dev
	$(BIN)/python bench/floor.py --out docs/bench-floor.json

# Language-model training throughput: `lstmkit train lm` vs a hand-written torch.nn.LSTM loop,
# each measurement a fresh process (1 thread, about 12 minutes); the table of docs/BENCHMARKS.md.
bench-lm: $(BIN)/.installed
	$(BIN)/python bench/lm_throughput.py --out docs/lm-throughput.json

# One AdamW step: torch's default loop vs foreach vs fused (what the trainer uses), on two of
# our models (about 10 seconds).
bench-adamw: $(BIN)/.installed
	$(BIN)/python bench/adamw.py --out docs/bench-adamw.json

# Load on `lstmkit serve` (issue 20): req/s and p50/p99 at 1-256 clients with and without
# micro-batching, the in-process ceiling, overload shedding, a 10,000-request fuzz (about 3-4
# minutes; needs the serve extra, in dev).
bench-serve: $(BIN)/.installed-dev
	$(BIN)/python bench/serve_load.py --out docs/bench-serve.json

# ONNX Runtime running lstmkit's exported LSTM (native LSTM node or Scan) against lstmkit eager
# and ORT's own LSTM node: batch-1 streaming and batch 32 (issue 18; about a minute).
bench-onnx: $(BIN)/.installed-dev
	$(BIN)/python bench/onnx_lstm.py --json docs/bench-onnx.json
	$(BIN)/python bench/onnx_lstm.py --quantized --json docs/bench-onnx-quantized.json

# torch.compile: compile time of a 1- and a 6-layer model (aot_eager, inductor), compiled vs
# eager step time (issue 18; about 2 minutes).
bench-compile: $(BIN)/.installed
	$(BIN)/python bench/compile.py --out docs/bench-compile.json

# One call per step (T=1, state passed back) against a step of one long call (issue 19's
# streaming target; about a minute).
bench-stream-calls: $(BIN)/.installed
	$(BIN)/python bench/stream_calls.py --out docs/bench-stream-calls.json

# Test metrics of trained runs in float32, int8 and bf16 (docs/RESULTS.md, Quantization):
# make bench-quant-accuracy RUNS="runs/mr runs/lm"
bench-quant-accuracy: $(BIN)/.installed
	$(BIN)/python bench/quant_accuracy.py $(RUNS)

# Forecasting tables of docs/RESULTS.md on ../shared/data/etth1 (issue 21): the Informer and
# LTSF protocols, our LSTM and the baselines; each run capped at 30 CPU-minutes, so the full set
# takes hours (docs/RESULTS.md lists the commands for one protocol at a time).
results-forecast: $(BIN)/.installed
	$(BIN)/python -m lstmkit.experiments.forecast_results --protocol informer --features S --models lstm,deepar-gaussian,lstm-seq2seq,lstm-seg,dlinear,last,seasonal24 --seeds 0,1,2 --steps 2000 --json docs/forecast-informer-S.json
	$(BIN)/python -m lstmkit.experiments.forecast_results --protocol informer --features M --models lstm,lstm-ci,lstm-seg,dlinear,last --seeds 0,1,2 --steps 2000 --json docs/forecast-informer-M.json
	$(BIN)/python -m lstmkit.experiments.forecast_results --protocol ltsf --features M --models lstm-seg,lstm-ci,dlinear,last --seeds 0,1,2 --steps 2000 --json docs/forecast-ltsf-M.json

# Long-time-lag table of docs/RESULTS.md (about an hour on 2 cores): LSTM vs tanh RNN.
results-longlag: $(BIN)/.installed
	$(BIN)/python -m lstmkit.experiments.longlag_results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
