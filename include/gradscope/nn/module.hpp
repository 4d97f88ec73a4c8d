#pragma once
/// Module<T>: the base of every layer. Named parameters, train/eval, children, forward hooks.

#include <algorithm>
#include <functional>
#include <iomanip>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/core.hpp"

namespace gradscope::nn {

/// A parameter (or buffer) with its hierarchical name, e.g. "4.inner.0.weight".
template <Scalar T>
using Named = NamedTensor<T>;

/// The base of every layer: a forward function on a batch [batch, features], parameters and
/// buffers registered under local names, child modules, train/eval mode and forward hooks.
/// Modules are composed at run time (Sequential, Residual) and held by shared_ptr.
template <Scalar T>
class Module {
 public:
  using ForwardHook = std::function<void(Module&, const Tensor<T>& input, const Tensor<T>& output)>;

  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  /// The layer's computation. Call the module instead (operator()), which also runs hooks.
  virtual Tensor<T> forward(const Tensor<T>& x) = 0;
  /// The kind name: "Dense", "ReLU", "BatchNorm", "Sequential", ...
  virtual std::string kind() const = 0;
  /// The kind with its configuration, e.g. "Dense(784 -> 256)".
  virtual std::string describe() const { return kind(); }
  /// Whether the gradient monitor follows this module's output gradient as a link of the
  /// network's gradient-flow chain (its per-sample norm, the depth verdicts). Dense and the
  /// recurrent layers say yes; override it in a module of your own that transforms its input
  /// the way a layer of the chain does.
  virtual bool in_gradient_flow() const { return false; }

  /// Runs forward under the module's label (anomaly messages name it) and calls forward hooks.
  /// A ShapeError from inside forward gets the label of the innermost module it passed
  /// through appended: "... (in module '1 (Dense(3 -> 8))')".
  Tensor<T> operator()(const Tensor<T>& x);

  /// Calls `hook(module, input, output)` after every forward; remove it with the handle.
  HookHandle register_forward_hook(ForwardHook hook);

  /// Every parameter of this module and its descendants, in registration order.
  std::vector<Tensor<T>> parameters() const;
  /// Parameters with hierarchical names ("0.weight", "4.inner.0.bias"), stable across runs.
  std::vector<Named<T>> named_parameters() const;
  /// Non-trainable state with hierarchical names (batch-norm running statistics).
  std::vector<Named<T>> named_buffers() const;
  /// Total number of trainable scalars.
  Index parameter_count() const;
  /// Zeroes every parameter's gradient.
  void zero_grad();
  /// Sets requires_grad on every parameter of this module and its descendants (PyTorch's
  /// requires_grad_): false freezes them (backward gives them no gradient; optimisers and
  /// clipping skip them), true makes them trainable again. See Tensor::set_requires_grad.
  Module& set_requires_grad(bool on);

  /// Direct children with their local names.
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }
  /// Visits this module and every descendant, depth first, parents before children.
  void visit(const std::function<void(Module&)>& f);

  /// Switches this module and its descendants to training (batch statistics, dropout on).
  void train(bool on = true);
  /// Switches to evaluation (running statistics, dropout off).
  void eval() { train(false); }
  bool is_training() const noexcept { return training_; }

  /// The module's path in its tree ("" for the root, "3", "4.inner.0").
  const std::string& path() const noexcept { return path_; }
  /// The label ops recorded by this module carry: "<path> (<describe>)".
  const std::string& label() const;

  /// A table of every module: path, description, output shape and parameter count, like Keras'
  /// model.summary(). Output shapes come from an evaluation-mode forward of a batch of 2 zero
  /// rows of `input_features` (0: shapes are not shown). The module's mode is restored.
  std::string summary(Index input_features = 0);

 protected:
  // Local names (as in PyTorch) are non-empty, hold no '.' (the path separator) and are unique
  // among the module's parameters, buffers and children: ValueError otherwise.
  /// Throws ValueError, naming `what`, when `name` cannot be a new local name here.
  void check_local_name(const char* what, const std::string& name) const;
  /// Registers a trainable parameter under a local name (once, in the constructor).
  Tensor<T> register_parameter(std::string name, Tensor<T> p);
  /// Registers non-trainable state (saved in checkpoints) under a local name.
  Tensor<T> register_buffer(std::string name, Tensor<T> b);
  /// Adopts a child module under a local name and gives it (and its subtree) its path.
  std::shared_ptr<Module> register_module(std::string name, std::shared_ptr<Module> m);

 private:
  /// forward(x), with a ShapeError from inside it labelled (see operator()).
  Tensor<T> labelled_forward(const Tensor<T>& x);
  void set_path(const std::string& p);
  void collect(std::vector<Named<T>>& out, const std::string& prefix, bool params) const;

  std::vector<Named<T>> own_parameters_;
  std::vector<Named<T>> own_buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  std::vector<std::pair<std::uint64_t, ForwardHook>> hooks_;
  std::uint64_t next_hook_id_ = 1;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::string path_;
  mutable std::string label_;
  bool training_ = true;
};

template <Scalar T>
Tensor<T> Module<T>::operator()(const Tensor<T>& x) {
  LabelScope scope(label().c_str());
  Tensor<T> y = labelled_forward(x);
  for (std::size_t k = 0; k < hooks_.size(); ++k) hooks_[k].second(*this, x, y);
  return y;
}

template <Scalar T>
Tensor<T> Module<T>::labelled_forward(const Tensor<T>& x) {
  try {
    return forward(x);
  } catch (const ShapeError& e) {
    // Labelled once, by the innermost module: its containers pass the error on unchanged.
    static constexpr std::string_view marker = " (in module '", id = "[gradscope.shape] ";
    std::string_view what = e.what();
    if (what.find(marker) != std::string_view::npos) throw;
    if (what.substr(0, id.size()) == id) what.remove_prefix(id.size());
    throw ShapeError(std::string(what).append(marker).append(label()).append("')"));
  }
}

template <Scalar T>
HookHandle Module<T>::register_forward_hook(ForwardHook hook) {
  const std::uint64_t id = next_hook_id_++;
  hooks_.emplace_back(id, std::move(hook));
  return HookHandle([this, id, alive = std::weak_ptr<int>(alive_)] {
    if (alive.expired()) return;
    std::erase_if(hooks_, [id](const auto& h) { return h.first == id; });
  });
}

template <Scalar T>
std::vector<Tensor<T>> Module<T>::parameters() const {
  std::vector<Tensor<T>> out;
  for (auto& p : named_parameters()) out.push_back(p.tensor);
  return out;
}

template <Scalar T>
std::vector<Named<T>> Module<T>::named_parameters() const {
  std::vector<Named<T>> out;
  collect(out, "", true);
  return out;
}

template <Scalar T>
std::vector<Named<T>> Module<T>::named_buffers() const {
  std::vector<Named<T>> out;
  collect(out, "", false);
  return out;
}

template <Scalar T>
Index Module<T>::parameter_count() const {
  Index n = 0;
  for (const auto& p : named_parameters()) n += p.tensor.size();
  return n;
}

template <Scalar T>
void Module<T>::zero_grad() {
  for (auto& p : parameters()) p.zero_grad();
}

template <Scalar T>
Module<T>& Module<T>::set_requires_grad(bool on) {
  for (auto& p : parameters()) p.set_requires_grad(on);
  return *this;
}

template <Scalar T>
void Module<T>::visit(const std::function<void(Module&)>& f) {
  f(*this);
  for (auto& c : children_) c.second->visit(f);
}

template <Scalar T>
void Module<T>::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

template <Scalar T>
const std::string& Module<T>::label() const {
  if (label_.empty()) label_ = path_.empty() ? describe() : path_ + " (" + describe() + ")";
  return label_;
}

template <Scalar T>
std::string Module<T>::summary(Index input_features) {
  if (input_features < 0)
    throw ValueError(gradscope::detail::cat(
        "summary: input_features must be >= 0 (0: no shapes), got ", input_features));
  std::vector<std::pair<Module*, std::string>> shapes;
  if (input_features > 0) {
    // Restores every module's own mode and removes the hooks even when the forward throws.
    struct Restore {
      std::vector<std::pair<Module*, bool>> modes;
      std::vector<HookHandle> handles;
      ~Restore() {
        for (auto& h : handles) h.remove();
        for (auto& [m, on] : modes) m->training_ = on;
      }
    } restore;
    visit([&](Module& m) { restore.modes.emplace_back(&m, m.training_); });
    eval();
    visit([&](Module& m) {
      restore.handles.push_back(
          m.register_forward_hook([&shapes](Module& mm, const Tensor<T>&, const Tensor<T>& y) {
            shapes.emplace_back(&mm, "[-, " + std::to_string(y.cols()) + "]");
          }));
    });
    NoGrad no_grad;
    (*this)(Tensor<T>::zeros(2, input_features));
  }
  std::ostringstream os;
  os << std::left << std::setw(22) << "Layer" << std::setw(34) << "Kind" << std::setw(14)
     << "Output" << std::right << std::setw(12) << "Params" << '\n'
     << std::string(82, '-') << '\n';
  visit([&](Module& m) {
    if (&m == this && !children_.empty()) return;  // the root container is the total line
    std::string shape = "";
    for (auto& s : shapes)
      if (s.first == &m) shape = s.second;
    Index own = 0;
    for (auto& p : m.own_parameters_) own += p.tensor.size();
    const int depth = static_cast<int>(std::count(m.path_.begin(), m.path_.end(), '.'));
    os << std::left << std::setw(22)
       << (std::string(static_cast<std::size_t>(depth) * 2, ' ') +
           (m.path_.empty() ? "(root)" : m.path_))
       << std::setw(34) << m.describe() << std::setw(14) << shape << std::right << std::setw(12)
       << own << '\n';
  });
  os << std::string(82, '-') << '\n' << "Total parameters: " << parameter_count() << '\n';
  return os.str();
}

template <Scalar T>
void Module<T>::check_local_name(const char* what, const std::string& name) const {
  const auto fail = [&](const char* why) {
    throw ValueError(gradscope::detail::cat(what, "('", name, "')", path_.empty() ? "" : " in '",
                                            path_, path_.empty() ? "" : "'", ": ", why));
  };
  if (name.empty()) fail("a name must not be empty");
  if (name.find('.') != std::string::npos)
    fail("a name must not contain '.' (it separates the parts of a path)");
  const auto taken = [&](const auto& list) {
    return std::any_of(list.begin(), list.end(), [&](const auto& e) {
      if constexpr (requires { e.first; })
        return e.first == name;
      else
        return e.name == name;
    });
  };
  if (taken(own_parameters_)) fail("a parameter of this module already has that name");
  if (taken(own_buffers_)) fail("a buffer of this module already has that name");
  if (taken(children_)) fail("a child module already has that name");
}

template <Scalar T>
Tensor<T> Module<T>::register_parameter(std::string name, Tensor<T> p) {
  check_local_name("register_parameter", name);
  if (!p.is_persistent() || !p.requires_grad())
    throw UsageError("register_parameter('" + name + "'): needs a parameter tensor");
  p.set_name(path_.empty() ? name : path_ + "." + name);
  own_parameters_.push_back({std::move(name), std::move(p)});
  return own_parameters_.back().tensor;
}

template <Scalar T>
Tensor<T> Module<T>::register_buffer(std::string name, Tensor<T> b) {
  check_local_name("register_buffer", name);
  b.set_name(path_.empty() ? name : path_ + "." + name);
  own_buffers_.push_back({std::move(name), std::move(b)});
  return own_buffers_.back().tensor;
}

template <Scalar T>
std::shared_ptr<Module<T>> Module<T>::register_module(std::string name, std::shared_ptr<Module> m) {
  check_local_name("register_module", name);
  if (!m) throw UsageError("register_module('" + name + "'): null module");
  bool cycle = false;
  m->visit([&](Module& d) { cycle |= &d == this; });
  if (cycle)
    throw UsageError("register_module('" + name +
                     "'): the module is this one or contains it (a module tree has no cycles)");
  m->set_path(path_.empty() ? name : path_ + "." + name);
  m->train(training_);
  children_.emplace_back(std::move(name), m);
  return m;
}

template <Scalar T>
void Module<T>::set_path(const std::string& p) {
  path_ = p;
  label_.clear();
  for (auto* list : {&own_parameters_, &own_buffers_})
    for (auto& t : *list) t.tensor.set_name(path_.empty() ? t.name : path_ + "." + t.name);
  for (auto& c : children_) c.second->set_path(path_.empty() ? c.first : path_ + "." + c.first);
}

template <Scalar T>
void Module<T>::collect(std::vector<Named<T>>& out, const std::string& prefix, bool params) const {
  for (const auto& p : params ? own_parameters_ : own_buffers_)
    out.push_back({prefix + p.name, p.tensor});
  for (const auto& c : children_) c.second->collect(out, prefix + c.first + ".", params);
}

}  // namespace gradscope::nn
