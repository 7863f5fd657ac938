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
//   (W a)[j] = s[j] * sum_k q[j, k] a[k].
// Two ways to compute it (the act_int8 argument):
//
// 1. Weight-only (act_int8 false; the bf16 mode always): the int8 values are widened to float
//    in registers and multiplied with the float activations; the row scale is applied once per
//    dot product. A bf16 matrix is widened the same way (a bf16 is the top 16 bits of a float32:
//    shift left by 16). The result equals, up to float rounding of the sums, the float
//    recurrence run with the dequantized weights s[j] * q[j, k].
//
// 2. Dynamic int8 activations (act_int8 true, int8 weights; what torch's dynamic quantization
//    does): each vector a multiplied by an int8 matrix (h_{t-1} for W_hh, x_t for W_ih, m_t for
//    W_hr; one per batch row and step) is quantized symmetrically from its max-abs,
//      s_a = max_k |a_k| / 127,  q_a[k] = clamp(rint(a_k * (1 / s_a)), -127, 127)
//    (rint: round half to even; s_a < FLT_MIN, an all-zero a, gives s_a = 0 and q_a = 0), the
//    dot product is exact in int32,
//      acc[j] = sum_k q[j, k] q_a[k]      (|acc| <= 127 * 127 * K: no overflow for K < 133000)
//    and y[j] = (s_a * s[j]) * float(acc[j]). Because acc is exact, every instruction set gives
//    bitwise the same y: they differ only in how they form acc, and share the quantization and
//    the rescale (one function each, compiled once):
//      AVX512-VNNI  vpdpbusd on 512 bits, u8 x s8: the activations as u = q_a + 128 in [1, 255],
//                   acc = sum_k q[j, k] u[k] - 128 * rowsum_j, rowsum_j = sum_k q[j, k]
//                   precomputed once per matrix (pack_int8) with the weights repacked in
//                   blocks of 16 rows x 4 columns, so a 64-byte load feeds one vpdpbusd and the
//                   accumulator holds 16 rows' sums (no horizontal reduction);
//      AVX-VNNI     the same blocks, vpdpbusd on 256 bits (two halves of 8 rows);
//      AVX2 (and AVX-512 without VNNI)  row-major: vpmovsxbw both operands to int16, vpmaddwd
//                   (pairs into int32, exact; vpmaddubsw would saturate int16);
//      portable     an int32 loop.
//    The float arithmetic of the quantization and rescale is shielded from -ffast-math
//    reassociation (launder()), so the PyTorch reference that does the same steps (tests)
//    picks the same q_a.
//
// Batch 1 streaming is the case this is for: a step is then one matrix-vector product with W_hh
// (and W_hr), memory-bound on reading the weights, which are 4x (int8) or 2x (bf16) smaller
// than float32. Each step reads every weight row once for up to four batch rows.
//
// The input projection: with T > 1 the caller passes xg = x W_ih^T + b_ih (one GEMM before the
// scan, layer norm included); with x and a quantized W_ih instead the kernel computes it: per
// step in weight-only mode (what the Python side does at T = 1, a streaming call), and for all
// steps before the scan with int8 activations (each x_t row quantized on its own, so a T-step
// call equals T one-step calls bitwise).
//
// Instruction sets, picked at run time (__builtin_cpu_supports) or forced by the caller (any
// available one): portable, avx2 (AVX2+FMA), avx_vnni, avx512 (F+BW), avx512_vnni. The
// weight-only GEMV has an AVX-512 (16 lanes), an AVX2+FMA (8 lanes) and a portable version;
// the VNNI names run the AVX-512 / AVX2 one there.

#include <torch/extension.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

enum class Isa : int { kPortable = 0, kAvx2 = 1, kAvxVnni = 2, kAvx512 = 3, kAvx512Vnni = 4 };
enum class WKind : int { kInt8 = 0, kBf16 = 1 };
constexpr int kNumIsas = 5;
const char* const kIsaNames[kNumIsas] = {"portable", "avx2", "avx_vnni", "avx512", "avx512_vnni"};

const char* isa_name(Isa i) { return kIsaNames[static_cast<int>(i)]; }

bool isa_supported(Isa i) {
  if (i == Isa::kPortable) return true;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  switch (i) {
    case Isa::kAvx2: return avx2;
    case Isa::kAvxVnni: return avx2 && __builtin_cpu_supports("avxvnni");
    case Isa::kAvx512: return avx512;
    case Isa::kAvx512Vnni: return avx512 && __builtin_cpu_supports("avx512vnni");
    default: return false;
  }
#else
  return false;
#endif
}

Isa detect_isa() {
  for (int i = kNumIsas - 1; i > 0; --i)
    if (isa_supported(static_cast<Isa>(i))) return static_cast<Isa>(i);
  return Isa::kPortable;
}

const Isa kBestIsa = detect_isa();

// The weight-only (float) GEMV of an instruction set: the VNNI names add nothing to it.
Isa float_isa(Isa i) {
  return i == Isa::kAvx512Vnni ? Isa::kAvx512 : i == Isa::kAvxVnni ? Isa::kAvx2 : i;
}

// Hides a float's origin from the optimizer: under -ffast-math GCC may otherwise fold
// 1 / (amax / 127) into 127 / amax or reassociate a product, changing the rounding that the
// reference (and every instruction set) must share.
inline void launder(float& v) {
#if defined(__x86_64__) && defined(__GNUC__)
  asm volatile("" : "+x"(v));
#else
  volatile float t = v;
  v = t;
#endif
}

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
  // int8 activations: the blocks of 16 rows x 4 columns (zero-padded to N16 x 4 K4) and the
  // row sums (N16,) that vpdpbusd's unsigned operand needs (see pack_int8).
  const int8_t* packed = nullptr;
  const int32_t* rowsum = nullptr;
  int64_t K4 = 0, N16 = 0;
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
  isa = float_isa(isa);
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
// Int8 activations: acc[b * ldacc + j] = sum_k q[j, k] q_a[b][k] exactly, then the rescale.

constexpr int64_t kRowBlock = 16;  // rows of a packed block
constexpr int64_t kColGroup = 4;   // columns of a packed block (the bytes of one vpdpbusd lane)

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Packed layout: byte ((nb * K4 + kg) * 16 + r) * 4 + i holds q[nb * 16 + r, kg * 4 + i] (0
// outside the matrix); rowsum[j] = sum_k q[j, k] (0 for the padding rows).
void pack_rows(const int8_t* q, int64_t N, int64_t K, int8_t* packed, int32_t* rowsum) {
  const int64_t K4 = ceil_div(K, kColGroup), N16 = ceil_div(N, kRowBlock) * kRowBlock;
  std::memset(packed, 0, N16 * K4 * kColGroup);
  for (int64_t j = 0; j < N16; ++j) {
    int32_t sum = 0;
    if (j < N) {
      const int64_t nb = j / kRowBlock, r = j % kRowBlock;
      for (int64_t k = 0; k < K; ++k) {
        const int8_t v = q[j * K + k];
        packed[((nb * K4 + k / kColGroup) * kRowBlock + r) * kColGroup + k % kColGroup] = v;
        sum += v;
      }
    }
    rowsum[j] = sum;
  }
}

// One activation row, quantized: q (Kp,) int8 and u = q + 128 (Kp,) uint8, padded from K to Kp
// with q = 0 (u = 128, which meets zero weights); returns s_a. The same function for every
// instruction set (see the file header for the math).
float quantize_row(const float* __restrict a, int64_t K, int64_t Kp, int8_t* __restrict q,
                   uint8_t* __restrict u) {
  float amax = 0.f;
  for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(a[k]));
  float s = amax / 127.f;
  launder(s);
  if (!(s >= std::numeric_limits<float>::min())) {  // zero, subnormal (1 / s overflows) or NaN
    std::memset(q, 0, Kp);
    std::memset(u, 128, Kp);
    return 0.f;
  }
  float inv = 1.f / s;
  launder(inv);
  for (int64_t k = 0; k < K; ++k) {
    const float v = std::min(127.f, std::max(-127.f, std::nearbyint(a[k] * inv)));
    const int32_t qi = static_cast<int32_t>(v);
    q[k] = static_cast<int8_t>(qi);
    u[k] = static_cast<uint8_t>(qi + 128);
  }
  for (int64_t k = K; k < Kp; ++k) {
    q[k] = 0;
    u[k] = 128;
  }
  return s;
}

// y[j] = (s_a * s[j]) * float(acc[j]); the same function for every instruction set. The
// products s_a * s[j] go through memory (sc, (N,)) behind a compiler barrier, so that neither
// loop can be reassociated into s_a * (s[j] * acc[j]) and both stay vectorized.
void rescale_row(const int32_t* __restrict acc, const float* __restrict s, float sa,
                 float* __restrict sc, float* __restrict y, int64_t N) {
  for (int64_t j = 0; j < N; ++j) sc[j] = sa * s[j];
  asm volatile("" ::: "memory");
  for (int64_t j = 0; j < N; ++j) y[j] = sc[j] * static_cast<float>(acc[j]);
}

template <int NB>
void i8dot_portable(const QMat& w, const int8_t* qa, int64_t ldq, int32_t* acc, int64_t ldacc) {
  const int8_t* q = static_cast<const int8_t*>(w.data);
  for (int64_t j = 0; j < w.N; ++j)
    for (int b = 0; b < NB; ++b) {
      int32_t sum = 0;
      for (int64_t k = 0; k < w.K; ++k)
        sum += static_cast<int32_t>(q[j * w.K + k]) * static_cast<int32_t>(qa[b * ldq + k]);
      acc[b * ldacc + j] = sum;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)

inline int32_t load_u32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// R blocks of 16 rows times NB activation rows: R * NB independent vpdpbusd chains (its latency
// is about 5 cycles), one 4-byte broadcast of each activation row per column group.
template <int R, int NB>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline void vnni512_blocks(
    const QMat& w, const uint8_t* __restrict u, int64_t ldu, int32_t* __restrict acc,
    int64_t ldacc, int64_t nb0) {
  const int64_t K4 = w.K4;
  __m512i s[R][NB];
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) s[r][b] = _mm512_setzero_si512();
  const int8_t* base = w.packed + nb0 * K4 * 64;
  for (int64_t kg = 0; kg < K4; ++kg) {
    __m512i av[NB];
    for (int b = 0; b < NB; ++b) av[b] = _mm512_set1_epi32(load_u32(u + b * ldu + kg * 4));
    for (int r = 0; r < R; ++r) {
      const __m512i wv = _mm512_loadu_si512(base + (r * K4 + kg) * 64);
      for (int b = 0; b < NB; ++b) s[r][b] = _mm512_dpbusd_epi32(s[r][b], av[b], wv);
    }
  }
  for (int r = 0; r < R; ++r) {
    const int64_t j = (nb0 + r) * 16;
    const __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(w.rowsum + j), 7);
    for (int b = 0; b < NB; ++b)
      _mm512_storeu_si512(acc + b * ldacc + j, _mm512_sub_epi32(s[r][b], corr));
  }
}

template <int NB>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void i8dot_vnni512(
    const QMat& w, const uint8_t* u, int64_t ldu, int32_t* acc, int64_t ldacc) {
  constexpr int R = NB == 1 ? 8 : NB == 2 ? 4 : 2;
  const int64_t nblocks = w.N16 / 16;
  int64_t nb = 0;
  for (; nb + R <= nblocks; nb += R) vnni512_blocks<R, NB>(w, u, ldu, acc, ldacc, nb);
  for (; nb < nblocks; ++nb) vnni512_blocks<1, NB>(w, u, ldu, acc, ldacc, nb);
}

// The same blocks on 256 bits: each 64-byte block is two vectors of 8 rows.
template <int R, int NB>
__attribute__((target("avx2,fma,avxvnni"))) inline void vnni256_blocks(
    const QMat& w, const uint8_t* __restrict u, int64_t ldu, int32_t* __restrict acc,
    int64_t ldacc, int64_t nb0) {
  const int64_t K4 = w.K4;
  __m256i s[R][2][NB];
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < 2; ++h)
      for (int b = 0; b < NB; ++b) s[r][h][b] = _mm256_setzero_si256();
  const int8_t* base = w.packed + nb0 * K4 * 64;
  for (int64_t kg = 0; kg < K4; ++kg) {
    __m256i av[NB];
    for (int b = 0; b < NB; ++b) av[b] = _mm256_set1_epi32(load_u32(u + b * ldu + kg * 4));
    for (int r = 0; r < R; ++r)
      for (int h = 0; h < 2; ++h) {
        const __m256i wv =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + (r * K4 + kg) * 64 + h * 32));
        for (int b = 0; b < NB; ++b) s[r][h][b] = _mm256_dpbusd_avx_epi32(s[r][h][b], av[b], wv);
      }
  }
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < 2; ++h) {
      const int64_t j = (nb0 + r) * 16 + h * 8;
      const __m256i corr = _mm256_slli_epi32(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.rowsum + j)), 7);
      for (int b = 0; b < NB; ++b)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + b * ldacc + j),
                            _mm256_sub_epi32(s[r][h][b], corr));
    }
}

template <int NB>
__attribute__((target("avx2,fma,avxvnni"))) void i8dot_vnni256(const QMat& w, const uint8_t* u,
                                                               int64_t ldu, int32_t* acc,
                                                               int64_t ldacc) {
  constexpr int R = NB == 1 ? 4 : NB == 2 ? 2 : 1;
  const int64_t nblocks = w.N16 / 16;
  int64_t nb = 0;
  for (; nb + R <= nblocks; nb += R) vnni256_blocks<R, NB>(w, u, ldu, acc, ldacc, nb);
  for (; nb < nblocks; ++nb) vnni256_blocks<1, NB>(w, u, ldu, acc, ldacc, nb);
}

__attribute__((target("avx2,fma"))) inline int32_t hsum256_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// Without VNNI, on the row-major weights: both operands sign-extended to int16 (vpmovsxbw) and
// multiplied in pairs into int32 (vpmaddwd), exact.
template <int R, int NB>
__attribute__((target("avx2,fma"))) inline void madd_rows(const QMat& w, const int8_t* __restrict qa,
                                                          int64_t ldq, int32_t* __restrict acc,
                                                          int64_t ldacc, int64_t j) {
  const int64_t K = w.K;
  const int8_t* q = static_cast<const int8_t*>(w.data);
  __m256i s[R][NB];
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) s[r][b] = _mm256_setzero_si256();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m256i av[NB];
    for (int b = 0; b < NB; ++b)
      av[b] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qa + b * ldq + k)));
    for (int r = 0; r < R; ++r) {
      const __m256i wv =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + (j + r) * K + k)));
      for (int b = 0; b < NB; ++b) s[r][b] = _mm256_add_epi32(s[r][b], _mm256_madd_epi16(wv, av[b]));
    }
  }
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) {
      int32_t sum = hsum256_epi32(s[r][b]);
      for (int64_t kk = k; kk < K; ++kk)
        sum += static_cast<int32_t>(q[(j + r) * K + kk]) * static_cast<int32_t>(qa[b * ldq + kk]);
      acc[b * ldacc + j + r] = sum;
    }
}

template <int NB>
__attribute__((target("avx2,fma"))) void i8dot_avx2(const QMat& w, const int8_t* qa, int64_t ldq,
                                                    int32_t* acc, int64_t ldacc) {
  constexpr int R = NB == 1 ? 4 : 2;
  int64_t j = 0;
  for (; j + R <= w.N; j += R) madd_rows<R, NB>(w, qa, ldq, acc, ldacc, j);
  for (; j < w.N; ++j) madd_rows<1, NB>(w, qa, ldq, acc, ldacc, j);
}

#endif  // x86-64

// Scratch of the int8-activation GEMV: quantized rows of a group of four, their scales, the
// int32 sums.
struct I8Scratch {
  std::vector<int8_t> q;
  std::vector<uint8_t> u;
  std::vector<int32_t> acc;
  std::vector<float> sc;
  void reserve(int64_t Kp, int64_t N16) {
    if (static_cast<int64_t>(sc.size()) < N16) sc.resize(N16);
    if (static_cast<int64_t>(q.size()) < 4 * Kp) {
      q.resize(4 * Kp);
      u.resize(4 * Kp);
    }
    if (static_cast<int64_t>(acc.size()) < 4 * N16) acc.resize(4 * N16);
  }
};

template <int NB>
void i8dot_nb(Isa isa, const QMat& w, const int8_t* q, const uint8_t* u, int64_t ld, int32_t* acc,
              int64_t ldacc) {
#if defined(__x86_64__) && defined(__GNUC__)
  switch (isa) {
    case Isa::kAvx512Vnni: i8dot_vnni512<NB>(w, u, ld, acc, ldacc); return;
    case Isa::kAvxVnni: i8dot_vnni256<NB>(w, u, ld, acc, ldacc); return;
    case Isa::kAvx512:
    case Isa::kAvx2: i8dot_avx2<NB>(w, q, ld, acc, ldacc); return;
    default: break;
  }
#endif
  i8dot_portable<NB>(w, q, ld, acc, ldacc);
}

// y[r * ldy + j] = (W a_r)[j] with a_r quantized, for the nb rows a_r = a + r * lda, in groups
// of at most four (each group reads W once).
void qgemv_i8(Isa isa, const QMat& w, const float* a, int64_t lda, int64_t nb, float* y,
              int64_t ldy, I8Scratch& sc) {
  const int64_t Kp = w.K4 * kColGroup;
  sc.reserve(Kp, w.N16);
  float sa[4];
  for (int64_t r = 0; r < nb;) {
    const int64_t g = std::min<int64_t>(nb - r, 4);
    for (int64_t b = 0; b < g; ++b)
      sa[b] = quantize_row(a + (r + b) * lda, w.K, Kp, sc.q.data() + b * Kp, sc.u.data() + b * Kp);
    int8_t* q = sc.q.data();
    uint8_t* u = sc.u.data();
    int32_t* acc = sc.acc.data();
    switch (g) {
      case 1: i8dot_nb<1>(isa, w, q, u, Kp, acc, w.N16); break;
      case 2: i8dot_nb<2>(isa, w, q, u, Kp, acc, w.N16); break;
      case 3: i8dot_nb<3>(isa, w, q, u, Kp, acc, w.N16); break;
      default: i8dot_nb<4>(isa, w, q, u, Kp, acc, w.N16); break;
    }
    for (int64_t b = 0; b < g; ++b)
      rescale_row(acc + b * w.N16, w.scale, sa[b], sc.sc.data(), y + (r + b) * ldy, w.N);
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

// The packed blocks and row sums of an int8 matrix for the int8-activation GEMV: the caller's
// (pack_int8, cached per weight by lstmkit.nn.quantized), else packed here into `own`.
struct OwnedPack {
  std::vector<int8_t> packed;
  std::vector<int32_t> rowsum;
};

void attach_pack(QMat& m, const OptTensor& pk, const OptTensor& rs, OwnedPack& own,
                 const char* name) {
  TORCH_CHECK(m.kind == WKind::kInt8, name,
              " is bfloat16: int8 activations need int8 weights (the bf16 mode is weight-only)");
  m.K4 = ceil_div(m.K, kColGroup);
  m.N16 = ceil_div(m.N, kRowBlock) * kRowBlock;
  const bool given = pk.has_value() && pk->defined();
  TORCH_CHECK(given == (rs.has_value() && rs->defined()), "the packed ", name,
              " and its row sums come together");
  if (given) {
    TORCH_CHECK(pk->scalar_type() == at::kChar && pk->is_contiguous() && pk->device().is_cpu() &&
                    pk->numel() == m.N16 * m.K4 * kColGroup,
                "the packed ", name, " must be a contiguous int8 CPU tensor of ",
                m.N16 * m.K4 * kColGroup, " elements (pack_int8 of it)");
    TORCH_CHECK(rs->scalar_type() == at::kInt && rs->is_contiguous() && rs->device().is_cpu() &&
                    rs->numel() == m.N16,
                "the row sums of ", name, " must be a contiguous int32 CPU tensor of ", m.N16,
                " elements (pack_int8 of it)");
    m.packed = pk->data_ptr<int8_t>();
    m.rowsum = rs->data_ptr<int32_t>();
    return;
  }
  own.packed.resize(m.N16 * m.K4 * kColGroup);
  own.rowsum.resize(m.N16);
  pack_rows(static_cast<const int8_t*>(m.data), m.N, m.K, own.packed.data(), own.rowsum.data());
  m.packed = own.packed.data();
  m.rowsum = own.rowsum.data();
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
    bool reverse, bool coupled, bool forget_gate, double eps, int64_t isa_arg,
    bool act_int8,            // quantize the activations too (int8 weights only; file header)
    const OptTensor& pk_ih,   // pack_int8(w_ih): (N16 * K4 * 4,) int8 blocks and (N16,) int32
    const OptTensor& rs_ih,   //   row sums; packed here when not given
    const OptTensor& pk_hh, const OptTensor& rs_hh, const OptTensor& pk_hr,
    const OptTensor& rs_hr) {
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
  TORCH_CHECK(isa_arg < kNumIsas && (isa_arg < 0 || isa_supported(static_cast<Isa>(isa_arg))),
              "instruction set ", isa_arg, " is not available on this CPU (best: ",
              isa_name(kBestIsa), ")");
  const Isa isa = isa_arg < 0 ? kBestIsa : static_cast<Isa>(isa_arg);

  QMat Whh = qmat(w_hh, s_hh, "w_hh", G, P);
  QMat Wih, Whr;
  if (folded) Wih = qmat(*w_ih, s_ih, "w_ih", G, I);
  if (proj) Whr = qmat(*w_hr, s_hr, "w_hr", P, H);
  OwnedPack own_ih, own_hh, own_hr;
  if (act_int8) {
    attach_pack(Whh, pk_hh, rs_hh, own_hh, "w_hh");
    if (folded) attach_pack(Wih, pk_ih, rs_ih, own_ih, "w_ih");
    if (proj) attach_pack(Whr, pk_hr, rs_hr, own_hr, "w_hr");
  }
  I8Scratch i8;
  // (B rows, one matrix): the GEMV of the mode
  auto gemv = [&](const QMat& w, const float* a, int64_t lda, int64_t nb, float* y, int64_t ldy) {
    if (act_int8)
      qgemv_i8(isa, w, a, lda, nb, y, ldy, i8);
    else
      qgemv(isa, w, a, lda, nb, y, ldy);
  };
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
  // With int8 activations the input projection of every step is done before the scan (xgs
  // holds all T steps); weight-only, step by step (xgs holds one).
  const bool pre = folded && act_int8;
  std::vector<float> rec(B * G), xgs(folded ? (pre ? T : 1) * B * G : 0), m(B * H),
      hnew(B * P), cn(H);
  float* hp = h.data_ptr<float>();
  float* cp = c.data_ptr<float>();
  const float* ip = inp.data_ptr<float>();
  float* op = out.data_ptr<float>();
  // x W_ih^T (+ LN, b_ih) of n rows into xr
  auto in_proj = [&](const float* x, int64_t n, float* xr) {
    gemv(Wih, x, I, n, xr, G);
    for (int64_t b = 0; b < n; ++b) {
      float* r = xr + b * G;
      if (lnih) layer_norm_row(r, G, lnih, bih, e);
      else if (bih)
        for (int64_t k = 0; k < G; ++k) r[k] += bih[k];
    }
  };
  if (pre) in_proj(ip, T * B, xgs.data());

  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    gemv(Whh, hp, P, B, rec.data(), G);  // (B, G) = h W_hh^T
    const float* xg_t;
    if (pre) {
      xg_t = xgs.data() + t * B * G;
    } else if (folded) {
      in_proj(ip + t * B * I, B, xgs.data());  // (B, G) = x W_ih^T
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
    if (proj) gemv(Whr, m.data(), H, B, hnew.data(), P);  // (B, P) = m W_hr^T
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

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (int i = 0; i < kNumIsas; ++i)
    if (isa_supported(static_cast<Isa>(i))) out.emplace_back(kIsaNames[i]);
  return out;
}

// (packed (N16 * K4 * 4,) int8, rowsum (N16,) int32) of an (N, K) int8 matrix.
std::vector<Tensor> pack_int8(const Tensor& q) {
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == at::kChar && q.device().is_cpu(),
              "pack_int8 takes an (N, K) int8 CPU tensor, got ", q.scalar_type(), " ", q.sizes());
  const Tensor qc = q.contiguous();
  const int64_t N = q.size(0), K = q.size(1);
  const int64_t K4 = ceil_div(K, kColGroup), N16 = ceil_div(N, kRowBlock) * kRowBlock;
  Tensor packed = at::empty({N16 * K4 * kColGroup}, q.options());
  Tensor rowsum = at::empty({N16}, q.options().dtype(at::kInt));
  pack_rows(qc.data_ptr<int8_t>(), N, K, packed.data_ptr<int8_t>(), rowsum.data_ptr<int32_t>());
  return {packed, rowsum};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, mod) {
  mod.doc() = "Quantized (int8 / bf16 weights) inference LSTM recurrence (lstmkit.kernels.cpu.quant)";
  mod.def("forward", &quant_forward, py::arg("inp"), py::arg("w_ih"), py::arg("s_ih"),
          py::arg("b_ih"), py::arg("ln_w_ih"), py::arg("h0"), py::arg("c0"), py::arg("w_hh"),
          py::arg("s_hh"), py::arg("b_hh"), py::arg("w_hr"), py::arg("s_hr"), py::arg("w_ci"),
          py::arg("w_cf"), py::arg("w_co"), py::arg("ln_w_hh"), py::arg("ln_w_c"),
          py::arg("ln_b_c"), py::arg("zoneout_h"), py::arg("zoneout_c"), py::arg("lengths"),
          py::arg("reverse"), py::arg("coupled"), py::arg("forget_gate"), py::arg("eps"),
          py::arg("isa"), py::arg("act_int8"), py::arg("pk_ih"), py::arg("rs_ih"),
          py::arg("pk_hh"), py::arg("rs_hh"), py::arg("pk_hr"), py::arg("rs_hr"),
          "Forward scan with quantized weights: [out, h_n, c_n]");
  mod.def("best_isa", &best_isa,
          "The best instruction set of this CPU for the quantized kernel: avx512_vnni, avx512, "
          "avx_vnni, avx2, portable");
  mod.def("available_isas", &available_isas,
          "The instruction sets this CPU has, lowest first (any can be forced)");
  mod.def("isa_names", [] {
    return std::vector<std::string>(kIsaNames, kIsaNames + kNumIsas);
  }, "The instruction-set names by their number (the isa argument of forward)");
  mod.def("pack_int8", &pack_int8, py::arg("q"),
          "[packed, rowsum]: an int8 matrix in the blocks the int8-activation GEMV reads");
}
