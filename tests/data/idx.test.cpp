#include <catch2/catch.hpp>

#include <gradscope/data/data.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace gs = gradscope;
namespace data = gradscope::data;

namespace {
std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("gradscope_idx_" + name)).string();
}
std::vector<std::uint8_t> header(std::vector<std::uint32_t> dims, std::uint8_t type = 0x08) {
  std::vector<std::uint8_t> b{0, 0, type, static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(d >> s));
  return b;
}
void write_bytes(const std::string& path, const std::vector<std::uint8_t>& b) {
  std::ofstream os(path, std::ios::binary);
  os.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
// The DataError message of parsing `bytes`, or "" when it parses.
std::string parse_error(const std::vector<std::uint8_t>& bytes, int rank = -1) {
  try {
    data::parse_idx(bytes, "test.idx", rank);
  } catch (const gs::DataError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("IDX files round-trip, raw and gzip", "[data][idx]") {
  data::IdxArray a;
  a.dims = {3, 2, 4};
  for (int i = 0; i < 24; ++i) a.data.push_back(static_cast<std::uint8_t>(i * 10));
  for (bool gzip : {false, true}) {
    const auto path = temp_path(gzip ? "rt.gz" : "rt");
    data::write_idx(path, a, gzip);
    const auto b = data::read_idx(path, 3);
    CHECK(b.dims == a.dims);
    CHECK(b.data == a.data);
    std::filesystem::remove(path);
  }
}

TEST_CASE("IDX parser names each malformation with its byte offset", "[data][idx]") {
  auto good = header({2, 3});
  for (int i = 0; i < 6; ++i) good.push_back(1);
  CHECK(parse_error(good).empty());

  SECTION("truncated data") {
    auto b = good;
    b.pop_back();
    const auto msg = parse_error(b);
    CHECK_THAT(msg, Catch::Contains("test.idx"));
    CHECK_THAT(msg, Catch::Contains("truncated"));
    CHECK_THAT(msg, Catch::Contains("byte 17"));
  }
  SECTION("truncated header") {
    auto b = good;
    b.resize(6);
    CHECK_THAT(parse_error(b), Catch::Contains("inside the dimensions"));
    b.resize(2);
    CHECK_THAT(parse_error(b), Catch::Contains("magic"));
  }
  SECTION("bad magic") {
    auto b = good;
    b[0] = 0x1f;
    const auto msg = parse_error(b);
    CHECK_THAT(msg, Catch::Contains("bad magic number"));
    CHECK_THAT(msg, Catch::Contains("byte 0"));
  }
  SECTION("unsupported element type") {
    auto b = header({6}, 0x0D);
    b.resize(b.size() + 24);
    CHECK_THAT(parse_error(b), Catch::Contains("not supported"));
  }
  SECTION("wrong rank") {
    const auto msg = parse_error(good, 1);
    CHECK_THAT(msg, Catch::Contains("rank is 2, expected 1"));
    CHECK_THAT(msg, Catch::Contains("byte 3"));
    auto b = header({1, 1, 1, 1, 1});
    b.push_back(0);
    CHECK_THAT(parse_error(b), Catch::Contains("rank 5 is not in 1..4"));
  }
  SECTION("dimensions disagreeing with the file size") {
    auto b = good;
    b.push_back(7);
    const auto msg = parse_error(b);
    CHECK_THAT(msg, Catch::Contains("1 unexpected bytes after the declared data"));
    CHECK_THAT(msg, Catch::Contains("byte 18"));
  }
  SECTION("an absurd declared size does not allocate") {
    // 2^31 images of 28 x 28: 1.7 TB declared in a 16-byte header.
    auto b = header({0x80000000u, 28, 28});
    const auto msg = parse_error(b);
    CHECK_THAT(msg, Catch::Contains("exceeds the limit"));
    CHECK_THAT(msg,
               Catch::Contains("byte 8"));  // 2^31 x 28 crosses the limit at the second dimension
  }
  SECTION("a zero dimension") {
    auto b = header({0, 3});
    CHECK_THAT(parse_error(b), Catch::Contains("dimension 0 is zero"));
  }
}

TEST_CASE("IDX labels are range-checked", "[data][idx]") {
  auto b = header({4});
  for (std::uint8_t v : {1, 9, 10, 3}) b.push_back(v);
  const auto path = temp_path("labels");
  write_bytes(path, b);
  try {
    data::read_idx_labels(path, 10);
    FAIL("no error for label 10 of 10 classes");
  } catch (const gs::DataError& e) {
    const std::string msg = e.what();
    CHECK_THAT(msg, Catch::Contains("label 10 of item 2"));
    CHECK_THAT(msg, Catch::Contains("10 classes"));
    CHECK_THAT(msg, Catch::Contains("byte 10"));
  }
  CHECK(data::read_idx_labels(path, 11) == std::vector<int>{1, 9, 10, 3});
  std::filesystem::remove(path);
}

TEST_CASE("a truncated or corrupt gzip file is reported, not half-read", "[data][idx]") {
  data::IdxArray a;
  a.dims = {64, 28, 28};
  gs::Rng rng(3);
  for (std::size_t i = 0; i < a.count(); ++i)
    a.data.push_back(static_cast<std::uint8_t>(rng.below(256)));
  const auto path = temp_path("trunc.gz");
  data::write_idx(path, a, true);
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size / 2);
  CHECK_THROWS_AS(data::read_idx(path, 3), gs::DataError);
  std::filesystem::remove(path);
  CHECK_THROWS_WITH(data::read_idx(temp_path("does_not_exist")), Catch::Contains("cannot open"));
}

TEST_CASE("load_idx_dataset reads a directory and checks it", "[data][dataset]") {
  const auto dir = std::filesystem::temp_directory_path() / "gradscope_idx_dir";
  std::filesystem::create_directories(dir);
  data::IdxArray img, lab;
  img.dims = {5, 28, 28};
  img.data.assign(img.count(), 255);
  img.data[0] = 0;
  lab.dims = {5};
  lab.data = {0, 1, 2, 3, 4};
  data::write_idx((dir / "train-images-idx3-ubyte.gz").string(), img, true);
  data::write_idx((dir / "train-labels-idx1-ubyte").string(), lab, false);
  const auto d = data::load_idx_dataset<float>(dir.string(), "train");
  CHECK(d.size() == 5);
  CHECK(d.features() == 784);
  CHECK(d.images(0, 0) == 0.0f);
  CHECK(d.images(0, 1) == 1.0f);
  CHECK(d.labels == std::vector<int>{0, 1, 2, 3, 4});
  // A label file that disagrees with the image count.
  lab.dims = {4};
  lab.data = {0, 1, 2, 3};
  data::write_idx((dir / "train-labels-idx1-ubyte").string(), lab, false);
  CHECK_THROWS_WITH(data::load_idx_dataset<float>(dir.string(), "train"),
                    Catch::Contains("4 labels") && Catch::Contains("5 images"));
  CHECK_THROWS_WITH(data::load_idx_dataset<float>(dir.string(), "t10k"),
                    Catch::Contains("t10k-images-idx3-ubyte"));
  std::filesystem::remove_all(dir);
}
