// Recurrent models through checkpoints: an Embedding + LSTM classifier trained inside Sequential,
// saved and loaded with its optimiser; weights saved by PyTorch loaded by name.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>
#include <gradscope/io/io.hpp>

#include <cmath>
#include <filesystem>
#include <memory>
#include <vector>

#include "io_test_util.hpp"

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace io = gradscope::io;
using gs::Index;
using M = gs::Matrix<double>;
using io_test::TempDir;

namespace {

/// Embedding(10 x 6) -> LSTM(6 -> 16, last step) -> Dense(16 -> 4).
std::shared_ptr<nn::Sequential<double>> make_classifier(std::uint64_t seed) {
  gs::Rng rng(seed);
  auto net = std::make_shared<nn::Sequential<double>>();
  net->add<nn::Embedding>(10, 6, gs::init::normal(1.0), &rng);
  net->add<nn::LSTM>(6, 16,
                     nn::RecurrentOptions{.output = nn::RecurrentOutput::last_step, .rng = &rng});
  net->add<nn::Dense>(16, 4, gs::init::xavier_uniform, true, &rng);
  return net;
}

/// Token sequences of length 8 over 10 tokens whose class is their first token mod 4: the LSTM
/// must carry the first step through the seven after it.
void make_task(Index n, M& tokens, std::vector<int>& labels, std::uint64_t seed) {
  gs::Rng rng(seed);
  tokens.resize(n, 8);
  labels.resize(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    for (Index t = 0; t < 8; ++t) tokens(i, t) = static_cast<double>(rng.below(10));
    labels[static_cast<std::size_t>(i)] = static_cast<int>(tokens(i, 0)) % 4;
  }
}

double train_step(nn::Module<double>& net, gs::optim::Optimizer<double>& opt, const M& tokens,
                  const std::vector<int>& labels) {
  gs::Tape<double> tape;
  auto loss = gs::softmax_cross_entropy(net(gs::Tensor<double>(tokens)), labels);
  tape.backward(loss);
  opt.step();
  opt.zero_grad();
  return loss.item();
}

}  // namespace

TEST_CASE("an Embedding + LSTM classifier learns, and resumes from a checkpoint bit for bit",
          "[io][recurrent]") {
  M tokens;
  std::vector<int> labels;
  make_task(256, tokens, labels, 7);
  auto net = make_classifier(1);
  gs::optim::Adam<double> opt(net->parameters(), {.lr = 0.02});
  double first = 0, loss = 0;
  for (int step = 0; step < 150; ++step) {
    loss = train_step(*net, opt, tokens, labels);
    if (step == 0) first = loss;
  }
  INFO("loss " << first << " -> " << loss);
  CHECK(first > 1.2);  // about ln 4 at the start
  CHECK(loss < 0.05);
  M test;
  std::vector<int> test_labels;
  make_task(200, test, test_labels, 8);
  CHECK(gs::nn::accuracy((*net)(gs::Tensor<double>(test)), test_labels) > 0.95);

  // Save with the optimiser, load into a differently initialised model: the same outputs, and
  // the next step gives the same parameters bit for bit.
  TempDir dir;
  io::save_checkpoint(dir / "rnn.safetensors", *net, &opt);
  auto copy = make_classifier(99);
  gs::optim::Adam<double> copy_opt(copy->parameters(), {.lr = 0.02});
  io::load_checkpoint(dir / "rnn.safetensors", *copy, &copy_opt);
  const gs::Tensor<double> x(test);
  for (std::size_t i = 0; i < net->named_parameters().size(); ++i) {
    INFO(net->named_parameters()[i].name);
    CHECK(net->named_parameters()[i].tensor.to_matrix() ==
          copy->named_parameters()[i].tensor.to_matrix());
  }
  CHECK((*net)(x).to_matrix() == (*copy)(x).to_matrix());
  train_step(*net, opt, tokens, labels);
  train_step(*copy, copy_opt, tokens, labels);
  const auto a = net->named_parameters(), b = copy->named_parameters();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].name);
    CHECK(a[i].tensor.to_matrix() == b[i].tensor.to_matrix());
  }
}

TEST_CASE("LSTM and GRU weights saved by PyTorch load by name and give PyTorch's outputs",
          "[io][recurrent][reference]") {
  // tests/io/data/pytorch_recurrent.safetensors: the state_dict of PyTorch 1.13's
  // ModuleList([LSTM(3, 2, num_layers=2), GRU(3, 2, num_layers=2)]) in float64, written by
  // tests/nn/reference/recurrent_reference.py; the outputs below are PyTorch's for input
  // x[k] = 0.5 sin(0.7 k + 1) and zero initial states.
  const auto file =
      std::filesystem::path(__FILE__).parent_path() / "data" / "pytorch_recurrent.safetensors";
  nn::Sequential<double> models;
  models.add<nn::LSTM>(3, 2, nn::RecurrentOptions{.num_layers = 2});
  models.add<nn::GRU>(3, 2, nn::RecurrentOptions{.num_layers = 2});
  std::vector<gs::NamedTensor<double>> targets = models.named_parameters();
  io::load_safetensors(file, targets);
  M x(2, 9);
  for (Index k = 0; k < x.size(); ++k) x.data()[k] = 0.5 * std::sin(0.7 * double(k) + 1.0);
  const M lstm_out = models[0](gs::Tensor<double>(x)).to_matrix();
  const M gru_out = models[1](gs::Tensor<double>(x)).to_matrix();
  const M lstm_ref = (M(2, 6) << -0.057310892415539764, -0.16815659606355224, -0.09844049166943443,
                      -0.26492794356150956, -0.12594231515284465, -0.31601788164727129,
                      -0.057333304068285532, -0.16817109662330779, -0.098404410381188231,
                      -0.26477530482672085, -0.12592820227393856, -0.31601484546205666)
                         .finished();
  const M gru_ref = (M(2, 6) << -0.079534006131417395, -0.25879206853288922, -0.13959564120842938,
                     -0.42218766072654429, -0.18352689842950756, -0.5321920412402481,
                     -0.07958568426960666, -0.25879524176025548, -0.13955916975714378,
                     -0.42208887994079736, -0.18349992403884979, -0.53213915384292609)
                        .finished();
  CHECK((lstm_out - lstm_ref).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((gru_out - gru_ref).cwiseAbs().maxCoeff() < 1e-12);
}
