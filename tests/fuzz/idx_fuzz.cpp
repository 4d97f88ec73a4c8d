// libFuzzer target for the IDX parser: any input must parse or raise gradscope::DataError;
// never crash, read out of bounds or allocate more than the declared-size limit allows. The
// streaming file reader (read_idx) must reach the same verdict and data as parse_idx.
// With GRADSCOPE_FUZZ_SEED_DIR set (scripts/fuzz.sh does), it writes valid IDX files there and
// exits.
#include <gradscope/data/idx.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("GRADSCOPE_FUZZ_SEED_DIR")) {
    namespace data = gradscope::data;
    data::IdxArray labels{{12}, {}}, images{{3, 4, 5}, {}};
    for (std::uint32_t i = 0; i < 12; ++i) labels.data.push_back(static_cast<std::uint8_t>(i % 10));
    for (std::uint32_t i = 0; i < 60; ++i) images.data.push_back(static_cast<std::uint8_t>(i * 4));
    data::write_idx(std::string(dir) + "/labels.idx", labels);
    data::write_idx(std::string(dir) + "/images.idx", images);
    data::write_idx(std::string(dir) + "/images.idx.gz", images, true);
    std::exit(0);
  }
  return 0;
}

namespace {
/// A scratch file for the streaming reader, in memory when /dev/shm exists.
const std::string& scratch_path() {
  static const std::string path = [] {
    std::atexit([] { std::remove(scratch_path().c_str()); });
    return (std::filesystem::exists("/dev/shm") ? std::string("/dev/shm") : std::string("/tmp")) +
           "/gradscope_idx_fuzz_" + std::to_string(::getpid());
  }();
  return path;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const gradscope::data::IdxLimits limits{.max_bytes = 1 << 20};
  std::string in_memory;  // parse_idx's verdict: "" when it accepts
  try {
    const auto a = gradscope::data::parse_idx({bytes, size}, "fuzz.idx", -1, limits);
    if (a.count() != a.data.size()) __builtin_trap();
  } catch (const gradscope::DataError& e) {
    in_memory = e.what();
  }
  // The streaming reader (header first, data, one byte more) on the same bytes as a file: it
  // must agree with parse_idx on acceptance, and on the data. (A gzip file is decompressed by
  // read_idx and refused by parse_idx: then only the reader's own consistency is checked.)
  const bool gzip = size >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
  {
    std::FILE* f = std::fopen(scratch_path().c_str(), "wb");
    if (!f) return 0;
    if (size) std::fwrite(bytes, 1, size, f);
    std::fclose(f);
  }
  try {
    const auto a = gradscope::data::read_idx(scratch_path(), -1, limits);
    if (a.count() != a.data.size()) __builtin_trap();
    if (!gzip && (!in_memory.empty() ||
                  !std::equal(a.data.begin(), a.data.end(), bytes + (size - a.data.size()))))
      __builtin_trap();
  } catch (const gradscope::DataError&) {
    if (!gzip && in_memory.empty()) __builtin_trap();
  }
  return 0;
}
