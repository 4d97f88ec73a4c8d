#pragma once
/// Sequential<T>: a run-time chain of modules, and Residual<T>: x + inner(x).

#include <concepts>
#include <memory>
#include <string>
#include <utility>

#include "layers.hpp"
#include "module.hpp"

namespace gradscope::nn {

/// Runs its children in order. Depth is a run-time choice: add layers in a loop.
template <Scalar T>
class Sequential : public Module<T> {
 public:
  Sequential() = default;

  /// Constructs a layer in place: net.add<Dense>(784, 256, init::he_normal). Returns it.
  // The return type is deduced: spelling it Layer<T>& in the declaration crashes clang 14 while
  // it instantiates Sequential<T> (constraint checking of the template template parameter).
  template <template <Scalar> class Layer, class... Args>
  auto& add(Args&&... args) {
    auto m = std::make_shared<Layer<T>>(std::forward<Args>(args)...);
    add(m);
    return *m;
  }
  /// Constructs a module of a concrete type in place: net.add<Dense<float>>(784, 256), or a
  /// module class of one's own that is not a template. Returns it.
  template <class M, class... Args>
  requires std::derived_from<M, Module<T>> M& add(Args&&... args) {
    auto m = std::make_shared<M>(std::forward<Args>(args)...);
    add(m);
    return *m;
  }
  /// Appends an existing module (shared, not copied), named by its position ("0", "1", ...).
  Sequential& add(std::shared_ptr<Module<T>> m);
  /// Appends an existing module under a name of its own: its parameters become
  /// "<name>.weight", ... (PyTorch's add_module). ValueError when the name is empty, contains a
  /// '.' or is already taken (a later unnamed add takes the next position as its name, which
  /// must then be free too).
  Sequential& add(std::string name, std::shared_ptr<Module<T>> m);

  Tensor<T> forward(const Tensor<T>& x) override;
  std::string kind() const override { return "Sequential"; }
  std::string describe() const override;

  std::size_t size() const noexcept { return this->children().size(); }
  /// The i-th child; throws UsageError when out of range.
  Module<T>& at(std::size_t i) const;
  Module<T>& operator[](std::size_t i) const { return at(i); }
};

template <Scalar T>
Sequential<T>& Sequential<T>::add(std::shared_ptr<Module<T>> m) {
  return add(std::to_string(this->children().size()), std::move(m));
}

template <Scalar T>
Sequential<T>& Sequential<T>::add(std::string name, std::shared_ptr<Module<T>> m) {
  this->check_local_name("Sequential::add", name);
  this->register_module(std::move(name), std::move(m));
  return *this;
}

template <Scalar T>
Tensor<T> Sequential<T>::forward(const Tensor<T>& x) {
  Tensor<T> h = x;
  for (const auto& c : this->children()) h = (*c.second)(h);
  return h;
}

template <Scalar T>
std::string Sequential<T>::describe() const {
  return "Sequential(" + std::to_string(size()) + " layers)";
}

template <Scalar T>
Module<T>& Sequential<T>::at(std::size_t i) const {
  if (i >= size())
    throw UsageError(gradscope::detail::cat("Sequential::at(", i, "): only ", size(), " layers"));
  return *this->children()[i].second;
}

/// A residual connection: y = post(inner(x) + shortcut(x)), where shortcut is the identity or
/// an optional projection (when widths differ) and post an optional module after the addition.
template <Scalar T>
class Residual : public Module<T> {
 public:
  explicit Residual(std::shared_ptr<Module<T>> inner, std::shared_ptr<Module<T>> projection = {},
                    std::shared_ptr<Module<T>> post = {});
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string kind() const override { return "Residual"; }
  std::string describe() const override;
  Module<T>& inner() { return *inner_; }

 private:
  std::shared_ptr<Module<T>> inner_, projection_, post_;
};

template <Scalar T>
Residual<T>::Residual(std::shared_ptr<Module<T>> inner, std::shared_ptr<Module<T>> projection,
                      std::shared_ptr<Module<T>> post) {
  inner_ = this->register_module("inner", std::move(inner));
  if (projection) projection_ = this->register_module("projection", std::move(projection));
  if (post) post_ = this->register_module("post", std::move(post));
}

template <Scalar T>
Tensor<T> Residual<T>::forward(const Tensor<T>& x) {
  Tensor<T> f = (*inner_)(x);
  Tensor<T> s = projection_ ? (*projection_)(x) : x;
  if (f.shape() != s.shape())
    throw ShapeError(gradscope::detail::cat(
        "Residual", this->path().empty() ? "" : " '" + this->path() + "'", ": inner output ",
        f.shape(), " differs from the shortcut ", s.shape(),
        projection_ ? "" : " (pass a projection when widths differ)"));
  Tensor<T> y = add(f, s);
  return post_ ? (*post_)(y) : y;
}

template <Scalar T>
std::string Residual<T>::describe() const {
  return std::string("Residual(") + (projection_ ? "projection" : "identity") +
         (post_ ? ", " + post_->describe() : "") + ")";
}

/// The two residual block designs.
enum class ResidualKind {
  post,  ///< He et al. 2015: Dense, BN, ReLU, Dense, BN, add, ReLU
  pre,   ///< He et al. 2016: BN, ReLU, Dense, BN, ReLU, Dense, add (identity after the add)
};

/// Options of residual_block.
struct ResidualOptions {
  ResidualKind kind = ResidualKind::pre;
  bool batch_norm = true;  ///< false drops the BN layers from the block
  init::Initializer init = init::he_normal;
};

/// A residual block of the given width (input and output), as a Residual module. Its Dense
/// layers draw their weights from `rng` (default: this thread's default_rng()), in order.
template <Scalar T>
std::shared_ptr<Module<T>> residual_block(Index width, ResidualOptions opt = {},
                                          Rng* rng = nullptr) {
  if (width <= 0)
    throw ValueError(gradscope::detail::cat("residual_block: width must be > 0, got ", width));
  auto inner = std::make_shared<Sequential<T>>();
  if (opt.kind == ResidualKind::post) {
    inner->template add<Dense>(width, width, opt.init, true, rng);
    if (opt.batch_norm) inner->template add<BatchNorm>(width);
    inner->template add<ReLU>();
    inner->template add<Dense>(width, width, opt.init, true, rng);
    if (opt.batch_norm) inner->template add<BatchNorm>(width);
    return std::make_shared<Residual<T>>(inner, nullptr, std::make_shared<ReLU<T>>());
  }
  if (opt.batch_norm) inner->template add<BatchNorm>(width);
  inner->template add<ReLU>();
  inner->template add<Dense>(width, width, opt.init, true, rng);
  if (opt.batch_norm) inner->template add<BatchNorm>(width);
  inner->template add<ReLU>();
  inner->template add<Dense>(width, width, opt.init, true, rng);
  return std::make_shared<Residual<T>>(inner);
}
/// residual_block with the weights drawn from `rng`.
template <Scalar T>
std::shared_ptr<Module<T>> residual_block(Index width, Rng& rng, ResidualOptions opt = {}) {
  return residual_block<T>(width, std::move(opt), &rng);
}

}  // namespace gradscope::nn
