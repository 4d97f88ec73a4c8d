// dist_failure_probe: a short data-parallel training run that fails on rank 1, for
// check_failure.cmake, which runs it under mpiexec with a time limit and checks the exit code
// and the output.
//   dist_failure_probe nan     rank 1's gradient turns NaN at step 3: every rank throws
//                              NonFiniteGradientError at once, rank 0 reports it (naming rank 1),
//                              every rank returns 1 and finalises MPI
//   dist_failure_probe throw   rank 1 alone throws an ordinary error at step 3 while rank 0 is
//                              in the allreduce: Context::fail ends the job with MPI_Abort
#include <gradscope/dist/dist.hpp>
#include <gradscope/gradscope.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace gs = gradscope;
namespace nn = gradscope::nn;

int main(int argc, char** argv) {
  gs::dist::Context ctx(argc, argv);
  const bool nan = argc > 1 && std::strcmp(argv[1], "nan") == 0;
  try {
    gs::Rng rng(1);
    nn::Sequential<float> net;
    net.add<nn::Dense>(8, 16, gs::init::he_normal, true, &rng);
    net.add<nn::ReLU>();
    net.add<nn::Dense>(16, 4, gs::init::xavier_uniform, true, &rng);
    gs::dist::DataParallel<float> dp(net, ctx.comm());
    gs::optim::SGD<float> opt(net.parameters(), {.lr = 0.1f});
    gs::Tape<float> tape;
    const std::vector<int> y = {0, 1, 2, 3};
    for (int step = 1; step <= 5; ++step) {
      tape.reset();
      auto x = gs::Tensor<float>::randn(4, 8, rng);
      auto loss = nn::softmax_cross_entropy(net(x), y);
      tape.backward(loss);
      if (ctx.rank() == 1 && step == 3) {
        if (!nan) throw std::runtime_error("rank 1 failed on its own at step 3");
        net.parameters()[2].mutable_grad()(1, 2) = std::nanf("");
      }
      dp.allreduce_gradients(4, loss.item());
      opt.step();
      opt.zero_grad();
      std::printf("rank %d finished step %d\n", ctx.rank(), step);
    }
  } catch (const std::exception& e) {
    std::printf("rank %d stopped\n", ctx.rank());
    std::fflush(stdout);
    return ctx.fail(e, 1, "dist_failure_probe");
  }
  return 0;
}
