// io::RunState: checkpoints that carry the learning-rate schedule's position and the random
// streams (dropout masks, data shuffling), so that a resumed run is bit-identical to an
// uninterrupted one; and the checks on that metadata when it is read back.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>
#include <gradscope/io/io.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "io_test_util.hpp"

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace optim = gradscope::optim;
namespace io = gradscope::io;
using io_test::Bytes;
using io_test::error_of;
using io_test::TempDir;

namespace {

using M = gs::Matrix<float>;

/// Dense, ReLU, Dropout, Dense, Tanh, Dropout, Dense: two mask streams that advance every step.
/// `dropout_seed` 0 draws the streams' seeds from default_rng(): a resumed run that restored no
/// stream state would draw other masks.
std::shared_ptr<nn::Sequential<float>> make_net(std::uint64_t init_seed,
                                                std::uint64_t dropout_seed) {
  gs::Rng rng(init_seed);
  auto net = std::make_shared<nn::Sequential<float>>();
  net->add<nn::Dense>(6, 16, gs::init::he_normal, true, &rng);
  net->add<nn::ReLU>();
  net->add<nn::Dropout>(0.3, dropout_seed);
  net->add<nn::Dense>(16, 16, gs::init::xavier_uniform, true, &rng);
  net->add<nn::Tanh>();
  net->add<nn::Dropout>(0.2, dropout_seed ? dropout_seed + 1 : 0);
  net->add<nn::Dense>(16, 3, gs::init::xavier_uniform, true, &rng);
  return net;
}

struct Data {
  M x;
  std::vector<int> y;
};

Data make_data() {
  gs::Rng rng(77);
  Data d{M(60, 6), std::vector<int>(60)};
  for (gs::Index i = 0; i < d.x.size(); ++i) d.x.data()[i] = static_cast<float>(rng.normal());
  for (int i = 0; i < 60; ++i)
    d.y[static_cast<std::size_t>(i)] = (d.x(i, 0) + d.x(i, 1) > 0) + (d.x(i, 2) > 0.5f);
  return d;
}

/// A training run: its model, optimiser with a warm-up + cosine schedule, and a shuffling stream
/// of its own (a fresh permutation per epoch, drawn from `shuffle`).
struct Run {
  std::shared_ptr<nn::Sequential<float>> net;
  std::unique_ptr<optim::AdamW<float>> opt;
  std::unique_ptr<optim::LrScheduler<float>> sched;
  gs::Rng shuffle;
  std::vector<float> epoch_loss;

  Run(std::uint64_t init_seed, std::uint64_t dropout_seed, std::uint64_t shuffle_seed,
      int total_epochs)
      : net(make_net(init_seed, dropout_seed)), shuffle(shuffle_seed) {
    opt = std::make_unique<optim::AdamW<float>>(
        net->parameters(), optim::AdamOptions<float>{.lr = 0.05f, .weight_decay = 0.01f});
    const std::int64_t steps = total_epochs * 6;  // 60 samples, batches of 10
    sched = std::make_unique<optim::LrScheduler<float>>(
        *opt, optim::schedule::warmup(4, 0.1) * optim::schedule::cosine(steps, 0.05));
  }
  io::RunState<float> state() { return {sched.get(), {{"data", &shuffle}}}; }

  void epoch(const Data& d) {
    std::vector<gs::Index> order(60);
    std::iota(order.begin(), order.end(), gs::Index{0});
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[shuffle.below(i)]);
    gs::Tape<float> tape;
    float sum = 0;
    for (gs::Index b = 0; b < 60; b += 10) {
      tape.reset();
      M xb(10, 6);
      std::vector<int> yb(10);
      for (gs::Index i = 0; i < 10; ++i) {
        xb.row(i) = d.x.row(order[static_cast<std::size_t>(b + i)]);
        yb[static_cast<std::size_t>(i)] =
            d.y[static_cast<std::size_t>(order[static_cast<std::size_t>(b + i)])];
      }
      auto loss = nn::softmax_cross_entropy((*net)(tape.constant(xb)), yb);
      tape.backward(loss);
      REQUIRE(opt->step());
      opt->zero_grad();
      sched->step();
      sum += loss.item();
    }
    epoch_loss.push_back(sum);
  }
};

}  // namespace

TEST_CASE("a run resumed with its RunState is bit-identical to an uninterrupted one",
          "[io][checkpoint][resume]") {
  const Data d = make_data();
  TempDir dir;
  const auto path = dir / "epoch2.safetensors";

  Run full(1, 0, 5, 4);
  for (int e = 0; e < 4; ++e) {
    full.epoch(d);
    if (e == 1)
      io::save_checkpoint(path, *full.net, full.opt.get(), {{"epoch", "2"}}, full.state());
  }

  // A new process: other initial weights, other dropout and shuffling streams, a fresh schedule.
  gs::manual_seed(12345);
  Run resumed(99, 0, 6, 4);
  const auto meta = io::load_checkpoint(path, *resumed.net, resumed.opt.get(), resumed.state());
  CHECK(meta.at("epoch") == "2");
  CHECK(meta.count("gradscope.schedule.count") == 0);  // reserved keys stay out of user metadata
  CHECK(resumed.sched->count() == 12);
  CHECK(resumed.opt->lr() == static_cast<float>(resumed.sched->lr()));
  for (int e = 2; e < 4; ++e) resumed.epoch(d);

  CHECK(resumed.epoch_loss ==
        std::vector<float>(full.epoch_loss.begin() + 2, full.epoch_loss.end()));
  const auto a = io::checkpoint_tensors(*full.net, full.opt.get());
  const auto b = io::checkpoint_tensors(*resumed.net, resumed.opt.get());
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].name);
    CHECK(io_test::snapshot(std::vector{a[i]}) == io_test::snapshot(std::vector{b[i]}));
  }

  SECTION("without the run state the same resume differs (the test can tell)") {
    gs::manual_seed(12345);
    Run plain(99, 0, 6, 4);
    io::load_checkpoint(path, *plain.net, plain.opt.get());
    plain.sched->set_count(plain.opt->steps());  // the schedule by hand, as before
    for (int e = 2; e < 4; ++e) plain.epoch(d);
    CHECK(plain.epoch_loss != resumed.epoch_loss);
  }
}

TEST_CASE("RunState metadata is checked on load, naming the key and the file",
          "[io][checkpoint][resume]") {
  const Data d = make_data();
  TempDir dir;
  Run run(1, 3, 5, 2);
  run.epoch(d);
  const auto good = dir / "good.safetensors";
  io::save_checkpoint(good, *run.net, run.opt.get(), {}, run.state());
  const Bytes bytes = io_test::read_bytes(good);
  const std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());

  Run target(2, 4, 6, 2);
  const auto before = io_test::snapshot(*target.net, target.opt.get());
  const auto before_count = target.sched->count();
  const auto before_shuffle = target.shuffle.state().words;
  auto untouched = [&] {
    CHECK(io_test::snapshot(*target.net, target.opt.get()) == before);
    CHECK(target.sched->count() == before_count);
    CHECK(target.shuffle.state().words == before_shuffle);
  };
  // The same file with one metadata value replaced by another of the same length (the checksum
  // covers the header, so these loads skip it: the run-state checks are what is tested).
  auto edited = [&](const std::string& from, const std::string& to) {
    REQUIRE(from.size() == to.size());
    std::string t = text;
    const auto at = t.find(from);
    REQUIRE(at != std::string::npos);
    t.replace(at, from.size(), to);
    const auto p = dir / "edited.safetensors";
    io_test::write_bytes(p, io_test::to_bytes(t));
    return p;
  };
  const io::LoadOptions no_checksum{.verify_checksum = false};
  auto load = [&](const std::filesystem::path& p, io::LoadOptions o) {
    return error_of(
        [&] { io::load_checkpoint(p, *target.net, target.opt.get(), target.state(), o); });
  };

  SECTION("a schedule count that is not a count") {
    const auto p =
        edited("\"gradscope.schedule.count\":\"6\"", "\"gradscope.schedule.count\":\"x\"");
    CHECK_THAT(load(p, no_checksum), Catch::Contains("edited.safetensors") &&
                                         Catch::Contains("'gradscope.schedule.count' is 'x'") &&
                                         Catch::Contains("not an integer from 0"));
    const auto q =
        edited("\"gradscope.schedule.count\":\"6\"", "\"gradscope.schedule.count\":\"-\"");
    CHECK_THAT(load(q, no_checksum), Catch::Contains("'gradscope.schedule.count' is '-'"));
    untouched();
  }
  SECTION("a stream state of another algorithm, malformed or all zero") {
    CHECK_THAT(load(edited("xoshiro256** ", "mt19937-64xx "), no_checksum),
               Catch::Contains("edited.safetensors") &&
                   Catch::Contains("is not a random generator's state"));
    const auto key_at = text.find("\"gradscope.rng.data\":\"xoshiro256** ");
    REQUIRE(key_at != std::string::npos);
    const std::string words = text.substr(key_at + 35, 16 * 4 + 3);
    CHECK_THAT(
        load(edited(words, std::string(16, '0') + ' ' + std::string(16, '0') + ' ' +
                               std::string(16, '0') + ' ' + std::string(16, '0')),
             no_checksum),
        Catch::Contains("'gradscope.rng.data'") && Catch::Contains("all four words are zero"));
    CHECK_THAT(load(edited(words.substr(0, 16), "0123456789abcdeg"), no_checksum),
               Catch::Contains("'gradscope.rng.data'") && Catch::Contains("malformed word"));
    untouched();
  }
  SECTION("a checkpoint saved without a run state") {
    const auto plain = dir / "plain.safetensors";
    io::save_checkpoint(plain, *run.net, run.opt.get());
    CHECK_THAT(load(plain, {}), Catch::Contains("plain.safetensors") &&
                                    Catch::Contains("'gradscope.schedule.count' is missing"));
    io::RunState<float> streams_only{nullptr, {{"data", &target.shuffle}}};
    CHECK_THAT(
        error_of([&] { io::load_checkpoint(plain, *target.net, target.opt.get(), streams_only); }),
        Catch::Contains("'gradscope.rng.data' is missing"));
    untouched();
  }
  SECTION("run state that nothing is restored into: an error when strict") {
    io::RunState<float> no_data{target.sched.get(), {}};
    CHECK_THAT(error_of([&] { io::load_checkpoint(good, *target.net, target.opt.get(), no_data); }),
               Catch::Contains("'gradscope.rng.data'") && Catch::Contains("strict = false"));
    untouched();
    io::load_checkpoint(good, *target.net, target.opt.get(), no_data, {.strict = false});
    CHECK(target.sched->count() == 6);
    CHECK(target.shuffle.state().words == before_shuffle);
  }
  SECTION("the model's Dropout streams are restored by module path") {
    const auto meta = io::read_safetensors(good).metadata();
    CHECK(meta.count("gradscope.rng.model.2") == 1);
    CHECK(meta.count("gradscope.rng.model.5") == 1);
    io::load_checkpoint(good, *target.net, target.opt.get(), target.state());
    auto& d2 = dynamic_cast<nn::Dropout<float>&>(target.net->at(2));
    auto& r2 = dynamic_cast<nn::Dropout<float>&>(run.net->at(2));
    CHECK(d2.rng().state().words == r2.rng().state().words);
    CHECK(d2.rng().next_u64() == r2.rng().next_u64());
  }
}

TEST_CASE("Rng state round-trips through the checkpoint encoding, spare normal included",
          "[io][checkpoint][resume]") {
  gs::Rng a(42);
  a.normal();  // leaves the pair's second normal cached
  REQUIRE(a.state().has_spare);
  const auto s = io::detail::decode_rng(io::detail::encode_rng(a.state()), "f", "k");
  gs::Rng b(1);
  b.set_state(s);
  CHECK(b.normal() == a.normal());
  CHECK(b.normal() == a.normal());
  CHECK(b.next_u64() == a.next_u64());
}
