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
//   dist_step/B/global_batch:256/bucket_kib:K   a whole training step; K: DataParallel's
//                                               bucket size (8192, the default: one allreduce of
//                                               net B's 2.6 MB; 256: eleven allreduces)
//   dist_allreduce/B                            MPI_Allreduce of net B's gradients alone, the
//                                               ranks in lockstep: the transfer's own cost
// Counters (wall time: a rank waiting in MPI may sleep):
//   samples/s        global samples per second (256 per step)
//   ranks            the number of ranks
//   allreduce_ms     per step, inside MPI_Allreduce (includes waiting for the slower rank)
//   copy_ms          per step, copying the gradients into the buckets and back
//   comm_fraction    (allreduce_ms + copy_ms) / step time
#include <benchmark/benchmark.h>
#include <mpi.h>

#include <gradscope/dist/dist.hpp>
#include <gradscope/gradscope.hpp>

#include <Eigen/Core>

#include <cstdio>
#include <string>
#include <vector>

#include "mlp_cases.hpp"
#include "reference/nets.hpp"

namespace {

namespace gs = gradscope;
namespace gb = gradscope_bench;

constexpr Eigen::Index kGlobalBatch = 256;
constexpr int kIterations = 200;  // fixed, so that every rank runs the same steps

int g_rank = 0, g_size = 1;

void BM_dist_step(benchmark::State& state, int bucket_kib) {
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
  gs::dist::DataParallel<float> dp(*net, MPI_COMM_WORLD, {.bucket_bytes = bucket_bytes});
  gs::optim::SGD<float> opt(net->parameters(), {.lr = gb::mlp::kLr});
  gs::Tape<float> tape;
  auto step = [&](std::size_t k) {
    tape.reset();
    auto loss = gs::nn::softmax_cross_entropy((*net)(x[k]), y[k]);
    tape.backward(loss);
    dp.allreduce_gradients(local, loss.item());
    opt.step();
    opt.zero_grad();
  };
  for (std::size_t k = 0; k < 4; ++k) step(k);  // warm-up
  dp.reset_timing();
  MPI_Barrier(MPI_COMM_WORLD);
  std::size_t i = 0;
  for (auto _ : state) step(i++ % gb::mlp::kPool);
  MPI_Barrier(MPI_COMM_WORLD);
  const double steps = static_cast<double>(state.iterations());
  using benchmark::Counter;
  state.counters["samples/s"] = Counter(steps * kGlobalBatch, Counter::kIsRate);
  state.counters["ranks"] = g_size;
  state.counters["allreduce_ms"] = 1e3 * dp.timing().allreduce_seconds / steps;
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
  for (auto _ : state) {
    MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(buf.size()), MPI_FLOAT, MPI_SUM,
                  MPI_COMM_WORLD);
    benchmark::DoNotOptimize(buf.data());
  }
  state.counters["MB"] = static_cast<double>(buf.size() * sizeof(float)) * 1e-6;
  state.counters["ranks"] = g_size;
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
  if (!ctx.is_root()) std::freopen("/dev/null", "w", stdout);  // rank 0 reports
  for (const int kib : {8192, 256})
    benchmark::RegisterBenchmark(
        ("dist_step/B/global_batch:256/bucket_kib:" + std::to_string(kib)).c_str(), BM_dist_step,
        kib)
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
