#pragma once
// The cases of bench_mlp_train and the peer benchmarks (bench/peers/): the nets and batch sizes,
// the training constants, and the pool of random batches every side trains on.
#include <Eigen/Core>

#include <gradscope/core/rng.hpp>

#include <cstdint>
#include <utility>
#include <vector>

#include "reference/nets.hpp"

namespace gradscope_bench::mlp {

using Mat = reference::Mat<float>;

constexpr float kLr = 0.01f;
constexpr int kPool = 4;  // batches cycled through
constexpr std::uint64_t kWeightSeed = 20240611;
constexpr std::uint64_t kDataSeed = 7;

struct Case {
  char net;
  Eigen::Index batch;
};
constexpr Case kCases[] = {{'A', 10},  {'A', 128}, {'B', 32}, {'B', 128},
                           {'C', 128}, {'D', 128}, {'E', 128}};

/// kPool batches: pixels uniform in [0, 1), labels uniform in 0..classes-1, drawn in this order
/// from kDataSeed, so every benchmark trains on the same data.
struct Batches {
  std::vector<Mat> x;
  std::vector<std::vector<int>> labels;

  Batches(Eigen::Index batch, Eigen::Index in, Eigen::Index classes) {
    gradscope::Rng rng(kDataSeed);
    for (int k = 0; k < kPool; ++k) {
      Mat m(batch, in);
      for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng.uniform());
      std::vector<int> y(static_cast<std::size_t>(batch));
      for (auto& v : y) v = static_cast<int>(rng.below(static_cast<std::uint64_t>(classes)));
      x.push_back(std::move(m));
      labels.push_back(std::move(y));
    }
  }
};

}  // namespace gradscope_bench::mlp
