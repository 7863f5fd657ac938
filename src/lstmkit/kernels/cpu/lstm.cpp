// Fused CPU LSTM recurrence: the forward scan and backward through time of
// lstmkit/reference/backward.py (recurrence_forward / recurrence_backward), step by step,
// with the same saved tensor names and the same math.
//
// Dimensions:
//   T  time steps
//   B  batch rows; with packed sequences only the first batch_sizes[t] rows are active at step t
//   I  input size; only seen through xg = x W_ih^T + b_ih, computed before the scan
//   H  hidden (cell) size
//   P  size of h: the projection size, or H without projection
//   G  = 4H, the gates packed i|f|g|o
//
// One step is row-local once the weights are fixed: a GEMM (h_in W_hh^T), plain loops over each
// row for all the elementwise math (written so that GCC vectorizes them, exp and tanh through
// glibc's libmvec), and with a projection a second GEMM. So each intra-op thread runs the whole
// step on its own block of rows, one fork/join per step. The one exception: the forward, when a
// step has work for more than one thread, first splits its W_hh GEMM over output columns, so
// that each thread keeps its slice of W_hh in cache (see step_cols). Nothing is allocated inside
// the time loop, since at B=1 a step costs only a few microseconds: every intermediate lives in
// a buffer allocated before the loop, and the weight grads that need all steps (dW_hh, dW_hr)
// are one GEMM each after it, as in the reference.

#include <torch/extension.h>

// GCC's default for many AVX-512 CPUs (-march=native on a Xeon) is 256-bit vectors for the
// loops it vectorizes itself; the elementwise gate loops (and their libmvec exp and tanh) run
// on 512-bit vectors where the CPU has them. Without AVX-512 this changes nothing. Set before
// the other headers, so that their inline code is built the same way.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// Up to this many active rows the step GEMMs run as hand-written GEMVs over the cached weights:
// a BLAS call through the dispatcher costs more than the multiply itself at so few rows
// (measured: 2x faster at 1-4 rows for H=128 and H=256, slower from 6-8 rows on).
constexpr int64_t kGemvRows = 4;
// A GEMV whose weights reach this many bytes is split over the intra-op threads (when there are
// several): below it the fork/join per step costs more than the second core gains. Measured by
// bench/floor.py (the two-thread crossover in docs/BENCHMARKS.md); tests and the benchmark move
// it through _set_split_bytes.
constexpr int64_t kSplitBytes = int64_t(1) << 21;
std::atomic<int64_t> g_split_bytes{kSplitBytes};
// Elements of per-row work per parallel chunk: B=1 stays on one thread, B=32 at H=256 uses two.
constexpr int64_t kRowGrainWork = 8192;
// The forward's W_hh GEMM is split over output columns in blocks of this many (a multiple of
// the SIMD width, so that no thread's block starts mid-vector).
constexpr int64_t kColBlock = 16;

// Largest argument of exp that stays finite, with margin.
template <typename S>
constexpr S kExpMax = sizeof(S) == 4 ? S(88) : S(700);

// Under -ffast-math the vectorized 1 / (1 + inf) is a reciprocal estimate refined by Newton's
// method, which turns inf into NaN; clamping keeps exp finite, and the result then differs from
// the exact one (about 0) by less than 1e-38.
template <typename S>
inline S sigmoid(S x) {
  x = x < -kExpMax<S> ? -kExpMax<S> : x;
  return S(1) / (S(1) + std::exp(-x));
}

// ---------------------------------------------------------------------------------------------
// The small-batch GEMV: y[r, j] = dot(w[j, :], a[r, :]) for r < NB input rows (NB <= kGemvRows)
// and the output rows j0 <= j < j1; w is (N, K) row-major, a has row stride lda, y row stride
// ldy. At B=1 a step's cost is reading W_hh (and W_hr) once, so each kernel reads w exactly once
// per call, in row order (a few sequential streams the prefetcher follows), and keeps a (NB
// rows, K <= a few thousand floats) in L1. Each (j, r) pair is one accumulator that runs over k
// in the same order whatever the row group, the thread split or NB: the result of a row does not
// depend on how the rows were grouped (only on the instruction set, through the vector width).
//
// Three versions, picked once at run time from the CPU (cpuid and the OS's saved register
// state, through __builtin_cpu_supports): AVX-512 (16 floats), AVX2+FMA (8 floats), and the
// portable loop (also every double). The vector ones carry __attribute__((target)), so they are
// compiled whatever -march says and only run where the CPU has the instructions.

enum class Isa : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

const char* isa_name(Isa i) {
  return i == Isa::kAvx512 ? "avx512" : i == Isa::kAvx2 ? "avx2" : "generic";
}

Isa detect_isa() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
  return Isa::kGeneric;
}

const Isa kBestIsa = detect_isa();
// What the float32 GEMV runs; tests lower it to check every version on one machine.
std::atomic<int> g_isa{static_cast<int>(kBestIsa)};

template <typename S>
void gemv_generic(const S* __restrict w, const S* __restrict a, int64_t lda, S* __restrict y,
                  int64_t ldy, int64_t nb, int64_t j0, int64_t j1, int64_t K) {
  // Four output rows share each load of a[r, k].
  for (int64_t r = 0; r < nb; ++r) {
    const S* __restrict x = a + r * lda;
    S* __restrict yr = y + r * ldy;
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4) {
      const S* __restrict w0 = w + j * K;
      const S* __restrict w1 = w0 + K;
      const S* __restrict w2 = w1 + K;
      const S* __restrict w3 = w2 + K;
      S a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (int64_t k = 0; k < K; ++k) {
        const S xk = x[k];
        a0 += w0[k] * xk;
        a1 += w1[k] * xk;
        a2 += w2[k] * xk;
        a3 += w3[k] * xk;
      }
      yr[j] = a0;
      yr[j + 1] = a1;
      yr[j + 2] = a2;
      yr[j + 3] = a3;
    }
    for (; j < j1; ++j) {
      const S* __restrict wj = w + j * K;
      S s = 0;
      for (int64_t k = 0; k < K; ++k) s += wj[k] * x[k];
      yr[j] = s;
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__)

// R output rows times NB input rows of accumulators, 16 floats each; the last partial block of
// k is read with a mask (nothing past the row end is touched).
template <int R, int NB>
__attribute__((target("avx512f"))) inline void gemv_block_avx512(
    const float* __restrict w, const float* __restrict a, int64_t lda, float* __restrict y,
    int64_t ldy, int64_t j, int64_t K) {
  __m512 acc[R][NB];
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_setzero_ps();
  const float* __restrict wj = w + j * K;
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 x[NB];
    for (int b = 0; b < NB; ++b) x[b] = _mm512_loadu_ps(a + b * lda + k);
    for (int r = 0; r < R; ++r) {
      const __m512 wv = _mm512_loadu_ps(wj + r * K + k);
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_fmadd_ps(wv, x[b], acc[r][b]);
    }
  }
  if (k < K) {
    const __mmask16 m = static_cast<__mmask16>((1u << (K - k)) - 1u);
    __m512 x[NB];
    for (int b = 0; b < NB; ++b) x[b] = _mm512_maskz_loadu_ps(m, a + b * lda + k);
    for (int r = 0; r < R; ++r) {
      const __m512 wv = _mm512_maskz_loadu_ps(m, wj + r * K + k);
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_fmadd_ps(wv, x[b], acc[r][b]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) y[b * ldy + j + r] = _mm512_reduce_add_ps(acc[r][b]);
}

// Eight accumulators in flight (two FMA ports times four cycles of latency) for any NB.
template <int NB>
__attribute__((target("avx512f"))) void gemv_avx512(const float* w, const float* a, int64_t lda,
                                                    float* y, int64_t ldy, int64_t j0, int64_t j1,
                                                    int64_t K) {
  constexpr int R = NB == 1 ? 8 : NB == 2 ? 4 : 2;
  int64_t j = j0;
  for (; j + R <= j1; j += R) gemv_block_avx512<R, NB>(w, a, lda, y, ldy, j, K);
  for (; j < j1; ++j) gemv_block_avx512<1, NB>(w, a, lda, y, ldy, j, K);
}

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int R, int NB>
__attribute__((target("avx2,fma"))) inline void gemv_block_avx2(
    const float* __restrict w, const float* __restrict a, int64_t lda, float* __restrict y,
    int64_t ldy, int64_t j, int64_t K) {
  __m256 acc[R][NB];
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm256_setzero_ps();
  const float* __restrict wj = w + j * K;
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 x[NB];
    for (int b = 0; b < NB; ++b) x[b] = _mm256_loadu_ps(a + b * lda + k);
    for (int r = 0; r < R; ++r) {
      const __m256 wv = _mm256_loadu_ps(wj + r * K + k);
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm256_fmadd_ps(wv, x[b], acc[r][b]);
    }
  }
  if (k < K) {
    // Lane l is loaded when its mask's sign bit is set: l < K - k.
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(K - k)),
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 x[NB];
    for (int b = 0; b < NB; ++b) x[b] = _mm256_maskload_ps(a + b * lda + k, m);
    for (int r = 0; r < R; ++r) {
      const __m256 wv = _mm256_maskload_ps(wj + r * K + k, m);
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm256_fmadd_ps(wv, x[b], acc[r][b]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) y[b * ldy + j + r] = hsum256(acc[r][b]);
}

template <int NB>
__attribute__((target("avx2,fma"))) void gemv_avx2(const float* w, const float* a, int64_t lda,
                                                   float* y, int64_t ldy, int64_t j0, int64_t j1,
                                                   int64_t K) {
  constexpr int R = NB == 1 ? 8 : NB == 2 ? 4 : 2;
  int64_t j = j0;
  for (; j + R <= j1; j += R) gemv_block_avx2<R, NB>(w, a, lda, y, ldy, j, K);
  for (; j < j1; ++j) gemv_block_avx2<1, NB>(w, a, lda, y, ldy, j, K);
}

template <int NB>
void gemv_simd(Isa isa, const float* w, const float* a, int64_t lda, float* y, int64_t ldy,
               int64_t j0, int64_t j1, int64_t K) {
  if (isa == Isa::kAvx512)
    gemv_avx512<NB>(w, a, lda, y, ldy, j0, j1, K);
  else
    gemv_avx2<NB>(w, a, lda, y, ldy, j0, j1, K);
}

#endif  // x86-64

template <typename S>
void gemv_rows(const S* w, const S* a, int64_t lda, S* y, int64_t ldy, int64_t nb, int64_t j0,
               int64_t j1, int64_t K) {
#if defined(__x86_64__) && defined(__GNUC__)
  if constexpr (std::is_same_v<S, float>) {
    const Isa isa = static_cast<Isa>(g_isa.load(std::memory_order_relaxed));
    if (isa != Isa::kGeneric) {
      // Input rows in groups of at most four: each group reads w once.
      for (int64_t r = 0; r < nb;) {
        const int64_t g = std::min<int64_t>(nb - r, 4);
        const float* ar = a + r * lda;
        float* yr = y + r * ldy;
        switch (g) {
          case 1: gemv_simd<1>(isa, w, ar, lda, yr, ldy, j0, j1, K); break;
          case 2: gemv_simd<2>(isa, w, ar, lda, yr, ldy, j0, j1, K); break;
          case 3: gemv_simd<3>(isa, w, ar, lda, yr, ldy, j0, j1, K); break;
          default: gemv_simd<4>(isa, w, ar, lda, yr, ldy, j0, j1, K); break;
        }
        r += g;
      }
      return;
    }
  }
#endif
  gemv_generic(w, a, lda, y, ldy, nb, j0, j1, K);
}

// y(n, N) = a(n, K) @ M with M (K, N). `m` is M as BLAS takes it (often a transposed view);
// `mt` is M^T contiguous (N, K), only for the GEMV path, where each output is a contiguous dot.
// y(n, N) = a(n, K) @ w^T for n <= kGemvRows rows, w (N, K) row-major (contiguous).
template <typename S>
void small_gemv(const S* w, const S* a, S* y, int64_t n, int64_t K, int64_t N) {
  const int64_t nt = at::get_num_threads();
  if (nt > 1 && N * K * int64_t(sizeof(S)) >= g_split_bytes.load(std::memory_order_relaxed) &&
      !at::in_parallel_region()) {
    // One contiguous block of output rows per thread, the same block at every step (static
    // split), so that each core reads only its share of the weights, from its own cache.
    // Every row comes out bitwise as without the split: a row's dot product runs in one
    // order whatever group of rows it is computed with.
    const int64_t blocks = (N + kColBlock - 1) / kColBlock;
    at::parallel_for(0, blocks, (blocks + nt - 1) / nt, [&](int64_t b0, int64_t b1) {
      gemv_rows(w, a, K, y, N, n, b0 * kColBlock, std::min(N, b1 * kColBlock), K);
    });
  } else {
    gemv_rows(w, a, K, y, N, n, 0, N, K);
  }
}

// y(n, N) = a(n, K) @ w^T, w (N, K) contiguous: the GEMV up to kGemvRows rows, else BLAS.
template <typename S>
void rows_times(const Tensor& w, const S* a, S* y, int64_t n, int64_t K, int64_t N) {
  if (n <= 0) return;
  if (n <= kGemvRows) return small_gemv(w.data_ptr<S>(), a, y, n, K, N);
  auto opt = w.options();
  Tensor A = at::from_blob(const_cast<S*>(a), {n, K}, opt);
  Tensor Y = at::from_blob(y, {n, N}, opt);
  at::mm_out(Y, A, w.t());
}

template <typename S>
struct RowMatmul {
  Tensor m;
  Tensor mt;
  int64_t K = 0;
  int64_t N = 0;

  void operator()(const S* a, S* y, int64_t n) const {
    if (n <= 0) return;
    if (n <= kGemvRows) return small_gemv(mt.data_ptr<S>(), a, y, n, K, N);
    auto opt = m.options();
    Tensor A = at::from_blob(const_cast<S*>(a), {n, K}, opt);
    Tensor Y = at::from_blob(y, {n, N}, opt);
    at::mm_out(Y, A, m);
  }
};

// Runs f over row blocks of [0, n) on the intra-op threads. Too few rows for two blocks run as
// one call outside any parallel region, so that the BLAS inside it may still use every thread.
template <typename F>
void run_rows(int64_t n, int64_t grain, const F& f) {
  if (n <= 0) return;
  if (n > grain && at::get_num_threads() > 1 && !at::in_parallel_region()) {
    at::parallel_for(0, n, grain, f);
  } else {
    f(0, n);
  }
}

// Returns the contiguous tensor, or an undefined one for None; every argument must share xg's
// dtype, so that the kernels can take raw pointers of one scalar type. Detached, because the
// BLAS calls also run on worker threads, where grad mode is on whatever the caller set.
Tensor prep(const OptTensor& t, const Tensor& like, const char* name) {
  if (!t.has_value() || !t->defined()) return Tensor();
  TORCH_CHECK(t->device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t->layout() == at::kStrided, name, " must be a dense (strided) tensor");
  TORCH_CHECK(t->scalar_type() == like.scalar_type(), name, " must have dtype ",
              like.scalar_type(), ", got ", t->scalar_type());
  // detach() makes a new tensor: skipped where there is nothing to detach from.
  return t->requires_grad() ? t->detach().contiguous() : t->contiguous();
}

template <typename S>
inline S* ptr(const Tensor& t) {
  return t.defined() ? t.data_ptr<S>() : nullptr;
}

// Active rows at step t: all of B, or batch_sizes[t] for packed sequences.
struct Steps {
  const int64_t* bs = nullptr;
  int64_t T = 0;
  int64_t B = 0;
  bool reverse = false;
  int64_t time(int64_t s) const { return reverse ? T - 1 - s : s; }
  int64_t active(int64_t t) const { return bs ? bs[t] : B; }
};

Steps make_steps(const OptTensor& batch_sizes, int64_t T, int64_t B, bool reverse,
                 Tensor& keep) {
  Steps st;
  st.T = T;
  st.B = B;
  st.reverse = reverse;
  if (batch_sizes.has_value() && batch_sizes->defined()) {
    // No conversion: a float batch_sizes would be truncated into a different packing.
    TORCH_CHECK(batch_sizes->device().is_cpu() && batch_sizes->layout() == at::kStrided &&
                    batch_sizes->scalar_type() == at::kLong && batch_sizes->dim() == 1 &&
                    batch_sizes->size(0) == T,
                "batch_sizes must be a CPU int64 tensor of shape (T,) = (", T, ",)");
    keep = batch_sizes->contiguous();
    st.bs = keep.data_ptr<int64_t>();
    for (int64_t t = 0; t < T; ++t)
      TORCH_CHECK(st.bs[t] >= 0 && st.bs[t] <= B, "batch_sizes[", t, "] = ", st.bs[t],
                  " is outside [0, ", B, "]");
  }
  return st;
}

// -ffast-math lets the compiler assume that no value is NaN or infinite, so std::isfinite (and
// a comparison with NaN) may fold to a constant: test the exponent bits instead.
inline bool is_finite_bits(double x) {
  uint64_t u;
  std::memcpy(&u, &x, sizeof u);
  return ((u >> 52) & 0x7ff) != 0x7ff;
}

// Mean and 1/sqrt(var + eps) of x[0:N], biased variance, two passes as the reference.
template <typename S>
inline void ln_stats(const S* __restrict x, int64_t N, double eps, S& mean, S& rstd) {
  S sum = 0;
  for (int64_t k = 0; k < N; ++k) sum += x[k];
  mean = sum / S(N);
  S var = 0;
  for (int64_t k = 0; k < N; ++k) {
    const S d = x[k] - mean;
    var += d * d;
  }
  var /= S(N);
  rstd = S(1) / std::sqrt(var + S(eps));
}

// Adjoint of x_hat = (x - mean) * rstd with d x_hat = dy * w, written to dx or added to it.
template <typename S, bool kAccumulate>
inline void ln_backward(const S* __restrict dy, const S* __restrict w, const S* __restrict xh,
                        S rstd, S* __restrict dx, int64_t N) {
  S sd = 0, sdx = 0;
  for (int64_t k = 0; k < N; ++k) {
    const S d = dy[k] * w[k];
    sd += d;
    sdx += d * xh[k];
  }
  const S mean_d = sd / S(N), mean_dx = sdx / S(N);
  for (int64_t k = 0; k < N; ++k) {
    const S v = rstd * (dy[k] * w[k] - mean_d - xh[k] * mean_dx);
    if (kAccumulate)
      dx[k] += v;
    else
      dx[k] = v;
  }
}

// ---------------------------------------------------------------------------------------------
// Forward

struct Options {
  bool coupled;
  bool forget_gate;
  double eps;
};

// The recurrence's inputs (lstmkit.reference.recurrence.RecurrenceInputs), checked and
// contiguous; undefined where the Python field is None.
struct Args {
  Tensor xg, h0, c0, w_hh, b_hh, w_hr, w_ci, w_cf, w_co, ln_hh, ln_c_w, ln_c_b, zh, zc, dmask;
};

// What the forward keeps for the backward (lstmkit.reference.recurrence.SavedTensors).
struct Saved {
  Tensor gates, c_prev, h_in, c_new, c_out, r_hat, rstd_hh, c_hat, rstd_c, m;
};

// Which weight gradients are wanted (the fields of RecurrenceGrads; xg, h0 and c0 always are).
struct Need {
  bool w_hh = true, b_hh = true, w_hr = true, w_ci = true, w_cf = true, w_co = true,
       ln_hh = true, ln_c_w = true, ln_c_b = true;
};

// One row's elementwise math after the W_hh GEMM: layer norm, gates, cell, output, zoneout of
// c. Shared by the scan (forward_impl) and the streaming step (StepPlan), so that both give the
// same numbers. Null pointers: what the variant does not have, or what is not saved.
template <typename S>
struct CellWeights {
  const S *b_hh, *w_ci, *w_cf, *w_co, *ln_hh, *ln_c_w, *ln_c_b;  // w_cf only with w_ci
};

template <typename S>
struct CellRow {
  const S* x;     // (G) this step's xg row
  S* pre;         // (G) h_in W_hh^T on entry; overwritten with the pre-activations
  S* c;           // (H) the cell state: c_{t-1} on entry, c_t (after zoneout) on exit
  const S* zc;    // (H) zoneout of c (eval: z everywhere), or null
  S* gates;       // (G) i|f|g|o
  S* c_prev;      // (H) a copy of c_{t-1}, or null
  S* r_hat;       // (G) the normalised h_in W_hh^T, or null (then not kept)
  S* rstd_hh;     // (1) or null
  S* c_new;       // (H)
  S* c_hat;       // (H) with the cell layer norm
  S* c_out;       // (H) with the cell layer norm
  S* rstd_c;      // (1) or null
  S* m;           // (H) o * tanh(c_out)
};

template <typename S>
inline void cell_row(const CellRow<S>& r, const CellWeights<S>& w, int64_t H, const Options& o) {
  const int64_t G = 4 * H;
  const S* __restrict x = r.x;
  S* __restrict pre = r.pre;
  const S* cp = r.c;  // the state entering this step; the last loop updates it
  S* __restrict gs = r.gates;
  if (r.c_prev) std::copy(cp, cp + H, r.c_prev);

  if (w.ln_hh) {
    S mean, rstd;
    ln_stats(pre, G, o.eps, mean, rstd);
    if (r.r_hat) {
      S* __restrict rh = r.r_hat;
      for (int64_t k = 0; k < G; ++k) rh[k] = (pre[k] - mean) * rstd;
      for (int64_t k = 0; k < G; ++k) pre[k] = x[k] + rh[k] * w.ln_hh[k];
    } else {
      for (int64_t k = 0; k < G; ++k) pre[k] = x[k] + ((pre[k] - mean) * rstd) * w.ln_hh[k];
    }
    if (r.rstd_hh) *r.rstd_hh = rstd;
  } else {
    for (int64_t k = 0; k < G; ++k) pre[k] = x[k] + pre[k];
  }
  if (w.b_hh)
    for (int64_t k = 0; k < G; ++k) pre[k] += w.b_hh[k];
  S* __restrict ipre = pre;
  S* __restrict fpre = pre + H;
  S* __restrict gpre = pre + 2 * H;
  S* __restrict opre = pre + 3 * H;
  if (w.w_ci) {
    for (int64_t k = 0; k < H; ++k) ipre[k] += w.w_ci[k] * cp[k];
    if (w.w_cf)
      for (int64_t k = 0; k < H; ++k) fpre[k] += w.w_cf[k] * cp[k];
  }
  S* __restrict ig = gs;
  S* __restrict fg = gs + H;
  S* __restrict gg = gs + 2 * H;
  S* __restrict og = gs + 3 * H;
  for (int64_t k = 0; k < H; ++k) ig[k] = sigmoid(ipre[k]);
  for (int64_t k = 0; k < H; ++k) gg[k] = std::tanh(gpre[k]);
  if (o.coupled) {
    for (int64_t k = 0; k < H; ++k) fg[k] = S(1) - ig[k];
  } else if (!o.forget_gate) {
    for (int64_t k = 0; k < H; ++k) fg[k] = S(1);
  } else {
    for (int64_t k = 0; k < H; ++k) fg[k] = sigmoid(fpre[k]);
  }
  S* __restrict cn = r.c_new;
  for (int64_t k = 0; k < H; ++k) cn[k] = fg[k] * cp[k] + ig[k] * gg[k];
  if (w.w_co)
    for (int64_t k = 0; k < H; ++k) opre[k] += w.w_co[k] * cn[k];
  for (int64_t k = 0; k < H; ++k) og[k] = sigmoid(opre[k]);

  const S* co = cn;
  if (w.ln_c_w) {
    S mean, rstd;
    ln_stats(cn, H, o.eps, mean, rstd);
    S* __restrict ch = r.c_hat;
    S* __restrict cout = r.c_out;
    for (int64_t k = 0; k < H; ++k) ch[k] = (cn[k] - mean) * rstd;
    if (w.ln_c_b) {
      for (int64_t k = 0; k < H; ++k) cout[k] = ch[k] * w.ln_c_w[k] + w.ln_c_b[k];
    } else {
      for (int64_t k = 0; k < H; ++k) cout[k] = ch[k] * w.ln_c_w[k];
    }
    if (r.rstd_c) *r.rstd_c = rstd;
    co = cout;
  }
  S* __restrict m = r.m;
  for (int64_t k = 0; k < H; ++k) m[k] = og[k] * std::tanh(co[k]);

  S* cs = r.c;  // cp aliases this row: the update must come last
  if (r.zc) {
    const S* __restrict z = r.zc;
    for (int64_t k = 0; k < H; ++k) cs[k] = z[k] * cs[k] + (S(1) - z[k]) * cn[k];
  } else {
    std::copy(cn, cn + H, cs);
  }
}

template <typename S>
std::pair<std::vector<Tensor>, Saved> forward_impl(const Args& a, const Steps& st,
                                                   const Options& o, bool save) {
  const Tensor &xg = a.xg, &h0 = a.h0, &c0 = a.c0, &w_hh = a.w_hh, &b_hh = a.b_hh;
  const Tensor &w_hr = a.w_hr, &w_ci = a.w_ci, &w_cf = a.w_cf, &w_co = a.w_co;
  const Tensor &ln_hh = a.ln_hh, &ln_c_w = a.ln_c_w, &ln_c_b = a.ln_c_b;
  const Tensor &zh = a.zh, &zc = a.zc, &dmask = a.dmask;
  const int64_t T = xg.size(0), B = xg.size(1), G = xg.size(2), H = G / 4, P = h0.size(1);
  const auto opt = xg.options();
  const bool proj = w_hr.defined(), packed = st.bs != nullptr;
  // Inactive rows of out (and of the saved tensors) must read as zeros, as in the reference.
  auto alloc = [&](std::initializer_list<int64_t> shape) {
    return packed ? at::zeros(shape, opt) : at::empty(shape, opt);
  };

  Tensor h = h0.clone(), c = c0.clone();
  Tensor out = alloc({T, B, P});
  Tensor s_gates, s_c_prev, s_h_in, s_c_new, s_c_out, s_r_hat, s_rstd_hh, s_c_hat, s_rstd_c, s_m;
  if (save) {
    s_gates = alloc({T, B, G});
    s_c_prev = alloc({T, B, H});
    s_h_in = alloc({T, B, P});
    s_c_new = alloc({T, B, H});
    // Without the cell layer norm c_out is c_new: one tensor under both names.
    s_c_out = ln_c_w.defined() ? alloc({T, B, H}) : s_c_new;
    if (ln_hh.defined()) {
      s_r_hat = alloc({T, B, G});
      s_rstd_hh = alloc({T, B, 1});
    }
    if (ln_c_w.defined()) {
      s_c_hat = alloc({T, B, H});
      s_rstd_c = alloc({T, B, 1});
    }
    if (proj) s_m = alloc({T, B, H});
  }
  // Per-row scratch standing in for the saved tensors when nothing is saved.
  // One allocation for all of them: at T=1 (a streaming call) every allocation is a visible
  // share of the call.
  Tensor scratch = at::empty({B * (2 * G + 4 * H + 2 * P)}, opt);
  S* const scratch0 = scratch.data_ptr<S>();
  S *PRE = scratch0, *GB = PRE + B * G;  // h_in W_hh^T, then the gate pre-activations; gates
  S *CB = GB + B * G, *MB = CB + B * 3 * H;  // c_new | c_hat | c_out; m (projection)
  S *HIN = MB + B * H, *HNEW = HIN + B * P;

  RowMatmul<S> mm_hh{w_hh.t(), w_hh, P, G};
  RowMatmul<S> mm_hr;
  if (proj) mm_hr = RowMatmul<S>{w_hr.t(), w_hr, H, P};

  const S* X = xg.data_ptr<S>();
  S* Hs = h.data_ptr<S>();
  S* Cs = c.data_ptr<S>();
  S* OUT = out.data_ptr<S>();
  const S *Bhh = ptr<S>(b_hh), *Wci = ptr<S>(w_ci), *Wcf = ptr<S>(w_cf), *Wco = ptr<S>(w_co);
  const S *LNhh = ptr<S>(ln_hh), *LNw = ptr<S>(ln_c_w), *LNb = ptr<S>(ln_c_b);
  const S *ZH = ptr<S>(zh), *ZC = ptr<S>(zc), *DM = ptr<S>(dmask);
  S *sG = ptr<S>(s_gates), *sCP = ptr<S>(s_c_prev), *sHI = ptr<S>(s_h_in);
  S *sCN = ptr<S>(s_c_new), *sCO = ptr<S>(s_c_out), *sRH = ptr<S>(s_r_hat);
  S *sRS = ptr<S>(s_rstd_hh), *sCH = ptr<S>(s_c_hat), *sRC = ptr<S>(s_rstd_c), *sM = ptr<S>(s_m);
  // Peepholes on f only come with the one on i, exactly as the reference reads them.
  const S* Wcf_used = Wci ? Wcf : nullptr;
  const int64_t grain = std::max<int64_t>(1, kRowGrainWork / G);

  // Everything after the GEMM for one row: layer norm, gates, cell, output, zoneout.
  const CellWeights<S> cw{Bhh, Wci, Wcf_used, Wco, LNhh, LNw, LNb};
  auto row = [&](int64_t t, int64_t b) {
    const int64_t tb = t * B + b;
    CellRow<S> r;
    r.x = X + tb * G;
    r.pre = PRE + b * G;
    r.c = Cs + b * H;
    r.zc = ZC ? ZC + tb * H : nullptr;
    r.gates = save ? sG + tb * G : GB + b * G;
    r.c_prev = save ? sCP + tb * H : nullptr;
    r.r_hat = save && LNhh ? sRH + tb * G : nullptr;
    r.rstd_hh = save && LNhh ? sRS + tb : nullptr;
    r.c_new = save ? sCN + tb * H : CB + b * 3 * H;
    r.c_hat = save && LNw ? sCH + tb * H : CB + b * 3 * H + H;
    r.c_out = save && LNw ? sCO + tb * H : CB + b * 3 * H + 2 * H;
    r.rstd_c = save && LNw ? sRC + tb : nullptr;
    // Without a projection m is h_new itself, so it goes where finish_h reads h_new.
    r.m = proj ? (save ? sM + tb * H : MB + b * H) : HNEW + b * P;
    cell_row(r, cw, H, o);
  };

  // h_next = zoneout(h_new), into the output and the state.
  auto finish_h = [&](int64_t t, int64_t b) {
    const int64_t tb = t * B + b;
    const S* __restrict hn = HNEW + b * P;
    S* __restrict hs = Hs + b * P;
    S* __restrict ot = OUT + tb * P;
    if (ZH) {
      const S* __restrict z = ZH + tb * P;
      for (int64_t k = 0; k < P; ++k) {
        const S v = z[k] * hs[k] + (S(1) - z[k]) * hn[k];
        ot[k] = v;
        hs[k] = v;
      }
    } else {
      std::copy(hn, hn + P, ot);
      std::copy(hn, hn + P, hs);
    }
  };

  // h_in: what multiplies W_hh. Without dropout and saving it is the state itself.
  auto prep_hin = [&](int64_t t, int64_t b0, int64_t b1) -> const S* {
    const S* hin = Hs + b0 * P;
    if (DM || save) {
      const int64_t nb = b1 - b0;
      S* dst = (save ? sHI + t * B * P : HIN) + b0 * P;
      if (DM) {
        const S* mk = DM + b0 * P;
        for (int64_t i = 0; i < nb * P; ++i) dst[i] = hin[i] * mk[i];
      } else {
        std::copy(hin, hin + nb * P, dst);
      }
      hin = dst;
    }
    return hin;
  };
  // Everything after the W_hh GEMM, on a block of rows.
  auto rows_after_gemm = [&](int64_t t, int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) row(t, b);
    if (proj) mm_hr((save ? sM + t * B * H : MB) + b0 * H, HNEW + b0 * P, b1 - b0);
    for (int64_t b = b0; b < b1; ++b) finish_h(t, b);
  };
  // Small steps (the GEMV path, or too little work for two threads) run whole on one block of
  // rows, without a second fork/join, while the block's GEMM rows are still in cache.
  auto step_rows = [&](int64_t t, int64_t b0, int64_t b1) {
    mm_hh(prep_hin(t, b0, b1), PRE + b0 * G, b1 - b0);
    rows_after_gemm(t, b0, b1);
  };
  // Larger steps split the W_hh GEMM over output columns, then the row math over rows. With a
  // row split every thread multiplies by all of W_hh (G x P, 1 MiB at H=256, as large as a
  // core's L2 here), so each streams it from L3 at every step; with a column split each thread
  // touches only its half, which stays in its L2 across steps. Measured on 2 cores at B=32,
  // H=256 (the recurrence alone, interleaved A/B): the GEMM drops from ~157 to ~131 us per
  // step, about 5-10% of the no-grad forward, which outweighs the second fork/join per step.
  const int64_t col_blocks = (G + kColBlock - 1) / kColBlock;
  auto step_cols = [&](int64_t t, int64_t n) {
    const S* hin = prep_hin(t, 0, n);
    at::parallel_for(0, col_blocks, 1, [&](int64_t j0, int64_t j1) {
      const int64_t c0 = j0 * kColBlock, c1 = std::min(G, j1 * kColBlock);
      // PRE[:, c0:c1] = hin @ W_hh[c0:c1, :]^T, written in place: BLAS takes the row stride G.
      Tensor A = at::from_blob(const_cast<S*>(hin), {n, P}, opt);
      Tensor Y = at::from_blob(PRE + c0, {n, c1 - c0}, {G, 1}, opt);
      at::mm_out(Y, A, w_hh.narrow(0, c0, c1 - c0).t());
    });
    run_rows(n, grain, [&](int64_t b0, int64_t b1) { rows_after_gemm(t, b0, b1); });
  };
  const bool col_split = at::get_num_threads() > 1 && !at::in_parallel_region();
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = st.time(s);
    const int64_t n = st.active(t);
    if (col_split && n > kGemvRows && n > grain) {
      step_cols(t, n);
    } else {
      run_rows(n, grain, [&](int64_t b0, int64_t b1) { step_rows(t, b0, b1); });
    }
  }

  return {{out, h, c},
          Saved{s_gates, s_c_prev, s_h_in, s_c_new, s_c_out, s_r_hat, s_rstd_hh, s_c_hat,
                s_rstd_c, s_m}};
}

// ---------------------------------------------------------------------------------------------
// Backward

template <typename S>
std::vector<Tensor> backward_impl(const Args& a, const Saved& sv,
                                  const Tensor& dout,  // (T, B, P)
                                  const Tensor& dh_n,  // (B, P)
                                  const Tensor& dc_n,  // (B, H)
                                  const Steps& st, const Options& o, const Need& need) {
  const Tensor &xg = a.xg, &h0 = a.h0, &w_hh = a.w_hh, &b_hh = a.b_hh;
  const Tensor &w_hr = a.w_hr, &w_ci = a.w_ci, &w_cf = a.w_cf, &w_co = a.w_co;
  const Tensor &ln_hh = a.ln_hh, &ln_c_w = a.ln_c_w, &ln_c_b = a.ln_c_b;
  const Tensor &zh = a.zh, &zc = a.zc, &dmask = a.dmask;
  const Tensor &s_gates = sv.gates, &s_c_prev = sv.c_prev, &s_h_in = sv.h_in;
  const Tensor &s_c_new = sv.c_new, &s_c_out = sv.c_out, &s_r_hat = sv.r_hat;
  const Tensor &s_rstd_hh = sv.rstd_hh, &s_c_hat = sv.c_hat, &s_rstd_c = sv.rstd_c;
  const Tensor &s_m = sv.m;
  const int64_t T = xg.size(0), B = xg.size(1), G = xg.size(2), H = G / 4, P = h0.size(1);
  const auto opt = xg.options();
  const bool proj = w_hr.defined(), packed = st.bs != nullptr;
  auto alloc = [&](std::initializer_list<int64_t> shape) {
    return packed ? at::zeros(shape, opt) : at::empty(shape, opt);
  };
  const bool peep = w_ci.defined();

  Tensor dh = dh_n.clone(), dc = dc_n.clone();
  Tensor dxg = alloc({T, B, G});
  // The adjoint of h_in W_hh^T differs from dxg only through the recurrent layer norm.
  Tensor d_rec = ln_hh.defined() ? alloc({T, B, G}) : dxg;
  Tensor dhn_all = proj ? alloc({T, B, P}) : Tensor();
  // The small weight grads (biases, peepholes, layer norm gains) are summed while each row's
  // adjoints are still in cache: one accumulator row per batch row, so that threads never share
  // one and the result does not depend on the thread count; summed over rows after the loop.
  int64_t acc_len = 0;
  auto slot = [&](bool wanted, int64_t len) {
    if (!wanted) return int64_t(-1);
    acc_len += len;
    return acc_len - len;
  };
  const int64_t o_bhh = slot(b_hh.defined() && need.b_hh, G);
  const int64_t o_lnhh = slot(ln_hh.defined() && need.ln_hh, G);
  const int64_t o_ci = slot(peep && need.w_ci, H);
  const int64_t o_cf = slot(peep && w_cf.defined() && need.w_cf, H);
  const int64_t o_co = slot(w_co.defined() && need.w_co, H);
  const int64_t o_lncw = slot(ln_c_w.defined() && need.ln_c_w, H);
  const int64_t o_lncb = slot(ln_c_w.defined() && ln_c_b.defined() && need.ln_c_b, H);
  Tensor acc = at::zeros({B, acc_len}, opt);
  Tensor dm_buf = at::empty({B, H}, opt);
  Tensor dhin_buf = at::empty({B, P}, opt);
  Tensor scratch = at::empty({B, 2 * H}, opt);  // dc_new | dc_out

  RowMatmul<S> mm_hh;  // dr (n, G) @ W_hh (G, P)
  mm_hh.m = w_hh;
  mm_hh.K = G;
  mm_hh.N = P;
  // The transposed copies feed the GEMV path, which small row blocks take at any B.
  mm_hh.mt = w_hh.t().contiguous();
  RowMatmul<S> mm_hr;  // dh_new (n, P) @ W_hr (P, H)
  if (proj) {
    mm_hr.m = w_hr;
    mm_hr.K = P;
    mm_hr.N = H;
    mm_hr.mt = w_hr.t().contiguous();
  }

  S *DH = dh.data_ptr<S>(), *DC = dc.data_ptr<S>(), *DXG = dxg.data_ptr<S>();
  S *DREC = d_rec.data_ptr<S>(), *DHN = ptr<S>(dhn_all), *ACC = acc.data_ptr<S>();
  S *DM = dm_buf.data_ptr<S>(), *DHIN = dhin_buf.data_ptr<S>(), *SCR = scratch.data_ptr<S>();
  const S* DOUT = dout.data_ptr<S>();
  const S *Wci = ptr<S>(w_ci), *Wcf = ptr<S>(w_cf), *Wco = ptr<S>(w_co);
  const S *LNhh = ptr<S>(ln_hh), *LNw = ptr<S>(ln_c_w);
  const S *ZH = ptr<S>(zh), *ZC = ptr<S>(zc), *MASK = ptr<S>(dmask);
  const S *sG = ptr<S>(s_gates), *sCP = ptr<S>(s_c_prev), *sCN = ptr<S>(s_c_new);
  const S *sCO = ptr<S>(s_c_out), *sRH = ptr<S>(s_r_hat), *sRS = ptr<S>(s_rstd_hh);
  const S *sCH = ptr<S>(s_c_hat), *sRC = ptr<S>(s_rstd_c);
  const S* Wcf_used = Wci ? Wcf : nullptr;
  const int64_t grain = std::max<int64_t>(1, kRowGrainWork / G);

  // dh_t = dh + dout stays in the dh state (dh_keep is read from it at the end of the step);
  // dh_new = (1 - z_h) dh_t goes to dhn_all (projection) or straight to dm.
  auto head = [&](int64_t t, int64_t b) {
    const int64_t tb = t * B + b;
    S* __restrict dh_t = DH + b * P;
    const S* __restrict dout_t = DOUT + tb * P;
    for (int64_t k = 0; k < P; ++k) dh_t[k] += dout_t[k];
    S* __restrict dh_new = proj ? DHN + tb * P : DM + b * H;
    if (ZH) {
      const S* __restrict z = ZH + tb * P;
      for (int64_t k = 0; k < P; ++k) dh_new[k] = (S(1) - z[k]) * dh_t[k];
    } else {
      std::copy(dh_t, dh_t + P, dh_new);
    }
  };

  // From dm to the gate adjoints, dc_{t-1} and (with the recurrent layer norm) dr.
  auto body = [&](int64_t t, int64_t b) {
    const int64_t tb = t * B + b;
    const S* __restrict gs = sG + tb * G;
    const S* __restrict ig = gs;
    const S* __restrict fg = gs + H;
    const S* __restrict gg = gs + 2 * H;
    const S* __restrict og = gs + 3 * H;
    const S* __restrict dm = DM + b * H;
    const S* __restrict co = sCO + tb * H;
    const S* __restrict cp = sCP + tb * H;
    S* __restrict dc_t = DC + b * H;
    S* __restrict dcn = SCR + b * 2 * H;
    S* __restrict dco = SCR + b * 2 * H + H;
    S* __restrict dxr = DXG + tb * G;
    S* __restrict di_pre = dxr;
    S* __restrict df_pre = dxr + H;
    S* __restrict dg_pre = dxr + 2 * H;
    S* __restrict do_pre = dxr + 3 * H;

    if (ZC) {
      const S* __restrict z = ZC + tb * H;
      for (int64_t k = 0; k < H; ++k) dcn[k] = (S(1) - z[k]) * dc_t[k];
    } else {
      std::copy(dc_t, dc_t + H, dcn);
    }
    for (int64_t k = 0; k < H; ++k) {
      const S tc = std::tanh(co[k]);
      const S d_o = dm[k] * tc;
      dco[k] = dm[k] * og[k] * (S(1) - tc * tc);
      do_pre[k] = d_o * og[k] * (S(1) - og[k]);
    }
    if (LNw) {
      ln_backward<S, true>(dco, LNw, sCH + tb * H, sRC[tb], dcn, H);
    } else {
      for (int64_t k = 0; k < H; ++k) dcn[k] += dco[k];
    }
    if (Wco)
      for (int64_t k = 0; k < H; ++k) dcn[k] += do_pre[k] * Wco[k];

    // dc_{t-1} = dc_new f + z_c dc overwrites dc_t in place, element by element.
    if (ZC) {
      const S* __restrict z = ZC + tb * H;
      for (int64_t k = 0; k < H; ++k) dc_t[k] = dcn[k] * fg[k] + z[k] * dc_t[k];
    } else {
      for (int64_t k = 0; k < H; ++k) dc_t[k] = dcn[k] * fg[k];
    }
    if (o.coupled) {
      for (int64_t k = 0; k < H; ++k) {
        const S di = dcn[k] * gg[k] - dcn[k] * cp[k];
        di_pre[k] = di * ig[k] * (S(1) - ig[k]);
        df_pre[k] = S(0);
      }
    } else if (!o.forget_gate) {
      for (int64_t k = 0; k < H; ++k) {
        di_pre[k] = dcn[k] * gg[k] * ig[k] * (S(1) - ig[k]);
        df_pre[k] = S(0);
      }
    } else {
      for (int64_t k = 0; k < H; ++k) {
        di_pre[k] = dcn[k] * gg[k] * ig[k] * (S(1) - ig[k]);
        df_pre[k] = dcn[k] * cp[k] * fg[k] * (S(1) - fg[k]);
      }
    }
    for (int64_t k = 0; k < H; ++k) dg_pre[k] = dcn[k] * ig[k] * (S(1) - gg[k] * gg[k]);
    if (Wci) {
      for (int64_t k = 0; k < H; ++k) dc_t[k] += di_pre[k] * Wci[k];
      if (Wcf_used)
        for (int64_t k = 0; k < H; ++k) dc_t[k] += df_pre[k] * Wcf_used[k];
    }
    if (LNhh) ln_backward<S, false>(dxr, LNhh, sRH + tb * G, sRS[tb], DREC + tb * G, G);

    S* __restrict acc_b = ACC + b * acc_len;
    if (o_bhh >= 0) {
      S* __restrict a = acc_b + o_bhh;
      for (int64_t k = 0; k < G; ++k) a[k] += dxr[k];
    }
    if (o_lnhh >= 0) {
      S* __restrict a = acc_b + o_lnhh;
      const S* __restrict rh = sRH + tb * G;
      for (int64_t k = 0; k < G; ++k) a[k] += dxr[k] * rh[k];
    }
    if (o_ci >= 0) {
      S* __restrict a = acc_b + o_ci;
      for (int64_t k = 0; k < H; ++k) a[k] += di_pre[k] * cp[k];
    }
    if (o_cf >= 0) {
      S* __restrict a = acc_b + o_cf;
      for (int64_t k = 0; k < H; ++k) a[k] += df_pre[k] * cp[k];
    }
    if (o_co >= 0) {
      S* __restrict a = acc_b + o_co;
      const S* __restrict cn = sCN + tb * H;
      for (int64_t k = 0; k < H; ++k) a[k] += do_pre[k] * cn[k];
    }
    if (o_lncw >= 0) {
      S* __restrict a = acc_b + o_lncw;
      const S* __restrict ch = sCH + tb * H;
      for (int64_t k = 0; k < H; ++k) a[k] += dco[k] * ch[k];
    }
    if (o_lncb >= 0) {
      S* __restrict a = acc_b + o_lncb;
      for (int64_t k = 0; k < H; ++k) a[k] += dco[k];
    }
  };

  // dh_{t-1} = (dr W_hh) * mask + z_h dh_t.
  auto tail = [&](int64_t t, int64_t b) {
    const int64_t tb = t * B + b;
    const S* __restrict din = DHIN + b * P;
    S* __restrict dh_t = DH + b * P;
    if (ZH) {
      const S* __restrict z = ZH + tb * P;
      if (MASK) {
        const S* __restrict mk = MASK + b * P;
        for (int64_t k = 0; k < P; ++k) dh_t[k] = din[k] * mk[k] + z[k] * dh_t[k];
      } else {
        for (int64_t k = 0; k < P; ++k) dh_t[k] = din[k] + z[k] * dh_t[k];
      }
    } else {
      const S* __restrict mk = MASK + b * P;
      for (int64_t k = 0; k < P; ++k) dh_t[k] = din[k] * mk[k];
    }
  };

  // As in the forward, each thread runs the whole step on its block of rows.
  auto step = [&](int64_t t, int64_t b0, int64_t b1) {
    const int64_t nb = b1 - b0;
    for (int64_t b = b0; b < b1; ++b) head(t, b);
    if (proj) mm_hr(DHN + (t * B + b0) * P, DM + b0 * H, nb);
    for (int64_t b = b0; b < b1; ++b) body(t, b);
    // Without zoneout and dropout dh_{t-1} is the GEMM itself, written straight into dh.
    if (!ZH && !MASK) {
      mm_hh(DREC + (t * B + b0) * G, DH + b0 * P, nb);
    } else {
      mm_hh(DREC + (t * B + b0) * G, DHIN + b0 * P, nb);
      for (int64_t b = b0; b < b1; ++b) tail(t, b);
    }
  };
  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = st.time(s);
    run_rows(st.active(t), grain, [&](int64_t b0, int64_t b1) { step(t, b0, b1); });
  }

  const int64_t R = T * B;
  Tensor dw_hh, db_hh, dw_hr, dw_ci, dw_cf, dw_co, dln_hh, dln_c_w, dln_c_b;
  // One GEMM each for the recurrent weights over all steps, as the reference.
  if (need.w_hh) dw_hh = at::mm(d_rec.view({R, G}).t(), s_h_in.view({R, P}));
  if (proj && need.w_hr) dw_hr = at::mm(dhn_all.view({R, P}).t(), s_m.view({R, H}));
  Tensor acc_sum = acc_len > 0 ? acc.sum(0) : acc;
  auto take = [&](int64_t off, int64_t len) { return acc_sum.narrow(0, off, len).clone(); };
  if (o_bhh >= 0) db_hh = take(o_bhh, G);
  if (o_lnhh >= 0) dln_hh = take(o_lnhh, G);
  if (o_ci >= 0) dw_ci = take(o_ci, H);
  if (o_co >= 0) dw_co = take(o_co, H);
  if (o_lncw >= 0) dln_c_w = take(o_lncw, H);
  // Unused by the forward (no peephole on i, no cell layer norm), so zero, as in the reference.
  if (w_cf.defined() && need.w_cf) dw_cf = o_cf >= 0 ? take(o_cf, H) : at::zeros_like(w_cf);
  if (ln_c_b.defined() && need.ln_c_b)
    dln_c_b = o_lncb >= 0 ? take(o_lncb, H) : at::zeros_like(ln_c_b);
  return {dxg, dh, dc, dw_hh, db_hh, dw_hr, dw_ci, dw_cf, dw_co, dln_hh, dln_c_w, dln_c_b};
}

// ---------------------------------------------------------------------------------------------
// Entry points. The tensors come as the NamedTuples of lstmkit.reference.recurrence and are
// read once, by field name, into the structs above; the options likewise from CellOptions.

namespace py = pybind11;

OptTensor field(const py::handle& obj, const char* name) {
  return obj.attr(name).cast<OptTensor>();
}

Args check_args(const py::handle& inputs) {
  const OptTensor xg_opt = field(inputs, "xg");
  TORCH_CHECK(xg_opt.has_value() && xg_opt->defined(), "xg is required");
  const Tensor& xg_in = *xg_opt;
  TORCH_CHECK(xg_in.device().is_cpu(), "the fused CPU LSTM needs CPU tensors");
  TORCH_CHECK(xg_in.layout() == at::kStrided, "xg must be a dense (strided) tensor");
  // H >= 1: the row grain divides by 4H.
  TORCH_CHECK(xg_in.dim() == 3 && xg_in.size(2) > 0 && xg_in.size(2) % 4 == 0,
              "xg must be (T, B, 4H) with H >= 1");
  auto get = [&](const char* name) { return prep(field(inputs, name), xg_in, name); };
  Args a;
  a.xg = xg_in.requires_grad() ? xg_in.detach().contiguous() : xg_in.contiguous();
  a.h0 = get("h0");
  a.c0 = get("c0");
  a.w_hh = get("weight_hh");
  a.b_hh = get("bias_hh");
  a.w_hr = get("weight_hr");
  a.w_ci = get("weight_ci");
  a.w_cf = get("weight_cf");
  a.w_co = get("weight_co");
  a.ln_hh = get("ln_weight_hh");
  a.ln_c_w = get("ln_weight_c");
  a.ln_c_b = get("ln_bias_c");
  a.zh = get("zoneout_h");
  a.zc = get("zoneout_c");
  a.dmask = get("dropout_h");
  TORCH_CHECK(a.h0.defined() && a.c0.defined() && a.w_hh.defined(),
              "h0, c0 and weight_hh are required");
  const int64_t T = a.xg.size(0), B = a.xg.size(1), G = a.xg.size(2), H = G / 4;
  TORCH_CHECK(a.h0.dim() == 2 && a.h0.size(0) == B && a.h0.size(1) > 0,
              "h0 must be (B, P) with P >= 1");
  const int64_t P = a.h0.size(1);
  TORCH_CHECK(a.c0.sizes() == at::IntArrayRef({B, H}), "c0 must be (B, H)");
  TORCH_CHECK(a.w_hh.sizes() == at::IntArrayRef({G, P}), "weight_hh must be (4H, P)");
  auto check = [](const Tensor& t, at::IntArrayRef shape, const char* name) {
    TORCH_CHECK(!t.defined() || t.sizes() == shape, name, " must have shape ", shape, ", got ",
                t.sizes());
  };
  check(a.b_hh, {G}, "bias_hh");
  check(a.w_hr, {P, H}, "weight_hr");
  TORCH_CHECK(a.w_hr.defined() || P == H, "without weight_hr, h must have H features");
  check(a.w_ci, {H}, "weight_ci");
  check(a.w_cf, {H}, "weight_cf");
  check(a.w_co, {H}, "weight_co");
  check(a.ln_hh, {G}, "ln_weight_hh");
  check(a.ln_c_w, {H}, "ln_weight_c");
  check(a.ln_c_b, {H}, "ln_bias_c");
  check(a.zh, {T, B, P}, "zoneout_h");
  check(a.zc, {T, B, H}, "zoneout_c");
  check(a.dmask, {B, P}, "dropout_h");
  return a;
}

// One call's arguments: the inputs, the time order and packing, the options.
struct Recurrence {
  Args a;
  Steps st;
  Options o;
  Tensor bs_keep;  // owns the batch_sizes that st.bs points into
};

Recurrence unpack(const py::handle& inputs, const OptTensor& batch_sizes, bool reverse,
                  const py::handle& opts) {
  Recurrence r;
  r.a = check_args(inputs);
  r.st = make_steps(batch_sizes, r.a.xg.size(0), r.a.xg.size(1), reverse, r.bs_keep);
  r.o = Options{opts.attr("coupled").cast<bool>(), opts.attr("forget_gate").cast<bool>(),
                opts.attr("layer_norm_eps").cast<double>()};
  TORCH_CHECK(!(r.a.ln_hh.defined() || r.a.ln_c_w.defined()) ||
                  (is_finite_bits(r.o.eps) && r.o.eps > 0),
              "layer_norm_eps must be positive and finite, got ", r.o.eps);
  return r;
}

// out, h_n, c_n and, when save, {name: saved tensor} (None where the variant has none).
py::tuple lstm_forward(const py::object& inputs, const OptTensor& batch_sizes, bool reverse,
                       const py::object& opts, bool save) {
  Recurrence r = unpack(inputs, batch_sizes, reverse, opts);
  std::pair<std::vector<Tensor>, Saved> res;
  AT_DISPATCH_FLOATING_TYPES(r.a.xg.scalar_type(), "lstmkit_lstm_forward", [&] {
    res = forward_impl<scalar_t>(r.a, r.st, r.o, save);
  });
  const auto& [outs, sv] = res;
  py::object saved = py::none();
  if (save) {
    py::dict d;
    d["gates"] = sv.gates;
    d["c_prev"] = sv.c_prev;
    d["h_in"] = sv.h_in;
    d["c_new"] = sv.c_new;
    d["c_out"] = sv.c_out;
    d["r_hat"] = sv.r_hat;
    d["rstd_hh"] = sv.rstd_hh;
    d["c_hat"] = sv.c_hat;
    d["rstd_c"] = sv.rstd_c;
    d["m"] = sv.m;
    saved = d;
  }
  return py::make_tuple(outs[0], outs[1], outs[2], saved);
}

// {name: grad} for the fields of RecurrenceGrads (None where absent or not needed).
py::dict lstm_backward(const py::object& inputs, const py::object& saved, const Tensor& dout,
                       const Tensor& dh_n, const Tensor& dc_n, const OptTensor& batch_sizes,
                       bool reverse, const py::object& opts, const py::object& needs) {
  Recurrence r = unpack(inputs, batch_sizes, reverse, opts);
  const Args& a = r.a;
  const int64_t T = a.xg.size(0), B = a.xg.size(1), G = a.xg.size(2), H = G / 4;
  const int64_t P = a.h0.size(1);
  Need need;
  if (!needs.is_none()) {
    auto want = [&](const char* name) { return needs.attr(name).cast<bool>(); };
    need = Need{want("weight_hh"), want("bias_hh"),      want("weight_hr"),
                want("weight_ci"), want("weight_cf"),    want("weight_co"),
                want("ln_weight_hh"), want("ln_weight_c"), want("ln_bias_c")};
  }
  auto req = [&](const OptTensor& t, at::IntArrayRef shape, const char* name, bool wanted) {
    Tensor x = prep(t, a.xg, name);
    TORCH_CHECK(!wanted || x.defined(), "saved tensor ", name, " is missing");
    TORCH_CHECK(!x.defined() || x.sizes() == shape, "saved ", name, " must have shape ", shape);
    return x;
  };
  auto s = [&](const char* name) { return field(saved, name); };
  Saved sv;
  sv.gates = req(s("gates"), {T, B, G}, "gates", true);
  sv.c_prev = req(s("c_prev"), {T, B, H}, "c_prev", true);
  sv.h_in = req(s("h_in"), {T, B, P}, "h_in", true);
  sv.c_new = req(s("c_new"), {T, B, H}, "c_new", true);
  sv.c_out = req(s("c_out"), {T, B, H}, "c_out", true);
  sv.r_hat = req(s("r_hat"), {T, B, G}, "r_hat", a.ln_hh.defined());
  sv.rstd_hh = req(s("rstd_hh"), {T, B, 1}, "rstd_hh", a.ln_hh.defined());
  sv.c_hat = req(s("c_hat"), {T, B, H}, "c_hat", a.ln_c_w.defined());
  sv.rstd_c = req(s("rstd_c"), {T, B, 1}, "rstd_c", a.ln_c_w.defined());
  sv.m = req(s("m"), {T, B, H}, "m", a.w_hr.defined());
  Tensor d_out = req(dout, {T, B, P}, "dout", true);
  Tensor d_h = req(dh_n, {B, P}, "dh_n", true);
  Tensor d_c = req(dc_n, {B, H}, "dc_n", true);
  std::vector<Tensor> g;
  AT_DISPATCH_FLOATING_TYPES(a.xg.scalar_type(), "lstmkit_lstm_backward", [&] {
    g = backward_impl<scalar_t>(a, sv, d_out, d_h, d_c, r.st, r.o, need);
  });
  static const char* names[] = {"xg",        "h0",        "c0",           "weight_hh",
                                "bias_hh",   "weight_hr", "weight_ci",    "weight_cf",
                                "weight_co", "ln_weight_hh", "ln_weight_c", "ln_bias_c"};
  py::dict d;
  for (size_t k = 0; k < g.size(); ++k) d[names[k]] = g[k];
  return d;
}

// ---------------------------------------------------------------------------------------------
// The streaming call: one time step of the whole stack (T = 1, the state passed back each
// call), with nothing to differentiate (no_grad or inference mode, eval mode: the Python side,
// lstmkit.nn._lstm, decides when). A step costs a few microseconds at B = 1, so the general
// path's per-call work (reading RecurrenceInputs by name, the checks in Python, the autograd
// Function, one small torch GEMM for the input projection, the stacking of h_n) was several
// times the step itself (bench/stream_calls.py). A StepPlan holds the module's parameters once
// (the same tensors: in-place updates and `.data =` are seen; the module drops its plan when a
// parameter is replaced or moved) and each call runs, per layer and direction,
//   xg = x W_ih^T + b_ih      (LN(x W_ih^T) gamma_ih + b_ih with layer norm, as F.layer_norm)
// through the recurrence's own small-batch GEMV, then forward_impl's step on it. Anything it
// does not take (another dtype or device, a tensor subclass, T != 1, a wrong shape, autocast,
// grad mode) returns None, and the caller runs the general path, which also raises the errors.

struct LayerWeights {
  Tensor w_ih, b_ih, ln_ih, w_hh, b_hh, w_hr, w_ci, w_cf, w_co, ln_hh, ln_c_w, ln_c_b;
};

class StepPlan {
 public:
  StepPlan(const std::vector<std::vector<OptTensor>>& layers, int64_t num_layers,
           int64_t dirs, int64_t input_size, int64_t hidden, int64_t proj, bool batch_first,
           bool coupled, bool forget_gate, double eps, double zoneout_h, double zoneout_c)
      : L_(num_layers),
        D_(dirs),
        I_(input_size),
        H_(hidden),
        P_(proj > 0 ? proj : hidden),
        batch_first_(batch_first),
        opts_{coupled, forget_gate, eps},
        zh_(zoneout_h),
        zc_(zoneout_c) {
    TORCH_CHECK(L_ >= 1 && (D_ == 1 || D_ == 2) && I_ >= 1 && H_ >= 1,
                "StepPlan: bad sizes");
    TORCH_CHECK(int64_t(layers.size()) == L_ * D_, "StepPlan: one weight list per layer and "
                "direction expected");
    auto t = [](const OptTensor& o) { return o.has_value() ? *o : Tensor(); };
    for (const auto& l : layers) {
      TORCH_CHECK(l.size() == 12, "StepPlan: 12 tensors per layer expected");
      w_.push_back(LayerWeights{t(l[0]), t(l[1]), t(l[2]), t(l[3]), t(l[4]), t(l[5]), t(l[6]),
                                t(l[7]), t(l[8]), t(l[9]), t(l[10]), t(l[11])});
    }
    dtype_ = w_[0].w_hh.scalar_type();
    TORCH_CHECK(dtype_ == at::kFloat || dtype_ == at::kDouble, "StepPlan: float32 or float64");
  }

  py::object call(const py::handle& input, const py::handle& hx) const {
    if (at::GradMode::is_enabled() || at::autocast::is_autocast_enabled(at::kCPU))
      return py::none();
    if (!THPVariable_CheckExact(input.ptr())) return py::none();
    const Tensor& x = THPVariable_Unpack(input.ptr());
    if (!usable(x)) return py::none();
    const bool batched = x.dim() == 3;
    int64_t B;
    if (batched) {
      if (x.size(batch_first_ ? 1 : 0) != 1 || x.size(2) != I_) return py::none();
      B = x.size(batch_first_ ? 0 : 1);
    } else {
      if (x.dim() != 2 || x.size(0) != 1 || x.size(1) != I_) return py::none();
      B = 1;
    }
    if (B < 1) return py::none();
    const int64_t LD = L_ * D_;
    Tensor h0, c0;
    if (!hx.is_none()) {
      if (!(py::isinstance<py::tuple>(hx) || py::isinstance<py::list>(hx))) return py::none();
      py::sequence seq = py::reinterpret_borrow<py::sequence>(hx);
      if (seq.size() != 2) return py::none();
      py::object a = seq[0], b = seq[1];
      if (!THPVariable_CheckExact(a.ptr()) || !THPVariable_CheckExact(b.ptr()))
        return py::none();
      h0 = THPVariable_Unpack(a.ptr());
      c0 = THPVariable_Unpack(b.ptr());
      if (!usable(h0) || !usable(c0)) return py::none();
      const std::vector<int64_t> hs = batched ? std::vector<int64_t>{LD, B, P_}
                                              : std::vector<int64_t>{LD, P_};
      const std::vector<int64_t> cs = batched ? std::vector<int64_t>{LD, B, H_}
                                              : std::vector<int64_t>{LD, H_};
      if (h0.sizes() != at::IntArrayRef(hs) || c0.sizes() != at::IntArrayRef(cs))
        return py::none();
    }
    if (!weights_ok()) return py::none();
    std::vector<Tensor> res;
    AT_DISPATCH_FLOATING_TYPES(dtype_, "lstmkit_lstm_step",
                               [&] { res = run<scalar_t>(x, h0, c0, B); });
    Tensor out = res[0], hn = res[1], cn = res[2];
    const int64_t DP = D_ * P_;
    if (batched) {
      out = batch_first_ ? out.view({B, 1, DP}) : out.view({1, B, DP});
    } else {
      out = out.view({1, DP});
      hn = hn.view({LD, P_});
      cn = cn.view({LD, H_});
    }
    return py::make_tuple(out, py::make_tuple(hn, cn));
  }

 private:
  bool usable(const Tensor& t) const {
    return t.defined() && t.device().is_cpu() && t.layout() == at::kStrided &&
           t.scalar_type() == dtype_ && !t.is_conj() && !t.is_neg();
  }

  // The parameters may have been changed in place (`.data =` included) since the plan was
  // made: their shapes and dtypes are checked at every call (nanoseconds).
  bool weights_ok() const {
    const int64_t G = 4 * H_;
    auto ok = [&](const Tensor& t, at::IntArrayRef shape, bool required) {
      if (!t.defined()) return !required;
      return t.scalar_type() == dtype_ && t.device().is_cpu() && t.layout() == at::kStrided &&
             t.is_contiguous() && t.sizes() == shape;
    };
    const bool proj = P_ != H_;
    for (int64_t k = 0; k < L_; ++k) {
      const int64_t in = k == 0 ? I_ : D_ * P_;
      for (int64_t d = 0; d < D_; ++d) {
        const LayerWeights& w = w_[k * D_ + d];
        if (!(ok(w.w_ih, {G, in}, true) && ok(w.b_ih, {G}, false) && ok(w.ln_ih, {G}, false) &&
              ok(w.w_hh, {G, P_}, true) && ok(w.b_hh, {G}, false) &&
              ok(w.w_hr, {P_, H_}, proj) && ok(w.w_ci, {H_}, false) && ok(w.w_cf, {H_}, false) &&
              ok(w.w_co, {H_}, false) && ok(w.ln_hh, {G}, false) && ok(w.ln_c_w, {H_}, false) &&
              ok(w.ln_c_b, {H_}, false)))
          return false;
        if (proj != w.w_hr.defined()) return false;
      }
    }
    return true;
  }

  // Per layer and direction: xg = W_ih x (+ LN, + b_ih), pre = W_hh h, cell_row, then the
  // projection and zoneout of h, all on raw buffers: the only tensors made are the three the
  // call returns (ATen ops cost about a microsecond each here, a step at H=128 a few).
  template <typename S>
  std::vector<Tensor> run(const Tensor& x_in, const Tensor& h0, const Tensor& c0,
                          int64_t B) const {
    const int64_t G = 4 * H_, LD = L_ * D_, DP = D_ * P_;
    const auto opt = x_in.options();
    const Tensor x = x_in.contiguous();
    Tensor out = at::empty({B, DP}, opt);
    Tensor hn = at::empty({LD, B, P_}, opt), cn = at::empty({LD, B, H_}, opt);
    S* HN = hn.data_ptr<S>();
    S* CN = cn.data_ptr<S>();
    if (h0.defined()) {
      const Tensor h = h0.contiguous(), c = c0.contiguous();
      std::memcpy(HN, h.data_ptr<S>(), sizeof(S) * LD * B * P_);
      std::memcpy(CN, c.data_ptr<S>(), sizeof(S) * LD * B * H_);
    } else {
      std::fill(HN, HN + LD * B * P_, S(0));
      std::fill(CN, CN + LD * B * H_, S(0));
    }
    // Scratch: xg, pre, gates (B, G); c_new | c_hat | c_out (B, 3H); m (B, H); h_new (B, P);
    // two layer outputs (B, D P) between layers; the zoneout values (P + H).
    std::vector<S> buf(B * (3 * G + 4 * H_ + P_ + 2 * DP) + P_ + H_);
    S *XG = buf.data(), *PRE = XG + B * G, *GB = PRE + B * G, *CB = GB + B * G;
    S *MB = CB + B * 3 * H_, *HNEW = MB + B * H_, *LA = HNEW + B * P_, *LB = LA + B * DP;
    S *ZH = LB + B * DP, *ZC = ZH + P_;
    std::fill(ZH, ZH + P_, S(zh_));
    std::fill(ZC, ZC + H_, S(zc_));
    const bool proj = P_ != H_;
    const S* in = x.data_ptr<S>();
    int64_t in_size = I_;
    for (int64_t k = 0; k < L_; ++k) {
      S* lout = k == L_ - 1 ? out.data_ptr<S>() : (k % 2 ? LB : LA);
      for (int64_t d = 0; d < D_; ++d) {
        const int64_t idx = k * D_ + d;
        const LayerWeights& w = w_[idx];
        rows_times<S>(w.w_ih, in, XG, B, in_size, G);
        const S *LN = ptr<S>(w.ln_ih), *Bih = ptr<S>(w.b_ih);
        for (int64_t b = 0; b < B; ++b) {
          S* __restrict v = XG + b * G;
          if (LN) {
            S mean, rstd;
            ln_stats(v, G, opts_.eps, mean, rstd);
            if (Bih) {
              for (int64_t j = 0; j < G; ++j) v[j] = (v[j] - mean) * rstd * LN[j] + Bih[j];
            } else {
              for (int64_t j = 0; j < G; ++j) v[j] = (v[j] - mean) * rstd * LN[j];
            }
          } else if (Bih) {
            for (int64_t j = 0; j < G; ++j) v[j] += Bih[j];
          }
        }
        S* Hs = HN + idx * B * P_;
        S* Cs = CN + idx * B * H_;
        rows_times<S>(w.w_hh, Hs, PRE, B, P_, G);
        const S* Wci = ptr<S>(w.w_ci);
        const CellWeights<S> cw{ptr<S>(w.b_hh), Wci, Wci ? ptr<S>(w.w_cf) : nullptr,
                                ptr<S>(w.w_co), ptr<S>(w.ln_hh), ptr<S>(w.ln_c_w),
                                ptr<S>(w.ln_c_b)};
        for (int64_t b = 0; b < B; ++b) {
          CellRow<S> r{};
          r.x = XG + b * G;
          r.pre = PRE + b * G;
          r.c = Cs + b * H_;
          r.zc = zc_ > 0 ? ZC : nullptr;
          r.gates = GB + b * G;
          r.c_new = CB + b * 3 * H_;
          r.c_hat = CB + b * 3 * H_ + H_;
          r.c_out = CB + b * 3 * H_ + 2 * H_;
          r.m = proj ? MB + b * H_ : HNEW + b * P_;
          cell_row(r, cw, H_, opts_);
        }
        if (proj) rows_times<S>(w.w_hr, MB, HNEW, B, H_, P_);
        for (int64_t b = 0; b < B; ++b) {
          const S* __restrict hnew = HNEW + b * P_;
          S* __restrict hs = Hs + b * P_;
          S* __restrict o = lout + b * DP + d * P_;
          if (zh_ > 0) {
            for (int64_t j = 0; j < P_; ++j) {
              const S v = ZH[j] * hs[j] + (S(1) - ZH[j]) * hnew[j];
              o[j] = v;
              hs[j] = v;
            }
          } else {
            std::copy(hnew, hnew + P_, o);
            std::copy(hnew, hnew + P_, hs);
          }
        }
      }
      in = lout;
      in_size = DP;
    }
    return {out, hn, cn};
  }

  int64_t L_, D_, I_, H_, P_;
  bool batch_first_;
  Options opts_;
  double zh_, zc_;
  at::ScalarType dtype_;
  std::vector<LayerWeights> w_;
};

std::string gemv_isa() { return isa_name(static_cast<Isa>(g_isa.load())); }

// Lowers (or restores) the float32 GEMV's instruction set; never above what the CPU has.
std::string set_gemv_isa(const std::string& name) {
  Isa want;
  if (name == "avx512")
    want = Isa::kAvx512;
  else if (name == "avx2")
    want = Isa::kAvx2;
  else if (name == "generic")
    want = Isa::kGeneric;
  else
    TORCH_CHECK(false, "isa must be avx512, avx2 or generic, got ", name);
  TORCH_CHECK(static_cast<int>(want) <= static_cast<int>(kBestIsa), "this CPU has no ", name,
              " (best: ", isa_name(kBestIsa), ")");
  return isa_name(static_cast<Isa>(g_isa.exchange(static_cast<int>(want))));
}

int64_t set_split_bytes(int64_t n) {
  TORCH_CHECK(n >= 0, "split bytes must be >= 0, got ", n);
  return g_split_bytes.exchange(n);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, mod) {
  mod.doc() = "Fused CPU LSTM recurrence (lstmkit.kernels.cpu.recurrence)";
  mod.def("forward", &lstm_forward, py::arg("inputs"), py::arg("batch_sizes"),
          py::arg("reverse"), py::arg("opts"), py::arg("save"),
          "Forward scan of RecurrenceInputs: out, h_n, c_n, then {name: saved tensor} "
          "(SavedTensors' fields) or None");
  mod.def("backward", &lstm_backward, py::arg("inputs"), py::arg("saved"), py::arg("dout"),
          py::arg("dh_n"), py::arg("dc_n"), py::arg("batch_sizes"), py::arg("reverse"),
          py::arg("opts"), py::arg("needs"),
          "Backward through time: {name: grad} for RecurrenceGrads' fields (None where absent "
          "or not needed)");
  py::class_<StepPlan>(mod, "StepPlan",
                       "One time step of a whole LSTM stack for streaming calls (no autograd)")
      .def(py::init<const std::vector<std::vector<OptTensor>>&, int64_t, int64_t, int64_t,
                    int64_t, int64_t, bool, bool, bool, double, double, double>(),
           py::arg("layers"), py::arg("num_layers"), py::arg("dirs"), py::arg("input_size"),
           py::arg("hidden_size"), py::arg("proj_size"), py::arg("batch_first"),
           py::arg("coupled"), py::arg("forget_gate"), py::arg("eps"), py::arg("zoneout_h"),
           py::arg("zoneout_c"))
      .def("__call__", &StepPlan::call, py::arg("input"), py::arg("hx") = py::none(),
           "(output, (h_n, c_n)) as LSTM.forward returns them, or None for an input it does "
           "not take");
  mod.def("gemv_isa", &gemv_isa,
          "The instruction set the float32 small-batch GEMV runs: avx512, avx2 or generic");
  mod.def("best_gemv_isa", [] { return std::string(isa_name(kBestIsa)); },
          "The best instruction set of this CPU for the float32 GEMV");
  mod.def("_set_gemv_isa", &set_gemv_isa, py::arg("isa"),
          "For tests and benchmarks: run the float32 GEMV with another (lower) instruction set; "
          "returns the previous one");
  mod.def("_set_split_bytes", &set_split_bytes, py::arg("nbytes"),
          "For tests and benchmarks: split a small-batch GEMV over the threads from this many "
          "bytes of weights on (default 2 MiB); returns the previous value");
}
