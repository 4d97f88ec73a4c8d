// Checkpoints: bit-exact round trips (parameters, batch-norm statistics, optimiser state,
// metadata), resumed training, truncated and corrupted files, interrupted saves, and the checks
// of names, dtypes and shapes. Every failed load must leave the model untouched.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>
#include <gradscope/io/io.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "io_test_util.hpp"

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace io = gradscope::io;
namespace optim = gradscope::optim;
using namespace io_test;
using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;
using Catch::Matchers::StartsWith;

namespace {

/// A trained model with its Adam optimiser (3 steps: non-trivial BN statistics and moments).
template <class T>
struct Trained {
  std::shared_ptr<nn::Sequential<T>> net = make_model<T>(1);
  optim::Adam<T> opt{net->parameters(), {.lr = T(0.01)}};
  Trained() {
    for (std::uint64_t s = 0; s < 3; ++s) train_step<T>(*net, opt, 100 + s);
  }
};

}  // namespace

TEMPLATE_TEST_CASE(
    "a checkpoint round-trips parameters, BN statistics, Adam state and metadata "
    "bit-exactly",
    "[io][checkpoint]", float, double) {
  using T = TestType;
  TempDir dir;
  Trained<T> a;
  // Special values must survive too: signed zero, infinities, a NaN payload, a subnormal.
  auto w = a.net->named_parameters()[0].tensor.mutable_value();
  w(0, 0) = -T(0);
  w(0, 1) = std::numeric_limits<T>::infinity();
  w(0, 2) = -std::numeric_limits<T>::infinity();
  w(0, 3) = std::numeric_limits<T>::quiet_NaN();
  w(0, 4) = std::numeric_limits<T>::denorm_min();

  const io::Metadata metadata{
      {"epoch", "2"}, {"step", "3"}, {"note", "caf\xc3\xa9 \"quoted\"\n"}, {"", "empty key"}};
  const auto path = dir / "model.safetensors";
  io::save_checkpoint(path, *a.net, &a.opt, metadata);
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});

  auto b_net = make_model<T>(2);
  optim::Adam<T> b_opt(b_net->parameters(), {.lr = T(0.01)});
  REQUIRE(snapshot<T>(*b_net, &b_opt) != snapshot<T>(*a.net, &a.opt));

  const io::Metadata loaded = io::load_checkpoint(path, *b_net, &b_opt);
  CHECK(loaded == metadata);
  CHECK(snapshot<T>(*b_net, &b_opt) == snapshot<T>(*a.net, &a.opt));
  CHECK(b_opt.steps() == 3);

  // Buffers were really saved: BatchNorm's running statistics moved off their initial values.
  const auto buffers = b_net->named_buffers();
  REQUIRE(buffers.size() == 2);
  CHECK(buffers[0].name == "1.running_mean");
  CHECK(buffers[0].tensor.value().cwiseAbs().maxCoeff() > 0);

  // What the file holds.
  const auto file = io::read_safetensors(path);
  CHECK(file.checksum_verified());
  CHECK(file.tensors().size() == 6 + 2 + 1 + 12);
  CHECK(file.contains("optim.step"));
  CHECK(file.contains("optim.0.weight.exp_avg_sq"));
  CHECK(file.metadata().at("gradscope.format") == "1");
  CHECK(file.metadata().at("gradscope.optimizer") == "Adam");
  for (const auto& t : file.tensors()) CHECK(t.dtype == std::string(io::dtype_of<T>()));

  // Loading the weights alone (no optimiser) ignores the optimiser state, even when strict.
  auto c_net = make_model<T>(3);
  CHECK(io::load_checkpoint(path, *c_net) == metadata);
  CHECK(snapshot<T>(*c_net) == snapshot<T>(*a.net));

  // The in-memory encoding is the file.
  CHECK(io::encode_checkpoint(*a.net, &a.opt, metadata) == read_bytes(path));
}

TEMPLATE_TEST_CASE("training resumed from a checkpoint matches uninterrupted training",
                   "[io][checkpoint]", float, double) {
  using T = TestType;
  TempDir dir;
  const auto path = dir / "resume.safetensors";
  using Factory = std::function<std::unique_ptr<optim::Optimizer<T>>(nn::Module<T>&)>;
  const std::vector<std::pair<std::string, Factory>> optimizers = {
      {"Adam",
       [](nn::Module<T>& m) {
         return std::make_unique<optim::Adam<T>>(m.parameters(),
                                                 optim::AdamOptions<T>{.lr = T(0.01)});
       }},
      {"AdamW", [](nn::Module<T>& m) { return std::make_unique<optim::AdamW<T>>(m.parameters()); }},
      {"SGD with momentum", [](nn::Module<T>& m) {
         return std::make_unique<optim::SGD<T>>(
             m.parameters(), optim::SGDOptions<T>{.lr = T(0.05), .momentum = T(0.9)});
       }}};
  for (const auto& [name, make_opt] : optimizers) {
    INFO("optimizer " << name);
    // Uninterrupted: 7 steps.
    auto a = make_model<T>(11);
    auto a_opt = make_opt(*a);
    for (std::uint64_t s = 0; s < 3; ++s) train_step<T>(*a, *a_opt, 500 + s);
    io::save_checkpoint(path, *a, a_opt.get(), {{"epoch", "1"}});
    for (std::uint64_t s = 3; s < 7; ++s) train_step<T>(*a, *a_opt, 500 + s);

    // Resumed: a different initialisation, then the checkpoint, then the same 4 steps.
    auto b = make_model<T>(12);
    auto b_opt = make_opt(*b);
    train_step<T>(*b, *b_opt, 999);  // state that the load must overwrite
    CHECK(io::load_checkpoint(path, *b, b_opt.get()).at("epoch") == "1");
    CHECK(b_opt->steps() == 3);
    for (std::uint64_t s = 3; s < 7; ++s) train_step<T>(*b, *b_opt, 500 + s);

    CHECK(b_opt->steps() == a_opt->steps());
    CHECK(snapshot<T>(*b, b_opt.get()) == snapshot<T>(*a, a_opt.get()));
    // And the two models predict the same in eval mode (running statistics included).
    a->eval();
    b->eval();
    gs::Rng rng(77);
    const auto x = gs::Tensor<T>::randn(4, 5, rng);
    const gs::Matrix<T> ya = (*a)(x).to_matrix(), yb = (*b)(x).to_matrix();
    CHECK(std::memcmp(ya.data(), yb.data(), sizeof(T) * static_cast<std::size_t>(ya.size())) == 0);
  }
}

TEST_CASE("a checkpoint truncated anywhere raises a clear error and changes nothing",
          "[io][checkpoint][corruption]") {
  TempDir dir;
  Trained<float> a;
  const Bytes full = io::encode_checkpoint(*a.net, &a.opt, {{"epoch", "4"}});
  const std::size_t header_end = 8 + static_cast<std::size_t>(io::detail::load_u64_le(full.data()));

  auto b = make_model<float>(2);
  optim::Adam<float> b_opt(b->parameters());
  train_step<float>(*b, b_opt, 7);
  const auto before = snapshot<float>(*b, &b_opt);

  const auto path = dir / "truncated.safetensors";
  int in_header = 0, in_data = 0;
  for (std::size_t k = 0; k < 64; ++k) {
    const std::size_t cut = k * full.size() / 64;
    INFO("truncated to " << cut << " of " << full.size() << " bytes");
    write_bytes(path, Bytes(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut)));
    const std::string message = error_of([&] { io::load_checkpoint(path, *b, &b_opt); });
    CHECK_THAT(message, StartsWith("[gradscope.data] file '" + path.string() + "'"));
    CHECK_THAT(message, Contains("byte offset"));
    CHECK(snapshot<float>(*b, &b_opt) == before);
    CHECK(b_opt.steps() == 1);
    (cut < header_end ? in_header : in_data) += 1;
  }
  CHECK(in_header > 10);
  CHECK(in_data > 10);
}

TEST_CASE("flipped header and data bytes raise a clear error and change nothing",
          "[io][checkpoint][corruption]") {
  TempDir dir;
  Trained<float> a;
  const Bytes good = io::encode_checkpoint(*a.net, &a.opt, {{"epoch", "4"}, {"run", "abc"}});
  const std::size_t header_end = 8 + static_cast<std::size_t>(io::detail::load_u64_le(good.data()));

  auto b = make_model<float>(2);
  optim::Adam<float> b_opt(b->parameters());
  const auto before = snapshot<float>(*b, &b_opt);

  SECTION("every header byte, every single-bit flip and the full inversion, in memory") {
    int flips = 0;
    for (std::size_t pos = 0; pos < header_end; ++pos) {
      for (const unsigned mask : {0x01u, 0x02u, 0x04u, 0x08u, 0x10u, 0x20u, 0x40u, 0x80u, 0xffu}) {
        Bytes bad = good;
        bad[pos] ^= std::byte(mask);
        const std::string message = error_of(
            [&] { io::load_checkpoint(io::parse_safetensors(std::move(bad)), *b, &b_opt); });
        if (message.empty() || snapshot<float>(*b, &b_opt) != before) {
          FAIL_CHECK("byte " << pos << " ^ 0x" << std::hex << mask << std::dec
                             << " was not detected or changed the model");
          return;
        }
        CHECK_THAT(message, StartsWith("[gradscope."));
        ++flips;
      }
    }
    CHECK(flips == static_cast<int>(header_end) * 9);
  }
  SECTION("header bytes inverted, through a file (the length field and every 4th byte)") {
    const auto path = dir / "flipped.safetensors";
    for (std::size_t pos = 0; pos < header_end; pos += pos < 8 ? 1 : 4) {
      Bytes bad = good;
      bad[pos] ^= std::byte{0xff};
      write_bytes(path, bad);
      const std::string message = error_of([&] { io::load_checkpoint(path, *b, &b_opt); });
      if (message.find(path.string()) == std::string::npos) {
        FAIL_CHECK("byte " << pos << ": " << (message.empty() ? "not detected" : message));
        return;
      }
    }
    CHECK(snapshot<float>(*b, &b_opt) == before);
  }
  SECTION("data bytes: the checksum catches any change") {
    for (std::size_t k = 0; k < 64; ++k) {
      const std::size_t pos = header_end + k * (good.size() - header_end) / 64;
      Bytes bad = good;
      bad[pos] ^= std::byte{0x01};
      const std::string message = error_of([&] {
        io::load_checkpoint(io::parse_safetensors(std::move(bad), "corrupt.bin"), *b, &b_opt);
      });
      CHECK_THAT(message, StartsWith("[gradscope.data] corrupt.bin: checksum mismatch"));
    }
    CHECK(snapshot<float>(*b, &b_opt) == before);
    // Without verification the same corruption goes through: the checksum is what catches it.
    Bytes bad = good;
    bad.back() ^= std::byte{0x01};
    CHECK_NOTHROW(io::load_checkpoint(io::parse_safetensors(bad, "x", {.verify_checksum = false}),
                                      *b, &b_opt));
  }
}

TEST_CASE("a save interrupted before the rename leaves the previous checkpoint intact",
          "[io][checkpoint][atomic]") {
  TempDir dir;
  const auto path = dir / "ckpt.safetensors";
  Trained<double> a;
  io::save_checkpoint(path, *a.net, &a.opt, {{"epoch", "1"}});
  const Bytes v1 = read_bytes(path);
  const auto v1_state = snapshot<double>(*a.net, &a.opt);
  train_step<double>(*a.net, a.opt, 1234);  // the model moves on
  REQUIRE(snapshot<double>(*a.net, &a.opt) != v1_state);

  auto check_v1_intact = [&] {
    CHECK(read_bytes(path) == v1);
    auto b = make_model<double>(5);
    optim::Adam<double> b_opt(b->parameters());
    CHECK(io::load_checkpoint(path, *b, &b_opt).at("epoch") == "1");
    CHECK(snapshot<double>(*b, &b_opt) == v1_state);
  };

  SECTION("the hook throws: the temporary file is removed, the exception propagates") {
    bool temp_was_complete = false;
    io::SaveOptions options;
    options.before_rename = [&] {
      // The temporary file is complete at this point and is the only other entry.
      const auto entries = dir.entries();
      REQUIRE(entries.size() == 2);
      const auto tmp = dir / (entries[0] == "ckpt.safetensors" ? entries[1] : entries[0]);
      CHECK_THAT(tmp.filename().string(), StartsWith(".ckpt.safetensors.tmp."));
      temp_was_complete =
          read_bytes(tmp) == io::encode_checkpoint(*a.net, &a.opt, {{"epoch", "2"}});
      throw std::runtime_error("simulated crash before rename");
    };
    CHECK_THROWS_WITH(io::save_checkpoint(path, *a.net, &a.opt, {{"epoch", "2"}}, options),
                      "simulated crash before rename");
    CHECK(temp_was_complete);
    CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
    check_v1_intact();
  }
  SECTION("the process dies before the rename: the old file survives, the next save works") {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // In the child: write the new checkpoint and die just before the rename.
      try {
        io::SaveOptions options;
        options.before_rename = [] { std::_Exit(42); };
        io::save_checkpoint(path, *a.net, &a.opt, {{"epoch", "2"}}, options);
      } catch (...) {
      }
      std::_Exit(1);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 42);
    CHECK(dir.entries().size() == 2);  // the checkpoint and the orphaned temporary file
    check_v1_intact();

    io::save_checkpoint(path, *a.net, &a.opt, {{"epoch", "2"}});
    auto b = make_model<double>(5);
    optim::Adam<double> b_opt(b->parameters());
    CHECK(io::load_checkpoint(path, *b, &b_opt).at("epoch") == "2");
    CHECK(snapshot<double>(*b, &b_opt) == snapshot<double>(*a.net, &a.opt));
    // The next save removed the dead process's temporary file (it stayed forever before).
    CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
  }
  SECTION("a save that cannot write leaves no file behind") {
    const auto missing_dir = dir / "no-such-dir" / "ckpt.safetensors";
    const std::string message = error_of([&] { io::save_checkpoint(missing_dir, *a.net, &a.opt); });
    CHECK_THAT(message, StartsWith("[gradscope.data] cannot save"));
    CHECK_THAT(message, Contains("no-such-dir"));
    CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
    check_v1_intact();
  }
  SECTION("an unsynced save still replaces the file") {
    io::SaveOptions options;
    options.sync = false;
    io::save_checkpoint(path, *a.net, &a.opt, {{"epoch", "2"}}, options);
    CHECK(read_bytes(path) == io::encode_checkpoint(*a.net, &a.opt, {{"epoch", "2"}}));
    CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
  }
}

namespace {
/// A process id that no process has: a child's, after it exited and was reaped.
pid_t dead_pid() {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) std::_Exit(0);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  return child;
}
/// A live child process that waits to be killed.
struct LiveChild {
  pid_t pid = ::fork();
  LiveChild() {
    REQUIRE(pid >= 0);
    if (pid == 0)
      for (;;) ::pause();
  }
  ~LiveChild() {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
};
}  // namespace

TEST_CASE("a save removes the temporary files of killed saves of its target, and nothing else",
          "[io][checkpoint][atomic]") {
  TempDir dir;
  const auto path = dir / "model.safetensors";
  auto net = make_model<float>(1);
  const pid_t dead = dead_pid();
  LiveChild live;
  const std::string stem = ".model.safetensors.tmp.";
  const std::string d = std::to_string(dead);
  const std::vector<std::string> stale = {stem + d + ".3", stem + d + ".12"};
  const std::vector<std::string> kept = {
      stem + std::to_string(live.pid) + ".0",    // a live process's save
      stem + std::to_string(::getpid()) + ".9",  // this process's own (another thread's save)
      ".other.safetensors.tmp." + d + ".0",      // another target's
      "model.safetensors.tmp." + d + ".0",       // not a temporary name: no leading dot
      stem + d,                                  // no counter
      stem + d + ".1.bak",                       // something else
      stem + d + ".x",
      stem + "+" + d + ".1",
      stem + d + "0000000000.1",  // not a process id
      "notes.txt"};
  for (const auto& name : stale) write_bytes(dir / name, to_bytes("partial checkpoint"));
  for (const auto& name : kept) write_bytes(dir / name, to_bytes("keep me"));
  fs::create_directory(dir / (stem + d + ".5"));                   // not a regular file
  fs::create_symlink(dir / "notes.txt", dir / (stem + d + ".6"));  // nor is a symlink
  // A dead process id whose file is locked: a live save in another PID namespace or host.
  const auto locked = dir / (stem + d + ".4");
  write_bytes(locked, to_bytes("live elsewhere"));
  const int lock_fd = ::open(locked.c_str(), O_RDONLY);
  REQUIRE(lock_fd >= 0);
  REQUIRE(::flock(lock_fd, LOCK_EX) == 0);

  std::vector<std::string> expected = kept;
  for (const auto& extra :
       {stem + d + ".5", stem + d + ".6", stem + d + ".4", std::string("model.safetensors")})
    expected.push_back(extra);
  std::sort(expected.begin(), expected.end());

  // A save checks that its own temporary file is locked while it is written.
  bool own_locked = false;
  io::SaveOptions options;
  options.before_rename = [&] {
    for (const auto& name : dir.entries())
      if (name.starts_with(stem + std::to_string(::getpid()) + ".") && name != kept[1]) {
        const int fd = ::open((dir / name).c_str(), O_RDONLY);
        own_locked = fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
        if (fd >= 0) ::close(fd);
      }
  };
  io::save_checkpoint(path, *net, nullptr, {}, options);
  CHECK(own_locked);
  CHECK(dir.entries() == expected);
  CHECK(fs::is_symlink(dir / (stem + d + ".6")));
  CHECK(read_bytes(dir / "notes.txt") == to_bytes("keep me"));

  // Once the lock is gone, the file is stale too.
  ::close(lock_fd);
  CHECK(io::remove_stale_temporaries(path) == 1);
  CHECK_FALSE(fs::exists(locked));
  CHECK(io::remove_stale_temporaries(path) == 0);

  // SaveOptions::remove_stale_temporaries = false leaves them alone.
  write_bytes(dir / stale[0], to_bytes("partial checkpoint"));
  io::SaveOptions keep;
  keep.remove_stale_temporaries = false;
  io::save_checkpoint(path, *net, nullptr, {}, keep);
  CHECK(fs::exists(dir / stale[0]));
  io::save_safetensors(path,
                       net->named_parameters());  // every save cleans up, not only checkpoints
  CHECK_FALSE(fs::exists(dir / stale[0]));
}

TEST_CASE("a FIFO, directory or device given as a checkpoint is refused at once",
          "[io][checkpoint][fifo]") {
  TempDir dir;
  const auto fifo = dir / "ckpt.safetensors";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const auto unblock = [&] { release_fifo(fifo); };
  auto net = make_model<float>(1);
  const auto before = snapshot<float>(*net);
  // Before the check, each of these waited forever in open() for a writer (mnist_mlp --resume
  // of a FIFO hung the same way).
  const std::string expected = "[gradscope.data] cannot read file '" + fifo.string() +
                               "': it is a FIFO (named pipe), not "
                               "a regular file";
  CHECK(error_within_timeout([&] { io::load_checkpoint(fifo, *net); }, unblock) == expected);
  CHECK(error_within_timeout([&] { io::read_safetensors(fifo); }, unblock) == expected);
  CHECK(error_within_timeout([&] { io::load_safetensors(fifo, net->named_parameters()); },
                             unblock) == expected);
  CHECK(snapshot<float>(*net) == before);
  CHECK_THAT(error_of([&] { io::load_checkpoint(dir.path(), *net); }),
             EndsWith("': it is a directory, not a regular file"));
  if (fs::exists("/dev/zero"))
    CHECK_THAT(error_of([&] { io::read_safetensors("/dev/zero"); }),
               EndsWith("'/dev/zero': it is a character device, not a regular file"));
  // Saving over a FIFO replaces it (the rename), as it replaces any file.
  io::save_checkpoint(fifo, *net);
  CHECK(fs::is_regular_file(fifo));
}

TEST_CASE("loading checks names, dtypes and shapes and changes nothing on a mismatch",
          "[io][checkpoint]") {
  TempDir dir;
  const auto path = dir / "m.safetensors";
  Trained<float> a;
  io::save_checkpoint(path, *a.net, &a.opt);

  SECTION("a shape mismatch names the tensor and both shapes") {
    auto b = make_model<float>(2, /*hidden=*/6);
    const auto before = snapshot<float>(*b);
    CHECK_THROWS_AS(io::load_checkpoint(path, *b), gs::ShapeError);
    CHECK_THAT(error_of([&] { io::load_checkpoint(path, *b); }),
               Contains("tensor '0.weight': file has shape [8, 5], model has [6, 5]"));
    CHECK(snapshot<float>(*b) == before);
  }
  SECTION("a dtype mismatch names the tensor and both dtypes") {
    auto d = make_model<double>(2);
    const auto before = snapshot<double>(*d);
    CHECK_THROWS_AS(io::load_checkpoint(path, *d), gs::DataError);
    CHECK_THAT(error_of([&] { io::load_checkpoint(path, *d); }),
               Contains("tensor '0.weight': file has dtype F32, model has F64"));
    CHECK(snapshot<double>(*d) == before);
  }
  SECTION("missing tensors are listed") {
    nn::Sequential<float> bigger;
    gs::Rng rng(3);
    bigger.add<nn::Dense>(5, 8, gs::init::normal(0.5), true, &rng);
    bigger.add<nn::BatchNorm>(8);
    bigger.add<nn::ReLU>();
    bigger.add<nn::Dense>(8, 3, gs::init::normal(0.5), true, &rng);
    bigger.add<nn::Dense>(3, 2, gs::init::normal(0.5), true, &rng);
    const auto before = snapshot<float>(bigger);
    CHECK_THAT(error_of([&] { io::load_checkpoint(path, bigger); }),
               StartsWith("[gradscope.data] file '" + path.string() +
                          "': missing 2 tensors to load: '4.weight', '4.bias'"));
    CHECK(snapshot<float>(bigger) == before);
  }
  SECTION("extra tensors are an error when strict, ignored otherwise") {
    nn::Sequential<float> smaller;
    gs::Rng rng(3);
    smaller.add<nn::Dense>(5, 8, gs::init::normal(0.5), true, &rng);
    const auto before = snapshot<float>(smaller);
    const std::string message = error_of([&] { io::load_checkpoint(path, smaller); });
    CHECK_THAT(message, Contains("6 tensors in the file have nothing to load into: "
                                 "'1.weight', '1.bias', '3.weight', '3.bias', "
                                 "'1.running_mean', '1.running_var'"));
    CHECK_THAT(message, Contains("strict = false"));
    CHECK(snapshot<float>(smaller) == before);
    io::load_checkpoint(path, smaller, nullptr, {.strict = false});
    CHECK(smaller.named_parameters()[0].tensor.to_matrix() ==
          a.net->named_parameters()[0].tensor.to_matrix());
  }
  SECTION("optimiser state: asked for but absent, or of another optimiser") {
    const auto weights_only = dir / "weights.safetensors";
    io::save_checkpoint(weights_only, *a.net);
    auto b = make_model<float>(2);
    optim::Adam<float> b_opt(b->parameters());
    const auto before = snapshot<float>(*b, &b_opt);
    CHECK_THAT(error_of([&] { io::load_checkpoint(weights_only, *b, &b_opt); }),
               Contains("missing 13 tensors to load: 'optim.step', 'optim.0.weight.exp_avg'"));
    CHECK_THAT(error_of([&] { io::load_checkpoint(weights_only, *b, &b_opt); }),
               Contains("the checkpoint holds no optimizer state"));
    optim::SGD<float> sgd(b->parameters(), {.lr = 0.1f, .momentum = 0.9f});
    CHECK_THAT(error_of([&] { io::load_checkpoint(path, *b, &sgd); }),
               Contains("'optim.0.weight.momentum_buffer'"));
    CHECK(snapshot<float>(*b, &b_opt) == before);
  }
  SECTION("a step count that is not a non-negative integer is rejected") {
    for (const float bad : {-1.0f, 2.5f, std::numeric_limits<float>::quiet_NaN(), 1e30f}) {
      auto tensors = io::checkpoint_tensors(*a.net, &a.opt);
      std::vector<gs::NamedTensor<float>> copy;
      for (auto& t : tensors)
        copy.push_back(
            {t.name, t.name == "optim.step" ? gs::Tensor<float>::scalar(bad) : t.tensor.detach()});
      const auto bad_path = dir / "bad-step.safetensors";
      io::save_safetensors(bad_path, copy);
      auto b = make_model<float>(2);
      optim::Adam<float> b_opt(b->parameters());
      const auto before = snapshot<float>(*b, &b_opt);
      CHECK_THAT(error_of([&] { io::load_checkpoint(bad_path, *b, &b_opt); }),
                 Contains("tensor 'optim.step' holds") && Contains("not a step count"));
      CHECK(snapshot<float>(*b, &b_opt) == before);
    }
  }
  SECTION("unreadable files and reserved metadata") {
    auto b = make_model<float>(2);
    CHECK_THAT(
        error_of([&] { io::load_checkpoint(dir / "absent.safetensors", *b); }),
        StartsWith("[gradscope.data] cannot open file '") && Contains("No such file or directory"));
    CHECK_THAT(error_of([&] { io::load_checkpoint(dir.path(), *b); }),
               Contains("not a regular file"));
    CHECK_THROWS_AS(
        io::save_checkpoint(dir / "x.safetensors", *b, nullptr, {{"gradscope.checksum", "0"}}),
        gs::UsageError);
    CHECK(dir.entries() == std::vector<std::string>{"m.safetensors"});
  }
}
