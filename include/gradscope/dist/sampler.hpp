#pragma once
/// DistributedSampler: each rank's disjoint shard of every epoch's permutation of a dataset.
/// Needs no MPI (the rank and the number of ranks are plain numbers).

#include <cstdint>
#include <numeric>
#include <vector>

#include "../core/core.hpp"

namespace gradscope::dist {

/// Settings of a DistributedSampler.
struct SamplerOptions {
  bool shuffle = true;     ///< a new permutation every epoch (false: the rows in order)
  std::uint64_t seed = 0;  ///< the permutation of epoch e depends on (seed, e) only
  /// Drop the rows that do not divide evenly among the ranks (true), or pad every shard to the
  /// same length by repeating the permutation's first rows (false, as PyTorch does).
  bool drop_last = false;
};

/// Splits every epoch's permutation of `dataset_size` rows into `ranks` disjoint shards of equal
/// length, rank r taking positions r, r + ranks, r + 2 ranks, ... (PyTorch's DistributedSampler).
/// Every rank builds the same permutation from (seed, epoch), so nothing is communicated. With
/// per-rank batches of b rows, step k's batches of all ranks together are positions
/// [k b ranks, (k + 1) b ranks) of the permutation: one process with batches of b * ranks rows
/// over the same permutation sees the same global batches. Equal shard lengths make every rank
/// run the same number of steps (a rank with one batch more would wait in a collective forever).
class DistributedSampler {
 public:
  DistributedSampler(Index dataset_size, int rank, int ranks, SamplerOptions opt = {})
      : n_(dataset_size), rank_(rank), ranks_(ranks), opt_(opt) {
    if (ranks < 1 || rank < 0 || rank >= ranks)
      throw ValueError(
          gradscope::detail::cat("DistributedSampler: rank ", rank, " is not in [0, ", ranks, ")"));
    if (dataset_size < 0)
      throw ValueError(gradscope::detail::cat("DistributedSampler: dataset size ", dataset_size,
                                              " is negative"));
    per_rank_ = opt.drop_last ? n_ / ranks : (n_ + ranks - 1) / ranks;
    if (per_rank_ == 0)
      throw ValueError(gradscope::detail::cat("DistributedSampler: ", n_, " rows cannot give ",
                                              ranks, " ranks one row each"));
  }

  /// Rows in this rank's shard of every epoch.
  Index size() const noexcept { return per_rank_; }
  /// Rows of all shards together (the dataset size, rounded to a multiple of the ranks).
  Index total_size() const noexcept { return per_rank_ * ranks_; }
  int rank() const noexcept { return rank_; }
  int ranks() const noexcept { return ranks_; }
  /// Chooses the epoch whose permutation indices() gives (call it before each epoch, with the
  /// same number on every rank; a resumed run passes the epoch it resumes at).
  void set_epoch(std::int64_t epoch) noexcept { epoch_ = epoch; }
  std::int64_t epoch() const noexcept { return epoch_; }

  /// This rank's shard of the current epoch's permutation, in the order to visit it.
  std::vector<Index> indices() const {
    std::vector<Index> out;
    indices(out);
    return out;
  }
  /// The same into `out` (resized to size()).
  void indices(std::vector<Index>& out) const {
    std::vector<Index> perm(static_cast<std::size_t>(n_));
    std::iota(perm.begin(), perm.end(), Index{0});
    if (opt_.shuffle) {
      Rng rng(opt_.seed ^ (0xD1B54A32D192ED03ull * static_cast<std::uint64_t>(epoch_ + 1)));
      for (std::size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[rng.below(i)]);
    }
    out.resize(static_cast<std::size_t>(per_rank_));
    for (Index j = 0; j < per_rank_; ++j) {
      const Index pos = rank_ + j * ranks_;  // < total_size(); past n_ only when padding
      out[static_cast<std::size_t>(j)] = perm[static_cast<std::size_t>(pos % n_)];
    }
  }

 private:
  Index n_;
  int rank_, ranks_;
  SamplerOptions opt_;
  Index per_rank_ = 0;
  std::int64_t epoch_ = 0;
};

}  // namespace gradscope::dist
