#pragma once
/// Context: MPI for the lifetime of an object (initialised unless the program did it already),
/// the communicator's rank and size, and what to do when one rank fails.

#include <mpi.h>

#include <cstdio>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/core.hpp"

namespace gradscope::dist {

/// Thrown by a collective operation on every rank of the communicator at once, with the same
/// message: the ranks can unwind and finalise MPI cleanly, none is left waiting in a collective.
class CollectiveError : public NumericalError {
 public:
  CollectiveError(const std::string& message, std::vector<int> ranks)
      : NumericalError(message), ranks_(std::move(ranks)) {}
  /// The ranks where the trouble was found (e.g. those whose gradients were not finite).
  const std::vector<int>& ranks() const noexcept { return ranks_; }

 private:
  std::vector<int> ranks_;
};

namespace detail {
using gradscope::detail::cat;

/// Throws Error naming the MPI call when `rc` is not MPI_SUCCESS (reached only under a
/// communicator whose error handler returns, e.g. MPI_ERRORS_RETURN).
inline void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(cat("[gradscope.dist] ", call,
                  " failed: ", std::string(text, static_cast<std::size_t>(len))));
}

/// The MPI datatype of float and double.
template <Scalar T>
MPI_Datatype mpi_type() noexcept {
  if constexpr (std::is_same_v<T, float>)
    return MPI_FLOAT;
  else
    return MPI_DOUBLE;
}
}  // namespace detail

/// MPI for the lifetime of this object. Initialises MPI (MPI_Init_thread, MPI_THREAD_FUNNELED)
/// unless the program already did, and finalises it on destruction only if it initialised it.
/// Works on a communicator: MPI_COMM_WORLD by default, or one the program gives.
class Context {
 public:
  /// Initialises MPI (when needed) with the program's arguments, on MPI_COMM_WORLD.
  Context(int& argc, char**& argv) { init(&argc, &argv); }
  /// Initialises MPI (when needed) without arguments, on MPI_COMM_WORLD.
  Context() { init(nullptr, nullptr); }
  /// Uses `comm` of an MPI the program initialised (and will finalise) itself.
  explicit Context(MPI_Comm comm) : comm_(comm) {
    int on = 0;
    MPI_Initialized(&on);
    if (!on) throw UsageError("dist::Context(comm): MPI is not initialised");
    read_rank();
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_ && !finalized) MPI_Finalize();
  }

  /// This process's rank in the communicator (0 .. size() - 1).
  int rank() const noexcept { return rank_; }
  /// The number of ranks.
  int size() const noexcept { return size_; }
  /// True on rank 0, the rank that prints, writes reports and saves checkpoints.
  bool is_root() const noexcept { return rank_ == 0; }
  MPI_Comm comm() const noexcept { return comm_; }
  /// Waits until every rank got here.
  void barrier() const { detail::check(MPI_Barrier(comm_), "MPI_Barrier"); }

  /// What to do with an exception that ends this rank's work; returns the exit code to use.
  /// A CollectiveError was thrown on every rank together: rank 0 prints it and every rank returns
  /// `code` (the program then finalises MPI normally). Any other exception may be this rank's
  /// alone while the others wait in a collective it will never join: it is printed with the rank
  /// ("[rank 1] <program>: <message>") and the job is ended with MPI_Abort(code), the last
  /// resort, rather than left hanging. With one rank it is printed and `code` returned.
  int fail(const std::exception& e, int code, const char* program = "error") const {
    const bool collective = dynamic_cast<const CollectiveError*>(&e) != nullptr;
    if (collective || size_ == 1) {
      if (is_root()) std::fprintf(stderr, "%s: %s\n", program, e.what());
      return code;
    }
    std::fprintf(stderr, "[rank %d of %d] %s: %s\n[rank %d of %d] aborting every rank\n", rank_,
                 size_, program, e.what(), rank_, size_);
    std::fflush(stderr);
    MPI_Abort(comm_, code);
    return code;  // not reached
  }

 private:
  void init(int* argc, char*** argv) {
    int on = 0;
    MPI_Initialized(&on);
    if (!on) {
      int provided = 0;
      detail::check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      owns_ = true;
    }
    read_rank();
  }
  void read_rank() {
    detail::check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    detail::check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }

  MPI_Comm comm_ = MPI_COMM_WORLD;
  int rank_ = 0, size_ = 1;
  bool owns_ = false;
};

}  // namespace gradscope::dist
