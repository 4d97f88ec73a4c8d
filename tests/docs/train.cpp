// Prelude of the docs' training fragments (scripts/check-docs.sh, <!-- docs-check: prelude
// train -->): the names those fragments use, defined on a small problem (64 samples of 4
// features, 3 classes), so that each fragment compiles and runs as written. The fragment is
// pasted at @FRAGMENT inside a scope of its own (it may redeclare these names); its #include
// lines and namespace aliases at @HOIST.
#include <gradscope/data/data.hpp>
#include <gradscope/gradscope.hpp>
#include <gradscope/io/io.hpp>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace optim = gradscope::optim;
namespace io = gradscope::io;
namespace dg = gradscope::diagnostics;
namespace pt = gradscope::pretrain;

// @HOIST

int main() {
  gs::Rng rng(1);
  gs::data::Dataset<float> train;  // 64 samples, 4 features, 3 classes
  train.images = gs::Matrix<float>::Random(64, 4);
  train.classes = 3;
  train.image_rows = 2;
  train.image_cols = 2;
  for (int i = 0; i < 64; ++i) train.labels.push_back(i % 3);
  gs::data::DataLoader<float> loader(train, {.batch_size = 16, .seed = 1});

  nn::Sequential<float> net;  // 4 -> 8 -> 3
  net.add<nn::Dense>(4, 8, gs::init::he_normal, true, &rng);
  net.add<nn::ReLU>();
  net.add<nn::Dense>(8, 3, gs::init::xavier_uniform, true, &rng);
  auto params = net.parameters();
  gs::Tensor<float>& p = params[0];
  optim::SGD<float> opt(params, {.lr = 0.01f});
  gs::Tape<float> tape;
  dg::GradientMonitor<float> monitor(net);

  // One batch, by two names each.
  const gs::Tensor<float> x(train.images.topRows(16)), xb = x;
  const std::vector<int> labels(train.labels.begin(), train.labels.begin() + 16), y = labels,
                                                                                  yb = labels;
  const gs::Matrix<float> images = train.images;

  // A body, a head and an embedding table (parameter groups).
  nn::Sequential<float> body, head;
  body.add<nn::Dense>(4, 8);
  head.add<nn::Dense>(8, 3);
  gs::Tensor<float> embedding = gs::Tensor<float>::parameter(gs::Matrix<float>::Zero(5, 2));

  // An encoder and its activation (auto-encoders).
  auto dense = std::make_shared<nn::Dense<float>>(4, 3, gs::init::xavier_uniform, true, &rng);
  auto sigmoid = std::make_shared<nn::Sigmoid<float>>();

  // Run bookkeeping.
  const float lambda = 5.0f;
  const float n = 64;
  const int epoch = 0, epochs = 1, steps = 100;
  const std::string path = "run.safetensors";
  {
    // @FRAGMENT
  }
  return 0;
}
