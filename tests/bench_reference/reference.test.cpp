// The hand-written Eigen twins of bench/reference/ are the yardstick of the training benchmarks,
// so they must be right: their gradients are checked by central finite differences in double
// precision, and one and two SGD steps of each benchmark net (the MLPs of bench_mlp_train, the
// LSTM and GRU classifiers of bench_rnn_train) are compared with gradscope's.
#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../../bench/reference/nets.hpp"
#include "../../bench/rnn_cases.hpp"

namespace {

namespace gs = gradscope;
namespace gb = gradscope_bench;
namespace ref = gradscope_bench::reference;

template <class T>
struct Batch {
  ref::Mat<T> x;
  std::vector<int> labels;
};

template <class T>
Batch<T> make_batch(ref::Index rows, ref::Index cols, ref::Index classes, std::uint64_t seed) {
  gs::Rng rng(seed);
  Batch<T> b;
  b.x.resize(rows, cols);
  for (ref::Index i = 0; i < b.x.size(); ++i) b.x.data()[i] = static_cast<T>(rng.uniform(-1, 1));
  for (ref::Index i = 0; i < rows; ++i)
    b.labels.push_back(static_cast<int>(rng.below(static_cast<std::uint64_t>(classes))));
  return b;
}

// Largest |analytic - numeric| / max(1, |numeric|) over every parameter element.
template <class Net>
double max_gradient_error(Net& twin, const Batch<double>& b) {
  twin.forward_backward(b.x, b.labels);
  std::vector<ref::Mat<double>> analytic;
  for (const auto& p : twin.parameters()) analytic.push_back(*p.grad);
  const double h = 1e-6;
  double worst = 0;
  const auto& params = twin.parameters();
  for (std::size_t k = 0; k < params.size(); ++k) {
    auto& v = *params[k].value;
    for (ref::Index i = 0; i < v.size(); ++i) {
      const double saved = v.data()[i];
      v.data()[i] = saved + h;
      const double up = twin.forward_backward(b.x, b.labels);
      v.data()[i] = saved - h;
      const double down = twin.forward_backward(b.x, b.labels);
      v.data()[i] = saved;
      const double numeric = (up - down) / (2 * h);
      const double err =
          std::abs(analytic[k].data()[i] - numeric) / std::max(1.0, std::abs(numeric));
      worst = std::max(worst, err);
    }
  }
  return worst;
}

gb::NetShape small_shape(char kind) {
  gb::NetShape s;
  s.in = 7;
  s.classes = 4;
  switch (kind) {
    case 's':  // sigmoid MLP (net A's kind)
      s.hidden = {6, 5, 5};
      s.activation = ref::Activation::sigmoid;
      s.init = gs::init::xavier_uniform;
      break;
    case 'r':
      s.hidden = {6, 5, 5};
      break;   // ReLU MLP (B, C)
    case 'b':  // ReLU MLP with BatchNorm (D)
      s.hidden = {6, 5};
      s.batch_norm = true;
      break;
    case 'e':  // residual (E)
      s.hidden = {5};
      s.residual_blocks = 2;
      break;
  }
  return s;
}

}  // namespace

TEST_CASE("reference twins: gradients match central finite differences in double",
          "[bench_reference]") {
  for (const char kind : {'s', 'r', 'b', 'e'}) {
    SECTION(std::string("network kind ") + kind) {
      const gb::NetShape shape = small_shape(kind);
      gs::Rng rng(42);
      auto twin = gb::make_reference_net<double>(shape, 5, rng);
      const auto batch = make_batch<double>(5, shape.in, shape.classes, 7);
      // Small biases are zero at initialisation; move every parameter off its start so that no
      // term of the gradient vanishes by symmetry (gamma = 1, beta = 0, zero biases).
      gs::Rng jitter(3);
      for (const auto& p : twin->parameters())
        for (ref::Index i = 0; i < p.value->size(); ++i)
          p.value->data()[i] += 0.3 * (jitter.uniform() - 0.5);
      CHECK(max_gradient_error(*twin, batch) < 1e-6);
    }
  }
}

TEST_CASE(
    "reference twins: the benchmark nets start from gradscope's weights and take the same "
    "SGD steps",
    "[bench_reference]") {
  const float lr = 0.05f;
  for (const char net : {'A', 'B', 'C', 'D', 'E'}) {
    SECTION(std::string("net ") + net) {
      const gb::NetShape shape = gb::net_shape(net);
      const ref::Index n = 16;
      gs::Rng rng_ours(11), rng_ref(11);
      auto model = gb::make_gradscope_net<float>(shape, rng_ours);
      auto twin = gb::make_reference_net<float>(shape, n, rng_ref);
      auto params = model->parameters();
      const auto& twin_params = twin->parameters();
      REQUIRE(params.size() == twin_params.size());
      for (std::size_t k = 0; k < params.size(); ++k) {
        INFO("parameter " << k << " " << params[k].name());
        REQUIRE(params[k].rows() == twin_params[k].value->rows());
        REQUIRE(params[k].cols() == twin_params[k].value->cols());
        CHECK(params[k].value() == *twin_params[k].value);  // the same draws, bit for bit
      }
      gs::optim::SGD<float> opt(params, gs::optim::SGDOptions<float>{.lr = lr});
      gs::Tape<float> tape;
      for (int step = 0; step < 2; ++step) {
        const auto batch = make_batch<float>(n, shape.in, shape.classes, 100 + step);
        tape.reset();
        const gs::Tensor<float> x(batch.x, 2, false);
        const auto logits = (*model)(x);
        const auto loss = gs::nn::softmax_cross_entropy(logits, std::span<const int>(batch.labels));
        tape.backward(loss);
        const float twin_loss = twin->forward_backward(batch.x, batch.labels);
        INFO("step " << step);
        CHECK(loss.item() == Approx(twin_loss).epsilon(1e-5));
        const double logit_scale = std::max(1.0f, twin->logits().cwiseAbs().maxCoeff());
        CHECK((logits.value() - twin->logits()).cwiseAbs().maxCoeff() <= 1e-4 * logit_scale);
        for (std::size_t k = 0; k < params.size(); ++k) {
          INFO("gradient of parameter " << k << " " << params[k].name());
          const auto& g = *twin_params[k].grad;
          const double scale = std::max(1e-3f, g.cwiseAbs().maxCoeff());
          CHECK((params[k].grad() - g).cwiseAbs().maxCoeff() <= 1e-3 * scale);
        }
        opt.step();
        opt.zero_grad();
        twin->sgd_step(lr);
        for (std::size_t k = 0; k < params.size(); ++k) {
          INFO("value of parameter " << k << " " << params[k].name() << " after the step");
          const auto& v = *twin_params[k].value;
          const double scale = std::max(1.0f, v.cwiseAbs().maxCoeff());
          CHECK((params[k].value() - v).cwiseAbs().maxCoeff() <= 1e-5 * scale);
        }
      }
    }
  }
}

// ---- the recurrent twin (bench/reference/rnn_reference.hpp) ----

TEST_CASE("recurrent twin: gradients match central finite differences in double",
          "[bench_reference]") {
  using ref::RnnCell;
  for (const RnnCell cell : {RnnCell::lstm, RnnCell::gru})
    for (const ref::Index steps : {1, 4}) {
      SECTION(std::string(gb::rnn::cell_name(cell)) + ", " + std::to_string(steps) + " steps") {
        ref::RnnShape shape;
        shape.cell = cell;
        shape.steps = steps;
        shape.input = 3;
        shape.hidden = 4;
        shape.classes = 3;
        gs::Rng rng(42);
        ref::RnnReference<double> twin(shape, 2, rng);
        const auto batch = make_batch<double>(2, steps * shape.input, shape.classes, 7);
        // The biases start at 0 (the LSTM's forget block at 1): move every parameter off its
        // start so that no term of the gradient vanishes by symmetry.
        gs::Rng jitter(3);
        for (const auto& p : twin.parameters())
          for (ref::Index i = 0; i < p.value->size(); ++i)
            p.value->data()[i] += 0.3 * (jitter.uniform() - 0.5);
        CHECK(max_gradient_error(twin, batch) < 1e-6);
      }
    }
}

TEST_CASE(
    "recurrent twin: the benchmark's LSTM and GRU start from gradscope's weights and take the "
    "same SGD steps",
    "[bench_reference]") {
  const float lr = 0.05f;
  for (const gb::rnn::Case& c : gb::rnn::kCases) {
    SECTION(gb::rnn::case_id(c)) {
      // The benchmark's cell and sizes, shorter and on a smaller batch (the weights do not depend
      // on either).
      ref::RnnShape shape = gb::rnn::shape_of(c);
      shape.steps = 6;
      const ref::Index n = 5;
      gs::Rng rng_ours(gb::rnn::kWeightSeed), rng_ref(gb::rnn::kWeightSeed);
      auto model = gb::rnn::make_gradscope_rnn<float>(shape, rng_ours);
      auto twin = gb::rnn::make_reference_rnn<float>(shape, n, rng_ref);
      auto params = model->parameters();
      const auto& twin_params = twin->parameters();
      REQUIRE(params.size() == twin_params.size());
      for (std::size_t k = 0; k < params.size(); ++k) {
        INFO("parameter " << k << " " << params[k].name());
        REQUIRE(params[k].rows() == twin_params[k].value->rows());
        REQUIRE(params[k].cols() == twin_params[k].value->cols());
        CHECK(params[k].value() == *twin_params[k].value);  // the same draws, bit for bit
      }
      gs::optim::SGD<float> opt(params, gs::optim::SGDOptions<float>{.lr = lr});
      gs::Tape<float> tape;
      for (int step = 0; step < 2; ++step) {
        const auto batch =
            make_batch<float>(n, shape.steps * shape.input, shape.classes, 100 + step);
        tape.reset();
        const gs::Tensor<float> x(batch.x, 2, false);
        const auto logits = (*model)(x);
        const auto loss = gs::nn::softmax_cross_entropy(logits, std::span<const int>(batch.labels));
        tape.backward(loss);
        const float twin_loss = twin->forward_backward(batch.x, batch.labels);
        INFO("step " << step);
        CHECK(loss.item() == Approx(twin_loss).epsilon(1e-5));
        const double logit_scale = std::max(1.0f, twin->logits().cwiseAbs().maxCoeff());
        CHECK((logits.value() - twin->logits()).cwiseAbs().maxCoeff() <= 1e-5 * logit_scale);
        for (std::size_t k = 0; k < params.size(); ++k) {
          INFO("gradient of parameter " << k << " " << params[k].name());
          const auto& g = *twin_params[k].grad;
          const double scale = std::max(1e-3f, g.cwiseAbs().maxCoeff());
          CHECK((params[k].grad() - g).cwiseAbs().maxCoeff() <= 1e-4 * scale);
        }
        opt.step();
        opt.zero_grad();
        twin->sgd_step(lr);
        for (std::size_t k = 0; k < params.size(); ++k) {
          INFO("value of parameter " << k << " " << params[k].name() << " after the step");
          const auto& v = *twin_params[k].value;
          const double scale = std::max(1.0f, v.cwiseAbs().maxCoeff());
          CHECK((params[k].value() - v).cwiseAbs().maxCoeff() <= 1e-5 * scale);
        }
      }
    }
  }
}
