#include <catch2/catch.hpp>

#include <gradscope/data/data.hpp>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
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
// One gzip member holding `bytes`, compressed by zlib.
std::vector<std::uint8_t> gzip_member(const std::vector<std::uint8_t>& bytes) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) == Z_OK);
  std::vector<std::uint8_t> out(deflateBound(&z, static_cast<uLong>(bytes.size())));
  z.next_in = const_cast<Bytef*>(bytes.data());
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}
// The message of the gradscope::Error that `f` throws, or "" when it throws nothing.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const gs::Error& e) {
    return e.what();
  }
  return "";
}
// Runs `f` on another thread and returns the message of the gradscope::Error it throws ("" when
// none). A call still running after 20 s fails the test instead of hanging it: then `unblock`
// is called so that the thread can finish.
std::string error_within_timeout(const std::function<void()>& f,
                                 const std::function<void()>& unblock) {
  auto done = std::async(std::launch::async, [&] { return error_of(f); });
  if (done.wait_for(std::chrono::seconds(20)) == std::future_status::ready) return done.get();
  unblock();
  done.wait();
  FAIL("the call did not return within 20 s (it blocked)");
  return "";
}
// Opens the FIFO at `path` for writing and closes it again: a reader blocked in open() on it
// wakes up and reads end-of-file.
void release_fifo(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
  if (fd >= 0) ::close(fd);
}
long peak_rss_kib() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
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
  SECTION("unsupported element type, shown in hex") {
    auto b = header({6}, 0x0D);
    b.resize(b.size() + 24);
    CHECK_THAT(parse_error(b),
               Catch::EndsWith("byte 2: element type 0x0D (float) is not supported (expected "
                               "0x08, unsigned byte)"));
    b[2] = 0xFF;
    CHECK_THAT(parse_error(b), Catch::Contains("element type 0xFF is not supported"));
    b[2] = 0x0A;
    CHECK_THAT(parse_error(b), Catch::Contains("element type 0x0A is not supported"));
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

TEST_CASE("read_idx checks the header first and stops at the declared size plus one byte",
          "[data][idx]") {
  // A valid 100-label file followed by 256 MiB of zeros: the file is one gzip member for the
  // IDX bytes and 256 members of 1 MiB of zeros each (zlib reads concatenated members as one
  // stream), about 260 KB on disk. Reading all of it would take 256 MiB or more of memory.
  auto idx = header({100});
  for (int i = 0; i < 100; ++i) idx.push_back(static_cast<std::uint8_t>(i % 10));
  std::vector<std::uint8_t> file = gzip_member(idx);
  const auto zeros = gzip_member(std::vector<std::uint8_t>(std::size_t{1} << 20, 0));
  for (int i = 0; i < 256; ++i) file.insert(file.end(), zeros.begin(), zeros.end());
  const auto path = temp_path("bomb.gz");
  write_bytes(path, file);
  REQUIRE(std::filesystem::file_size(path) < 1'000'000);

  // In a child process, whose peak resident memory starts afresh: how much it grows while the
  // reader runs, and the reader's message.
  int out[2];
  REQUIRE(::pipe(out) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(out[0]);
    const long before = peak_rss_kib();
    const std::string message = error_of([&] { data::read_idx(path, 1); });
    const std::string report = std::to_string(peak_rss_kib() - before) + "\n" + message;
    const ssize_t w = ::write(out[1], report.data(), report.size());
    ::_exit(w == static_cast<ssize_t>(report.size()) ? 0 : 1);
  }
  ::close(out[1]);
  std::string report;
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) report.append(buf, buf + n);
  ::close(out[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  const auto newline = report.find('\n');
  REQUIRE(newline != std::string::npos);
  const long growth_kib = std::stol(report.substr(0, newline));
  const std::string message = report.substr(newline + 1);
  INFO("peak memory growth while reading: " << growth_kib << " KiB");
  CHECK(growth_kib < 32 * 1024);
  CHECK_THAT(message, Catch::Contains("bomb.gz', byte 108: unexpected bytes after the declared "
                                      "data (the dimensions declare 100 data bytes"));
  std::filesystem::remove(path);

  // The same stream ending right after the data reads. A header declaring 1 GB in a 30-byte
  // file is "truncated" (and costs the reader a 64 KiB buffer, not 1 GB).
  write_bytes(path, gzip_member(idx));
  CHECK(data::read_idx(path, 1).data.size() == 100);
  auto big = header({1u << 30});
  big.resize(big.size() + 10, 7);
  write_bytes(path, gzip_member(big));
  CHECK_THAT(error_of([&] { data::read_idx(path); }),
             Catch::Contains("byte 18: file is truncated: the dimensions declare 1073741824 data "
                             "bytes but only 10 follow the header"));
  std::filesystem::remove(path);
}

TEST_CASE("read_idx from a file gives the verdicts and offsets of parse_idx", "[data][idx]") {
  auto good = header({2, 3});
  for (int i = 0; i < 6; ++i) good.push_back(static_cast<std::uint8_t>(i));
  std::vector<std::vector<std::uint8_t>> cases;
  for (std::size_t n = 0; n <= good.size() + 2; ++n) {  // every truncation, and trailing bytes
    auto b = good;
    b.resize(n, 9);
    cases.push_back(b);
  }
  for (std::size_t k = 0; k < 4; ++k) {  // each byte of the magic number wrong
    auto b = good;
    b[k] = 0x55;
    cases.push_back(b);
  }
  cases.push_back(header({0, 3}));
  const auto path = temp_path("same");
  for (const auto& b : cases) {
    for (bool gzip : {false, true}) {
      INFO("bytes: " << b.size() << ", gzip: " << gzip);
      write_bytes(path, gzip ? gzip_member(b) : b);
      const std::string expected = parse_error(b, 2);
      const std::string got = error_of([&] { data::read_idx(path, 2); });
      if (expected.empty()) {
        CHECK(got.empty());
        continue;
      }
      // The same check at the same byte; only the trailing-data message differs (the streaming
      // reader does not count what follows).
      const auto verdict = [](const std::string& m) { return m.substr(m.find("', byte ")); };
      if (b.size() > good.size())
        CHECK_THAT(got, Catch::Contains("byte 18: unexpected bytes after the declared data"));
      else
        CHECK(verdict(got) == verdict(expected));
    }
  }
  std::filesystem::remove(path);
}

TEST_CASE("a FIFO, directory or device given as a data file is refused at once",
          "[data][idx][fifo]") {
  const auto dir =
      std::filesystem::temp_directory_path() / ("gradscope_idx_fifo_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string fifo = (dir / "train-images-idx3-ubyte").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  data::write_idx((dir / "train-labels-idx1-ubyte").string(), {{2}, {0, 1}});
  const auto unblock = [&] { release_fifo(fifo); };

  // Before the check, each of these waited forever in open() for a writer.
  const std::string kind = "it is a FIFO (named pipe), not a regular file";
  CHECK_THAT(error_within_timeout([&] { data::read_idx(fifo, 3); }, unblock),
             Catch::Equals("[gradscope.data] cannot read IDX file '" + fifo + "': " + kind));
  CHECK_THAT(error_within_timeout([&] { data::read_idx_labels(fifo); }, unblock),
             Catch::Contains(kind));
  CHECK_THAT(error_within_timeout([&] { data::read_maybe_gzip(fifo, 100); }, unblock),
             Catch::Contains(kind));
  CHECK_THAT(
      error_within_timeout([&] { data::load_idx_dataset<float>(dir.string(), "train"); }, unblock),
      Catch::Contains(fifo) && Catch::Contains(kind));

  CHECK_THAT(error_of([&] { data::read_idx(dir.string()); }),
             Catch::Contains("it is a directory, not a regular file"));
  if (std::filesystem::exists("/dev/zero"))  // would otherwise read zeros up to the limit
    CHECK_THAT(error_of([&] { data::read_idx("/dev/zero"); }),
               Catch::Contains("'/dev/zero': it is a character device, not a regular file"));
  std::filesystem::remove_all(dir);
}
