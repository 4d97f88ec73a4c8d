// libFuzzer target: arbitrary bytes as a checkpoint, parsed and loaded into a small fixed model
// with Adam. A gradscope::Error is the expected outcome for garbage; a crash, a sanitizer report,
// a leak, any other exception, a failed load that changed the model, or a message that is not
// printable UTF-8 (messages quote the file's bytes, escaped) is a finding.
//
// Build and run with scripts/fuzz.sh. With GRADSCOPE_FUZZ_SEED_DIR set, the binary writes its
// seed corpus there (valid checkpoints of the fixed model) and, with GRADSCOPE_FUZZ_DICT set, a
// libFuzzer dictionary of the format's tokens, then exits: this is how fuzz.sh seeds it.

#include <gradscope/gradscope.hpp>
#include <gradscope/io/io.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gs = gradscope;
namespace io = gradscope::io;
namespace nn = gradscope::nn;

namespace {

/// Dense(4 -> 3), BatchNorm(3), ReLU, Dense(3 -> 2), float. (A Sequential built with add<Layer>:
/// this build is clang's, and clang 14 once crashed instantiating Sequential.)
struct FuzzNet : nn::Sequential<float> {
  explicit FuzzNet(gs::Rng& rng) {
    add<nn::Dense>(4, 3, gs::init::normal(0.5), true, &rng);
    add<nn::BatchNorm>(3);
    add<nn::ReLU>();
    add<nn::Dense>(3, 2, gs::init::normal(0.5), true, &rng);
  }
};

/// The model, with Adam after one step so that its state is not all zeros.
struct Fixture {
  gs::Rng rng{2024};
  FuzzNet net{rng};
  std::unique_ptr<gs::optim::Adam<float>> opt;

  Fixture() {
    opt = std::make_unique<gs::optim::Adam<float>>(net.parameters());
    gs::Tape<float> tape;
    const auto x = gs::Tensor<float>::randn(4, 4, rng);
    const auto y = gs::Tensor<float>::randn(4, 2, rng);
    tape.backward(nn::mse(net(x), y));
    opt->step();
    opt->zero_grad();
  }

  std::vector<std::byte> state() {
    std::vector<std::byte> out;
    for (const auto& t : io::checkpoint_tensors(net, opt.get())) {
      const auto v = t.tensor.value();
      const auto* p = reinterpret_cast<const std::byte*>(v.data());
      out.insert(out.end(), p, p + v.size() * static_cast<gs::Index>(sizeof(float)));
    }
    return out;
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void write_file(const std::filesystem::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

void write_seeds(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  Fixture& f = fixture();
  write_file(dir / "checkpoint_with_adam",
             io::encode_checkpoint(f.net, f.opt.get(), {{"epoch", "1"}}));
  write_file(dir / "weights_only", io::encode_checkpoint(f.net));
  // A file from another writer: no checksum, PyTorch-style metadata, an I64 extra tensor.
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"0.weight":{"dtype":"F32","shape":[3,4],)"
      R"("data_offsets":[0,48]},"n":{"dtype":"I64","shape":[],"data_offsets":[48,56]}})";
  std::vector<std::byte> other(8 + json.size() + 56, std::byte{0});
  for (int i = 0; i < 8; ++i) other[i] = std::byte((json.size() >> (8 * i)) & 0xff);
  std::memcpy(other.data() + 8, json.data(), json.size());
  write_file(dir / "foreign_no_checksum", other);
  // The same weights in F64, for LoadOptions::convert_dtype.
  std::vector<gs::NamedTensor<double>> wide;
  for (const auto& t : io::checkpoint_tensors<float>(f.net))
    wide.push_back(
        {t.name, gs::Tensor<double>(t.tensor.to_matrix().cast<double>(), t.tensor.rank(), false)});
  write_file(dir / "weights_f64", io::encode_safetensors(wide));
}

/// True when `s` is valid UTF-8 without control characters: what every message must be, since
/// the messages quote bytes of the file (escaped).
bool printable_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = io::detail::printable_utf8_length(s.substr(i));
    if (n == 0) return false;
    i += n;
  }
  return true;
}

void write_dictionary(const std::filesystem::path& path) {
  std::ofstream out(path, std::ios::trunc);
  for (const char* token : {R"("\"dtype\"")",
                            R"("\"shape\"")",
                            R"("\"data_offsets\"")",
                            R"("\"__metadata__\"")",
                            R"("\"F32\"")",
                            R"("\"F64\"")",
                            R"("\"I64\"")",
                            R"("\"BF16\"")",
                            R"("\"F16\"")",
                            R"("\"BOOL\"")",
                            R"("\"gradscope.format\"")",
                            R"("\"gradscope.checksum\"")",
                            R"("\"optim.step\"")",
                            R"("\"0.weight\"")",
                            R"("\"1.running_var\"")",
                            R"("[0,48]")",
                            R"("[3,4]")",
                            R"("[]")",
                            R"("18446744073709551615")",
                            R"("-1")",
                            R"("1e9")",
                            R"("\"\\u0000\"")"})
    out << token << '\n';
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("GRADSCOPE_FUZZ_SEED_DIR")) {
    write_seeds(dir);
    if (const char* dict = std::getenv("GRADSCOPE_FUZZ_DICT")) write_dictionary(dict);
    std::printf("checkpoint_fuzz: wrote seeds to %s\n", dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Fixture& f = fixture();
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  struct Mode {
    bool verify, strict, with_optimizer, convert;
  };
  // Without checksum verification the mutated files reach the loading checks too; with
  // conversion, F64, F16 and BF16 tensors reach the decoders.
  for (const Mode mode : {Mode{true, true, true, false}, Mode{false, true, true, false},
                          Mode{false, false, false, false}, Mode{false, false, true, true}}) {
    const auto before = f.state();
    const auto steps = f.opt->steps();
    try {
      const io::SafetensorsFile file = io::parse_safetensors(bytes, "fuzz input", {mode.verify});
      for (const auto& t : file.tensors()) {
        (void)file.data(t);
        if (t.dtype == "F32" && t.shape.size() <= 2) (void)file.tensor<float>(t.name);
      }
      io::load_checkpoint(
          file, f.net, mode.with_optimizer ? f.opt.get() : nullptr,
          {.strict = mode.strict, .verify_checksum = mode.verify, .convert_dtype = mode.convert});
    } catch (const gs::Error& e) {
      if (!printable_utf8(e.what())) {
        std::fprintf(stderr, "checkpoint_fuzz: a message is not printable UTF-8\n");
        std::abort();
      }
      if (f.state() != before || f.opt->steps() != steps) {
        std::fprintf(stderr, "checkpoint_fuzz: a failed load changed the model\n");
        std::abort();
      }
    }
  }
  return 0;
}
