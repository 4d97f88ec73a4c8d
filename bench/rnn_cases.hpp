#pragma once
// The cases of bench_rnn_train and its peer (bench/peers/torch_rnn.bench.cpp): the cells and
// sizes, the training constants, the pool of random batches every side trains on, and the
// gradscope network of a case next to its hand-written twin (reference/rnn_reference.hpp), both
// drawn from one Rng state so that they start from the same weights.
#include <Eigen/Core>

#include <gradscope/gradscope.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "reference/rnn_reference.hpp"

namespace gradscope_bench::rnn {

using Mat = reference::Mat<float>;
using reference::Index;
using reference::RnnCell;
using reference::RnnShape;

constexpr float kLr = 0.01f;
constexpr int kPool = 4;  // batches cycled through
constexpr std::uint64_t kWeightSeed = 20240611;
constexpr std::uint64_t kDataSeed = 7;
constexpr Index kClasses = 10;

/// One benchmark case: a cell at [T, B, I, H].
struct Case {
  RnnCell cell;
  Index steps, batch, input, hidden;
};
constexpr Case kCases[] = {{RnnCell::lstm, 28, 128, 28, 128},
                           {RnnCell::lstm, 100, 32, 32, 256},
                           {RnnCell::gru, 28, 128, 28, 128},
                           {RnnCell::gru, 100, 32, 32, 256}};

inline const char* cell_name(RnnCell c) { return c == RnnCell::lstm ? "lstm" : "gru"; }

/// "<cell>/T:<T>/B:<B>/I:<I>/H:<H>", the middle of every benchmark name.
inline std::string case_id(const Case& c) {
  return std::string(cell_name(c.cell)) + "/T:" + std::to_string(c.steps) +
         "/B:" + std::to_string(c.batch) + "/I:" + std::to_string(c.input) +
         "/H:" + std::to_string(c.hidden);
}

/// The network of a case (the twin's description; gradscope's default initialisers).
inline RnnShape shape_of(const Case& c) {
  RnnShape s;
  s.cell = c.cell;
  s.steps = c.steps;
  s.input = c.input;
  s.hidden = c.hidden;
  s.classes = kClasses;
  return s;
}

/// kPool batches [B, T*I] (batch-first, step t of sequence b in columns t*I to t*I+I-1): features
/// uniform in [-1, 1), labels uniform in 0..classes-1, drawn in this order from kDataSeed.
struct Batches {
  std::vector<Mat> x;
  std::vector<std::vector<int>> labels;

  Batches(Index batch, Index cols, Index classes) {
    gradscope::Rng rng(kDataSeed);
    for (int k = 0; k < kPool; ++k) {
      Mat m(batch, cols);
      for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
      std::vector<int> y(static_cast<std::size_t>(batch));
      for (auto& v : y) v = static_cast<int>(rng.below(static_cast<std::uint64_t>(classes)));
      x.push_back(std::move(m));
      labels.push_back(std::move(y));
    }
  }
  explicit Batches(const Case& c) : Batches(c.batch, c.steps * c.input, kClasses) {}
};

/// gradscope's network of `s`: Sequential{LSTM or GRU (input -> hidden, one layer,
/// RecurrentOutput::last_step), Dense(hidden -> classes)}, weights drawn from `rng`.
template <class T>
std::shared_ptr<gradscope::nn::Sequential<T>> make_gradscope_rnn(const RnnShape& s,
                                                                 gradscope::Rng& rng) {
  namespace nn = gradscope::nn;
  nn::RecurrentOptions o;
  o.output = nn::RecurrentOutput::last_step;
  o.input_init = s.input_init;
  o.recurrent_init = s.recurrent_init;
  o.forget_bias = s.forget_bias;
  o.rng = &rng;
  auto net = std::make_shared<nn::Sequential<T>>();
  if (s.cell == RnnCell::lstm)
    net->template add<nn::LSTM>(s.input, s.hidden, o);
  else
    net->template add<nn::GRU>(s.input, s.hidden, o);
  net->template add<nn::Dense>(s.hidden, s.classes, s.head_init, true, &rng);
  return net;
}

/// The twin of `s` for a fixed batch size, weights drawn from `rng`.
template <class T>
std::unique_ptr<reference::RnnReference<T>> make_reference_rnn(const RnnShape& s, Index batch,
                                                               gradscope::Rng& rng) {
  return std::make_unique<reference::RnnReference<T>>(s, batch, rng);
}

}  // namespace gradscope_bench::rnn
