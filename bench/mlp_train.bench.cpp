// One full training step of five networks, gradscope against its hand-written Eigen twin.
//
// A step is what a training loop does per batch:
//   gradscope:  tape.reset(); loss = softmax_cross_entropy(net(x), labels); tape.backward(loss);
//               opt.step(); opt.zero_grad();            (a long-lived Tape<float>, optim::SGD)
//   reference:  the same network written by hand in Eigen (bench/reference/mlp_reference.hpp):
//               preallocated buffers, fused bias + activation, one-pass softmax cross-entropy,
//               gradients assigned in place, then the same SGD update p -= lr * grad.
// Both start from the same weights (same initialiser, same Rng stream) and cycle through the same
// pool of 4 random batches (pixels uniform in [0, 1), labels uniform in 0..9), so they do the
// same arithmetic step after step. The nets (bench/reference/nets.hpp):
//   A [784,30,30,30,30,10] sigmoid, batch 10 and 128     B [784, 8x256, 10] ReLU, batch 32, 128
//   C [784,1024,1024,10] ReLU, batch 128                 D = B with BatchNorm after each hidden
//   Dense E Dense 784->256, 8 residual blocks h + W2 relu(W1 h), Dense 256->10, batch 128
//
// Benchmarks, per net and batch (name mlp_train/<net>/batch:<n>/<impl>):
//   .../gradscope   the library's step
//   .../reference   the twin's step
//   .../ratio       both interleaved in one loop, blocks of K steps each (K chosen so a block takes
//                   about 2 ms), alternating which goes first. Counter `ratio` = reference time /
//                   gradscope time = ours/reference throughput: measured under the same machine
//                   load, the number to read on a noisy shared machine.
// Counters:
//   samples/s      batch * steps per second (per CPU second of the benchmark thread with one
//                  Eigen thread; per wall second when Eigen runs more than one thread)
//   GFLOP/s        achieved, counting 2 M N K per GEMM: forward one GEMM per dense layer, backward
//                  two, except no input-gradient GEMM for the first layer (elementwise work not
//                  counted)
//   allocs/step    global operator new calls per steady-state step (target 0)
//   mallocs/step   malloc-family calls per step (glibc; includes operator new and the GEMM
//                  packing buffers Eigen's product expressions take from the heap above 128 KiB:
//                  the twin pays those, gradscope packs into a reused per-thread workspace)
//   eigen_threads  Eigen::nbThreads(): 1 unless built with -fopenmp (then OMP_NUM_THREADS)
//
// Run: bench_mlp_train --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//      scripts/bench.sh runs it and prints the ratio table.
#include <benchmark/benchmark.h>

#include <gradscope/gradscope.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "alloc_counter.hpp"
#include "mlp_cases.hpp"
#include "reference/nets.hpp"

namespace {

namespace gs = gradscope;
namespace gb = gradscope_bench;
using Mat = gs::Matrix<float>;

using gb::mlp::Case;
using gb::mlp::kCases;
using gb::mlp::kLr;
using gb::mlp::kPool;
using gb::mlp::kWeightSeed;

// The batches: as Eigen matrices (for the twin) and as constant tensors sharing nothing with them
// (for gradscope; a persistent tensor enters the tape as a leaf without a copy).
struct Data : gb::mlp::Batches {
  std::vector<gs::Tensor<float>> tensors;

  Data(Eigen::Index batch, Eigen::Index in, Eigen::Index classes) : Batches(batch, in, classes) {
    for (const Mat& m : x) tensors.emplace_back(m, 2, false);
  }
};

// The library's training step.
struct Ours {
  gs::Tape<float> tape;
  std::shared_ptr<gs::nn::Sequential<float>> net;
  gs::optim::SGD<float> opt;

  explicit Ours(const gb::NetShape& shape, gs::Rng rng)
      : net(gb::make_gradscope_net<float>(shape, rng)),
        opt(net->parameters(), gs::optim::SGDOptions<float>{.lr = kLr}) {}

  float step(const gs::Tensor<float>& x, std::span<const int> labels) {
    tape.reset();
    const gs::Tensor<float> loss = gs::nn::softmax_cross_entropy((*net)(x), labels);
    tape.backward(loss);
    opt.step();
    opt.zero_grad();
    return loss.value()(0, 0);
  }
};

// The twin's training step.
struct Reference {
  std::unique_ptr<gb::Twin<float>> twin;

  Reference(const gb::NetShape& shape, Eigen::Index batch, gs::Rng rng)
      : twin(gb::make_reference_net<float>(shape, batch, rng)) {}

  float step(const Mat& x, std::span<const int> labels) { return twin->step(x, labels, kLr); }
};

// CPU time of this thread with one Eigen thread (immune to the scheduler handing the core to
// another process), wall time otherwise (the other threads' work would not be seen).
double now_seconds() {
  if (Eigen::nbThreads() > 1)
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double step_flops(const Case& c) {
  gs::Rng rng(kWeightSeed);
  return gb::make_reference_net<float>(gb::net_shape(c.net), c.batch, rng)->step_flops();
}

constexpr int kAllocSteps = 2 * kPool;

// Heap allocations per step over kAllocSteps steady-state steps.
struct Allocations {
  double news, mallocs;
  explicit Allocations(const gb::AllocationScope& scope)
      : news(static_cast<double>(scope.new_calls()) / kAllocSteps),
        mallocs(gb::counts_malloc ? static_cast<double>(scope.malloc_calls()) / kAllocSteps
                                  : -1.0) {}
};

void set_common_counters(benchmark::State& state, const Case& c, double steps,
                         const Allocations& allocs) {
  using benchmark::Counter;
  state.counters["samples/s"] = Counter(steps * static_cast<double>(c.batch), Counter::kIsRate);
  state.counters["GFLOP/s"] = Counter(steps * step_flops(c) * 1e-9, Counter::kIsRate);
  state.counters["allocs/step"] = allocs.news;
  state.counters["mallocs/step"] = allocs.mallocs;
  state.counters["eigen_threads"] = Eigen::nbThreads();
}

void BM_gradscope(benchmark::State& state, Case c) {
  const gb::NetShape shape = gb::net_shape(c.net);
  const Data data(c.batch, shape.in, shape.classes);
  Ours ours(shape, gs::Rng(kWeightSeed));
  for (int k = 0; k < kPool; ++k) ours.step(data.tensors[k], data.labels[k]);  // warm-up
  // Allocations of steady-state steps, counted outside the timed loop (the harness may allocate).
  const gb::AllocationScope allocs;
  for (int k = 0; k < kAllocSteps; ++k) ours.step(data.tensors[k % kPool], data.labels[k % kPool]);
  const Allocations per_step(allocs);
  std::size_t i = 0;
  float loss = 0;
  try {
    for (auto _ : state) {
      const std::size_t k = i++ % kPool;
      loss = ours.step(data.tensors[k], data.labels[k]);
      benchmark::DoNotOptimize(loss);
    }
  } catch (const std::exception& e) {  // e.g. SGD's NumericalError on a non-finite gradient
    state.SkipWithError(e.what());
    return;
  }
  set_common_counters(state, c, static_cast<double>(state.iterations()), per_step);
  if (!std::isfinite(loss)) state.SkipWithError("gradscope: the loss became non-finite");
}

void BM_reference(benchmark::State& state, Case c) {
  const gb::NetShape shape = gb::net_shape(c.net);
  const Data data(c.batch, shape.in, shape.classes);
  Reference ref(shape, c.batch, gs::Rng(kWeightSeed));
  for (int k = 0; k < kPool; ++k) ref.step(data.x[k], data.labels[k]);
  const gb::AllocationScope allocs;
  for (int k = 0; k < kAllocSteps; ++k) ref.step(data.x[k % kPool], data.labels[k % kPool]);
  const Allocations per_step(allocs);
  std::size_t i = 0;
  float loss = 0;
  for (auto _ : state) {
    const std::size_t k = i++ % kPool;
    loss = ref.step(data.x[k], data.labels[k]);
    benchmark::DoNotOptimize(loss);
  }
  set_common_counters(state, c, static_cast<double>(state.iterations()), per_step);
  if (!std::isfinite(loss)) state.SkipWithError("reference: the loss became non-finite");
}

void ratio_loop(benchmark::State& state, Case c);

void BM_ratio(benchmark::State& state, Case c) {
  try {
    ratio_loop(state, c);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void ratio_loop(benchmark::State& state, Case c) {
  const gb::NetShape shape = gb::net_shape(c.net);
  const Data data(c.batch, shape.in, shape.classes);
  Ours ours(shape, gs::Rng(kWeightSeed));
  Reference ref(shape, c.batch, gs::Rng(kWeightSeed));
  // Cross-check: from the same weights, the first steps must give the same losses.
  for (int k = 0; k < kPool; ++k) {
    const float a = ours.step(data.tensors[k], data.labels[k]);
    const float b = ref.step(data.x[k], data.labels[k]);
    if (!(std::abs(a - b) <= 1e-3f * std::max(1.0f, std::abs(b)))) {
      const std::string msg = "gradscope and reference disagree at step " + std::to_string(k) +
                              ": loss " + std::to_string(a) + " vs " + std::to_string(b);
      state.SkipWithError(msg.c_str());
      return;
    }
  }
  // Block length: about 2 ms of reference steps, so the clock is read rarely.
  const double t0 = now_seconds();
  ref.step(data.x[0], data.labels[0]);
  const double one = std::max(now_seconds() - t0, 1e-7);
  const int K = static_cast<int>(std::clamp(2e-3 / one, 1.0, 1000.0));
  double t_ours = 0, t_ref = 0;
  std::size_t i = 0;
  bool ours_first = true;
  const auto run_ours = [&] {
    const double s = now_seconds();
    for (int j = 0; j < K; ++j) {
      const std::size_t k = (i + j) % kPool;
      benchmark::DoNotOptimize(ours.step(data.tensors[k], data.labels[k]));
    }
    t_ours += now_seconds() - s;
  };
  const auto run_ref = [&] {
    const double s = now_seconds();
    for (int j = 0; j < K; ++j) {
      const std::size_t k = (i + j) % kPool;
      benchmark::DoNotOptimize(ref.step(data.x[k], data.labels[k]));
    }
    t_ref += now_seconds() - s;
  };
  for (auto _ : state) {
    if (ours_first) {
      run_ours();
      run_ref();
    } else {
      run_ref();
      run_ours();
    }
    ours_first = !ours_first;
    i += static_cast<std::size_t>(K);
  }
  const double steps = static_cast<double>(state.iterations()) * K;
  const double samples = steps * static_cast<double>(c.batch);
  state.counters["ratio"] = t_ref / t_ours;
  state.counters["gradscope_samples/s"] = samples / t_ours;
  state.counters["reference_samples/s"] = samples / t_ref;
  state.counters["steps_per_block"] = K;
  state.counters["eigen_threads"] = Eigen::nbThreads();
}

std::string case_name(const Case& c, const char* impl) {
  std::string name = "mlp_train/";
  name += c.net;
  name += "/batch:";
  name += std::to_string(c.batch);
  name += '/';
  name += impl;
  return name;
}

}  // namespace

int main(int argc, char** argv) {
  const bool wall = Eigen::nbThreads() > 1;
  for (const Case& c : kCases) {
    auto* g = benchmark::RegisterBenchmark(case_name(c, "gradscope").c_str(), BM_gradscope, c);
    auto* r = benchmark::RegisterBenchmark(case_name(c, "reference").c_str(), BM_reference, c);
    auto* q = benchmark::RegisterBenchmark(case_name(c, "ratio").c_str(), BM_ratio, c);
    for (auto* b : {g, r, q}) {
      b->Unit(benchmark::kMicrosecond);
      if (wall) b->UseRealTime();
    }
  }
  benchmark::AddCustomContext("eigen_threads", std::to_string(Eigen::nbThreads()));
#ifdef _OPENMP
  benchmark::AddCustomContext("openmp", std::to_string(_OPENMP));
#else
  benchmark::AddCustomContext("openmp", "off");
#endif
  benchmark::AddCustomContext("eigen_simd", Eigen::SimdInstructionSetsInUse());
  // Which kernels run gradscope's products (core/detail/gemm.hpp, on the CPU path of
  // core/detail/dispatch.hpp: GRADSCOPE_CPU forces one); the twin's are Eigen's.
  const std::string path = gs::to_string(gs::cpu_path());
  benchmark::AddCustomContext("cpu_path", path);
  benchmark::AddCustomContext("gradscope_threads", std::to_string(gs::num_threads()));
#if defined(EIGEN_USE_BLAS)
  benchmark::AddCustomContext("gemm", "BLAS (EIGEN_USE_BLAS)");
#else
  benchmark::AddCustomContext("gemm", gs::cpu_path() == gs::CpuPath::baseline
                                          ? "Eigen's kernels (CPU path baseline)"
                                          : "gradscope's kernels (CPU path " + path + ")");
#endif
  benchmark::AddCustomContext("eigen_version", std::to_string(EIGEN_WORLD_VERSION) + "." +
                                                   std::to_string(EIGEN_MAJOR_VERSION) + "." +
                                                   std::to_string(EIGEN_MINOR_VERSION));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
