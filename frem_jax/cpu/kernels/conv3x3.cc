// 3x3 stride-1 SAME convolutions (NHWC activations, HWIO kernels, float32)
// for XLA:CPU, called from JAX through the XLA FFI.
//
// Why: XLA:CPU's own convolution reaches 40-60 GFLOP/s on this project's
// narrow layers (32 and 64 channels at 256² and 128²) against ~180 at 128+
// channels; these direct kernels keep a block of output pixels x output
// channels in vector registers (docs/performance.md).
//
// Targets (see frem_jax/cpu/ffi.py):
//   frem_conv3x3       y[n,h,w,o]  = sum_{i,j,c} x[n,h+i-1,w+j-1,c] k[i,j,c,o]
//   frem_conv3x3_dw   dk[i,j,c,o]  = sum_{n,h,w} x[n,h+i-1,w+j-1,c] dy[n,h,w,o]
// Out-of-image pixels read as zero. The input gradient is frem_conv3x3 of dy
// with the kernel flipped in space and transposed (done by XLA, which
// transposes faster than a scalar loop). Output channels must be a multiple
// of 16. Work is split into fixed chunks whose partial sums are added in a
// fixed order, so results do not depend on thread timing.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "simd.h"
#include "xla/ffi/api/ffi.h"

namespace {

using namespace frem_kernels;  // NOLINT: the kernels' shared vocabulary

struct Shape {
  int64_t n, h, w, ci, co;
};

// Copies input rows r-1 .. r+count of image n into rows[count+2][w+2][ci],
// zero padded at the borders.
void PaddedRows(const float* x, const Shape& s, int64_t n, int64_t r,
                int64_t count, float* rows) {
  const int64_t row_len = (s.w + 2) * s.ci;
  for (int64_t i = 0; i < count + 2; ++i) {
    float* dst = rows + i * row_len;
    const int64_t src_row = r + i - 1;
    if (src_row < 0 || src_row >= s.h) {
      std::memset(dst, 0, row_len * sizeof(float));
      continue;
    }
    std::memset(dst, 0, s.ci * sizeof(float));
    std::memcpy(dst + s.ci, x + ((n * s.h + src_row) * s.w) * s.ci,
                s.w * s.ci * sizeof(float));
    std::memset(dst + (s.w + 1) * s.ci, 0, s.ci * sizeof(float));
  }
}

// PW output pixels x CV*16 output channels, all 9 taps and input channels.
template <int PW, int CV>
inline void ForwardTile(const float* rows, const float* k, const Shape& s,
                        int64_t w0, int64_t o0, float* y_row) {
  Vec acc[PW][CV];
  for (int p = 0; p < PW; ++p)
    for (int v = 0; v < CV; ++v) acc[p][v] = Vec{};
  const int64_t row_len = (s.w + 2) * s.ci;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      const float* xin = rows + i * row_len + (w0 + j) * s.ci;
      const float* kin = k + ((i * 3 + j) * s.ci) * s.co + o0;
      for (int64_t c = 0; c < s.ci; ++c) {
        Vec kv[CV];
        for (int v = 0; v < CV; ++v) kv[v] = Load(kin + c * s.co + v * kLanes);
        for (int p = 0; p < PW; ++p) {
          const Vec a = Splat(xin[p * s.ci + c]);
          for (int v = 0; v < CV; ++v) acc[p][v] += a * kv[v];
        }
      }
    }
  }
  for (int p = 0; p < PW; ++p)
    for (int v = 0; v < CV; ++v)
      Store(y_row + (w0 + p) * s.co + o0 + v * kLanes, acc[p][v]);
}

template <int CV>
void ForwardRow(const float* rows, const float* k, const Shape& s,
                float* y_row) {
  constexpr int PW = 24 / CV;  // 24 accumulators of 32 vector registers
  for (int64_t o0 = 0; o0 < s.co; o0 += CV * kLanes) {
    int64_t w0 = 0;
    for (; w0 + PW <= s.w; w0 += PW)
      ForwardTile<PW, CV>(rows, k, s, w0, o0, y_row);
    if (w0 < s.w)
      WithConstant<PW - 1>(static_cast<int>(s.w - w0), [&](auto pw) {
        ForwardTile<decltype(pw)::value, CV>(rows, k, s, w0, o0, y_row);
      });
  }
}

// dk[i,j,c0:c0+CB, o0:o0+CV*16] += sum_{g,w} rows[g+i][w+j][c] dy[g][w][o]
// over a group of `count` output rows.
template <int CB, int CV>
inline void WeightGradTile(const float* rows, const float* dy, int64_t count,
                           const Shape& s, int i, int j, int64_t c0, int64_t o0,
                           float* dk) {
  Vec acc[CB][CV];
  float* out = dk + ((i * 3 + j) * s.ci + c0) * s.co + o0;
  for (int c = 0; c < CB; ++c)
    for (int v = 0; v < CV; ++v) acc[c][v] = Load(out + c * s.co + v * kLanes);
  const int64_t row_len = (s.w + 2) * s.ci;
  for (int64_t g = 0; g < count; ++g) {
    const float* xin = rows + (g + i) * row_len + j * s.ci + c0;
    const float* dy_row = dy + g * s.w * s.co + o0;
    for (int64_t w = 0; w < s.w; ++w) {
      Vec d[CV];
      for (int v = 0; v < CV; ++v) d[v] = Load(dy_row + w * s.co + v * kLanes);
      for (int c = 0; c < CB; ++c) {
        const Vec a = Splat(xin[w * s.ci + c]);
        for (int v = 0; v < CV; ++v) acc[c][v] += a * d[v];
      }
    }
  }
  for (int c = 0; c < CB; ++c)
    for (int v = 0; v < CV; ++v) Store(out + c * s.co + v * kLanes, acc[c][v]);
}

template <int CV>
void WeightGradRows(const float* rows, const float* dy, int64_t count,
                    const Shape& s, float* dk) {
  constexpr int CB = 24 / CV;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int64_t o0 = 0; o0 < s.co; o0 += CV * kLanes) {
        int64_t c0 = 0;
        for (; c0 + CB <= s.ci; c0 += CB)
          WeightGradTile<CB, CV>(rows, dy, count, s, i, j, c0, o0, dk);
        if (c0 < s.ci)
          WithConstant<CB - 1>(static_cast<int>(s.ci - c0), [&](auto cb) {
            WeightGradTile<decltype(cb)::value, CV>(rows, dy, count, s, i, j,
                                                    c0, o0, dk);
          });
      }
}

// dk[i,j,:,o0:o0+CV*16] over all images, from the padded images xpad. Pixels
// are taken a few rows (~256 pixels) at a time, so that their dy block stays
// in cache while every input-channel block is summed over them.
template <int CV>
void WeightGradBlock(const float* xpad, const float* dy, const Shape& s, int i,
                     int j, int64_t o0, float* dk) {
  constexpr int CB = 24 / CV;
  const int64_t row_len = (s.w + 2) * s.ci;
  const int64_t band = std::max<int64_t>(1, 256 / s.w);
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t r0 = 0; r0 < s.h; r0 += band) {
      const int64_t count = std::min(band, s.h - r0);
      const float* rows = xpad + (n * (s.h + 2) + r0) * row_len;
      const float* dy_rows = dy + (n * s.h + r0) * s.w * s.co;
      for (int64_t c0 = 0; c0 < s.ci; c0 += CB) {
        const int cb = static_cast<int>(std::min<int64_t>(CB, s.ci - c0));
        WithConstant<CB>(cb, [&](auto n) {
          WeightGradTile<decltype(n)::value, CV>(rows, dy_rows, count, s, i, j,
                                                 c0, o0, dk);
        });
      }
    }
  }
}

ffi::Error CheckShapes(const Shape& s, const char* what) {
  if (s.co % kLanes != 0)
    return ffi::Error::InvalidArgument(std::string(what) +
                                       ": output channels must be a multiple "
                                       "of 16, got " + std::to_string(s.co));
  return ffi::Error::Success();
}

// y = conv(x, k) for a [3, 3, s.ci, s.co] kernel k.
void Forward(ffi::ThreadPool& pool, const float* xp, const float* kp,
             const Shape& s, float* yp) {
  // Tasks are bands of output rows, so that each input row is copied into the
  // padded buffer once per band rather than three times.
  constexpr int64_t kBand = 8;
  const int64_t bands_per_image = (s.h + kBand - 1) / kBand;
  const int64_t row_len = (s.w + 2) * s.ci;
  ParallelFor(pool, s.n * bands_per_image, [&](int64_t band) {
    thread_local std::vector<float> rows;
    rows.resize((kBand + 2) * row_len);
    const int64_t n = band / bands_per_image;
    const int64_t r0 = (band % bands_per_image) * kBand;
    const int64_t count = std::min(kBand, s.h - r0);
    PaddedRows(xp, s, n, r0, count, rows.data());
    for (int64_t g = 0; g < count; ++g) {
      const float* in = rows.data() + g * row_len;
      float* y_row = yp + ((n * s.h) + r0 + g) * s.w * s.co;
      WithVectorsPerBlock(s.co, [&](auto cv) {
        ForwardRow<decltype(cv)::value>(in, kp, s, y_row);
      });
    }
  });
}

ffi::Error Conv3x3(ffi::ThreadPool pool, Array4 x, Array4 k, Result4 y) {
  const auto xd = x.dimensions();
  const auto kd = k.dimensions();
  const Shape s{xd[0], xd[1], xd[2], xd[3], kd[3]};
  if (kd[0] != 3 || kd[1] != 3 || kd[2] != s.ci)
    return ffi::Error::InvalidArgument("frem_conv3x3: kernel must be 3x3xCixCo");
  if (auto e = CheckShapes(s, "frem_conv3x3"); e.failure()) return e;
  Forward(pool, x.typed_data(), k.typed_data(), s, y->typed_data());
  return ffi::Error::Success();
}

ffi::Error Conv3x3WeightGrad(ffi::ThreadPool pool, Array4 x,
                             Array4 dy,
                             Result4 dk) {
  const auto xd = x.dimensions();
  const auto gd = dy.dimensions();
  const Shape s{xd[0], xd[1], xd[2], xd[3], gd[3]};
  if (gd[0] != s.n || gd[1] != s.h || gd[2] != s.w)
    return ffi::Error::InvalidArgument(
        "frem_conv3x3_dw: x and dy must have the same N, H, W");
  if (auto e = CheckShapes(s, "frem_conv3x3_dw"); e.failure()) return e;
  const float* xp = x.typed_data();
  const float* gp = dy.typed_data();
  float* out = dk->typed_data();
  const int64_t rows_total = s.n * s.h;
  const int64_t k_size = 9 * s.ci * s.co;
  // Measured on the U-Net's layers (docs/performance.md): per-block tasks win
  // once dk is large against the pixels' data.
  if (k_size * 16 > rows_total * s.w * (s.ci + s.co)) {
    // Large kernels, few pixels: each task owns a block of dk and sums over
    // all pixels, from a padded copy of x.
    const int64_t image_len = (s.h + 2) * (s.w + 2) * s.ci;
    std::vector<float> xpad(s.n * image_len);
    for (int64_t n = 0; n < s.n; ++n)
      PaddedRows(xp, s, n, 0, s.h, xpad.data() + n * image_len);
    std::memset(out, 0, k_size * sizeof(float));
    WithVectorsPerBlock(s.co, [&](auto cv) {
      constexpr int CV = decltype(cv)::value;
      const int64_t blocks = s.co / (CV * kLanes);
      ParallelFor(pool, 9 * blocks, [&](int64_t task) {
        const int tap = static_cast<int>(task / blocks);
        WeightGradBlock<CV>(xpad.data(), gp, s, tap / 3, tap % 3,
                            (task % blocks) * CV * kLanes, out);
      });
    });
    return ffi::Error::Success();
  }
  // Many pixels: each chunk of rows sums into its own copy of dk.
  // Rows are taken in groups of about 256 KB of x and dy, so that each
  // register block of dk sums over many pixels before it is stored.
  const int64_t group = std::max<int64_t>(
      1, (256 << 10) / (s.w * (s.ci + s.co) * int64_t{sizeof(float)}));
  // A fixed number of chunks (a function of the shapes, not of the pool)
  // keeps the summation order, hence the result, independent of threads.
  const int64_t chunks = std::clamp<int64_t>(rows_total / (2 * group), 1, 16);
  std::vector<float> partial(chunks * k_size, 0.0f);
  ParallelFor(pool, chunks, [&](int64_t chunk) {
    std::vector<float> rows((group + 2) * (s.w + 2) * s.ci);
    float* acc = partial.data() + chunk * k_size;
    const int64_t end = rows_total * (chunk + 1) / chunks;
    for (int64_t row = rows_total * chunk / chunks; row < end;) {
      const int64_t n = row / s.h, r = row % s.h;
      const int64_t count = std::min({group, end - row, s.h - r});
      PaddedRows(xp, s, n, r, count, rows.data());
      const float* dy_rows = gp + row * s.w * s.co;
      WithVectorsPerBlock(s.co, [&](auto cv) {
        WeightGradRows<decltype(cv)::value>(rows.data(), dy_rows, count, s, acc);
      });
      row += count;
    }
  });
  SumPartials(partial.data(), chunks, k_size, out);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(FremConv3x3, Conv3x3, TwoArraysToOne());

XLA_FFI_DEFINE_HANDLER_SYMBOL(FremConv3x3WeightGrad, Conv3x3WeightGrad, TwoArraysToOne());

// 1 where these kernels were built for AVX-512, else 0. Their register tiles (24 accumulators of
// 16 floats) were written for AVX-512's 32 vector registers; built for AVX2 (16 registers of 8
// floats) every tile spills, and they ran 11-21x slower than oneDNN's convolutions (AMD EPYC Zen 3,
// docs/performance.md), so `ffi` plans them only where this is 1.
extern "C" int FremKernelsAvx512() {
#ifdef __AVX512F__
  return 1;
#else
  return 0;
#endif
}
