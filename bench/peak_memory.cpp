// A 200-step training run of net B ([784, 8x256, 10] ReLU, batch 128, SGD) for measuring peak
// resident memory with /usr/bin/time -v (scripts/bench.sh does). Not a Google Benchmark program:
// it is built by scripts/bench.sh with the same flags, so nothing but the training run (and the C++
// runtime) is resident.
//
//   peak_memory [gradscope|reference] [steps]    default: gradscope 200
//
// `reference` runs the hand-written Eigen twin instead: the floor for the same network (weights,
// gradients and activations only).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <gradscope/gradscope.hpp>

#include "reference/nets.hpp"

int main(int argc, char** argv) {
  namespace gs = gradscope;
  namespace gb = gradscope_bench;
  const std::string impl = argc > 1 ? argv[1] : "gradscope";
  const int steps = argc > 2 ? std::atoi(argv[2]) : 200;
  if ((impl != "gradscope" && impl != "reference") || steps <= 0) {
    std::fprintf(stderr, "usage: peak_memory [gradscope|reference] [steps]\n");
    return 2;
  }
  const gb::NetShape shape = gb::net_shape('B');
  const Eigen::Index batch = 128;
  const float lr = 0.01f;

  // One batch of MNIST-sized data at a time, as a loader would hand it over.
  gs::Rng data_rng(7);
  gs::Matrix<float> x(batch, shape.in);
  std::vector<int> labels(static_cast<std::size_t>(batch));
  const auto next_batch = [&] {
    for (Eigen::Index i = 0; i < x.size(); ++i)
      x.data()[i] = static_cast<float>(data_rng.uniform());
    for (auto& y : labels) y = static_cast<int>(data_rng.below(10));
  };

  gs::Rng rng(20240611);
  double loss = 0;
  if (impl == "gradscope") {
    auto net = gb::make_gradscope_net<float>(shape, rng);
    gs::optim::SGD<float> opt(net->parameters(), gs::optim::SGDOptions<float>{.lr = lr});
    gs::Tape<float> tape;
    for (int s = 0; s < steps; ++s) {
      next_batch();
      tape.reset();
      const gs::Tensor<float> input(x, 2, false);
      const auto l = gs::nn::softmax_cross_entropy((*net)(input), std::span<const int>(labels));
      tape.backward(l);
      opt.step();
      opt.zero_grad();
      loss = l.item();
    }
  } else {
    auto twin = gb::make_reference_net<float>(shape, batch, rng);
    for (int s = 0; s < steps; ++s) {
      next_batch();
      loss = twin->step(x, labels, lr);
    }
  }
  std::printf("%s: %d steps of net B at batch %ld, last loss %.4f\n", impl.c_str(), steps,
              static_cast<long>(batch), loss);
  return 0;
}
