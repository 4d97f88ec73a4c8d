#pragma once
/// Datasets of images and integer labels: loading an MNIST-format directory, splitting,
/// standardising.

#include <filesystem>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "../core/core.hpp"
#include "idx.hpp"

namespace gradscope::data {

/// Images as rows of a matrix (one image per row, pixels scaled to [0, 1]) and their labels.
template <Scalar T>
struct Dataset {
  Matrix<T> images;
  std::vector<int> labels;
  int classes = 10;
  Index image_rows = 28;  ///< the image geometry (images.cols() == image_rows * image_cols)
  Index image_cols = 28;

  Index size() const noexcept { return images.rows(); }
  Index features() const noexcept { return images.cols(); }

  /// The rows at the given indices, as a new dataset. ValueError for an index outside
  /// [0, size()).
  Dataset subset(const std::vector<Index>& rows) const;

  /// Splits off the last `n` rows after a seeded shuffle: {train, validation}.
  std::pair<Dataset, Dataset> split(Index n, std::uint64_t seed = 0) const;

  /// The mean and standard deviation over every pixel of every image (one number each, as is
  /// usual for MNIST: 0.1307 and 0.3081).
  std::pair<T, T> mean_std() const;
  /// x <- (x - mean) / std for every pixel (use the training set's numbers for every split).
  void standardize(T mean, T stddev);
};

template <Scalar T>
Dataset<T> Dataset<T>::subset(const std::vector<Index>& rows) const {
  for (std::size_t k = 0; k < rows.size(); ++k)
    if (rows[k] < 0 || rows[k] >= size())
      throw ValueError(gradscope::detail::cat("Dataset::subset: index ", k, " is ", rows[k],
                                              ", outside the ", size(), " rows"));
  if (static_cast<std::size_t>(size()) != labels.size())
    throw ValueError(gradscope::detail::cat("Dataset::subset: the dataset has ", size(),
                                            " images but ", labels.size(), " labels"));
  Dataset d;
  d.classes = classes;
  d.image_rows = image_rows;
  d.image_cols = image_cols;
  d.images.resize(static_cast<Index>(rows.size()), images.cols());
  d.labels.resize(rows.size());
  for (std::size_t k = 0; k < rows.size(); ++k) {
    d.images.row(static_cast<Index>(k)) = images.row(rows[k]);
    d.labels[k] = labels[static_cast<std::size_t>(rows[k])];
  }
  return d;
}

template <Scalar T>
std::pair<Dataset<T>, Dataset<T>> Dataset<T>::split(Index n, std::uint64_t seed) const {
  if (n < 0 || n > size())
    throw ValueError(
        gradscope::detail::cat("Dataset::split: cannot take ", n, " of ", size(), " rows"));
  std::vector<Index> order(static_cast<std::size_t>(size()));
  std::iota(order.begin(), order.end(), Index{0});
  Rng rng(seed);
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  std::vector<Index> a(order.begin(), order.end() - n), b(order.end() - n, order.end());
  return {subset(a), subset(b)};
}

template <Scalar T>
std::pair<T, T> Dataset<T>::mean_std() const {
  const double n = static_cast<double>(images.size());
  const double mean = static_cast<double>(images.sum()) / n;
  const double var = static_cast<double>(images.array().square().sum()) / n - mean * mean;
  return {static_cast<T>(mean), static_cast<T>(std::sqrt(std::max(var, 1e-12)))};
}

template <Scalar T>
void Dataset<T>::standardize(T mean, T stddev) {
  images.array() = (images.array() - mean) / stddev;
}

/// Loads `<dir>/<split>-images-idx3-ubyte[.gz]` and `<dir>/<split>-labels-idx1-ubyte[.gz]`
/// (split "train" or "t10k"), pixels scaled to [0, 1]. Throws DataError naming what is missing
/// or inconsistent.
template <Scalar T>
Dataset<T> load_idx_dataset(const std::string& dir, const std::string& split, int classes = 10) {
  namespace fs = std::filesystem;
  auto find = [&](const std::string& stem) {
    for (const char* ext : {".gz", ""}) {
      const fs::path p = fs::path(dir) / (stem + ext);
      if (fs::exists(p)) return p.string();
    }
    throw DataError("no '" + stem + "' or '" + stem + ".gz' in directory '" + dir + "'");
  };
  const std::string images_path = find(split + "-images-idx3-ubyte");
  const std::string labels_path = find(split + "-labels-idx1-ubyte");
  const IdxArray img = read_idx(images_path, 3);
  Dataset<T> d;
  d.classes = classes;
  d.labels = read_idx_labels(labels_path, classes);
  if (d.labels.size() != img.dims[0])
    throw DataError("'" + labels_path + "' has " + std::to_string(d.labels.size()) +
                    " labels but '" + images_path + "' has " + std::to_string(img.dims[0]) +
                    " images");
  d.image_rows = img.dims[1];
  d.image_cols = img.dims[2];
  const Index n = img.dims[0], f = static_cast<Index>(img.dims[1]) * img.dims[2];
  d.images.resize(n, f);
  for (Index i = 0; i < n * f; ++i)
    d.images.data()[i] = static_cast<T>(img.data[static_cast<std::size_t>(i)]) / T(255);
  return d;
}

}  // namespace gradscope::data
