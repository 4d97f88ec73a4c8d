// Truncated backpropagation through time: an LSTM learns to predict the next value of 16 long
// signals, read in chunks of 25 steps. After each chunk the state is carried into the next one
// (final_state().detached(): the values carry on, the gradient stops at the chunk boundary), so
// the network sees the whole history while back-propagating through 25 steps only. The same
// training with the state reset at every chunk is shown beside it: it must guess at the start of
// each chunk, which the error of a chunk's first steps shows.
//
//   ./truncated_bptt [epochs]

#include <gradscope/gradscope.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace gs = gradscope;
namespace nn = gradscope::nn;
using Mat = gs::Matrix<float>;

namespace {

constexpr gs::Index kStreams = 16, kLength = 2000, kChunk = 25, kHidden = 32;

/// Stream b: a sum of two sines with the stream's own phases and a slow drift of amplitude.
Mat make_signals() {
  Mat s(kStreams, kLength + 1);
  for (gs::Index b = 0; b < kStreams; ++b)
    for (gs::Index t = 0; t <= kLength; ++t) {
      const double u = static_cast<double>(t);
      s(b, t) = static_cast<float>(0.6 * std::sin(0.21 * u + 0.7 * double(b)) +
                                   0.3 * std::sin(0.047 * u + 1.3 * double(b)) *
                                       (1.0 + 0.5 * std::sin(0.003 * u)));
    }
  return s;
}

struct Result {
  double mse = 0;        // over every predicted step of the last epoch
  double first_mse = 0;  // over the first 3 steps of each chunk of the last epoch
};

Result train(const Mat& signals, bool carry, int epochs) {
  gs::Rng rng(7);
  nn::LSTM<float> lstm(1, kHidden, {.rng = &rng});
  nn::Dense<float> head(kHidden, 1, gs::init::xavier_uniform, true, &rng);
  std::vector<gs::Tensor<float>> params = lstm.parameters();
  for (const auto& p : head.parameters()) params.push_back(p);
  gs::optim::Adam<float> opt(params, {.lr = 3e-3f});
  Result r;
  for (int epoch = 0; epoch < epochs; ++epoch) {
    lstm.reset_state();
    double total = 0, first = 0;
    gs::Index count = 0, first_count = 0;
    for (gs::Index start = 0; start + kChunk <= kLength; start += kChunk) {
      // Inputs x_t for t in the chunk and targets x_{t+1}: [B, T] is T steps of 1 feature.
      const gs::Tensor<float> x(Mat(signals.middleCols(start, kChunk)));
      const Mat target = signals.middleCols(start + 1, kChunk);
      gs::Tape<float> tape;
      const auto h = lstm(x);                                           // [B, T*H]
      const auto y = head(gs::reshape(h, kStreams * kChunk, kHidden));  // one row per (b, t)
      const gs::Tensor<float> t(Eigen::Map<const Mat>(target.data(), kStreams * kChunk, 1));
      const auto loss = nn::mse(y, t);
      tape.backward(loss);
      opt.step();
      opt.zero_grad();
      if (carry) lstm.set_initial_state(lstm.final_state().detached());
      // The error of this chunk, overall and on its first 3 steps.
      const auto err = (y.value() - t.value()).array().square();
      total += err.sum();
      count += err.size();
      for (gs::Index b = 0; b < kStreams; ++b)
        for (gs::Index s = 0; s < 3; ++s) first += err(b * kChunk + s, 0);
      first_count += 3 * kStreams;
    }
    r = {total / double(count), first / double(first_count)};
    std::printf("  %-14s epoch %2d  mse %.5f  first 3 steps of a chunk %.5f\n",
                carry ? "carried state" : "reset state", epoch + 1, r.mse, r.first_mse);
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const int epochs = argc > 1 ? std::atoi(argv[1]) : 6;
  if (epochs < 1) {
    std::fprintf(stderr, "truncated_bptt: epochs must be a positive integer, got '%s'\n", argv[1]);
    return 2;
  }
  const Mat signals = make_signals();
  std::printf(
      "LSTM(1 -> %ld) predicting the next value of %ld signals of %ld steps, chunks of "
      "%ld steps\n",
      static_cast<long>(kHidden), static_cast<long>(kStreams), static_cast<long>(kLength),
      static_cast<long>(kChunk));
  const Result carried = train(signals, true, epochs);
  const Result reset = train(signals, false, epochs);
  std::printf(
      "\nlast epoch: carried state mse %.5f (first steps %.5f), reset state mse %.5f "
      "(first steps %.5f)\n",
      carried.mse, carried.first_mse, reset.mse, reset.first_mse);
  return 0;
}
