#pragma once
/// Thread-local switches: gradient recording, anomaly detection and the label of recorded ops.

namespace gradscope {

namespace detail {
struct ThreadState {
  bool grad_enabled = true;
  bool anomaly = false;
  const char* label = nullptr;
};
inline thread_local ThreadState thread_state;
}  // namespace detail

/// True unless a NoGrad guard is alive on this thread.
inline bool grad_enabled() noexcept { return detail::thread_state.grad_enabled; }
/// True while a DetectAnomaly guard is alive on this thread.
inline bool anomaly_enabled() noexcept { return detail::thread_state.anomaly; }
/// The label attached to ops recorded now (set by layers to their path), or nullptr.
inline const char* current_label() noexcept { return detail::thread_state.label; }

/// RAII guard: ops inside record no backward information (results are constants).
class NoGrad {
 public:
  NoGrad() noexcept : previous_(detail::thread_state.grad_enabled) {
    detail::thread_state.grad_enabled = false;
  }
  ~NoGrad() { detail::thread_state.grad_enabled = previous_; }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool previous_;
};

/// RAII guard: the first op whose forward output or backward gradient holds a NaN or Inf throws
/// NumericalError naming the op, its input shapes, the direction and the label. Off by default;
/// when off it costs one predictable branch per op.
class DetectAnomaly {
 public:
  explicit DetectAnomaly(bool enabled = true) noexcept : previous_(detail::thread_state.anomaly) {
    detail::thread_state.anomaly = enabled;
  }
  ~DetectAnomaly() { detail::thread_state.anomaly = previous_; }
  DetectAnomaly(const DetectAnomaly&) = delete;
  DetectAnomaly& operator=(const DetectAnomaly&) = delete;

 private:
  bool previous_;
};

/// RAII guard: ops recorded inside carry `label` (which must outlive the tape's use of it) in
/// anomaly messages and tape listings. Layers set it to their module path, e.g. "3.dense".
class LabelScope {
 public:
  explicit LabelScope(const char* label) noexcept : previous_(detail::thread_state.label) {
    detail::thread_state.label = label;
  }
  ~LabelScope() { detail::thread_state.label = previous_; }
  LabelScope(const LabelScope&) = delete;
  LabelScope& operator=(const LabelScope&) = delete;

 private:
  const char* previous_;
};

}  // namespace gradscope
