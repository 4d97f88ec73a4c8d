#pragma once
/// The safetensors file format: reading with full validation, and crash-safe writing.
///
/// Layout (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian u64 N,
/// then N bytes of UTF-8 JSON, then the data buffer. The JSON maps each tensor name to
/// {"dtype": "F32", "shape": [r, c], "data_offsets": [begin, end]} (offsets relative to the start
/// of the data buffer) and may hold "__metadata__": {string: string}. Tensors are row-major and
/// little-endian, packed with no holes and no overlaps, and together cover the buffer exactly.
/// gradscope pads the header with spaces to a multiple of 8 bytes, like the reference writer.
///
/// gradscope adds two metadata keys (the prefix "gradscope." is reserved):
///   "gradscope.format":   "1"
///   "gradscope.checksum": 16 lowercase hex digits of a 64-bit FNV-1a hash, over the canonical
///                         header text below followed by the whole data buffer.
/// The canonical header text is one line per tensor, in ascending byte order of the names,
///   "tensor <len(name)>:<name> <dtype> [<d0>,<d1>,...] <begin> <end>\n"
/// then one line per metadata key other than "gradscope.checksum", in ascending byte order,
///   "meta <len(key)>:<key> <len(value)>:<value>\n"
/// (lengths in bytes, decimal). A file without the checksum (from another writer) is accepted; a
/// file that declares "gradscope.format" must carry a checksum, and a present checksum must match.

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// Only the bodies compiled here need nlohmann/json (see ../detail/compiled.hpp).
#include "../detail/compiled.hpp"
#if defined(GRADSCOPE_COMPILED_LIBRARY) && !defined(GRADSCOPE_COMPILED_LIBRARY_IO)
#error \
    "this gradscope::compiled was built without nlohmann_json and holds no io code: rebuild gradscope with nlohmann_json installed (Debian nlohmann-json3-dev), or build this program with gradscope::gradscope"
#endif
#if !GRADSCOPE_IO_DECLARE_ONLY
#include <nlohmann/json.hpp>
#endif

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/types.hpp"
#include "../detail/file.hpp"

namespace gradscope::io {

/// String metadata stored in a file's "__metadata__".
using Metadata = std::map<std::string, std::string>;

/// The largest JSON header accepted when reading: 100 MiB (the reference reader has a similar
/// bound). A larger length field is taken as corruption.
inline constexpr std::uint64_t max_header_length = 100ull * 1024 * 1024;
/// The metadata key prefix reserved for gradscope's own keys.
inline constexpr std::string_view reserved_prefix = "gradscope.";
/// The value of "gradscope.format" written by this version.
inline constexpr std::string_view format_version = "1";

/// The safetensors dtype of a gradscope scalar: "F32" or "F64".
template <Scalar T>
constexpr std::string_view dtype_of() {
  return std::same_as<T, float> ? "F32" : "F64";
}

/// Bytes per element of a safetensors dtype ("F32" -> 4), or 0 for a dtype this reader does not
/// know (the sub-byte float formats among them).
inline std::size_t dtype_size(std::string_view dtype) {
  static constexpr std::pair<std::string_view, std::size_t> known[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8}};
  for (const auto& [name, size] : known)
    if (name == dtype) return size;
  return 0;
}

/// One tensor of a safetensors file, as its header describes it.
struct TensorEntry {
  std::string name;
  std::string dtype;                 ///< "F32", "F64", "I64", ...
  std::vector<std::uint64_t> shape;  ///< [] for a scalar
  std::uint64_t begin = 0;           ///< data_offsets[0], relative to the data buffer
  std::uint64_t end = 0;             ///< data_offsets[1]

  std::uint64_t byte_size() const noexcept { return end - begin; }
  /// "[]", "[3]", "[2, 3]".
  std::string shape_str() const {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }
};

/// Options of read_safetensors / parse_safetensors.
struct ReadOptions {
  /// Verify "gradscope.checksum" when present (and require it when "gradscope.format" is).
  bool verify_checksum = true;
};

/// Options of every save function.
struct SaveOptions {
  /// fsync the temporary file before the rename and the directory after it. Turn off only for
  /// scratch files: without it a power cut can leave an empty or partial file behind.
  bool sync = true;
  /// Test seam: called after the temporary file is complete and closed, just before it is
  /// renamed over the target. If it throws, the temporary file is removed, the target is left
  /// as it was and the exception propagates.
  std::function<void()> before_rename = nullptr;
  /// Before writing, remove the temporary files that earlier saves of the same target left
  /// behind when their process was killed (see remove_stale_temporaries).
  bool remove_stale_temporaries = true;
};

/// Removes the temporary files that saves of `target` left behind when their process died
/// mid-write, and returns how many it removed. A save writes ".<name>.tmp.<pid>.<n>" beside the
/// target and renames it over the target; a process killed before the rename leaves it behind.
/// An entry of the target's directory is removed only when all of these hold: its name has
/// exactly that form for this target; it is a regular file (not a symbolic link); process <pid>
/// is not this process and no longer exists (kill(pid, 0) fails with ESRCH); and no process
/// holds the lock that every save keeps on its temporary file until the rename (so a live save
/// from another PID namespace or host sharing the directory is never touched; on a file system
/// without flock nothing is removed). Best effort: errors are ignored. Every save calls it first
/// unless SaveOptions::remove_stale_temporaries is false.
GRADSCOPE_COMPILED_API std::size_t remove_stale_temporaries(const std::filesystem::path& target);

class SafetensorsFile;
GRADSCOPE_COMPILED_API SafetensorsFile parse_safetensors(std::vector<std::byte> bytes,
                                                         std::string source,
                                                         const ReadOptions& options);

namespace detail {

using gradscope::detail::cat;

/// 64-bit FNV-1a.
class Fnv1a64 {
 public:
  void update(const void* data, std::size_t n) noexcept {
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t h = h_;
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    h_ = h;
  }
  void update(std::string_view s) noexcept { update(s.data(), s.size()); }
  std::uint64_t value() const noexcept { return h_; }

 private:
  std::uint64_t h_ = 0xcbf29ce484222325ull;
};

inline std::string hex16(std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[static_cast<std::size_t>(i)] = digits[v & 15];
  return s;
}

/// Feeds the canonical header text (see the top of this file) into `h`.
GRADSCOPE_COMPILED_API void hash_header(Fnv1a64& h, const std::vector<TensorEntry>& tensors,
                                        const Metadata& metadata)
#if GRADSCOPE_IO_DECLARE_ONLY
    ;
#else
{
  std::vector<const TensorEntry*> sorted;
  sorted.reserve(tensors.size());
  for (const auto& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorEntry* a, const TensorEntry* b) { return a->name < b->name; });
  // Appends only: GCC 12 reports a false -Wrestrict on chains of "literal" + std::string.
  std::string line;
  auto add_sized = [&line](std::string_view s) {
    line += std::to_string(s.size());
    line += ':';
    line += s;
  };
  for (const TensorEntry* t : sorted) {
    line.assign("tensor ");
    add_sized(t->name);
    line += ' ';
    line += t->dtype;
    line += " [";
    for (std::size_t i = 0; i < t->shape.size(); ++i) {
      if (i) line += ',';
      line += std::to_string(t->shape[i]);
    }
    line += "] ";
    line += std::to_string(t->begin);
    line += ' ';
    line += std::to_string(t->end);
    line += '\n';
    h.update(line);
  }
  for (const auto& [key, value] : metadata) {
    if (key == "gradscope.checksum") continue;
    line.assign("meta ");
    add_sized(key);
    line += ' ';
    add_sized(value);
    line += '\n';
    h.update(line);
  }
}
#endif

/// The length in bytes of the well-formed UTF-8 sequence at the start of `s` that encodes a
/// character other than a control character (C0, DEL or C1), or 0.
inline std::size_t printable_utf8_length(std::string_view s) noexcept {
  const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  if (c >= 0x20 && c < 0x7f) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // the range of the second byte
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;  // no overlong forms
    if (c == 0xed) hi = 0x9f;  // no UTF-16 surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;  // no overlong forms
    if (c == 0xf4) hi = 0x8f;  // nothing above U+10FFFF
  }
  if (n == 0 || s.size() < n || b(1) < lo || b(1) > hi) return 0;
  for (std::size_t i = 2; i < n; ++i)
    if (b(i) < 0x80 || b(i) > 0xbf) return 0;
  if (c == 0xc2 && b(1) <= 0x9f) return 0;  // U+0080..U+009F, the C1 controls
  return n;
}

/// `s` made safe to print: every byte that is not part of a printable UTF-8 character (control
/// characters, invalid or cut UTF-8) is written as \xNN and a backslash as \\, so that text
/// from a corrupted file can neither garble a message's encoding nor drive a terminal.
inline std::string escape_bytes(std::string_view s) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    if (s[i] == '\\') {
      out += "\\\\";
      ++i;
    } else if (const std::size_t n = printable_utf8_length(s.substr(i))) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      const auto c = static_cast<unsigned char>(s[i++]);
      out += "\\x";
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

/// The first `limit` bytes of `s` or fewer, cut before a UTF-8 continuation byte.
inline std::string_view cut_utf8(std::string_view s, std::size_t limit) noexcept {
  if (s.size() <= limit) return s;
  std::size_t n = limit;
  while (n > 0 && n > limit - 3 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;
  return s.substr(0, n);
}

/// A name or value for an error message: quoted, escaped (escape_bytes) and cut when long (it
/// may come from a corrupted file).
inline std::string quote_name(std::string_view s) {
  constexpr std::size_t limit = 80;
  // Appended piece by piece: "'" + std::string(s) trips GCC 12's -Wrestrict false positive.
  std::string out(1, '\'');
  out.append(escape_bytes(cut_utf8(s, limit)));
  if (s.size() <= limit) return out += '\'';
  return out.append("...' (").append(std::to_string(s.size())).append(" bytes)");
}

/// A file path for an error message, quoted and never cut.
inline std::string quote_path(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

/// "'a', 'b' and 3 more".
inline std::string name_list(const std::vector<std::string>& names) {
  constexpr std::size_t shown = 10;
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < shown; ++i)
    s += (i ? ", " : "") + quote_name(names[i]);
  if (names.size() > shown) s += cat(" and ", names.size() - shown, " more");
  return s;
}

inline std::string errno_text(int err) { return std::strerror(err); }

/// Throws ValueError when `s` is not valid UTF-8 (JSON strings must be).
GRADSCOPE_COMPILED_API void require_utf8(const std::string& s, const char* what)
#if GRADSCOPE_IO_DECLARE_ONLY
    ;
#else
{
  try {
    (void)nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception&) {
    throw ValueError(cat("safetensors: ", what, " ", quote_name(s), " is not valid UTF-8"));
  }
}
#endif

inline std::uint64_t load_u64_le(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}

/// Copies `n` little-endian values of T from `src` to `out`.
template <class T>
void decode_le(const std::byte* src, std::size_t n, T* out) noexcept {
  if (n == 0) return;
  std::memcpy(out, src, n * sizeof(T));
  if constexpr (std::endian::native == std::endian::big) {
    auto* b = reinterpret_cast<unsigned char*>(out);
    for (std::size_t i = 0; i < n; ++i) std::reverse(b + i * sizeof(T), b + (i + 1) * sizeof(T));
  }
}

/// A chunk of the data buffer to write: little-endian bytes.
struct Chunk {
  const std::byte* data = nullptr;
  std::size_t size = 0;
};

/// A file ready to be written: header text (padded) and data chunks in offset order.
struct Plan {
  std::string header;  // the JSON, padded with spaces to a multiple of 8
  std::vector<Chunk> chunks;
  std::vector<std::vector<std::byte>> owned;  // byte-swapped copies on big-endian hosts
};

/// Builds the header of `tensors` (with their data chunks) and `metadata` (which may hold
/// reserved keys; the checksum is computed and added here).
GRADSCOPE_COMPILED_API Plan make_plan(const std::vector<TensorEntry>& tensors,
                                      std::vector<Chunk> chunks, Metadata metadata)
#if GRADSCOPE_IO_DECLARE_ONLY
    ;
#else
{
  std::map<std::string, bool> seen;
  for (const auto& t : tensors) {
    if (t.name.empty()) throw ValueError("safetensors: a tensor name is empty");
    if (t.name == "__metadata__")
      throw ValueError("safetensors: '__metadata__' cannot name a tensor (the format reserves it)");
    if (!seen.emplace(t.name, true).second)
      throw ValueError(cat("safetensors: two tensors are named ", quote_name(t.name)));
    require_utf8(t.name, "tensor name");
  }
  for (const auto& [key, value] : metadata) {
    require_utf8(key, "metadata key");
    require_utf8(value, "metadata value of key");
  }
  metadata["gradscope.format"] = std::string(format_version);
  metadata.erase("gradscope.checksum");
  Fnv1a64 h;
  hash_header(h, tensors, metadata);
  for (const auto& c : chunks) h.update(c.data, c.size);
  metadata["gradscope.checksum"] = hex16(h.value());

  nlohmann::json header = nlohmann::json::object();
  for (const auto& t : tensors) {
    nlohmann::json entry = nlohmann::json::object();
    entry["dtype"] = t.dtype;
    entry["shape"] = t.shape;
    entry["data_offsets"] = nlohmann::json::array({t.begin, t.end});
    header[t.name] = std::move(entry);
  }
  header["__metadata__"] = metadata;
  Plan plan;
  plan.header = header.dump();
  plan.header.append((8 - plan.header.size() % 8) % 8, ' ');
  plan.chunks = std::move(chunks);
  return plan;
}
#endif

/// The plan of tensors of one scalar type, in the given order.
template <Scalar T>
Plan plan_tensors(const std::vector<NamedTensor<T>>& tensors, Metadata metadata) {
  std::vector<TensorEntry> entries;
  std::vector<Chunk> chunks;
  std::vector<std::vector<std::byte>> owned;
  std::uint64_t offset = 0;
  for (const auto& nt : tensors) {
    if (!nt.tensor.defined())
      throw UsageError(cat("safetensors: tensor ", quote_name(nt.name), " is undefined"));
    const Shape s = nt.tensor.shape();
    TensorEntry e;
    e.name = nt.name;
    e.dtype = std::string(dtype_of<T>());
    if (s.rank >= 2) e.shape.push_back(static_cast<std::uint64_t>(s.rows));
    if (s.rank >= 1) e.shape.push_back(static_cast<std::uint64_t>(s.cols));
    const std::size_t bytes = static_cast<std::size_t>(s.size()) * sizeof(T);
    e.begin = offset;
    e.end = offset + bytes;
    offset = e.end;
    const auto* data = reinterpret_cast<const std::byte*>(nt.tensor.value().data());
    if constexpr (std::endian::native == std::endian::big) {
      owned.emplace_back(data, data + bytes);
      auto* b = reinterpret_cast<unsigned char*>(owned.back().data());
      for (std::size_t i = 0; i < bytes; i += sizeof(T)) std::reverse(b + i, b + i + sizeof(T));
      data = owned.back().data();
    }
    chunks.push_back({data, bytes});
    entries.push_back(std::move(e));
  }
  Plan plan = make_plan(entries, std::move(chunks), std::move(metadata));
  plan.owned = std::move(owned);
  return plan;
}

/// The whole file as bytes.
GRADSCOPE_COMPILED_API std::vector<std::byte> encode(const Plan& plan)
#if GRADSCOPE_IO_DECLARE_ONLY
    ;
#else
{
  std::size_t total = 8 + plan.header.size();
  for (const auto& c : plan.chunks) total += c.size;
  std::vector<std::byte> out(total);
  std::uint64_t n = plan.header.size();
  for (int i = 0; i < 8; ++i, n >>= 8) out[static_cast<std::size_t>(i)] = std::byte(n & 0xff);
  std::memcpy(out.data() + 8, plan.header.data(), plan.header.size());
  std::size_t pos = 8 + plan.header.size();
  for (const auto& c : plan.chunks) {
    if (c.size) std::memcpy(out.data() + pos, c.data, c.size);
    pos += c.size;
  }
  return out;
}
#endif

/// Closes a descriptor on scope exit unless released.
class Fd {
 public:
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const noexcept { return fd_; }
  /// Closes now; returns 0 or the errno of close().
  int close() noexcept {
    const int fd = std::exchange(fd_, -1);
    return fd >= 0 && ::close(fd) != 0 ? errno : 0;
  }

 private:
  int fd_;
};

GRADSCOPE_COMPILED_API void write_all(int fd, const void* data, std::size_t n,
                                      const std::string& what)
#if GRADSCOPE_IO_DECLARE_ONLY
    ;
#else
{
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<std::size_t>(n, std::size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw DataError(cat("cannot write ", what, ": ", errno_text(errno)));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}
#endif

/// Parses "<pid>.<n>" (decimal, no sign); the pid, or 0 when `s` has another form.
inline pid_t temporary_owner(std::string_view s) noexcept {
  const auto dot = s.find('.');
  if (dot == 0 || dot == std::string_view::npos || dot + 1 == s.size() || dot > 10) return 0;
  if (s.find_first_not_of("0123456789", dot + 1) != std::string_view::npos) return 0;
  std::int64_t pid = 0;
  for (std::size_t i = 0; i < dot; ++i) {
    if (s[i] < '0' || s[i] > '9') return 0;
    pid = pid * 10 + (s[i] - '0');
  }
  return pid > 0 && pid <= std::numeric_limits<pid_t>::max() ? static_cast<pid_t>(pid) : 0;
}

}  // namespace detail

GRADSCOPE_COMPILED_API std::size_t remove_stale_temporaries(const std::filesystem::path& target)
#if GRADSCOPE_IO_DECLARE_ONLY
    ;
#else
{
  namespace fs = std::filesystem;
  if (target.filename().empty()) return 0;
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  const std::string prefix = "." + target.filename().string() + ".tmp.";
  std::size_t removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path path = it->path();
    const std::string name = path.filename().string();
    if (!name.starts_with(prefix)) continue;
    const pid_t pid = detail::temporary_owner(std::string_view(name).substr(prefix.size()));
    if (pid == 0 || pid == ::getpid()) continue;  // not ours to judge, or this process's own
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive (EPERM: another user's)
    detail::Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    struct stat st {};
    if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;  // a live save, or no flock here
    // Still the file we locked (not replaced under the same name meanwhile)?
    struct stat now {};
    if (::lstat(path.c_str(), &now) != 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino)
      continue;
    if (::unlink(path.c_str()) == 0) ++removed;
  }
  return removed;
}
#endif

namespace detail {

/// Writes `plan` to a temporary file beside `target`, flushes and fsyncs it, renames it over
/// `target` and fsyncs the directory. On failure the temporary file is removed (when the
/// process survives) and `target` is unchanged. The temporary file is locked (flock) until the
/// rename, which tells remove_stale_temporaries that its save is alive.
GRADSCOPE_COMPILED_API void write_atomically(const std::filesystem::path& target, const Plan& plan,
                                             const SaveOptions& options)
#if GRADSCOPE_IO_DECLARE_ONLY
    ;
#else
{
  namespace fs = std::filesystem;
  if (target.filename().empty())
    throw UsageError(cat("save: ", quote_path(target), " names no file"));
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  static std::atomic<std::uint64_t> counter{0};
  if (options.remove_stale_temporaries) remove_stale_temporaries(target);

  fs::path tmp;
  int raw = -1;
  for (int attempt = 0; raw < 0; ++attempt) {
    tmp = dir / cat(".", target.filename().string(), ".tmp.", ::getpid(), ".",
                    counter.fetch_add(1, std::memory_order_relaxed));
    raw = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (raw < 0 && (errno != EEXIST || attempt >= 100))
      throw DataError(cat("cannot save ", quote_path(target), ": cannot create ", quote_path(tmp),
                          ": ", errno_text(errno)));
  }
  Fd fd(raw);
  // The lock lives on a second descriptor of the same open file, so that closing `fd` (which
  // reports write errors) before the rename keeps it. Where flock is not supported the save goes
  // on unlocked (and remove_stale_temporaries never removes anything there).
  Fd lock(::dup(raw));
  if (lock.get() >= 0) (void)::flock(lock.get(), LOCK_EX | LOCK_NB);
  const std::string what = cat("the temporary file ", quote_path(tmp), " for ", quote_path(target));
  try {
    std::byte length[8];
    std::uint64_t n = plan.header.size();
    for (auto& b : length) {
      b = std::byte(n & 0xff);
      n >>= 8;
    }
    write_all(fd.get(), length, sizeof length, what);
    write_all(fd.get(), plan.header.data(), plan.header.size(), what);
    for (const auto& c : plan.chunks) write_all(fd.get(), c.data, c.size, what);
    if (options.sync && ::fsync(fd.get()) != 0)
      throw DataError(cat("cannot fsync ", what, ": ", errno_text(errno)));
    if (const int err = fd.close())
      throw DataError(cat("cannot close ", what, ": ", errno_text(err)));
    if (options.before_rename) options.before_rename();
    if (::rename(tmp.c_str(), target.c_str()) != 0)
      throw DataError(cat("cannot rename ", what, " over it: ", errno_text(errno)));
  } catch (...) {
    fd.close();
    ::unlink(tmp.c_str());
    throw;
  }
  if (options.sync) {
    Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dfd.get() < 0 || (::fsync(dfd.get()) != 0 && errno != EINVAL && errno != EROFS))
      throw DataError(cat("saved ", quote_path(target), " but cannot fsync its directory ",
                          quote_path(dir), ": ", errno_text(errno),
                          " (the new file may not survive a power cut)"));
  }
}
#endif

#if !GRADSCOPE_IO_DECLARE_ONLY
/// Validates `key` holds an array of unsigned integers and returns them.
inline std::vector<std::uint64_t> unsigned_array(const nlohmann::json& entry, const char* key,
                                                 const std::string& where) {
  const auto it = entry.find(key);
  if (it == entry.end()) throw DataError(cat(where, " has no \"", key, "\""));
  if (!it->is_array()) throw DataError(cat(where, ": \"", key, "\" is not an array"));
  std::vector<std::uint64_t> out;
  out.reserve(it->size());
  for (const auto& v : *it) {
    if (!v.is_number_unsigned())
      throw DataError(cat(where, ": \"", key, "\" holds ",
                          v.is_number() ? v.dump() : std::string("a ") + v.type_name(),
                          ", not a non-negative integer"));
    out.push_back(v.get<std::uint64_t>());
  }
  return out;
}
#endif

}  // namespace detail

/// A safetensors file read into memory and validated: its tensors (name, dtype, shape, bytes)
/// and metadata. Obtain one from read_safetensors or parse_safetensors.
class SafetensorsFile {
 public:
  /// What error messages call the file: "file '<path>'", or the source given to
  /// parse_safetensors ("in-memory file" by default).
  const std::string& source() const noexcept { return source_; }
  /// N, the length of the JSON header (padding included).
  std::uint64_t header_length() const noexcept { return header_length_; }
  /// Where the data buffer starts in the file: 8 + N.
  std::uint64_t data_start() const noexcept { return 8 + header_length_; }
  std::uint64_t file_size() const noexcept { return bytes_.size(); }
  /// Every tensor, in the order of their data in the file.
  const std::vector<TensorEntry>& tensors() const noexcept { return tensors_; }
  /// The tensor called `name`, or nullptr.
  const TensorEntry* find(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  /// "__metadata__", reserved "gradscope." keys included.
  const Metadata& metadata() const noexcept { return metadata_; }
  /// True when the file has a "gradscope.checksum" and it was verified.
  bool checksum_verified() const noexcept { return checksum_verified_; }
  /// The raw little-endian bytes of a tensor of this file.
  std::span<const std::byte> data(const TensorEntry& t) const {
    return {bytes_.data() + data_start() + t.begin, static_cast<std::size_t>(t.byte_size())};
  }

  /// A tensor of this file as a gradscope tensor (no gradient). DataError when absent or of
  /// another dtype; ShapeError when its rank is above 2.
  template <Scalar T>
  Tensor<T> tensor(std::string_view name) const {
    const TensorEntry* t = find(name);
    if (!t) throw DataError(detail::cat(source_, ": no tensor ", detail::quote_name(name)));
    if (t->dtype != dtype_of<T>())
      throw DataError(detail::cat(source_, ": tensor ", detail::quote_name(name), " has dtype ",
                                  t->dtype, ", not ", dtype_of<T>()));
    if (t->shape.size() > 2)
      throw ShapeError(detail::cat(source_, ": tensor ", detail::quote_name(name), " has shape ",
                                   t->shape_str(), "; gradscope tensors have rank 0 to 2"));
    const int rank = static_cast<int>(t->shape.size());
    const auto rows = static_cast<Index>(rank == 2 ? t->shape[0] : 1);
    const auto cols = static_cast<Index>(rank == 0 ? 1 : t->shape.back());
    Matrix<T> m(rows, cols);
    read_into(*t, m.data());
    return Tensor<T>(std::move(m), rank, false);
  }
  /// Decodes a tensor of dtype_of<T>() into `out` (byte_size() / sizeof(T) values).
  template <Scalar T>
  void read_into(const TensorEntry& t, T* out) const {
    if (t.dtype != dtype_of<T>())
      throw DataError(detail::cat(source_, ": tensor ", detail::quote_name(t.name), " has dtype ",
                                  t.dtype, ", not ", dtype_of<T>()));
    detail::decode_le(data(t).data(), static_cast<std::size_t>(t.byte_size() / sizeof(T)), out);
  }

 private:
  friend SafetensorsFile parse_safetensors(std::vector<std::byte>, std::string, const ReadOptions&);
  SafetensorsFile() = default;

  std::vector<std::byte> bytes_;
  std::string source_;
  std::uint64_t header_length_ = 0;
  std::vector<TensorEntry> tensors_;
  std::map<std::string, std::size_t> index_;
  Metadata metadata_;
  bool checksum_verified_ = false;
};

/// Validates a whole safetensors file held in memory and takes ownership of it. `source` names
/// it in error messages. Throws DataError (naming the source and a byte offset) for: a header
/// length beyond the file or above 100 MiB, JSON errors, an entry without a known dtype, a shape
/// or data_offsets that are not non-negative integers, offsets outside the data buffer or
/// inconsistent with dtype and shape, overlapping tensors, holes or trailing bytes, non-string
/// metadata, and a checksum that does not match.
GRADSCOPE_COMPILED_API SafetensorsFile parse_safetensors(std::vector<std::byte> bytes,
                                                         std::string source = "in-memory file",
                                                         const ReadOptions& options = {})
#if GRADSCOPE_IO_DECLARE_ONLY
    ;
#else
{
  using detail::cat;
  using detail::quote_name;
  SafetensorsFile f;
  f.source_ = std::move(source);
  const std::string& src = f.source_;
  const std::uint64_t size = bytes.size();
  if (size < 8)
    throw DataError(cat(src, ": the file is ", size, " bytes, too short for the 8-byte header ",
                        "length at byte offset 0 (truncated, or not a safetensors file)"));
  const std::uint64_t n = detail::load_u64_le(bytes.data());
  if (n > max_header_length)
    throw DataError(cat(src, ": the header length at byte offset 0 is ", n,
                        " bytes, above the limit of ", max_header_length,
                        " (corrupted, or not a safetensors file)"));
  if (n > size - 8)
    throw DataError(cat(src, ": the header length at byte offset 0 says ", n,
                        " bytes of JSON follow, but the file ends after ", size - 8, " (file size ",
                        size, "; truncated?)"));
  const std::string header_range = cat("the JSON header (byte offsets 8 to ", 8 + n, ")");

  const char* first = reinterpret_cast<const char*>(bytes.data()) + 8;
  // nlohmann/json takes a NUL byte for the end of its input, which would hide what follows it.
  // A raw NUL is never valid JSON (not even inside a string).
  if (const void* nul = std::memchr(first, 0, static_cast<std::size_t>(n)))
    throw DataError(cat(src, ": invalid JSON in ", header_range, " at byte offset ",
                        8 + (static_cast<const char*>(nul) - first), ": a NUL byte"));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(first, first + n);
  } catch (const nlohmann::json::parse_error& e) {
    const std::uint64_t at = 8 + std::min<std::uint64_t>(e.byte > 0 ? e.byte - 1 : 0, n);
    // nlohmann's message quotes the bytes it last read, raw: escaped here.
    std::string_view why = e.what();
    if (const auto colon = why.find(": "); colon != std::string::npos) why = why.substr(colon + 2);
    const std::string_view cut = detail::cut_utf8(why, 160);
    throw DataError(cat(src, ": invalid JSON in ", header_range, " at byte offset ", at, ": ",
                        detail::escape_bytes(cut), cut.size() < why.size() ? "..." : ""));
  } catch (const nlohmann::json::exception& e) {
    throw DataError(cat(src, ": cannot read ", header_range, ": ", e.what()));
  }
  if (!header.is_object())
    throw DataError(
        cat(src, ": ", header_range, " is a JSON ", header.type_name(), ", not an object"));

  const std::uint64_t data_size = size - 8 - n;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object())
        throw DataError(cat(src, ": \"__metadata__\" in ", header_range, " is not an object"));
      for (const auto& [key, v] : value.items()) {
        if (!v.is_string())
          throw DataError(cat(src, ": metadata key ", quote_name(key), " in ", header_range,
                              " holds a ", v.type_name(), "; safetensors metadata values are ",
                              "strings"));
        f.metadata_[key] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = cat(src, ": tensor ", quote_name(name), " in ", header_range);
    if (!value.is_object()) throw DataError(cat(where, " is not an object"));
    TensorEntry t;
    t.name = name;
    const auto dt = value.find("dtype");
    if (dt == value.end() || !dt->is_string())
      throw DataError(cat(where, " has no string \"dtype\""));
    t.dtype = dt->get<std::string>();
    const std::size_t elem = dtype_size(t.dtype);
    if (elem == 0)
      throw DataError(cat(where, " has unknown dtype ", quote_name(t.dtype),
                          " (known: BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, "
                          "U32, F32, I64, U64, F64)"));
    t.shape = detail::unsigned_array(value, "shape", where);
    const auto offsets = detail::unsigned_array(value, "data_offsets", where);
    if (offsets.size() != 2)
      throw DataError(
          cat(where, ": \"data_offsets\" has ", offsets.size(), " values, not [begin, end]"));
    t.begin = offsets[0];
    t.end = offsets[1];
    std::uint64_t need = elem;
    bool overflow = false;
    for (const std::uint64_t d : t.shape) {
      if (d != 0 && need > std::numeric_limits<std::uint64_t>::max() / d) overflow = true;
      need *= d;
      if (d == 0) overflow = false, need = 0;
    }
    if (overflow) throw DataError(cat(where, ": shape ", t.shape_str(), " is too large"));
    if (t.end < t.begin)
      throw DataError(
          cat(where, ": data_offsets [", t.begin, ", ", t.end, "] end before they begin"));
    if (t.end > data_size)
      throw DataError(cat(where, ": data_offsets [", t.begin, ", ", t.end, "] reach byte offset ",
                          8 + n + t.end, ", beyond the end of the file at ", size,
                          " (truncated?)"));
    if (t.end - t.begin != need)
      throw DataError(cat(where, ": data_offsets [", t.begin, ", ", t.end, "] span ",
                          t.end - t.begin, " bytes, but dtype ", t.dtype, " with shape ",
                          t.shape_str(), " needs ", need));
    f.tensors_.push_back(std::move(t));
  }

  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t cursor = 0;
  const TensorEntry* previous = nullptr;
  for (const auto& t : f.tensors_) {
    if (t.begin < cursor)
      throw DataError(cat(src, ": tensor ", quote_name(t.name), " (data at byte offsets ",
                          8 + n + t.begin, " to ", 8 + n + t.end, ") overlaps tensor ",
                          quote_name(previous->name), " (ending at byte offset ", 8 + n + cursor,
                          ")"));
    if (t.begin > cursor)
      throw DataError(cat(src, ": ", t.begin - cursor,
                          " bytes of the data buffer belong to no tensor, at byte offsets ",
                          8 + n + cursor, " to ", 8 + n + t.begin));
    cursor = t.end;
    previous = &t;
  }
  if (cursor != data_size)
    throw DataError(cat(src, ": ", data_size - cursor,
                        " bytes at the end of the file belong to no tensor, at byte offsets ",
                        8 + n + cursor, " to ", size, " (the tensors end there)"));
  for (std::size_t i = 0; i < f.tensors_.size(); ++i) f.index_[f.tensors_[i].name] = i;

  const auto format = f.metadata_.find("gradscope.format");
  if (format != f.metadata_.end() && format->second != format_version)
    throw DataError(cat(src, ": gradscope.format is ", quote_name(format->second),
                        "; this version reads format ", format_version));
  const auto checksum = f.metadata_.find("gradscope.checksum");
  if (options.verify_checksum) {
    if (checksum == f.metadata_.end() && format != f.metadata_.end())
      throw DataError(cat(src, ": the header declares gradscope.format but has no ",
                          "gradscope.checksum (", header_range, " is corrupted)"));
    if (checksum != f.metadata_.end()) {
      const std::string& want = checksum->second;
      if (want.size() != 16 || want.find_first_not_of("0123456789abcdef") != std::string::npos)
        throw DataError(cat(src, ": gradscope.checksum ", quote_name(want), " in ", header_range,
                            " is not 16 lowercase hex digits"));
      detail::Fnv1a64 h;
      detail::hash_header(h, f.tensors_, f.metadata_);
      h.update(bytes.data() + 8 + n, static_cast<std::size_t>(data_size));
      const std::string got = detail::hex16(h.value());
      if (got != want)
        throw DataError(cat(src, ": checksum mismatch: the header says ", want,
                            " but the header entries and data (byte offsets 8 to ", size,
                            ") hash to ", got, " (the file is corrupted)"));
      f.checksum_verified_ = true;
    }
  }
  f.header_length_ = n;
  f.bytes_ = std::move(bytes);
  return f;
}
#endif

/// A copy of `bytes` parsed as by parse_safetensors(std::vector<std::byte>, ...).
GRADSCOPE_COMPILED_API SafetensorsFile parse_safetensors(std::span<const std::byte> bytes,
                                                         std::string source = "in-memory file",
                                                         const ReadOptions& options = {})
#if GRADSCOPE_IO_DECLARE_ONLY
    ;
#else
{
  return parse_safetensors(std::vector<std::byte>(bytes.begin(), bytes.end()), std::move(source),
                           options);
}
#endif

/// Reads and validates a safetensors file (see parse_safetensors for what is checked). DataError
/// when it cannot be opened or read.
GRADSCOPE_COMPILED_API SafetensorsFile read_safetensors(const std::filesystem::path& path,
                                                        const ReadOptions& options = {})
#if GRADSCOPE_IO_DECLARE_ONLY
    ;
#else
{
  using detail::cat;
  const std::string name = cat("file '", path.string(), "'");
  // A FIFO, directory or device is refused before anything can block on it.
  struct stat st {};
  detail::Fd fd(gradscope::detail::open_regular_file(path.string(), name, &st));
  std::vector<std::byte> bytes(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t r = ::read(fd.get(), bytes.data() + got, bytes.size() - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw DataError(
          cat("cannot read ", name, " at byte offset ", got, ": ", detail::errno_text(errno)));
    }
    if (r == 0)
      throw DataError(cat("cannot read ", name, ": it shrank to ", got, " bytes while reading"));
    got += static_cast<std::size_t>(r);
  }
  return parse_safetensors(std::move(bytes), name, options);
}
#endif

/// The safetensors bytes of `tensors` (in that data order) with `metadata`, as save_safetensors
/// would write them.
template <Scalar T>
std::vector<std::byte> encode_safetensors(const std::vector<NamedTensor<T>>& tensors,
                                          const Metadata& metadata = {}) {
  for (const auto& [key, value] : metadata)
    if (key.starts_with(reserved_prefix))
      throw UsageError(detail::cat("safetensors: metadata key ", detail::quote_name(key),
                                   " uses the reserved prefix 'gradscope.'"));
  return detail::encode(detail::plan_tensors(tensors, metadata));
}

/// Writes `tensors` (names unique, non-empty) and string `metadata` (keys must not start with
/// "gradscope.") as a safetensors file, crash-safely: a temporary file in the same directory is
/// written, fsynced and renamed over `path`. DataError on I/O failure, with `path` unchanged.
template <Scalar T>
void save_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor<T>>& tensors,
                      const Metadata& metadata = {}, const SaveOptions& options = {}) {
  for (const auto& [key, value] : metadata)
    if (key.starts_with(reserved_prefix))
      throw UsageError(detail::cat("save_safetensors: metadata key ", detail::quote_name(key),
                                   " uses the reserved prefix 'gradscope.'"));
  detail::write_atomically(path, detail::plan_tensors(tensors, metadata), options);
}

}  // namespace gradscope::io
