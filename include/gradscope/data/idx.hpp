#pragma once
/// The IDX format of MNIST and Fashion-MNIST (raw or gzip): a reader that validates everything
/// before trusting it, and a writer. Needs zlib (Debian zlib1g-dev; link with -lz or ZLIB::ZLIB).

#include "../detail/compiled.hpp"
#if defined(GRADSCOPE_COMPILED_LIBRARY) && !defined(GRADSCOPE_COMPILED_LIBRARY_DATA)
#error \
    "this gradscope::compiled was built without zlib and holds no data code: rebuild gradscope with zlib installed (Debian zlib1g-dev), or build this program with gradscope::gradscope"
#endif
// Only the bodies compiled here need zlib (see ../detail/compiled.hpp).
#if !GRADSCOPE_DATA_DECLARE_ONLY
#include <zlib.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../detail/file.hpp"

namespace gradscope::data {

/// An IDX array of unsigned bytes: its dimensions and its data, row-major.
struct IdxArray {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> data;
  std::uint64_t count() const {
    std::uint64_t n = 1;
    for (auto d : dims) n *= d;
    return n;
  }
};

/// Limits on what a file may declare.
struct IdxLimits {
  std::uint64_t max_bytes = std::uint64_t{1} << 31;  ///< largest data section accepted
};

namespace detail {
inline DataError idx_error(const std::string& name, std::uint64_t offset, const std::string& what) {
  return DataError("IDX file '" + name + "', byte " + std::to_string(offset) + ": " + what);
}

/// "0x0D (float)": an IDX element-type byte in hex, with the type's name when it has one.
inline std::string idx_type_name(std::uint8_t type) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string s = "0x";
  s += digits[type >> 4];
  s += digits[type & 15];
  const char* names[] = {"unsigned byte", "signed byte", nullptr, "short",
                         "int",           "float",       "double"};
  if (type >= 0x08 && type <= 0x0E && names[type - 0x08])
    s.append(" (").append(names[type - 0x08]).append(")");
  return s;
}

/// What an IDX header declares.
struct IdxHeader {
  std::vector<std::uint32_t> dims;
  std::uint64_t header_bytes = 0;  ///< 4 + 4 * rank
  std::uint64_t data_bytes = 0;    ///< the product of the dimensions
};

/// Checks the header at the start of `bytes` (which may hold only the header, or less when the
/// file is that short): the magic number, the element type, the rank, every dimension and the
/// declared size against the limits.
GRADSCOPE_COMPILED_API IdxHeader parse_idx_header(std::span<const std::uint8_t> bytes,
                                                  const std::string& name, int expected_rank,
                                                  const IdxLimits& limits)
#if GRADSCOPE_DATA_DECLARE_ONLY
    ;
#else
{
  if (bytes.size() < 4)
    throw idx_error(name, bytes.size(), "file ends inside the 4-byte magic number");
  if (bytes[0] != 0 || bytes[1] != 0)
    throw idx_error(name, 0,
                    "bad magic number: the first two bytes must be 0 (is this an IDX file?)");
  if (bytes[2] != 0x08)
    throw idx_error(name, 2,
                    "element type " + idx_type_name(bytes[2]) +
                        " is not supported (expected 0x08, unsigned byte)");
  const int rank = bytes[3];
  if (rank < 1 || rank > 4)
    throw idx_error(name, 3, "rank " + std::to_string(rank) + " is not in 1..4");
  if (expected_rank >= 0 && rank != expected_rank)
    throw idx_error(name, 3,
                    "rank is " + std::to_string(rank) + ", expected " +
                        std::to_string(expected_rank) +
                        (expected_rank == 1 ? " (labels, idx1)" : " (images, idx3)"));
  IdxHeader h;
  h.header_bytes = 4 + 4 * static_cast<std::uint64_t>(rank);
  if (bytes.size() < h.header_bytes)
    throw idx_error(
        name, bytes.size(),
        "file ends inside the dimensions (header is " + std::to_string(h.header_bytes) + " bytes)");
  std::uint64_t count = 1;
  for (int k = 0; k < rank; ++k) {
    const std::size_t o = 4 + 4 * static_cast<std::size_t>(k);
    const std::uint32_t d = (std::uint32_t{bytes[o]} << 24) | (std::uint32_t{bytes[o + 1]} << 16) |
                            (std::uint32_t{bytes[o + 2]} << 8) | std::uint32_t{bytes[o + 3]};
    if (d == 0) throw idx_error(name, o, "dimension " + std::to_string(k) + " is zero");
    if (d > limits.max_bytes / count)  // count * d > max_bytes, without overflowing
      throw idx_error(
          name, o,
          "declared size exceeds the limit of " + std::to_string(limits.max_bytes) + " bytes");
    count *= d;
    h.dims.push_back(d);
  }
  h.data_bytes = count;
  return h;
}
#endif
}  // namespace detail

/// Parses IDX bytes (already decompressed). `name` is used in error messages. Checks the magic
/// number (0x00 0x00, type 0x08 = unsigned byte, rank 1-4), the expected rank (-1: any), that
/// no dimension is zero, that the declared size is within the limits, and that the data has
/// exactly the declared length.
GRADSCOPE_COMPILED_API IdxArray parse_idx(std::span<const std::uint8_t> bytes,
                                          const std::string& name, int expected_rank = -1,
                                          const IdxLimits& limits = {})
#if GRADSCOPE_DATA_DECLARE_ONLY
    ;
#else
{
  detail::IdxHeader h = detail::parse_idx_header(bytes, name, expected_rank, limits);
  const std::uint64_t have = bytes.size() - h.header_bytes;
  if (have < h.data_bytes)
    throw detail::idx_error(name, bytes.size(),
                            "file is truncated: the dimensions declare " +
                                std::to_string(h.data_bytes) + " data bytes but only " +
                                std::to_string(have) + " follow the header");
  if (have > h.data_bytes)
    throw detail::idx_error(
        name, h.header_bytes + h.data_bytes,
        std::to_string(have - h.data_bytes) + " unexpected bytes after the declared data");
  IdxArray a;
  a.dims = std::move(h.dims);
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(h.header_bytes), bytes.end());
  return a;
}
#endif

#if !GRADSCOPE_DATA_DECLARE_ONLY
namespace detail {
/// A gzFile that closes itself, and reads with the errors of the IDX reader. Private to the
/// bodies below (defined only where they are compiled).
class GzReader {
 public:
  /// Opens `path` (a regular file only: see open_regular_file), raw or gzip. `what` names it
  /// in the messages of open errors ("IDX file 'train.gz'").
  GzReader(const std::string& path, const std::string& what) : path_(path) {
    const int fd = gradscope::detail::open_regular_file(path, what);
    f_ = gzdopen(fd, "rb");
    if (!f_) {
      ::close(fd);
      throw DataError("cannot open '" + path + "': zlib could not start reading it");
    }
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;
  ~GzReader() {
    if (f_) gzclose(f_);
  }
  /// Reads up to `n` bytes into `out`; fewer only at the end of the stream. `offset`: the
  /// decompressed offset of `out`, for messages.
  std::size_t read(std::uint8_t* out, std::size_t n, std::uint64_t offset) {
    std::size_t got = 0;
    while (got < n) {
      const auto want = static_cast<unsigned>(std::min<std::size_t>(n - got, 1u << 30));
      const int r = gzread(f_, out + got, want);
      if (r < 0) {
        int err = 0;
        const std::string msg = gzerror(f_, &err);
        throw DataError("'" + path_ + "', byte " + std::to_string(offset + got) +
                        " of the decompressed stream: " + msg);
      }
      if (r == 0) break;
      got += static_cast<std::size_t>(r);
    }
    return got;
  }
  /// Closes the stream; DataError when zlib then reports a truncated or corrupt gzip stream.
  /// `offset`: how far the decompressed stream was read.
  void close(std::uint64_t offset) {
    // A truncated gzip stream reads short without an error from gzread: gzclose reports it.
    const int rc = gzclose(std::exchange(f_, nullptr));
    if (rc == Z_BUF_ERROR)
      throw DataError("'" + path_ + "', byte " + std::to_string(offset) +
                      " of the decompressed stream: the gzip stream is truncated");
    if (rc != Z_OK)
      throw DataError("'" + path_ + "': the compressed stream is corrupt (zlib error " +
                      std::to_string(rc) + ")");
  }

 private:
  std::string path_;
  gzFile f_ = nullptr;
};
}  // namespace detail
#endif

/// Reads a whole file, gunzipping it when it is gzip (zlib reads plain files unchanged). Stops
/// with a DataError once more than `max_bytes` would be read. Only regular files are read: a
/// FIFO, directory or device gets a DataError (before anything blocks).
GRADSCOPE_COMPILED_API std::vector<std::uint8_t> read_maybe_gzip(const std::string& path,
                                                                 std::uint64_t max_bytes)
#if GRADSCOPE_DATA_DECLARE_ONLY
    ;
#else
{
  detail::GzReader in(path, "'" + path + "'");
  std::vector<std::uint8_t> out;
  std::uint8_t buf[1 << 16];
  for (;;) {
    const std::size_t n = in.read(buf, sizeof buf, out.size());
    if (n == 0) break;
    if (out.size() + n > max_bytes)
      throw DataError("'" + path + "' is larger than the limit of " + std::to_string(max_bytes) +
                      " bytes");
    out.insert(out.end(), buf, buf + n);
  }
  in.close(out.size());
  return out;
}
#endif

/// Reads and validates an IDX file (raw or gzip), streaming: the header is read and checked
/// first, then exactly the declared data, then one more byte to find trailing data. Memory and
/// decompression work are therefore bounded by the declared size (itself bounded by `limits`),
/// whatever the file holds after it: a gzip bomb stops at the declared size plus one byte. Only
/// regular files are read (a FIFO, directory or device gets a DataError, never a hang).
GRADSCOPE_COMPILED_API IdxArray read_idx(const std::string& path, int expected_rank = -1,
                                         const IdxLimits& limits = {})
#if GRADSCOPE_DATA_DECLARE_ONLY
    ;
#else
{
  detail::GzReader in(path, "IDX file '" + path + "'");
  std::vector<std::uint8_t> head(4);
  head.resize(in.read(head.data(), 4, 0));
  if (head.size() == 4 && head[0] == 0 && head[1] == 0 && head[2] == 0x08 && head[3] >= 1 &&
      head[3] <= 4) {
    head.resize(4 + 4 * std::size_t{head[3]});
    head.resize(4 + in.read(head.data() + 4, head.size() - 4, 4));
  }
  detail::IdxHeader h = detail::parse_idx_header(head, path, expected_rank, limits);

  IdxArray a;
  a.dims = std::move(h.dims);
  // Grown as the data arrives, in reads that double from 64 KiB up to 16 MiB and never beyond
  // the declared size: a small file declaring a large size costs at most twice what it holds.
  const auto declared = static_cast<std::size_t>(h.data_bytes);
  std::size_t have = 0;
  while (have < declared) {
    const std::size_t step =
        std::clamp<std::size_t>(have, std::size_t{1} << 16, std::size_t{1} << 24);
    const std::size_t want = std::min(step, declared - have);
    if (have + want > a.data.capacity())
      a.data.reserve(std::min(declared, std::max(2 * a.data.capacity(), have + want)));
    a.data.resize(have + want);
    const std::size_t got = in.read(a.data.data() + have, want, h.header_bytes + have);
    have += got;
    if (got < want) break;
  }
  if (have < declared) {
    in.close(h.header_bytes + have);  // a truncated gzip stream is the better message
    throw detail::idx_error(path, h.header_bytes + have,
                            "file is truncated: the dimensions declare " +
                                std::to_string(declared) + " data bytes but only " +
                                std::to_string(have) + " follow the header");
  }
  std::uint8_t extra = 0;
  if (in.read(&extra, 1, h.header_bytes + declared) != 0)
    throw detail::idx_error(path, h.header_bytes + declared,
                            "unexpected bytes after the declared data (the dimensions declare " +
                                std::to_string(declared) +
                                " data bytes; reading stopped at the first byte beyond them)");
  in.close(h.header_bytes + declared);
  return a;
}
#endif

/// Labels from an idx1 file, each checked to lie in [0, classes).
GRADSCOPE_COMPILED_API std::vector<int> read_idx_labels(const std::string& path, int classes = 10)
#if GRADSCOPE_DATA_DECLARE_ONLY
    ;
#else
{
  const IdxArray a = read_idx(path, 1);
  std::vector<int> labels(a.data.begin(), a.data.end());
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (labels[i] >= classes)
      throw detail::idx_error(path, 8 + i,
                              "label " + std::to_string(labels[i]) + " of item " +
                                  std::to_string(i) + " is out of range for " +
                                  std::to_string(classes) + " classes");
  return labels;
}
#endif

/// Writes an IDX file of unsigned bytes, gzip-compressed when `gzip`.
GRADSCOPE_COMPILED_API void write_idx(const std::string& path, const IdxArray& a, bool gzip = false)
#if GRADSCOPE_DATA_DECLARE_ONLY
    ;
#else
{
  if (a.dims.empty() || a.dims.size() > 4) throw ValueError("write_idx: rank must be 1..4");
  if (a.count() != a.data.size())
    throw ValueError("write_idx: dimensions do not match the data size");
  std::vector<std::uint8_t> bytes{0, 0, 0x08, static_cast<std::uint8_t>(a.dims.size())};
  for (auto d : a.dims)
    for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<std::uint8_t>(d >> s));
  bytes.insert(bytes.end(), a.data.begin(), a.data.end());
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    if (!f) throw DataError("cannot open '" + path + "' for writing");
    const bool ok = gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) ==
                    static_cast<int>(bytes.size());
    if (gzclose(f) != Z_OK || !ok) throw DataError("cannot write '" + path + "'");
    return;
  }
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw DataError("cannot open '" + path + "' for writing");
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  if (std::fclose(f) != 0 || !ok) throw DataError("cannot write '" + path + "'");
}
#endif

}  // namespace gradscope::data
