// The decoder's 2x2 stride-2 transposed convolution (NHWC, float32) for
// XLA:CPU, called from JAX through the XLA FFI (see frem_jax/cpu/ffi.py).
//
// Each input pixel writes one 2x2 output block; k is indexed by the output
// offset (a, b) inside the block (nn.ConvTranspose's kernel flipped in space):
//   frem_upconv2x2     y[n,2h+a,2w+b,o] = sum_c x[n,h,w,c] k[a,b,c,o]
//   frem_upconv2x2_dx  dx[n,h,w,c]      = sum_{a,b,o} dy[n,2h+a,2w+b,o] kt[a,b,o,c]
//                      (kt: k with its channel axes swapped, by XLA)
//   frem_upconv2x2_dk  dk[a,b,c,o]      = sum_{n,h,w} x[n,h,w,c] dy[n,2h+a,2w+b,o]
// The channels written (o, c, o) must be a multiple of 16. XLA runs this
// layer as a matrix product plus depth-to-space copies, whose gradient
// transposes cost more than the products (docs/performance.md).

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "simd.h"
#include "xla/ffi/api/ffi.h"

namespace {

using namespace frem_kernels;  // NOLINT: the kernels' shared vocabulary

struct UpShape {
  int64_t n, h, w, c, o;  // input N, H, W, channels; output channels
};

// y_row[2(w0+p)+b][o0:o0+16CV] for PW input pixels of x_row.
template <int PW, int CV>
inline void UpTile(const float* x_row, const float* k_ab, const UpShape& s,
                   int b, int64_t w0, int64_t o0, float* y_row) {
  Vec acc[PW][CV];
  for (int p = 0; p < PW; ++p)
    for (int v = 0; v < CV; ++v) acc[p][v] = Vec{};
  const float* xin = x_row + w0 * s.c;
  for (int64_t c = 0; c < s.c; ++c) {
    Vec kv[CV];
    for (int v = 0; v < CV; ++v) kv[v] = Load(k_ab + c * s.o + o0 + v * kLanes);
    for (int p = 0; p < PW; ++p) {
      const Vec a = Splat(xin[p * s.c + c]);
      for (int v = 0; v < CV; ++v) acc[p][v] += a * kv[v];
    }
  }
  for (int p = 0; p < PW; ++p)
    for (int v = 0; v < CV; ++v)
      Store(y_row + (2 * (w0 + p) + b) * s.o + o0 + v * kLanes, acc[p][v]);
}

// dx_row[w0+p][c0:c0+16CV] from the 2x2 blocks of dy below input pixels.
template <int PW, int CV>
inline void UpDxTile(const float* dy_rows, const float* kt, const UpShape& s,
                     int64_t w0, int64_t c0, float* dx_row) {
  Vec acc[PW][CV];
  for (int p = 0; p < PW; ++p)
    for (int v = 0; v < CV; ++v) acc[p][v] = Vec{};
  for (int a = 0; a < 2; ++a) {
    for (int b = 0; b < 2; ++b) {
      const float* g = dy_rows + a * (2 * s.w) * s.o + (2 * w0 + b) * s.o;
      const float* kin = kt + (a * 2 + b) * s.o * s.c + c0;
      for (int64_t o = 0; o < s.o; ++o) {
        Vec kv[CV];
        for (int v = 0; v < CV; ++v) kv[v] = Load(kin + o * s.c + v * kLanes);
        for (int p = 0; p < PW; ++p) {
          const Vec x = Splat(g[2 * p * s.o + o]);
          for (int v = 0; v < CV; ++v) acc[p][v] += x * kv[v];
        }
      }
    }
  }
  for (int p = 0; p < PW; ++p)
    for (int v = 0; v < CV; ++v)
      Store(dx_row + (w0 + p) * s.c + c0 + v * kLanes, acc[p][v]);
}

// dk[a,b,c0:c0+CB,o0:o0+16CV] += sum_w x_row[w][c] dy_row[2w+b][o].
template <int CB, int CV>
inline void UpDkTile(const float* x_row, const float* dy_row, const UpShape& s,
                     int b, int64_t c0, int64_t o0, float* dk_ab) {
  Vec acc[CB][CV];
  float* out = dk_ab + c0 * s.o + o0;
  for (int c = 0; c < CB; ++c)
    for (int v = 0; v < CV; ++v) acc[c][v] = Load(out + c * s.o + v * kLanes);
  for (int64_t w = 0; w < s.w; ++w) {
    Vec g[CV];
    for (int v = 0; v < CV; ++v)
      g[v] = Load(dy_row + (2 * w + b) * s.o + o0 + v * kLanes);
    for (int c = 0; c < CB; ++c) {
      const Vec x = Splat(x_row[w * s.c + c0 + c]);
      for (int v = 0; v < CV; ++v) acc[c][v] += x * g[v];
    }
  }
  for (int c = 0; c < CB; ++c)
    for (int v = 0; v < CV; ++v) Store(out + c * s.o + v * kLanes, acc[c][v]);
}

template <int CV>
void UpRow(const float* x_row, const float* k, const UpShape& s,
           float* y_rows) {
  constexpr int PW = 24 / CV;
  for (int a = 0; a < 2; ++a) {
    float* y_row = y_rows + a * (2 * s.w) * s.o;
    for (int b = 0; b < 2; ++b) {
      const float* k_ab = k + (a * 2 + b) * s.c * s.o;
      for (int64_t o0 = 0; o0 < s.o; o0 += CV * kLanes) {
        int64_t w0 = 0;
        for (; w0 + PW <= s.w; w0 += PW)
          UpTile<PW, CV>(x_row, k_ab, s, b, w0, o0, y_row);
        if (w0 < s.w)
          WithConstant<PW - 1>(static_cast<int>(s.w - w0), [&](auto pw) {
            UpTile<decltype(pw)::value, CV>(x_row, k_ab, s, b, w0, o0, y_row);
          });
      }
    }
  }
}

template <int CV>
void UpDxRow(const float* dy_rows, const float* kt, const UpShape& s,
             float* dx_row) {
  constexpr int PW = 24 / CV;
  for (int64_t c0 = 0; c0 < s.c; c0 += CV * kLanes) {
    int64_t w0 = 0;
    for (; w0 + PW <= s.w; w0 += PW)
      UpDxTile<PW, CV>(dy_rows, kt, s, w0, c0, dx_row);
    if (w0 < s.w)
      WithConstant<PW - 1>(static_cast<int>(s.w - w0), [&](auto pw) {
        UpDxTile<decltype(pw)::value, CV>(dy_rows, kt, s, w0, c0, dx_row);
      });
  }
}

template <int CV>
void UpDkRow(const float* x_row, const float* dy_rows, const UpShape& s,
             float* dk) {
  constexpr int CB = 24 / CV;
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) {
      const float* dy_row = dy_rows + a * (2 * s.w) * s.o;
      float* dk_ab = dk + (a * 2 + b) * s.c * s.o;
      for (int64_t o0 = 0; o0 < s.o; o0 += CV * kLanes) {
        int64_t c0 = 0;
        for (; c0 + CB <= s.c; c0 += CB)
          UpDkTile<CB, CV>(x_row, dy_row, s, b, c0, o0, dk_ab);
        if (c0 < s.c)
          WithConstant<CB - 1>(static_cast<int>(s.c - c0), [&](auto cb) {
            UpDkTile<decltype(cb)::value, CV>(x_row, dy_row, s, b, c0, o0,
                                              dk_ab);
          });
      }
    }
}

ffi::Error NotMultipleOf16(const char* what, int64_t channels) {
  return ffi::Error::InvalidArgument(
      std::string(what) + ": channels written must be a multiple of 16, got " +
      std::to_string(channels));
}

ffi::Error UpConv(ffi::ThreadPool pool, Array4 x, Array4 k, Result4 y) {
  const auto xd = x.dimensions();
  const auto kd = k.dimensions();
  const UpShape s{xd[0], xd[1], xd[2], xd[3], kd[3]};
  if (kd[0] != 2 || kd[1] != 2 || kd[2] != s.c)
    return ffi::Error::InvalidArgument("frem_upconv2x2: kernel must be 2x2xCxO");
  if (s.o % kLanes) return NotMultipleOf16("frem_upconv2x2", s.o);
  const float* xp = x.typed_data();
  const float* kp = k.typed_data();
  float* yp = y->typed_data();
  ParallelFor(pool, s.n * s.h, [&](int64_t row) {
    const float* x_row = xp + row * s.w * s.c;
    float* y_rows = yp + row * 2 * (2 * s.w) * s.o;  // output rows 2h, 2h+1
    WithVectorsPerBlock(s.o, [&](auto cv) {
      UpRow<decltype(cv)::value>(x_row, kp, s, y_rows);
    });
  });
  return ffi::Error::Success();
}

ffi::Error UpConvInputGrad(ffi::ThreadPool pool, Array4 dy, Array4 kt,
                           Result4 dx) {
  const auto gd = dy.dimensions();
  const auto kd = kt.dimensions();
  const UpShape s{gd[0], gd[1] / 2, gd[2] / 2, kd[3], kd[2]};
  if (kd[0] != 2 || kd[1] != 2 || gd[3] != s.o)
    return ffi::Error::InvalidArgument("frem_upconv2x2_dx: kernel must be 2x2xOxC");
  if (s.c % kLanes) return NotMultipleOf16("frem_upconv2x2_dx", s.c);
  const float* kp = kt.typed_data();
  const float* gp = dy.typed_data();
  float* xp = dx->typed_data();
  ParallelFor(pool, s.n * s.h, [&](int64_t row) {
    const float* dy_rows = gp + row * 2 * (2 * s.w) * s.o;
    float* dx_row = xp + row * s.w * s.c;
    WithVectorsPerBlock(s.c, [&](auto cv) {
      UpDxRow<decltype(cv)::value>(dy_rows, kp, s, dx_row);
    });
  });
  return ffi::Error::Success();
}

ffi::Error UpConvKernelGrad(ffi::ThreadPool pool, Array4 x, Array4 dy,
                            Result4 dk) {
  const auto xd = x.dimensions();
  const auto gd = dy.dimensions();
  const UpShape s{xd[0], xd[1], xd[2], xd[3], gd[3]};
  if (gd[0] != s.n || gd[1] != 2 * s.h || gd[2] != 2 * s.w)
    return ffi::Error::InvalidArgument(
        "frem_upconv2x2_dk: dy must be twice x's height and width");
  if (s.o % kLanes) return NotMultipleOf16("frem_upconv2x2_dk", s.o);
  const float* xp = x.typed_data();
  const float* gp = dy.typed_data();
  float* out = dk->typed_data();
  const int64_t rows_total = s.n * s.h;
  const int64_t k_size = 4 * s.c * s.o;
  // A fixed number of row chunks (a function of the shapes only), each with
  // its own partial sum, added in order: results independent of threads.
  const int64_t chunks =
      std::clamp<int64_t>(rows_total * s.w / 512, 1, 16);
  std::vector<float> partial(chunks * k_size, 0.0f);
  ParallelFor(pool, chunks, [&](int64_t chunk) {
    float* acc = partial.data() + chunk * k_size;
    const int64_t end = rows_total * (chunk + 1) / chunks;
    for (int64_t row = rows_total * chunk / chunks; row < end; ++row) {
      const float* x_row = xp + row * s.w * s.c;
      const float* dy_rows = gp + row * 2 * (2 * s.w) * s.o;
      WithVectorsPerBlock(s.o, [&](auto cv) {
        UpDkRow<decltype(cv)::value>(x_row, dy_rows, s, acc);
      });
    }
  });
  SumPartials(partial.data(), chunks, k_size, out);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(FremUpConv2x2, UpConv, TwoArraysToOne());

XLA_FFI_DEFINE_HANDLER_SYMBOL(FremUpConv2x2InputGrad, UpConvInputGrad, TwoArraysToOne());

XLA_FFI_DEFINE_HANDLER_SYMBOL(FremUpConv2x2KernelGrad, UpConvKernelGrad, TwoArraysToOne());
