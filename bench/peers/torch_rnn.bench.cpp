// One full training step of bench/rnn_train.bench.cpp's LSTM and GRU classifiers in PyTorch's C++
// API (libtorch, Debian libtorch-dev 1.13), and gradscope against it in one loop.
//
// The PyTorch step, the idiomatic one:
//   auto [out, state] = rnn->forward(x);                    // torch::nn::LSTM / GRU, batch_first,
//                                                           // x [B, T, I], out [B, T, H]
//   loss = cross_entropy(head->forward(out.select(1, T - 1)), labels);  // last step, mean
//   loss.backward(); opt.step(); opt.zero_grad();            // torch::optim::SGD, lr 0.01
// The parameters (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0: the same layout and gate
// order as gradscope's; the head's weight and bias) are copied from bench_rnn_train's initial
// weights (the reference twin's, which are gradscope's), and the batches are the same 4, so the
// losses of the first 4 steps are checked against the twin's before anything is timed (a failed
// check skips the benchmark with an error).
//
// Benchmarks, per cell and case:
//   peers/torch/<cell>/T:<T>/B:<B>/I:<I>/H:<H>         the PyTorch step alone
//   peers/torch/<cell>/T:<T>/B:<B>/I:<I>/H:<H>/ratio   PyTorch, gradscope and the hand-written
//                           Eigen twin (bench_rnn_train's reference) interleaved in one loop,
//                           blocks of K steps each (K: about 10 ms of PyTorch steps, at least 1),
//                           the order rotating so that each side goes first equally often.
//                           Counter `ratio` = PyTorch time / gradscope time = gradscope/PyTorch
//                           throughput (> 1: gradscope is faster); `ratio_reference` = twin time /
//                           gradscope time = ours/reference, measured under the same load.
// Threads: 1 by default (torch::set_num_threads(1), interop threads 1, OpenBLAS 1); `--threads=N`
// or GRADSCOPE_PEER_THREADS=N for N (Eigen follows only in a -fopenmp build). Timing and counters
// as bench_torch_mlp (peer_common.hpp): CPU time of the benchmark thread with one thread, wall
// time with more; samples/s, allocs/step, mallocs/step, threads, cpu_other_threads.
//
// Run: bench_torch_rnn --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//      (built with -DGRADSCOPE_BENCH_PEERS=ON; scripts/bench.sh --peers runs it against
//      bench_rnn_train and prints the table)
#include <benchmark/benchmark.h>

#include <torch/torch.h>

#include <gradscope/gradscope.hpp>

#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "../alloc_counter.hpp"
#include "../rnn_cases.hpp"
#include "peer_common.hpp"

namespace {

namespace gs = gradscope;
namespace gb = gradscope_bench;
namespace gp = gradscope_bench::peers;
namespace rnn = gradscope_bench::rnn;

int g_threads = 1;

// The initial twin of a case: bench_rnn_train's initial weights.
std::unique_ptr<gb::reference::RnnReference<float>> initial_twin(const rnn::Case& c) {
  gs::Rng rng(rnn::kWeightSeed);
  return rnn::make_reference_rnn<float>(rnn::shape_of(c), c.batch, rng);
}

// The losses of the twin's first kPool SGD steps, which every side must reproduce.
std::vector<float> twin_losses(const rnn::Case& c, const rnn::Batches& data) {
  auto twin = initial_twin(c);
  std::vector<float> losses;
  for (int k = 0; k < rnn::kPool; ++k)
    losses.push_back(twin->step(data.x[k], data.labels[k], rnn::kLr));
  return losses;
}

void copy_into(torch::Tensor& to, const gb::reference::Mat<float>& from, const std::string& name) {
  if (to.numel() != from.size())
    throw std::runtime_error("torch_rnn: " + name + " has " + std::to_string(to.numel()) +
                             " elements, the twin's " + std::to_string(from.size()));
  // Both row-major: weight_* [G*H, in] and the head's [C, H] as the twin's, a bias [n] as [1, n].
  std::memcpy(to.data_ptr<float>(), from.data(),
              sizeof(float) * static_cast<std::size_t>(from.size()));
}

// The PyTorch training step, with bench_rnn_train's weights and batches.
struct Torch {
  rnn::Case c;
  std::variant<torch::nn::LSTM, torch::nn::GRU> cell;
  torch::nn::Linear head;
  std::unique_ptr<torch::optim::SGD> opt;
  std::vector<torch::Tensor> x, y;

  static std::variant<torch::nn::LSTM, torch::nn::GRU> make_cell(const rnn::Case& c) {
    if (c.cell == rnn::RnnCell::lstm)
      return torch::nn::LSTM(torch::nn::LSTMOptions(c.input, c.hidden).batch_first(true));
    return torch::nn::GRU(torch::nn::GRUOptions(c.input, c.hidden).batch_first(true));
  }

  Torch(const rnn::Case& cs, const rnn::Batches& data)
      : c(cs), cell(make_cell(cs)), head(torch::nn::Linear(cs.hidden, rnn::kClasses)) {
    const auto twin = initial_twin(c);
    const auto& from = twin->parameters();  // weight_ih, weight_hh, bias_ih, bias_hh, W, b
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> params;
    std::visit(
        [&](auto& m) {
          m->train();
          auto named = m->named_parameters();
          const char* names[] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"};
          for (int i = 0; i < 4; ++i) {
            auto* p = named.find(names[i]);
            if (!p) throw std::runtime_error(std::string("torch_rnn: no parameter ") + names[i]);
            copy_into(*p, *from[static_cast<std::size_t>(i)].value, names[i]);
          }
          if (named.size() != 4)
            throw std::runtime_error("torch_rnn: the cell has " + std::to_string(named.size()) +
                                     " parameters, expected 4");
          for (auto& p : m->parameters()) params.push_back(p);
        },
        cell);
    copy_into(head->weight, *from[4].value, "head weight");
    copy_into(head->bias, *from[5].value, "head bias");
    for (auto& p : head->parameters()) params.push_back(p);
    opt = std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(rnn::kLr));
    for (int k = 0; k < rnn::kPool; ++k) {
      const auto& m = data.x[k];
      x.push_back(torch::from_blob(const_cast<float*>(m.data()), {c.batch, c.steps, c.input},
                                   torch::kFloat32)
                      .clone());
      std::vector<std::int64_t> labels(data.labels[k].begin(), data.labels[k].end());
      y.push_back(torch::tensor(labels, torch::kInt64));
    }
  }

  float step(int k) {
    const torch::Tensor out =
        std::visit([&](auto& m) -> torch::Tensor { return std::get<0>(m->forward(x[k])); }, cell);
    const torch::Tensor loss =
        torch::nn::functional::cross_entropy(head->forward(out.select(1, c.steps - 1)), y[k]);
    loss.backward();
    opt->step();
    opt->zero_grad();
    return loss.item<float>();
  }
};

// gradscope's step, as in bench_rnn_train.
struct Ours {
  gs::Tape<float> tape;
  std::shared_ptr<gs::nn::Sequential<float>> net;
  gs::optim::SGD<float> opt;
  std::vector<gs::Tensor<float>> x;
  const rnn::Batches& data;

  Ours(const rnn::Case& c, const rnn::Batches& batches)
      : net([&] {
          gs::Rng rng(rnn::kWeightSeed);
          return rnn::make_gradscope_rnn<float>(rnn::shape_of(c), rng);
        }()),
        opt(net->parameters(), gs::optim::SGDOptions<float>{.lr = rnn::kLr}),
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

// The hand-written twin's step (bench_rnn_train's reference), from the same weights.
struct Twin {
  std::unique_ptr<gb::reference::RnnReference<float>> twin;
  const rnn::Batches& data;

  Twin(const rnn::Case& c, const rnn::Batches& batches) : twin(initial_twin(c)), data(batches) {}
  float step(int k) { return twin->step(data.x[k], data.labels[k], rnn::kLr); }
};

// The first kPool steps of `impl` against the twin's losses; "" when they agree.
template <class Impl>
std::string check_first_steps(const char* name, Impl& impl, const std::vector<float>& want) {
  for (int k = 0; k < rnn::kPool; ++k)
    if (auto msg = gp::check_loss(name, k, impl.step(k), want[k]); !msg.empty()) return msg;
  return {};
}

constexpr int kAllocSteps = rnn::kPool;

void BM_torch(benchmark::State& state, rnn::Case c) {
  const rnn::Batches data(c);
  Torch t(c, data);
  if (auto msg = check_first_steps("PyTorch", t, twin_losses(c, data)); !msg.empty()) {
    state.SkipWithError(msg.c_str());
    return;
  }
  const gb::AllocationScope allocs;
  for (int k = 0; k < kAllocSteps; ++k) t.step(k % rnn::kPool);
  const double news = static_cast<double>(allocs.new_calls()) / kAllocSteps;
  const double mallocs =
      gb::counts_malloc ? static_cast<double>(allocs.malloc_calls()) / kAllocSteps : -1.0;
  const double thread0 = gp::now_seconds(false), process0 = gp::process_cpu_seconds();
  std::size_t i = 0;
  float loss = 0;
  for (auto _ : state) {
    loss = t.step(static_cast<int>(i++ % rnn::kPool));
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

void ratio_loop(benchmark::State& state, rnn::Case c) {
  const rnn::Batches data(c);
  Torch t(c, data);
  Ours ours(c, data);
  Twin twin(c, data);
  const auto want = twin_losses(c, data);
  for (auto msg :
       {check_first_steps("PyTorch", t, want), check_first_steps("gradscope", ours, want),
        check_first_steps("the twin", twin, want)})
    if (!msg.empty()) {
      state.SkipWithError(msg.c_str());
      return;
    }
  const bool wall = g_threads > 1 || Eigen::nbThreads() > 1;
  const double t0 = gp::now_seconds(wall);
  t.step(0);
  const double one = std::max(gp::now_seconds(wall) - t0, 1e-7);
  const int K = static_cast<int>(std::clamp(10e-3 / one, 1.0, 1000.0));
  double t_torch = 0, t_ours = 0, t_twin = 0;
  std::size_t i = 0;
  const auto run = [&](auto& impl, double& total) {
    const double s = gp::now_seconds(wall);
    for (int j = 0; j < K; ++j)
      benchmark::DoNotOptimize(impl.step(static_cast<int>((i + j) % rnn::kPool)));
    total += gp::now_seconds(wall) - s;
  };
  const auto block = [&](int who) {  // 0 gradscope, 1 the twin, 2 PyTorch
    if (who == 0)
      run(ours, t_ours);
    else if (who == 1)
      run(twin, t_twin);
    else
      run(t, t_torch);
  };
  int first = 0;  // who goes first in this block
  for (auto _ : state) {
    for (int n = 0; n < 3; ++n) block((first + n) % 3);
    first = (first + 1) % 3;
    i += static_cast<std::size_t>(K);
  }
  const double samples = static_cast<double>(state.iterations()) * K * static_cast<double>(c.batch);
  state.counters["ratio"] = t_torch / t_ours;
  state.counters["ratio_reference"] = t_twin / t_ours;
  state.counters["gradscope_samples/s"] = samples / t_ours;
  state.counters["reference_samples/s"] = samples / t_twin;
  state.counters["torch_samples/s"] = samples / t_torch;
  state.counters["steps_per_block"] = K;
  state.counters["threads"] = g_threads;
  state.counters["eigen_threads"] = Eigen::nbThreads();
}

template <void (*Body)(benchmark::State&, rnn::Case)>
void checked(benchmark::State& state, rnn::Case c) {
  try {
    Body(state, c);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// peers/torch/<cell>/T:<T>/B:<B>/I:<I>/H:<H>[/ratio]
std::string case_name(const rnn::Case& c, const char* suffix = nullptr) {
  std::string name = "peers/torch/" + rnn::case_id(c);
  if (suffix) name += std::string("/") + suffix;
  return name;
}

}  // namespace

int main(int argc, char** argv) {
  g_threads = gp::take_threads_argument(argc, argv);
  torch::set_num_threads(g_threads);
  at::set_num_interop_threads(1);
  const gp::OpenBlas openblas;
  if (openblas.set_threads) openblas.set_threads(g_threads);
  for (const rnn::Case& c : rnn::kCases) {
    auto* a = benchmark::RegisterBenchmark(case_name(c).c_str(), checked<BM_torch>, c);
    auto* r = benchmark::RegisterBenchmark(case_name(c, "ratio").c_str(), checked<ratio_loop>, c);
    for (auto* b : {a, r}) {
      b->Unit(benchmark::kMillisecond);
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
