// The weight gradient of 3x3 stride-1 SAME convolutions (NHWC activations,
// HWIO kernels, float32) for XLA:CPU, called from JAX through the XLA FFI.
//
// Target (see frem_jax/cpu/ffi.py):
//   frem_conv3x3_dw   dk[i,j,c,o]  = sum_{n,h,w} x[n,h+i-1,w+j-1,c] dy[n,h,w,o]
// Out-of-image pixels read as zero. Output channels must be a multiple of 16.
//
// Why this part alone: oneDNN computes the forward pass and the input
// gradient (as fast or faster than the direct kernels this file held until
// 2026-12-08, on every CPU measured), but on AMD's CPUs with AVX-512 this
// kernel's weight gradient beat oneDNN 3.2's (Zen 4: 562 against 616 ms over
// the paper model's layers at batch 4; docs/performance.md). Each register
// tile keeps a block of dk in vector registers while it sums over pixels.
// Work is split into fixed chunks whose partial sums are added in a fixed
// order, so results do not depend on thread timing.

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
