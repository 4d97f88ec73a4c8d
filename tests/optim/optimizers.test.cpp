// SGD, Adam, AdamW and RMSprop against independent scalar implementations of the update rules
// published in PyTorch's documentation (torch.optim.SGD / Adam / AdamW / RMSprop, "Algorithm"
// pseudo-code), three steps on a fixed problem, in double. Also: option validation, the
// non-finite policies of step(), and named_state() / state_loaded().

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "optim_test_util.hpp"

namespace gs = gradscope;
namespace opt = gradscope::optim;
using optim_test::Mat;
using optim_test::max_abs_diff;

namespace {

constexpr double tolerance = 1e-6;
constexpr double qnan = std::numeric_limits<double>::quiet_NaN();
constexpr double inf = std::numeric_limits<double>::infinity();

/// One buffer per parameter, in parameter order.
using Flat = std::vector<Mat>;

double sgn(double x) { return static_cast<double>((x > 0) - (x < 0)); }

Mat mat(Eigen::Index rows, Eigen::Index cols, std::initializer_list<double> v) {
  Mat m(rows, cols);
  Eigen::Index i = 0;
  for (double x : v) m.data()[i++] = x;
  return m;
}

// ---- the fixed problem: W [2, 3] (holding an exact 0, so sign(0) = 0 matters for L1), b [3] ----

const std::vector<std::string> names{"net.0.weight", "net.0.bias"};

Flat initial_values() {
  return {mat(2, 3, {0.5, -1.2, 0.0, 2.0, -0.3, 0.8}), mat(1, 3, {0.1, -0.4, 0.25})};
}

std::vector<gs::Tensor<double>> make_params() {
  const Flat v = initial_values();
  return {optim_test::parameter(v[0], 2, names[0]), optim_test::parameter(v[1], 1, names[1])};
}

/// The gradient fed at step t (1, 2, 3): magnitudes from 0 to 2.5, both signs.
Flat fixed_gradient(int t) {
  switch (t) {
    case 1:
      return {mat(2, 3, {0.3, -0.7, 1.1, -2.0, 0.05, 0.6}), mat(1, 3, {0.4, -0.1, 0.9})};
    case 2:
      return {mat(2, 3, {-0.5, 0.2, 0.8, 1.5, -0.3, -1.0}), mat(1, 3, {-0.2, 0.3, 0.0})};
    default:
      return {mat(2, 3, {0.1, 0.9, -0.4, 0.7, 2.5, -0.05}), mat(1, 3, {1.2, -0.6, 0.35})};
  }
}

/// Targets of the quadratic loss sum((W - C)^2) + sum((b - c)^2), whose gradient is 2 (p - target).
Flat quadratic_targets() {
  return {mat(2, 3, {1.0, -1.0, 0.5, 0.0, 0.3, -0.2}), mat(1, 3, {-0.5, 0.5, 0.0})};
}

/// Which parameters are regularised and their learning-rate multipliers (the default rule:
/// the matrix W is, the vector b is not).
struct Setup {
  std::vector<bool> reg{true, false};
  std::vector<double> lr_scale{1.0, 1.0};
};

using State = std::vector<std::pair<std::string, Flat>>;

Flat zeros_like(const Flat& x) {
  Flat z;
  for (const auto& p : x) z.push_back(Mat::Zero(p.rows(), p.cols()));
  return z;
}

// ---- independent reference implementations, one scalar at a time, from PyTorch's docs ----

/// torch.optim.SGD: g += wd p; b = g (t = 1) or mu b + (1 - tau) g; g = g + mu b (Nesterov) or
/// b; p -= lr g. Our L1 extension adds l1 sign(p) where weight decay is added.
struct RefSgd {
  double lr = 0.1, momentum = 0, dampening = 0;
  bool nesterov = false;
  double weight_decay = 0, l1 = 0;
  Setup setup{};
  Flat buf{};

  void step(int t, Flat& x, const Flat& grad) {
    if (buf.empty()) buf = zeros_like(x);
    for (std::size_t k = 0; k < x.size(); ++k) {
      for (Eigen::Index i = 0; i < x[k].size(); ++i) {
        double& p = x[k].data()[i];
        double g = grad[k].data()[i];
        if (setup.reg[k]) g += weight_decay * p + l1 * sgn(p);
        if (momentum != 0) {
          double& b = buf[k].data()[i];
          b = t > 1 ? momentum * b + (1 - dampening) * g : g;
          g = nesterov ? g + momentum * b : b;
        }
        p -= lr * setup.lr_scale[k] * g;
      }
    }
  }
  State state() const {
    if (momentum == 0) return {};
    return {{"momentum_buffer", buf}};
  }
};

/// torch.optim.Adam (coupled: g += wd p) and torch.optim.AdamW (decoupled: p -= lr wd p first):
/// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; m^ = m / (1 - b1^t); v^ = v / (1 - b2^t);
/// p -= lr m^ / (sqrt(v^) + eps).
struct RefAdam {
  double lr = 0.1, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0, l1 = 0;
  bool decoupled = false;
  Setup setup{};
  Flat m{}, v{};

  void step(int t, Flat& x, const Flat& grad) {
    if (m.empty()) m = v = zeros_like(x);
    for (std::size_t k = 0; k < x.size(); ++k) {
      const double lr_k = lr * setup.lr_scale[k];
      for (Eigen::Index i = 0; i < x[k].size(); ++i) {
        double& p = x[k].data()[i];
        double g = grad[k].data()[i];
        if (setup.reg[k]) {
          if (decoupled)
            p -= lr_k * weight_decay * p;
          else
            g += weight_decay * p;
          g += l1 * sgn(p);
        }
        double& mk = m[k].data()[i];
        double& vk = v[k].data()[i];
        mk = beta1 * mk + (1 - beta1) * g;
        vk = beta2 * vk + (1 - beta2) * g * g;
        const double m_hat = mk / (1 - std::pow(beta1, t));
        const double v_hat = vk / (1 - std::pow(beta2, t));
        p -= lr_k * m_hat / (std::sqrt(v_hat) + eps);
      }
    }
  }
  State state() const { return {{"exp_avg", m}, {"exp_avg_sq", v}}; }
};

/// torch.optim.RMSprop: g += wd p; v = a v + (1 - a) g^2; v~ = v, or v - gbar^2 with
/// gbar = a gbar + (1 - a) g when centered; with momentum b = mu b + g / (sqrt(v~) + eps),
/// p -= lr b; else p -= lr g / (sqrt(v~) + eps).
struct RefRmsprop {
  double lr = 0.01, alpha = 0.99, eps = 1e-8, momentum = 0;
  bool centered = false;
  double weight_decay = 0, l1 = 0;
  Setup setup{};
  Flat square_avg{}, grad_avg{}, buf{};

  void step(int /*t*/, Flat& x, const Flat& grad) {
    if (square_avg.empty()) square_avg = grad_avg = buf = zeros_like(x);
    for (std::size_t k = 0; k < x.size(); ++k) {
      const double lr_k = lr * setup.lr_scale[k];
      for (Eigen::Index i = 0; i < x[k].size(); ++i) {
        double& p = x[k].data()[i];
        double g = grad[k].data()[i];
        if (setup.reg[k]) g += weight_decay * p + l1 * sgn(p);
        double& s = square_avg[k].data()[i];
        s = alpha * s + (1 - alpha) * g * g;
        double v_tilde = s;
        if (centered) {
          double& ga = grad_avg[k].data()[i];
          ga = alpha * ga + (1 - alpha) * g;
          v_tilde -= ga * ga;
        }
        const double denom = std::sqrt(v_tilde) + eps;
        if (momentum > 0) {
          double& b = buf[k].data()[i];
          b = momentum * b + g / denom;
          p -= lr_k * b;
        } else {
          p -= lr_k * g / denom;
        }
      }
    }
  }
  State state() const {
    State s{{"square_avg", square_avg}};
    if (centered) s.emplace_back("grad_avg", grad_avg);
    if (momentum > 0) s.emplace_back("momentum_buffer", buf);
    return s;
  }
};

// ---- the harness ----

enum class Grads { fixed, quadratic };

/// Fills the parameters' gradients for step t: the fixed table, or the tape's gradient of the
/// quadratic loss. Returns the gradient the reference sees (computed from its own values).
Flat feed_gradient(int t, Grads source, std::vector<gs::Tensor<double>>& params,
                   const Flat& ref_x) {
  if (source == Grads::fixed) {
    const Flat g = fixed_gradient(t);
    for (std::size_t k = 0; k < params.size(); ++k) params[k].mutable_grad() = g[k];
    return g;
  }
  const Flat c = quadratic_targets();
  for (auto& p : params) p.zero_grad();
  {
    gs::Tape<double> tape;
    const gs::Tensor<double> W_target(c[0], 2, false), b_target(c[1], 1, false);
    auto loss =
        gs::sum(gs::square(params[0] - W_target)) + gs::sum(gs::square(params[1] - b_target));
    tape.backward(loss);
  }
  Flat g;
  for (std::size_t k = 0; k < ref_x.size(); ++k) g.push_back(2.0 * (ref_x[k] - c[k]));
  for (std::size_t k = 0; k < params.size(); ++k)
    REQUIRE(max_abs_diff(params[k].grad(), g[k]) <= tolerance);
  return g;
}

const gs::Tensor<double>* find_state(const std::vector<gs::NamedTensor<double>>& state,
                                     const std::string& name) {
  for (const auto& s : state)
    if (s.name == name) return &s.tensor;
  return nullptr;
}

/// Runs three steps of `o` and of the reference `ref` on the same problem and compares the
/// parameters after each step and the state buffers (by name) at the end.
template <class Ref>
void check_three_steps(opt::Optimizer<double>& o, std::vector<gs::Tensor<double>>& params, Ref ref,
                       Grads source = Grads::fixed) {
  Flat x = initial_values();
  for (int t = 1; t <= 3; ++t) {
    INFO("step " << t);
    const Flat g = feed_gradient(t, source, params, x);
    REQUIRE(o.step());
    ref.step(t, x, g);
    for (std::size_t k = 0; k < params.size(); ++k) {
      INFO(names[k] << ": ours\n" << params[k].value() << "\nreference\n" << x[k]);
      CHECK(max_abs_diff(params[k].value(), x[k]) <= tolerance);
    }
  }
  // The test is only meaningful if the step moved the weights far more than the tolerance.
  CHECK(max_abs_diff(params[0].value(), initial_values()[0]) > 1e-2);
  REQUIRE(o.steps() == 3);

  const auto state = o.named_state();
  const State expected = ref.state();
  REQUIRE(state.size() == 1 + expected.size() * params.size());
  REQUIRE(state[0].name == "step");
  CHECK(state[0].tensor.item() == 3.0);
  for (const auto& [suffix, buffers] : expected) {
    for (std::size_t k = 0; k < params.size(); ++k) {
      const std::string name = names[k] + "." + suffix;
      INFO("state " << name);
      const auto* t = find_state(state, name);
      REQUIRE(t != nullptr);
      CHECK(t->shape() == params[k].shape());
      CHECK(max_abs_diff(t->value(), buffers[k]) <= tolerance);
    }
  }
}

}  // namespace

TEST_CASE("SGD matches PyTorch's published update rule over three steps", "[optim][sgd]") {
  auto params = make_params();
  SECTION("plain") {
    opt::SGD<double> o(params, {.lr = 0.1});
    check_three_steps(o, params, RefSgd{.lr = 0.1});
  }
  SECTION("momentum: the first step's buffer is the gradient itself") {
    opt::SGD<double> o(params, {.lr = 0.1, .momentum = 0.9});
    check_three_steps(o, params, RefSgd{.lr = 0.1, .momentum = 0.9});
  }
  SECTION("momentum with dampening") {
    opt::SGD<double> o(params, {.lr = 0.1, .momentum = 0.9, .dampening = 0.3});
    check_three_steps(o, params, RefSgd{.lr = 0.1, .momentum = 0.9, .dampening = 0.3});
  }
  SECTION("Nesterov") {
    opt::SGD<double> o(params, {.lr = 0.1, .momentum = 0.8, .nesterov = true});
    check_three_steps(o, params, RefSgd{.lr = 0.1, .momentum = 0.8, .nesterov = true});
  }
  SECTION("coupled weight decay (matrices only)") {
    opt::SGD<double> o(params, {.lr = 0.1, .weight_decay = 0.2});
    check_three_steps(o, params, RefSgd{.lr = 0.1, .weight_decay = 0.2});
  }
  SECTION("L1 (matrices only; sign(0) = 0)") {
    opt::SGD<double> o(params, {.lr = 0.1, .l1 = 0.05});
    check_three_steps(o, params, RefSgd{.lr = 0.1, .l1 = 0.05});
  }
  SECTION("momentum, dampening, weight decay and L1 together") {
    opt::SGD<double> o(
        params, {.lr = 0.05, .momentum = 0.7, .dampening = 0.1, .weight_decay = 0.1, .l1 = 0.02});
    check_three_steps(
        o, params,
        RefSgd{.lr = 0.05, .momentum = 0.7, .dampening = 0.1, .weight_decay = 0.1, .l1 = 0.02});
  }
  SECTION("Nesterov with weight decay on a quadratic loss (gradients from the tape)") {
    opt::SGD<double> o(params,
                       {.lr = 0.1, .momentum = 0.9, .nesterov = true, .weight_decay = 0.01});
    check_three_steps(o, params,
                      RefSgd{.lr = 0.1, .momentum = 0.9, .nesterov = true, .weight_decay = 0.01},
                      Grads::quadratic);
  }
}

TEST_CASE("Adam matches PyTorch's published update rule (with bias correction)", "[optim][adam]") {
  auto params = make_params();
  SECTION("defaults") {
    opt::Adam<double> o(params, {.lr = 0.1});
    check_three_steps(o, params, RefAdam{.lr = 0.1});
  }
  SECTION("other betas and eps") {
    opt::Adam<double> o(params, {.lr = 0.05, .beta1 = 0.8, .beta2 = 0.9, .eps = 1e-3});
    check_three_steps(o, params, RefAdam{.lr = 0.05, .beta1 = 0.8, .beta2 = 0.9, .eps = 1e-3});
  }
  SECTION("coupled weight decay: added to the gradient before the moments") {
    opt::Adam<double> o(params, {.lr = 0.1, .weight_decay = 0.5});
    check_three_steps(o, params, RefAdam{.lr = 0.1, .weight_decay = 0.5});
  }
  SECTION("L1") {
    opt::Adam<double> o(params, {.lr = 0.1, .l1 = 0.3});
    check_three_steps(o, params, RefAdam{.lr = 0.1, .l1 = 0.3});
  }
  SECTION("quadratic loss (gradients from the tape)") {
    opt::Adam<double> o(params, {.lr = 0.1});
    check_three_steps(o, params, RefAdam{.lr = 0.1}, Grads::quadratic);
  }
  SECTION("a step count of 3 means bias corrections 1 - b^3, not 1 - b^1") {
    // Guard against a reference that passes by accident: without bias correction the first
    // step would move each weight by about lr * (1 - b1) / sqrt(1 - b2), not lr.
    opt::Adam<double> o(params, {.lr = 0.1});
    params[0].mutable_grad() = fixed_gradient(1)[0];
    params[1].mutable_grad() = fixed_gradient(1)[1];
    REQUIRE(o.step());
    // First step: m^ = g, v^ = g^2, so each element moves by lr * g / (|g| + eps) = +-lr.
    const Mat moved = initial_values()[0] - params[0].to_matrix();
    for (Eigen::Index i = 0; i < moved.size(); ++i)
      CHECK(std::abs(moved.data()[i]) == Approx(0.1).epsilon(1e-6));
  }
}

TEST_CASE("AdamW matches PyTorch's published rule: p -= lr wd p, then the Adam step",
          "[optim][adamw]") {
  auto params = make_params();
  SECTION("decoupled weight decay (matrices only)") {
    opt::AdamW<double> o(params, {.lr = 0.1, .weight_decay = 0.5});
    REQUIRE(o.kind() == "AdamW");
    check_three_steps(o, params, RefAdam{.lr = 0.1, .weight_decay = 0.5, .decoupled = true});
  }
  SECTION("default options: lr 1e-3, weight_decay 0.01") {
    opt::AdamW<double> o(params);
    REQUIRE(o.options().weight_decay == 0.01);
    REQUIRE(o.lr() == 1e-3);
    // Small steps: compare with a tighter bound so the check still means something.
    RefAdam ref{.lr = 1e-3, .weight_decay = 0.01, .decoupled = true};
    Flat x = initial_values();
    for (int t = 1; t <= 3; ++t) {
      const Flat g = feed_gradient(t, Grads::fixed, params, x);
      REQUIRE(o.step());
      ref.step(t, x, g);
    }
    for (std::size_t k = 0; k < params.size(); ++k)
      CHECK(max_abs_diff(params[k].value(), x[k]) <= 1e-12);
  }
  SECTION("decay on every parameter through ParamGroup.regularize, with L1") {
    opt::AdamW<double> o(
        std::vector<opt::ParamGroup<double>>{
            {.params = params, .lr_scale = std::nullopt, .regularize = true}},
        {.lr = 0.1, .weight_decay = 0.5, .l1 = 0.1});
    check_three_steps(o, params,
                      RefAdam{.lr = 0.1,
                              .weight_decay = 0.5,
                              .l1 = 0.1,
                              .decoupled = true,
                              .setup = {.reg = {true, true}}});
  }
  SECTION("quadratic loss (gradients from the tape)") {
    opt::AdamW<double> o(params, {.lr = 0.1, .weight_decay = 0.2});
    check_three_steps(o, params, RefAdam{.lr = 0.1, .weight_decay = 0.2, .decoupled = true},
                      Grads::quadratic);
  }
}

TEST_CASE("RMSprop matches PyTorch's published update rule over three steps", "[optim][rmsprop]") {
  auto params = make_params();
  SECTION("plain") {
    opt::RMSprop<double> o(params, {.lr = 0.01});
    check_three_steps(o, params, RefRmsprop{.lr = 0.01});
  }
  SECTION("momentum") {
    opt::RMSprop<double> o(params, {.lr = 0.01, .momentum = 0.9});
    check_three_steps(o, params, RefRmsprop{.lr = 0.01, .momentum = 0.9});
  }
  SECTION("centered") {
    opt::RMSprop<double> o(params, {.lr = 0.01, .centered = true});
    check_three_steps(o, params, RefRmsprop{.lr = 0.01, .centered = true});
  }
  SECTION("centered with momentum, alpha 0.9, weight decay and L1") {
    opt::RMSprop<double> o(params, {.lr = 0.01,
                                    .alpha = 0.9,
                                    .momentum = 0.5,
                                    .centered = true,
                                    .weight_decay = 0.3,
                                    .l1 = 0.1});
    check_three_steps(o, params,
                      RefRmsprop{.lr = 0.01,
                                 .alpha = 0.9,
                                 .momentum = 0.5,
                                 .centered = true,
                                 .weight_decay = 0.3,
                                 .l1 = 0.1});
  }
  SECTION("quadratic loss (gradients from the tape)") {
    opt::RMSprop<double> o(params, {.lr = 0.01, .momentum = 0.5});
    check_three_steps(o, params, RefRmsprop{.lr = 0.01, .momentum = 0.5}, Grads::quadratic);
  }
}

TEST_CASE("Parameter groups: lr_scale and regularize follow the reference per group",
          "[optim][groups]") {
  auto params = make_params();
  // W: half the learning rate and no regularisation; b: regularised despite being a vector.
  const std::vector<opt::ParamGroup<double>> groups{
      {.params = {params[0]}, .lr_scale = 0.5, .regularize = false},
      {.params = {params[1]}, .lr_scale = std::nullopt, .regularize = true}};
  const Setup setup{.reg = {false, true}, .lr_scale = {0.5, 1.0}};
  SECTION("SGD") {
    opt::SGD<double> o(groups, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.2, .l1 = 0.1});
    check_three_steps(
        o, params,
        RefSgd{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.2, .l1 = 0.1, .setup = setup});
  }
  SECTION("Adam") {
    opt::Adam<double> o(groups, {.lr = 0.1, .weight_decay = 0.2, .l1 = 0.1});
    check_three_steps(o, params,
                      RefAdam{.lr = 0.1, .weight_decay = 0.2, .l1 = 0.1, .setup = setup});
  }
  SECTION("AdamW: the decoupled decay uses the group's learning rate") {
    const std::vector<opt::ParamGroup<double>> scaled{
        {.params = {params[0]}, .lr_scale = 0.5, .regularize = std::nullopt},
        {.params = {params[1]}, .lr_scale = 2.0, .regularize = std::nullopt}};
    opt::AdamW<double> o(scaled, {.lr = 0.1, .weight_decay = 0.5});
    check_three_steps(o, params,
                      RefAdam{.lr = 0.1,
                              .weight_decay = 0.5,
                              .decoupled = true,
                              .setup = {.reg = {true, false}, .lr_scale = {0.5, 2.0}}});
  }
  SECTION("RMSprop") {
    opt::RMSprop<double> o(groups, {.lr = 0.01, .centered = true, .weight_decay = 0.2, .l1 = 0.1});
    check_three_steps(
        o, params,
        RefRmsprop{.lr = 0.01, .centered = true, .weight_decay = 0.2, .l1 = 0.1, .setup = setup});
  }
}

TEST_CASE("Optimisers in float track the double reference", "[optim]") {
  // The update code is shared by both scalar types; float only needs to compile and agree to
  // float precision.
  const Flat init = initial_values();
  std::vector<gs::Tensor<float>> params{
      optim_test::parameter<float>(init[0].cast<float>(), 2, names[0]),
      optim_test::parameter<float>(init[1].cast<float>(), 1, names[1])};
  auto run = [&](opt::Optimizer<float>& o, auto ref) {
    Flat x = init;
    for (int t = 1; t <= 3; ++t) {
      const Flat g = fixed_gradient(t);
      for (std::size_t k = 0; k < params.size(); ++k) params[k].mutable_grad() = g[k].cast<float>();
      REQUIRE(o.step());
      ref.step(t, x, g);
    }
    for (std::size_t k = 0; k < params.size(); ++k)
      CHECK(max_abs_diff(params[k].value(), x[k]) <= 2e-5);
  };
  SECTION("SGD") {
    opt::SGD<float> o(params,
                      {.lr = 0.1f, .momentum = 0.9f, .nesterov = true, .weight_decay = 0.1f});
    run(o, RefSgd{.lr = 0.1f, .momentum = 0.9f, .nesterov = true, .weight_decay = 0.1f});
  }
  SECTION("Adam") {
    opt::Adam<float> o(params, {.lr = 0.1f});
    run(o, RefAdam{.lr = 0.1f});
  }
  SECTION("AdamW") {
    opt::AdamW<float> o(params, {.lr = 0.1f, .weight_decay = 0.5f});
    run(o, RefAdam{.lr = 0.1f, .weight_decay = 0.5f, .decoupled = true});
  }
  SECTION("RMSprop") {
    opt::RMSprop<float> o(params, {.lr = 0.01f, .momentum = 0.9f, .centered = true});
    run(o, RefRmsprop{.lr = 0.01f, .momentum = 0.9f, .centered = true});
  }
}

TEST_CASE("Optimisers reject invalid options and non-parameters", "[optim][errors]") {
  auto params = make_params();
  using opt::SGD, opt::Adam, opt::AdamW, opt::RMSprop;
  CHECK_THROWS_AS(SGD<double>(params, {.lr = -0.1}), gs::ValueError);
  CHECK_THROWS_AS(SGD<double>(params, {.lr = qnan}), gs::ValueError);
  CHECK_THROWS_AS(SGD<double>(params, {.momentum = -0.5}), gs::ValueError);
  CHECK_THROWS_AS(SGD<double>(params, {.weight_decay = -1}), gs::ValueError);
  CHECK_THROWS_AS(SGD<double>(params, {.l1 = -1}), gs::ValueError);
  CHECK_THROWS_AS(SGD<double>(params, {.nesterov = true}), gs::ValueError);  // needs momentum
  CHECK_THROWS_AS(SGD<double>(params, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                  gs::ValueError);
  CHECK_THROWS_AS(Adam<double>(params, {.beta1 = 1.0}), gs::ValueError);
  CHECK_THROWS_AS(Adam<double>(params, {.beta2 = -0.1}), gs::ValueError);
  CHECK_THROWS_AS(Adam<double>(params, {.eps = -1e-8}), gs::ValueError);
  CHECK_THROWS_AS(AdamW<double>(params, {.weight_decay = -0.01}), gs::ValueError);
  CHECK_THROWS_AS(RMSprop<double>(params, {.alpha = 1.5}), gs::ValueError);
  CHECK_THROWS_AS(RMSprop<double>(params, {.momentum = -0.1}), gs::ValueError);

  SGD<double> o(params);
  CHECK_THROWS_AS(o.set_lr(-1), gs::ValueError);
  CHECK_THROWS_AS(o.set_lr(qnan), gs::ValueError);
  CHECK(o.lr() == 0.01);

  // Data tensors and tape nodes are not parameters.
  auto data = gs::Tensor<double>::zeros(2, 2);
  CHECK_THROWS_AS(SGD<double>({data}), gs::UsageError);
  gs::Tape<double> tape;
  auto node = tape.variable(Mat::Ones(2, 2));
  CHECK_THROWS_AS(SGD<double>({node}), gs::UsageError);
}

TEST_CASE("step() with a non-finite gradient follows the non-finite policy", "[optim][nonfinite]") {
  const double bad = GENERATE(Catch::Generators::values<double>({qnan, inf, -inf}));
  INFO("bad value " << bad);
  auto params = make_params();
  const Flat g = fixed_gradient(1);
  auto feed_bad = [&] {
    params[0].mutable_grad() = g[0];
    params[1].mutable_grad() = g[1];
    params[1].mutable_grad()(0, 1) = bad;  // the bias holds the bad value
  };
  auto feed_good = [&] {
    params[0].mutable_grad() = g[0];
    params[1].mutable_grad() = g[1];
  };

  // One optimiser per kind, each with state that a bad step could corrupt.
  auto make = [&](int kind, opt::NonFinite policy) -> std::unique_ptr<opt::Optimizer<double>> {
    switch (kind) {
      case 0:
        return std::make_unique<opt::SGD<double>>(
            params, opt::SGDOptions<double>{.lr = 0.1, .momentum = 0.9, .non_finite = policy});
      case 1:
        return std::make_unique<opt::Adam<double>>(
            params, opt::AdamOptions<double>{.lr = 0.1, .non_finite = policy});
      case 2:
        return std::make_unique<opt::AdamW<double>>(
            params, opt::AdamOptions<double>{.lr = 0.1, .weight_decay = 0.1, .non_finite = policy});
      default:
        return std::make_unique<opt::RMSprop<double>>(
            params, opt::RMSpropOptions<double>{
                        .lr = 0.01, .momentum = 0.9, .centered = true, .non_finite = policy});
    }
  };
  // The reference's first step, for checking that a skipped step left no trace.
  auto reference_first_step = [&](int kind) {
    Flat x = initial_values();
    switch (kind) {
      case 0:
        RefSgd{.lr = 0.1, .momentum = 0.9}.step(1, x, g);
        break;
      case 1:
        RefAdam{.lr = 0.1}.step(1, x, g);
        break;
      case 2:
        RefAdam{.lr = 0.1, .weight_decay = 0.1, .decoupled = true}.step(1, x, g);
        break;
      default:
        RefRmsprop{.lr = 0.01, .momentum = 0.9, .centered = true}.step(1, x, g);
        break;
    }
    return x;
  };
  auto all_state_zero = [](opt::Optimizer<double>& o) {
    for (const auto& s : o.named_state())
      if (s.name != "step" && !s.tensor.value().isZero(0)) return false;
    return true;
  };

  const int kind = GENERATE(0, 1, 2, 3);
  const Flat before = initial_values();

  SECTION("error (the default) throws NumericalError naming the parameter; nothing changes") {
    auto o = make(kind, opt::NonFinite::error);
    INFO(o->kind());
    REQUIRE(o->non_finite_policy() == opt::NonFinite::error);
    feed_bad();
    CHECK_THROWS_AS(o->step(), gs::NumericalError);
    CHECK_THROWS_WITH(o->step(), Catch::Contains("net.0.bias") && Catch::Contains("[3]"));
    CHECK(optim_test::identical(params[0].value(), before[0]));
    CHECK(optim_test::identical(params[1].value(), before[1]));
    CHECK(o->steps() == 0);
    CHECK(all_state_zero(*o));
  }
  SECTION("skip leaves every parameter and buffer unchanged, returns false and counts") {
    auto o = make(kind, opt::NonFinite::skip);
    INFO(o->kind());
    feed_bad();
    CHECK_FALSE(o->step());
    CHECK_FALSE(o->step());
    CHECK(o->skipped_steps() == 2);
    CHECK(o->steps() == 0);
    CHECK(o->non_finite_steps() == 0);
    CHECK(optim_test::identical(params[0].value(), before[0]));
    CHECK(optim_test::identical(params[1].value(), before[1]));
    CHECK(all_state_zero(*o));
    // The next good step is a first step: SGD's buffer starts at g, Adam's bias correction
    // uses t = 1.
    feed_good();
    CHECK(o->step());
    CHECK(o->steps() == 1);
    const Flat x = reference_first_step(kind);
    CHECK(max_abs_diff(params[0].value(), x[0]) <= tolerance);
    CHECK(max_abs_diff(params[1].value(), x[1]) <= tolerance);
  }
  SECTION("proceed applies the step, returns false and counts non_finite_steps()") {
    auto o = make(kind, opt::NonFinite::proceed);
    INFO(o->kind());
    feed_bad();
    CHECK_FALSE(o->step());
    CHECK(o->non_finite_steps() == 1);
    CHECK(o->steps() == 1);
    CHECK(o->skipped_steps() == 0);
    // The finite parameter got its normal update; the bad element went non-finite.
    const Flat x = reference_first_step(kind);
    CHECK(max_abs_diff(params[0].value(), x[0]) <= tolerance);
    CHECK_FALSE(std::isfinite(params[1].value()(0, 1)));
    CHECK(params[1].value()(0, 0) == Approx(x[1](0, 0)).margin(tolerance));
    // A later finite step reports true again (the parameter stays broken: that is the point
    // of the policy's name).
    feed_good();
    CHECK(o->step());
    CHECK(o->non_finite_steps() == 1);
  }
  SECTION("the policy can be changed after construction") {
    auto o = make(kind, opt::NonFinite::error);
    o->set_non_finite_policy(opt::NonFinite::skip);
    feed_bad();
    CHECK_FALSE(o->step());
    CHECK(o->skipped_steps() == 1);
  }
}

TEST_CASE("step() names an unnamed parameter '(unnamed)' in the error", "[optim][nonfinite]") {
  auto p = gs::Tensor<double>::parameter(Mat::Zero(2, 2));
  opt::SGD<double> o({p});
  p.mutable_grad()(1, 1) = qnan;
  CHECK_THROWS_WITH(o.step(), Catch::Contains("(unnamed)") && Catch::Contains("SGD"));
}

TEST_CASE("named_state(): names and shapes per optimiser", "[optim][state]") {
  auto params = make_params();
  auto names_of = [&params](opt::Optimizer<double>& o) {
    std::vector<std::string> out;
    for (const auto& s : o.named_state()) {
      out.push_back(s.name);
      if (s.name == "step") {
        CHECK(s.tensor.shape() == gs::Shape::scalar());
      } else {
        // Every buffer is shaped like its parameter.
        const auto& p = s.name.rfind(names[0], 0) == 0 ? params[0] : params[1];
        CHECK(s.tensor.shape() == p.shape());
        CHECK(s.tensor.is_persistent());
      }
    }
    return out;
  };
  using V = std::vector<std::string>;
  SECTION("SGD without momentum keeps only the step") {
    opt::SGD<double> o(params);
    CHECK(names_of(o) == V{"step"});
  }
  SECTION("SGD with momentum") {
    opt::SGD<double> o(params, {.momentum = 0.9});
    CHECK(names_of(o) == V{"step", "net.0.weight.momentum_buffer", "net.0.bias.momentum_buffer"});
  }
  SECTION("Adam and AdamW") {
    opt::Adam<double> a(params);
    opt::AdamW<double> w(params);
    const V expected{"step", "net.0.weight.exp_avg", "net.0.weight.exp_avg_sq",
                     "net.0.bias.exp_avg", "net.0.bias.exp_avg_sq"};
    CHECK(names_of(a) == expected);
    CHECK(names_of(w) == expected);
  }
  SECTION("RMSprop: square_avg, plus grad_avg when centered, plus momentum_buffer") {
    opt::RMSprop<double> plain(params);
    CHECK(names_of(plain) == V{"step", "net.0.weight.square_avg", "net.0.bias.square_avg"});
    opt::RMSprop<double> full(params, {.momentum = 0.9, .centered = true});
    CHECK(names_of(full) == V{"step", "net.0.weight.square_avg", "net.0.weight.grad_avg",
                              "net.0.weight.momentum_buffer", "net.0.bias.square_avg",
                              "net.0.bias.grad_avg", "net.0.bias.momentum_buffer"});
  }
  SECTION("parameters of a module carry their module path") {
    gs::Rng rng(3);
    gs::nn::Sequential<double> net;
    net.add<gs::nn::Dense>(2, 3, gs::init::xavier_uniform, true, &rng);
    net.add<gs::nn::Tanh>();
    net.add<gs::nn::Dense>(3, 1, gs::init::xavier_uniform, true, &rng);
    opt::Adam<double> o(net.parameters());
    V got;
    for (const auto& s : o.named_state()) got.push_back(s.name);
    CHECK(got == V{"step", "0.weight.exp_avg", "0.weight.exp_avg_sq", "0.bias.exp_avg",
                   "0.bias.exp_avg_sq", "2.weight.exp_avg", "2.weight.exp_avg_sq", "2.bias.exp_avg",
                   "2.bias.exp_avg_sq"});
  }
}

TEST_CASE("named_state() names are unique even for unnamed parameters", "[optim][state]") {
  // A checkpoint stores state by name: two parameters without names must not both save
  // "(unnamed).exp_avg", or loading would put one buffer into both.
  auto a = gs::Tensor<double>::parameter(Mat::Zero(1, 2), 1);
  auto b = gs::Tensor<double>::parameter(Mat::Zero(2, 2));
  opt::Adam<double> o({a, b});
  std::set<std::string> seen;
  for (const auto& s : o.named_state()) {
    INFO("duplicate state name " << s.name);
    CHECK(seen.insert(s.name).second);
  }
}

TEST_CASE("state_loaded() restores the step count and the run continues identically",
          "[optim][state]") {
  // Optimiser A runs 3 steps; B starts from A's parameter values, loads A's state through
  // named_state() and state_loaded(), and both take step 4 with the same gradient.
  auto run = [](auto make) {
    auto pa = make_params();
    auto pb = make_params();
    auto a = make(pa);
    for (int t = 1; t <= 3; ++t) {
      const Flat g = fixed_gradient(t);
      for (std::size_t k = 0; k < pa.size(); ++k) pa[k].mutable_grad() = g[k];
      REQUIRE(a->step());
    }
    for (std::size_t k = 0; k < pa.size(); ++k) pb[k].mutable_value() = pa[k].value();
    auto b = make(pb);
    const auto from = a->named_state();
    auto to = b->named_state();
    REQUIRE(from.size() == to.size());
    for (std::size_t i = 0; i < from.size(); ++i) {
      REQUIRE(from[i].name == to[i].name);
      to[i].tensor.mutable_value() = from[i].tensor.value();
    }
    b->state_loaded();
    CHECK(b->steps() == 3);
    const Flat g = fixed_gradient(2);
    for (std::size_t k = 0; k < pa.size(); ++k) {
      pa[k].mutable_grad() = g[k];
      pb[k].mutable_grad() = g[k];
    }
    REQUIRE(a->step());
    REQUIRE(b->step());
    CHECK(b->steps() == 4);
    for (std::size_t k = 0; k < pa.size(); ++k)
      CHECK(optim_test::identical(pa[k].value(), pb[k].value()));
  };
  SECTION("SGD with momentum (a fresh optimiser would reset the buffer to g)") {
    run([](auto& p) {
      return std::make_unique<opt::SGD<double>>(
          p, opt::SGDOptions<double>{.lr = 0.1, .momentum = 0.9});
    });
  }
  SECTION("Adam (the bias correction continues at t = 4)") {
    run([](auto& p) {
      return std::make_unique<opt::Adam<double>>(p, opt::AdamOptions<double>{.lr = 0.1});
    });
  }
  SECTION("AdamW") {
    run([](auto& p) {
      return std::make_unique<opt::AdamW<double>>(
          p, opt::AdamOptions<double>{.lr = 0.1, .weight_decay = 0.1});
    });
  }
  SECTION("RMSprop centered with momentum") {
    run([](auto& p) {
      return std::make_unique<opt::RMSprop<double>>(
          p, opt::RMSpropOptions<double>{.lr = 0.01, .momentum = 0.9, .centered = true});
    });
  }
}

TEST_CASE("zero_grad() and parameters() cover every group", "[optim]") {
  auto params = make_params();
  opt::SGD<double> o(
      std::vector<opt::ParamGroup<double>>{
          {.params = {params[0]}, .lr_scale = std::nullopt, .regularize = std::nullopt},
          {.params = {params[1]}, .lr_scale = std::nullopt, .regularize = std::nullopt}},
      {});
  REQUIRE(o.parameters().size() == 2);
  CHECK(o.parameters()[0].same_as(params[0]));
  CHECK(o.parameters()[1].same_as(params[1]));
  CHECK(o.groups().size() == 2);
  params[0].mutable_grad().setOnes();
  params[1].mutable_grad().setOnes();
  o.zero_grad();
  CHECK(params[0].grad().isZero(0));
  CHECK(params[1].grad().isZero(0));
  CHECK(o.kind() == "SGD");
}

TEST_CASE("Centered RMSprop stays finite when the gradient is constant", "[optim][rmsprop]") {
  // With a constant gradient g, square_avg and grad_avg^2 both converge to g^2; their computed
  // difference (the variance estimate) then rounds to a tiny negative number, and its square
  // root is NaN. The published rule never takes the root of a negative variance in exact
  // arithmetic (square_avg >= grad_avg^2 by Jensen's inequality), so the update must not either.
  auto w = optim_test::parameter(Mat::Zero(1, 4), 1, "w");
  opt::RMSprop<double> o({w}, {.lr = 1e-3, .centered = true});
  int first_nan = 0;
  for (int t = 1; t <= 4000 && first_nan == 0; ++t) {
    w.mutable_grad().setConstant(0.1);
    o.step();
    if (!w.value().allFinite()) first_nan = t;
  }
  INFO("first non-finite parameter at step " << first_nan);
  CHECK(first_nan == 0);
}

TEST_CASE("Optimisers reject non-finite and meaningless options, naming the field",
          "[optim][errors]") {
  auto params = make_params();
  using Catch::Contains;
  using opt::SGD, opt::Adam, opt::AdamW, opt::RMSprop;
  // Each bad value with the field its message must name.
  CHECK_THROWS_WITH(SGD<double>(params, {.lr = inf}),
                    Contains("SGD: learning rate") && Contains("inf"));
  CHECK_THROWS_WITH(Adam<double>(params, {.lr = -inf}), Contains("Adam: learning rate"));
  CHECK_THROWS_WITH(RMSprop<double>(params, {.lr = qnan}), Contains("RMSprop: learning rate"));
  for (double bad : {-0.1, 1.0, 1.5, inf, qnan}) {
    INFO("momentum " << bad);
    CHECK_THROWS_WITH(SGD<double>(params, {.momentum = bad}), Contains("SGD: momentum"));
    CHECK_THROWS_WITH(RMSprop<double>(params, {.momentum = bad}), Contains("RMSprop: momentum"));
  }
  for (double bad : {-0.1, 1.5, inf, qnan}) {
    INFO("dampening " << bad);
    CHECK_THROWS_WITH(SGD<double>(params, {.momentum = 0.9, .dampening = bad}),
                      Contains("SGD: dampening"));
  }
  for (double bad : {-1.0, inf, qnan}) {
    INFO("regularisation " << bad);
    CHECK_THROWS_WITH(SGD<double>(params, {.weight_decay = bad}), Contains("SGD: weight_decay"));
    CHECK_THROWS_WITH(SGD<double>(params, {.l1 = bad}), Contains("SGD: l1"));
    CHECK_THROWS_WITH(Adam<double>(params, {.weight_decay = bad}), Contains("Adam: weight_decay"));
    CHECK_THROWS_WITH(AdamW<double>(params, {.weight_decay = bad}),
                      Contains("AdamW: weight_decay"));
    CHECK_THROWS_WITH(Adam<double>(params, {.l1 = bad}), Contains("Adam: l1"));
    CHECK_THROWS_WITH(RMSprop<double>(params, {.weight_decay = bad}),
                      Contains("RMSprop: weight_decay"));
    CHECK_THROWS_WITH(RMSprop<double>(params, {.l1 = bad}), Contains("RMSprop: l1"));
  }
  for (double bad : {-0.1, 1.0, inf, qnan}) {
    INFO("beta / alpha " << bad);
    CHECK_THROWS_WITH(Adam<double>(params, {.beta1 = bad}),
                      Contains("Adam: beta1 must be finite and in [0, 1)"));
    CHECK_THROWS_WITH(AdamW<double>(params, {.beta2 = bad}), Contains("AdamW: beta2"));
    CHECK_THROWS_WITH(RMSprop<double>(params, {.alpha = bad}), Contains("RMSprop: alpha"));
  }
  for (double bad : {0.0, -1e-8, inf, qnan}) {
    INFO("eps " << bad);
    CHECK_THROWS_WITH(Adam<double>(params, {.eps = bad}),
                      Contains("Adam: eps must be finite and > 0"));
    CHECK_THROWS_WITH(RMSprop<double>(params, {.eps = bad}), Contains("RMSprop: eps"));
  }
  // The values at the edges of the domains are accepted.
  CHECK_NOTHROW(SGD<double>(params, {.lr = 0, .momentum = 0.999, .dampening = 1}));
  CHECK_NOTHROW(Adam<double>(params, {.beta1 = 0, .beta2 = 0, .eps = 1e-300}));
  CHECK_NOTHROW(RMSprop<double>(params, {.alpha = 0}));
  // Group settings and schedules' rates are checked too.
  for (double bad : {-1.0, inf, qnan}) {
    INFO("lr_scale " << bad);
    CHECK_THROWS_WITH(
        SGD<double>(std::vector<opt::ParamGroup<double>>{{.params = params, .lr_scale = bad}}, {}),
        Contains("group 0: lr_scale"));
  }
  SGD<double> o(params);
  CHECK_THROWS_WITH(o.set_lr(inf), Contains("learning rate must be finite"));
  CHECK(o.lr() == 0.01);
}

TEST_CASE("A parameter given twice, or no parameter at all, is an error", "[optim][errors]") {
  // PyTorch raises for both: a duplicate would be updated twice per step, and an optimiser of
  // nothing would count steps while training nothing.
  auto params = make_params();
  using opt::SGD, opt::Adam;
  const auto copy_of_bias = params[1];  // the same storage under another handle
  CHECK_THROWS_WITH(SGD<double>({params[0], params[1], copy_of_bias}),
                    Catch::Contains("parameter 1 ('net.0.bias') is given again as parameter 2"));
  CHECK_THROWS_AS(Adam<double>({params[0], params[0]}), gs::ValueError);
  // Across groups too.
  CHECK_THROWS_WITH(
      Adam<double>(
          std::vector<opt::ParamGroup<double>>{{.params = params}, {.params = {params[0]}}}, {}),
      Catch::Contains("'net.0.weight'") && Catch::Contains("given again"));
  // Two distinct parameters may share a name.
  auto a = optim_test::parameter(Mat::Zero(1, 2), 1, "w");
  auto b = optim_test::parameter(Mat::Zero(1, 2), 1, "w");
  CHECK_NOTHROW(SGD<double>({a, b}));
  // Nothing to optimise.
  CHECK_THROWS_WITH(SGD<double>(std::vector<gs::Tensor<double>>{}),
                    Catch::Contains("no parameters"));
  CHECK_THROWS_AS(Adam<double>(std::vector<opt::ParamGroup<double>>{{}, {}}, {}), gs::ValueError);
  gs::nn::Sequential<double> no_params;
  no_params.add<gs::nn::ReLU>();
  CHECK_THROWS_AS(SGD<double>(no_params.parameters()), gs::ValueError);
}

namespace {
/// A float parameter of n elements, all `value`, with gradient `grad`.
gs::Tensor<float> float_param(Eigen::Index n, float value, float grad, const std::string& name) {
  auto p = optim_test::parameter<float>(gs::Matrix<float>::Constant(1, n, value), 1, name);
  p.mutable_grad().setConstant(grad);
  return p;
}
/// Every value and state buffer of an optimiser, to compare bit for bit.
std::vector<gs::Matrix<float>> snapshot(opt::Optimizer<float>& o) {
  std::vector<gs::Matrix<float>> out;
  for (const auto& p : o.parameters()) out.emplace_back(p.value());
  for (const auto& s : o.named_state()) out.emplace_back(s.tensor.value());
  return out;
}
bool same_bits(const std::vector<gs::Matrix<float>>& a, const std::vector<gs::Matrix<float>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!optim_test::identical(a[i], b[i])) return false;
  return true;
}
}  // namespace

TEST_CASE("step() refuses an update that would make finite values non-finite",
          "[optim][nonfinite]") {
  // Finite gradients, but the update overflows float: an enormous learning rate, a squared
  // gradient beyond 3.4e38, a momentum buffer or decoupled decay that grows past it. Before,
  // the step wrote Inf or NaN into the weights (or the state) and reported success.
  using Params = std::vector<gs::Tensor<float>>;
  struct Case {
    const char* what;
    std::function<std::unique_ptr<opt::Optimizer<float>>(Params)> make;
    float others_value, others_grad;  // every element but the last of parameter big.1
    float grad;                       // the last element's gradient (its value is 1)
    int good_steps;                   // steps that stay finite before the overflowing one
    const char* named;                // what the message names
  };
  const std::vector<Case> cases = {
      {"SGD, lr 1e30",
       [](Params p) {
         return std::make_unique<opt::SGD<float>>(p, opt::SGDOptions<float>{.lr = 1e30f});
       },
       0.5f, 1e-3f, 1e10f, 0, "parameter 'big.1'"},
      {"SGD momentum, a buffer past 3.4e38",
       [](Params p) {
         return std::make_unique<opt::SGD<float>>(
             p, opt::SGDOptions<float>{.lr = 1e-30f, .momentum = 0.9f});
       },
       0.5f, 1e-3f, 3e38f, 1, "the momentum_buffer of parameter 'big.1'"},
      {"Adam, a squared gradient past 3.4e38",
       [](Params p) { return std::make_unique<opt::Adam<float>>(p, opt::AdamOptions<float>{}); },
       0.5f, 1e-3f, 3e19f, 0, "the exp_avg_sq of parameter 'big.1'"},
      {"AdamW, decoupled decay 1e30 (1 -> -1e30 -> 1e60)",
       [](Params p) {
         return std::make_unique<opt::AdamW<float>>(
             std::vector<opt::ParamGroup<float>>{{.params = std::move(p), .regularize = true}},
             opt::AdamOptions<float>{.lr = 1, .weight_decay = 1e30f});
       },
       0.0f, 0.0f, 1, 1, "parameter 'big.1'"},
      {"RMSprop, a squared gradient past 3.4e38",
       [](Params p) {
         return std::make_unique<opt::RMSprop<float>>(p, opt::RMSpropOptions<float>{});
       },
       0.5f, 1e-3f, 3e19f, 0, "the square_avg of parameter 'big.1'"},
  };
  const auto policy =
      GENERATE(opt::NonFinite::error, opt::NonFinite::skip, opt::NonFinite::proceed);
  for (const auto& c : cases) {
    INFO(c.what << ", policy " << static_cast<int>(policy));
    // Parameter big.0 is harmless and spans several chunks; big.1 overflows in its last chunk
    // only, after big.0 and its own first chunks were computed: a refused step must leave those
    // untouched too.
    const Eigen::Index n = 2500;
    auto p0 = float_param(n, c.others_value, c.others_grad, "big.0");
    auto p1 = float_param(n, c.others_value, c.others_grad, "big.1");
    p1.mutable_grad()(0, n - 1) = c.grad;
    p1.mutable_value()(0, n - 1) = 1;
    auto o = c.make({p0, p1});
    o->set_non_finite_policy(policy);
    for (int s = 0; s < c.good_steps; ++s) REQUIRE(o->step());
    const auto before = snapshot(*o);
    for (const auto& m : before) REQUIRE(m.allFinite());
    const auto steps = o->steps();
    switch (policy) {
      case opt::NonFinite::error:
        try {
          o->step();
          FAIL("no NumericalError");
        } catch (const gs::NumericalError& e) {
          CHECK_THAT(e.what(), Catch::Contains(std::string("would make ") + c.named) &&
                                   Catch::Contains("[2500]") &&
                                   Catch::Contains("the step was not applied"));
          CHECK(e.op() == o->kind() + ".step");
          CHECK(e.label() == "big.1");
        }
        CHECK(same_bits(snapshot(*o), before));
        CHECK(o->steps() == steps);
        break;
      case opt::NonFinite::skip:
        CHECK_FALSE(o->step());
        CHECK(same_bits(snapshot(*o), before));
        CHECK(o->steps() == steps);
        CHECK(o->skipped_steps() == 1);
        break;
      case opt::NonFinite::proceed: {
        CHECK_FALSE(o->step());
        CHECK(o->steps() == steps + 1);
        CHECK(o->non_finite_steps() == 1);
        bool any_non_finite = false;
        for (const auto& m : snapshot(*o)) any_non_finite |= !m.allFinite();
        CHECK(any_non_finite);
        break;
      }
    }
  }
}

TEST_CASE("step() does not blame an update for values that were already non-finite",
          "[optim][nonfinite]") {
  // A weight set to NaN by hand (or by an earlier NonFinite::proceed step) stays NaN: that is
  // not this step's doing, so the step is applied and reports success.
  auto p = float_param(3, 0.5f, 0.1f, "w");
  p.mutable_value()(0, 1) = std::numeric_limits<float>::quiet_NaN();
  opt::Adam<float> o({p}, {.lr = 0.1f});
  CHECK(o.step());
  CHECK(o.steps() == 1);
  CHECK(p.value()(0, 0) < 0.5f);
  CHECK(std::isnan(p.value()(0, 1)));
}

TEST_CASE("Updates of parameters larger than a chunk match the reference", "[optim]") {
  // The updates run 1024 elements at a time; a parameter of 2 x 1500 crosses chunk boundaries
  // mid-row. Each element gets the scalar reference's update (same rule as the 3-step tests).
  const Eigen::Index rows = 2, cols = 1500;
  Mat w0(rows, cols), g(rows, cols);
  gs::Rng rng(5);
  for (Eigen::Index i = 0; i < w0.size(); ++i) {
    w0.data()[i] = rng.uniform(-1, 1);
    g.data()[i] = rng.uniform(-2, 2);
  }
  auto check = [&](auto make, auto ref) {
    auto w = optim_test::parameter(w0, 2, "w");
    auto o = make(w);
    Flat x{w0};
    for (int t = 1; t <= 3; ++t) {
      w.mutable_grad() = g * static_cast<double>(t);
      REQUIRE(o->step());
      ref.setup = Setup{{true}, {1.0}};
      ref.step(t, x, {Mat(g * static_cast<double>(t))});
    }
    CHECK(max_abs_diff(w.value(), x[0]) <= tolerance);
  };
  check(
      [](auto& w) {
        return std::make_unique<opt::SGD<double>>(
            std::vector<gs::Tensor<double>>{w},
            opt::SGDOptions<double>{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1, .l1 = 0.01});
      },
      RefSgd{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1, .l1 = 0.01});
  check(
      [](auto& w) {
        return std::make_unique<opt::AdamW<double>>(
            std::vector<gs::Tensor<double>>{w},
            opt::AdamOptions<double>{.lr = 0.1, .weight_decay = 0.1});
      },
      RefAdam{.lr = 0.1, .weight_decay = 0.1, .decoupled = true});
  check(
      [](auto& w) {
        return std::make_unique<opt::RMSprop<double>>(
            std::vector<gs::Tensor<double>>{w},
            opt::RMSpropOptions<double>{
                .lr = 0.01, .momentum = 0.9, .centered = true, .weight_decay = 0.1});
      },
      RefRmsprop{.lr = 0.01, .momentum = 0.9, .centered = true, .weight_decay = 0.1});
}

TEST_CASE("step() checks against the state and weights as they are now", "[optim][nonfinite]") {
  // Usually step() rules an overflow out from magnitudes: the largest |gradient| and |weight|,
  // read each step, and bounds on the state carried from step to step. State written through
  // named_state() (a checkpoint load) and weights written by hand must be taken into account.
  SECTION("state loaded between steps") {
    auto p = float_param(10, 0.5f, 1e-3f, "w");
    opt::Adam<float> o({p}, {.lr = 10});
    REQUIRE(o.step());
    for (auto& s : o.named_state())
      if (s.name == "w.exp_avg") s.tensor.mutable_value()(0, 3) = 3e38f;  // |m / eps| overflows
    o.state_loaded();
    const auto before = snapshot(o);
    CHECK_THROWS_WITH(o.step(), Catch::Contains("would make parameter 'w'"));
    CHECK(same_bits(snapshot(o), before));
  }
  SECTION("a learning rate of 0 does not hide an overflowing decay term") {
    // g + wd p = 1e40 is Inf in float, and 0 * Inf is NaN.
    auto p = optim_test::parameter<float>(gs::Matrix<float>::Constant(2, 2, 1e10f), 2, "w");
    p.mutable_grad().setConstant(1);
    opt::SGD<float> o({p}, {.lr = 0, .weight_decay = 1e30f});
    CHECK_THROWS_WITH(o.step(), Catch::Contains("would make parameter 'w'"));
    CHECK(p.value()(0, 0) == 1e10f);
  }
  SECTION("a weight set by hand between steps") {
    auto p = float_param(10, 0.5f, -1e38f, "w");
    opt::SGD<float> o({p}, {.lr = 1});
    p.mutable_grad().setConstant(-1e-3f);
    REQUIRE(o.step());
    p.mutable_value()(0, 7) = 3e38f;
    p.mutable_grad()(0, 7) = -1e38f;  // 3e38 + 1e38 is beyond float
    CHECK_THROWS_WITH(o.step(), Catch::Contains("step 2 would make parameter 'w'"));
    CHECK(p.value()(0, 7) == 3e38f);
  }
}
