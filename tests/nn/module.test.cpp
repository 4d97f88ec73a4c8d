// Module: hierarchical names of parameters and buffers, parameter_count, summary(), forward
// hooks, train/eval propagation, paths and labels, a user-defined module, and shape errors that
// name the module they happened in.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <algorithm>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <typeinfo>
#include <vector>

#include "nn_test_util.hpp"

namespace gs = gradscope;
namespace nn = gradscope::nn;
using Catch::Matchers::Contains;
using Catch::Matchers::Equals;
using nn_test::Mat;

namespace {

/// Dense, BN, ReLU, a post block, a pre block, a projected residual, Dropout, Dense.
void build_nested(nn::Sequential<double>& net) {
  net.add<nn::Dense>(3, 8);
  net.add<nn::BatchNorm>(8);
  net.add<nn::ReLU>();
  net.add(nn::residual_block<double>(8, {.kind = nn::ResidualKind::post}));
  net.add(nn::residual_block<double>(8));
  net.add(std::make_shared<nn::Residual<double>>(
      std::make_shared<nn::Dense<double>>(8, 4),
      std::make_shared<nn::Dense<double>>(8, 4, gs::init::xavier_uniform, false)));
  net.add<nn::Dropout>(0.1);
  net.add<nn::Dense>(4, 2);
}

std::vector<std::string> names_of(const std::vector<nn::Named<double>>& named) {
  std::vector<std::string> out;
  for (const auto& n : named) out.push_back(n.name);
  return out;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  for (std::string line; std::getline(is, line);) out.push_back(line);
  return out;
}

/// y = alpha * x with a learnable scalar alpha: a module written outside the library.
class Scale : public nn::Module<double> {
 public:
  explicit Scale(double alpha) {
    alpha_ =
        register_parameter("alpha", gs::Tensor<double>::parameter(Mat::Constant(1, 1, alpha), 0));
  }
  gs::Tensor<double> forward(const gs::Tensor<double>& x) override { return x * alpha_; }
  std::string kind() const override { return "Scale"; }
  void register_constant() { register_parameter("c", gs::Tensor<double>::zeros(1, 1)); }

 private:
  gs::Tensor<double> alpha_;
};

/// A module that registers whatever it is told to: for the checks of local names.
class Registrar : public nn::Module<double> {
 public:
  gs::Tensor<double> forward(const gs::Tensor<double>& x) override { return x; }
  std::string kind() const override { return "Registrar"; }
  using nn::Module<double>::register_buffer;
  using nn::Module<double>::register_module;
  using nn::Module<double>::register_parameter;
};

gs::Tensor<double> a_parameter() { return gs::Tensor<double>::parameter(Mat::Zero(1, 2)); }

}  // namespace

TEST_CASE("named_parameters gives hierarchical names through nested residual blocks",
          "[nn][module][names]") {
  nn::Sequential<double> net;
  build_nested(net);
  CHECK(names_of(net.named_parameters()) == std::vector<std::string>{"0.weight",
                                                                     "0.bias",  // Dense
                                                                     "1.weight",
                                                                     "1.bias",  // BatchNorm
                                                                     "3.inner.0.weight",
                                                                     "3.inner.0.bias",
                                                                     "3.inner.1.weight",
                                                                     "3.inner.1.bias",
                                                                     "3.inner.3.weight",
                                                                     "3.inner.3.bias",
                                                                     "3.inner.4.weight",
                                                                     "3.inner.4.bias",
                                                                     "4.inner.0.weight",
                                                                     "4.inner.0.bias",
                                                                     "4.inner.2.weight",
                                                                     "4.inner.2.bias",
                                                                     "4.inner.3.weight",
                                                                     "4.inner.3.bias",
                                                                     "4.inner.5.weight",
                                                                     "4.inner.5.bias",
                                                                     "5.inner.weight",
                                                                     "5.inner.bias",
                                                                     "5.projection.weight",
                                                                     "7.weight",
                                                                     "7.bias"});
  CHECK(names_of(net.named_buffers()) ==
        std::vector<std::string>{
            "1.running_mean", "1.running_var", "3.inner.1.running_mean", "3.inner.1.running_var",
            "3.inner.4.running_mean", "3.inner.4.running_var", "4.inner.0.running_mean",
            "4.inner.0.running_var", "4.inner.3.running_mean", "4.inner.3.running_var"});
  // 3*8+8, 2*8, 2 * (2*(8*8+8) + 2*2*8), 8*4+4 + 8*4, 4*2+2
  CHECK(net.parameter_count() == 32 + 16 + 2 * (144 + 32) + 68 + 10);
  CHECK(net.parameter_count() == 478);

  // parameters() is named_parameters() without the names: the same tensors, in the same order.
  const auto params = net.parameters();
  const auto named = net.named_parameters();
  REQUIRE(params.size() == named.size());
  for (std::size_t i = 0; i < params.size(); ++i) CHECK(params[i].same_as(named[i].tensor));
  CHECK(named[0].tensor.same_as(static_cast<nn::Dense<double>&>(net.at(0)).weight()));

  // The names do not depend on when the child got its place in the tree.
  auto inner = std::make_shared<nn::Sequential<double>>();
  inner->add<nn::Dense>(2, 2);
  auto res = std::make_shared<nn::Residual<double>>(inner);
  nn::Sequential<double> outer;
  outer.add<nn::Identity>();
  outer.add(res);
  inner->add<nn::Dense>(2, 2);  // added after the residual was placed
  CHECK(names_of(outer.named_parameters()) ==
        std::vector<std::string>{"1.inner.0.weight", "1.inner.0.bias", "1.inner.1.weight",
                                 "1.inner.1.bias"});
  CHECK(inner->at(1).path() == "1.inner.1");
}

TEST_CASE("Modules know their path and label", "[nn][module][names]") {
  nn::Sequential<double> net;
  build_nested(net);
  std::vector<std::string> paths;
  net.visit([&](nn::Module<double>& m) { paths.push_back(m.path()); });
  CHECK(paths == std::vector<std::string>{"",
                                          "0",
                                          "1",
                                          "2",
                                          "3",
                                          "3.inner",
                                          "3.inner.0",
                                          "3.inner.1",
                                          "3.inner.2",
                                          "3.inner.3",
                                          "3.inner.4",
                                          "3.post",
                                          "4",
                                          "4.inner",
                                          "4.inner.0",
                                          "4.inner.1",
                                          "4.inner.2",
                                          "4.inner.3",
                                          "4.inner.4",
                                          "4.inner.5",
                                          "5",
                                          "5.inner",
                                          "5.projection",
                                          "6",
                                          "7"});
  auto& block = static_cast<nn::Residual<double>&>(net.at(3));
  auto& dense = static_cast<nn::Sequential<double>&>(block.inner()).at(3);
  CHECK(dense.path() == "3.inner.3");
  CHECK(dense.label() == "3.inner.3 (Dense(8 -> 8))");
  CHECK(net.label() == "Sequential(8 layers)");
  CHECK(net.children().size() == 8);
  CHECK(net.children()[5].first == "5");
}

TEST_CASE("summary lists every module with its kind, output shape and parameters",
          "[nn][module][summary]") {
  nn::Sequential<double> net;
  build_nested(net);
  const std::string s = net.summary(3);
  INFO(s);
  const auto lines = lines_of(s);

  struct Row {
    std::string path, describe, shape;
    gs::Index params;
  };
  const std::vector<Row> rows = {
      {"0", "Dense(3 -> 8)", "[-, 8]", 32},
      {"1", "BatchNorm(8)", "[-, 8]", 16},
      {"2", "ReLU", "[-, 8]", 0},
      {"3", "Residual(identity, ReLU)", "[-, 8]", 0},
      {"3.inner", "Sequential(5 layers)", "[-, 8]", 0},
      {"3.inner.0", "Dense(8 -> 8)", "[-, 8]", 72},
      {"3.inner.1", "BatchNorm(8)", "[-, 8]", 16},
      {"3.inner.2", "ReLU", "[-, 8]", 0},
      {"3.inner.3", "Dense(8 -> 8)", "[-, 8]", 72},
      {"3.inner.4", "BatchNorm(8)", "[-, 8]", 16},
      {"3.post", "ReLU", "[-, 8]", 0},
      {"4", "Residual(identity)", "[-, 8]", 0},
      {"4.inner", "Sequential(6 layers)", "[-, 8]", 0},
      {"4.inner.0", "BatchNorm(8)", "[-, 8]", 16},
      {"4.inner.1", "ReLU", "[-, 8]", 0},
      {"4.inner.2", "Dense(8 -> 8)", "[-, 8]", 72},
      {"4.inner.3", "BatchNorm(8)", "[-, 8]", 16},
      {"4.inner.4", "ReLU", "[-, 8]", 0},
      {"4.inner.5", "Dense(8 -> 8)", "[-, 8]", 72},
      {"5", "Residual(projection)", "[-, 4]", 0},
      {"5.inner", "Dense(8 -> 4)", "[-, 4]", 36},
      {"5.projection", "Dense(8 -> 4, no bias)", "[-, 4]", 32},
      {"6", "Dropout(0.1)", "[-, 4]", 0},
      {"7", "Dense(4 -> 2)", "[-, 2]", 10},
  };
  // A header, a rule, one line per module (the root container is the total), a rule, the total.
  REQUIRE(lines.size() == rows.size() + 4);
  CHECK(lines[0].find("Layer") == 0);
  CHECK(lines[0].find("Kind") != std::string::npos);
  CHECK(lines[0].find("Output") != std::string::npos);
  CHECK(lines[0].find("Params") != std::string::npos);
  CHECK(lines[1] == std::string(82, '-'));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    const std::string& line = lines[i + 2];
    INFO("line: " << line);
    // Indented two spaces per nesting level.
    const auto depth = static_cast<std::size_t>(std::count(r.path.begin(), r.path.end(), '.'));
    CHECK(line.rfind(std::string(2 * depth, ' ') + r.path + " ", 0) == 0);
    CHECK(line.find(" " + r.describe + " ") != std::string::npos);
    CHECK(line.find(" " + r.shape + " ") != std::string::npos);
    CHECK(line.substr(line.find_last_of(' ') + 1) == std::to_string(r.params));  // last column
  }
  CHECK(lines[lines.size() - 2] == std::string(82, '-'));
  CHECK(lines.back() == "Total parameters: 478");

  // Without input features the shapes are left out.
  const std::string bare = net.summary();
  CHECK(bare.find("[-,") == std::string::npos);
  CHECK(bare.find("Total parameters: 478") != std::string::npos);

  // A lone layer is its own row, shown as the root.
  nn::Dense<double> d(2, 3);
  const auto lone = lines_of(d.summary(2));
  REQUIRE(lone.size() == 5);
  CHECK(lone[2].rfind("(root)", 0) == 0);
  CHECK(lone[2].find("Dense(2 -> 3)") != std::string::npos);
  CHECK(lone[2].find("[-, 3]") != std::string::npos);
  CHECK(lone[4] == "Total parameters: 9");
}

TEST_CASE("summary restores the mode and leaves running statistics alone",
          "[nn][module][summary]") {
  nn::Sequential<double> net;
  build_nested(net);
  const Mat rm = net.named_buffers()[0].tensor.to_matrix();

  net.train();
  net.summary(3);
  net.visit([](nn::Module<double>& m) { CHECK(m.is_training()); });
  CHECK(net.named_buffers()[0].tensor.to_matrix() == rm);  // shapes come from an eval forward

  net.eval();
  net.summary(3);
  net.visit([](nn::Module<double>& m) { CHECK_FALSE(m.is_training()); });

  // No hook is left behind: a later forward is unaffected (and, under ASan, clean).
  net.train();
  gs::Tape<double> tape;
  CHECK_NOTHROW(net(gs::Tensor<double>::ones(4, 3)));

  // summary() records nothing on a live tape.
  const auto nodes = tape.size();
  net.summary(3);
  CHECK(tape.size() == nodes);
}

TEST_CASE("summary restores the mode and removes its hooks when the forward pass throws",
          "[nn][module][summary][errors]") {
  // Regression: summary() once left the module in eval mode with hooks pointing to its dead
  // locals when the shape-probing forward threw; the next forward wrote to freed stack memory.
  nn::Sequential<double> net;
  build_nested(net);
  net.train();
  CHECK_THROWS_AS(net.summary(5), gs::ShapeError);  // the first Dense wants 3 features
  net.visit([](nn::Module<double>& m) { CHECK(m.is_training()); });
  CHECK_NOTHROW(net(gs::Tensor<double>::ones(4, 3)));  // clean under ASan
  CHECK(lines_of(net.summary(3)).size() == 28);        // and summary still works
}

TEST_CASE("summary restores each module's own mode", "[nn][module][summary]") {
  // A batch norm frozen with eval() inside a network that trains stays frozen.
  nn::Sequential<double> net;
  build_nested(net);
  net.train();
  net.at(1).eval();
  net.summary(3);
  CHECK(net.is_training());
  CHECK_FALSE(net.at(1).is_training());
  CHECK(net.at(0).is_training());
}

TEST_CASE("Forward hooks see module, input and output and are removable", "[nn][module][hooks]") {
  gs::Rng rng(9);
  nn::Sequential<double> net;
  auto& dense = net.add<nn::Dense>(2, 3, gs::init::xavier_normal, true, &rng);
  net.add<nn::ReLU>();
  const Mat x = nn_test::randn(4, 2, rng);

  std::vector<std::string> fired;
  Mat seen_in, seen_out;
  auto h_dense = dense.register_forward_hook(
      [&](nn::Module<double>& m, const gs::Tensor<double>& in, const gs::Tensor<double>& out) {
        CHECK(&m == &dense);
        fired.push_back("dense");
        seen_in = in.to_matrix();
        seen_out = out.to_matrix();
      });
  auto h_net = net.register_forward_hook(
      [&](nn::Module<double>& m, const gs::Tensor<double>&, const gs::Tensor<double>&) {
        CHECK(&m == &net);
        fired.push_back("net");
      });
  CHECK(h_dense.active());

  const Mat y = net(gs::Tensor<double>(x)).to_matrix();
  CHECK(fired == std::vector<std::string>{"dense", "net"});  // children finish first
  CHECK(seen_in == x);
  CHECK(seen_out.isApprox(
      (x * dense.weight().value().transpose()).rowwise() + dense.bias().value().row(0), 1e-15));
  CHECK(y == seen_out.cwiseMax(0.0));

  // Hooks also fire while recording on a tape, with tape tensors.
  {
    gs::Tape<double> tape;
    net(gs::Tensor<double>(x));
    CHECK(fired.size() == 4);
  }

  h_dense.remove();
  CHECK_FALSE(h_dense.active());
  net(gs::Tensor<double>(x));
  CHECK(fired.back() == "net");
  CHECK(fired.size() == 5);
  h_dense.remove();  // removing twice does nothing
  h_net.remove();
  net(gs::Tensor<double>(x));
  CHECK(fired.size() == 5);

  // Several hooks on one module fire in registration order; removing one keeps the other.
  std::vector<int> order;
  auto a =
      dense.register_forward_hook([&](auto&, const auto&, const auto&) { order.push_back(1); });
  auto b =
      dense.register_forward_hook([&](auto&, const auto&, const auto&) { order.push_back(2); });
  net(gs::Tensor<double>(x));
  CHECK(order == std::vector<int>{1, 2});
  a.remove();
  net(gs::Tensor<double>(x));
  CHECK(order == std::vector<int>{1, 2, 2});
  b.remove();

  // A handle outliving its module removes nothing and does not crash.
  gs::HookHandle orphan;
  {
    nn::ReLU<double> relu;
    orphan = relu.register_forward_hook([](auto&, const auto&, const auto&) {});
  }
  CHECK_NOTHROW(orphan.remove());
}

TEST_CASE("train() and eval() reach every descendant", "[nn][module][mode]") {
  nn::Sequential<double> net;
  build_nested(net);
  int modules = 0;
  net.visit([&](nn::Module<double>& m) {
    ++modules;
    CHECK(m.is_training());  // modules start in training mode
  });
  CHECK(modules == 25);
  net.eval();
  net.visit([](nn::Module<double>& m) { CHECK_FALSE(m.is_training()); });
  net.train();
  net.visit([](nn::Module<double>& m) { CHECK(m.is_training()); });
  net.train(false);
  net.visit([](nn::Module<double>& m) { CHECK_FALSE(m.is_training()); });

  // A module added to a parent takes the parent's mode.
  auto& drop = net.add<nn::Dropout>(0.5);
  CHECK_FALSE(drop.is_training());
  const auto x = gs::Tensor<double>::ones(3, 2);
  CHECK(drop(x).to_matrix() == x.to_matrix());

  // Switching a child alone does not touch its parent.
  net.at(1).train();
  CHECK(net.at(1).is_training());
  CHECK_FALSE(net.is_training());
}

TEST_CASE("zero_grad clears every parameter's accumulated gradient", "[nn][module]") {
  gs::Rng rng(10);
  nn::Sequential<double> net;
  build_nested(net);
  nn_test::randomize_state(net, rng);
  const auto x = gs::Tensor<double>(nn_test::randn(5, 3, rng));
  for (int i = 0; i < 2; ++i) {  // gradients accumulate over backward calls
    gs::Tape<double> tape;
    tape.backward(gs::sum(net(x)));
  }
  double total = 0;
  for (const auto& p : net.parameters()) total += p.grad().cwiseAbs().sum();
  CHECK(total > 0);
  net.zero_grad();
  for (const auto& p : net.parameters()) CHECK(p.grad().isZero(0));
}

TEST_CASE("A user-defined module registers parameters and composes", "[nn][module][custom]") {
  auto scale = std::make_shared<Scale>(3.0);
  CHECK(scale->kind() == "Scale");
  CHECK(scale->describe() == "Scale");  // describe() defaults to kind()
  CHECK_THROWS_AS(scale->register_constant(), gs::UsageError);

  nn::Sequential<double> net;
  net.add<nn::Identity>();
  net.add(scale);
  CHECK(names_of(net.named_parameters()) == std::vector<std::string>{"1.alpha"});
  CHECK(net.parameter_count() == 1);
  const Mat x = Mat::Constant(2, 2, 1.5);
  CHECK(net(gs::Tensor<double>(x)).to_matrix() == Mat::Constant(2, 2, 4.5));

  gs::Rng rng(12);
  nn_test::check_module_gradients_both_modes(net, nn_test::randn(3, 4, rng));
}

// add<M>(args...) for a concrete module type; add<Layer>(args...) for a layer template.
template <class Net, class M>
concept can_add_concrete = requires(Net& net) {
  net.template add<M>(gs::Index{3}, gs::Index{4});
};

TEST_CASE("Sequential::add constructs a concrete or a non-template module in place",
          "[nn][module]") {
  nn::Sequential<float> net;
  gs::Rng rng(5);
  auto& d = net.add<nn::Dense<float>>(3, 4, gs::init::he_normal, true, &rng);
  static_assert(std::is_same_v<decltype(d), nn::Dense<float>&>);
  net.add<nn::ReLU>();  // the class-template form still works beside it
  auto& out = net.add<nn::Dense>(4, 2);
  CHECK(net.size() == 3);
  CHECK(&net.at(0) == &d);
  CHECK(&net.at(2) == &out);
  CHECK(d.out_features() == 4);
  CHECK(net(gs::Tensor<float>::ones(5, 3)).to_matrix().cols() == 2);

  nn::Sequential<double> custom;
  auto& s = custom.add<Scale>(2.0);  // a module class of one's own, not a template
  static_assert(std::is_same_v<decltype(s), Scale&>);
  CHECK(names_of(custom.named_parameters()) == std::vector<std::string>{"0.alpha"});
  CHECK(custom(gs::Tensor<double>(Mat::Constant(1, 2, 1.5))).to_matrix() ==
        Mat::Constant(1, 2, 3.0));

  // Only modules of the container's scalar type are accepted, at compile time.
  static_assert(can_add_concrete<nn::Sequential<float>, nn::Dense<float>>);
  static_assert(!can_add_concrete<nn::Sequential<double>, nn::Dense<float>>);
  static_assert(!can_add_concrete<nn::Sequential<double>, std::string>);
}

TEST_CASE("Sequential::add gives a child a name of its own", "[nn][module][names]") {
  nn::Sequential<double> net;
  net.add("encoder", std::make_shared<nn::Dense<double>>(3, 4));
  net.add(std::make_shared<nn::ReLU<double>>());  // position 1
  auto head = std::make_shared<nn::Sequential<double>>();
  head->add("out", std::make_shared<nn::Dense<double>>(4, 2));
  net.add("head", head);
  CHECK(names_of(net.named_parameters()) ==
        std::vector<std::string>{"encoder.weight", "encoder.bias", "head.out.weight",
                                 "head.out.bias"});
  CHECK(net.at(2).path() == "head");
  CHECK(head->at(0).path() == "head.out");
  CHECK(net.at(0).label() == "encoder (Dense(3 -> 4))");

  // PyTorch's rules for a local name: non-empty, no '.', not taken. The container is unchanged
  // after a refused add.
  const auto relu = std::make_shared<nn::ReLU<double>>();
  CHECK_THROWS_WITH(net.add("encoder", relu),
                    Equals("[gradscope.value] Sequential::add('encoder'): a child module already "
                           "has that name"));
  CHECK_THROWS_WITH(net.add("", relu), Contains("a name must not be empty"));
  CHECK_THROWS_WITH(net.add("a.b", relu), Contains("must not contain '.'"));
  CHECK_THROWS_WITH(head->add("out", relu),
                    Equals("[gradscope.value] Sequential::add('out') in 'head': a child module "
                           "already has that name"));
  // An unnamed add is named by its position, which may be taken by a name given earlier.
  nn::Sequential<double> mixed;
  mixed.add("1", relu);
  CHECK_THROWS_WITH(mixed.add(std::make_shared<nn::Tanh<double>>()),
                    Contains("Sequential::add('1'): a child module already has that name"));
  CHECK(net.size() == 3);
  CHECK(mixed.size() == 1);
  CHECK(relu->path() == "1");
  CHECK_THROWS_AS(net.add("x", nullptr), gs::UsageError);

  // A module tree has no cycles: a module cannot be its own descendant.
  auto outer = std::make_shared<nn::Sequential<double>>();
  auto inner = std::make_shared<nn::Sequential<double>>();
  outer->add(inner);
  CHECK_THROWS_WITH(inner->add(outer), Contains("the module is this one or contains it"));
  CHECK_THROWS_AS(outer->add(outer), gs::UsageError);
  CHECK(inner->size() == 0);
}

TEST_CASE("register_parameter, register_buffer and register_module check local names",
          "[nn][module][names]") {
  Registrar m;
  m.register_parameter("w", a_parameter());
  m.register_buffer("stat", gs::Tensor<double>::zeros(1, 2));
  m.register_module("child", std::make_shared<nn::ReLU<double>>());
  CHECK_THROWS_WITH(m.register_parameter("w", a_parameter()),
                    Equals("[gradscope.value] register_parameter('w'): a parameter of this "
                           "module already has that name"));
  CHECK_THROWS_WITH(m.register_buffer("w", gs::Tensor<double>::zeros(1, 1)),
                    Contains("a parameter of this module already has that name"));
  CHECK_THROWS_WITH(m.register_parameter("stat", a_parameter()),
                    Contains("a buffer of this module already has that name"));
  CHECK_THROWS_WITH(m.register_module("stat", std::make_shared<nn::ReLU<double>>()),
                    Contains("a buffer of this module already has that name"));
  CHECK_THROWS_WITH(m.register_parameter("child", a_parameter()),
                    Contains("a child module already has that name"));
  CHECK_THROWS_WITH(m.register_parameter("", a_parameter()), Contains("must not be empty"));
  CHECK_THROWS_WITH(m.register_buffer("a.b", gs::Tensor<double>::zeros(1, 1)),
                    Contains("register_buffer('a.b'): a name must not contain '.'"));
  CHECK(names_of(m.named_parameters()) == std::vector<std::string>{"w"});
  CHECK(names_of(m.named_buffers()) == std::vector<std::string>{"stat"});
  CHECK(m.children().size() == 1);
}

TEST_CASE("layer sizes are checked before anything is allocated", "[nn][module][errors]") {
  CHECK_THROWS_WITH(nn::Dense<float>(-3, 4), Contains("Dense: needs positive sizes, got -3 -> 4"));
  CHECK_THROWS_AS(nn::Dense<float>(4, 0), gs::ValueError);
  // [out, in] floats beyond any array: a ValueError, not std::bad_alloc.
  const gs::Index big = gs::Index{1} << 40;
  CHECK_THROWS_WITH(nn::Dense<float>(big, big), Contains("Dense (weight [out, in]): size "
                                                         "1099511627776 x 1099511627776 is too "
                                                         "large"));
  CHECK_THROWS_WITH(nn::BatchNorm<double>(-2), Contains("BatchNorm: needs a positive number of "
                                                        "features, got -2"));
  CHECK_THROWS_WITH(nn::BatchNorm<double>(std::numeric_limits<gs::Index>::max()),
                    Contains("BatchNorm: size 1 x 9223372036854775807 is too large"));
  CHECK_THROWS_WITH(nn::residual_block<double>(0), Contains("residual_block: width must be > 0, "
                                                            "got 0"));
  CHECK_THROWS_WITH(nn::residual_block<double>(-5, {.kind = nn::ResidualKind::post}),
                    Contains("got -5"));
  nn::Sequential<double> net;
  net.add<nn::Dense>(3, 2);
  CHECK_THROWS_WITH(net.summary(-1), Contains("summary: input_features must be >= 0"));
}

TEST_CASE("residual_block draws its weights from the generator it is given",
          "[nn][module][residual]") {
  for (const auto kind : {nn::ResidualKind::pre, nn::ResidualKind::post}) {
    gs::Rng a(5), b(5), c(6);
    const auto default_before = gs::default_rng();
    const auto x = nn::residual_block<double>(6, a, {.kind = kind});
    const auto y = nn::residual_block<double>(6, {.kind = kind}, &b);
    const auto z = nn::residual_block<double>(6, c, {.kind = kind});
    // The default generator was not touched.
    auto copy = default_before;
    CHECK(gs::default_rng().next_u64() == copy.next_u64());
    const auto px = x->parameters(), py = y->parameters(), pz = z->parameters();
    REQUIRE(px.size() == py.size());
    bool differ = false;
    for (std::size_t i = 0; i < px.size(); ++i) {
      CHECK(px[i].to_matrix() == py[i].to_matrix());
      differ |= px[i].to_matrix() != pz[i].to_matrix();
    }
    CHECK(differ);
    CHECK(a.next_u64() == b.next_u64());  // both generators advanced alike
  }
}

TEST_CASE("a shape error inside a module names the module, once", "[nn][module][errors]") {
  // Dense(3 -> 8) after a Dense(4 -> 2): it gets 2 features where it wants 3.
  nn::Sequential<double> net;
  net.add<nn::Dense>(4, 2);
  net.add<nn::Dense>(3, 8);
  try {
    net(gs::Tensor<double>::zeros(5, 4));
    FAIL("no ShapeError");
  } catch (const gs::ShapeError& e) {
    CHECK(typeid(e) == typeid(gs::ShapeError));
    CHECK(std::string(e.what()) ==
          "[gradscope.shape] linear: input [5, 2] does not fit weight [8, 3] (expected input "
          "[batch, 3] and weight [out, in]) (in module '1 (Dense(3 -> 8))')");
  }

  // Nested containers: the innermost module that raised it is named, and only once.
  nn::Sequential<double> outer;
  outer.add<nn::Dense>(4, 6);
  auto inner = std::make_shared<nn::Sequential<double>>();
  inner->add<nn::ReLU>();
  inner->add(nn::residual_block<double>(6));
  inner->add<nn::Dense>(5, 3);
  outer.add(inner);
  try {
    outer(gs::Tensor<double>::zeros(2, 4));
    FAIL("no ShapeError");
  } catch (const gs::ShapeError& e) {
    const std::string what = e.what();
    CHECK(what.rfind("[gradscope.shape] linear: input [2, 6] does not fit weight [3, 5]", 0) == 0);
    CHECK(what.find("(in module '1.2 (Dense(5 -> 3))')") != std::string::npos);
    std::size_t count = 0;
    for (auto p = what.find("(in module"); p != std::string::npos;
         p = what.find("(in module", p + 1))
      ++count;
    CHECK(count == 1);
  }

  // A ShapeError outside any module has no label.
  CHECK_THROWS_WITH(gs::matmul(gs::Tensor<double>::zeros(2, 3), gs::Tensor<double>::zeros(2, 3)),
                    !Catch::Matchers::Contains("in module"));
}
