#pragma once
/// DataParallel<T>: data-parallel training over MPI. Every rank holds a replica of the model,
/// computes gradients on its own shard of each global batch, and the gradients are averaged
/// across ranks (bucketed MPI_Allreduce) before clipping and the optimiser step, so every
/// replica takes the same step.

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "../core/core.hpp"
#include "../nn/layers.hpp"
#include "../nn/module.hpp"
#include "../optim/optimizer.hpp"
#include "context.hpp"

namespace gradscope::dist {

/// Settings of a DataParallel.
struct DataParallelOptions {
  /// Gradient bytes per MPI_Allreduce: the gradients are copied into buckets of about this size
  /// (a parameter larger than a bucket gets one of its own), in the reverse order of the model's
  /// parameters, the order backward produces them.
  std::size_t bucket_bytes = std::size_t{8} << 20;
  /// Broadcast rank 0's parameters and buffers to every rank in the constructor.
  bool broadcast = true;
  /// When every rank is on one node (one shared-memory domain): sum the gradients through an
  /// MPI shared-memory window (each rank adds up its slice of everyone's buckets in place,
  /// then reads the others' slices) instead of MPI_Allreduce's copies through shared memory.
  /// Off, or across nodes: MPI_Allreduce.
  bool shared_memory = true;
  /// A non-finite gradient on any rank: error throws NonFiniteGradientError on every rank at
  /// once (the step is not taken); skip and proceed return the finding in the StepSummary and
  /// leave the decision to the optimiser's own policy (the averaged gradients are then
  /// non-finite on every rank, so every rank decides alike).
  optim::NonFinite non_finite = optim::NonFinite::error;
  /// Reseed the model's Dropout layers per rank (from this seed, the rank and the layer's
  /// position), so ranks draw different masks, as one process draws different masks for
  /// different rows. Nothing is reseeded with one rank.
  bool reseed_dropout = true;
  std::uint64_t dropout_seed = 0x6A09E667F3BCC909ull;
};

/// A non-finite gradient found on some rank, thrown on every rank at once (ranks() lists where).
class NonFiniteGradientError : public CollectiveError {
 public:
  using CollectiveError::CollectiveError;
};

/// What allreduce_gradients() found: the global figures of the step.
struct StepSummary {
  /// The global loss: the ranks' losses weighted by their sample counts (NaN if a rank gave none).
  double loss = std::numeric_limits<double>::quiet_NaN();
  /// The global batch: the sum of the ranks' sample counts (the number of ranks when none gave
  /// counts).
  double samples = 0;
  /// False when some rank's gradient held a NaN or Inf (under NonFinite::skip or proceed).
  bool finite = true;
  /// The ranks whose gradients were not finite.
  std::vector<int> non_finite_ranks{};
  /// Which rank and parameter, e.g. "rank 1: parameter '0.weight' of shape [32, 784]".
  std::string non_finite_detail{};
};

/// Time spent in communication since construction (or reset_timing()).
struct CommTiming {
  /// summing the gradients: in MPI_Allreduce, or (shared memory) in the two barriers and the
  /// sum of this rank's slice; includes waiting for the slowest rank
  double allreduce_seconds = 0;
  double copy_seconds = 0;  ///< packing gradients into the buckets and back
  std::int64_t steps = 0;   ///< allreduce_gradients() calls
};

/// Averages gradients across the ranks of a communicator. Per training step, on every rank:
///
///     tape.backward(loss);                                   // this rank's shard of the batch
///     auto g = dp.allreduce_gradients(y.size(), loss.item()); // every rank: the same gradients
///     monitor.gradients_changed(); monitor.record_gradients(g.loss);
///     clip_grad_norm(params, 1.0); opt.step(); opt.zero_grad();
///
/// The average is weighted by the sample counts given (the gradient of the global batch's mean
/// loss when the loss is a mean over samples), or plain over ranks when none are given.
/// Batch norm normalises with each rank's own batch statistics (as PyTorch's BatchNorm under
/// DistributedDataParallel); synchronize_buffers() averages the running statistics (call it at
/// the end of each epoch, before evaluating or saving).
template <Scalar T>
class DataParallel {
 public:
  explicit DataParallel(nn::Module<T>& model, MPI_Comm comm = MPI_COMM_WORLD,
                        DataParallelOptions opt = {});
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  /// Collective when the shared-memory window is in use: destroy it at the same point on every
  /// rank. (Unwinding from an exception, it leaves the window to MPI_Finalize instead, since
  /// the other ranks may not be unwinding.)
  ~DataParallel();

  /// Averages every parameter's gradient across the ranks, in place; collective. `samples`:
  /// this rank's batch size (0: weigh ranks equally); `loss`: this rank's mean loss, averaged
  /// into StepSummary::loss. A non-finite gradient on any rank is handled by the options'
  /// policy (see DataParallelOptions::non_finite).
  StepSummary allreduce_gradients(Index samples = 0,
                                  double loss = std::numeric_limits<double>::quiet_NaN());

  /// Copies rank `root`'s parameters and buffers to every rank; collective.
  void broadcast_parameters(int root = 0);
  /// Replaces every buffer (batch-norm running statistics) by its mean over the ranks;
  /// collective.
  void synchronize_buffers();
  /// Throws CollectiveError on every rank when some rank's parameters or buffers differ from
  /// rank 0's (bit for bit), naming the rank and the first tensor that differs; collective.
  void check_consistent();

  /// The mean of `v` over the ranks; collective.
  double mean(double v) const { return sum(v) / static_cast<double>(size_); }
  /// The sum of `v` over the ranks; collective.
  double sum(double v) const {
    detail::check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
    return v;
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  /// True when the gradients are summed through a shared-memory window (see the options).
  bool uses_shared_memory() const noexcept { return shm_; }
  MPI_Comm comm() const noexcept { return comm_; }
  /// The gradient buckets, as [first, last) offsets into the flat buffer, in allreduce order.
  const std::vector<std::pair<Index, Index>>& buckets() const noexcept { return buckets_; }
  const CommTiming& timing() const noexcept { return timing_; }
  void reset_timing() noexcept { timing_ = {}; }

 private:
  // Slots after the gradients in the flat buffer: the sample weight, weight * loss, whether a
  // loss was given, and whether this rank's gradients were non-finite. Small integers and sums
  // of them are exact in float, so every rank reads the same counts.
  enum Tail : Index { weight = 0, weighted_loss, has_loss, non_finite, tail_size };

  void allreduce(T* data, Index n, MPI_Op op) const;
  void bcast(T* data, Index n, int root) const;
  std::string describe_bad(int rank, int param) const;
  void open_window();
  void node_sync() const;
  void reduce_own_slice() const;
  /// Calls f(sums, first, last) for the summed values of [first, last), in pieces that each
  /// lie in one place (one rank's window segment, or the flat buffer).
  template <class F>
  void for_each_result(Index first, Index last, F&& f) const;

  nn::Module<T>& model_;
  MPI_Comm comm_;
  DataParallelOptions opt_;
  int rank_ = 0, size_ = 1;
  std::vector<Tensor<T>> params_;  // in allreduce order (reverse of the model's)
  std::vector<Index> offsets_;     // of each parameter's gradient in flat_
  std::vector<std::pair<Index, Index>> buckets_;
  std::vector<T> flat_;  // the gradients, then the tail (MPI_Allreduce path)
  CommTiming timing_;
  // The shared-memory path: two windows used in turn (a rank may still be reading the previous
  // step's sums from one while another packs the next step into the other), each with one
  // segment per rank; rank r sums slice r of every segment into its own.
  bool shm_ = false;
  MPI_Comm node_ = MPI_COMM_NULL;
  MPI_Win win_[2] = {MPI_WIN_NULL, MPI_WIN_NULL};
  std::vector<T*> seg_[2];
  std::vector<Index> slice_;  // slice r is [slice_[r], slice_[r + 1])
  int turn_ = 0;
  Index n_ = 0;  // gradients and tail
};

template <Scalar T>
DataParallel<T>::DataParallel(nn::Module<T>& model, MPI_Comm comm, DataParallelOptions opt)
    : model_(model), comm_(comm), opt_(opt) {
  detail::check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  detail::check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  if (opt_.bucket_bytes == 0) throw ValueError("DataParallel: bucket_bytes must be > 0");
  params_ = model.parameters();
  std::reverse(params_.begin(), params_.end());
  const Index per_bucket = std::max<Index>(1, static_cast<Index>(opt_.bucket_bytes / sizeof(T)));
  Index offset = 0, bucket_start = 0;
  for (const auto& p : params_) {
    offsets_.push_back(offset);
    offset += p.size();
    if (offset - bucket_start >= per_bucket) {
      buckets_.emplace_back(bucket_start, offset);
      bucket_start = offset;
    }
  }
  offset += tail_size;  // the tail rides with the last bucket
  buckets_.emplace_back(bucket_start, offset);
  n_ = offset;
  if (opt_.shared_memory && size_ > 1) open_window();
  if (!shm_) flat_.assign(static_cast<std::size_t>(offset), T(0));
  if (opt_.reseed_dropout && size_ > 1) {
    std::uint64_t k = 0;
    model.visit([&](nn::Module<T>& m) {
      ++k;
      if (auto* d = dynamic_cast<nn::Dropout<T>*>(&m)) {
        Rng mix(opt_.dropout_seed ^ (k * 0x9E3779B97F4A7C15ull) ^
                (static_cast<std::uint64_t>(rank_) << 32));
        d->seed(mix.next_u64());
      }
    });
  }
  if (opt_.broadcast) broadcast_parameters(0);
}

template <Scalar T>
DataParallel<T>::~DataParallel() {
  if (!shm_ || std::uncaught_exceptions() > 0) return;
  for (auto& w : win_) {
    MPI_Win_unlock_all(w);
    MPI_Win_free(&w);
  }
  MPI_Comm_free(&node_);
}

template <Scalar T>
void DataParallel<T>::open_window() {
  detail::check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_),
                "MPI_Comm_split_type");
  int node_size = 0, node_rank = 0;
  MPI_Comm_size(node_, &node_size);
  MPI_Comm_rank(node_, &node_rank);
  // Every rank must reach every segment: only when the whole communicator is one node (and
  // the node communicator keeps the ranks' order, as the key asks).
  int all_local = node_size == size_ && node_rank == rank_ ? 1 : 0;
  detail::check(MPI_Allreduce(MPI_IN_PLACE, &all_local, 1, MPI_INT, MPI_MIN, comm_),
                "MPI_Allreduce");
  if (!all_local) {
    MPI_Comm_free(&node_);
    return;
  }
  MPI_Info info;
  MPI_Info_create(&info);
  MPI_Info_set(info, "alloc_shared_noncontig", "true");  // each segment near its rank
  for (int t = 0; t < 2; ++t) {
    T* base = nullptr;
    detail::check(
        MPI_Win_allocate_shared(static_cast<MPI_Aint>(n_ * Index{sizeof(T)}),
                                static_cast<int>(sizeof(T)), info, node_, &base, &win_[t]),
        "MPI_Win_allocate_shared");
    detail::check(MPI_Win_lock_all(MPI_MODE_NOCHECK, win_[t]), "MPI_Win_lock_all");
    seg_[t].resize(static_cast<std::size_t>(size_));
    for (int r = 0; r < size_; ++r) {
      MPI_Aint bytes = 0;
      int unit = 0;
      T* p = nullptr;
      detail::check(MPI_Win_shared_query(win_[t], r, &bytes, &unit, &p), "MPI_Win_shared_query");
      seg_[t][static_cast<std::size_t>(r)] = p;
    }
  }
  MPI_Info_free(&info);
  slice_.resize(static_cast<std::size_t>(size_) + 1);
  for (int r = 0; r <= size_; ++r) slice_[static_cast<std::size_t>(r)] = n_ * r / size_;
  shm_ = true;
}

template <Scalar T>
void DataParallel<T>::node_sync() const {
  // The unified memory model of shared windows: a memory barrier, every rank, a memory barrier.
  detail::check(MPI_Win_sync(win_[turn_]), "MPI_Win_sync");
  detail::check(MPI_Barrier(node_), "MPI_Barrier");
  detail::check(MPI_Win_sync(win_[turn_]), "MPI_Win_sync");
}

template <Scalar T>
void DataParallel<T>::reduce_own_slice() const {
  // Sums in rank order (the same order for every element, whichever rank sums it), in chunks
  // that stay in cache, into this rank's own segment.
  const auto& seg = seg_[turn_];
  const Index first = slice_[static_cast<std::size_t>(rank_)];
  const Index last = slice_[static_cast<std::size_t>(rank_) + 1];
  constexpr Index chunk = 2048;
  T acc[chunk];
  for (Index k = first; k < last; k += chunk) {
    const Index n = std::min(chunk, last - k);
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> a(acc, n);
    a = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(seg[0] + k, n);
    for (std::size_t r = 1; r < seg.size(); ++r)
      a += Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(seg[r] + k, n);
    std::copy_n(acc, n, seg[static_cast<std::size_t>(rank_)] + k);
  }
}

template <Scalar T>
template <class F>
void DataParallel<T>::for_each_result(Index first, Index last, F&& f) const {
  if (!shm_) {
    f(flat_.data() + first, first, last);
    return;
  }
  for (int r = 0; r < size_ && first < last; ++r) {
    const Index lo = std::max(first, slice_[static_cast<std::size_t>(r)]);
    const Index hi = std::min(last, slice_[static_cast<std::size_t>(r) + 1]);
    if (lo < hi) f(seg_[turn_][static_cast<std::size_t>(r)] + lo, lo, hi);
  }
}

template <Scalar T>
void DataParallel<T>::allreduce(T* data, Index n, MPI_Op op) const {
  constexpr Index chunk = Index{1} << 30;  // MPI counts are int
  for (Index k = 0; k < n; k += chunk)
    detail::check(MPI_Allreduce(MPI_IN_PLACE, data + k, static_cast<int>(std::min(chunk, n - k)),
                                detail::mpi_type<T>(), op, comm_),
                  "MPI_Allreduce");
}

template <Scalar T>
void DataParallel<T>::bcast(T* data, Index n, int root) const {
  constexpr Index chunk = Index{1} << 30;
  for (Index k = 0; k < n; k += chunk)
    detail::check(MPI_Bcast(data + k, static_cast<int>(std::min(chunk, n - k)),
                            detail::mpi_type<T>(), root, comm_),
                  "MPI_Bcast");
}

template <Scalar T>
StepSummary DataParallel<T>::allreduce_gradients(Index samples, double loss) {
  if (samples < 0)
    throw ValueError(
        gradscope::detail::cat("DataParallel::allreduce_gradients: samples ", samples, " < 0"));
  const double t0 = MPI_Wtime();
  const T w = samples > 0 ? static_cast<T>(samples) : T(1);
  int first_bad = -1;
  if (shm_) turn_ ^= 1;
  T* const buf = shm_ ? seg_[turn_][static_cast<std::size_t>(rank_)] : flat_.data();
  // Copy (and scale) in chunks, each checked for NaN and Inf while it is still in L1.
  constexpr Index chunk = 2048;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const auto g = params_[i].grad();
    bool finite = true;
    for (Index k = 0; k < g.size(); k += chunk) {
      const Index n = std::min(chunk, g.size() - k);
      T* dst = buf + offsets_[i] + k;
      Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> seg(dst, n);
      const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> src(g.data() + k, n);
      if (samples > 0)
        seg = src * w;
      else
        seg = src;
      finite = finite && gradscope::detail::all_finite(dst, n);
    }
    if (first_bad < 0 && !finite) first_bad = static_cast<int>(i);
  }
  T* tail = buf + (n_ - tail_size);
  const bool loss_given = !std::isnan(loss);
  tail[weight] = w;
  tail[weighted_loss] = loss_given ? static_cast<T>(loss) * w : T(0);
  tail[has_loss] = loss_given ? T(1) : T(0);
  tail[non_finite] = first_bad >= 0 ? T(1) : T(0);
  const double t1 = MPI_Wtime();
  if (shm_) {
    node_sync();  // every rank's buckets are in place
    reduce_own_slice();
    node_sync();  // every slice is summed
  } else {
    for (const auto& [first, last] : buckets_) allreduce(buf + first, last - first, MPI_SUM);
  }
  const double t2 = MPI_Wtime();
  T sums[tail_size];
  for_each_result(n_ - tail_size, n_, [&](const T* p, Index lo, Index hi) {
    std::copy_n(p, hi - lo, sums + (lo - (n_ - tail_size)));
  });
  tail = sums;

  StepSummary out;
  out.samples = static_cast<double>(tail[weight]);
  out.loss = tail[has_loss] == T(size_) ? static_cast<double>(tail[weighted_loss]) / out.samples
                                        : std::numeric_limits<double>::quiet_NaN();
  if (tail[non_finite] != T(0)) {
    // Every rank saw the same count: all of them take this branch and gather who it was.
    std::vector<int> bad(static_cast<std::size_t>(size_));
    detail::check(MPI_Allgather(&first_bad, 1, MPI_INT, bad.data(), 1, MPI_INT, comm_),
                  "MPI_Allgather");
    std::string detail_text;
    for (int r = 0; r < size_; ++r)
      if (bad[static_cast<std::size_t>(r)] >= 0) {
        out.non_finite_ranks.push_back(r);
        if (detail_text.empty()) detail_text = describe_bad(r, bad[static_cast<std::size_t>(r)]);
      }
    out.finite = false;
    out.non_finite_detail = detail_text;
    if (opt_.non_finite == optim::NonFinite::error) {
      std::string ranks;
      for (int r : out.non_finite_ranks) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
      timing_.copy_seconds += t1 - t0;
      timing_.allreduce_seconds += t2 - t1;
      throw NonFiniteGradientError(
          gradscope::detail::cat("DataParallel: non-finite gradient on rank ", detail_text,
                                 " (ranks with non-finite gradients: ", ranks, " of ", size_,
                                 "); every rank stopped before the optimizer step"),
          out.non_finite_ranks);
    }
  }
  const T inv = T(1) / tail[weight];
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Tensor<T> p = params_[i];
    T* g = p.mutable_grad().data();
    const Index first = offsets_[i];
    for_each_result(first, first + p.size(), [&](const T* src, Index lo, Index hi) {
      Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(g + (lo - first), hi - lo) =
          Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(src, hi - lo) * inv;
    });
  }
  const double t3 = MPI_Wtime();
  timing_.copy_seconds += (t1 - t0) + (t3 - t2);
  timing_.allreduce_seconds += t2 - t1;
  ++timing_.steps;
  return out;
}

template <Scalar T>
std::string DataParallel<T>::describe_bad(int rank, int param) const {
  const auto& p = params_[static_cast<std::size_t>(param)];
  return gradscope::detail::cat(rank, ": parameter '",
                                p.name().empty() ? std::string("(unnamed)") : p.name(),
                                "' of shape ", p.shape());
}

template <Scalar T>
void DataParallel<T>::broadcast_parameters(int root) {
  if (root < 0 || root >= size_)
    throw ValueError(gradscope::detail::cat("DataParallel::broadcast_parameters: root ", root,
                                            " is not a rank of ", size_));
  std::vector<Tensor<T>> all = model_.parameters();
  for (auto& b : model_.named_buffers()) all.push_back(b.tensor);
  Index n = 0;
  for (const auto& t : all) n += t.size();
  std::vector<T> buf(static_cast<std::size_t>(n));
  Index off = 0;
  for (const auto& t : all) {
    std::copy_n(t.value().data(), t.size(), buf.data() + off);
    off += t.size();
  }
  bcast(buf.data(), n, root);
  off = 0;
  for (auto t : all) {
    std::copy_n(buf.data() + off, t.size(), t.mutable_value().data());
    off += t.size();
  }
}

template <Scalar T>
void DataParallel<T>::synchronize_buffers() {
  auto buffers = model_.named_buffers();
  Index n = 0;
  for (const auto& b : buffers) n += b.tensor.size();
  if (n == 0) return;
  std::vector<T> buf(static_cast<std::size_t>(n));
  Index off = 0;
  for (const auto& b : buffers) {
    std::copy_n(b.tensor.value().data(), b.tensor.size(), buf.data() + off);
    off += b.tensor.size();
  }
  allreduce(buf.data(), n, MPI_SUM);
  const T inv = T(1) / static_cast<T>(size_);
  off = 0;
  for (auto& b : buffers) {
    T* dst = b.tensor.mutable_value().data();
    for (Index i = 0; i < b.tensor.size(); ++i)
      dst[i] = buf[static_cast<std::size_t>(off + i)] * inv;
    off += b.tensor.size();
  }
}

template <Scalar T>
void DataParallel<T>::check_consistent() {
  auto named = model_.named_parameters();
  for (auto& b : model_.named_buffers()) named.push_back(std::move(b));
  // FNV-1a over each tensor's bytes.
  std::vector<std::uint64_t> mine(named.size());
  for (std::size_t k = 0; k < named.size(); ++k) {
    const auto v = named[k].tensor.value();
    std::uint64_t h = 0xCBF29CE484222325ull;
    const auto* bytes = reinterpret_cast<const unsigned char*>(v.data());
    for (std::size_t i = 0; i < static_cast<std::size_t>(v.size()) * sizeof(T); ++i)
      h = (h ^ bytes[i]) * 0x100000001B3ull;
    mine[k] = h;
  }
  const int count = static_cast<int>(mine.size());
  std::vector<std::uint64_t> all(mine.size() * static_cast<std::size_t>(size_));
  if (count > 0)
    detail::check(
        MPI_Allgather(mine.data(), count, MPI_UINT64_T, all.data(), count, MPI_UINT64_T, comm_),
        "MPI_Allgather");
  std::vector<int> ranks;
  std::string first;
  for (int r = 1; r < size_; ++r)
    for (int k = 0; k < count; ++k)
      if (all[static_cast<std::size_t>(r * count + k)] != all[static_cast<std::size_t>(k)]) {
        ranks.push_back(r);
        if (first.empty())
          first =
              gradscope::detail::cat("rank ", r, "'s '", named[static_cast<std::size_t>(k)].name,
                                     "' differs from rank 0's");
        break;
      }
  if (!ranks.empty())
    throw CollectiveError(
        gradscope::detail::cat("DataParallel: the replicas differ: ", first, " (", ranks.size(),
                               " of ", size_ - 1, " other ranks differ)"),
        ranks);
}

}  // namespace gradscope::dist
