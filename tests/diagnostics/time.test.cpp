// The time profile of a recurrent layer's gradients (diagnostics/time.hpp): gain, reach and
// memory horizon from the norms of every step, underflow, binning of long sequences, and the
// bounded record of profiles.

#include <catch2/catch.hpp>

#include <gradscope/diagnostics/time.hpp>

#include <cmath>
#include <limits>
#include <vector>

namespace diag = gradscope::diagnostics;

namespace {
constexpr double float_min = std::numeric_limits<float>::min();
}

TEST_CASE(
    "a geometric decay gives its ratio as the gain, its product as the reach and the "
    "steps above 1% as the horizon",
    "[diagnostics][time]") {
  // The loss reads the last step only: recurrent[t] == total[t], total[t] = 0.5^(T-1-t).
  const std::size_t T = 20;
  std::vector<double> total(T), recurrent(T - 1);
  for (std::size_t t = 0; t < T; ++t) total[t] = std::pow(0.5, double(T - 1 - t));
  for (std::size_t t = 0; t + 1 < T; ++t) recurrent[t] = total[t];
  const auto p = diag::make_time_profile(7, total, recurrent, 0.9, 256, float_min);
  CHECK(p.step == 7);
  CHECK(p.steps == 20);
  CHECK(p.gain == Approx(0.5).epsilon(1e-12));
  CHECK(p.reach == Approx(std::pow(0.5, 19)).epsilon(1e-12));
  CHECK(p.horizon == 6);  // 0.5^6 = 1.6% >= 1%, 0.5^7 = 0.8% < 1%
  CHECK(p.carry_gate == 0.9);
  CHECK_FALSE(p.underflow);
  CHECK(p.bin == 1);
  CHECK(p.total == total);
  REQUIRE(p.recurrent.size() == T);
  CHECK_FALSE(diag::measured(p.recurrent.back()));
}

TEST_CASE("with the loss on every step, the ratios follow the recurrence, not the totals",
          "[diagnostics][time]") {
  // Every step gets 1 from the output; the recurrence carries 0.1 of the next step's total: the
  // totals stay near 1 (the output dominates) but the gradient of the last step dies within
  // two steps.
  const std::size_t T = 30;
  std::vector<double> total(T), recurrent(T - 1);
  total[T - 1] = 1;
  for (std::size_t t = T - 1; t-- > 0;) {
    recurrent[t] = 0.1 * total[t + 1];
    total[t] = 1 + recurrent[t];
  }
  const auto p = diag::make_time_profile(0, total, recurrent, diag::not_measured, 256, float_min);
  CHECK(p.horizon == 2);  // 0.1 * ~1.1 >= 1%, then below
  CHECK(p.gain < 0.11);
  CHECK(p.reach < 1e-25);
}

TEST_CASE(
    "a gradient that underflows to 0 in float is below the smallest normal number, not an "
    "error or a NaN",
    "[diagnostics][time]") {
  std::vector<double> total = {0.0, 0.0, 1e-30, 1.0}, recurrent = {0.0, 0.0, 1e-30};
  const auto p = diag::make_time_profile(3, total, recurrent, diag::not_measured, 256, float_min);
  CHECK(p.underflow);
  CHECK(std::isfinite(p.gain));
  CHECK(p.gain < 1e-10);
  CHECK(p.reach == Approx(float_min).epsilon(1e-9));  // reported at the bound
  CHECK(p.horizon == 0);
  CHECK(diag::time_figure(p.reach, p.underflow) == "< 1.2e-38");
  CHECK(diag::time_figure(3.14e-9, false) == "3.1e-09");
}

TEST_CASE("a growing gradient has a gain above 1 and the full horizon", "[diagnostics][time]") {
  const std::size_t T = 10;
  std::vector<double> total(T), recurrent(T - 1);
  for (std::size_t t = 0; t < T; ++t) total[t] = std::pow(1.5, double(T - 1 - t));
  for (std::size_t t = 0; t + 1 < T; ++t) recurrent[t] = total[t];
  const auto p = diag::make_time_profile(0, total, recurrent, diag::not_measured, 256, float_min);
  CHECK(p.gain == Approx(1.5));
  CHECK(p.reach == Approx(std::pow(1.5, 9)));
  CHECK(p.horizon == 9);
  // One step: nothing to compare.
  const auto one = diag::make_time_profile(0, std::vector<double>{2.0}, std::vector<double>{},
                                           diag::not_measured, 256, float_min);
  CHECK_FALSE(diag::measured(one.gain));
  CHECK(one.horizon == 0);
}

TEST_CASE("long sequences are kept in bins, the measures from every step", "[diagnostics][time]") {
  const std::size_t T = 1000;
  std::vector<double> total(T), recurrent(T - 1);
  for (std::size_t t = 0; t < T; ++t) total[t] = std::pow(0.99, double(T - 1 - t));
  for (std::size_t t = 0; t + 1 < T; ++t) recurrent[t] = total[t];
  const auto p = diag::make_time_profile(0, total, recurrent, diag::not_measured, 100, float_min);
  CHECK(p.bin == 10);
  CHECK(p.total.size() == 100);
  CHECK(p.recurrent.size() == 100);
  // The geometric mean of a bin of a geometric sequence is its middle value.
  CHECK(p.total.back() == Approx(std::pow(0.99, 4.5)).epsilon(1e-9));
  CHECK(p.horizon == 458);  // 0.99^458 >= 0.01 > 0.99^459
  CHECK(p.gain == Approx(0.99).epsilon(1e-12));
}

TEST_CASE("the record of profiles stays bounded, spans the run and keeps the latest",
          "[diagnostics][time]") {
  diag::TimeRecords records(8);
  for (std::int64_t s = 0; s < 100; ++s) {
    diag::TimeProfile p;
    p.step = s;
    records.push(p);
    REQUIRE(records.profiles().size() <= 8);
    CHECK(records.profiles().back().step == s);
  }
  CHECK(records.profiles().front().step == 0);
  CHECK(records.downsamplings() > 0);
}
