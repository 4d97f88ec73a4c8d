// One full training step of the five networks of bench/mlp_train.bench.cpp in tiny-dnn (Debian
// tiny-dnn 1.0.0a3, header-only).
//
// The tiny-dnn step, its public training call for one batch:
//   net.train<cross_entropy_multiclass>(opt, x, labels, batch, 1 epoch, nop, nop);
// with gradient_descent (plain SGD, alpha 0.01, no weight decay). tiny-dnn sums the per-sample
// gradients and divides by the batch size before the update, so this is the same step as
// gradscope's: forward, softmax cross-entropy averaged over the batch, backward, p -= lr * grad,
// gradients cleared. Its softmax is the activation of the last fully_connected_layer and the loss
// differentiates through it (y - t per sample, as a fused softmax cross-entropy would).
// The nets, with tiny-dnn's layers:
//   A, B, C  fully_connected_layer<sigmoid or relu> per hidden layer,
//   fully_connected_layer<softmax> D        fully_connected_layer<identity>,
//   batch_normalization_layer (eps 1e-5, momentum 0.9 =
//            PyTorch's 0.1), linear_layer<relu> (scale 1, bias 0: this tiny-dnn has no separate
//            activation layer) per hidden layer. Two differences from ours: tiny-dnn's batch norm
//            has no gamma and beta (D trains 16 x 256 fewer parameters, about 0.3% of the step's
//            work), and it normalises with the unbiased batch variance (n - 1)
//   E        network<graph>: the first Dense, per block a fork (below), fc<relu>, fc<identity> and
//            an elementwise_add_layer of the block input and output, then the last Dense
// Net E needs `Fork`, a two-output copy layer written here: tiny-dnn's fully connected backward
// zero-fills its input gradient (core/kernels/fully_connected_grad_op.h) instead of adding to it,
// so when one output feeds two layers, as the input of a residual block does, the other
// consumer's gradient is lost (checked by finite differences; the losses then drift from the
// twin's at step 1). Fork gives each consumer its own edge and adds the two gradients; it costs a
// copy and a sum of 128 x 256 floats per block, well under 1% of tiny-dnn's step.
// The fully connected layers get bench_mlp_train's initial weights (tiny-dnn stores W as
// [in][out], the transpose of ours) and the batches are the same 4, so the losses of the first 4
// steps are checked against the reference twin's before anything is timed: to 1e-3 for A, B, C
// and E, to 2% for D (the variance and gamma/beta differences above).
// Build: -DCNN_USE_AVX (tiny-dnn's "avx" engine; for fully connected layers it is the same plain
// loops as the default) and -DCNN_USE_OMP with OpenMP, so the thread count can be set. Threads: 1
// by default (omp_set_num_threads); `--threads=N` or GRADSCOPE_PEER_THREADS=N for N. Timing: CPU
// time of the benchmark thread with one thread, as bench_mlp_train; wall time with more.
//
// Benchmarks: peers/tinydnn/<net>/batch:<n>. Counters: samples/s, threads. tiny-dnn is about two
// orders of magnitude slower, so each benchmark runs only a few steps: read the medians of
// several repetitions.
//
// Run: bench_tinydnn_mlp --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
//      (built with -DGRADSCOPE_BENCH_PEERS=ON; scripts/bench.sh --peers runs it)
#include <benchmark/benchmark.h>

#include <omp.h>
#include <tiny_dnn/tiny_dnn.h>

#include <exception>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "peer_common.hpp"

namespace {

namespace gb = gradscope_bench;
namespace gp = gradscope_bench::peers;
namespace td = tiny_dnn;

int g_threads = 1;

// One input, two identical outputs; backward adds the two output gradients (see the header).
class Fork : public td::layer {
 public:
  explicit Fork(td::serial_size_t dim)
      : td::layer({td::vector_type::data}, {td::vector_type::data, td::vector_type::data}),
        dim_(dim) {}
  std::string layer_type() const override { return "fork"; }
  std::vector<td::shape3d> in_shape() const override { return {td::shape3d(dim_, 1, 1)}; }
  std::vector<td::shape3d> out_shape() const override {
    return {td::shape3d(dim_, 1, 1), td::shape3d(dim_, 1, 1)};
  }
  void forward_propagation(const std::vector<td::tensor_t*>& in,
                           std::vector<td::tensor_t*>& out) override {
    *out[0] = *in[0];
    *out[1] = *in[0];
  }
  void back_propagation(const std::vector<td::tensor_t*>&, const std::vector<td::tensor_t*>&,
                        std::vector<td::tensor_t*>& out_grad,
                        std::vector<td::tensor_t*>& in_grad) override {
    const td::tensor_t& a = *out_grad[0];
    const td::tensor_t& b = *out_grad[1];
    td::tensor_t& g = *in_grad[0];
    g.resize(a.size());
    for (std::size_t s = 0; s < a.size(); ++s) {
      g[s].resize(dim_);
      for (td::serial_size_t i = 0; i < dim_; ++i) g[s][i] = a[s][i] + b[s][i];
    }
  }

 private:
  td::serial_size_t dim_;
};

// A tiny-dnn net of one case: the sequential kind for A to D, the graph kind for E (its layers
// owned here), and its fully connected layers in the twin's parameter order.
struct TinyDnn {
  td::network<td::sequential> seq;
  td::network<td::graph> graph;
  std::vector<std::shared_ptr<td::layer>> owned;
  std::vector<td::layer*> dense;
  bool is_graph = false;
  td::gradient_descent opt;
  std::vector<std::vector<td::vec_t>> x;
  std::vector<std::vector<td::label_t>> y;

  TinyDnn(const gp::Case& c, const gp::Batches& data) {
    const gb::NetShape s = gb::net_shape(c.net);
    const auto in = static_cast<td::serial_size_t>(s.in);
    const auto classes = static_cast<td::serial_size_t>(s.classes);
    if (s.residual_blocks > 0) {
      is_graph = true;
      const auto w = static_cast<td::serial_size_t>(s.hidden.at(0));
      auto add = [&](std::shared_ptr<td::layer> l) {
        owned.push_back(l);
        return l;
      };
      std::shared_ptr<td::layer> h =
          add(std::make_shared<td::fully_connected_layer<td::activation::identity>>(in, w));
      const std::shared_ptr<td::layer> input = h;
      dense.push_back(h.get());
      for (int k = 0; k < s.residual_blocks; ++k) {
        auto fork = add(std::make_shared<Fork>(w));
        auto l1 = add(std::make_shared<td::fully_connected_layer<td::activation::relu>>(w, w));
        auto l2 = add(std::make_shared<td::fully_connected_layer<td::activation::identity>>(w, w));
        auto sum = add(std::make_shared<td::elementwise_add_layer>(2, w));
        h << fork;
        td::connect(fork.get(), l1.get(), 0, 0);  // fork 0 -> the block's inner layers
        l1 << l2;
        td::connect(fork.get(), sum.get(), 1, 0);  // fork 1 -> the shortcut
        td::connect(l2.get(), sum.get(), 0, 1);
        dense.push_back(l1.get());
        dense.push_back(l2.get());
        h = sum;
      }
      auto last =
          add(std::make_shared<td::fully_connected_layer<td::activation::softmax>>(w, classes));
      h << last;
      dense.push_back(last.get());
      td::construct_graph(graph, {input}, {last});
      graph.init_weight();
    } else {
      auto prev = in;
      for (auto hidden : s.hidden) {
        const auto h = static_cast<td::serial_size_t>(hidden);
        if (s.batch_norm) {
          seq << td::fully_connected_layer<td::activation::identity>(prev, h)
              << td::batch_normalization_layer(1, h, 1e-5f, 0.9f)
              << td::linear_layer<td::activation::relu>(h);
        } else if (s.activation == gb::reference::Activation::relu) {
          seq << td::fully_connected_layer<td::activation::relu>(prev, h);
        } else {
          seq << td::fully_connected_layer<td::activation::sigmoid>(prev, h);
        }
        prev = h;
      }
      seq << td::fully_connected_layer<td::activation::softmax>(prev, classes);
      seq.init_weight();
      for (std::size_t i = 0; i < seq.layer_size(); ++i)
        if (seq[i]->layer_type() == "fully-connected") dense.push_back(seq[i]);
    }
    copy_weights(c);
    opt.alpha = gp::kLr;
    opt.lambda = 0;
    for (int k = 0; k < gp::kPool; ++k) {
      const auto& m = data.x[k];
      std::vector<td::vec_t> xs;
      for (Eigen::Index i = 0; i < m.rows(); ++i) xs.emplace_back(m.row(i).begin(), m.row(i).end());
      x.push_back(std::move(xs));
      y.emplace_back(data.labels[k].begin(), data.labels[k].end());
    }
  }

  // The twin's weights: per Dense W [out, in] row-major (tiny-dnn: W[c * out + i] = W(i, c)), b.
  void copy_weights(const gp::Case& c) {
    const auto twin = gp::initial_twin(c);
    std::vector<const gp::Mat*> w, b;
    for (const auto& p : twin->parameters()) {
      if (p.value->rows() > 1) {
        w.push_back(p.value);
      } else if (w.size() > b.size()) {
        b.push_back(p.value);  // the bias right after its weight (BatchNorm's gamma, beta: skipped)
      }
    }
    if (w.size() != dense.size() || b.size() != dense.size())
      throw std::runtime_error("tinydnn_mlp: " + std::to_string(dense.size()) +
                               " dense layers, the twin has " + std::to_string(w.size()));
    for (std::size_t l = 0; l < dense.size(); ++l) {
      auto params = dense[l]->weights();
      const gp::Mat& W = *w[l];
      td::vec_t& tw = *params.at(0);
      td::vec_t& tb = *params.at(1);
      if (tw.size() != static_cast<std::size_t>(W.size()) ||
          tb.size() != static_cast<std::size_t>(b[l]->size()))
        throw std::runtime_error("tinydnn_mlp: shape mismatch in dense layer " + std::to_string(l));
      const auto out = W.rows(), fan_in = W.cols();
      for (Eigen::Index ci = 0; ci < fan_in; ++ci)
        for (Eigen::Index i = 0; i < out; ++i)
          tw[static_cast<std::size_t>(ci * out + i)] = W(i, ci);
      for (Eigen::Index i = 0; i < out; ++i) tb[static_cast<std::size_t>(i)] = (*b[l])(0, i);
    }
  }

  // Mean cross-entropy of batch k under the current weights: one batched forward in training mode
  // (batch statistics in batch norm, as in the step; the running statistics are left alone).
  float loss(int k) {
    std::vector<td::tensor_t> in;
    for (const auto& v : x[k]) in.push_back({v});
    std::vector<td::tensor_t> out;
    if (is_graph) {
      graph.set_netphase(td::net_phase::train);
      out = graph.predict(in);
    } else {
      seq.set_netphase(td::net_phase::train);
      out = seq.predict(in);
    }
    double sum = 0;
    for (std::size_t i = 0; i < out.size(); ++i) sum -= std::log(out[i][0][y[k][i]]);
    return static_cast<float>(sum / static_cast<double>(out.size()));
  }

  void step(int k) {
    const auto n = x[k].size();
    if (is_graph)
      graph.train<td::cross_entropy_multiclass>(
          opt, x[k], y[k], n, 1, [] {}, [] {});
    else
      seq.train<td::cross_entropy_multiclass>(
          opt, x[k], y[k], n, 1, [] {}, [] {});
  }
};

void tinydnn_loop(benchmark::State& state, gp::Case c) {
  const gb::NetShape shape = gb::net_shape(c.net);
  const gp::Batches data(c.batch, shape.in, shape.classes);
  TinyDnn t(c, data);
  const auto want = gp::twin_losses(c, data);
  for (int k = 0; k < gp::kPool; ++k) {
    const float got = t.loss(k);
    std::string msg = gp::check_loss("tiny-dnn", k, got, want[k]);
    if (shape.batch_norm && std::abs(got - want[k]) <= 0.02f * std::abs(want[k])) msg.clear();
    if (!msg.empty()) {
      state.SkipWithError(msg.c_str());
      return;
    }
    t.step(k);
  }
  std::size_t i = 0;
  for (auto _ : state) t.step(static_cast<int>(i++ % gp::kPool));
  using benchmark::Counter;
  state.counters["samples/s"] = Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(c.batch), Counter::kIsRate);
  state.counters["threads"] = g_threads;
  if (!std::isfinite(t.loss(0))) state.SkipWithError("tiny-dnn: the loss became non-finite");
}

std::string backend_name() {
  std::ostringstream os;
  os << td::core::default_engine();
  return os.str();
}

}  // namespace

int main(int argc, char** argv) {
  g_threads = gp::take_threads_argument(argc, argv);
  omp_set_num_threads(g_threads);
  for (const gp::Case& c : gp::kCases) {
    auto* b = benchmark::RegisterBenchmark(gp::case_name("tinydnn", c).c_str(),
                                           gp::checked<tinydnn_loop>, c);
    b->Unit(benchmark::kMillisecond);
    if (g_threads > 1) b->UseRealTime();
  }
  benchmark::AddCustomContext("tinydnn_threads", std::to_string(g_threads));
  benchmark::AddCustomContext("tinydnn_backend", backend_name());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
