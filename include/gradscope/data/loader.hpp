#pragma once
/// DataLoader: seeded shuffling every epoch and batching into tensors, with the batch tensors
/// reused so that iterating allocates nothing after the first epoch.

#include <concepts>
#include <functional>
#include <numeric>
#include <span>
#include <vector>

#include "../core/core.hpp"
#include "dataset.hpp"

namespace gradscope::data {

/// One batch: x is [batch, features] and y its labels. Both are views into buffers the loader
/// reuses for the next batch: copy them (x.detach()) to keep one.
template <Scalar T>
struct Batch {
  Tensor<T> x;
  std::span<const int> y;
};

/// Options of a DataLoader.
struct LoaderOptions {
  Index batch_size = 128;
  bool shuffle = true;
  std::uint64_t seed = 0;
  bool drop_last = false;  ///< drop the last, smaller batch of an epoch
};

/// What picks a loader's rows each epoch instead of its own shuffle (dist::DistributedSampler):
/// size() rows every epoch, indices(out) fills the current epoch's rows in visiting order.
template <class S>
concept RowSampler = requires(const S& s, std::vector<Index>& out) {
  { s.size() } -> std::convertible_to<Index>;
  s.indices(out);
};

/// Iterates a dataset in batches; each range-for over it is one epoch (reshuffled when
/// `shuffle`). The dataset must outlive the loader.
template <Scalar T>
class DataLoader {
 public:
  DataLoader(const Dataset<T>& data, LoaderOptions opt = {});
  /// Iterates the rows `sampler` picks each epoch, in its order (the options' shuffle and seed
  /// are not used). The sampler is read at the start of every epoch and must outlive the loader.
  template <RowSampler S>
  DataLoader(const Dataset<T>& data, const S& sampler, LoaderOptions opt = {})
      : DataLoader(data, static_cast<Index>(sampler.size()), opt) {
    sampler_ = [&sampler](std::vector<Index>& out) { sampler.indices(out); };
  }
  /// A temporary sampler would be gone before the first epoch.
  template <RowSampler S>
  DataLoader(const Dataset<T>& data, const S&& sampler, LoaderOptions opt = {}) = delete;

  /// Number of batches in one epoch.
  Index batches() const {
    const Index n = rows_, b = opt_.batch_size;
    return opt_.drop_last ? n / b : (n + b - 1) / b;
  }
  /// Epochs started so far.
  std::int64_t epoch() const noexcept { return epoch_; }
  /// Puts the loader where it is after `epochs` epochs, for resuming a run from a checkpoint:
  /// the next epoch gets the order an uninterrupted run would give it. (Each epoch shuffles the
  /// previous epoch's order, so this replays the shuffles from the seed: O(epochs x size).)
  void set_epoch(std::int64_t epochs);

  class iterator {
   public:
    iterator(DataLoader* l, Index k) : l_(l), k_(k) {
      if (l_ && k_ < l_->batches()) l_->fill(k_);
    }
    Batch<T>& operator*() { return l_->batch_; }
    Batch<T>* operator->() { return &l_->batch_; }
    iterator& operator++() {
      ++k_;
      if (k_ < l_->batches()) l_->fill(k_);
      return *this;
    }
    bool operator!=(const iterator& o) const { return k_ != o.k_; }
    bool operator==(const iterator& o) const { return k_ == o.k_; }

   private:
    DataLoader* l_;
    Index k_;
  };

  /// Starts an epoch (reshuffling when enabled).
  iterator begin();
  iterator end() { return iterator(nullptr, batches()); }

 private:
  DataLoader(const Dataset<T>& data, Index rows, LoaderOptions opt);
  void fill(Index k);
  // The next epoch's order: the last one shuffled (when enabled).
  void next_order();

  const Dataset<T>& data_;
  Index rows_;  // rows per epoch: the dataset's, or the sampler's
  std::function<void(std::vector<Index>&)> sampler_;
  LoaderOptions opt_;
  Rng rng_;
  std::vector<Index> order_;
  Tensor<T> full_, tail_;
  std::vector<int> labels_;
  Batch<T> batch_;
  std::int64_t epoch_ = 0;
};

template <Scalar T>
DataLoader<T>::DataLoader(const Dataset<T>& data, LoaderOptions opt)
    : DataLoader(data, data.size(), opt) {}

template <Scalar T>
DataLoader<T>::DataLoader(const Dataset<T>& data, Index rows, LoaderOptions opt)
    : data_(data), rows_(rows), opt_(opt), rng_(opt.seed) {
  if (opt.batch_size <= 0)
    throw ValueError(
        gradscope::detail::cat("DataLoader: batch_size must be > 0, got ", opt.batch_size));
  if (static_cast<std::size_t>(data.size()) != data.labels.size())
    throw ValueError(gradscope::detail::cat("DataLoader: the dataset has ", data.size(),
                                            " images but ", data.labels.size(), " labels"));
  if (rows < 0) throw ValueError(gradscope::detail::cat("DataLoader: sampler size ", rows, " < 0"));
  order_.resize(static_cast<std::size_t>(rows));
  std::iota(order_.begin(), order_.end(), Index{0});
  const Index full = std::min(opt.batch_size, rows);
  full_ = Tensor<T>::zeros(std::max<Index>(full, 1), data.features());
  const Index rest = rows % opt.batch_size;
  if (rest && rows > opt.batch_size) tail_ = Tensor<T>::zeros(rest, data.features());
  labels_.resize(static_cast<std::size_t>(std::max<Index>(full, 1)));
}

template <Scalar T>
void DataLoader<T>::set_epoch(std::int64_t epochs) {
  if (epochs < 0)
    throw ValueError(gradscope::detail::cat("DataLoader::set_epoch: ", epochs, " epochs"));
  rng_.seed(opt_.seed);
  std::iota(order_.begin(), order_.end(), Index{0});
  epoch_ = 0;
  for (std::int64_t e = 0; e < epochs; ++e) next_order();
}

template <Scalar T>
void DataLoader<T>::next_order() {
  if (sampler_) {
    sampler_(order_);
    if (static_cast<Index>(order_.size()) != rows_)
      throw ValueError(gradscope::detail::cat("DataLoader: the sampler gave ", order_.size(),
                                              " rows, its size() said ", rows_));
    for (const Index i : order_)
      if (i < 0 || i >= data_.size())
        throw ValueError(gradscope::detail::cat("DataLoader: the sampler gave row ", i,
                                                " of a dataset of ", data_.size()));
  } else if (opt_.shuffle) {
    for (std::size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng_.below(i)]);
  }
  ++epoch_;
}

template <Scalar T>
typename DataLoader<T>::iterator DataLoader<T>::begin() {
  next_order();
  return iterator(this, 0);
}

template <Scalar T>
void DataLoader<T>::fill(Index k) {
  const Index b = opt_.batch_size;
  const Index start = k * b;
  const Index n = std::min(b, rows_ - start);
  Tensor<T>& x = (n == full_.rows()) ? full_ : tail_;
  auto xv = x.mutable_value();
  for (Index i = 0; i < n; ++i) {
    const Index row = order_[static_cast<std::size_t>(start + i)];
    xv.row(i) = data_.images.row(row);
    labels_[static_cast<std::size_t>(i)] = data_.labels[static_cast<std::size_t>(row)];
  }
  batch_.x = x;
  batch_.y = std::span<const int>(labels_.data(), static_cast<std::size_t>(n));
}

}  // namespace gradscope::data
