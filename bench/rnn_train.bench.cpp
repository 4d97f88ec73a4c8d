// One full training step of an LSTM and a GRU sequence classifier, gradscope against its
// hand-written Eigen twin (the recurrent counterpart of bench/mlp_train.bench.cpp).
//
// The network (bench/rnn_cases.hpp): one LSTM or GRU layer (input I -> hidden H, PyTorch's
// layout and gate order, gradscope's default initialisers) over a batch-first sequence [B, T*I],
// many-to-one (RecurrentOutput::last_step), a linear head H -> 10 and softmax cross-entropy:
//   gradscope:  Sequential{LSTM or GRU, Dense}; per step tape.reset(); loss =
//               softmax_cross_entropy(net(x), labels); tape.backward(loss); opt.step();
//               opt.zero_grad();                         (a long-lived Tape<float>, optim::SGD)
//   reference:  the same network written by hand in Eigen (bench/reference/rnn_reference.hpp):
//               preallocated time-major buffers, the input projection of all steps as one GEMM,
//               one GEMM per step for the recurrent product, the gate math fused into one pass
//               per row, backpropagation through time by hand with the weight gradients of all
//               steps as one GEMM each, then the same SGD update p -= lr * grad.
// Both start from the same weights (same initialisers, same Rng stream) and cycle through the
// same pool of 4 random batches (features uniform in [-1, 1), labels uniform in 0..9), so they do
// the same arithmetic step after step. Cases [T, B, I, H], for each cell:
//   T=28, B=128, I=28, H=128    (sequential MNIST by rows)
//   T=100, B=32, I=32, H=256    (longer sequences, smaller batch: per-step products are small)
//
// Benchmarks, per cell and case (name rnn_train/<cell>/T:<T>/B:<B>/I:<I>/H:<H>/<impl>):
//   .../gradscope   the library's step
//   .../reference   the twin's step
//   .../ratio       both interleaved in one loop, blocks of K steps each (K chosen so a block takes
//                   about 2 ms, at least 1), alternating which goes first. Counter `ratio` =
//                   reference time / gradscope time = ours/reference throughput: measured under
//                   the same machine load, the number to read on a noisy shared machine. Before
//                   timing, the first 4 steps of both sides must give the same losses.
// Counters:
//   samples/s      sequences (batch * steps) per second (per CPU second of the benchmark thread
//                  with one Eigen thread; per wall second with more)
//   GFLOP/s        achieved, counting 2 M N K per GEMM of the unrolled network: forward the input
//                  projection and T recurrent products, backward dW_ih, dW_hh and T products for
//                  dL/dh_{t-1} (no input gradient), the head's three; elementwise work not counted
//   allocs/step    global operator new calls per steady-state step (target 0)
//   mallocs/step   malloc-family calls per step (glibc; includes operator new and the packing
//                  buffers Eigen's product expressions take from the heap above 128 KiB: the twin
//                  pays those, gradscope packs into a reused per-thread workspace)
//   eigen_threads  Eigen::nbThreads(): 1 unless built with -fopenmp (then OMP_NUM_THREADS)
//
// Run: bench_rnn_train --benchmark_filter='/ratio$' --benchmark_repetitions=5
//        --benchmark_report_aggregates_only=true
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
#include "rnn_cases.hpp"

namespace {

namespace gs = gradscope;
namespace gb = gradscope_bench;
namespace rnn = gradscope_bench::rnn;
using Mat = gs::Matrix<float>;

using rnn::Case;
using rnn::kCases;
using rnn::kLr;
using rnn::kPool;
using rnn::kWeightSeed;

// The batches: as Eigen matrices (for the twin) and as constant tensors sharing nothing with them
// (for gradscope; a persistent tensor enters the tape as a leaf without a copy).
struct Data : rnn::Batches {
  std::vector<gs::Tensor<float>> tensors;

  explicit Data(const Case& c) : Batches(c) {
    for (const Mat& m : x) tensors.emplace_back(m, 2, false);
  }
};

// The library's training step.
struct Ours {
  gs::Tape<float> tape;
  std::shared_ptr<gs::nn::Sequential<float>> net;
  gs::optim::SGD<float> opt;

  explicit Ours(const Case& c, gs::Rng rng)
      : net(rnn::make_gradscope_rnn<float>(rnn::shape_of(c), rng)),
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
  std::unique_ptr<gb::reference::RnnReference<float>> twin;

  Reference(const Case& c, gs::Rng rng)
      : twin(rnn::make_reference_rnn<float>(rnn::shape_of(c), c.batch, rng)) {}

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
  return gb::reference::RnnReference<float>::step_flops(rnn::shape_of(c), c.batch);
}

// A step takes milliseconds here (tens of them at T=100), and scripts/bench.sh --quick runs every
// benchmark in CI: two warm-up steps (the tape's arena and gradient buffers, the GEMM workspace
// reach their size in the first), then the allocations of the next two.
constexpr int kWarmupSteps = 2;
constexpr int kAllocSteps = 2;

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
  const Data data(c);
  Ours ours(c, gs::Rng(kWeightSeed));
  for (int k = 0; k < kWarmupSteps; ++k) ours.step(data.tensors[k], data.labels[k]);
  // Allocations of steady-state steps, counted outside the timed loop (the harness may allocate).
  const gb::AllocationScope allocs;
  for (int k = kWarmupSteps; k < kWarmupSteps + kAllocSteps; ++k)
    ours.step(data.tensors[k % kPool], data.labels[k % kPool]);
  const Allocations per_step(allocs);
  std::size_t i = 0;
  float loss = 0;
  for (auto _ : state) {
    const std::size_t k = i++ % kPool;
    loss = ours.step(data.tensors[k], data.labels[k]);
    benchmark::DoNotOptimize(loss);
  }
  set_common_counters(state, c, static_cast<double>(state.iterations()), per_step);
  if (!std::isfinite(loss)) state.SkipWithError("gradscope: the loss became non-finite");
}

void BM_reference(benchmark::State& state, Case c) {
  const Data data(c);
  Reference ref(c, gs::Rng(kWeightSeed));
  for (int k = 0; k < kWarmupSteps; ++k) ref.step(data.x[k], data.labels[k]);
  const gb::AllocationScope allocs;
  for (int k = kWarmupSteps; k < kWarmupSteps + kAllocSteps; ++k)
    ref.step(data.x[k % kPool], data.labels[k % kPool]);
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

void ratio_loop(benchmark::State& state, Case c) {
  const Data data(c);
  Ours ours(c, gs::Rng(kWeightSeed));
  Reference ref(c, gs::Rng(kWeightSeed));
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

// Runs a benchmark body, turning an exception (e.g. SGD's NumericalError on a non-finite
// gradient) into a skipped benchmark with its message.
template <void (*Body)(benchmark::State&, Case)>
void checked(benchmark::State& state, Case c) {
  try {
    Body(state, c);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

std::string case_name(const Case& c, const char* impl) {
  return "rnn_train/" + rnn::case_id(c) + "/" + impl;
}

}  // namespace

int main(int argc, char** argv) {
  const bool wall = Eigen::nbThreads() > 1;
  for (const Case& c : kCases) {
    auto* g =
        benchmark::RegisterBenchmark(case_name(c, "gradscope").c_str(), checked<BM_gradscope>, c);
    auto* r =
        benchmark::RegisterBenchmark(case_name(c, "reference").c_str(), checked<BM_reference>, c);
    auto* q = benchmark::RegisterBenchmark(case_name(c, "ratio").c_str(), checked<ratio_loop>, c);
    for (auto* b : {g, r, q}) {
      b->Unit(benchmark::kMillisecond);
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
  // Which kernels run gradscope's float products (core/detail/gemm.hpp); the twin's are Eigen's.
#if defined(EIGEN_USE_BLAS)
  benchmark::AddCustomContext("gemm", "BLAS (EIGEN_USE_BLAS)");
#elif GRADSCOPE_GEMM_AVX512
  benchmark::AddCustomContext("gemm", "gradscope's AVX-512 kernel");
#else
  benchmark::AddCustomContext("gemm", "Eigen's kernels");
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
