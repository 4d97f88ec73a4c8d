// tests/dist: data-parallel training over MPI (include/gradscope/dist/). CTest runs this program
// under `mpiexec -n 2`: every rank runs every test case, and the cases call the same collectives
// in the same order on every rank. Checks use CHECK (not REQUIRE) where collectives follow, so a
// failure on one rank never leaves the other waiting; a hang is caught by the CTest TIMEOUT.
//
// The reference of each property is computed by every rank on its own: one process on the whole
// global batch, from the same initial weights.
#define CATCH_CONFIG_EXTERNAL_INTERFACES  // the listener base class
#include <catch2/catch.hpp>

#include <gradscope/diagnostics/diagnostics.hpp>
#include <gradscope/dist/dist.hpp>
#include <gradscope/gradscope.hpp>
#include <gradscope/io/io.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <vector>

namespace {

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace optim = gradscope::optim;
namespace dist = gradscope::dist;

// MPI for the whole test run: Catch2's main is shared by every test program, so MPI starts and
// ends with the run's events.
struct MpiListener : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testRunStarting(const Catch::TestRunInfo&) override {
    int on = 0;
    MPI_Initialized(&on);
    if (!on) MPI_Init(nullptr, nullptr);
  }
  void testRunEnded(const Catch::TestRunStats&) override { MPI_Finalize(); }
};
CATCH_REGISTER_LISTENER(MpiListener)

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

constexpr gs::Index kFeatures = 12, kClasses = 5, kBatch = 8;

// Dense 12->16, [BatchNorm], ReLU, Dense 16->16, Tanh, Dense 16->5, from `seed`.
template <class T>
std::shared_ptr<nn::Sequential<T>> make_net(std::uint64_t seed, bool batchnorm) {
  gs::Rng rng(seed);
  auto net = std::make_shared<nn::Sequential<T>>();
  net->template add<nn::Dense>(kFeatures, 16, gs::init::he_normal, true, &rng);
  if (batchnorm) net->template add<nn::BatchNorm>(16);
  net->template add<nn::ReLU>();
  net->template add<nn::Dense>(16, 16, gs::init::xavier_uniform, true, &rng);
  net->template add<nn::Tanh>();
  net->template add<nn::Dense>(16, kClasses, gs::init::xavier_uniform, true, &rng);
  if (batchnorm)  // running statistics away from their initial 0 and 1
    for (auto& b : net->named_buffers()) b.tensor.mutable_value().array() += T(0.25);
  return net;
}

// The global batch, the same on every rank.
template <class T>
struct GlobalBatch {
  gs::Matrix<T> x;
  std::vector<int> y;
  GlobalBatch() : x(kBatch, kFeatures), y(kBatch) {
    gs::Rng rng(99);
    for (gs::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<T>(rng.normal(0.0, 1.5));
    for (auto& v : y) v = static_cast<int>(rng.below(kClasses));
  }
  gs::Tensor<T> rows(gs::Index first, gs::Index n) const {
    return gs::Tensor<T>(gs::Matrix<T>(x.middleRows(first, n)));
  }
  std::span<const int> labels(gs::Index first, gs::Index n) const {
    return {y.data() + first, static_cast<std::size_t>(n)};
  }
};

// Forward and backward of the mean cross-entropy on rows [first, first + n); returns the loss.
template <class T>
double forward_backward(nn::Module<T>& net, const GlobalBatch<T>& b, gs::Index first, gs::Index n) {
  gs::Tape<T> tape;
  auto loss = nn::softmax_cross_entropy(net(b.rows(first, n)), b.labels(first, n));
  tape.backward(loss);
  return static_cast<double>(loss.item());
}

// max |a - b| / max |b| over every parameter and buffer.
template <class T>
double relative_difference(const nn::Module<T>& a, const nn::Module<T>& b) {
  auto ta = a.named_parameters(), tb = b.named_parameters();
  for (auto& x : a.named_buffers()) ta.push_back(x);
  for (auto& x : b.named_buffers()) tb.push_back(x);
  double diff = 0, scale = 0;
  for (std::size_t k = 0; k < ta.size(); ++k) {
    const auto va = ta[k].tensor.value(), vb = tb[k].tensor.value();
    diff = std::max(diff, static_cast<double>((va - vb).cwiseAbs().maxCoeff()));
    scale = std::max(scale, static_cast<double>(vb.cwiseAbs().maxCoeff()));
  }
  return diff / scale;
}

template <class T>
constexpr double tolerance() {
  return std::is_same_v<T, float> ? 1e-6 : 1e-12;
}

// This rank's rows of the global batch: [first, first + n).
struct Shard {
  gs::Index first, n;
};
Shard half_batch(int rank, int ranks) {
  const gs::Index per = kBatch / ranks;
  return {rank * per, per};
}

}  // namespace

TEMPLATE_TEST_CASE(
    "two ranks with half the batch each take the step one process takes on the "
    "whole batch",
    "[dist]", float, double) {
  using T = TestType;
  REQUIRE(world_size() == 2);
  const int rank = world_rank();
  const GlobalBatch<T> batch;
  const bool clip = GENERATE(false, true);
  const bool uneven = GENERATE(false, true);
  const bool shared_memory = GENERATE(true, false);
  INFO("clip_grad_norm " << (clip ? "on" : "off") << ", " << (uneven ? "5 + 3" : "4 + 4")
                         << " rows, "
                         << (shared_memory ? "shared-memory window" : "MPI_Allreduce"));
  // Rank 1 starts from other weights: the broadcast gives it rank 0's.
  auto ref = make_net<T>(1, false);
  auto net = make_net<T>(1 + static_cast<std::uint64_t>(rank), false);
  dist::DataParallel<T> dp(*net, MPI_COMM_WORLD, {.shared_memory = shared_memory});
  CHECK(dp.uses_shared_memory() == shared_memory);  // both ranks are on this machine
  CHECK(relative_difference(*net, *ref) == 0);

  // The reference: one process, the whole batch.
  const double ref_loss = forward_backward(*ref, batch, 0, kBatch);
  const double ref_norm = optim::grad_norm(ref->parameters());
  const double max_norm = 0.5 * ref_norm;  // so that clipping acts
  if (clip) optim::clip_grad_norm(ref->parameters(), max_norm);
  optim::SGD<T> ref_opt(ref->parameters(), {.lr = T(0.5), .momentum = T(0.9)});
  ref_opt.step();

  // Two ranks, each on its rows.
  // The monitor sums each gradient while backward produces it (this rank's); after the
  // allreduce, gradients_changed() makes it read the averaged ones.
  gs::diagnostics::GradientMonitor<T> monitor(*net);
  const Shard s = uneven ? (rank == 0 ? Shard{0, 5} : Shard{5, 3}) : half_batch(rank, 2);
  const double local_loss = forward_backward(*net, batch, s.first, s.n);
  const auto summary = dp.allreduce_gradients(s.n, local_loss);
  monitor.gradients_changed();
  monitor.record_gradients(summary.loss);
  CHECK(summary.finite);
  CHECK(summary.samples == kBatch);
  CHECK(summary.loss == Approx(ref_loss).epsilon(1e-6));
  // The monitor read the averaged gradients, the ones the optimiser uses.
  CHECK(monitor.history().records().back().total_norm == Approx(ref_norm).epsilon(1e-6));
  if (clip)
    CHECK(optim::clip_grad_norm(net->parameters(), max_norm) == Approx(ref_norm).epsilon(1e-6));
  optim::SGD<T> opt(net->parameters(), {.lr = T(0.5), .momentum = T(0.9)});
  opt.step();

  const double rel = relative_difference(*net, *ref);
  INFO("rank " << rank << ": relative difference " << rel);
  CHECK(rel <= tolerance<T>());
  // The step moved the parameters far more than the tolerance: the comparison can fail.
  auto start = make_net<T>(1, false);
  CHECK(relative_difference(*start, *ref) > 1e-3);
  dp.check_consistent();
}

TEMPLATE_TEST_CASE(
    "batch norm under DataParallel: per-rank batch statistics, running "
    "statistics averaged by synchronize_buffers",
    "[dist]", float, double) {
  using T = TestType;
  const int rank = world_rank();
  const GlobalBatch<T> batch;
  auto ref = make_net<T>(3, true);
  auto net = make_net<T>(3, true);
  dist::DataParallel<T> dp(*net);

  // Reference: one process normalising each half with its own statistics ("ghost batches"),
  // gradients averaged, running statistics updated from each half and averaged.
  const auto running0 = ref->named_buffers();
  std::vector<gs::Matrix<T>> initial, after_a;
  for (auto& b : running0) initial.push_back(b.tensor.to_matrix());
  forward_backward(*ref, batch, 0, 4);
  for (auto& b : running0) after_a.push_back(b.tensor.to_matrix());
  for (std::size_t k = 0; k < running0.size(); ++k) {
    gs::Tensor<T> t = running0[k].tensor;
    t.mutable_value() = initial[k];
  }
  forward_backward(*ref, batch, 4, 4);
  for (std::size_t k = 0; k < running0.size(); ++k) {
    gs::Tensor<T> t = running0[k].tensor;
    t.mutable_value() = (t.value() + after_a[k]) / T(2);
  }
  for (auto p : ref->parameters()) p.mutable_grad() /= T(2);
  optim::SGD<T> ref_opt(ref->parameters(), {.lr = T(0.5)});
  ref_opt.step();

  const Shard s = half_batch(rank, 2);
  const double local_loss = forward_backward(*net, batch, s.first, s.n);
  dp.allreduce_gradients(s.n, local_loss);
  dp.synchronize_buffers();
  optim::SGD<T> opt(net->parameters(), {.lr = T(0.5)});
  opt.step();
  const double rel = relative_difference(*net, *ref);
  INFO("rank " << rank << ": relative difference " << rel);
  CHECK(rel <= tolerance<T>());
  dp.check_consistent();

  // What the docs say: this is not batch norm over the whole batch (that would need
  // synchronised batch statistics in the forward pass).
  auto whole = make_net<T>(3, true);
  forward_backward(*whole, batch, 0, kBatch);
  optim::SGD<T> whole_opt(whole->parameters(), {.lr = T(0.5)});
  whole_opt.step();
  CHECK(relative_difference(*net, *whole) > 1e-4);
}

TEMPLATE_TEST_CASE(
    "a NaN in rank 1's gradient is reported with its rank on every rank, and no "
    "rank is left in a collective",
    "[dist]", float, double) {
  using T = TestType;
  const int rank = world_rank();
  const GlobalBatch<T> batch;
  auto net = make_net<T>(5, false);
  const Shard s = half_batch(rank, 2);

  SECTION("NonFinite::error throws NonFiniteGradientError on every rank") {
    dist::DataParallel<T> dp(*net);
    forward_backward(*net, batch, s.first, s.n);
    if (rank == 1) net->named_parameters()[2].tensor.mutable_grad()(3, 1) = std::nanf("");
    std::string message;
    std::vector<int> ranks;
    try {
      dp.allreduce_gradients(s.n);
    } catch (const dist::NonFiniteGradientError& e) {
      message = e.what();
      ranks = e.ranks();
    }
    INFO("rank " << rank << " caught: " << message);
    CHECK(message.find("non-finite gradient on rank 1: parameter '2.weight' of shape [16, 16]") !=
          std::string::npos);
    CHECK(ranks == std::vector<int>{1});
    // Every rank is out of the collective and in step: the next one completes.
    CHECK(dp.mean(static_cast<double>(rank)) == 0.5);
  }
  SECTION("NonFinite::skip reports it and every rank's optimiser skips the step") {
    // (through MPI_Allreduce; the error section above goes through the shared-memory window)
    dist::DataParallel<T> dp(*net, MPI_COMM_WORLD,
                             {.shared_memory = false, .non_finite = optim::NonFinite::skip});
    auto before = make_net<T>(5, false);
    forward_backward(*net, batch, s.first, s.n);
    if (rank == 1) net->named_parameters()[0].tensor.mutable_grad()(0, 0) = INFINITY;
    const auto summary = dp.allreduce_gradients(s.n);
    CHECK_FALSE(summary.finite);
    CHECK(summary.non_finite_ranks == std::vector<int>{1});
    CHECK(summary.non_finite_detail == "1: parameter '0.weight' of shape [16, 12]");
    optim::SGD<T> opt(net->parameters(), {.lr = T(0.1), .non_finite = optim::NonFinite::skip});
    CHECK_FALSE(opt.step());
    CHECK(relative_difference(*net, *before) == 0);
    dp.check_consistent();
  }
}

TEST_CASE("rank 0's checkpoint resumes every rank; check_consistent names a replica that differs",
          "[dist]") {
  using T = float;
  namespace fs = std::filesystem;
  const int rank = world_rank();
  const GlobalBatch<T> batch;
  const Shard s = half_batch(rank, 2);
  auto net = make_net<T>(7, true);
  dist::DataParallel<T> dp(*net);
  optim::Adam<T> opt(net->parameters(), {.lr = T(0.01)});
  for (int step = 0; step < 3; ++step) {
    forward_backward(*net, batch, s.first, s.n);
    dp.allreduce_gradients(s.n);
    opt.step();
    opt.zero_grad();
  }
  dp.synchronize_buffers();
  int pid = static_cast<int>(::getpid());
  MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD);
  const fs::path path = fs::temp_directory_path() / ("gradscope_dist_" + std::to_string(pid));
  if (dp.rank() == 0) gs::io::save_checkpoint(path, *net, &opt, {{"epoch", "1"}});
  MPI_Barrier(MPI_COMM_WORLD);

  // Every rank resumes from the file into a fresh replica and optimiser.
  auto resumed = make_net<T>(100 + static_cast<std::uint64_t>(rank), true);
  dist::DataParallel<T> dp2(*resumed, MPI_COMM_WORLD, {.broadcast = false});
  optim::Adam<T> opt2(resumed->parameters(), {.lr = T(0.01)});
  const auto meta = gs::io::load_checkpoint(path, *resumed, &opt2);
  CHECK(meta.at("epoch") == "1");
  CHECK(opt2.steps() == 3);
  CHECK(relative_difference(*resumed, *net) == 0);
  dp2.check_consistent();
  // The next step is the same as the uninterrupted run's.
  for (auto* pair : {&dp, &dp2}) {
    auto& m = pair == &dp ? *net : *resumed;
    forward_backward(m, batch, s.first, s.n);
    pair->allreduce_gradients(s.n);
  }
  opt.step();
  opt2.step();
  CHECK(relative_difference(*resumed, *net) == 0);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) fs::remove(path);

  // A replica that drifted is named.
  if (rank == 1) resumed->named_parameters()[3].tensor.mutable_value()(0, 0) += 1e-3f;
  std::string message;
  try {
    dp2.check_consistent();
  } catch (const dist::CollectiveError& e) {
    message = e.what();
    CHECK(e.ranks() == std::vector<int>{1});
  }
  INFO(message);
  CHECK(message.find("rank 1's '1.bias' differs from rank 0's") != std::string::npos);
}
