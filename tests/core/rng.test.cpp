// Rng: a seed gives the same stream everywhere (pinned values), and the derived distributions
// stay in range.

#include <catch2/catch.hpp>

#include <gradscope/core/rng.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

namespace gs = gradscope;

namespace {
std::vector<std::uint64_t> draw(gs::Rng& rng, int n) {
  std::vector<std::uint64_t> v;
  for (int i = 0; i < n; ++i) v.push_back(rng.next_u64());
  return v;
}
}  // namespace

TEST_CASE("a fixed seed gives a fixed stream", "[core][rng]") {
  // Pinned once from this implementation (xoshiro256** seeded by splitmix64) and checked against
  // an independent reimplementation; a change here breaks every seeded experiment.
  gs::Rng rng(42);
  CHECK(rng.next_u64() == 0x15780b2e0c2ec716ull);
  CHECK(rng.next_u64() == 0x6104d9866d113a7eull);
  gs::Rng u(42);
  CHECK(u.uniform() == 0.083862971059882163);
  gs::Rng n(42);
  CHECK(n.normal() == Approx(-1.6132237513849161).epsilon(1e-15));
  gs::Rng by_default;
  CHECK(by_default.next_u64() == 4768932952251265552ull);
}

TEST_CASE("the same seed gives the same stream and reseeding restarts it", "[core][rng]") {
  gs::Rng a(7), b(7), c(8);
  const auto sa = draw(a, 100);
  CHECK(sa == draw(b, 100));
  CHECK(sa != draw(c, 100));
  a.seed(7);
  CHECK(draw(a, 100) == sa);
}

TEST_CASE("reseeding also drops the cached normal", "[core][rng]") {
  gs::Rng a(11);
  const double first = a.normal();
  (void)a.normal();  // the cached second value of the pair
  a.seed(11);
  (void)a.normal();  // leaves a spare behind
  a.seed(11);
  CHECK(a.normal() == first);
}

TEST_CASE("uniform, below and bernoulli stay in range", "[core][rng]") {
  gs::Rng rng(123);
  std::set<std::uint64_t> seen;
  double min_u = 1, max_u = 0, min_v = 5, max_v = -3;
  std::uint64_t max_k = 0;
  for (int i = 0; i < 10'000; ++i) {
    const double u = rng.uniform();
    min_u = std::min(min_u, u);
    max_u = std::max(max_u, u);
    const double v = rng.uniform(-3, 5);
    min_v = std::min(min_v, v);
    max_v = std::max(max_v, v);
    const auto k = rng.below(7);
    max_k = std::max(max_k, k);
    seen.insert(k);
  }
  CHECK(min_u >= 0.0);
  CHECK(max_u < 1.0);
  CHECK(min_v >= -3.0);
  CHECK(max_v < 5.0);
  CHECK(max_k < 7);
  CHECK(seen.size() == 7);
  CHECK_FALSE(rng.bernoulli(0.0));
  CHECK(rng.bernoulli(1.0));
  CHECK(rng.below(1) == 0);
}

TEST_CASE("normal draws have the requested mean and standard deviation", "[core][rng]") {
  gs::Rng rng(2024);
  const int n = 200'000;
  double sum = 0, sum2 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = rng.normal(3.0, 0.5);
    sum += x;
    sum2 += x * x;
  }
  REQUIRE(std::isfinite(sum2));
  const double mean = sum / n;
  const double var = sum2 / n - mean * mean;
  CHECK(mean == Approx(3.0).margin(0.01));  // standard error 0.5 / sqrt(n) ~ 0.0011
  CHECK(std::sqrt(var) == Approx(0.5).margin(0.01));
}

TEST_CASE("manual_seed makes default_rng reproducible", "[core][rng]") {
  gs::manual_seed(5);
  const auto first = draw(gs::default_rng(), 10);
  gs::manual_seed(5);
  CHECK(draw(gs::default_rng(), 10) == first);
  gs::manual_seed(6);
  CHECK(draw(gs::default_rng(), 10) != first);
}
