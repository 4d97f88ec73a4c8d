// Tape overhead: the cost of recording and back-propagating one cheap elementwise op, beside a
// hand-written Eigen twin that does the same arithmetic with no tape.
//
// Workload: a chain of kOps = 1000 elementwise ops on an n x n float tensor (n = 1 or 32, the
// benchmark argument), starting from a parameter. The op mix is 250 repetitions of
//
//     y = scale(y, 1.1f);  y = add_scalar(y, -0.725f);  y = mul(y, y);  y = tanh(y);
//
// i.e. 250 x {scale, add_scalar, mul, tanh}. The constants keep the chain away from underflow:
// for any start in [-1, 1] the values settle near 0.2 and the gradient stays within [3e-4, 1.3],
// so no denormals slow either side down. backward is seeded with ones (dL/dy = 1, as if the loss
// were sum(y)) so that the 1000 recorded ops are exactly the chain, with no reduction op added.
//
// Benchmarks (family tape_overhead, argument n:1 or n:32 for a 1x1 or 32x32 tensor):
//   tape_overhead/forward_backward        tape.reset(), zero_grad, 1000 recorded ops, backward
//   tape_overhead/forward                 tape.reset(), 1000 recorded ops
//   tape_overhead/eigen_twin_forward_backward
//                                          the same 1000 ops on preallocated Eigen arrays (every
//                                          intermediate value kept, as the tape does), then the
//                                          hand-written derivatives in reverse into one buffer
//   tape_overhead/eigen_twin_forward      the twin's forward only
//
// Counters:
//   ns_per_op        CPU time of the timed loop / (iterations * 1000), in nanoseconds: the CPU
//                    column divided by 1000 (measured with std::clock around the loop, so the
//                    counter is a plain number in ns rather than a rate printed in seconds)
//   allocs_per_iter  heap allocations (malloc family, operator new included) per iteration,
//                    counted after one warm-up iteration; 0 means a steady state without heap
//                    traffic. Only on glibc (where malloc can be interposed); -1 elsewhere.
//
// Targets (tape, forward + backward): <= 30 ns per op at 1x1, <= 150 ns per op at 32x32
// (PyTorch eager: about 2,900 and 4,300 ns).
//
// Run: bench_tape_overhead --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <gradscope/core/core.hpp>

#include <Eigen/Core>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>

// ---- allocation counting (glibc): every malloc-family call of the process goes through here --
#if defined(__GLIBC__)
namespace {
std::atomic<std::uint64_t> g_allocations{0};
}  // namespace
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
// operator new (plain and aligned) ends in malloc / aligned_alloc in libstdc++, so it is counted.
void* malloc(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(size);
}
void* calloc(std::size_t n, std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, size);
}
void* aligned_alloc(std::size_t alignment, std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(alignment, size);
}
void* memalign(std::size_t alignment, std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(alignment, size);
}
int posix_memalign(void** out, std::size_t alignment, std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  void* p = __libc_memalign(alignment, size);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
}  // extern "C"
namespace {
std::int64_t allocation_count() {
  return static_cast<std::int64_t>(g_allocations.load(std::memory_order_relaxed));
}
constexpr bool counting_allocations = true;
}  // namespace
#else
namespace {
std::int64_t allocation_count() { return 0; }
constexpr bool counting_allocations = false;
}  // namespace
#endif

namespace {

namespace gs = gradscope;

constexpr int kCycles = 250;
constexpr int kOps = 4 * kCycles;  // 1000
constexpr float kScale = 1.1f;
constexpr float kShift = -0.725f;

using Array = Eigen::ArrayXXf;  // column k of the twin's value table = value after op k

gs::Matrix<float> start_value(Eigen::Index n) {
  gs::Rng rng(20240611);
  gs::Matrix<float> m(n, n);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng.uniform(-1, 1));
  return m;
}

// The chain on the tape: exactly kOps recorded ops after the parameter's leaf.
gs::Tensor<float> tape_chain(const gs::Tensor<float>& x) {
  gs::Tensor<float> y = x;
  for (int c = 0; c < kCycles; ++c) {
    y = gs::scale(y, kScale);
    y = gs::add_scalar(y, kShift);
    y = gs::mul(y, y);
    y = gs::tanh(y);
  }
  return y;
}

// The twin's forward: V.col(0) is the input, V.col(k + 1) the value after op k.
void twin_forward(Array& V) {
  for (int c = 0; c < kCycles; ++c) {
    const Eigen::Index k = 4 * c;
    V.col(k + 1) = V.col(k) * kScale;
    V.col(k + 2) = V.col(k + 1) + kShift;
    V.col(k + 3) = V.col(k + 2) * V.col(k + 2);
    V.col(k + 4) = V.col(k + 3).tanh();
  }
}

// The twin's backward: g enters as dL/dy and leaves as dL/dx.
void twin_backward(const Array& V, Eigen::Ref<Eigen::ArrayXf> g) {
  for (int c = kCycles; c-- > 0;) {
    const Eigen::Index k = 4 * c;
    g *= 1.0f - V.col(k + 4).square();  // tanh:       dy/dx = 1 - y^2
    g *= 2.0f * V.col(k + 2);           // mul(y, y):  d(y y)/dy = 2 y
    //                                      add_scalar: dy/dx = 1, nothing to do
    g *= kScale;  // scale:      dy/dx = s
  }
}

// What a timed loop spent: CPU time and heap allocations.
struct Usage {
  std::clock_t cpu = std::clock();
  std::int64_t allocations = allocation_count();
};

void set_counters(benchmark::State& state, const Usage& before) {
  const Usage after;
  const double iterations = static_cast<double>(state.iterations());
  const double cpu_ns = 1e9 * static_cast<double>(after.cpu - before.cpu) / CLOCKS_PER_SEC;
  state.counters["ns_per_op"] = cpu_ns / (iterations * kOps);
  state.counters["allocs_per_iter"] =
      counting_allocations
          ? static_cast<double>(after.allocations - before.allocations) / iterations
          : -1.0;
}

// Cross-checks the tape against the twin once, so both sides are known to compute the same thing
// (and the gradient is known to stay clear of denormals). Returns an error message or "".
std::string cross_check(Eigen::Index n) {
  const gs::Matrix<float> x0 = start_value(n);
  gs::Tape<float> tape;
  gs::Tensor<float> x = gs::Tensor<float>::parameter(x0);
  const gs::Tensor<float> y = tape_chain(x);
  tape.backward(y, gs::Matrix<float>::Ones(n, n));

  Array V(n * n, kOps + 1);
  V.col(0) = Eigen::Map<const Eigen::ArrayXf>(x0.data(), n * n);
  twin_forward(V);
  Eigen::ArrayXf g = Eigen::ArrayXf::Ones(n * n);
  twin_backward(V, g);

  const Eigen::Map<const Eigen::ArrayXf> y_tape(y.value().data(), n * n);
  const Eigen::Map<const Eigen::ArrayXf> g_tape(x.grad().data(), n * n);
  const float value_error = (y_tape - V.col(kOps)).abs().maxCoeff();
  const float grad_error = ((g_tape - g).abs() / g.abs().max(1e-6f)).maxCoeff();
  const float smallest_grad = g.abs().minCoeff();
  if (!(value_error < 1e-5f) || !(grad_error < 1e-3f))
    return "tape and Eigen twin disagree: value error " + std::to_string(value_error) +
           ", relative gradient error " + std::to_string(grad_error);
  if (!(smallest_grad > 1e-30f))
    return "gradient underflows (" + std::to_string(smallest_grad) + "): change the op constants";
  return "";
}

void BM_tape_forward_backward(benchmark::State& state) {
  const Eigen::Index n = state.range(0);
  if (const std::string err = cross_check(n); !err.empty()) {
    state.SkipWithError(err.c_str());
    return;
  }
  gs::Tape<float> tape;  // long-lived, reset every iteration
  gs::Tensor<float> x = gs::Tensor<float>::parameter(start_value(n));
  const gs::Matrix<float> seed = gs::Matrix<float>::Ones(n, n);
  const auto step = [&] {
    tape.reset();
    x.zero_grad();
    const gs::Tensor<float> y = tape_chain(x);
    tape.backward(y, seed);
  };
  step();  // warm-up: the arena and the node list reach their final size
  const Usage before;
  for (auto _ : state) {
    step();
    benchmark::DoNotOptimize(x.grad().data());
    benchmark::ClobberMemory();
  }
  set_counters(state, before);
}

void BM_tape_forward(benchmark::State& state) {
  const Eigen::Index n = state.range(0);
  gs::Tape<float> tape;
  gs::Tensor<float> x = gs::Tensor<float>::parameter(start_value(n));
  const auto step = [&] {
    tape.reset();
    const gs::Tensor<float> y = tape_chain(x);
    benchmark::DoNotOptimize(y.value().data());
  };
  step();
  const Usage before;
  for (auto _ : state) {
    step();
    benchmark::ClobberMemory();
  }
  set_counters(state, before);
}

void BM_twin_forward_backward(benchmark::State& state) {
  const Eigen::Index n = state.range(0);
  const gs::Matrix<float> x0 = start_value(n);
  Array V(n * n, kOps + 1);
  V.col(0) = Eigen::Map<const Eigen::ArrayXf>(x0.data(), n * n);
  Eigen::ArrayXf g(n * n);
  Eigen::ArrayXf grad(n * n);  // the parameter's gradient buffer
  const auto step = [&] {
    grad.setZero();
    twin_forward(V);
    g.setOnes();
    twin_backward(V, g);
    grad += g;
  };
  step();
  const Usage before;
  for (auto _ : state) {
    step();
    benchmark::DoNotOptimize(grad.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, before);
}

void BM_twin_forward(benchmark::State& state) {
  const Eigen::Index n = state.range(0);
  const gs::Matrix<float> x0 = start_value(n);
  Array V(n * n, kOps + 1);
  V.col(0) = Eigen::Map<const Eigen::ArrayXf>(x0.data(), n * n);
  twin_forward(V);
  const Usage before;
  for (auto _ : state) {
    twin_forward(V);
    benchmark::DoNotOptimize(V.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, before);
}

}  // namespace

BENCHMARK(BM_tape_forward_backward)
    ->Name("tape_overhead/forward_backward")
    ->ArgName("n")
    ->Arg(1)
    ->Arg(32);
BENCHMARK(BM_tape_forward)->Name("tape_overhead/forward")->ArgName("n")->Arg(1)->Arg(32);
BENCHMARK(BM_twin_forward_backward)
    ->Name("tape_overhead/eigen_twin_forward_backward")
    ->ArgName("n")
    ->Arg(1)
    ->Arg(32);
BENCHMARK(BM_twin_forward)->Name("tape_overhead/eigen_twin_forward")->ArgName("n")->Arg(1)->Arg(32);

BENCHMARK_MAIN();
