// One full training step of the five networks of bench/mlp_train.bench.cpp in PyTorch's C++ API
// (libtorch, Debian libtorch-dev 1.13), and gradscope against it in one loop.
//
// The PyTorch step, the idiomatic one:
//   loss = torch::nn::functional::cross_entropy(net->forward(x), labels);   // mean over the batch
//   loss.backward(); opt.step(); opt.zero_grad();            // torch::optim::SGD, lr 0.01
// (in libtorch 1.13 zero_grad() zeroes the gradients in place, as gradscope's does). The nets are
// torch::nn::Sequential of Linear, BatchNorm1d (momentum 0.1, eps 1e-5, training mode), ReLU or
// Sigmoid, and for net E a residual module x + l2(relu(l1(x))); their parameters are copied from
// bench_mlp_train's initial weights (the reference twin's), and the batches are the same 4, so the
// losses of the first 4 steps are checked against the twin's before anything is timed (a failed
// check skips the benchmark with an error).
//
// Benchmarks, per net and batch:
//   peers/torch/<net>/batch:<n>         the PyTorch step alone
//   peers/torch/<net>/batch:<n>/ratio   PyTorch and gradscope interleaved in one loop, blocks of K
//                                       steps (K: about 10 ms of PyTorch steps, at least 1),
//                                       alternating which goes first. Each block starts with caches
//                                       warmed by the other side, which costs both sides, so its
//                                       throughputs are below the separate rows'. Counter `ratio` =
//                                       PyTorch time / gradscope time = gradscope/PyTorch
//                                       throughput (> 1: gradscope is faster).
// Threads: 1 by default (torch::set_num_threads(1), interop threads 1, OpenBLAS 1 through
// openblas_set_num_threads); `--threads=N` or GRADSCOPE_PEER_THREADS=N for N. Eigen (gradscope)
// uses OpenMP's thread count, so it only follows N in a -fopenmp build (scripts/bench.sh --peers
// --threads 2 makes one). Timing: CPU time of the benchmark thread with one thread, as
// bench_mlp_train (counter cpu_other_threads, the share of the process's CPU time spent on other
// threads during the timed loop, should then be about 0); wall time with more.
// Counters: samples/s; allocs/step and mallocs/step (global operator new and malloc-family calls
// per steady-state step, as in bench_mlp_train); threads; cpu_other_threads.
// Context: torch_version, torch_threads, openblas_core (Debian's OpenBLAS 0.3.21 reports
// "Prescott", its SSE3 fallback, on CPUs it does not know: set OPENBLAS_CORETYPE=SkylakeX on
// AVX-512 machines) and openblas_threads.
//
// Run: bench_torch_mlp --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//      (built with -DGRADSCOPE_BENCH_PEERS=ON; scripts/bench.sh --peers runs it against
//      bench_mlp_train and prints the table)
#include <benchmark/benchmark.h>

#include <torch/torch.h>

#include <gradscope/gradscope.hpp>

#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "../alloc_counter.hpp"
#include "peer_common.hpp"

namespace {

namespace gs = gradscope;
namespace gb = gradscope_bench;
namespace gp = gradscope_bench::peers;

int g_threads = 1;

// Net E's block: x + l2(relu(l1(x))).
struct ResidualImpl : torch::nn::Module {
  explicit ResidualImpl(std::int64_t width)
      : l1(register_module("l1", torch::nn::Linear(width, width))),
        l2(register_module("l2", torch::nn::Linear(width, width))) {}
  torch::Tensor forward(const torch::Tensor& x) { return x + l2(torch::relu(l1(x))); }
  torch::nn::Linear l1, l2;
};
TORCH_MODULE(Residual);

torch::nn::Sequential make_torch_net(const gb::NetShape& s) {
  torch::nn::Sequential net;
  if (s.residual_blocks > 0) {
    const auto w = s.hidden.at(0);
    net->push_back(torch::nn::Linear(s.in, w));
    for (int k = 0; k < s.residual_blocks; ++k) net->push_back(Residual(w));
    net->push_back(torch::nn::Linear(w, s.classes));
    return net;
  }
  auto prev = s.in;
  for (auto h : s.hidden) {
    net->push_back(torch::nn::Linear(prev, h));
    if (s.batch_norm)
      net->push_back(
          torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(h).momentum(0.1).eps(1e-5)));
    if (s.activation == gb::reference::Activation::relu)
      net->push_back(torch::nn::ReLU());
    else
      net->push_back(torch::nn::Sigmoid());
    prev = h;
  }
  net->push_back(torch::nn::Linear(prev, s.classes));
  return net;
}

// The PyTorch training step, with bench_mlp_train's weights and batches.
struct Torch {
  torch::nn::Sequential net;
  std::unique_ptr<torch::optim::SGD> opt;
  std::vector<torch::Tensor> x, y;

  Torch(const gp::Case& c, const gp::Batches& data) : net(make_torch_net(gb::net_shape(c.net))) {
    net->train();
    const auto twin = gp::initial_twin(c);
    const auto& from = twin->parameters();
    auto to = net->parameters();
    if (to.size() != from.size())
      throw std::runtime_error("torch_mlp: " + std::to_string(to.size()) +
                               " parameters, the twin has " + std::to_string(from.size()));
    torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < to.size(); ++i) {
      if (to[i].numel() != from[i].value->size())
        throw std::runtime_error("torch_mlp: parameter " + std::to_string(i) + " has " +
                                 std::to_string(to[i].numel()) + " elements, the twin's " +
                                 std::to_string(from[i].value->size()));
      // Both row-major: a Linear weight is [out, in] like the twin's, a bias [out] like [1, out].
      std::memcpy(to[i].data_ptr<float>(), from[i].value->data(),
                  sizeof(float) * static_cast<std::size_t>(to[i].numel()));
    }
    opt = std::make_unique<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(gp::kLr));
    for (int k = 0; k < gp::kPool; ++k) {
      const auto& m = data.x[k];
      x.push_back(
          torch::from_blob(const_cast<float*>(m.data()), {m.rows(), m.cols()}, torch::kFloat32)
              .clone());
      std::vector<std::int64_t> labels(data.labels[k].begin(), data.labels[k].end());
      y.push_back(torch::tensor(labels, torch::kInt64));
    }
  }

  float step(int k) {
    const torch::Tensor loss = torch::nn::functional::cross_entropy(net->forward(x[k]), y[k]);
    loss.backward();
    opt->step();
    opt->zero_grad();
    return loss.item<float>();
  }
};

// gradscope's step, as in bench_mlp_train.
struct Ours {
  gs::Tape<float> tape;
  std::shared_ptr<gs::nn::Sequential<float>> net;
  gs::optim::SGD<float> opt;
  std::vector<gs::Tensor<float>> x;
  const gp::Batches& data;

  Ours(const gp::Case& c, const gp::Batches& batches)
      : net([&] {
          gs::Rng rng(gp::kWeightSeed);
          return gb::make_gradscope_net<float>(gb::net_shape(c.net), rng);
        }()),
        opt(net->parameters(), gs::optim::SGDOptions<float>{.lr = gp::kLr}),
        data(batches) {
    for (const auto& m : data.x) x.emplace_back(m, 2, false);
  }

  float step(int k) {
    tape.reset();
    const gs::Tensor<float> loss = gs::nn::softmax_cross_entropy((*net)(x[k]), data.labels[k]);
    tape.backward(loss);
    opt.step();
    opt.zero_grad();
    return loss.value()(0, 0);
  }
};

// The first kPool steps of `impl` against the twin's losses; "" when they agree.
template <class Impl>
std::string check_first_steps(const char* name, Impl& impl, const std::vector<float>& want) {
  for (int k = 0; k < gp::kPool; ++k)
    if (auto msg = gp::check_loss(name, k, impl.step(k), want[k]); !msg.empty()) return msg;
  return {};
}

constexpr int kAllocSteps = 2 * gp::kPool;

void BM_torch(benchmark::State& state, gp::Case c) {
  const gb::NetShape shape = gb::net_shape(c.net);
  const gp::Batches data(c.batch, shape.in, shape.classes);
  Torch t(c, data);
  if (auto msg = check_first_steps("PyTorch", t, gp::twin_losses(c, data)); !msg.empty()) {
    state.SkipWithError(msg.c_str());
    return;
  }
  const gb::AllocationScope allocs;
  for (int k = 0; k < kAllocSteps; ++k) t.step(k % gp::kPool);
  const double news = static_cast<double>(allocs.new_calls()) / kAllocSteps;
  const double mallocs =
      gb::counts_malloc ? static_cast<double>(allocs.malloc_calls()) / kAllocSteps : -1.0;
  const double thread0 = gp::now_seconds(false), process0 = gp::process_cpu_seconds();
  std::size_t i = 0;
  float loss = 0;
  for (auto _ : state) {
    loss = t.step(static_cast<int>(i++ % gp::kPool));
    benchmark::DoNotOptimize(loss);
  }
  const double thread_cpu = gp::now_seconds(false) - thread0;
  const double process_cpu = gp::process_cpu_seconds() - process0;
  using benchmark::Counter;
  state.counters["samples/s"] = Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(c.batch), Counter::kIsRate);
  state.counters["allocs/step"] = news;
  state.counters["mallocs/step"] = mallocs;
  state.counters["threads"] = g_threads;
  state.counters["cpu_other_threads"] =
      process_cpu > 0 ? std::max(0.0, 1.0 - thread_cpu / process_cpu) : 0.0;
  if (!std::isfinite(loss)) state.SkipWithError("PyTorch: the loss became non-finite");
}

void ratio_loop(benchmark::State& state, gp::Case c) {
  const gb::NetShape shape = gb::net_shape(c.net);
  const gp::Batches data(c.batch, shape.in, shape.classes);
  Torch t(c, data);
  Ours ours(c, data);
  const auto want = gp::twin_losses(c, data);
  for (auto msg :
       {check_first_steps("PyTorch", t, want), check_first_steps("gradscope", ours, want)})
    if (!msg.empty()) {
      state.SkipWithError(msg.c_str());
      return;
    }
  const bool wall = g_threads > 1 || Eigen::nbThreads() > 1;
  const double t0 = gp::now_seconds(wall);
  t.step(0);
  const double one = std::max(gp::now_seconds(wall) - t0, 1e-7);
  const int K = static_cast<int>(std::clamp(10e-3 / one, 1.0, 1000.0));
  double t_torch = 0, t_ours = 0;
  std::size_t i = 0;
  bool ours_first = true;
  const auto run = [&](auto& impl, double& total) {
    const double s = gp::now_seconds(wall);
    for (int j = 0; j < K; ++j)
      benchmark::DoNotOptimize(impl.step(static_cast<int>((i + j) % gp::kPool)));
    total += gp::now_seconds(wall) - s;
  };
  for (auto _ : state) {
    if (ours_first) {
      run(ours, t_ours);
      run(t, t_torch);
    } else {
      run(t, t_torch);
      run(ours, t_ours);
    }
    ours_first = !ours_first;
    i += static_cast<std::size_t>(K);
  }
  const double samples = static_cast<double>(state.iterations()) * K * static_cast<double>(c.batch);
  state.counters["ratio"] = t_torch / t_ours;
  state.counters["gradscope_samples/s"] = samples / t_ours;
  state.counters["torch_samples/s"] = samples / t_torch;
  state.counters["steps_per_block"] = K;
  state.counters["threads"] = g_threads;
  state.counters["eigen_threads"] = Eigen::nbThreads();
}

}  // namespace

int main(int argc, char** argv) {
  g_threads = gp::take_threads_argument(argc, argv);
  torch::set_num_threads(g_threads);
  at::set_num_interop_threads(1);
  const gp::OpenBlas openblas;
  if (openblas.set_threads) openblas.set_threads(g_threads);
  for (const gp::Case& c : gp::kCases) {
    auto* a =
        benchmark::RegisterBenchmark(gp::case_name("torch", c).c_str(), gp::checked<BM_torch>, c);
    auto* r = benchmark::RegisterBenchmark(gp::case_name("torch", c, "ratio").c_str(),
                                           gp::checked<ratio_loop>, c);
    for (auto* b : {a, r}) {
      b->Unit(benchmark::kMicrosecond);
      if (g_threads > 1) b->UseRealTime();
    }
  }
  benchmark::AddCustomContext("torch_version", TORCH_VERSION);
  benchmark::AddCustomContext("torch_threads", std::to_string(torch::get_num_threads()));
  benchmark::AddCustomContext("openblas_core", openblas.core());
  benchmark::AddCustomContext("openblas_threads", std::to_string(openblas.threads()));
  benchmark::AddCustomContext("eigen_threads", std::to_string(Eigen::nbThreads()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
