// Peak fp32 FMA throughput of one core, the ceiling against which the other benchmarks are read.
//
// Each chain is one Eigen packet (the widest SIMD register Eigen uses with the flags of this
// build) updated by acc = acc * m + a. One chain is bound by FMA latency; enough independent
// chains hide the latency and reach the throughput of the FMA units. Each FMA counts as 2 flops.
#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <cstdint>
#include <string>

namespace {

using Packet = Eigen::internal::packet_traits<float>::type;
constexpr int lanes = Eigen::internal::packet_traits<float>::size;
constexpr std::int64_t steps = 1 << 14;  // FMAs per chain per benchmark iteration

template <int Chains>
void BM_peak_fma_fp32(benchmark::State& state) {
  // m < 1 and a > 0 keep every accumulator finite and away from denormals.
  float m_scalar = 0.999999f;
  float a_scalar = 1e-6f;
  for (auto _ : state) {
    benchmark::DoNotOptimize(m_scalar);
    benchmark::DoNotOptimize(a_scalar);
    const Packet m = Eigen::internal::pset1<Packet>(m_scalar);
    const Packet a = Eigen::internal::pset1<Packet>(a_scalar);
    Packet acc[Chains];
    for (int c = 0; c < Chains; ++c) acc[c] = Eigen::internal::pset1<Packet>(static_cast<float>(c));
    for (std::int64_t i = 0; i < steps; ++i) {
      for (int c = 0; c < Chains; ++c) acc[c] = Eigen::internal::pmadd(acc[c], m, a);
    }
    float sum = 0.0f;
    for (int c = 0; c < Chains; ++c) sum += Eigen::internal::predux(acc[c]);
    benchmark::DoNotOptimize(sum);
  }
  const double flops_per_iteration = 2.0 * lanes * Chains * static_cast<double>(steps);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iteration * static_cast<double>(state.iterations()) * 1e-9,
                         benchmark::Counter::kIsRate);
#ifdef EIGEN_VECTORIZE_FMA
  const char* fma = "fused";
#else
  const char* fma = "mul+add";
#endif
  state.SetLabel("lanes=" + std::to_string(lanes) + " fma=" + fma +
                 " chains=" + std::to_string(Chains));
}

}  // namespace

BENCHMARK_TEMPLATE(BM_peak_fma_fp32, 1);  // latency bound
BENCHMARK_TEMPLATE(BM_peak_fma_fp32, 8);
BENCHMARK_TEMPLATE(BM_peak_fma_fp32, 12);  // throughput bound on common x86 cores

BENCHMARK_MAIN();
