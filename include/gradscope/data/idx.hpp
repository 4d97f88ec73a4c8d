#pragma once
/// The IDX format of MNIST and Fashion-MNIST (raw or gzip): a reader that validates everything
/// before trusting it, and a writer. Needs zlib (Debian zlib1g-dev; link with -lz or ZLIB::ZLIB).

#include "../detail/compiled.hpp"
#if defined(GRADSCOPE_COMPILED_LIBRARY) && !defined(GRADSCOPE_COMPILED_LIBRARY_DATA)
#error "this gradscope::compiled was built without zlib and holds no data code: rebuild gradscope with zlib installed (Debian zlib1g-dev), or build this program with gradscope::gradscope"
#endif
// Only the bodies compiled here need zlib (see ../detail/compiled.hpp).
#if !GRADSCOPE_DATA_DECLARE_ONLY
#include <zlib.h>
#endif

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"

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
  if (bytes.size() < 4)
    throw detail::idx_error(name, bytes.size(), "file ends inside the 4-byte magic number");
  if (bytes[0] != 0 || bytes[1] != 0)
    throw detail::idx_error(
        name, 0, "bad magic number: the first two bytes must be 0 (is this an IDX file?)");
  if (bytes[2] != 0x08)
    throw detail::idx_error(name, 2,
                            "element type 0x" + std::to_string(bytes[2]) +
                                " is not supported (expected 0x08, unsigned byte)");
  const int rank = bytes[3];
  if (rank < 1 || rank > 4)
    throw detail::idx_error(name, 3, "rank " + std::to_string(rank) + " is not in 1..4");
  if (expected_rank >= 0 && rank != expected_rank)
    throw detail::idx_error(name, 3,
                            "rank is " + std::to_string(rank) + ", expected " +
                                std::to_string(expected_rank) +
                                (expected_rank == 1 ? " (labels, idx1)" : " (images, idx3)"));
  const std::uint64_t header = 4 + 4 * static_cast<std::uint64_t>(rank);
  if (bytes.size() < header)
    throw detail::idx_error(
        name, bytes.size(),
        "file ends inside the dimensions (header is " + std::to_string(header) + " bytes)");
  IdxArray a;
  std::uint64_t count = 1;
  for (int k = 0; k < rank; ++k) {
    const std::size_t o = 4 + 4 * static_cast<std::size_t>(k);
    const std::uint32_t d = (std::uint32_t{bytes[o]} << 24) | (std::uint32_t{bytes[o + 1]} << 16) |
                            (std::uint32_t{bytes[o + 2]} << 8) | std::uint32_t{bytes[o + 3]};
    if (d == 0) throw detail::idx_error(name, o, "dimension " + std::to_string(k) + " is zero");
    count *= d;
    if (count > limits.max_bytes)
      throw detail::idx_error(
          name, o,
          "declared size exceeds the limit of " + std::to_string(limits.max_bytes) + " bytes");
    a.dims.push_back(d);
  }
  const std::uint64_t have = bytes.size() - header;
  if (have < count)
    throw detail::idx_error(name, bytes.size(),
                            "file is truncated: the dimensions declare " + std::to_string(count) +
                                " data bytes but only " + std::to_string(have) +
                                " follow the header");
  if (have > count)
    throw detail::idx_error(
        name, header + count,
        std::to_string(have - count) + " unexpected bytes after the declared data");
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return a;
}
#endif

/// Reads a whole file, gunzipping it when it is gzip (zlib reads plain files unchanged). Stops
/// with a DataError once more than `max_bytes` would be read.
GRADSCOPE_COMPILED_API std::vector<std::uint8_t> read_maybe_gzip(const std::string& path,
                                                                 std::uint64_t max_bytes)
#if GRADSCOPE_DATA_DECLARE_ONLY
    ;
#else
{
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw DataError("cannot open '" + path + "'");
  std::vector<std::uint8_t> out;
  std::uint8_t buf[1 << 16];
  for (;;) {
    const int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int err = 0;
      const std::string msg = gzerror(f, &err);
      gzclose(f);
      throw DataError("'" + path + "', byte " + std::to_string(out.size()) +
                      " of the decompressed stream: " + msg);
    }
    if (n == 0) break;
    if (out.size() + static_cast<std::uint64_t>(n) > max_bytes + 64) {
      gzclose(f);
      throw DataError("'" + path + "' is larger than the limit of " + std::to_string(max_bytes) +
                      " bytes");
    }
    out.insert(out.end(), buf, buf + n);
  }
  // A truncated gzip stream reads short without an error from gzread: gzclose reports it.
  const int rc = gzclose(f);
  if (rc != Z_OK && rc != Z_BUF_ERROR)
    throw DataError("'" + path + "': the compressed stream is corrupt (zlib error " +
                    std::to_string(rc) + ")");
  if (rc == Z_BUF_ERROR)
    throw DataError("'" + path + "', byte " + std::to_string(out.size()) +
                    " of the decompressed stream: the gzip stream is truncated");
  return out;
}
#endif

/// Reads and validates an IDX file (raw or gzip).
GRADSCOPE_COMPILED_API IdxArray read_idx(const std::string& path, int expected_rank = -1,
                                         const IdxLimits& limits = {})
#if GRADSCOPE_DATA_DECLARE_ONLY
    ;
#else
{
  const auto bytes = read_maybe_gzip(path, limits.max_bytes + 4 + 16);
  return parse_idx(bytes, path, expected_rank, limits);
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
