// 3x3 stride-1 SAME convolutions and 2x2 stride-2 transposed convolutions on
// oneDNN (NHWC activations, HWIO kernels, float32 or bfloat16), called from JAX
// through the XLA FFI (frem_jax/cpu/ffi.py). Built only where oneDNN's headers
// and library are installed (setup.py; the onednn-*-cpu-gomp wheels).
//
// Targets (direct convolution; the weights are reordered on every call between
// HWIO and the layout oneDNN prefers, format_tag::any: with HWIO as they are,
// fwd+bwd was 2-5x slower, and convolution_auto picks the same
// implementations as convolution_direct on AVX-512):
//   frem_dnnl_conv3x3     y  = conv(x, k)           x [N,H,W,C], k [3,3,C,O]
//   frem_dnnl_conv3x3_dx  dx = conv_bwd_data(dy, k) dy [N,H,W,O], k [3,3,C,O]
//   frem_dnnl_conv3x3_dw  dk = conv_bwd_weights(x, dy), always float32
//   frem_dnnl_upconv2x2(_dx, _dw): the same for the decoder's transposed
//       convolution, y [N,2H,2W,O] = deconv(x [N,H,W,C], k [2,2,C,O]), with
//       k indexed by the output offset in each 2x2 block (y[2h+a, 2w+b] takes
//       k[a, b]: nn.ConvTranspose's kernel flipped in space)
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
enum Kind { kConv3x3, kUpconv2x2 };

// A layer's kernel size, stride and padding, and its output's size per input pixel.
struct Geometry {
  int64_t kernel, stride, pad, scale;
  const char* name;
};
Geometry GeometryOf(int kind) {
  return kind == kConv3x3 ? Geometry{3, 1, 1, 1, "frem_dnnl_conv3x3"}
                          : Geometry{2, 2, 0, 2, "frem_dnnl_upconv2x2"};
}

dnnl::engine& Engine() {
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

struct Key {
  int kind, op;
  int64_t n, h, w, c, o;  // x's shape (the layer's input) and the output channels
  Type act, out;  // the activations' type (x or dy), the result's type
  bool operator<(const Key& b) const {
    return std::tie(kind, op, n, h, w, c, o, act, out) <
           std::tie(b.kind, b.op, b.n, b.h, b.w, b.c, b.o, b.act, b.out);
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

// The primitives of one layer kind: oneDNN's (de)convolution forward, backward
// data and backward weights, which take their descriptors in the same order.
template <class Fwd, class BwdData, class BwdWeights>
void Build(const Key& k, const Geometry& g, dnnl::algorithm algorithm, Plan* plan) {
  auto& engine = Engine();
  const Type wt = k.act;  // the kernel has the activations' type (f32 or bf16)
  const Type weights_type = k.op == kBackwardWeights ? Type::f32 : wt;
  const memory::dims weight_dims{k.o, k.c, g.kernel, g.kernel};
  const memory::desc weights_any(weight_dims, weights_type, Tag::any);
  const memory::dims strides{g.stride, g.stride}, pad{g.pad, g.pad};
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto x_like = [&](Type t) { return Activations(k.n, k.h, k.w, k.c, t); };
  const auto y_like = [&](Type t) {
    return Activations(k.n, k.h * g.scale, k.w * g.scale, k.o, t);
  };
  if (k.op == kForward) {
    typename Fwd::primitive_desc pd(engine, dnnl::prop_kind::forward_training, algorithm,
                                    x_like(k.act), weights_any, y_like(k.out), strides, pad,
                                    pad, attr);
    plan->conv = Fwd(pd);
    plan->weights = pd.weights_desc();
    plan->scratchpad = pd.scratchpad_desc();
    return;
  }
  // The forward hint only tells oneDNN the layouts: the input in dy's type.
  const memory::desc hint_weights(weight_dims, wt, Tag::any);
  typename Fwd::primitive_desc hint(engine, dnnl::prop_kind::forward_training, algorithm,
                                    x_like(k.act), hint_weights, y_like(k.act), strides, pad,
                                    pad);
  if (k.op == kBackwardData) {
    typename BwdData::primitive_desc pd(engine, algorithm, x_like(k.out), weights_any,
                                        y_like(k.act), strides, pad, pad, hint, attr);
    plan->conv = BwdData(pd);
    plan->weights = pd.weights_desc();
    plan->scratchpad = pd.scratchpad_desc();
  } else {
    typename BwdWeights::primitive_desc pd(engine, algorithm, x_like(k.act), weights_any,
                                           y_like(k.act), strides, pad, pad, hint, attr);
    plan->conv = BwdWeights(pd);
    plan->weights = pd.diff_weights_desc();
    plan->scratchpad = pd.scratchpad_desc();
  }
}

std::shared_ptr<Plan> MakePlan(const Key& k) {
  auto& engine = Engine();
  const Geometry g = GeometryOf(k.kind);
  const Type weights_type = k.op == kBackwardWeights ? Type::f32 : k.act;
  const memory::desc hwio({k.o, k.c, g.kernel, g.kernel}, weights_type, Tag::hwio);
  auto plan = std::make_shared<Plan>();
  plan->hwio = hwio;
  if (k.kind == kConv3x3)
    Build<dnnl::convolution_forward, dnnl::convolution_backward_data,
          dnnl::convolution_backward_weights>(k, g, dnnl::algorithm::convolution_direct,
                                              plan.get());
  else
    Build<dnnl::deconvolution_forward, dnnl::deconvolution_backward_data,
          dnnl::deconvolution_backward_weights>(k, g, dnnl::algorithm::deconvolution_direct,
                                                plan.get());
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

ffi::Error Run(ffi::ThreadPool& pool, Kind kind, Op op, ffi::AnyBuffer a,
               ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out) {
  const Geometry g = GeometryOf(kind);
  const std::string name = g.name;
  const auto ad = a.dimensions(), bd = b.dimensions(), od = out->dimensions();
  if (ad.size() != 4 || bd.size() != 4 || od.size() != 4)
    return ffi::Error::InvalidArgument(name + ": rank-4 arrays");
  bool ok = true;
  const auto at = Checked(a.element_type(), &ok);
  const auto bt = Checked(b.element_type(), &ok);
  const auto ot = Checked(out->element_type(), &ok);
  if (!ok || at != bt || (at == ffi::DataType::F32 && ot != at) ||
      (op == kBackwardWeights && ot != ffi::DataType::F32))
    return ffi::Error::InvalidArgument(
        name + ": f32 or bf16 inputs of one type; f32 results of f32 inputs; f32 weight "
        "gradients");
  // (a, b, out): forward (x, k, y), backward data (dy, k, dx), weights (x, dy, dk).
  const auto& x_dims = op == kBackwardData ? od : ad;
  const auto& y_dims = op == kForward ? od : op == kBackwardData ? ad : bd;
  const auto& k_dims = op == kBackwardWeights ? od : bd;
  Key key{kind, op, x_dims[0], x_dims[1], x_dims[2], k_dims[2], k_dims[3], ToDnnl(at), ToDnnl(ot)};
  const bool shapes_ok = k_dims[0] == g.kernel && k_dims[1] == g.kernel &&
                         x_dims[3] == key.c && y_dims[3] == key.o && y_dims[0] == key.n &&
                         y_dims[1] == key.h * g.scale && y_dims[2] == key.w * g.scale;
  if (!shapes_ok)
    return ffi::Error::InvalidArgument(name + ": shapes do not match the layer");
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
      return memory(Activations(key.n, key.h * g.scale, key.w * g.scale, key.o, t), engine, p);
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
    return ffi::Error::Internal(name + ": oneDNN: " + e.what());
  }
  return ffi::Error::Success();
}

template <Kind kind, Op op>
ffi::Error Handler(ffi::ThreadPool pool, ffi::AnyBuffer a, ffi::AnyBuffer b,
                   ffi::Result<ffi::AnyBuffer> out) {
  return Run(pool, kind, op, a, b, out);
}

auto Binding() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::AnyBuffer>()
      .Arg<ffi::AnyBuffer>()
      .Ret<ffi::AnyBuffer>();
}

}  // namespace

#define FREM_DNNL_HANDLERS(Name, kind)                                               \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(Name, (Handler<kind, kForward>), Binding());              \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(Name##InputGrad, (Handler<kind, kBackwardData>), Binding()); \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(Name##WeightGrad, (Handler<kind, kBackwardWeights>), Binding());
FREM_DNNL_HANDLERS(FremDnnlConv3x3, kConv3x3)
FREM_DNNL_HANDLERS(FremDnnlUpconv2x2, kUpconv2x2)

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
