// Vector type, loads and the thread-pool loop shared by the CPU kernels.

#ifndef FREM_JAX_CPU_KERNELS_SIMD_H_
#define FREM_JAX_CPU_KERNELS_SIMD_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <type_traits>

#include "xla/ffi/api/ffi.h"

namespace frem_kernels {

namespace ffi = xla::ffi;

using Array4 = ffi::Buffer<ffi::F32, 4>;
using Result4 = ffi::ResultBuffer<ffi::F32, 4>;

constexpr int kLanes = 16;
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec Load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(Vec));
  return v;
}
inline void Store(float* p, Vec v) { std::memcpy(p, &v, sizeof(Vec)); }
inline Vec Splat(float a) { return Vec{} + a; }

// Runs body(chunk) for chunk in [0, num_chunks) on the caller and on the XLA
// intra-op pool. The caller takes chunks too and only waits for chunks
// already started, so it never waits on a pool thread that is itself busy.
template <typename Body>
inline void ParallelFor(ffi::ThreadPool& pool, int64_t num_chunks, const Body& body) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto state = std::make_shared<State>();
  const int64_t total = num_chunks;
  auto work = [state, total, &body]() {
    int64_t finished = 0;
    for (int64_t c; (c = state->next.fetch_add(1)) < total;) {
      body(c);
      ++finished;
    }
    if (finished && state->done.fetch_add(finished) + finished == total) {
      std::lock_guard<std::mutex> lock(state->mu);
      state->cv.notify_all();
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), total) - 1;
  // A helper that starts after all chunks are taken does nothing; `body` is
  // only touched while chunks remain, i.e. before the caller returns.
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule([work]() { work(); });
  work();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done.load() == total; });
}

// Calls f(std::integral_constant<int, n>) for a runtime n in [1, N]: the
// tile templates take their sizes as constants, remainders at run time.
template <int N, typename F>
inline void WithConstant(int n, const F& f) {
  if constexpr (N > 0) {
    if (n == N) return f(std::integral_constant<int, N>{});
    WithConstant<N - 1>(n, f);
  }
}

// Calls f(std::integral_constant<int, CV>) with the vectors per register
// block (4, 2 or 1) for `channels` output channels (a multiple of 16).
template <typename F>
inline void WithVectorsPerBlock(int64_t channels, const F& f) {
  if (channels % (4 * kLanes) == 0) return f(std::integral_constant<int, 4>{});
  if (channels % (2 * kLanes) == 0) return f(std::integral_constant<int, 2>{});
  f(std::integral_constant<int, 1>{});
}

// out = partial[0] + partial[1] + ... (chunks blocks of `size`), in order.
inline void SumPartials(const float* partial, int64_t chunks, int64_t size,
                        float* out) {
  std::memcpy(out, partial, size * sizeof(float));
  for (int64_t c = 1; c < chunks; ++c)
    for (int64_t i = 0; i < size; ++i) out[i] += partial[c * size + i];
}

// The FFI signature of every kernel: (thread pool, two arrays) -> one array.
inline auto TwoArraysToOne() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<Array4>()
      .Arg<Array4>()
      .Ret<Array4>();
}

}  // namespace frem_kernels

#endif  // FREM_JAX_CPU_KERNELS_SIMD_H_
