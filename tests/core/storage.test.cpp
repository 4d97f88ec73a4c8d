// The tape's storage: the arena that holds values and gradients, and the node list. Both are
// reused across Tape::reset(), and both are on the hot path of recording an op, so their fast
// paths are small; these tests pin down what the fast paths must keep true.

#include <catch2/catch.hpp>

#include <gradscope/core/core.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace gs = gradscope;
using gs::detail::Arena;

namespace {
std::uintptr_t address(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// True when [p, p + n) and [q, q + m) share no byte.
bool disjoint(const std::byte* p, std::size_t n, const std::byte* q, std::size_t m) {
  return p + n <= q || q + m <= p;
}
}  // namespace

TEST_CASE("arena: allocations are 64-byte aligned, disjoint, and counted in used()",
          "[core][arena]") {
  Arena arena(1024);  // a small first block, so that the requests below span several blocks
  struct Allocation {
    std::byte* p;
    std::size_t n;
  };
  std::vector<Allocation> all;
  std::size_t expected_used = 0;
  for (std::size_t n : {1, 63, 64, 65, 200, 1000, 1024, 3000, 5, 700, 9000, 64}) {
    auto* p = static_cast<std::byte*>(arena.allocate(n));
    CHECK(address(p) % Arena::alignment == 0);
    std::memset(p, static_cast<int>(all.size() + 1), n);  // every byte of it is writable
    all.push_back({p, n});
    expected_used += (n + 63) / 64 * 64;
    CHECK(arena.used() == expected_used);
  }
  for (std::size_t i = 0; i < all.size(); ++i) {
    for (std::size_t j = i + 1; j < all.size(); ++j)
      CHECK(disjoint(all[i].p, all[i].n, all[j].p, all[j].n));
    // Nothing later overwrote an earlier allocation.
    for (std::size_t k = 0; k < all[i].n; ++k)
      if (all[i].p[k] != static_cast<std::byte>(i + 1)) FAIL("allocation " << i << " overwritten");
  }
  CHECK(arena.capacity() >= arena.used());
}

TEST_CASE("arena: reset() keeps the blocks and hands out the same memory again", "[core][arena]") {
  Arena arena(1024);
  std::vector<void*> first;
  for (std::size_t n : {512, 512, 512, 4096, 100})  // the 4096 needs a block of its own
    first.push_back(arena.allocate(n));
  const std::size_t capacity = arena.capacity();
  CHECK(capacity >= 1024 + 4096);

  arena.reset();
  CHECK(arena.used() == 0);
  CHECK(arena.capacity() == capacity);
  std::vector<void*> second;
  for (std::size_t n : {512, 512, 512, 4096, 100}) second.push_back(arena.allocate(n));
  CHECK(second == first);  // the same requests land in the same places: a steady state
  CHECK(arena.capacity() == capacity);
}

TEST_CASE("arena: after reset() a request too big for the first block uses a later one",
          "[core][arena]") {
  Arena arena(256);
  arena.allocate(256);   // fills the first block
  arena.allocate(2048);  // a second block, of 2048 bytes
  const std::size_t capacity = arena.capacity();
  arena.reset();
  void* p = arena.allocate(2048);  // does not fit the first block; the second one has room
  CHECK(address(p) % Arena::alignment == 0);
  CHECK(arena.capacity() == capacity);  // no new block
  CHECK(arena.used() == 2048);
  // Blocks are used in order: the skipped first block stays empty until the next reset, and
  // used() counts what was handed out, not what was skipped.
  arena.allocate(64);
  CHECK(arena.used() == 2048 + 64);
}

TEST_CASE("arena: allocate_zeroed gives zeros even in reused memory", "[core][arena]") {
  Arena arena(1024);
  auto* p = arena.allocate_array<double>(16);
  for (int i = 0; i < 16; ++i) p[i] = 1.5 + i;
  arena.reset();
  auto* q = arena.allocate_zeroed<double>(16);
  CHECK(q == p);
  for (int i = 0; i < 16; ++i) CHECK(q[i] == 0.0);
}

TEST_CASE("node list: indices are consecutive and growth keeps every node", "[core][tape]") {
  gs::detail::NodeList<float> nodes;
  std::vector<float> values(3000);
  for (std::uint32_t i = 0; i < 3000; ++i) {
    const auto op = i % 2 ? gs::detail::Op::tanh : gs::detail::Op::add;
    const auto index = nodes.append(op, gs::Index(i + 1), gs::Index(2), std::uint8_t{2}, i % 3 == 0,
                                    &values[i], nullptr, i, i + 1, gs::detail::no_input);
    CHECK(index == i);
  }
  REQUIRE(nodes.size() == 3000);
  for (std::uint32_t i = 0; i < 3000; ++i) {
    const auto& n = nodes[i];
    if (n.rows != gs::Index(i + 1) || n.cols != 2 || n.value != &values[i] || n.in[0] != i ||
        n.in[1] != i + 1 || n.in[2] != gs::detail::no_input || n.requires_grad != (i % 3 == 0) ||
        n.grad != nullptr || n.aux != nullptr)
      FAIL("node " << i << " changed when the list grew");
  }
  const auto* data = &nodes[0];
  nodes.clear();
  CHECK(nodes.size() == 0);
  const auto none = gs::detail::no_input;
  CHECK(nodes.append(gs::detail::Op::neg, gs::Index(1), gs::Index(1), std::uint8_t{0}, false,
                     &values[0], nullptr, none, none, none) == 0u);
  CHECK(&nodes[0] == data);  // clear() keeps the memory
}

TEST_CASE("tape: a long recording keeps every node valid as the node list grows", "[core][tape]") {
  gs::Tape<double> tape;
  auto x = tape.variable(gs::Matrix<double>::Constant(1, 1, 0.5));
  std::vector<gs::Tensor<double>> kept;
  gs::Tensor<double> y = x;
  for (int i = 0; i < 5000; ++i) {  // far past the initial capacity of 256 nodes
    y = gs::add_scalar(y, 1.0);
    if (i % 500 == 0) kept.push_back(y);
  }
  for (std::size_t k = 0; k < kept.size(); ++k)
    CHECK(kept[k].value()(0, 0) == 0.5 + 1.0 + 500.0 * static_cast<double>(k));
  tape.backward(y);
  CHECK(x.grad()(0, 0) == 1.0);
}
