// libFuzzer target for the IDX parser: any input must parse or raise gradscope::DataError;
// never crash, read out of bounds or allocate more than the declared-size limit allows.
// With GRADSCOPE_FUZZ_SEED_DIR set (scripts/fuzz.sh does), it writes valid IDX files there and
// exits.
#include <gradscope/data/idx.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("GRADSCOPE_FUZZ_SEED_DIR")) {
    namespace data = gradscope::data;
    data::IdxArray labels{{12}, {}}, images{{3, 4, 5}, {}};
    for (std::uint32_t i = 0; i < 12; ++i) labels.data.push_back(static_cast<std::uint8_t>(i % 10));
    for (std::uint32_t i = 0; i < 60; ++i) images.data.push_back(static_cast<std::uint8_t>(i * 4));
    data::write_idx(std::string(dir) + "/labels.idx", labels);
    data::write_idx(std::string(dir) + "/images.idx", images);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  try {
    const auto a =
        gradscope::data::parse_idx({bytes, size}, "fuzz.idx", -1, {.max_bytes = 1 << 20});
    if (a.count() != a.data.size()) __builtin_trap();
  } catch (const gradscope::DataError&) {
  }
  return 0;
}
