#pragma once
// Helpers shared by the io tests. Not a test file itself (the build globs *.test.cpp only).

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>
#include <gradscope/io/io.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

namespace io_test {

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace fs = std::filesystem;
using Bytes = std::vector<std::byte>;

/// A fresh directory under the system temporary directory, removed with its contents.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("gradscope-io-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }
  /// The names of the directory's entries, sorted.
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  fs::path path_;
};

inline Bytes read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Bytes out(chars.size());
  if (!chars.empty()) std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

inline void write_bytes(const fs::path& p, const Bytes& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  REQUIRE(out);
}

inline Bytes to_bytes(const std::string& s) {
  Bytes out(s.size());
  if (!s.empty()) std::memcpy(out.data(), s.data(), s.size());
  return out;
}

/// The little-endian bytes of a value.
template <class V>
void append_le(Bytes& out, V v) {
  unsigned char raw[sizeof(V)];
  std::memcpy(raw, &v, sizeof(V));
  if constexpr (std::endian::native == std::endian::big) std::reverse(raw, raw + sizeof(V));
  for (unsigned char c : raw) out.push_back(std::byte(c));
}

/// A safetensors file built by hand: u64 header length, the JSON text as given, the data.
inline Bytes safetensors_bytes(const std::string& json, const Bytes& data) {
  Bytes out;
  append_le<std::uint64_t>(out, json.size());
  const Bytes j = to_bytes(json);
  out.insert(out.end(), j.begin(), j.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

/// Dense(5 -> 8), BatchNorm(8), ReLU, Dense(8 -> 3), drawn from `seed` with non-zero biases.
template <class T>
std::shared_ptr<nn::Sequential<T>> make_model(std::uint64_t seed, gs::Index hidden = 8) {
  gs::Rng rng(seed);
  auto net = std::make_shared<nn::Sequential<T>>();
  net->template add<nn::Dense>(5, hidden, gs::init::normal(0.5), true, &rng);
  net->template add<nn::BatchNorm>(hidden);
  net->template add<nn::ReLU>();
  net->template add<nn::Dense>(hidden, 3, gs::init::normal(0.5), true, &rng);
  return net;
}

/// One deterministic training step on a batch drawn from `batch_seed` (MSE loss).
template <class T>
void train_step(nn::Module<T>& net, gs::optim::Optimizer<T>& opt, std::uint64_t batch_seed) {
  gs::Rng rng(batch_seed);
  gs::Matrix<T> x(16, 5), y(16, 3);
  for (gs::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<T>(rng.normal(0.0, 1.0));
  for (gs::Index i = 0; i < y.size(); ++i) y.data()[i] = static_cast<T>(rng.normal(0.0, 1.0));
  gs::Tape<T> tape;
  auto loss = nn::mse(net(gs::Tensor<T>(x)), gs::Tensor<T>(y));
  tape.backward(loss);
  opt.step();
  opt.zero_grad();
}

/// The raw bytes of every tensor, in order.
template <class T>
std::vector<Bytes> snapshot(const std::vector<gs::NamedTensor<T>>& tensors) {
  std::vector<Bytes> out;
  for (const auto& t : tensors) {
    const auto v = t.tensor.value();
    Bytes b(static_cast<std::size_t>(v.size()) * sizeof(T));
    if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
    out.push_back(std::move(b));
  }
  return out;
}

/// Bytes of the model's parameters and buffers and (when given) the optimiser's state.
template <class T>
std::vector<Bytes> snapshot(const nn::Module<T>& net, gs::optim::Optimizer<T>* opt = nullptr) {
  return snapshot(gs::io::checkpoint_tensors(net, opt));
}

/// The message of the gradscope::Error that `f` throws, or "" when it throws nothing. Other
/// exceptions propagate (and fail the test).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const gs::Error& e) {
    return e.what();
  }
  return "";
}

/// error_of(f) run on another thread. A call still running after 20 s fails the test instead of
/// hanging it; `unblock` is then called so that the thread can finish.
inline std::string error_within_timeout(const std::function<void()>& f,
                                        const std::function<void()>& unblock) {
  auto done = std::async(std::launch::async, [&] { return error_of(f); });
  if (done.wait_for(std::chrono::seconds(20)) == std::future_status::ready) return done.get();
  unblock();
  done.wait();
  FAIL("the call did not return within 20 s (it blocked)");
  return "";
}

/// Opens the FIFO at `path` for writing and closes it again: a reader blocked in open() on it
/// wakes up and reads end-of-file.
inline void release_fifo(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
  if (fd >= 0) ::close(fd);
}

/// True when `s` is valid UTF-8 without control characters (what an error message quoting file
/// content must be).
inline bool printable_utf8(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) return false;
    std::size_t n = c < 0x80                 ? 1
                    : c >= 0xc2 && c <= 0xdf ? 2
                    : c >= 0xe0 && c <= 0xef ? 3
                    : c >= 0xf0 && c <= 0xf4 ? 4
                                             : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    if (c == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0) return false;  // C1 controls
    i += n;
  }
  return true;
}

}  // namespace io_test
