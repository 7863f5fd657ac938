// Quantized inference-only LSTM recurrence (no autograd): the forward scan of
// lstmkit/reference/lstm.py (recurrence_forward, eval form) with the weight matrices stored as
// int8 (symmetric, one float scale per output row, as torch's dynamic quantization stores them)
// or as bfloat16, and everything else (x, h, c, gates, biases, peepholes, layer norm) in float32.
//
// Dimensions:
//   T  time steps
//   B  batch rows; with lengths, row b is active at steps t < lengths[b] only
//   I  input size (only when the input projection is folded into the step, see below)
//   H  hidden (cell) size
//   P  size of h: the projection size, or H without projection
//   G  = 4H, the gates packed i|f|g|o
//
// A quantized matrix W (N, K) is q (N, K) int8 and s (N,) float with W ~ s[j] * q[j, k], so
//   (W a)[j] = s[j] * sum_k q[j, k] a[k]:
// the int8 values are widened to float in registers and multiplied with the float activations;
// the row scale is applied once per dot product. A bf16 matrix is widened the same way (a bf16
// is the top 16 bits of a float32: shift left by 16). The result equals, up to float rounding
// of the sums, the float recurrence run with the dequantized weights s[j] * q[j, k] (what the
// tests compare against).
//
// Batch 1 streaming is the case this is for: a step is then one matrix-vector product with W_hh
// (and W_hr), memory-bound on reading the weights, which are 4x (int8) or 2x (bf16) smaller
// than float32. Each step reads every weight row once for up to four batch rows.
//
// The input projection: with T > 1 the caller passes xg = x W_ih^T + b_ih (one GEMM before the
// scan, layer norm included); with x and a quantized W_ih instead (what the Python side does at
// T = 1, a streaming call) the step computes it itself, one more GEMV.
//
// Instruction sets, picked at run time (__builtin_cpu_supports) or forced by the caller:
// AVX-512 (16 lanes), AVX2+FMA (8 lanes), and a portable C++ loop.

#include <torch/extension.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

enum class Isa : int { kPortable = 0, kAvx2 = 1, kAvx512 = 2 };
enum class WKind : int { kInt8 = 0, kBf16 = 1 };

const char* isa_name(Isa i) {
  return i == Isa::kAvx512 ? "avx512" : i == Isa::kAvx2 ? "avx2" : "portable";
}

Isa detect_isa() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
  return Isa::kPortable;
}

const Isa kBestIsa = detect_isa();

// Largest argument of exp that stays finite, with margin (see lstm.cpp's sigmoid).
inline float sigmoidf(float x) {
  x = x < -88.f ? -88.f : x;
  return 1.f / (1.f + std::exp(-x));
}

inline float bf16_to_float(uint16_t v) {
  uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// A quantized (N, K) row-major matrix: int8 with per-row scales, or bf16 (scale null).
struct QMat {
  const void* data = nullptr;
  const float* scale = nullptr;
  int64_t N = 0, K = 0;
  WKind kind = WKind::kInt8;
};

// ---------------------------------------------------------------------------------------------
// y[r * ldy + j] = scale[j] * dot(W[j, :], a[r * lda + :]) for r < NB, every row j.

template <int NB>
void qgemv_portable(const QMat& w, const float* a, int64_t lda, float* y, int64_t ldy) {
  const int64_t K = w.K;
  for (int64_t j = 0; j < w.N; ++j) {
    float acc[NB] = {};
    if (w.kind == WKind::kInt8) {
      const int8_t* q = static_cast<const int8_t*>(w.data) + j * K;
      for (int64_t k = 0; k < K; ++k) {
        const float wk = static_cast<float>(q[k]);
        for (int b = 0; b < NB; ++b) acc[b] += wk * a[b * lda + k];
      }
    } else {
      const uint16_t* q = static_cast<const uint16_t*>(w.data) + j * K;
      for (int64_t k = 0; k < K; ++k) {
        const float wk = bf16_to_float(q[k]);
        for (int b = 0; b < NB; ++b) acc[b] += wk * a[b * lda + k];
      }
    }
    const float s = w.scale ? w.scale[j] : 1.f;
    for (int b = 0; b < NB; ++b) y[b * ldy + j] = s * acc[b];
  }
}

#if defined(__x86_64__) && defined(__GNUC__)

// Sixteen weights of row q, widened to float.
__attribute__((target("avx512f,avx512bw"))) inline __m512 load16_i8(const int8_t* q) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)q)));
}
__attribute__((target("avx512f,avx512bw"))) inline __m512 load16_bf16(const uint16_t* q) {
  const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)q));
  return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}

// R weight rows times NB input rows of accumulators: R * NB independent FMA chains hide the
// FMA latency at batch 1 (one chain would wait 4 cycles per 16 lanes).
template <int R, int NB, WKind KIND>
__attribute__((target("avx512f,avx512bw"))) inline void qblock_avx512(
    const QMat& w, const float* __restrict a, int64_t lda, float* __restrict y, int64_t ldy,
    int64_t j) {
  const int64_t K = w.K;
  __m512 acc[R][NB];
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 x[NB];
    for (int b = 0; b < NB; ++b) x[b] = _mm512_loadu_ps(a + b * lda + k);
    for (int r = 0; r < R; ++r) {
      __m512 wv;
      if constexpr (KIND == WKind::kInt8)
        wv = load16_i8(static_cast<const int8_t*>(w.data) + (j + r) * K + k);
      else
        wv = load16_bf16(static_cast<const uint16_t*>(w.data) + (j + r) * K + k);
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_fmadd_ps(wv, x[b], acc[r][b]);
    }
  }
  for (int r = 0; r < R; ++r) {
    const float s = w.scale ? w.scale[j + r] : 1.f;
    for (int b = 0; b < NB; ++b) {
      float tail = 0.f;
      for (int64_t kk = k; kk < K; ++kk) {
        const float wk = KIND == WKind::kInt8
                             ? static_cast<float>(static_cast<const int8_t*>(w.data)[(j + r) * K + kk])
                             : bf16_to_float(static_cast<const uint16_t*>(w.data)[(j + r) * K + kk]);
        tail += wk * a[b * lda + kk];
      }
      y[b * ldy + j + r] = s * (_mm512_reduce_add_ps(acc[r][b]) + tail);
    }
  }
}

template <int NB, WKind KIND>
__attribute__((target("avx512f,avx512bw"))) void qgemv_avx512(const QMat& w, const float* a,
                                                              int64_t lda, float* y, int64_t ldy) {
  constexpr int R = NB == 1 ? 8 : NB == 2 ? 4 : 2;
  int64_t j = 0;
  for (; j + R <= w.N; j += R) qblock_avx512<R, NB, KIND>(w, a, lda, y, ldy, j);
  for (; j < w.N; ++j) qblock_avx512<1, NB, KIND>(w, a, lda, y, ldy, j);
}

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
__attribute__((target("avx2,fma"))) inline __m256 load8_i8(const int8_t* q) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)q)));
}
__attribute__((target("avx2,fma"))) inline __m256 load8_bf16(const uint16_t* q) {
  const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)q));
  return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

template <int R, int NB, WKind KIND>
__attribute__((target("avx2,fma"))) inline void qblock_avx2(const QMat& w,
                                                            const float* __restrict a, int64_t lda,
                                                            float* __restrict y, int64_t ldy,
                                                            int64_t j) {
  const int64_t K = w.K;
  __m256 acc[R][NB];
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 x[NB];
    for (int b = 0; b < NB; ++b) x[b] = _mm256_loadu_ps(a + b * lda + k);
    for (int r = 0; r < R; ++r) {
      __m256 wv;
      if constexpr (KIND == WKind::kInt8)
        wv = load8_i8(static_cast<const int8_t*>(w.data) + (j + r) * K + k);
      else
        wv = load8_bf16(static_cast<const uint16_t*>(w.data) + (j + r) * K + k);
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm256_fmadd_ps(wv, x[b], acc[r][b]);
    }
  }
  for (int r = 0; r < R; ++r) {
    const float s = w.scale ? w.scale[j + r] : 1.f;
    for (int b = 0; b < NB; ++b) {
      float tail = 0.f;
      for (int64_t kk = k; kk < K; ++kk) {
        const float wk = KIND == WKind::kInt8
                             ? static_cast<float>(static_cast<const int8_t*>(w.data)[(j + r) * K + kk])
                             : bf16_to_float(static_cast<const uint16_t*>(w.data)[(j + r) * K + kk]);
        tail += wk * a[b * lda + kk];
      }
      y[b * ldy + j + r] = s * (hsum256(acc[r][b]) + tail);
    }
  }
}

template <int NB, WKind KIND>
__attribute__((target("avx2,fma"))) void qgemv_avx2(const QMat& w, const float* a, int64_t lda,
                                                    float* y, int64_t ldy) {
  constexpr int R = NB == 1 ? 8 : NB == 2 ? 4 : 2;
  int64_t j = 0;
  for (; j + R <= w.N; j += R) qblock_avx2<R, NB, KIND>(w, a, lda, y, ldy, j);
  for (; j < w.N; ++j) qblock_avx2<1, NB, KIND>(w, a, lda, y, ldy, j);
}

#endif  // x86-64

template <int NB>
void qgemv_nb(Isa isa, const QMat& w, const float* a, int64_t lda, float* y, int64_t ldy) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (isa == Isa::kAvx512) {
    if (w.kind == WKind::kInt8)
      qgemv_avx512<NB, WKind::kInt8>(w, a, lda, y, ldy);
    else
      qgemv_avx512<NB, WKind::kBf16>(w, a, lda, y, ldy);
    return;
  }
  if (isa == Isa::kAvx2) {
    if (w.kind == WKind::kInt8)
      qgemv_avx2<NB, WKind::kInt8>(w, a, lda, y, ldy);
    else
      qgemv_avx2<NB, WKind::kBf16>(w, a, lda, y, ldy);
    return;
  }
#endif
  qgemv_portable<NB>(w, a, lda, y, ldy);
}

// All nb input rows, in groups of at most four: each group reads W once.
void qgemv(Isa isa, const QMat& w, const float* a, int64_t lda, int64_t nb, float* y,
           int64_t ldy) {
  for (int64_t r = 0; r < nb;) {
    const int64_t g = std::min<int64_t>(nb - r, 4);
    const float* ar = a + r * lda;
    float* yr = y + r * ldy;
    switch (g) {
      case 1: qgemv_nb<1>(isa, w, ar, lda, yr, ldy); break;
      case 2: qgemv_nb<2>(isa, w, ar, lda, yr, ldy); break;
      case 3: qgemv_nb<3>(isa, w, ar, lda, yr, ldy); break;
      default: qgemv_nb<4>(isa, w, ar, lda, yr, ldy); break;
    }
    r += g;
  }
}

// ---------------------------------------------------------------------------------------------
// Argument checks: the kernel reads raw pointers, so every shape is checked here.

const float* fptr(const OptTensor& t, const char* name, int64_t n) {
  if (!t.has_value() || !t->defined()) return nullptr;
  TORCH_CHECK(t->scalar_type() == at::kFloat && t->is_contiguous() && t->device().is_cpu(), name,
              " must be a contiguous float32 CPU tensor");
  TORCH_CHECK(t->numel() == n, name, " must have ", n, " elements, got ", t->numel());
  return t->data_ptr<float>();
}

QMat qmat(const Tensor& w, const OptTensor& s, const char* name, int64_t N, int64_t K) {
  TORCH_CHECK(w.dim() == 2 && w.size(0) == N && w.size(1) == K, name, " must have shape (", N,
              ", ", K, "), got ", w.sizes());
  TORCH_CHECK(w.is_contiguous() && w.device().is_cpu(), name, " must be a contiguous CPU tensor");
  QMat m;
  m.N = N;
  m.K = K;
  if (w.scalar_type() == at::kChar) {
    m.kind = WKind::kInt8;
    m.data = w.data_ptr<int8_t>();
    m.scale = fptr(s, "the scales of an int8 weight", N);
    TORCH_CHECK(m.scale != nullptr, name, " is int8 and needs its per-row scales");
  } else if (w.scalar_type() == at::kBFloat16) {
    m.kind = WKind::kBf16;
    m.data = w.data_ptr<at::BFloat16>();
    TORCH_CHECK(!(s.has_value() && s->defined()), name, " is bfloat16 and takes no scales");
  } else {
    TORCH_CHECK(false, name, " must be int8 or bfloat16, got ", w.scalar_type());
  }
  return m;
}

// In place: x = (x - mean) / sqrt(var + eps) * w (+ b), over n values (biased variance), as
// reference.variants.layer_norm.
void layer_norm_row(float* x, int64_t n, const float* w, const float* b, float eps) {
  double mu = 0.0;
  for (int64_t k = 0; k < n; ++k) mu += x[k];
  mu /= n;
  double var = 0.0;
  for (int64_t k = 0; k < n; ++k) var += (x[k] - mu) * (x[k] - mu);
  var /= n;
  const float rstd = 1.f / std::sqrt(static_cast<float>(var) + eps);
  const float m = static_cast<float>(mu);
  for (int64_t k = 0; k < n; ++k) {
    const float v = (x[k] - m) * rstd * w[k];
    x[k] = b ? v + b[k] : v;
  }
}

// One row's gate math after the pre-activations r (G = 4H, i|f|g|o, biases and xg added): the
// cell update into c (zoneout applied), m = o * tanh(c_out) for the output. Passes over
// __restrict arrays with the variant switches outside the loops, so that GCC vectorizes them
// (exp and tanh through libmvec): at H = 128 the scalar loop cost more than the GEMV.
void gate_row(float* __restrict r, float* __restrict c, float* __restrict m,
              float* __restrict cnew, int64_t H, const float* __restrict wci,
              const float* __restrict wcf, const float* __restrict wco, const float* lnc,
              const float* lnbc, float zc, bool coupled, bool forget_gate, float eps) {
  float* __restrict ig = r;
  float* __restrict fg = r + H;
  float* __restrict gg = r + 2 * H;
  float* __restrict og = r + 3 * H;
  if (wci) {
    for (int64_t u = 0; u < H; ++u) ig[u] += wci[u] * c[u];
    if (wcf)
      for (int64_t u = 0; u < H; ++u) fg[u] += wcf[u] * c[u];
  }
  for (int64_t u = 0; u < H; ++u) ig[u] = sigmoidf(ig[u]);
  for (int64_t u = 0; u < H; ++u) gg[u] = std::tanh(gg[u]);
  if (coupled)
    for (int64_t u = 0; u < H; ++u) fg[u] = 1.f - ig[u];
  else if (forget_gate)
    for (int64_t u = 0; u < H; ++u) fg[u] = sigmoidf(fg[u]);
  else
    for (int64_t u = 0; u < H; ++u) fg[u] = 1.f;
  for (int64_t u = 0; u < H; ++u) cnew[u] = fg[u] * c[u] + ig[u] * gg[u];
  if (wco)
    for (int64_t u = 0; u < H; ++u) og[u] += wco[u] * cnew[u];
  for (int64_t u = 0; u < H; ++u) og[u] = sigmoidf(og[u]);
  if (zc > 0.f)
    for (int64_t u = 0; u < H; ++u) c[u] = zc * c[u] + (1.f - zc) * cnew[u];
  else
    std::memcpy(c, cnew, H * sizeof(float));
  // m = o * tanh(c_out), c_out = LN(c_new) gamma + beta with the cell norm
  std::memcpy(m, cnew, H * sizeof(float));
  if (lnc) layer_norm_row(m, H, lnc, lnbc, eps);
  for (int64_t u = 0; u < H; ++u) m[u] = og[u] * std::tanh(m[u]);
}

// ---------------------------------------------------------------------------------------------

std::vector<Tensor> quant_forward(
    const Tensor& inp,        // (T, B, G) xg, or (T, B, I) x when w_ih is given
    const OptTensor& w_ih,    // (G, I) int8 / bf16: fold the input projection into the step
    const OptTensor& s_ih,    // (G,) scales of an int8 w_ih
    const OptTensor& b_ih,    // (G,) with a folded projection only
    const OptTensor& ln_w_ih, // (G,) layer norm of x W_ih^T, with a folded projection only
    const Tensor& h0,         // (B, P)
    const Tensor& c0,         // (B, H)
    const Tensor& w_hh,       // (G, P) int8 / bf16
    const OptTensor& s_hh,    // (G,)
    const OptTensor& b_hh,    // (G,)
    const OptTensor& w_hr,    // (P, H) projection, int8 / bf16
    const OptTensor& s_hr,    // (P,)
    const OptTensor& w_ci,    // (H,) peepholes
    const OptTensor& w_cf,    // (H,)
    const OptTensor& w_co,    // (H,)
    const OptTensor& ln_w_hh, // (G,) layer norm of h W_hh^T (no shift: b_hh follows)
    const OptTensor& ln_w_c,  // (H,) layer norm of c before the output tanh
    const OptTensor& ln_b_c,  // (H,)
    double zoneout_h,         // eval zoneout: h = z h_prev + (1 - z) h_new
    double zoneout_c,
    const OptTensor& lengths, // (B,) int64: row b is active at steps t < lengths[b]
    bool reverse, bool coupled, bool forget_gate, double eps, int64_t isa_arg) {
  TORCH_CHECK(inp.dim() == 3 && inp.scalar_type() == at::kFloat && inp.is_contiguous() &&
                  inp.device().is_cpu(),
              "the input must be a contiguous float32 (T, B, *) CPU tensor");
  TORCH_CHECK(h0.dim() == 2 && c0.dim() == 2, "h0 must be (B, P) and c0 (B, H)");
  const int64_t T = inp.size(0), B = inp.size(1);
  const int64_t H = c0.size(1), P = h0.size(1), G = 4 * H;
  TORCH_CHECK(h0.size(0) == B && c0.size(0) == B, "h0 and c0 must have B = ", B, " rows");
  const bool folded = w_ih.has_value() && w_ih->defined();
  const int64_t I = folded ? inp.size(2) : 0;
  TORCH_CHECK(folded || inp.size(2) == G, "xg must be (T, B, 4H = ", G, "), got ", inp.sizes());
  const bool proj = w_hr.has_value() && w_hr->defined();
  TORCH_CHECK(proj || P == H, "without w_hr, h0 must have H = ", H, " features, got ", P);
  const Isa isa = isa_arg < 0 ? kBestIsa : static_cast<Isa>(isa_arg);
  TORCH_CHECK(isa_arg < 0 || (isa_arg <= static_cast<int64_t>(kBestIsa)),
              "instruction set ", isa_arg, " is not available on this CPU (best: ",
              isa_name(kBestIsa), ")");

  const QMat Whh = qmat(w_hh, s_hh, "w_hh", G, P);
  QMat Wih, Whr;
  if (folded) Wih = qmat(*w_ih, s_ih, "w_ih", G, I);
  if (proj) Whr = qmat(*w_hr, s_hr, "w_hr", P, H);
  const float* bih = folded ? fptr(b_ih, "b_ih", G) : nullptr;
  const float* lnih = folded ? fptr(ln_w_ih, "ln_w_ih", G) : nullptr;
  const float* bhh = fptr(b_hh, "b_hh", G);
  const float* wci = fptr(w_ci, "w_ci", H);
  const float* wcf = fptr(w_cf, "w_cf", H);
  const float* wco = fptr(w_co, "w_co", H);
  const float* lnhh = fptr(ln_w_hh, "ln_w_hh", G);
  const float* lnc = fptr(ln_w_c, "ln_w_c", H);
  const float* lnbc = fptr(ln_b_c, "ln_b_c", H);
  TORCH_CHECK(!lnc == !lnbc, "ln_w_c and ln_b_c come together");
  std::vector<int64_t> len(B, T);
  if (lengths.has_value() && lengths->defined()) {
    TORCH_CHECK(lengths->scalar_type() == at::kLong && lengths->numel() == B &&
                    lengths->device().is_cpu(),
                "lengths must be a (B,) int64 CPU tensor");
    const Tensor lc = lengths->contiguous();
    for (int64_t b = 0; b < B; ++b) {
      len[b] = lc.data_ptr<int64_t>()[b];
      TORCH_CHECK(len[b] >= 0 && len[b] <= T, "lengths must be in [0, T = ", T, "], got ",
                  len[b]);
    }
  }
  const float zh = static_cast<float>(zoneout_h), zc = static_cast<float>(zoneout_c);
  const float e = static_cast<float>(eps);

  auto opt = inp.options();
  Tensor out = at::zeros({T, B, P}, opt);
  Tensor h = h0.to(at::kFloat).contiguous().clone();
  Tensor c = c0.to(at::kFloat).contiguous().clone();
  // Every intermediate lives in one buffer allocated before the loop.
  std::vector<float> rec(B * G), xgs(folded ? B * G : 0), m(B * H), hnew(B * P), cn(H);
  float* hp = h.data_ptr<float>();
  float* cp = c.data_ptr<float>();
  const float* ip = inp.data_ptr<float>();
  float* op = out.data_ptr<float>();

  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    qgemv(isa, Whh, hp, P, B, rec.data(), G);  // (B, G) = h W_hh^T
    const float* xg_t;
    if (folded) {
      qgemv(isa, Wih, ip + t * B * I, I, B, xgs.data(), G);  // (B, G) = x W_ih^T
      for (int64_t b = 0; b < B; ++b) {
        float* xr = xgs.data() + b * G;
        if (lnih) layer_norm_row(xr, G, lnih, bih, e);
        else if (bih)
          for (int64_t k = 0; k < G; ++k) xr[k] += bih[k];
      }
      xg_t = xgs.data();
    } else {
      xg_t = ip + t * B * G;
    }
    for (int64_t b = 0; b < B; ++b) {
      if (t >= len[b]) continue;  // inactive: keeps its state, outputs zeros
      float* r = rec.data() + b * G;
      if (lnhh) layer_norm_row(r, G, lnhh, nullptr, e);
      const float* xr = xg_t + b * G;
      if (bhh)
        for (int64_t k = 0; k < G; ++k) r[k] += xr[k] + bhh[k];
      else
        for (int64_t k = 0; k < G; ++k) r[k] += xr[k];
      gate_row(r, cp + b * H, m.data() + b * H, cn.data(), H, wci, wcf, wco, lnc, lnbc, zc,
               coupled, forget_gate, e);
    }
    if (proj) qgemv(isa, Whr, m.data(), H, B, hnew.data(), P);  // (B, P) = m W_hr^T
    for (int64_t b = 0; b < B; ++b) {
      if (t >= len[b]) continue;
      const float* hn = proj ? hnew.data() + b * P : m.data() + b * H;
      float* hb = hp + b * P;
      float* ob = op + (t * B + b) * P;
      for (int64_t k = 0; k < P; ++k) {
        const float v = zh > 0.f ? zh * hb[k] + (1.f - zh) * hn[k] : hn[k];
        hb[k] = v;
        ob[k] = v;
      }
    }
  }
  return {out, h, c};
}

std::string best_isa() { return isa_name(kBestIsa); }

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, mod) {
  mod.doc() = "Quantized (int8 / bf16 weights) inference LSTM recurrence (lstmkit.kernels.cpu.quant)";
  mod.def("forward", &quant_forward, py::arg("inp"), py::arg("w_ih"), py::arg("s_ih"),
          py::arg("b_ih"), py::arg("ln_w_ih"), py::arg("h0"), py::arg("c0"), py::arg("w_hh"),
          py::arg("s_hh"), py::arg("b_hh"), py::arg("w_hr"), py::arg("s_hr"), py::arg("w_ci"),
          py::arg("w_cf"), py::arg("w_co"), py::arg("ln_w_hh"), py::arg("ln_w_c"),
          py::arg("ln_b_c"), py::arg("zoneout_h"), py::arg("zoneout_c"), py::arg("lengths"),
          py::arg("reverse"), py::arg("coupled"), py::arg("forget_gate"), py::arg("eps"),
          py::arg("isa"), "Forward scan with quantized weights: [out, h_n, c_n]");
  mod.def("best_isa", &best_isa,
          "The best instruction set of this CPU for the quantized GEMV: avx512, avx2, portable");
  mod.def("isa_names", [] { return std::vector<std::string>{"portable", "avx2", "avx512"}; },
          "The instruction-set names by their number (the isa argument of forward)");
}
