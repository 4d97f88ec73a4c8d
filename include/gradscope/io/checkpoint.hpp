#pragma once
/// Checkpoints: a model's parameters and buffers, an optimiser's state and string metadata in
/// one safetensors file, written crash-safely and loaded all-or-nothing.
///
/// Tensor names: the model's named_parameters() and named_buffers() as they are ("0.weight",
/// "1.running_mean"), and the optimiser's named_state() under "optim." ("optim.step",
/// "optim.0.weight.exp_avg"). A checkpoint of a float model stores F32, of a double model F64.
/// Reserved metadata: "gradscope.format", "gradscope.checksum" and "gradscope.optimizer" (the
/// optimiser's kind, for information); with a RunState, "gradscope.schedule.count" and
/// "gradscope.rng.<name>" (the position of the learning-rate schedule and of random streams).

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/rng.hpp"
#include "../nn/layers.hpp"
#include "../nn/module.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/schedule.hpp"
#include "safetensors.hpp"

namespace gradscope::io {

/// The prefix of the optimiser's state in a checkpoint: "optim.step", "optim.0.weight.exp_avg".
inline constexpr std::string_view optimizer_prefix = "optim.";

/// Options of load_checkpoint and load_safetensors.
struct LoadOptions {
  /// Tensors in the file that nothing is loaded into are an error (true) or ignored (false).
  /// Optimiser state ("optim." tensors) is always ignored when no optimiser is passed.
  bool strict = true;
  /// Verify "gradscope.checksum" when the file has one.
  bool verify_checksum = true;
  /// Convert floating-point tensors of another dtype (F64, F32, F16, BF16; or a state dict of
  /// the other scalar type) to the model's instead of refusing them: a float64 file into a
  /// float model, say. Off by default, since narrowing loses precision silently. A value that
  /// is finite in the source but beyond the target's range (1e300 into float) is a DataError.
  bool convert_dtype = false;
};

namespace detail {

template <Scalar T>
std::vector<std::uint64_t> dims_of(const Tensor<T>& t) {
  const Shape s = t.shape();
  std::vector<std::uint64_t> d;
  if (s.rank >= 2) d.push_back(static_cast<std::uint64_t>(s.rows));
  if (s.rank >= 1) d.push_back(static_cast<std::uint64_t>(s.cols));
  return d;
}

/// Float from IEEE 754 binary16 bits.
inline float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = std::uint32_t{h & 0x8000u} << 16;
  const std::uint32_t exp = (h >> 10) & 0x1f, frac = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: frac * 2^-24, exact in float
    const float v = static_cast<float>(frac) * 0x1p-24f;
    return sign ? -v : v;
  }
  const std::uint32_t bits =
      sign | (exp == 0x1f ? 0x7f800000u | (frac << 13) : ((exp + 112) << 23) | (frac << 13));
  return std::bit_cast<float>(bits);
}

/// True for the dtypes LoadOptions::convert_dtype converts from.
inline bool convertible_dtype(std::string_view dtype) noexcept {
  return dtype == "F64" || dtype == "F32" || dtype == "F16" || dtype == "BF16";
}

/// Narrows (or widens) `v` into `*out`; false when `v` is finite but beyond T's range (then
/// *out is left as it was: the cast itself would be undefined behaviour).
template <Scalar T, class S>
bool narrow_into(S v, T* out) noexcept {
  if constexpr (sizeof(S) > sizeof(T))
    if (std::isfinite(v) && std::abs(v) > static_cast<S>(std::numeric_limits<T>::max()))
      return false;
  *out = static_cast<T>(v);
  return true;
}

/// Decodes `n` little-endian values of `dtype` (a convertible_dtype) at `src` into `out`.
/// Returns the index of the first value that is finite in the source but beyond T's range, or
/// n.
template <Scalar T>
std::size_t convert_le(std::string_view dtype, const std::byte* src, std::size_t n, T* out) {
  const auto each = [&]<std::size_t width>(auto to_value) {
    for (std::size_t i = 0; i < n; ++i) {
      std::uint64_t bits = 0;
      for (std::size_t k = width; k-- > 0;)
        bits = (bits << 8) | std::to_integer<std::uint64_t>(src[i * width + k]);
      if (!narrow_into(to_value(bits), out + i)) return i;
    }
    return n;
  };
  if (dtype == "F64")
    return each.template operator()<8>([](std::uint64_t b) { return std::bit_cast<double>(b); });
  if (dtype == "F32")
    return each.template operator()<4>(
        [](std::uint64_t b) { return std::bit_cast<float>(static_cast<std::uint32_t>(b)); });
  if (dtype == "F16")
    return each.template operator()<2>(
        [](std::uint64_t b) { return half_to_float(static_cast<std::uint16_t>(b)); });
  // BF16: the top half of a float.
  return each.template operator()<2>(
      [](std::uint64_t b) { return std::bit_cast<float>(static_cast<std::uint32_t>(b << 16)); });
}

/// A safetensors file as a source of tensors for stage().
struct FileSource {
  const SafetensorsFile& file;
  const std::string& label() const noexcept { return file.source(); }
  static constexpr const char* noun = "file";
  const TensorEntry* find(std::string_view name) const { return file.find(name); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : file.tensors()) out.push_back(e.name);
    return out;
  }
  /// Decodes `e` into `out`; returns the index of the first value that overflows T, or the size.
  template <Scalar T>
  std::size_t decode(const TensorEntry& e, T* out) const {
    if (e.dtype == dtype_of<T>()) {
      file.read_into(e, out);
      return static_cast<std::size_t>(e.byte_size() / sizeof(T));
    }
    const std::size_t n = static_cast<std::size_t>(e.byte_size() / dtype_size(e.dtype));
    return convert_le<T>(e.dtype, file.data(e).data(), n, out);
  }
};

/// Decodes every target's tensor from `source` after checking names, dtypes and shapes; changes
/// nothing. targets[0, owned_by_model) belong to the model, the rest to the optimiser (for the
/// messages). Extra tensors starting with `ignore_prefix` (when not empty) are never an error.
/// A tensor of another dtype is converted when `convert` (and is a DataError otherwise).
/// `source`: FileSource or StateDictSource (label(), noun, find(), names(), decode()).
template <Scalar T, class Source>
std::vector<Matrix<T>> stage(const Source& source, const std::vector<NamedTensor<T>>& targets,
                             std::size_t owned_by_model, bool strict,
                             std::string_view ignore_prefix, bool convert) {
  const std::string& src = source.label();
  const char* noun = Source::noun;
  std::set<std::string> wanted;
  for (const auto& t : targets) {
    if (!wanted.insert(t.name).second)
      throw UsageError(cat("load: two tensors to load are named ", quote_name(t.name)));
    if (!t.tensor.is_persistent())
      throw UsageError(cat("load: tensor ", quote_name(t.name), " is not persistent storage"));
  }
  std::vector<Matrix<T>> staged(targets.size());
  std::vector<std::string> missing;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const auto& target = targets[i];
    const char* owner = i < owned_by_model ? "model" : "optimizer";
    const auto* e = source.find(target.name);
    if (!e) {
      missing.push_back(target.name);
      continue;
    }
    if (e->dtype != dtype_of<T>() && !(convert && convertible_dtype(e->dtype)))
      throw DataError(cat(src, ": tensor ", quote_name(target.name), ": ", noun, " has dtype ",
                          e->dtype, ", ", owner, " has ", dtype_of<T>(),
                          convertible_dtype(e->dtype)
                              ? cat(" (LoadOptions::convert_dtype = true converts ", e->dtype,
                                    " to ", dtype_of<T>(), ")")
                              : std::string(" (only floating-point tensors can be loaded: F64, "
                                            "F32, F16, BF16)")));
    const auto want = dims_of(target.tensor);
    if (e->shape != want) {
      TensorEntry w, have;
      w.shape = want;
      have.shape = e->shape;
      throw ShapeError(cat(src, ": tensor ", quote_name(target.name), ": ", noun, " has shape ",
                           have.shape_str(), ", ", owner, " has ", w.shape_str()));
    }
    staged[i].resize(target.tensor.rows(), target.tensor.cols());
    const auto count = static_cast<std::size_t>(staged[i].size());
    if (const std::size_t bad = source.decode(*e, staged[i].data()); bad < count)
      throw DataError(cat(src, ": tensor ", quote_name(target.name), ": element ", bad, " (row ",
                          static_cast<Index>(bad) / staged[i].cols(), ", column ",
                          static_cast<Index>(bad) % staged[i].cols(), ") is beyond the range of ",
                          dtype_of<T>(), " (converting from ", e->dtype, ")"));
  }
  if (!missing.empty()) {
    bool optimizer_only = true;
    for (const auto& m : missing) optimizer_only &= m.starts_with(optimizer_prefix);
    bool source_has_optimizer = false;
    const auto names = source.names();
    for (const auto& n : names) source_has_optimizer |= n.starts_with(optimizer_prefix);
    throw DataError(cat(src, ": missing ", missing.size(), " tensor",
                        missing.size() == 1 ? "" : "s", " to load: ", name_list(missing),
                        optimizer_only && !source_has_optimizer
                            ? " (the checkpoint holds no optimizer state; load it without one)"
                            : ""));
  }
  if (strict) {
    std::vector<std::string> extra;
    for (const auto& n : source.names())
      if (!wanted.contains(n) && (ignore_prefix.empty() || !n.starts_with(ignore_prefix)))
        extra.push_back(n);
    if (!extra.empty())
      throw DataError(cat(src, ": ", extra.size(), " tensor", extra.size() == 1 ? "" : "s",
                          " in the ", noun, " ", extra.size() == 1 ? "has" : "have",
                          " nothing to load into: ", name_list(extra),
                          " (LoadOptions::strict = false ignores them)"));
  }
  return staged;
}

/// Writes staged values into the targets. Cannot fail: shapes were checked by stage().
template <Scalar T>
void commit(const std::vector<NamedTensor<T>>& targets, const std::vector<Matrix<T>>& staged) {
  for (std::size_t i = 0; i < targets.size(); ++i) {
    Tensor<T> t = targets[i].tensor;
    t.mutable_value() = staged[i];
  }
}

inline void check_user_metadata(const Metadata& metadata, const char* fn) {
  for (const auto& [key, value] : metadata)
    if (key.starts_with(reserved_prefix))
      throw UsageError(
          cat(fn, ": metadata key ", quote_name(key), " uses the reserved prefix 'gradscope.'"));
}

}  // namespace detail

/// What a checkpoint stores, in file order: the model's parameters, its buffers, then (when an
/// optimiser is given) its named_state() under "optim.". The tensors share the model's storage.
template <Scalar T>
std::vector<NamedTensor<T>> checkpoint_tensors(
    const nn::Module<T>& model, std::type_identity_t<optim::Optimizer<T>>* optimizer = nullptr) {
  std::vector<NamedTensor<T>> out = model.named_parameters();
  for (auto& b : model.named_buffers()) out.push_back(std::move(b));
  if (optimizer)
    for (auto& s : optimizer->named_state())
      out.push_back({std::string(optimizer_prefix) + s.name, std::move(s.tensor)});
  return out;
}

namespace detail {
template <Scalar T>
Plan plan_checkpoint(const nn::Module<T>& model, optim::Optimizer<T>* optimizer,
                     const Metadata& metadata) {
  Metadata meta = metadata;
  if (optimizer) meta["gradscope.optimizer"] = optimizer->kind();
  return plan_tensors(checkpoint_tensors(model, optimizer), std::move(meta));
}
}  // namespace detail

/// Saves `model` (parameters and buffers), the state of `optimizer` (optional) and `metadata`
/// (string keys, not starting with "gradscope.") to `path` as safetensors. The file is written
/// to a temporary file in the same directory, fsynced and renamed over `path`: a crash never
/// leaves a partial checkpoint. DataError on I/O failure, with `path` unchanged. The optimiser
/// is non-const because reading its state (named_state()) is.
template <Scalar T>
void save_checkpoint(const std::filesystem::path& path, const nn::Module<T>& model,
                     std::type_identity_t<optim::Optimizer<T>>* optimizer = nullptr,
                     const Metadata& metadata = {}, const SaveOptions& options = {}) {
  detail::check_user_metadata(metadata, "save_checkpoint");
  detail::write_atomically(path, detail::plan_checkpoint(model, optimizer, metadata), options);
}

/// The bytes save_checkpoint would write (for tests, fuzzing and in-memory transfer).
template <Scalar T>
std::vector<std::byte> encode_checkpoint(
    const nn::Module<T>& model, std::type_identity_t<optim::Optimizer<T>>* optimizer = nullptr,
    const Metadata& metadata = {}) {
  detail::check_user_metadata(metadata, "encode_checkpoint");
  return detail::encode(detail::plan_checkpoint(model, optimizer, metadata));
}

/// Loads a checkpoint already read (read_safetensors / parse_safetensors) into `model` and,
/// when given, `optimizer`. Every tensor's name, dtype and shape is checked first; on any error
/// nothing is changed. Throws DataError for a missing tensor (all are listed), a dtype other than
/// the model's, extra tensors (strict mode) and a bad "optim.step"; ShapeError for a shape
/// mismatch ("tensor '3.weight': file has shape [256, 784], model has [128, 784]"). Returns the
/// user metadata (the keys not starting with "gradscope.").
template <Scalar T>
Metadata load_checkpoint(const SafetensorsFile& file, nn::Module<T>& model,
                         std::type_identity_t<optim::Optimizer<T>>* optimizer = nullptr,
                         const LoadOptions& options = {}) {
  const std::size_t model_count = model.named_parameters().size() + model.named_buffers().size();
  const auto targets = checkpoint_tensors(model, optimizer);
  const auto staged =
      detail::stage(detail::FileSource{file}, targets, model_count, options.strict,
                    optimizer ? std::string_view() : optimizer_prefix, options.convert_dtype);
  if (optimizer) {
    const std::string step_name = std::string(optimizer_prefix) + "step";
    for (std::size_t i = model_count; i < targets.size(); ++i) {
      if (targets[i].name != step_name) continue;
      const double step = static_cast<double>(staged[i](0, 0));
      if (!(std::isfinite(step) && step >= 0 && step <= 9.0e15 && std::floor(step) == step))
        throw DataError(detail::cat(file.source(), ": tensor '", step_name, "' holds ", step,
                                    ", not a step count (a non-negative integer)"));
    }
  }
  detail::commit(targets, staged);
  if (optimizer) optimizer->state_loaded();
  Metadata user;
  for (const auto& [key, value] : file.metadata())
    if (!key.starts_with(reserved_prefix)) user.emplace(key, value);
  return user;
}

/// Reads the checkpoint at `path` and loads it as load_checkpoint(const SafetensorsFile&, ...)
/// does. DataError, naming the file and byte offset, when the file is unreadable, truncated or
/// corrupted; the model and optimiser are then untouched.
template <Scalar T>
Metadata load_checkpoint(const std::filesystem::path& path, nn::Module<T>& model,
                         std::type_identity_t<optim::Optimizer<T>>* optimizer = nullptr,
                         const LoadOptions& options = {}) {
  const SafetensorsFile file = read_safetensors(path, ReadOptions{options.verify_checksum});
  return load_checkpoint(file, model, optimizer, options);
}

/// Loads tensors of `file` into `targets` by name, all or nothing, with the checks of
/// load_checkpoint (every target must be in the file; extra file tensors are an error when
/// strict).
template <Scalar T>
void load_safetensors(const SafetensorsFile& file, const std::vector<NamedTensor<T>>& targets,
                      const LoadOptions& options = {}) {
  const auto staged = detail::stage(detail::FileSource{file}, targets, targets.size(),
                                    options.strict, {}, options.convert_dtype);
  detail::commit(targets, staged);
}

/// Reads `path` and loads it into `targets` as load_safetensors(const SafetensorsFile&, ...).
template <Scalar T>
void load_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor<T>>& targets,
                      const LoadOptions& options = {}) {
  load_safetensors(read_safetensors(path, ReadOptions{options.verify_checksum}), targets, options);
}

// ---- run state: what a resumed run needs besides tensors --------------------------------------

/// What a checkpoint can carry besides tensors so that a resumed run continues bit for bit as an
/// uninterrupted one: the learning-rate schedule's position and random streams. The model's
/// Dropout layers' streams are always included (found in the model, keyed by module path); other
/// streams (data augmentation, your own noise) are passed by name. A DataLoader's shuffling is
/// not a stream of its own: DataLoader::set_epoch(epoch) restores it from the epoch count.
template <Scalar T>
struct RunState {
  optim::LrScheduler<T>* scheduler = nullptr;        ///< its count(): "gradscope.schedule.count"
  std::vector<std::pair<std::string, Rng*>> rngs{};  ///< named streams: "gradscope.rng.<name>"
};

/// The integer value of metadata `key`, checked: DataError naming the key and `source` (the
/// file) when the key is missing, when its value is not a plain decimal integer, or when it lies
/// outside [lo, hi].
inline std::int64_t metadata_integer(const Metadata& metadata, const std::string& key,
                                     const std::string& source, std::int64_t lo, std::int64_t hi) {
  using detail::cat;
  const auto it = metadata.find(key);
  if (it == metadata.end())
    throw DataError(cat(source, ": metadata ", detail::quote_name(key), " is missing"));
  const std::string& v = it->second;
  std::int64_t x = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (v.empty() || ec != std::errc{} || end != v.data() + v.size() || x < lo || x > hi)
    throw DataError(cat(source, ": metadata ", detail::quote_name(key), " is ",
                        detail::quote_name(v), ", not an integer from ", lo, " to ", hi));
  return x;
}

namespace detail {

inline constexpr std::string_view schedule_key = "gradscope.schedule.count";
inline constexpr std::string_view rng_prefix = "gradscope.rng.";
inline constexpr std::string_view rng_algorithm = "xoshiro256**";

/// "xoshiro256** <4 words> [<spare>]": 16 hex digits each; the spare normal as its bits.
inline std::string encode_rng(const Rng::State& s) {
  std::string out(rng_algorithm);
  const auto hex = [&out](std::uint64_t w) {
    char buf[17];
    for (int i = 15; i >= 0; --i, w >>= 4) buf[i] = "0123456789abcdef"[w & 15];
    buf[16] = 0;
    out.append(" ").append(buf);
  };
  for (const auto w : s.words) hex(w);
  if (s.has_spare) hex(std::bit_cast<std::uint64_t>(s.spare));
  return out;
}

inline Rng::State decode_rng(const std::string& text, const std::string& source,
                             const std::string& key) {
  const auto bad = [&](const char* why) {
    return DataError(cat(source, ": metadata ", quote_name(key), " is not a random generator's ",
                         "state (", why, "; expected '", rng_algorithm,
                         "' and 4 or 5 words of 16 hex digits)"));
  };
  if (!text.starts_with(rng_algorithm)) throw bad("another algorithm or no state");
  std::vector<std::uint64_t> words;
  std::size_t pos = rng_algorithm.size();
  while (pos < text.size()) {
    if (text[pos] != ' ' || text.size() - pos - 1 < 16) throw bad("a malformed word");
    std::uint64_t w = 0;
    const char* first = text.data() + pos + 1;
    const auto [end, ec] = std::from_chars(first, first + 16, w, 16);
    if (ec != std::errc{} || end != first + 16) throw bad("a malformed word");
    words.push_back(w);
    pos += 17;
  }
  if (words.size() != 4 && words.size() != 5) throw bad("a wrong number of words");
  Rng::State s;
  for (std::size_t i = 0; i < 4; ++i) s.words[i] = words[i];
  if (s.words == std::array<std::uint64_t, 4>{})
    throw bad("all four words are zero, which xoshiro256** never reaches");
  s.has_spare = words.size() == 5;
  if (s.has_spare) s.spare = std::bit_cast<double>(words[4]);
  if (!std::isfinite(s.spare)) throw bad("a non-finite spare normal");
  return s;
}

/// The run state's streams with their metadata keys: the named ones, then every Dropout layer of
/// the model ("gradscope.rng.model.<path>").
template <Scalar T>
std::vector<std::pair<std::string, Rng*>> run_rngs(const nn::Module<T>& model,
                                                   const RunState<T>& run) {
  std::vector<std::pair<std::string, Rng*>> out;
  for (const auto& [name, rng] : run.rngs) {
    if (name.empty() || !rng) throw UsageError("RunState: a stream needs a name and a generator");
    out.emplace_back(std::string(rng_prefix) + name, rng);
  }
  const auto walk = [&out](const auto& self, const nn::Module<T>& m) -> void {
    for (const auto& [local, child] : m.children()) {
      if (auto* d = dynamic_cast<nn::Dropout<T>*>(child.get()))
        out.emplace_back(std::string(rng_prefix) + "model." + d->path(), &d->rng());
      self(self, *child);
    }
  };
  if (auto* d = dynamic_cast<const nn::Dropout<T>*>(&model))
    out.emplace_back(std::string(rng_prefix) + "model", const_cast<Rng*>(&d->rng()));
  walk(walk, model);
  std::set<std::string> keys;
  for (const auto& [key, rng] : out)
    if (!keys.insert(key).second)
      throw UsageError(cat("RunState: two streams are saved as ", quote_name(key)));
  return out;
}

template <Scalar T>
Metadata with_run_state(const Metadata& metadata, const nn::Module<T>& model,
                        const RunState<T>& run) {
  Metadata meta = metadata;
  if (run.scheduler) meta[std::string(schedule_key)] = std::to_string(run.scheduler->count());
  for (const auto& [key, rng] : run_rngs(model, run)) meta[key] = encode_rng(rng->state());
  return meta;
}

}  // namespace detail

/// save_checkpoint with a run state: also saves the schedule's position and the random streams
/// (reserved metadata "gradscope.schedule.count", "gradscope.rng.<name>"). The streams are read,
/// not advanced.
template <Scalar T>
void save_checkpoint(const std::filesystem::path& path, const nn::Module<T>& model,
                     std::type_identity_t<optim::Optimizer<T>>* optimizer, const Metadata& metadata,
                     const RunState<T>& run, const SaveOptions& options = {}) {
  detail::check_user_metadata(metadata, "save_checkpoint");
  detail::write_atomically(
      path, detail::plan_checkpoint(model, optimizer, detail::with_run_state(metadata, model, run)),
      options);
}

/// encode_checkpoint with a run state (the bytes that save_checkpoint with it would write).
template <Scalar T>
std::vector<std::byte> encode_checkpoint(const nn::Module<T>& model,
                                         std::type_identity_t<optim::Optimizer<T>>* optimizer,
                                         const Metadata& metadata, const RunState<T>& run) {
  detail::check_user_metadata(metadata, "encode_checkpoint");
  return detail::encode(
      detail::plan_checkpoint(model, optimizer, detail::with_run_state(metadata, model, run)));
}

/// load_checkpoint with a run state: also restores the schedule's position (set_count, which
/// sets the optimiser's rate) and every stream. Each must be in the file and well formed
/// (DataError naming the key and the file: a missing key means the checkpoint was saved without
/// that part of the run state); with LoadOptions::strict, run state in the file that nothing is
/// restored into is an error too. Everything is checked before anything changes.
template <Scalar T>
Metadata load_checkpoint(const SafetensorsFile& file, nn::Module<T>& model,
                         std::type_identity_t<optim::Optimizer<T>>* optimizer,
                         const RunState<T>& run, const LoadOptions& options = {}) {
  using detail::cat;
  const Metadata& meta = file.metadata();
  const std::string& src = file.source();
  std::int64_t count = 0;
  if (run.scheduler)
    count =
        metadata_integer(meta, std::string(detail::schedule_key), src, 0, 9'000'000'000'000'000);
  const auto rngs = detail::run_rngs(model, run);
  std::vector<Rng::State> states;
  std::set<std::string> wanted;
  for (const auto& [key, rng] : rngs) {
    const auto it = meta.find(key);
    if (it == meta.end())
      throw DataError(cat(src, ": metadata ", detail::quote_name(key),
                          " is missing (the checkpoint was saved without this random stream)"));
    states.push_back(detail::decode_rng(it->second, src, key));
    wanted.insert(key);
  }
  if (options.strict) {
    std::vector<std::string> extra;
    for (const auto& [key, value] : meta)
      if ((key.starts_with(detail::rng_prefix) && !wanted.contains(key)) ||
          (key == detail::schedule_key && !run.scheduler))
        extra.push_back(key);
    if (!extra.empty())
      throw DataError(cat(
          src, ": run state in the file that nothing is restored into: ", detail::name_list(extra),
          " (pass the scheduler or stream in RunState, or LoadOptions::strict = "
          "false ignores them)"));
  }
  Metadata user = load_checkpoint(file, model, optimizer, options);
  if (run.scheduler) run.scheduler->set_count(count);
  for (std::size_t i = 0; i < rngs.size(); ++i) rngs[i].second->set_state(states[i]);
  return user;
}

/// Reads `path` and loads it with a run state, as the overload above.
template <Scalar T>
Metadata load_checkpoint(const std::filesystem::path& path, nn::Module<T>& model,
                         std::type_identity_t<optim::Optimizer<T>>* optimizer,
                         const RunState<T>& run, const LoadOptions& options = {}) {
  const SafetensorsFile file = read_safetensors(path, ReadOptions{options.verify_checksum});
  return load_checkpoint(file, model, optimizer, run, options);
}

}  // namespace gradscope::io
