// Gradient hooks on tape nodes and on parameters: they fire once per backward with the right
// gradient, and HookHandle::remove unregisters them.

#include <catch2/catch.hpp>

#include <gradscope/core/core.hpp>

#include <vector>

namespace gs = gradscope;
using M = gs::Matrix<double>;

TEST_CASE("a tape-node hook fires once with the node's complete gradient", "[core][hooks]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{1, 2}, {3, 4}});
  auto h = gs::scale(x, 2);  // used twice below: its gradient is complete only after both
  int calls = 0;
  M seen;
  const auto handle = h.register_hook([&](const gs::ConstMatrixMap<double>& g) {
    ++calls;
    seen = g;
  });
  CHECK(handle.active());
  const auto loss = gs::add(gs::sum(gs::square(h)), gs::sum(h));  // d/dh = 2h + 1
  tape.backward(loss);
  CHECK(calls == 1);
  CHECK(seen == M{{5, 9}, {13, 17}});
  CHECK(M(x.grad()) == 2 * seen);
}

TEST_CASE("a hook on a tape variable fires with its gradient", "[core][hooks]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{1, -1}});
  auto x_handle = x;  // register_hook is non-const
  std::vector<M> seen;
  x_handle.register_hook([&](const gs::ConstMatrixMap<double>& g) { seen.emplace_back(g); });
  tape.backward(gs::sum(gs::scale(x, 3)));
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == M{{3, 3}});
}

TEST_CASE("several hooks on one node fire in registration order", "[core][hooks]") {
  gs::Tape<double> tape;
  auto x = tape.variable(M{{1}});
  std::vector<int> order;
  x.register_hook([&](const auto&) { order.push_back(1); });
  x.register_hook([&](const auto&) { order.push_back(2); });
  tape.backward(gs::square(x));
  CHECK(order == std::vector<int>{1, 2});
}

TEST_CASE("a removed tape-node hook does not fire", "[core][hooks]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{1, 2}});
  auto h = gs::exp(x);
  int removed_calls = 0, kept_calls = 0;
  auto removed = h.register_hook([&](const auto&) { ++removed_calls; });
  auto kept = h.register_hook([&](const auto&) { ++kept_calls; });
  removed.remove();
  CHECK_FALSE(removed.active());
  CHECK(kept.active());
  removed.remove();  // twice: nothing happens
  tape.backward(gs::sum(h));
  CHECK(removed_calls == 0);
  CHECK(kept_calls == 1);

  kept.remove();
  tape.backward(gs::sum(h));
  CHECK(kept_calls == 1);
}

TEST_CASE("a hook handle outliving a tape reset removes nothing", "[core][hooks]") {
  gs::Tape<double> tape;
  auto x = tape.variable(M{{1}});
  int old_calls = 0, new_calls = 0;
  auto old_handle = x.register_hook([&](const auto&) { ++old_calls; });
  tape.reset();
  auto y = tape.variable(M{{2}});  // same node index as x
  auto new_handle = y.register_hook([&](const auto&) { ++new_calls; });
  old_handle.remove();  // refers to the previous generation: must not remove y's hook
  tape.backward(gs::square(y));
  CHECK(old_calls == 0);
  CHECK(new_calls == 1);
}

TEST_CASE("a hook handle outliving its tape removes nothing", "[core][hooks]") {
  gs::HookHandle handle;
  int calls = 0;
  {
    gs::Tape<double> tape;
    auto x = tape.variable(M{{1}});
    handle = x.register_hook([&](const auto&) { ++calls; });
    tape.backward(gs::square(x));
  }
  CHECK(calls == 1);
  CHECK(handle.active());
  handle.remove();
  CHECK_FALSE(handle.active());
}

TEST_CASE("a parameter hook fires once per backward with that backward's gradient",
          "[core][hooks][parameter]") {
  auto w = gs::Tensor<double>::parameter(M{{1, 2}});
  std::vector<M> seen;
  auto handle = w.register_hook([&](const gs::ConstMatrixMap<double>& g) { seen.emplace_back(g); });
  for (int step = 1; step <= 2; ++step) {
    gs::Tape<double> tape;
    // w used twice: one leaf, so the hook still fires once, with the summed gradient.
    const auto loss = gs::add(gs::sum(gs::scale(w, step)), gs::sum(gs::square(w)));
    tape.backward(loss);
  }
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == M{{3, 5}});  // 1 + 2 w
  CHECK(seen[1] == M{{4, 6}});  // 2 + 2 w: the gradient of this call, not the accumulated one
  CHECK(M(w.grad()) == M{{7, 11}});

  handle.remove();
  CHECK_FALSE(handle.active());
  {
    gs::Tape<double> tape;
    tape.backward(gs::sum(w));
  }
  CHECK(seen.size() == 2);
}

TEST_CASE("removing one parameter hook keeps the others", "[core][hooks][parameter]") {
  auto w = gs::Tensor<double>::parameter(M{{1}});
  int a = 0, b = 0;
  auto ha = w.register_hook([&](const auto&) { ++a; });
  auto hb = w.register_hook([&](const auto&) { ++b; });
  ha.remove();
  {
    gs::Tape<double> tape;
    tape.backward(gs::square(w));
  }
  CHECK(a == 0);
  CHECK(b == 1);
}

TEST_CASE("a parameter hook handle outliving the parameter removes nothing",
          "[core][hooks][parameter]") {
  gs::HookHandle handle;
  {
    auto w = gs::Tensor<double>::parameter(M{{1}});
    handle = w.register_hook([](const auto&) {});
  }
  CHECK_NOTHROW(handle.remove());
}

TEST_CASE("hooks cannot be registered where there is no gradient", "[core][hooks][errors]") {
  auto c = gs::Tensor<double>::zeros(1, 1);
  CHECK_THROWS_AS(c.register_hook([](const auto&) {}), gs::UsageError);
  gs::Tensor<double> undefined;
  CHECK_THROWS_AS(undefined.register_hook([](const auto&) {}), gs::UsageError);
}

TEST_CASE("a hook does not fire when backward does not reach its node", "[core][hooks]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{1}});
  auto unused = gs::exp(x);
  int calls = 0;
  unused.register_hook([&](const auto&) { ++calls; });
  tape.backward(gs::square(x));
  CHECK(calls == 0);
}

TEST_CASE("a post-accumulate hook sees the accumulated gradient once per backward",
          "[core][hooks][parameter]") {
  auto w = gs::Tensor<double>::parameter(M{{1, 2}});
  std::vector<M> seen;
  auto handle = w.register_post_accumulate_hook(
      [&](const gs::ConstMatrixMap<double>& g) { seen.emplace_back(g); });
  for (int step = 1; step <= 2; ++step) {
    gs::Tape<double> tape;
    // w used twice: one leaf, so the hook fires once per backward.
    tape.backward(gs::add(gs::sum(gs::scale(w, step)), gs::sum(gs::square(w))));
  }
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == M{{3, 5}});   // 1 + 2 w
  CHECK(seen[1] == M{{7, 11}});  // the accumulated gradient: (1 + 2 w) + (2 + 2 w)
  CHECK(M(w.grad()) == M{{7, 11}});
  handle.remove();
  {
    gs::Tape<double> tape;
    tape.backward(gs::sum(w));
  }
  CHECK(seen.size() == 2);
}

TEST_CASE("post-accumulate and ordinary hooks on one parameter each see their own gradient",
          "[core][hooks][parameter]") {
  auto w = gs::Tensor<double>::parameter(M{{0.5, -1}});
  w.mutable_grad() = M{{10, 10}};  // an earlier accumulation
  M contribution, total;
  auto h1 = w.register_hook([&](const gs::ConstMatrixMap<double>& g) { contribution = g; });
  auto h2 =
      w.register_post_accumulate_hook([&](const gs::ConstMatrixMap<double>& g) { total = g; });
  gs::Tape<double> tape;
  tape.backward(gs::sum(gs::scale(w, 3)));
  CHECK(contribution == M{{3, 3}});
  CHECK(total == M{{13, 13}});
}

TEST_CASE("a post-accumulate hook does not fire for a parameter backward does not reach",
          "[core][hooks][parameter]") {
  auto w = gs::Tensor<double>::parameter(M{{1}});
  auto v = gs::Tensor<double>::parameter(M{{2}});
  int fired = 0;
  auto h = v.register_post_accumulate_hook([&](const auto&) { ++fired; });
  gs::Tape<double> tape;
  auto unused = gs::square(v);  // recorded, but not on the path to the loss
  tape.backward(gs::square(w));
  CHECK(fired == 0);
  (void)unused;
}

TEST_CASE("post-accumulate hooks exist only on parameters", "[core][hooks][errors]") {
  auto c = gs::Tensor<double>::zeros(1, 1);
  CHECK_THROWS_WITH(c.register_post_accumulate_hook([](const auto&) {}),
                    Catch::Matchers::Contains("only a parameter"));
  gs::Tape<double> tape;
  auto x = tape.variable(M{{1}});
  CHECK_THROWS_AS(gs::exp(x).register_post_accumulate_hook([](const auto&) {}), gs::UsageError);
}
