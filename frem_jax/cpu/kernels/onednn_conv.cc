// 3x3 stride-1 SAME convolutions on oneDNN (NHWC activations, HWIO kernels,
// float32 or bfloat16), called from JAX through the XLA FFI
// (frem_jax/cpu/ffi.py). Built only where oneDNN's headers and library are
// installed (setup.py; the onednn-*-cpu-gomp wheels).
//
// Targets (direct convolution; the weights are reordered on every call between
// HWIO and the layout oneDNN prefers, format_tag::any: with HWIO as they are,
// fwd+bwd was 2-5x slower, and convolution_auto picks the same
// implementations as convolution_direct on AVX-512):
//   frem_dnnl_conv3x3     y  = conv(x, k)           x [N,H,W,C], k [3,3,C,O]
//   frem_dnnl_conv3x3_dx  dx = conv_bwd_data(dy, k) dy [N,H,W,O], k [3,3,C,O]
//   frem_dnnl_conv3x3_dw  dk = conv_bwd_weights(x, dy), always float32
// x, k and dy are float32, or bfloat16 (then y and dx may be float32 or
// bfloat16: the result buffer's type says which). Primitives are built once
// per shape and types, and cached.
//
// Threads: oneDNN here runs on GNU OpenMP; each call sets the calling
// thread's OpenMP team to the size of XLA's intra-op pool (or
// FREM_JAX_ONEDNN_THREADS), and one call runs at a time, so that oneDNN's
// threads and XLA's share the cores instead of oversubscribing them.

#include <omp.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace {

namespace ffi = xla::ffi;
using dnnl::memory;
using Tag = memory::format_tag;
using Type = memory::data_type;

enum Op { kForward, kBackwardData, kBackwardWeights };

dnnl::engine& Engine() {
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

struct Key {
  int op;
  int64_t n, h, w, c, o;
  Type act, out;  // the activations' type (x or dy), the result's type
  bool operator<(const Key& b) const {
    return std::tie(op, n, h, w, c, o, act, out) <
           std::tie(b.op, b.n, b.h, b.w, b.c, b.o, b.act, b.out);
  }
};

// A primitive and what it needs around it: its weights (or weight gradient)
// layout and, where it is not HWIO, the reorder between the two.
struct Plan {
  dnnl::primitive conv;
  memory::desc weights, hwio, scratchpad;
  bool reorder = false;
  dnnl::reorder to_conv, from_conv;  // HWIO -> weights; weights -> HWIO
};

memory::desc Activations(int64_t n, int64_t h, int64_t w, int64_t c, Type t) {
  return memory::desc({n, c, h, w}, t, Tag::nhwc);
}

std::shared_ptr<Plan> MakePlan(const Key& k) {
  auto& engine = Engine();
  const Type wt = k.act;  // the kernel has the activations' type (f32 or bf16)
  const Type weights_type = k.op == kBackwardWeights ? Type::f32 : wt;
  const memory::desc hwio({k.o, k.c, 3, 3}, weights_type, Tag::hwio);
  const memory::desc weights_any({k.o, k.c, 3, 3}, weights_type, Tag::any);
  const auto algorithm = dnnl::algorithm::convolution_direct;
  const memory::dims strides{1, 1}, pad{1, 1};
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto plan = std::make_shared<Plan>();
  plan->hwio = hwio;
  const auto x_like = [&](Type t) { return Activations(k.n, k.h, k.w, k.c, t); };
  const auto y_like = [&](Type t) { return Activations(k.n, k.h, k.w, k.o, t); };
  if (k.op == kForward) {
    dnnl::convolution_forward::primitive_desc pd(
        engine, dnnl::prop_kind::forward_training, algorithm, x_like(k.act),
        weights_any, y_like(k.out), strides, pad, pad, attr);
    plan->conv = dnnl::convolution_forward(pd);
    plan->weights = pd.weights_desc();
    plan->scratchpad = pd.scratchpad_desc();
  } else if (k.op == kBackwardData) {
    // The forward hint only tells oneDNN the layouts: the input in dy's type.
    dnnl::convolution_forward::primitive_desc hint(
        engine, dnnl::prop_kind::forward_training, algorithm, x_like(k.act),
        weights_any, y_like(k.act), strides, pad, pad);
    dnnl::convolution_backward_data::primitive_desc pd(
        engine, algorithm, x_like(k.out), weights_any, y_like(k.act), strides,
        pad, pad, hint, attr);
    plan->conv = dnnl::convolution_backward_data(pd);
    plan->weights = pd.weights_desc();
    plan->scratchpad = pd.scratchpad_desc();
  } else {
    const memory::desc hint_weights({k.o, k.c, 3, 3}, wt, Tag::any);
    dnnl::convolution_forward::primitive_desc hint(
        engine, dnnl::prop_kind::forward_training, algorithm, x_like(k.act),
        hint_weights, y_like(k.act), strides, pad, pad);
    dnnl::convolution_backward_weights::primitive_desc pd(
        engine, algorithm, x_like(k.act), weights_any, y_like(k.act), strides,
        pad, pad, hint, attr);
    plan->conv = dnnl::convolution_backward_weights(pd);
    plan->weights = pd.diff_weights_desc();
    plan->scratchpad = pd.scratchpad_desc();
  }
  plan->reorder = plan->weights != hwio;
  if (plan->reorder) {
    if (k.op == kBackwardWeights)
      plan->from_conv = dnnl::reorder(
          dnnl::reorder::primitive_desc(engine, plan->weights, engine, hwio));
    else
      plan->to_conv = dnnl::reorder(
          dnnl::reorder::primitive_desc(engine, hwio, engine, plan->weights));
  }
  return plan;
}

std::shared_ptr<Plan> GetPlan(const Key& key) {
  static std::mutex mu;
  static auto* cache = new std::map<Key, std::shared_ptr<Plan>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& plan = (*cache)[key];
  if (!plan) plan = MakePlan(key);
  return plan;
}

// Per-thread buffers: scratchpad and reordered weights.
void* Buffer(std::vector<char>& buffer, size_t bytes) {
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

std::atomic<int> last_threads{0};  // the team size of the latest call (FremDnnlThreads)

int Threads(ffi::ThreadPool& pool) {
  static const int forced = [] {
    const char* v = std::getenv("FREM_JAX_ONEDNN_THREADS");
    return v ? std::atoi(v) : 0;
  }();
  if (forced > 0) return forced;
  const int64_t n = pool.num_threads();
  return n > 0 ? static_cast<int>(n) : 1;
}

ffi::DataType Checked(ffi::DataType t, bool* ok) {
  *ok = *ok && (t == ffi::DataType::F32 || t == ffi::DataType::BF16);
  return t;
}

Type ToDnnl(ffi::DataType t) {
  return t == ffi::DataType::BF16 ? Type::bf16 : Type::f32;
}

ffi::Error Run(ffi::ThreadPool& pool, Op op, ffi::AnyBuffer a,
               ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out) {
  const auto ad = a.dimensions(), bd = b.dimensions(), od = out->dimensions();
  if (ad.size() != 4 || bd.size() != 4 || od.size() != 4)
    return ffi::Error::InvalidArgument("frem_dnnl_conv3x3: rank-4 arrays");
  bool ok = true;
  const auto at = Checked(a.element_type(), &ok);
  const auto bt = Checked(b.element_type(), &ok);
  const auto ot = Checked(out->element_type(), &ok);
  if (!ok || at != bt || (at == ffi::DataType::F32 && ot != at) ||
      (op == kBackwardWeights && ot != ffi::DataType::F32))
    return ffi::Error::InvalidArgument(
        "frem_dnnl_conv3x3: f32 or bf16 inputs of one type; f32 results of "
        "f32 inputs; f32 weight gradients");
  Key key{op, ad[0], ad[1], ad[2], 0, 0, ToDnnl(at), ToDnnl(ot)};
  // (a, b, out): forward (x, k, y), backward data (dy, k, dx), weights (x, dy, dk).
  const auto& k_dims = op == kBackwardWeights ? od : bd;
  key.c = k_dims[2];
  key.o = k_dims[3];
  const bool shapes_ok =
      k_dims[0] == 3 && k_dims[1] == 3 &&
      (op == kForward ? ad[3] == key.c && od[3] == key.o
       : op == kBackwardData ? ad[3] == key.o && od[3] == key.c
                             : ad[3] == key.c && bd[3] == key.o &&
                                   bd[0] == ad[0] && bd[1] == ad[1] &&
                                   bd[2] == ad[2]) &&
      (op == kBackwardWeights ||
       (od[0] == ad[0] && od[1] == ad[1] && od[2] == ad[2]));
  if (!shapes_ok)
    return ffi::Error::InvalidArgument(
        "frem_dnnl_conv3x3: shapes do not match a 3x3 SAME convolution");
  try {
    const auto plan = GetPlan(key);
    auto& engine = Engine();
    thread_local dnnl::stream stream(engine);
    thread_local std::vector<char> scratch, weights;
    // One team at a time: XLA may run two independent convolutions (a layer's
    // two gradients) at once, and two teams of the pool's size would
    // oversubscribe the cores.
    static std::mutex one_team;
    std::lock_guard<std::mutex> lock(one_team);
    const int threads = Threads(pool);
    omp_set_num_threads(threads);
    last_threads.store(threads, std::memory_order_relaxed);
    memory scratchpad(plan->scratchpad, engine,
                      Buffer(scratch, plan->scratchpad.get_size()));
    const auto x_like = [&](Type t, void* p) {
      return memory(Activations(key.n, key.h, key.w, key.c, t), engine, p);
    };
    const auto y_like = [&](Type t, void* p) {
      return memory(Activations(key.n, key.h, key.w, key.o, t), engine, p);
    };
    if (op == kBackwardWeights) {
      memory dk(plan->hwio, engine, out->untyped_data());
      memory dw = plan->reorder
                      ? memory(plan->weights, engine,
                               Buffer(weights, plan->weights.get_size()))
                      : dk;
      plan->conv.execute(stream, {{DNNL_ARG_SRC, x_like(key.act, a.untyped_data())},
                                  {DNNL_ARG_DIFF_DST, y_like(key.act, b.untyped_data())},
                                  {DNNL_ARG_DIFF_WEIGHTS, dw},
                                  {DNNL_ARG_SCRATCHPAD, scratchpad}});
      if (plan->reorder) plan->from_conv.execute(stream, dw, dk);
    } else {
      memory k(plan->hwio, engine, b.untyped_data());
      memory w = k;
      if (plan->reorder) {
        w = memory(plan->weights, engine, Buffer(weights, plan->weights.get_size()));
        plan->to_conv.execute(stream, k, w);
      }
      if (op == kForward)
        plan->conv.execute(stream, {{DNNL_ARG_SRC, x_like(key.act, a.untyped_data())},
                                    {DNNL_ARG_WEIGHTS, w},
                                    {DNNL_ARG_DST, y_like(key.out, out->untyped_data())},
                                    {DNNL_ARG_SCRATCHPAD, scratchpad}});
      else
        plan->conv.execute(stream, {{DNNL_ARG_DIFF_DST, y_like(key.act, a.untyped_data())},
                                    {DNNL_ARG_WEIGHTS, w},
                                    {DNNL_ARG_DIFF_SRC, x_like(key.out, out->untyped_data())},
                                    {DNNL_ARG_SCRATCHPAD, scratchpad}});
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("frem_dnnl_conv3x3: oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

template <Op op>
ffi::Error Handler(ffi::ThreadPool pool, ffi::AnyBuffer a, ffi::AnyBuffer b,
                   ffi::Result<ffi::AnyBuffer> out) {
  return Run(pool, op, a, b, out);
}

auto Binding() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::AnyBuffer>()
      .Arg<ffi::AnyBuffer>()
      .Ret<ffi::AnyBuffer>();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(FremDnnlConv3x3, Handler<kForward>, Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(FremDnnlConv3x3InputGrad, Handler<kBackwardData>,
                              Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(FremDnnlConv3x3WeightGrad,
                              Handler<kBackwardWeights>, Binding());

// oneDNN's version and the ISA it dispatches to (dnnl::cpu_isa's value), for logs.
extern "C" const char* FremDnnlInfo() {
  static const std::string info = [] {
    const auto* v = dnnl::version();
    return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) +
           "." + std::to_string(v->patch) + ", cpu_isa " +
           std::to_string(static_cast<int>(dnnl::get_effective_cpu_isa()));
  }();
  return info.c_str();
}

// The OpenMP team size of the latest call (for tests: it must match XLA's pool).
extern "C" int FremDnnlThreads() { return last_threads.load(std::memory_order_relaxed); }

// 1 where oneDNN computes bfloat16 convolutions on this CPU (AVX-512 or AVX2-VNNI-2 and up), else
// 0: a bfloat16 primitive cannot be created elsewhere, so half precision must not ask for one.
extern "C" int FremDnnlBf16() {
  static const int supported = [] {
    try {
      const memory::desc x({1, 16, 4, 4}, Type::bf16, Tag::nhwc);
      const memory::desc w({16, 16, 3, 3}, Type::bf16, Tag::any);
      const memory::desc dw({16, 16, 3, 3}, Type::f32, Tag::any);
      const memory::dims strides{1, 1}, pad{1, 1};
      const auto algorithm = dnnl::algorithm::convolution_direct;
      dnnl::convolution_forward::primitive_desc fwd(
          Engine(), dnnl::prop_kind::forward_training, algorithm, x, w, x, strides, pad, pad);
      dnnl::convolution_backward_weights::primitive_desc bwd(Engine(), algorithm, x, dw, x,
                                                             strides, pad, pad, fwd);
      return 1;
    } catch (const dnnl::error&) {
      return 0;
    }
  }();
  return supported;
}
