// One data-parallel step of a small model: rank 0's weights reach every rank, the averaged
// gradients are the same everywhere, the replicas stay identical. Prints the version on rank 0.
#include <gradscope/dist/dist.hpp>
#include <gradscope/gradscope.hpp>

#include <cstdio>
#include <vector>

namespace gs = gradscope;

int main(int argc, char** argv) {
  gs::dist::Context mpi(argc, argv);
  try {
    gs::Rng rng(static_cast<std::uint64_t>(1 + mpi.rank()));  // different until the broadcast
    gs::nn::Sequential<float> net;
    net.add<gs::nn::Dense>(4, 8, gs::init::he_normal, true, &rng);
    net.add<gs::nn::ReLU>();
    net.add<gs::nn::Dense>(8, 3, gs::init::xavier_uniform, true, &rng);
    gs::dist::DataParallel<float> dp(net, mpi.comm());
    gs::optim::SGD<float> opt(net.parameters(), {.lr = 0.1f});
    gs::Tape<float> tape;
    const std::vector<int> y = {0, 1, 2, 0};
    auto loss = gs::nn::softmax_cross_entropy(net(gs::Tensor<float>::randn(4, 4, rng)), y);
    tape.backward(loss);
    const auto global = dp.allreduce_gradients(4, loss.item());
    opt.step();
    dp.check_consistent();
    if (mpi.is_root())
      std::printf("gradscope %s (gradscope::dist, %d ranks, global batch %g, loss %.4f)\n",
                  gs::version(), mpi.size(), global.samples, global.loss);
  } catch (const std::exception& e) {
    return mpi.fail(e, 1, "consumer_dist");
  }
  return 0;
}
