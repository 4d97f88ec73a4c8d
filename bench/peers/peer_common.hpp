#pragma once
// What the peer benchmarks (bench/peers/*.bench.cpp) share with bench/mlp_train.bench.cpp: the
// cases (net and batch), the same pool of 4 random batches, the same initial weights (taken from
// the hand-written twin of bench/reference/, which draws them exactly as gradscope does), the
// losses of the twin's first steps to check a peer against, the thread setting, the clock and the
// benchmark names (peers/<peer>/<net>/batch:<n>).
#include <benchmark/benchmark.h>
#include <dlfcn.h>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mlp_cases.hpp"
#include "reference/nets.hpp"

namespace gradscope_bench::peers {

// The cases, constants and batches of bench/mlp_train.bench.cpp.
using mlp::Batches;
using mlp::Case;
using mlp::kCases;
using mlp::kLr;
using mlp::kPool;
using mlp::kWeightSeed;
using mlp::Mat;

/// The twin of a case with bench_mlp_train's initial weights: a peer copies its parameters
/// (per Dense weight [out, in] row-major and bias [1, out], then BatchNorm's gamma and beta).
inline std::unique_ptr<Twin<float>> initial_twin(const Case& c) {
  gradscope::Rng rng(kWeightSeed);
  return make_reference_net<float>(net_shape(c.net), c.batch, rng);
}

/// The losses of the twin's first kPool SGD steps (each on batch k, from the initial weights):
/// a peer that trains the same net with the same step must reproduce them.
inline std::vector<float> twin_losses(const Case& c, const Batches& data) {
  auto twin = initial_twin(c);
  std::vector<float> losses;
  for (int k = 0; k < kPool; ++k) losses.push_back(twin->step(data.x[k], data.labels[k], kLr));
  return losses;
}

/// "" if `got` matches the twin's loss of step k, else a message for SkipWithError.
inline std::string check_loss(const char* peer, int k, float got, float want) {
  if (std::abs(got - want) <= 1e-3f * std::max(1.0f, std::abs(want))) return {};
  return std::string(peer) + " and the reference twin disagree at step " + std::to_string(k) +
         ": loss " + std::to_string(got) + " vs " + std::to_string(want);
}

/// The peers' thread count: `--threads=N` on the command line (removed from argv before Google
/// Benchmark sees it), else the environment variable GRADSCOPE_PEER_THREADS, else 1.
inline int take_threads_argument(int& argc, char** argv) {
  int threads = 1;
  if (const char* env = std::getenv("GRADSCOPE_PEER_THREADS"); env && *env)
    threads = std::max(1, std::atoi(env));
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0)
      threads = std::max(1, std::atoi(argv[i] + 10));
    else
      argv[out++] = argv[i];
  }
  argc = out;
  argv[argc] = nullptr;
  return threads;
}

/// CPU time of this thread with one thread (immune to the scheduler handing the core to another
/// process, as bench_mlp_train measures), wall time otherwise.
inline double now_seconds(bool wall) {
  timespec ts{};
  clock_gettime(wall ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

/// CPU time of the whole process (all threads).
inline double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

/// The OpenBLAS loaded into this process, if any (PyTorch's Debian build links it): found by
/// symbol, so nothing here needs OpenBLAS to build.
struct OpenBlas {
  using SetThreads = void (*)(int);
  using GetInt = int (*)();
  using GetString = char* (*)();
  SetThreads set_threads =
      reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  GetInt get_threads = reinterpret_cast<GetInt>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  GetString corename = reinterpret_cast<GetString>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));

  /// "Prescott" when OpenBLAS did not recognise the CPU; "-" when no OpenBLAS is loaded.
  std::string core() const { return corename ? corename() : "-"; }
  int threads() const { return get_threads ? get_threads() : 0; }
};

/// Runs a benchmark body, turning an exception (a failed setup, a loss check) into a skipped
/// benchmark with its message instead of a crash of the whole program.
template <void (*Body)(benchmark::State&, Case)>
void checked(benchmark::State& state, Case c) {
  try {
    Body(state, c);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

/// peers/<peer>/<net>/batch:<n>[/<suffix>]
inline std::string case_name(const char* peer, const Case& c, const char* suffix = nullptr) {
  std::string name = "peers/";
  name += peer;
  name += '/';
  name += c.net;
  name += "/batch:";
  name += std::to_string(c.batch);
  if (suffix) {
    name += '/';
    name += suffix;
  }
  return name;
}

}  // namespace gradscope_bench::peers
