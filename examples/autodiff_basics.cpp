// A tour of gradscope's autodiff core: the tape, variables, ops, backward, parameters and their
// accumulating gradients, hooks, retain_grad, NoGrad, anomaly detection and gradient checking.
// Every section prints what it computed; docs/autodiff.md explains the model behind it.
#include <gradscope/gradscope.hpp>

#include <Eigen/Core>

#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace gs = gradscope;

namespace {

// Prints a matrix on one line: [[1, 2], [3, 4]].
template <class M>
std::string str(const M& m) {
  static const Eigen::IOFormat fmt(4, Eigen::DontAlignCols, ", ", ", ", "[", "]", "[", "]");
  std::ostringstream os;
  os << m.format(fmt);
  return os.str();
}

void section(const char* title) { std::cout << "\n== " << title << " ==\n"; }

}  // namespace

int main() {
  std::cout << std::boolalpha;
  // ---- 1. A tape, a variable, ops and backward ----
  section("tape, variable, backward");
  {
    gs::Tape<double> tape;  // the current tape of this thread until it is destroyed
    const auto x = tape.variable(gs::Matrix<double>{{1, 2}, {3, 4}});
    const auto y = gs::sum(gs::sigmoid(gs::matmul(x, x)));  // a scalar: shape []
    tape.backward(y);
    std::cout << "y = sum(sigmoid(x x)) = " << y.item() << "  shape " << y.shape() << '\n';
    std::cout << "dy/dx = " << str(x.grad()) << '\n';
    std::cout << "the tape holds " << tape.size() << " nodes:\n" << tape.listing();
  }

  // ---- 2. Shapes and broadcasting ----
  section("shapes and broadcasting");
  {
    gs::Tape<double> tape;
    const auto a = tape.variable(gs::Matrix<double>{{1, 2, 3}, {4, 5, 6}});  // [2, 3]
    const auto row = gs::Tensor<double>::vector({10, 20, 30});               // [3], a constant
    const auto b = a + row;                                                  // [2, 3]
    const auto per_row = gs::sum(b, gs::Reduce::per_row);                    // [2, 1]
    std::cout << "a " << a.shape() << " + row " << row.shape() << " -> " << b.shape() << ": "
              << str(b.value()) << '\n';
    std::cout << "sum per row -> " << per_row.shape() << ": " << str(per_row.value()) << '\n';
    try {
      gs::add(a, gs::Tensor<double>::vector({1, 2}));  // [2, 3] + [2] does not broadcast
    } catch (const gs::ShapeError& e) {
      std::cout << "caught: " << e.what() << '\n';
    }
  }

  // ---- 3. A parameter accumulates over two backward calls until zero_grad ----
  section("parameter, accumulation, zero_grad");
  {
    auto w = gs::Tensor<double>::parameter(gs::Matrix<double>{{0.5, -1.0}}, /*rank=*/1);
    const auto x = gs::Tensor<double>::vector({2.0, 3.0});  // data: a persistent constant
    gs::Tape<double> tape;                                  // long-lived, reset every step
    for (int step = 1; step <= 2; ++step) {
      tape.reset();                                  // forget the ops, keep the memory
      const auto loss = gs::sum(gs::square(w * x));  // loss = sum((w x)^2), dloss/dw = 2 w x^2
      tape.backward(loss);
      std::cout << "after backward " << step << ": w.grad = " << str(w.grad()) << '\n';
    }
    w.zero_grad();
    std::cout << "after zero_grad:    w.grad = " << str(w.grad()) << '\n';
  }

  // ---- 4. Hooks, retain_grad and the use of a tensor after reset ----
  section("hooks and retain_grad");
  {
    auto w = gs::Tensor<double>::parameter(gs::Matrix<double>{{1.0, -2.0}, {0.5, 0.25}});
    auto on_w = w.register_hook([](const gs::ConstMatrixMap<double>& g) {
      std::cout << "  hook on w: this backward brings |g| = " << g.norm() << '\n';
    });
    gs::Tape<double> tape;
    const auto x = tape.constant(gs::Matrix<double>{{1, 1}, {2, -1}});
    auto hidden = gs::tanh(gs::matmul(x, w));
    hidden.register_hook([](const gs::ConstMatrixMap<double>& g) {
      std::cout << "  hook on hidden: dloss/dhidden = " << str(g) << '\n';
    });
    hidden.retain_grad();
    const auto loss = gs::mean(gs::square(hidden));
    tape.backward(loss);
    std::cout << "retained hidden.grad = " << str(hidden.grad()) << '\n';
    try {
      (void)gs::square(hidden).grad();  // an intermediate without retain_grad
    } catch (const gs::UsageError& e) {
      std::cout << "caught: " << e.what() << '\n';
    }
    on_w.remove();  // w's hook stays silent from now on
    tape.reset();
    try {
      (void)hidden.value();  // recorded before the reset
    } catch (const gs::UsageError& e) {
      std::cout << "caught: " << e.what() << '\n';
    }
  }

  // ---- 5. NoGrad: evaluate without recording ----
  section("NoGrad");
  {
    auto w = gs::Tensor<double>::parameter(gs::Matrix<double>{{1.0, 2.0}});
    gs::Tape<double> tape;
    const auto recorded = w * 3.0;
    std::cout << "w * 3 with a tape:    recorded on tape " << (recorded.tape() == &tape)
              << ", requires_grad " << recorded.requires_grad() << '\n';
    gs::NoGrad no_grad;
    const auto plain = w * 3.0;
    std::cout << "w * 3 inside NoGrad:  persistent " << plain.is_persistent() << ", requires_grad "
              << plain.requires_grad() << ", value " << str(plain.value()) << ", tape size still "
              << tape.size() << '\n';
  }

  // ---- 6. Anomaly mode: the first non-finite value throws, naming the op and the label ----
  section("DetectAnomaly");
  {
    gs::Tape<double> tape;
    const auto x = tape.variable(gs::Matrix<double>{{0.5, 2.0}});
    try {
      gs::DetectAnomaly anomaly;
      gs::LabelScope label("demo.log_layer");
      const auto y = gs::log(x - 1.0);  // log(-0.5) is NaN
      tape.backward(gs::sum(y));
    } catch (const gs::NumericalError& e) {
      std::cout << "caught: " << e.what() << '\n';
      std::cout << "  op '" << e.op() << "', phase '" << e.phase() << "', label '" << e.label()
                << "'\n";
    }
    tape.reset();
    const auto z = tape.variable(gs::Matrix<double>{{0.0, 4.0}});
    try {
      gs::DetectAnomaly anomaly;
      tape.backward(gs::sum(gs::sqrt(z)));  // sqrt(0) = 0 is fine, its derivative is not
    } catch (const gs::NumericalError& e) {
      std::cout << "caught: " << e.what() << '\n';
    }
  }

  // ---- 7. Gradient checking against central finite differences ----
  section("check_gradients");
  {
    const gs::Matrix<double> a{{0.3, -0.2, 0.5}, {0.1, 0.4, -0.6}};
    const gs::Matrix<double> b{{1.0, 0.5}, {-0.5, 0.2}, {0.3, -1.0}};
    const auto report = gs::check_gradients(
        [](const std::vector<gs::Tensor<double>>& in) {
          return gs::tanh(gs::matmul(in[0], in[1]));  // [2, 2]: projected on random weights
        },
        {a, b});
    std::cout << report.str() << '\n';
  }
  return 0;
}
