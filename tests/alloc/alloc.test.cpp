// Heap allocations of a steady-state training step: after the first iterations have sized the
// tape's arena and vectors, recording a fixed graph and back-propagating through it allocates
// nothing.
//
// Two counters: every global operator new (replaced below, all forms), and every heap block
// Eigen takes itself (Eigen calls std::malloc, not operator new). The latter uses Eigen's own
// hook: with EIGEN_RUNTIME_NO_MALLOC, each heap allocation asserts through eigen_assert while
// Eigen::internal::set_is_malloc_allowed(false) is in force; our eigen_assert counts it instead
// of aborting (and counts any other failed Eigen assertion separately, which must stay zero).
//
// This file is its own executable (test_alloc) with its own Catch main (main.cpp): replacing
// operator new must not affect the other test binaries.

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

namespace alloc_counter {
inline std::atomic<long> news{0};        // calls of any global operator new / new[]
inline std::atomic<long> deletes{0};     // calls of any global operator delete / delete[]
inline std::atomic<long> eigen_heap{0};  // Eigen heap allocations made while forbidden
inline std::atomic<long> eigen_other_asserts{0};
inline const char* first_other_assert = nullptr;

inline void eigen_assert_failed(const char* expression) {
  if (std::strstr(expression, "heap allocation is forbidden")) {
    ++eigen_heap;
  } else {
    if (!first_other_assert) first_other_assert = expression;
    ++eigen_other_asserts;
  }
}

inline void* allocate(std::size_t size) {
  ++news;
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
inline void* allocate(std::size_t size, std::align_val_t alignment) {
  ++news;
  const auto a = static_cast<std::size_t>(alignment);
  const std::size_t rounded = ((size ? size : 1) + a - 1) / a * a;  // aligned_alloc needs this
  if (void* p = std::aligned_alloc(a, rounded)) return p;
  throw std::bad_alloc();
}
inline void release(void* p) noexcept {
  if (p) ++deletes;
  std::free(p);
}
}  // namespace alloc_counter

// The replaceable global allocation functions, every overload, counting.
void* operator new(std::size_t n) { return alloc_counter::allocate(n); }
void* operator new[](std::size_t n) { return alloc_counter::allocate(n); }
void* operator new(std::size_t n, std::align_val_t a) { return alloc_counter::allocate(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return alloc_counter::allocate(n, a); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return alloc_counter::allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return alloc_counter::allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return alloc_counter::allocate(n, a);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return alloc_counter::allocate(n, a);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { alloc_counter::release(p); }
void operator delete[](void* p) noexcept { alloc_counter::release(p); }
void operator delete(void* p, std::size_t) noexcept { alloc_counter::release(p); }
void operator delete[](void* p, std::size_t) noexcept { alloc_counter::release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { alloc_counter::release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { alloc_counter::release(p); }
void operator delete(void* p, std::align_val_t) noexcept { alloc_counter::release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { alloc_counter::release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { alloc_counter::release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  alloc_counter::release(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  alloc_counter::release(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  alloc_counter::release(p);
}

// Before any Eigen header: route Eigen's heap allocations and assertions to the counters.
#define EIGEN_RUNTIME_NO_MALLOC
#define eigen_assert(x)                                                  \
  do {                                                                   \
    if (!static_cast<bool>(x)) ::alloc_counter::eigen_assert_failed(#x); \
  } while (false)

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace gs = gradscope;
using gs::Index;

namespace {

struct Counts {
  long news = 0;
  long eigen_heap = 0;
};

/// Runs `step` `warmup` times, then counts the allocations of `measured` more runs.
template <class Step>
Counts count_allocations(Step&& step, int warmup, int measured) {
  for (int i = 0; i < warmup; ++i) step();
  Eigen::internal::set_is_malloc_allowed(false);
  const long news0 = alloc_counter::news, eigen0 = alloc_counter::eigen_heap;
  for (int i = 0; i < measured; ++i) step();
  const Counts c{alloc_counter::news - news0, alloc_counter::eigen_heap - eigen0};
  Eigen::internal::set_is_malloc_allowed(true);
  return c;
}

/// A two-layer perceptron and the persistent state of its training loop.
struct Mlp {
  gs::Tensor<float> W1, b1, W2, b2;  // parameters
  gs::Tensor<float> x;               // a fixed batch
  std::vector<int> labels;
  float lr = 0.01f;

  Mlp(Index batch, Index in, Index hidden, Index classes, std::uint64_t seed) {
    gs::Rng rng(seed);
    W1 = gs::Tensor<float>::randn(hidden, in, rng, 0, 0.05f).set_requires_grad(true);
    b1 = gs::Tensor<float>::zeros(gs::Shape::vector(hidden)).set_requires_grad(true);
    W2 = gs::Tensor<float>::randn(classes, hidden, rng, 0, 0.1f).set_requires_grad(true);
    b2 = gs::Tensor<float>::zeros(gs::Shape::vector(classes)).set_requires_grad(true);
    x = gs::Tensor<float>::uniform(batch, in, rng);
    for (Index i = 0; i < batch; ++i)
      labels.push_back(static_cast<int>(rng.below(static_cast<std::uint64_t>(classes))));
  }

  /// One SGD step, written as a user would: forward, backward, update, zero_grad.
  float step(gs::Tape<float>& tape) {
    tape.reset();
    const auto h = gs::relu(gs::linear(x, W1, b1));
    const auto logits = gs::linear(h, W2, b2);
    const auto loss = gs::softmax_cross_entropy(logits, labels);
    tape.backward(loss);
    update();
    return loss.item();
  }

  void update() {
    for (auto* p : {&W1, &b1, &W2, &b2}) {
      p->mutable_value() -= lr * p->grad();
      p->zero_grad();
    }
  }
};

}  // namespace

TEST_CASE("a steady-state MLP step allocates nothing (batch 32, 784 -> 32 -> 10)",
          "[alloc][core]") {
  Mlp net(32, 784, 32, 10, 1);
  gs::Tape<float> tape;
  float first_loss = 0, last_loss = 0;
  std::size_t capacity = 0, nodes = 0;
  int iteration = 0;
  const auto counts = count_allocations(
      [&] {
        last_loss = net.step(tape);
        if (iteration++ == 0) first_loss = last_loss;
        if (iteration == 2) {
          capacity = tape.arena_capacity();
          nodes = tape.size();
        }
      },
      2, 20);
  INFO("operator new calls: " << counts.news << ", Eigen heap blocks: " << counts.eigen_heap);
  CHECK(counts.news == 0);
  CHECK(counts.eigen_heap == 0);
  CHECK(alloc_counter::eigen_other_asserts == 0);
  CHECK(tape.arena_capacity() == capacity);
  CHECK(tape.size() == nodes);
  CHECK(last_loss < first_loss);  // the steps really train
}

TEST_CASE("a steady-state step of a graph using every op allocates nothing", "[alloc][core]") {
  // batch 64, 256 -> 64 -> 10, with sigmoid, tanh, mean and the rest around the MLP.
  Mlp net(64, 256, 64, 10, 2);
  auto gain = gs::Tensor<float>::ones(gs::Shape::vector(64)).set_requires_grad(true);
  gs::Rng rng(3);
  const auto targets = gs::Tensor<float>::uniform(64, 10, rng);
  gs::Tape<float> tape;
  int hook_calls = 0;
  auto hook = gain.register_hook([&](const auto&) { ++hook_calls; });  // registered once

  const auto step = [&] {
    tape.reset();
    const auto a = gs::linear(net.x, net.W1, net.b1);
    const auto h = gs::add(gs::relu(a), gs::scale(gs::mul(gs::sigmoid(a), gs::tanh(a)), 0.5f));
    const auto g = gs::mul(h, gain);  // broadcast [64] over the batch
    const auto e = gs::elu(gs::leaky_relu(g, 0.1f), 0.5f);
    const auto logits = gs::linear(e, net.W2, net.b2);
    const auto ce = gs::softmax_cross_entropy(logits, net.labels);
    const auto bce = gs::binary_cross_entropy_with_logits(logits, targets);
    const auto p = gs::softmax(logits);
    const auto lp = gs::log_softmax(logits);
    const auto entropy = gs::mean(gs::sum(gs::mul(p, lp), gs::Reduce::per_row));
    const auto gram = gs::matmul(e, e, {.transpose_a = true, .transpose_b = false});  // [64, 64]
    const auto reg = gs::mean(gs::sqrt(gs::add_scalar(gs::square(gram), 1.0f)));
    const auto col = gs::mean(gs::transpose(gs::sum(e, gs::Reduce::per_column)));
    const auto misc = gs::add(gs::mean(gs::exp(gs::clamp(a, -3.0f, 3.0f))),
                              gs::mean(gs::log(gs::add_scalar(gs::abs(a), 1.0f))));
    const auto ratio = gs::mean(gs::div(gs::pow(gs::add_scalar(gs::square(g), 1.0f), 0.5f),
                                        gs::add_scalar(gs::exp(g), 1.0f)));
    auto loss = ce + 0.5f * bce - 0.1f * entropy + 1e-4f * reg + 1e-3f * (col + misc) +
                gs::sub(ratio, gs::neg(ratio)) / 2.0f;
    loss = 1.0f - (2.0f - loss);  // the remaining scalar operators
    tape.backward(loss);
    net.update();
    gain.mutable_value() -= net.lr * gain.grad();
    gain.zero_grad();
  };
  for (int i = 0; i < 2; ++i) step();
  const std::size_t capacity = tape.arena_capacity();
  const auto counts = count_allocations(step, 0, 20);
  INFO("operator new calls: " << counts.news << ", Eigen heap blocks: " << counts.eigen_heap);
  CHECK(counts.news == 0);
  CHECK(counts.eigen_heap == 0);
  CHECK(alloc_counter::eigen_other_asserts == 0);
  CHECK(tape.arena_capacity() == capacity);
  CHECK(hook_calls == 22);
  hook.remove();
}

TEST_CASE("a double-precision step on a tape reset each iteration allocates nothing",
          "[alloc][core]") {
  auto W = gs::Tensor<double>::parameter(gs::Matrix<double>::Constant(8, 16, 0.1));
  const gs::Tensor<double> x(gs::Matrix<double>::Constant(4, 16, 0.5));
  gs::Tape<double> tape;
  const auto counts = count_allocations(
      [&] {
        tape.reset();
        tape.backward(gs::mean(gs::tanh(gs::matmul(x, W, {.transpose_b = true}))));
        W.zero_grad();
      },
      2, 10);
  CHECK(counts.news == 0);
  CHECK(counts.eigen_heap == 0);
}

TEST_CASE("the first iterations allocate, then the tape's memory is reused", "[alloc][core]") {
  // The counters see allocations: without this, zero above could mean a broken counter.
  Mlp net(8, 16, 8, 4, 4);
  const long news0 = alloc_counter::news;
  gs::Tape<float> tape;  // its node vector and first arena block
  net.step(tape);
  CHECK(alloc_counter::news > news0);
  Eigen::internal::set_is_malloc_allowed(false);
  const long eigen0 = alloc_counter::eigen_heap;
  gs::Matrix<float> m(100, 100);  // Eigen's own heap block
  Eigen::internal::set_is_malloc_allowed(true);
  CHECK(alloc_counter::eigen_heap == eigen0 + 1);
  m.setZero();
  CHECK(m.sum() == 0);
}

// ---- products larger than Eigen's stack limit ----

namespace {
/// Heap blocks Eigen's sequential GEMM takes when a product expression (dst.noalias() = lhs *
/// rhs) computes a row-major dst[rows, cols] with inner dimension `depth`. Eigen computes the
/// result's transpose (so its m, n are cols, rows), picks the blocking kc, mc, nc from this CPU's
/// cache sizes, and packs panels of kc x mc and kc x nc scalars, each on the stack only up to
/// EIGEN_STACK_ALLOCATION_LIMIT bytes.
int gemm_heap_blocks(Index rows, Index cols, Index depth) {
  if (rows + cols + depth < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD) return 0;  // coefficient-based
  if (rows == 1 || cols == 1) return 0;                                    // GEMV
  Index kc = depth, mc = cols, nc = rows;
  Eigen::internal::computeProductBlockingSizes<float, float, 1, Index>(kc, mc, nc, Index{1});
  const auto bytes = [](Index n) { return static_cast<std::size_t>(n) * sizeof(float); };
  return (bytes(kc * std::min(cols, mc)) > EIGEN_STACK_ALLOCATION_LIMIT ? 1 : 0) +
         (bytes(kc * std::min(rows, nc)) > EIGEN_STACK_ALLOCATION_LIMIT ? 1 : 0);
}
}  // namespace

TEST_CASE("a step whose products exceed Eigen's stack limit allocates nothing",
          "[alloc][core][gemm]") {
  // With batch 32 and 784 -> 64 -> 10 (a typical MNIST MLP), Eigen's product expressions pack
  // panels larger than EIGEN_STACK_ALLOCATION_LIMIT (128 KiB) into heap blocks on CPUs whose
  // caches let Eigen take the whole depth of 784 in one block (e.g. 48 KiB L1, 2 MiB L2).
  // gradscope's products (detail::gemm) pack into a per-thread workspace instead, so the step
  // allocates nothing. How many blocks the expressions would take depends on the CPU; it is
  // computed from Eigen's blocking rule, and checked by evaluating the same products with
  // expressions, so a zero for gradscope is not a counter that misses Eigen's allocations.
  struct Case {
    Index batch, in, hidden, classes;
  };
  long expression_blocks = 0;
  for (const Case c : {Case{32, 784, 64, 10}, Case{128, 784, 128, 10}, Case{32, 784, 32, 10},
                       Case{256, 1024, 1024, 10}}) {
    INFO("batch " << c.batch << ", " << c.in << " -> " << c.hidden << " -> " << c.classes);
    Mlp net(c.batch, c.in, c.hidden, c.classes, 5);
    gs::Tape<float> tape;
    // On every CPU path this machine runs: gradscope's kernels, and Eigen's (baseline) with
    // gradscope's packing workspace.
    const gs::CpuPath previous = gs::cpu_path();
    for (const gs::CpuPath p : {gs::CpuPath::baseline, gs::CpuPath::avx2, gs::CpuPath::avx512}) {
      if (!gs::cpu_path_supported(p)) continue;
      gs::set_cpu_path(p);
      const auto counts = count_allocations([&] { net.step(tape); }, 2, 3);
      INFO("CPU path " << gs::to_string(p) << ": operator new calls: " << counts.news
                       << ", Eigen heap blocks: " << counts.eigen_heap);
      CHECK(counts.news == 0);
      CHECK(counts.eigen_heap == 0);
    }
    gs::set_cpu_path(previous);

    // The GEMMs of one step as Eigen expressions (the input x needs no gradient, so dx of the
    // first layer is not computed).
    const auto W1 = net.W1.value(), W2 = net.W2.value(), x = net.x.value();
    gs::Matrix<float> h(c.batch, c.hidden), logits(c.batch, c.classes), G2(c.batch, c.classes),
        G1(c.batch, c.hidden), dW2(c.classes, c.hidden), dW1(c.hidden, c.in);
    G2.setConstant(0.01f);
    G1.setConstant(0.01f);
    const int expected = gemm_heap_blocks(c.batch, c.hidden, c.in)         // x W1^T
                         + gemm_heap_blocks(c.batch, c.classes, c.hidden)  // h W2^T
                         + gemm_heap_blocks(c.batch, c.hidden, c.classes)  // dh = G W2
                         + gemm_heap_blocks(c.classes, c.hidden, c.batch)  // dW2 = G^T h
                         + gemm_heap_blocks(c.hidden, c.in, c.batch);      // dW1 = G^T x
    const auto expressions = count_allocations(
        [&] {
          h.noalias() = x * W1.transpose();
          logits.noalias() = h * W2.transpose();
          G1.noalias() = G2 * W2;
          dW2.noalias() = G2.transpose() * h;
          dW1.noalias() = G1.transpose() * x;
        },
        0, 1);
    INFO("the same products as Eigen expressions: " << expressions.eigen_heap
                                                    << " heap blocks, predicted " << expected);
    CHECK(expressions.eigen_heap == expected);
    expression_blocks += expressions.eigen_heap;
  }
  // On any CPU, a [256, 1024] x [1024, 1024] product packs more than 128 KiB somewhere.
  CHECK(expression_blocks > 0);
}

TEST_CASE("a steady-state step of an Embedding + LSTM / GRU classifier allocates nothing",
          "[alloc][nn][recurrent]") {
  // batch 16, 12 steps: Embedding(20 x 8) -> 2-layer LSTM or GRU (8 -> 16, every step fed to the
  // second layer) -> last step -> Dense(16 -> 4), trained with Adam. The layers keep their
  // per-step lists and zero states from the first batch on; the tape, the input lists of the
  // concatenations and the saved gate activations live in the arena.
  namespace nn = gs::nn;
  for (const auto kind : {nn::CellKind::lstm, nn::CellKind::gru}) {
    INFO((kind == nn::CellKind::lstm ? "LSTM" : "GRU"));
    gs::Rng rng(9);
    nn::Sequential<float> net;
    net.add<nn::Embedding>(20, 8, gs::init::normal(1.0), &rng);
    net.add(std::make_shared<nn::Recurrent<float>>(
        kind, 8, 16,
        nn::RecurrentOptions{
            .num_layers = 2, .output = nn::RecurrentOutput::last_step, .rng = &rng}));
    net.add<nn::Dense>(16, 4, gs::init::xavier_uniform, true, &rng);
    gs::optim::Adam<float> opt(net.parameters(), {.lr = 1e-2f});
    gs::Matrix<float> tokens(16, 12);
    std::vector<int> labels(16);
    for (Index i = 0; i < tokens.size(); ++i) tokens.data()[i] = float(rng.below(20));
    for (auto& l : labels) l = static_cast<int>(rng.below(4));
    const gs::Tensor<float> x(tokens);
    gs::Tape<float> tape;
    float first = 0, last = 0;
    int iteration = 0;
    const auto counts = count_allocations(
        [&] {
          tape.reset();
          const auto loss = gs::softmax_cross_entropy(net(x), labels);
          tape.backward(loss);
          opt.step();
          opt.zero_grad();
          last = loss.item();
          if (iteration++ == 0) first = last;
        },
        2, 10);
    INFO("operator new calls: " << counts.news << ", Eigen heap blocks: " << counts.eigen_heap);
    CHECK(counts.news == 0);
    CHECK(counts.eigen_heap == 0);
    CHECK(alloc_counter::eigen_other_asserts == 0);
    CHECK(last < first);
  }
}

TEST_CASE(
    "a steady-state step of an LSTM / GRU classifier over a batch of features allocates "
    "nothing",
    "[alloc][nn][recurrent]") {
  // batch 16, 12 steps of 8 features, a persistent [16, 12*8] input without a gradient (a batch
  // of data, as bench_rnn_train feeds): LSTM or GRU (8 -> 16, last step) -> Dense(16 -> 4), SGD.
  // The layer reads the batch as one row per step through a buffer it keeps (reshape would copy
  // it into a new tensor every batch).
  namespace nn = gs::nn;
  for (const auto kind : {nn::CellKind::lstm, nn::CellKind::gru}) {
    INFO((kind == nn::CellKind::lstm ? "LSTM" : "GRU"));
    gs::Rng rng(10);
    nn::Sequential<float> net;
    net.add(std::make_shared<nn::Recurrent<float>>(
        kind, 8, 16, nn::RecurrentOptions{.output = nn::RecurrentOutput::last_step, .rng = &rng}));
    net.add<nn::Dense>(16, 4, gs::init::xavier_uniform, true, &rng);
    gs::optim::SGD<float> opt(net.parameters(), {.lr = 0.1f});
    gs::Matrix<float> features(16, 12 * 8);
    std::vector<int> labels(16);
    for (Index i = 0; i < features.size(); ++i)
      features.data()[i] = static_cast<float>(rng.uniform(-1, 1));
    for (auto& l : labels) l = static_cast<int>(rng.below(4));
    const gs::Tensor<float> x(features);
    gs::Tape<float> tape;
    float first = 0, last = 0;
    int iteration = 0;
    const auto counts = count_allocations(
        [&] {
          tape.reset();
          const auto loss = gs::softmax_cross_entropy(net(x), labels);
          tape.backward(loss);
          opt.step();
          opt.zero_grad();
          last = loss.item();
          if (iteration++ == 0) first = last;
        },
        2, 10);
    INFO("operator new calls: " << counts.news << ", Eigen heap blocks: " << counts.eigen_heap);
    CHECK(counts.news == 0);
    CHECK(counts.eigen_heap == 0);
    CHECK(alloc_counter::eigen_other_asserts == 0);
    CHECK(last < first);
  }
}
