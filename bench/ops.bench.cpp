// Single ops, forward and forward + backward, gradscope against the same arithmetic written
// directly in Eigen on preallocated buffers.
//
// Each gradscope case works like a training step does: the differentiated inputs are parameters
// (persistent tensors with gradient buffers), a long-lived Tape<float> is reset every iteration,
// and forward_backward also calls backward (seeded with a fixed dL/dy for non-scalar outputs)
// and zero_grad on the inputs. The Eigen twin writes the forward into a preallocated output and
// assigns the gradients (=), which is the least any implementation must do.
//
// Benchmarks: ops/<op>/<shape>/<impl>/<pass>, impl gradscope or eigen, pass forward or
// forward_backward.
//   matmul                 C = A B, A [M, K] and B [K, N] parameters; dA = G B^T, dB = A^T G
//   linear                 Y = X W^T + b (Dense), X [M, K], W [N, K], b [N] all parameters
//   relu, sigmoid          y = f(x), x [M, N]
//   softmax_cross_entropy  mean cross-entropy of logits [M, N] against integer labels
//   batch_norm             training mode, x [M, N], gamma and beta [N]
// Counters: GFLOP/s for the products (2 M N K per GEMM), allocs/iter (operator new calls per
// iteration in the steady state; target 0).
//
// Run: bench_ops --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <gradscope/gradscope.hpp>

#include <Eigen/Core>

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "alloc_counter.hpp"

namespace {

namespace gs = gradscope;
namespace gb = gradscope_bench;
using Mat = gs::Matrix<float>;
using Index = Eigen::Index;

Mat random(Index rows, Index cols, std::uint64_t seed, float lo = -1, float hi = 1) {
  gs::Rng rng(seed);
  Mat m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng.uniform(lo, hi));
  return m;
}

gs::Tensor<float> param(const Mat& m, int rank = 2) {
  return gs::Tensor<float>::parameter(m, rank);
}

// ---- the ops: each has the gradscope step and the Eigen twin, forward and forward_backward ----

struct Matmul {
  Index M, K, N;
  gs::Tape<float> tape;
  gs::Tensor<float> a, b;
  Mat A, B, C, G, dA, dB;
  Matmul(Index m, Index k, Index n)
      : M(m),
        K(k),
        N(n),
        a(param(random(m, k, 1))),
        b(param(random(k, n, 2))),
        A(random(m, k, 1)),
        B(random(k, n, 2)),
        C(m, n),
        G(random(m, n, 3)),
        dA(m, k),
        dB(k, n) {}
  double flops(bool backward) const { return (backward ? 6.0 : 2.0) * M * N * K; }
  void ours(bool backward) {
    tape.reset();
    const auto c = gs::matmul(a, b);
    if (!backward) return benchmark::DoNotOptimize(c.value().data());
    tape.backward(c, G);
    benchmark::DoNotOptimize(a.grad().data());
    a.zero_grad();
    b.zero_grad();
  }
  void twin(bool backward) {
    C.noalias() = A * B;
    if (backward) {
      dA.noalias() = G * B.transpose();
      dB.noalias() = A.transpose() * G;
    }
    benchmark::DoNotOptimize(C.data());
  }
};

struct Linear {
  Index M, K, N;
  gs::Tape<float> tape;
  gs::Tensor<float> x, w, b;
  Mat X, W, bias, Y, G, dX, dW, db;
  Linear(Index m, Index k, Index n)
      : M(m),
        K(k),
        N(n),
        x(param(random(m, k, 1))),
        w(param(random(n, k, 2))),
        b(param(random(1, n, 4), 1)),
        X(random(m, k, 1)),
        W(random(n, k, 2)),
        bias(random(1, n, 4)),
        Y(m, n),
        G(random(m, n, 3)),
        dX(m, k),
        dW(n, k),
        db(1, n) {}
  double flops(bool backward) const { return (backward ? 6.0 : 2.0) * M * N * K; }
  void ours(bool backward) {
    tape.reset();
    const auto y = gs::linear(x, w, b);
    if (!backward) return benchmark::DoNotOptimize(y.value().data());
    tape.backward(y, G);
    benchmark::DoNotOptimize(w.grad().data());
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
  }
  void twin(bool backward) {
    Y.noalias() = X * W.transpose();
    Y.rowwise() += bias.row(0);
    if (backward) {
      dX.noalias() = G * W;
      dW.noalias() = G.transpose() * X;
      db.setZero();
      for (Index i = 0; i < M; ++i) db.row(0) += G.row(i);
    }
    benchmark::DoNotOptimize(Y.data());
  }
};

template <bool Relu>
struct Elementwise {
  Index M, N;
  gs::Tape<float> tape;
  gs::Tensor<float> x;
  Mat X, Y, G, dX;
  Elementwise(Index m, Index n)
      : M(m),
        N(n),
        x(param(random(m, n, 1))),
        X(random(m, n, 1)),
        Y(m, n),
        G(random(m, n, 3)),
        dX(m, n) {}
  double flops(bool) const { return 0; }
  void ours(bool backward) {
    tape.reset();
    const auto y = Relu ? gs::relu(x) : gs::sigmoid(x);
    if (!backward) return benchmark::DoNotOptimize(y.value().data());
    tape.backward(y, G);
    benchmark::DoNotOptimize(x.grad().data());
    x.zero_grad();
  }
  void twin(bool backward) {
    if constexpr (Relu) {
      Y = X.cwiseMax(0.0f);
      if (backward) dX.array() = (X.array() > 0.0f).select(G.array(), 0.0f);
    } else {
      Y.array() = X.array().logistic();
      if (backward) dX.array() = G.array() * Y.array() * (1.0f - Y.array());
    }
    benchmark::DoNotOptimize(Y.data());
  }
};

struct SoftmaxCrossEntropy {
  Index M, N;
  gs::Tape<float> tape;
  gs::Tensor<float> x;
  Mat X, dX;
  std::vector<int> labels;
  float loss = 0;
  SoftmaxCrossEntropy(Index m, Index n)
      : M(m), N(n), x(param(random(m, n, 1, -4, 4))), X(random(m, n, 1, -4, 4)), dX(m, n) {
    gs::Rng rng(5);
    for (Index i = 0; i < m; ++i)
      labels.push_back(static_cast<int>(rng.below(static_cast<std::uint64_t>(n))));
  }
  double flops(bool) const { return 0; }
  void ours(bool backward) {
    tape.reset();
    const auto l = gs::softmax_cross_entropy(x, std::span<const int>(labels));
    if (!backward) return benchmark::DoNotOptimize(l.value().data());
    tape.backward(l);
    benchmark::DoNotOptimize(x.grad().data());
    x.zero_grad();
  }
  void twin(bool backward) {  // one pass per row: loss and, when asked, the gradient
    const float inv_m = 1.0f / static_cast<float>(M);
    double total = 0;
    for (Index i = 0; i < M; ++i) {
      const int y = labels[static_cast<std::size_t>(i)];
      const float mx = X.row(i).maxCoeff();
      if (backward) {
        dX.row(i).array() = (X.row(i).array() - mx).exp();
        const float z = dX.row(i).sum();
        total += mx + std::log(z) - X(i, y);
        dX.row(i) *= inv_m / z;
        dX(i, y) -= inv_m;
      } else {
        total += mx + std::log((X.row(i).array() - mx).exp().sum()) - X(i, y);
      }
    }
    loss = static_cast<float>(total * inv_m);
    benchmark::DoNotOptimize(loss);
  }
};

struct BatchNorm {
  Index M, N;
  gs::Tape<float> tape;
  gs::Tensor<float> x, gamma, beta, running_mean, running_var;
  Mat X, Y, G, dX, xhat, g, bt, dg, dbt, mean, var, invstd, rm, rv, k, sdy, sdyx;
  BatchNorm(Index m, Index n)
      : M(m),
        N(n),
        x(param(random(m, n, 1))),
        gamma(param(Mat::Ones(1, n), 1)),
        beta(param(Mat::Zero(1, n), 1)),
        running_mean(gs::Tensor<float>::zeros(gs::Shape::vector(n))),
        running_var(gs::Tensor<float>::ones(gs::Shape::vector(n))),
        X(random(m, n, 1)),
        Y(m, n),
        G(random(m, n, 3)),
        dX(m, n),
        xhat(m, n),
        g(Mat::Ones(1, n)),
        bt(Mat::Zero(1, n)),
        dg(1, n),
        dbt(1, n),
        mean(1, n),
        var(1, n),
        invstd(1, n),
        rm(Mat::Zero(1, n)),
        rv(Mat::Ones(1, n)),
        k(1, n),
        sdy(1, n),
        sdyx(1, n) {}
  double flops(bool) const { return 0; }
  void ours(bool backward) {
    tape.reset();
    const auto y = gs::batch_norm(x, gamma, beta, running_mean, running_var);
    if (!backward) return benchmark::DoNotOptimize(y.value().data());
    tape.backward(y, G);
    benchmark::DoNotOptimize(x.grad().data());
    x.zero_grad();
    gamma.zero_grad();
    beta.zero_grad();
  }
  void twin(bool backward) {  // row loops: vectorised along the features
    const float inv = 1.0f / static_cast<float>(M);
    mean.setZero();
    for (Index i = 0; i < M; ++i) mean += X.row(i);
    mean *= inv;
    var.setZero();
    for (Index i = 0; i < M; ++i) var.array() += (X.row(i) - mean).array().square();
    var *= inv;
    invstd.array() = (var.array() + 1e-5f).rsqrt();
    for (Index i = 0; i < M; ++i) {
      xhat.row(i).array() = (X.row(i) - mean).array() * invstd.array();
      Y.row(i).array() = xhat.row(i).array() * g.array() + bt.array();
    }
    rm = 0.9f * rm + 0.1f * mean;
    rv = 0.9f * rv + (0.1f * static_cast<float>(M) / static_cast<float>(M - 1)) * var;
    if (backward) {
      dg.setZero();
      dbt.setZero();
      for (Index i = 0; i < M; ++i) {
        dbt += G.row(i);
        dg.array() += G.row(i).array() * xhat.row(i).array();
      }
      k.array() = g.array() * invstd.array();
      sdy = dbt * inv;
      sdyx = dg * inv;
      for (Index i = 0; i < M; ++i)
        dX.row(i).array() =
            k.array() * (G.row(i).array() - sdy.array() - xhat.row(i).array() * sdyx.array());
    }
    benchmark::DoNotOptimize(Y.data());
  }
};

// ---- the harness ----

template <class Op, class... Dims>
void run(benchmark::State& state, bool gradscope, bool backward, Dims... dims) {
  auto op = std::make_unique<Op>(dims...);
  const auto once = [&] { gradscope ? op->ours(backward) : op->twin(backward); };
  for (int k = 0; k < 3; ++k) once();  // warm-up: the arena reaches its final size
  const gb::AllocationScope allocs;
  for (int k = 0; k < 8; ++k) once();
  const double allocs_per_iter = static_cast<double>(allocs.new_calls()) / 8;
  for (auto _ : state) {
    once();
    benchmark::ClobberMemory();
  }
  state.counters["allocs/iter"] = allocs_per_iter;
  if (const double f = op->flops(backward); f > 0)
    state.counters["GFLOP/s"] = benchmark::Counter(
        f * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

template <class Op, class... Dims>
void add(const std::string& op, const std::string& shape, Dims... dims) {
  for (const bool gradscope : {true, false})
    for (const bool backward : {false, true}) {
      const std::string name = "ops/" + op + "/" + shape + "/" +
                               (gradscope ? "gradscope" : "eigen") + "/" +
                               (backward ? "forward_backward" : "forward");
      benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) {
        run<Op>(s, gradscope, backward, dims...);
      })->Unit(benchmark::kMicrosecond);
    }
}

}  // namespace

int main(int argc, char** argv) {
  // Shapes: the layers of the benchmark nets (batch 128; batch 10 for net A's first layer).
  for (auto [m, k, n] :
       {std::array<Index, 3>{10, 784, 30}, {128, 784, 256}, {128, 256, 256}, {128, 1024, 1024}}) {
    const std::string shape = std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n);
    add<Matmul>("matmul", shape, m, k, n);
    add<Linear>("linear", shape, m, k, n);
  }
  for (auto [m, n] : {std::array<Index, 2>{128, 256}, {128, 1024}}) {
    const std::string shape = std::to_string(m) + "x" + std::to_string(n);
    add<Elementwise<true>>("relu", shape, m, n);
    add<Elementwise<false>>("sigmoid", shape, m, n);
    add<BatchNorm>("batch_norm", shape, m, n);
  }
  for (auto [m, n] : {std::array<Index, 2>{10, 10}, {128, 10}, {128, 1000}}) {
    add<SoftmaxCrossEntropy>("softmax_cross_entropy", std::to_string(m) + "x" + std::to_string(n),
                             m, n);
  }
  benchmark::AddCustomContext("eigen_threads", std::to_string(Eigen::nbThreads()));
  benchmark::AddCustomContext("eigen_simd", Eigen::SimdInstructionSetsInUse());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
