// Diagnostics overhead: what a GradientMonitor recording every step adds to a training step.
//
// Workload: the deep ReLU MLP [784, 8 x 256, 10] (Dense(784, 256) + ReLU, 7 x (Dense(256, 256) +
// ReLU), Dense(256, 10); He-normal weights, fixed seed), float, a batch of 128 rows of uniform
// [0, 1) "pixels" with fixed labels. One training step is
//
//     tape.reset(); loss = softmax_cross_entropy(net(x), y); tape.backward(loss);
//     [monitor.record_gradients(loss)]  opt.step();  [monitor.record_update()]  opt.zero_grad();
//
// with plain SGD (lr 1e-3, so the weights barely move and every iteration does the same work).
// The monitor uses its default options (every = 1: delta-norm hooks on every dense layer's
// output, activation statistics on every ReLU, update ratios from a weight snapshot).
//
// Benchmarks (family diagnostics_overhead):
//   step/plain         one training step, no monitor
//   step/monitored     one training step with the monitor recording it
//   step/interleaved   a plain step on one model and a monitored step on an identical second
//                      model, alternately, each timed on its own (thread CPU time); the
//                      machine's load drifts over seconds, so the pair shares it. Counters (per
//                      step): plain_us, monitored_us (microseconds) and
//                      overhead_pct = 100 (monitored / plain - 1). The figure to quote.
//                      Argument track_updates:1 is the default monitor; track_updates:0 turns
//                      the update-to-weight ratios (and their weight snapshot) off.
//   part/forward_backward_plain, part/forward_backward_hooked
//                      tape.reset + forward + loss + backward, without / with the monitor's
//                      hooks attached (the hooks' share of the overhead)
//   part/record_gradients  monitor.record_gradients() alone, on the gradients of one backward
//   part/record_update     monitor.record_update() alone (after an untimed record_gradients)
//
// Counters:
//   allocs_per_step   heap allocations (malloc family, operator new included) per iteration,
//                     counted after warm-up; glibc only (-1 elsewhere).
//
//   lstm/interleaved   the same pairing on a recurrent model: an LSTM(28 -> 128) reading 28 steps
//                      of 28 features, its last step into Dense(128, 10), batch 128, float,
//                      Adam (lr 1e-4): mnist_rnn's demo model. Three identical models in turn: no
//                      monitor, a monitor with time_profiles off, the default monitor (every
//                      step's dL/dh_t and dL/dc_t hooked). Counters per step: plain_us,
//                      monitored_us, overhead_pct (the default monitor against none) and
//                      time_pct = 100 (time profiles on - off) / plain, the share of the
//                      time-step recording.
//
// Targets: the monitor costs at most 5% of the MLP step (overhead_pct <= 5); the time-step
// recording at most 10% of the LSTM step (time_pct <= 10).
//
// Run: bench_diagnostics_overhead --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <gradscope/gradscope.hpp>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <vector>

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
namespace nn = gradscope::nn;
namespace dg = gradscope::diagnostics;

constexpr gs::Index kBatch = 128;
constexpr gs::Index kInputs = 784;
constexpr gs::Index kWidth = 256;
constexpr int kHidden = 8;
constexpr gs::Index kClasses = 10;
constexpr int kWarmup = 3;

/// The model, its optimiser and one fixed batch, recording on a long-lived tape. (Two models
/// share one tape: ops on parameters record on the thread's innermost live tape.)
struct Setup {
  gs::Tape<float>& tape;
  nn::Sequential<float> net;
  std::unique_ptr<gs::optim::SGD<float>> opt;
  gs::Tensor<float> x;
  std::vector<int> y;
  std::unique_ptr<dg::GradientMonitor<float>> monitor;
  dg::MonitorOptions monitor_options;

  Setup(bool monitored, gs::Tape<float>& t, bool track_updates = true) : tape(t) {
    gs::Rng rng(20240611);
    net.add<nn::Dense>(kInputs, kWidth, gs::init::he_normal, true, &rng);
    net.add<nn::ReLU>();
    for (int i = 1; i < kHidden; ++i) {
      net.add<nn::Dense>(kWidth, kWidth, gs::init::he_normal, true, &rng);
      net.add<nn::ReLU>();
    }
    net.add<nn::Dense>(kWidth, kClasses, gs::init::he_normal, true, &rng);
    opt = std::make_unique<gs::optim::SGD<float>>(net.parameters(),
                                                  gs::optim::SGDOptions<float>{.lr = 1e-3f});
    gs::Rng data(7);
    x = gs::Tensor<float>::uniform(kBatch, kInputs, data, 0.0f, 1.0f);
    y.resize(static_cast<std::size_t>(kBatch));
    for (auto& v : y) v = static_cast<int>(data.below(kClasses));
    // A history large enough that a whole-step benchmark never downsamples it: every step is
    // recorded. The part benchmarks run more steps than that (80,000 record_update calls in
    // 0.5 s on a fast machine) and start a fresh monitor before it fills (renew_if_full).
    if (monitored) {
      monitor_options.max_history = 1 << 16;
      monitor_options.track_updates = track_updates;
      monitor = std::make_unique<dg::GradientMonitor<float>>(net, monitor_options);
    }
  }

  /// Replaces the monitor by a fresh one, outside the timed region, when one more record would
  /// make it downsample its history (which would make it skip steps and cost a thinning pass).
  void renew_if_full(benchmark::State& state) {
    const auto& h = monitor->history();
    if (h.size() + 2 < h.capacity()) [[likely]]
      return;
    state.PauseTiming();
    monitor = std::make_unique<dg::GradientMonitor<float>>(net, monitor_options);
    state.ResumeTiming();
  }

  /// tape.reset, forward, loss, backward; returns the loss.
  float forward_backward() {
    tape.reset();
    auto loss = nn::softmax_cross_entropy(net(x), y);
    tape.backward(loss);
    return loss.item();
  }

  /// One full training step (recorded when a monitor is attached).
  float step() {
    const float loss = forward_backward();
    if (monitor) monitor->record_gradients(loss);
    opt->step();
    if (monitor) monitor->record_update();
    opt->zero_grad();
    return loss;
  }
};

/// CPU time of this thread: on a machine shared with other jobs, wall-clock time mostly
/// measures the other jobs.
double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

/// Fails the benchmark if the monitor skipped steps (a downsampled history records fewer).
void check_every_step_recorded(benchmark::State& state, const Setup& s) {
  if (s.monitor && s.monitor->history().stride() != 1)
    state.SkipWithError("the monitor's history was downsampled: not every step was recorded");
}

void set_alloc_counter(benchmark::State& state, std::int64_t allocations) {
  state.counters["allocs_per_step"] =
      counting_allocations && state.iterations() > 0
          ? static_cast<double>(allocations) / static_cast<double>(state.iterations())
          : -1.0;
}

template <bool Monitored>
void BM_step(benchmark::State& state) {
  gs::Tape<float> tape;
  Setup s(Monitored, tape);
  for (int i = 0; i < kWarmup; ++i) s.step();
  const std::int64_t a0 = allocation_count();
  for (auto _ : state) benchmark::DoNotOptimize(s.step());
  set_alloc_counter(state, allocation_count() - a0);
  check_every_step_recorded(state, s);
}

void BM_step_interleaved(benchmark::State& state) {
  gs::Tape<float> tape;
  Setup plain(false, tape), monitored(true, tape, state.range(0) != 0);
  for (int i = 0; i < kWarmup; ++i) {
    plain.step();
    monitored.step();
  }
  double plain_s = 0, monitored_s = 0;
  for (auto _ : state) {
    const double t0 = thread_seconds();
    benchmark::DoNotOptimize(plain.step());
    const double t1 = thread_seconds();
    benchmark::DoNotOptimize(monitored.step());
    const double t2 = thread_seconds();
    plain_s += t1 - t0;
    monitored_s += t2 - t1;
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["plain_us"] = 1e6 * plain_s / n;
  state.counters["monitored_us"] = 1e6 * monitored_s / n;
  state.counters["overhead_pct"] = 100.0 * (monitored_s / plain_s - 1.0);
  check_every_step_recorded(state, monitored);
}

template <bool Hooked>
void BM_forward_backward(benchmark::State& state) {
  gs::Tape<float> tape;
  Setup s(Hooked, tape);
  for (int i = 0; i < kWarmup; ++i) s.step();
  const std::int64_t a0 = allocation_count();
  for (auto _ : state) {
    benchmark::DoNotOptimize(s.forward_backward());
    state.PauseTiming();
    s.opt->zero_grad();  // keep gradients from growing; not part of the measured work
    state.ResumeTiming();
  }
  set_alloc_counter(state, allocation_count() - a0);
}

void BM_record_gradients(benchmark::State& state) {
  gs::Tape<float> tape;
  Setup s(true, tape);
  for (int i = 0; i < kWarmup; ++i) s.step();
  const float loss = s.forward_backward();
  const std::int64_t a0 = allocation_count();
  for (auto _ : state) {
    s.renew_if_full(state);
    s.monitor->record_gradients(loss);
  }
  set_alloc_counter(state, allocation_count() - a0);
  check_every_step_recorded(state, s);
  benchmark::DoNotOptimize(s.monitor->history().size());
}

void BM_record_update(benchmark::State& state) {
  gs::Tape<float> tape;
  Setup s(true, tape);
  for (int i = 0; i < kWarmup; ++i) s.step();
  const float loss = s.forward_backward();
  s.opt->step();  // the weights differ from the snapshot, as after a real step
  for (auto _ : state) {
    s.renew_if_full(state);
    state.PauseTiming();
    s.monitor->record_gradients(loss);
    s.opt->step();
    state.ResumeTiming();
    s.monitor->record_update();
  }
  check_every_step_recorded(state, s);
  benchmark::DoNotOptimize(s.monitor->history().size());
}

/// The LSTM classifier of mnist_rnn's demo on one fixed batch; `monitor`: 0 none, 1 a monitor
/// without time profiles, 2 the default monitor.
struct LstmSetup {
  static constexpr gs::Index kSteps = 28, kFeatures = 28, kHidden = 128;
  gs::Tape<float>& tape;
  nn::Sequential<float> net;
  std::unique_ptr<gs::optim::Adam<float>> opt;
  gs::Tensor<float> x;
  std::vector<int> y;
  std::unique_ptr<dg::GradientMonitor<float>> monitor;

  LstmSetup(int monitored, gs::Tape<float>& t) : tape(t) {
    gs::Rng rng(20261206);
    net.add(std::make_shared<nn::LSTM<float>>(
        kFeatures, kHidden,
        nn::RecurrentOptions{.output = nn::RecurrentOutput::last_step, .rng = &rng}));
    net.add<nn::Dense>(kHidden, kClasses, gs::init::xavier_uniform, true, &rng);
    opt = std::make_unique<gs::optim::Adam<float>>(net.parameters(),
                                                   gs::optim::AdamOptions<float>{.lr = 1e-4f});
    gs::Rng data(8);
    x = gs::Tensor<float>::uniform(kBatch, kSteps * kFeatures, data, 0.0f, 1.0f);
    y.resize(static_cast<std::size_t>(kBatch));
    for (auto& v : y) v = static_cast<int>(data.below(kClasses));
    if (monitored > 0)
      monitor = std::make_unique<dg::GradientMonitor<float>>(
          net, dg::MonitorOptions{.max_history = 1 << 16, .time_profiles = monitored == 2});
  }
  float step() {
    tape.reset();
    auto loss = nn::softmax_cross_entropy(net(x), y);
    tape.backward(loss);
    if (monitor) monitor->record_gradients(loss.item());
    opt->step();
    if (monitor) monitor->record_update();
    opt->zero_grad();
    return loss.item();
  }
};

void BM_lstm_interleaved(benchmark::State& state) {
  gs::Tape<float> tape;
  LstmSetup plain(0, tape), no_time(1, tape), full(2, tape);
  for (int i = 0; i < kWarmup; ++i) {
    plain.step();
    no_time.step();
    full.step();
  }
  double plain_s = 0, no_time_s = 0, full_s = 0;
  for (auto _ : state) {
    const double t0 = thread_seconds();
    benchmark::DoNotOptimize(plain.step());
    const double t1 = thread_seconds();
    benchmark::DoNotOptimize(no_time.step());
    const double t2 = thread_seconds();
    benchmark::DoNotOptimize(full.step());
    const double t3 = thread_seconds();
    plain_s += t1 - t0;
    no_time_s += t2 - t1;
    full_s += t3 - t2;
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["plain_us"] = 1e6 * plain_s / n;
  state.counters["monitored_us"] = 1e6 * full_s / n;
  state.counters["overhead_pct"] = 100.0 * (full_s / plain_s - 1.0);
  state.counters["time_pct"] = 100.0 * (full_s - no_time_s) / plain_s;
  if (full.monitor->time_records(0).profiles().empty())
    state.SkipWithError("the monitor recorded no time profile");
}

}  // namespace

BENCHMARK(BM_step<false>)->Name("diagnostics_overhead/step/plain")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_step<true>)
    ->Name("diagnostics_overhead/step/monitored")
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_step_interleaved)
    ->Name("diagnostics_overhead/step/interleaved")
    ->ArgName("track_updates")
    ->Arg(1)
    ->Arg(0)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_lstm_interleaved)
    ->Name("diagnostics_overhead/lstm/interleaved")
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_forward_backward<false>)
    ->Name("diagnostics_overhead/part/forward_backward_plain")
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_forward_backward<true>)
    ->Name("diagnostics_overhead/part/forward_backward_hooked")
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_record_gradients)
    ->Name("diagnostics_overhead/part/record_gradients")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_record_update)
    ->Name("diagnostics_overhead/part/record_update")
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
