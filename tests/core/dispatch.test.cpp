// The CPU paths of gradscope's kernels (core/detail/dispatch.hpp, core/runtime.hpp): how
// GRADSCOPE_CPU and set_cpu_path pick one, what happens when the CPU cannot run it, the
// elementwise kernels on every path this machine has (core/detail/elementwise.hpp), and the
// threads of the products (parallel.hpp) without OpenMP. test_gemm_openmp checks the threads with
// OpenMP; gemm.test.cpp runs the products on every path.

#include <catch2/catch.hpp>

#include <gradscope/core/core.hpp>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "support.hpp"

namespace gs = gradscope;
using gs::CpuPath;

namespace {
bool only_avx2(CpuPath p) { return p != CpuPath::avx512; }
bool only_baseline(CpuPath p) { return p == CpuPath::baseline; }
bool every_path(CpuPath) { return true; }
}  // namespace

TEST_CASE("GRADSCOPE_CPU picks a path the CPU runs, or warns and falls back", "[core][runtime]") {
  std::string warning;
  const auto from = [&](const char* env, CpuPath automatic, auto supports) {
    return gs::detail::cpu_path_from_env(env, automatic, supports, warning);
  };
  SECTION("unset, empty or auto: the automatic choice, silently") {
    for (const char* env : {static_cast<const char*>(nullptr), "", "auto"}) {
      CHECK(from(env, CpuPath::avx2, every_path) == CpuPath::avx2);
      CHECK(warning.empty());
    }
  }
  SECTION("a path the CPU runs is taken, below or above the automatic one") {
    CHECK(from("baseline", CpuPath::avx512, every_path) == CpuPath::baseline);
    CHECK(from("avx2", CpuPath::avx512, every_path) == CpuPath::avx2);
    CHECK(from("avx512", CpuPath::avx2, every_path) == CpuPath::avx512);
    CHECK(warning.empty());
  }
  SECTION("a path the CPU cannot run: the best one below it, with a warning naming both") {
    CHECK(from("avx512", CpuPath::avx2, only_avx2) == CpuPath::avx2);
    CHECK(warning ==
          "GRADSCOPE_CPU=avx512, but this CPU (or build) cannot run it (it runs: avx2, "
          "baseline); using avx2");
    CHECK(from("avx2", CpuPath::baseline, only_baseline) == CpuPath::baseline);
    CHECK(warning.find("using baseline") != std::string::npos);
  }
  SECTION("not a path: the automatic choice, with a warning listing the values") {
    CHECK(from("AVX2", CpuPath::avx512, every_path) == CpuPath::avx512);
    CHECK(warning ==
          "GRADSCOPE_CPU=AVX2 is not a path (expected avx512, avx2, baseline or auto); using "
          "avx512");
  }
}

TEST_CASE("set_cpu_path forces a path and refuses one the CPU cannot run", "[core][runtime]") {
  for (const CpuPath p : gs::testing::supported_cpu_paths()) {
    gs::testing::CpuPathScope scope(p);
    CHECK(gs::cpu_path() == p);
  }
  CHECK_THROWS_MATCHES(
      gs::detail::check_cpu_path(CpuPath::avx512, only_avx2), gs::UsageError,
      Catch::Matchers::Message("[gradscope.usage] set_cpu_path: this CPU (or build) cannot run "
                               "the avx512 kernels (it runs: avx2, baseline)"));
  CHECK_NOTHROW(gs::detail::check_cpu_path(CpuPath::avx2, only_avx2));
  for (const CpuPath p : {CpuPath::baseline, CpuPath::avx2, CpuPath::avx512})
    if (!gs::cpu_path_supported(p)) CHECK_THROWS_AS(gs::set_cpu_path(p), gs::UsageError);
  CHECK(gs::cpu_path_supported(CpuPath::baseline));
  CHECK(std::string(gs::to_string(CpuPath::avx512)) == "avx512");
}

TEST_CASE("a build for AVX-512F or AVX2 + FMA starts on the path it targets, others ask the CPU",
          "[core][runtime]") {
  if (const char* env = std::getenv("GRADSCOPE_CPU"); env && *env) {
    WARN("GRADSCOPE_CPU is set (" << env << "): the automatic choice is not checked");
    return;
  }
  const CpuPath expected = gs::detail::compiled_cpu_path != CpuPath::baseline
                               ? gs::detail::compiled_cpu_path
                               : gs::testing::supported_cpu_paths().back();
  CHECK(gs::detail::initial_cpu_path() == expected);
}

TEMPLATE_TEST_CASE("the rectifiers' gradient kernel matches its definition on every CPU path",
                   "[core][runtime]", float, double) {
  using T = TestType;
  using gs::detail::Rectifier;
  gs::Rng rng(5);
  const T a = T(0.3), nan = std::numeric_limits<T>::quiet_NaN();
  // Lengths around the registers' widths (4, 8, 16 lanes) and longer.
  for (const gs::Index n : {1, 3, 4, 7, 8, 9, 15, 16, 17, 33, 1000}) {
    std::vector<T> g(n), x(n), y(n), start(n);
    for (gs::Index i = 0; i < n; ++i) {
      g[i] = T(rng.uniform(-1, 1));
      x[i] = i % 5 == 0 ? T(0) : T(rng.uniform(-1, 1));  // x = 0 takes the x <= 0 branch
      y[i] = a * (std::exp(x[i]) - T(1));
      start[i] = T(rng.uniform(-1, 1));
    }
    if (n > 2) x[2] = nan;  // NaN > 0 is false: the x <= 0 branch
    for (const Rectifier r : {Rectifier::relu, Rectifier::leaky_relu, Rectifier::elu}) {
      for (const bool accumulate : {false, true}) {
        for (const gs::CpuPath p : gs::testing::supported_cpu_paths()) {
          INFO("n " << n << ", rectifier " << static_cast<int>(r) << ", accumulate " << accumulate
                    << ", path " << gs::to_string(p));
          gs::testing::CpuPathScope scope(p);
          std::vector<T> out = start, in_place = g;
          gs::detail::rectifier_backward(r, out.data(), g.data(), x.data(), y.data(), n, a,
                                         accumulate);
          gs::detail::rectifier_backward(r, in_place.data(), in_place.data(), x.data(), y.data(), n,
                                         a, false);
          for (gs::Index i = 0; i < n; ++i) {
            const T below = r == Rectifier::relu         ? T(0)
                            : r == Rectifier::leaky_relu ? a * g[i]
                                                         : g[i] * (y[i] + a);
            const T d = x[i] > T(0) ? g[i] : below;
            // (accumulated, the sum may be fused into a multiply-add: a rounding apart)
            const T eps = 4 * std::numeric_limits<T>::epsilon();
            CHECK(out[i] == Approx(accumulate ? start[i] + d : d).epsilon(eps).margin(eps));
            CHECK(in_place[i] == d);
          }
        }
      }
    }
  }
}

#ifndef _OPENMP
TEST_CASE("without OpenMP the products run on one thread whatever is set", "[core][runtime]") {
  CHECK(gs::num_threads() == 1);
  gs::set_num_threads(4);
  CHECK(gs::num_threads() == 1);
  CHECK(gs::detail::gemm_threads(1024, 1024, 1024) == 1);
  gs::set_num_threads(0);
  CHECK_THROWS_MATCHES(
      gs::set_num_threads(-1), gs::ValueError,
      Catch::Matchers::Message("[gradscope.value] set_num_threads: needs n >= 0, got -1"));
}
#endif
