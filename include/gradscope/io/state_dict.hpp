#pragma once
/// State dicts: a model's parameters and buffers as a name -> tensor map, and loading such a map
/// (weights built in memory, or converted from another framework) with the checks of the
/// checkpoint loader.

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint.hpp"

namespace gradscope::io {

/// Name -> tensor, as state_dict returns it and load_state_dict takes it.
template <Scalar T>
using StateDict = std::map<std::string, Tensor<T>>;

namespace detail {

/// An in-memory state dict as a source of tensors for stage().
template <Scalar S>
class StateDictSource {
 public:
  struct Entry {
    std::string_view dtype;
    std::vector<std::uint64_t> shape;
    const Tensor<S>* tensor;
  };
  static constexpr const char* noun = "state dict";

  explicit StateDictSource(const StateDict<S>& state) {
    for (const auto& [name, tensor] : state) {
      if (!tensor.defined())
        throw UsageError(cat("load_state_dict: tensor ", quote_name(name), " is undefined"));
      entries_.emplace(name, Entry{dtype_of<S>(), dims_of(tensor), &tensor});
    }
  }
  const std::string& label() const noexcept { return label_; }
  const Entry* find(std::string_view name) const {
    const auto it = entries_.find(std::string(name));
    return it == entries_.end() ? nullptr : &it->second;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : entries_) out.push_back(e.first);
    return out;
  }
  /// Copies `e` into `out`; returns the index of the first value that overflows T, or the size.
  template <Scalar T>
  std::size_t decode(const Entry& e, T* out) const {
    const auto v = e.tensor->value();
    const auto n = static_cast<std::size_t>(v.size());
    for (std::size_t i = 0; i < n; ++i)
      if (!narrow_into(v.data()[i], out + i)) return i;
    return n;
  }

 private:
  std::string label_ = "load_state_dict";
  std::map<std::string, Entry> entries_;
};

}  // namespace detail

/// The parameters and buffers of `model` by their hierarchical names ("0.weight",
/// "1.running_mean"), as PyTorch's state_dict(): the tensors share the model's storage (detach()
/// one to keep a copy).
template <Scalar T>
StateDict<T> state_dict(const nn::Module<T>& model) {
  StateDict<T> out;
  for (auto& p : model.named_parameters()) out.emplace(std::move(p.name), std::move(p.tensor));
  for (auto& b : model.named_buffers()) out.emplace(std::move(b.name), std::move(b.tensor));
  return out;
}

/// Loads `state` into the parameters and buffers of `model`, all or nothing, with the checks of
/// load_checkpoint: every parameter and buffer must be in `state` (DataError listing the missing
/// names), names in `state` that the model lacks are a DataError unless `options.strict` is
/// false, each shape must match (ShapeError naming the tensor and both shapes), and a state dict
/// of the other scalar type is converted only with `options.convert_dtype` (DataError
/// otherwise, and for a value beyond the model's range). Non-finite values are loaded as they
/// are, as load_checkpoint does. On any error the model is unchanged. The values are copied.
template <Scalar T, Scalar S>
void load_state_dict(nn::Module<T>& model, const StateDict<S>& state,
                     const LoadOptions& options = {}) {
  const auto targets = checkpoint_tensors(model);
  const detail::StateDictSource<S> source(state);
  const auto staged =
      detail::stage(source, targets, targets.size(), options.strict, {}, options.convert_dtype);
  detail::commit(targets, staged);
}

}  // namespace gradscope::io
