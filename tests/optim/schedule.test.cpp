// Learning-rate schedules (step, exponential, cosine, warm-up, constant, products and then())
// against their formulas, and LrScheduler driving an optimiser's learning rate.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <cmath>
#include <numbers>

#include "optim_test_util.hpp"

namespace gs = gradscope;
namespace opt = gradscope::optim;
namespace schedule = gradscope::optim::schedule;
using optim_test::Mat;

TEST_CASE("schedule::step multiplies by gamma every step_size steps", "[optim][schedule]") {
  const auto s = schedule::step(10, 0.5);
  CHECK(s(0) == 1.0);
  CHECK(s(9) == 1.0);
  CHECK(s(10) == 0.5);
  CHECK(s(19) == 0.5);
  CHECK(s(20) == 0.25);
  CHECK(s(35) == 0.125);
  CHECK_THROWS_AS(schedule::step(0, 0.5), gs::ValueError);
  CHECK_THROWS_AS(schedule::step(-3, 0.5), gs::ValueError);
}

TEST_CASE("schedule::exponential multiplies by gamma every step", "[optim][schedule]") {
  const auto s = schedule::exponential(0.9);
  CHECK(s(0) == 1.0);
  CHECK(s(1) == Approx(0.9).epsilon(1e-15));
  CHECK(s(3) == Approx(0.729).epsilon(1e-14));
  CHECK(s(50) == Approx(std::pow(0.9, 50)).epsilon(1e-14));
}

TEST_CASE("schedule::cosine anneals from 1 to min_factor, then stays", "[optim][schedule]") {
  SECTION("to zero") {
    const auto s = schedule::cosine(100);
    CHECK(s(0) == 1.0);
    CHECK(s(50) == Approx(0.5).epsilon(1e-15));
    CHECK(s(25) == Approx(0.5 * (1 + std::cos(std::numbers::pi / 4))).epsilon(1e-15));
    CHECK(s(100) == Approx(0.0).margin(1e-15));
    CHECK(s(250) == Approx(0.0).margin(1e-15));
    // Monotone non-increasing.
    for (int t = 1; t <= 100; ++t) CHECK(s(t) <= s(t - 1));
  }
  SECTION("to a floor") {
    const auto s = schedule::cosine(10, 0.1);
    CHECK(s(0) == 1.0);
    CHECK(s(5) == Approx(0.55).epsilon(1e-15));
    CHECK(s(10) == Approx(0.1).epsilon(1e-15));
    CHECK(s(11) == Approx(0.1).epsilon(1e-15));
  }
  CHECK_THROWS_AS(schedule::cosine(0), gs::ValueError);
}

TEST_CASE("schedule::warmup rises linearly from start_factor to 1", "[optim][schedule]") {
  SECTION("from zero") {
    const auto s = schedule::warmup(10);
    CHECK(s(0) == 0.0);
    CHECK(s(1) == Approx(0.1).epsilon(1e-15));
    CHECK(s(5) == Approx(0.5).epsilon(1e-15));
    CHECK(s(10) == 1.0);
    CHECK(s(1000) == 1.0);
  }
  SECTION("from a start factor") {
    const auto s = schedule::warmup(4, 0.2);
    CHECK(s(0) == Approx(0.2).epsilon(1e-15));
    CHECK(s(2) == Approx(0.6).epsilon(1e-15));
    CHECK(s(4) == 1.0);
  }
  CHECK_THROWS_AS(schedule::warmup(0), gs::ValueError);
}

TEST_CASE("schedule::constant and the default schedule", "[optim][schedule]") {
  CHECK(schedule::constant(0.3)(0) == 0.3);
  CHECK(schedule::constant(0.3)(12345) == 0.3);
  CHECK(opt::Schedule{}(7) == 1.0);
  CHECK(opt::Schedule([](std::int64_t t) { return 1.0 / (1.0 + static_cast<double>(t)); })(3) ==
        0.25);
}

TEST_CASE("Schedules compose: products and then()", "[optim][schedule]") {
  SECTION("warmup * cosine is the product at every step") {
    const auto w = schedule::warmup(10), c = schedule::cosine(100);
    const auto s = w * c;
    for (int t : {0, 3, 10, 50, 99, 100, 150}) CHECK(s(t) == Approx(w(t) * c(t)).margin(1e-15));
    CHECK(s(5) == Approx(0.5 * 0.5 * (1 + std::cos(std::numbers::pi * 0.05))).epsilon(1e-14));
  }
  SECTION("warmup then cosine: the second schedule is counted from the switch") {
    const auto s = schedule::warmup(10).then(10, schedule::cosine(90));
    CHECK(s(0) == 0.0);
    CHECK(s(5) == Approx(0.5).epsilon(1e-15));
    CHECK(s(9) == Approx(0.9).epsilon(1e-15));
    CHECK(s(10) == 1.0);                         // warmup(10) = 1 times cosine(0) = 1
    CHECK(s(55) == Approx(0.5).epsilon(1e-14));  // cosine's midpoint
    CHECK(s(100) == Approx(0.0).margin(1e-15));
  }
  SECTION("then() continues from the value the first schedule reached") {
    const auto s = schedule::step(10, 0.5).then(20, schedule::exponential(0.9));
    CHECK(s(19) == 0.5);
    CHECK(s(20) == 0.25);  // step(10, 0.5) at 20, times exponential at 0
    CHECK(s(22) == Approx(0.25 * 0.81).epsilon(1e-14));
  }
  SECTION("chains of then()") {
    const auto s =
        schedule::constant(1.0).then(5, schedule::constant(0.5)).then(10, schedule::constant(0.1));
    CHECK(s(4) == 1.0);
    CHECK(s(5) == 0.5);
    CHECK(s(9) == 0.5);
    CHECK(s(10) == Approx(0.05).epsilon(1e-15));
  }
}

TEST_CASE("LrScheduler sets the optimiser's learning rate to base_lr * schedule(t)",
          "[optim][schedule]") {
  auto w = optim_test::parameter(Mat::Zero(1, 2), 2, "w");
  opt::SGD<double> o({w}, {.lr = 0.2});
  opt::LrScheduler<double> sched(o, schedule::step(2, 0.5));
  CHECK(sched.count() == 0);
  CHECK(o.lr() == 0.2);
  sched.step();
  CHECK(o.lr() == 0.2);
  sched.step();
  CHECK(sched.count() == 2);
  CHECK(o.lr() == Approx(0.1).epsilon(1e-15));
  CHECK(sched.lr() == o.lr());
  sched.set_count(6);  // after loading a checkpoint
  CHECK(o.lr() == Approx(0.025).epsilon(1e-15));

  SECTION("the scheduled rate is the one step() uses") {
    w.mutable_grad().setOnes();
    REQUIRE(o.step());
    CHECK(w.value()(0, 0) == Approx(-0.025).epsilon(1e-15));
  }
}

TEST_CASE("LrScheduler applies the schedule at construction (warm-up from zero)",
          "[optim][schedule]") {
  auto w = optim_test::parameter(Mat::Ones(1, 2), 2, "w");
  opt::Adam<double> o({w}, {.lr = 0.01});
  opt::LrScheduler<double> sched(o, schedule::warmup(4) * schedule::cosine(20));
  CHECK(o.lr() == 0.0);
  w.mutable_grad().setOnes();
  REQUIRE(o.step());
  CHECK(w.value()(0, 0) == 1.0);  // lr 0: nothing moves
  sched.step();
  CHECK(o.lr() == Approx(0.01 * 0.25 * 0.5 * (1 + std::cos(std::numbers::pi / 20))).epsilon(1e-12));
  for (int t = 0; t < 30; ++t) sched.step();
  CHECK(o.lr() == Approx(0.0).margin(1e-18));
}

TEST_CASE("LrScheduler rejects a schedule that makes the rate negative", "[optim][schedule]") {
  auto w = optim_test::parameter(Mat::Ones(1, 2), 2, "w");
  opt::SGD<double> o({w}, {.lr = 0.1});
  opt::LrScheduler<double> sched(o, schedule::exponential(-0.5));  // 1 at t = 0
  CHECK(o.lr() == 0.1);
  CHECK_THROWS_AS(sched.step(), gs::ValueError);
}
