// The distributed hooks of mnist_mlp (docs/distributed.md). Built as mnist_mlp_mpi (the same
// source with GRADSCOPE_WITH_MPI) they run data-parallel training over MPI:
//
//   mpiexec -n 2 mnist_mlp_mpi --preset demo --data DIR      (the same flags as mnist_mlp)
//
// every rank trains on its shard of each epoch's permutation with --batch-size rows per step (the
// global batch is ranks x --batch-size), the gradients are averaged before clipping, batch-norm
// running statistics are averaged at the end of each epoch, and rank 0 alone prints, writes the
// reports and saves checkpoints. Built as mnist_mlp, every hook does what the program did
// before: nothing, or the same call.
#pragma once

#include <gradscope/data/data.hpp>
#include <gradscope/diagnostics/diagnostics.hpp>
#include <gradscope/gradscope.hpp>

#include <cstdio>
#include <exception>
#include <string>
#include <utility>

#ifdef GRADSCOPE_WITH_MPI
#include <gradscope/dist/dist.hpp>

#include <memory>
#include <optional>
#endif

namespace mnist_dist {

namespace gs = gradscope;

/// The global figures of one step: the mean loss and the number of samples of all ranks.
struct Global {
  double loss;
  gs::Index samples;
};

#ifdef GRADSCOPE_WITH_MPI

namespace detail {
struct State {
  std::optional<gs::dist::Context> ctx;
  std::optional<gs::dist::DistributedSampler> sampler;
  std::unique_ptr<gs::dist::DataParallel<float>> dp;
  std::FILE* null = nullptr;
};
inline State& state() {
  static State s;
  return s;
}
}  // namespace detail

/// MPI for the program's lifetime; only rank 0's standard output is kept (errors go to every
/// rank's standard error).
class Scope {
 public:
  Scope(int& argc, char**& argv) {
    auto& s = detail::state();
    s.ctx.emplace(argc, argv);
    if (!s.ctx->is_root()) {
      std::fflush(stdout);
      if (!std::freopen("/dev/null", "w", stdout)) std::fclose(stdout);
    }
  }
  ~Scope() {
    auto& s = detail::state();
    s.dp.reset();
    if (s.null) std::fclose(s.null);
    s.ctx.reset();  // MPI_Finalize
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
  /// See gradscope::dist::Context::fail: a collective error returns `code` on every rank, any
  /// other error is printed with the rank and ends the job (MPI_Abort).
  int fail(const std::exception& e, int code) const {
    return detail::state().ctx->fail(e, code, "mnist_mlp");
  }
};

/// True on the rank that prints, writes reports and saves checkpoints.
inline bool is_root() { return detail::state().ctx->is_root(); }
/// The number of processes training together.
inline long long ranks() { return detail::state().ctx->size(); }

/// A loader over this rank's shard of every epoch's permutation of `data`.
template <class T>
gs::data::DataLoader<T> loader(const gs::data::Dataset<T>& data, gs::data::LoaderOptions opt) {
  auto& s = detail::state();
  s.sampler.emplace(data.size(), s.ctx->rank(), s.ctx->size(),
                    gs::dist::SamplerOptions{.shuffle = opt.shuffle, .seed = opt.seed});
  return gs::data::DataLoader<T>(data, *s.sampler, opt);
}

/// Where the progress line goes: standard error on rank 0, nowhere on the others.
inline std::FILE* progress_stream() {
  auto& s = detail::state();
  if (s.ctx->is_root()) return stderr;
  if (!s.null) s.null = std::fopen("/dev/null", "w");
  return s.null ? s.null : stderr;
}

/// Averages the model's gradients across the ranks from now on; rank 0's parameters and buffers
/// are copied to every rank (after a resume every rank loaded the same checkpoint). Returns the
/// line that says so.
inline std::string attach(gs::nn::Module<float>& model, int batch_size) {
  auto& s = detail::state();
  s.dp = std::make_unique<gs::dist::DataParallel<float>>(model, s.ctx->comm());
  return gs::detail::cat("distributed: ", s.ctx->size(), " ranks x batch ", batch_size,
                         " = global batch ", s.ctx->size() * batch_size, "\n");
}

/// Chooses the epoch whose permutation the shards come from (the same on every rank).
inline void set_epoch(int epoch) { detail::state().sampler->set_epoch(epoch); }

/// After backward: averages the gradients (collective), tells the monitor they changed and
/// returns the global loss and batch size. A non-finite gradient on any rank throws
/// NonFiniteGradientError on every rank, naming the rank.
template <class T>
Global average_gradients(double loss, std::size_t samples,
                         gs::diagnostics::GradientMonitor<T>& monitor) {
  const auto g = detail::state().dp->allreduce_gradients(static_cast<gs::Index>(samples), loss);
  monitor.gradients_changed();
  return {g.loss, static_cast<gs::Index>(g.samples)};
}

/// At the end of an epoch: batch-norm running statistics become their mean over the ranks.
inline void end_epoch() { detail::state().dp->synchronize_buffers(); }

#else  // one process: what mnist_mlp always did

class Scope {
 public:
  Scope(int&, char**&) {}
  int fail(const std::exception& e, int code) const {
    std::fprintf(stderr, "mnist_mlp: %s\n", e.what());
    return code;
  }
};
inline bool is_root() { return true; }
inline long long ranks() { return 1; }
template <class T>
gs::data::DataLoader<T> loader(const gs::data::Dataset<T>& data, gs::data::LoaderOptions opt) {
  return gs::data::DataLoader<T>(data, opt);
}
inline std::FILE* progress_stream() { return stderr; }
inline std::string attach(gs::nn::Module<float>&, int) { return {}; }
inline void set_epoch(int) {}
template <class T>
Global average_gradients(double loss, std::size_t samples, gs::diagnostics::GradientMonitor<T>&) {
  return {loss, static_cast<gs::Index>(samples)};
}
inline void end_epoch() {}

#endif

}  // namespace mnist_dist
