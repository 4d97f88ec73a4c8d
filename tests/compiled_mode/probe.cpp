// Compiled mode (GRADSCOPE_EXTERN_TEMPLATES) must keep gradscope's heavy code out of the files
// that use it: this file trains a small model the way examples/mnist_mlp.cpp does, and
// check_symbols.cmake asserts that its object file only *references* the functions listed there
// (compiled once, in the instantiation unit) and defines none of them. A member function defined
// inside its class body is implicitly inline, and GCC instantiates inline members of a class
// even when an extern template declaration names the class: moving one back into its class
// makes this test fail with the symbol's name.
#include <gradscope/data/data.hpp>
#include <gradscope/gradscope.hpp>
#include <gradscope/util/util.hpp>

#include <cstdio>

namespace gs = gradscope;
using T = float;

int main(int argc, char** argv) {
  int width = 16;
  std::string init = "he_normal";
  gs::util::ArgParser args("compiled-mode probe");
  args.option("--width", width, "units").range(1, 1024);
  args.option("--init", init, "initialiser");
  if (!args.parse(argc, argv)) return 0;

  gs::data::Dataset<T> data = gs::data::synthetic_digits<T>(200, 1);
  gs::nn::Sequential<T> net;
  net.add<gs::nn::Dense>(data.features(), width, gs::init::by_name(init));
  net.add<gs::nn::BatchNorm>(width);
  net.add<gs::nn::ReLU>();
  net.add(gs::nn::residual_block<T>(width));
  net.add<gs::nn::Dense>(width, data.classes);
  gs::optim::Adam<T> opt(net.parameters(), {.lr = 1e-3f});
  gs::optim::LrScheduler<T> sched(opt, gs::optim::schedule::cosine(100));
  gs::diagnostics::GradientMonitor<T> monitor(net);
  gs::data::DataLoader<T> loader(data, {.batch_size = 32});
  gs::util::Progress progress(data.size(), "probe");
  gs::Tape<T> tape;
  gs::Index seen = 0;
  for (auto& [x, y] : loader) {
    tape.reset();
    auto loss = gs::nn::softmax_cross_entropy(net(x), y);
    tape.backward(loss);
    monitor.record_gradients(loss.item());
    gs::optim::clip_grad_norm(net.parameters(), 5.0);
    opt.step();
    monitor.record_update();
    opt.zero_grad();
    sched.step();
    progress.update(seen += static_cast<gs::Index>(y.size()));
  }
  progress.finish();
  const auto w = net.parameters().front();
  std::printf("%s\n%g\n", monitor.report().c_str(), static_cast<double>(w.grad().sum()));
  return 0;
}
