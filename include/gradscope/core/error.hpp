#pragma once
/// The exception family of gradscope: every run-time error derives from gradscope::Error.

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace gradscope {

/// Base of every gradscope exception; the message starts with a stable "[gradscope.<kind>]" id.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// Operands whose shapes do not fit the op; the message names the op and every shape involved.
class ShapeError : public Error {
 public:
  explicit ShapeError(const std::string& message) : Error("[gradscope.shape] " + message) {}
};

/// An argument outside its domain (a label out of range, a negative probability, ...).
class ValueError : public Error {
 public:
  explicit ValueError(const std::string& message) : Error("[gradscope.value] " + message) {}
};

/// A NaN or Inf found by anomaly mode or by a non-finite policy. Anomaly mode also fills the
/// structured fields: the op, the phase ("forward" or "backward") and the label (module path);
/// an optimiser or clip_grad_norm sets op "<Kind>.step" or "clip_grad_norm", phase "update" and
/// the parameter's name as the label.
class NumericalError : public Error {
 public:
  explicit NumericalError(const std::string& message, std::string op = {}, std::string phase = {},
                          std::string label = {})
      : Error("[gradscope.numerical] " + message),
        op_(std::move(op)),
        phase_(std::move(phase)),
        label_(std::move(label)) {}
  /// The op that produced or refused the first non-finite value, or "".
  const std::string& op() const noexcept { return op_; }
  /// "forward", "backward", "update" (an optimiser or clip_grad_norm), or "".
  const std::string& phase() const noexcept { return phase_; }
  /// The label active when the op was recorded, a module's "<path> (<description>)"; for
  /// "update", the parameter's name; or "".
  const std::string& label() const noexcept { return label_; }

 private:
  std::string op_, phase_, label_;
};

/// The API used out of order: a tensor from a reset tape, backward on an unrecorded loss, ...
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& message) : Error("[gradscope.usage] " + message) {}
};

/// Malformed input data or files; the message names the file and the byte offset.
class DataError : public Error {
 public:
  explicit DataError(const std::string& message) : Error("[gradscope.data] " + message) {}
};

namespace detail {
/// Builds a message from streamable parts: cat("op ", name, ": ", shape).
template <class... Parts>
std::string cat(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}
}  // namespace detail

}  // namespace gradscope
