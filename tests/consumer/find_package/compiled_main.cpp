// The compiled mode of README's "Build time" section, as a downstream program uses it: every file
// defines GRADSCOPE_EXTERN_TEMPLATES, this one declares gradscope's heavy functions only, and
// compiled_instances.cpp compiles them once. Exercises one function of each compiled component
// (training, diagnosis, safetensors, IDX) so that a missing definition fails the link.
#include <gradscope/data/data.hpp>
#include <gradscope/gradscope.hpp>
#include <gradscope/io/io.hpp>

#include <cstdio>
#include <filesystem>

namespace gs = gradscope;

int main() {
  gs::nn::Sequential<float> net;
  net.add<gs::nn::Dense>(4, 8, gs::init::he_normal);
  net.add<gs::nn::ReLU>();
  net.add<gs::nn::Dense>(8, 10, gs::init::xavier_uniform);
  gs::optim::SGD<float> opt(net.parameters(), {.lr = 0.1f});
  gs::diagnostics::GradientMonitor<float> monitor(net, {.every = 1});
  const auto data = gs::data::synthetic_digits<float>(32, 1);
  gs::Tape<float> tape;
  gs::Tensor<float> x(data.images.leftCols(4));
  auto loss = gs::nn::softmax_cross_entropy(net(x), data.labels);
  tape.backward(loss);
  monitor.record_gradients(loss.item());
  opt.step();
  const std::string report = monitor.report();

  const auto bytes = gs::io::encode_checkpoint(net, &opt);
  const auto file = gs::io::parse_safetensors(bytes);

  const auto dir = std::filesystem::temp_directory_path();
  const std::string idx = (dir / "gradscope_consumer_labels.idx").string();
  gs::data::write_idx(idx, gs::data::IdxArray{{3}, {0, 1, 2}});
  const auto labels = gs::data::read_idx_labels(idx, 3);
  std::filesystem::remove(idx);

  std::printf("gradscope %s (find_package, compiled mode: %zu tensors, %zu labels, %zu chars)\n",
              gs::version(), file.tensors().size(), labels.size(), report.size());
  return labels.size() == 3 && !file.tensors().empty() && !report.empty() ? 0 : 1;
}
