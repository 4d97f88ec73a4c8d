// Data-parallel training of net B ([784, 8 x 256, 10], ReLU; bench/reference/nets.hpp) at a
// global batch of 256 over however many ranks mpiexec starts, one Eigen thread per rank:
//
//   mpiexec -n 1 build-bench/bench_dist          (scripts/bench.sh --dist runs 1 and 2 ranks,
//   mpiexec -n 2 build-bench/bench_dist           repeats, and prints the medians)
//
// Each rank trains on its 256 / N rows of the global batch (the same pool of 4 random global
// batches as bench_mlp_train, bench/mlp_cases.hpp), then DataParallel averages the gradients
// and SGD steps. The ranks start each repetition together (MPI_Barrier) and run a fixed number
// of iterations, so their collectives pair up; only rank 0 prints.
//
// Benchmarks:
//   dist_step/B/global_batch:256/S/bucket_kib:K a whole training step. S: how the gradients
//                                               are summed: shm (DataParallel's shared-memory
//                                               window, its default on one node), allreduce
//                                               (DataParallel with MPI_Allreduce), overlap
//                                               (OverlapPrototype below: each bucket's
//                                               MPI_Iallreduce starts during backward, as soon as
//                                               its gradients are complete). K: the bucket size
//                                               in KiB (8192, the default: one bucket for net B's
//                                               2.66 MB; 256: eleven buckets)
//   dist_allreduce/B                            MPI_Allreduce of net B's gradients alone, the
//                                               ranks in lockstep: the transfer's own cost
//                                               (allreduce_ms: per call)
// Counters (wall time: a rank waiting in MPI may sleep):
//   samples/s        global samples per second (256 per step)
//   MB               the gradients allreduced per step (net B: 664,074 floats)
//   ranks            the number of ranks
//   allreduce_ms     per step, inside MPI_Allreduce (includes waiting for the slower rank);
//                    with overlap, waiting for the buckets after backward and copying back
//   copy_ms          per step, copying the gradients into the buckets and back
//   comm_fraction    (allreduce_ms + copy_ms) / step time
#include <benchmark/benchmark.h>
#include <mpi.h>

#include <gradscope/dist/dist.hpp>
#include <gradscope/gradscope.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mlp_cases.hpp"
#include "reference/nets.hpp"

namespace {

namespace gs = gradscope;
namespace gb = gradscope_bench;

constexpr Eigen::Index kGlobalBatch = 256;
constexpr int kIterations = 200;  // fixed, so that every rank runs the same steps

int g_rank = 0, g_size = 1;

// The overlap prototype: each bucket's MPI_Iallreduce starts from the post-accumulate hook of
// its last parameter, while backward goes on with the layers below; every later hook calls
// MPI_Testall (Open MPI progresses a non-blocking collective only inside MPI calls), and
// finish() waits for the rest and copies the averages back. Buckets of about `bucket_bytes`,
// in the order backward produces the gradients. Plain average (equal batches on every rank).
class OverlapPrototype {
 public:
  OverlapPrototype(gs::nn::Module<float>& model, std::size_t bucket_bytes) {
    params_ = model.parameters();
    std::reverse(params_.begin(), params_.end());
    const auto per_bucket = static_cast<gs::Index>(bucket_bytes / sizeof(float));
    gs::Index offset = 0;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      offsets_.push_back(offset);
      offset += params_[i].size();
      bucket_of_.push_back(buckets_.size());
      if (offset - (buckets_.empty() ? 0 : buckets_.back().last) >= per_bucket ||
          i + 1 == params_.size())
        buckets_.push_back({buckets_.empty() ? 0 : buckets_.back().last, offset, 0, 0});
    }
    for (std::size_t i = 0; i < params_.size(); ++i) ++buckets_[bucket_of_[i]].params;
    flat_.resize(static_cast<std::size_t>(offset));
    requests_.assign(buckets_.size(), MPI_REQUEST_NULL);
    for (std::size_t i = 0; i < params_.size(); ++i)
      hooks_.push_back(params_[i].register_post_accumulate_hook(
          [this, i](const gs::ConstMatrixMap<float>& g) { ready(i, g); }));
  }
  ~OverlapPrototype() {
    for (auto& h : hooks_) h.remove();
  }
  void finish() {
    MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
    const float inv = 1.0f / static_cast<float>(g_size);
    for (std::size_t i = 0; i < params_.size(); ++i) {
      auto g = params_[i].mutable_grad();
      for (gs::Index k = 0; k < g.size(); ++k)
        g.data()[k] = flat_[static_cast<std::size_t>(offsets_[i] + k)] * inv;
    }
    for (auto& b : buckets_) b.arrived = 0;
  }

 private:
  struct Bucket {
    gs::Index first, last;
    int params, arrived;
  };
  void ready(std::size_t i, const gs::ConstMatrixMap<float>& g) {
    std::copy_n(g.data(), g.size(), flat_.data() + offsets_[i]);
    Bucket& b = buckets_[bucket_of_[i]];
    if (++b.arrived == b.params)
      MPI_Iallreduce(MPI_IN_PLACE, flat_.data() + b.first, static_cast<int>(b.last - b.first),
                     MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &requests_[bucket_of_[i]]);
    int done = 0;
    MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE);
  }

  std::vector<gs::Tensor<float>> params_;
  std::vector<gs::Index> offsets_;
  std::vector<std::size_t> bucket_of_;
  std::vector<Bucket> buckets_;
  std::vector<float> flat_;
  std::vector<MPI_Request> requests_;
  std::vector<gs::HookHandle> hooks_;
};

// How the gradients are summed: DataParallel through its shared-memory window (the default on
// one node) or through MPI_Allreduce, or the overlap prototype (MPI_Iallreduce).
enum class Sum { shared_memory, allreduce, overlap };

void BM_dist_step(benchmark::State& state, int bucket_kib, Sum sum) {
  const bool overlap = sum == Sum::overlap;
  const auto bucket_bytes = static_cast<std::size_t>(bucket_kib) * 1024;
  const gb::NetShape shape = gb::net_shape('B');
  const Eigen::Index local = kGlobalBatch / g_size;
  const gb::mlp::Batches pool(kGlobalBatch, shape.in, shape.classes);
  std::vector<gs::Tensor<float>> x;
  std::vector<std::vector<int>> y;
  for (int k = 0; k < gb::mlp::kPool; ++k) {
    x.emplace_back(gs::Matrix<float>(pool.x[k].middleRows(g_rank * local, local)), 2, false);
    y.emplace_back(pool.labels[k].begin() + g_rank * local,
                   pool.labels[k].begin() + (g_rank + 1) * local);
  }
  gs::Rng rng(gb::mlp::kWeightSeed);
  auto net = gb::make_gradscope_net<float>(shape, rng);
  gs::dist::DataParallel<float> dp(
      *net, MPI_COMM_WORLD,
      {.bucket_bytes = bucket_bytes, .shared_memory = sum == Sum::shared_memory});
  gs::optim::SGD<float> opt(net->parameters(), {.lr = gb::mlp::kLr});
  std::optional<OverlapPrototype> overlapped;
  if (overlap) overlapped.emplace(*net, bucket_bytes);
  gs::Tape<float> tape;
  double overlap_seconds = 0;
  auto step = [&](std::size_t k) {
    tape.reset();
    auto loss = gs::nn::softmax_cross_entropy((*net)(x[k]), y[k]);
    tape.backward(loss);
    if (overlapped) {
      const double t0 = MPI_Wtime();
      overlapped->finish();
      overlap_seconds += MPI_Wtime() - t0;
    } else {
      dp.allreduce_gradients(local, loss.item());
    }
    opt.step();
    opt.zero_grad();
  };
  for (std::size_t k = 0; k < 4; ++k) step(k);  // warm-up
  dp.reset_timing();
  overlap_seconds = 0;
  MPI_Barrier(MPI_COMM_WORLD);
  std::size_t i = 0;
  for (auto _ : state) step(i++ % gb::mlp::kPool);
  MPI_Barrier(MPI_COMM_WORLD);
  const double steps = static_cast<double>(state.iterations());
  using benchmark::Counter;
  state.counters["samples/s"] = Counter(steps * kGlobalBatch, Counter::kIsRate);
  state.counters["MB"] = static_cast<double>(net->parameter_count() * 4) * 1e-6;
  state.counters["ranks"] = g_size;
  // With overlap: the wait for the last buckets after backward, and the copy back.
  state.counters["allreduce_ms"] =
      1e3 * (overlap ? overlap_seconds : dp.timing().allreduce_seconds) / steps;
  state.counters["copy_ms"] = 1e3 * dp.timing().copy_seconds / steps;
  state.counters["comm_fraction"] =
      Counter((dp.timing().allreduce_seconds + dp.timing().copy_seconds) / steps,
              Counter::kIsIterationInvariantRate);
}

void BM_dist_allreduce(benchmark::State& state) {
  gs::Rng rng(gb::mlp::kWeightSeed);
  auto net = gb::make_gradscope_net<float>(gb::net_shape('B'), rng);
  std::vector<float> buf(static_cast<std::size_t>(net->parameter_count()), 1.0f);
  MPI_Barrier(MPI_COMM_WORLD);
  const double start = MPI_Wtime();
  for (auto _ : state) {
    MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(buf.size()), MPI_FLOAT, MPI_SUM,
                  MPI_COMM_WORLD);
    benchmark::DoNotOptimize(buf.data());
  }
  // The same counters as dist_step (Google Benchmark's CSV output wants them in every row).
  const double seconds = MPI_Wtime() - start;
  const double steps = static_cast<double>(state.iterations());
  state.counters["MB"] = static_cast<double>(buf.size() * sizeof(float)) * 1e-6;
  state.counters["ranks"] = g_size;
  state.counters["samples/s"] = 0;
  state.counters["allreduce_ms"] = 1e3 * seconds / steps;
  state.counters["copy_ms"] = 0;
  state.counters["comm_fraction"] = 1;
}

}  // namespace

int main(int argc, char** argv) {
  gs::dist::Context ctx(argc, argv);
  g_rank = ctx.rank();
  g_size = ctx.size();
  Eigen::setNbThreads(1);
  if (kGlobalBatch % g_size != 0) {
    if (ctx.is_root())
      std::fprintf(stderr, "bench_dist: %d ranks do not divide the global batch of %d\n", g_size,
                   static_cast<int>(kGlobalBatch));
    return 2;
  }
  if (!ctx.is_root()) {  // rank 0 reports
    if (!std::freopen("/dev/null", "w", stdout) || !std::freopen("/dev/null", "w", stderr))
      return 1;
  }
  const std::pair<int, Sum> variants[] = {{8192, Sum::shared_memory},
                                          {8192, Sum::allreduce},
                                          {256, Sum::allreduce},
                                          {256, Sum::overlap}};
  for (const auto& [kib, sum] : variants)
    benchmark::RegisterBenchmark(("dist_step/B/global_batch:256/" +
                                  std::string(sum == Sum::shared_memory ? "shm"
                                              : sum == Sum::allreduce   ? "allreduce"
                                                                        : "overlap") +
                                  "/bucket_kib:" + std::to_string(kib))
                                     .c_str(),
                                 BM_dist_step, kib, sum)
        ->Iterations(kIterations)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("dist_allreduce/B", BM_dist_allreduce)
      ->Iterations(kIterations)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
