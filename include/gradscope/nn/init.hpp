#pragma once
/// Weight initialisers: zeros, constant, normal, uniform, Xavier/Glorot, He/Kaiming, LeCun and
/// Nielsen's. Weights are [fan_out, fan_in] (PyTorch's layout for dense layers).

#include <algorithm>
#include <cmath>
#include <string>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../core/tensor.hpp"
#include "../core/types.hpp"
#include "../detail/compiled.hpp"

namespace gradscope::init {

/// The activation that follows a layer, for the gain of variance-preserving initialisation.
enum class Activation { linear, sigmoid, tanh, relu, leaky_relu, elu };

/// The gain that keeps activations' variance through a layer followed by `a` (PyTorch's
/// calculate_gain): linear and sigmoid 1, tanh 5/3, ReLU sqrt(2), LeakyReLU sqrt(2 / (1 + s^2)).
/// ELU has no standard gain; we use 1, the linear gain.
inline double gain(Activation a, double negative_slope = 0.01) {
  switch (a) {
    case Activation::tanh:
      return 5.0 / 3.0;
    case Activation::relu:
      return std::sqrt(2.0);
    case Activation::leaky_relu:
      return std::sqrt(2.0 / (1.0 + negative_slope * negative_slope));
    default:
      return 1.0;
  }
}

/// A weight (and bias) initialisation scheme. Draws go through a gradscope::Rng.
struct Initializer {
  enum class Kind {
    zeros,
    constant,
    normal,
    uniform,
    xavier_uniform,
    xavier_normal,
    he_uniform,
    he_normal,
    lecun_normal,
    nielsen,
    orthogonal,
    identity
  };
  Kind kind = Kind::xavier_uniform;
  double a = 0;  ///< constant value, normal std, or uniform lower bound
  double b = 0;  ///< uniform upper bound
  double gain = 1;

  /// The scheme's name with its parameters, e.g. "he_normal(gain=1.414)".
  std::string name() const;

  /// The standard deviation a weight of a layer with these fans is drawn with.
  double weight_std(Index fan_in, Index fan_out) const {
    const double fi = static_cast<double>(fan_in), fo = static_cast<double>(fan_out);
    switch (kind) {
      case Kind::zeros:
      case Kind::constant:
        return 0;
      case Kind::normal:
        return a;
      case Kind::uniform:
        return (b - a) / std::sqrt(12.0);
      case Kind::xavier_uniform:
      case Kind::xavier_normal:
        return gain * std::sqrt(2.0 / (fi + fo));
      case Kind::he_uniform:
      case Kind::he_normal:
        return gain / std::sqrt(fi);
      case Kind::lecun_normal:
      case Kind::nielsen:
        return 1.0 / std::sqrt(fi);
      case Kind::orthogonal:  // orthonormal rows (or columns) of length gain
        return gain / std::sqrt(std::max(fi, fo));
      case Kind::identity:  // gain on the diagonal of a fo x fi matrix
        return gain * std::sqrt(std::min(fi, fo) / (fi * fo));
    }
    return 0;
  }

  /// Fills a weight matrix [fan_out, fan_in].
  template <class Derived>
  void weight(Eigen::MatrixBase<Derived>& W, Rng& rng) const {
    const Index fan_out = W.rows(), fan_in = W.cols();
    if (fan_in <= 0 || fan_out <= 0)
      throw ValueError("init: a weight needs positive fan-in and fan-out");
    const double sd = weight_std(fan_in, fan_out);
    switch (kind) {
      case Kind::zeros:
        W.setZero();
        return;
      case Kind::constant:
        W.setConstant(static_cast<typename Derived::Scalar>(a));
        return;
      case Kind::uniform:
        fill_uniform(W, a, b, rng);
        return;
      case Kind::xavier_uniform:
      case Kind::he_uniform:
        fill_uniform(W, -std::sqrt(3.0) * sd, std::sqrt(3.0) * sd, rng);
        return;
      case Kind::orthogonal:
        fill_orthogonal(W, gain, rng);
        return;
      case Kind::identity:
        W.setIdentity();
        W *= static_cast<typename Derived::Scalar>(gain);
        return;
      default:
        fill_normal(W, sd, rng);
        return;
    }
  }

  /// Fills a bias vector: N(0, 1) for Nielsen's scheme, the same distribution as the weights
  /// for zeros/constant/normal/uniform, zeros for the fan-based schemes.
  template <class Derived>
  void bias(Eigen::MatrixBase<Derived>& v, Rng& rng) const {
    switch (kind) {
      case Kind::nielsen:
        fill_normal(v, 1.0, rng);
        return;
      case Kind::constant:
        v.setConstant(static_cast<typename Derived::Scalar>(a));
        return;
      case Kind::normal:
        fill_normal(v, a, rng);
        return;
      case Kind::uniform:
        fill_uniform(v, a, b, rng);
        return;
      default:
        v.setZero();
        return;
    }
  }

 private:
  // Saxe et al. 2014, as PyTorch's orthogonal_: the Q of a Gaussian matrix's QR decomposition
  // (orthonormal rows when fan_out <= fan_in, orthonormal columns otherwise), times gain. Q by
  // modified Gram-Schmidt, twice (Giraud et al. 2005: then orthogonal to machine precision), in
  // double, over the longer dimension's vectors of the shorter count: no QR module to include.
  template <class Derived>
  static void fill_orthogonal(Eigen::MatrixBase<Derived>& W, double g, Rng& rng) {
    const bool rows = W.rows() <= W.cols();  // orthonormal rows, else columns
    const Index n = rows ? W.rows() : W.cols(), len = rows ? W.cols() : W.rows();
    Eigen::MatrixXd q(len, n);  // column j: vector j
    for (Index j = 0; j < n; ++j)
      for (Index i = 0; i < len; ++i) q(i, j) = rng.normal(0.0, 1.0);
    for (int pass = 0; pass < 2; ++pass)
      for (Index j = 0; j < n; ++j) {
        for (Index k = 0; k < j; ++k) q.col(j) -= q.col(k).dot(q.col(j)) * q.col(k);
        q.col(j).normalize();
      }
    using S = typename Derived::Scalar;
    for (Index j = 0; j < n; ++j)
      for (Index i = 0; i < len; ++i) (rows ? W(j, i) : W(i, j)) = static_cast<S>(g * q(i, j));
  }
  template <class Derived>
  static void fill_normal(Eigen::MatrixBase<Derived>& m, double sd, Rng& rng) {
    using S = typename Derived::Scalar;
    for (Index i = 0; i < m.rows(); ++i)
      for (Index j = 0; j < m.cols(); ++j) m(i, j) = static_cast<S>(rng.normal(0.0, sd));
  }
  template <class Derived>
  static void fill_uniform(Eigen::MatrixBase<Derived>& m, double lo, double hi, Rng& rng) {
    using S = typename Derived::Scalar;
    for (Index i = 0; i < m.rows(); ++i)
      for (Index j = 0; j < m.cols(); ++j) m(i, j) = static_cast<S>(rng.uniform(lo, hi));
  }
};

#if !GRADSCOPE_NN_DECLARE_ONLY
GRADSCOPE_COMPILED_API std::string Initializer::name() const {
  const char* n[] = {"zeros",          "constant",      "normal",     "uniform",
                     "xavier_uniform", "xavier_normal", "he_uniform", "he_normal",
                     "lecun_normal",   "nielsen",       "orthogonal", "identity"};
  std::string s = n[static_cast<int>(kind)];
  switch (kind) {
    case Kind::constant:
      return s + "(" + std::to_string(a) + ")";
    case Kind::normal:
      return s + "(std=" + std::to_string(a) + ")";
    case Kind::uniform:
      return s + "(" + std::to_string(a) + ", " + std::to_string(b) + ")";
    case Kind::xavier_uniform:
    case Kind::xavier_normal:
    case Kind::he_uniform:
    case Kind::he_normal:
    case Kind::orthogonal:
    case Kind::identity:
      return s + "(gain=" + std::to_string(gain) + ")";
    default:
      return s;
  }
}
#endif

/// All zeros.
inline const Initializer zeros{Initializer::Kind::zeros};
/// Every weight (and bias) equal to v.
inline Initializer constant(double v) { return {Initializer::Kind::constant, v}; }
/// N(0, std^2) for weights and biases.
inline Initializer normal(double stddev) {
  if (!(stddev >= 0)) throw ValueError("init::normal: std must be >= 0");
  return {Initializer::Kind::normal, stddev};
}
/// U(a, b) for weights and biases.
inline Initializer uniform(double a, double b) {
  if (!(a <= b)) throw ValueError("init::uniform: needs a <= b");
  return {Initializer::Kind::uniform, a, b};
}
/// Glorot and Bengio 2010: U(-g sqrt(6 / (fan_in + fan_out)), +...), zero biases.
inline Initializer xavier_uniform_with(double g) {
  return {Initializer::Kind::xavier_uniform, 0, 0, g};
}
/// Glorot and Bengio 2010: N(0, g^2 2 / (fan_in + fan_out)), zero biases.
inline Initializer xavier_normal_with(double g) {
  return {Initializer::Kind::xavier_normal, 0, 0, g};
}
/// He et al. 2015: U(-g sqrt(3 / fan_in), +...), zero biases.
inline Initializer he_uniform_with(double g) { return {Initializer::Kind::he_uniform, 0, 0, g}; }
/// He et al. 2015: N(0, g^2 / fan_in), zero biases.
inline Initializer he_normal_with(double g) { return {Initializer::Kind::he_normal, 0, 0, g}; }

inline const Initializer xavier_uniform = xavier_uniform_with(1.0);
inline const Initializer xavier_normal = xavier_normal_with(1.0);
/// He initialisation for a following ReLU (gain sqrt(2)).
inline const Initializer he_uniform = he_uniform_with(gain(Activation::relu));
inline const Initializer he_normal = he_normal_with(gain(Activation::relu));
/// Saxe et al. 2014: a random orthogonal matrix (orthonormal rows, or columns when the matrix is
/// tall) times `gain`, zero biases. For recurrent matrices: every singular value is `gain`, so
/// the gradient through many steps neither shrinks nor grows from the weights alone.
inline Initializer orthogonal(double gain = 1.0) {
  if (!std::isfinite(gain)) throw ValueError("init::orthogonal: gain must be finite");
  return {Initializer::Kind::orthogonal, 0, 0, gain};
}
/// `gain` times the identity (ones on the diagonal of a non-square matrix), zero biases: the
/// recurrent matrix of Le, Jaitly and Hinton's IRNN (2015), with ReLU units.
inline Initializer identity(double gain = 1.0) {
  if (!std::isfinite(gain)) throw ValueError("init::identity: gain must be finite");
  return {Initializer::Kind::identity, 0, 0, gain};
}

/// LeCun: N(0, 1 / fan_in), zero biases.
inline const Initializer lecun_normal{Initializer::Kind::lecun_normal};
/// Nielsen's network2.py: weights N(0, 1 / fan_in) (std 1 / sqrt(fan_in)), biases N(0, 1). The
/// initialisation behind the classic per-layer gradient table of a deep sigmoid network.
inline const Initializer nielsen{Initializer::Kind::nielsen};

/// Initialises a tensor of one's own (a custom module's parameter) in place with `init`, as a
/// layer draws its weight: a rank-2 tensor is a weight [fan_out, fan_in] (rows, columns), drawn
/// exactly as Dense draws one of that shape. zeros, constant, normal and uniform fill a tensor
/// of any rank; the fan-based schemes need rank 2 (ValueError otherwise, as PyTorch's fan
/// computation) and a non-empty shape. UsageError for an undefined tensor or a tape node.
template <Scalar T>
Tensor<T>& fill(Tensor<T>& t, const Initializer& init, Rng& rng) {
  using gradscope::detail::cat;
  if (!t.defined()) throw UsageError("init::fill: the tensor is undefined");
  const auto what = [&] {
    return cat("init::fill(", init.name(), t.name().empty() ? "" : ", '" + t.name() + "'", ")");
  };
  if (!t.is_persistent())
    throw UsageError(cat(what(), ": needs a persistent tensor (a parameter or data); this one is ",
                         "a tape node"));
  const auto shape = t.shape();
  auto v = t.mutable_value();
  switch (init.kind) {
    case Initializer::Kind::zeros:
    case Initializer::Kind::constant:
    case Initializer::Kind::normal:
    case Initializer::Kind::uniform:
      if (t.size() > 0) init.weight(v, rng);  // elementwise: the fans do not matter
      return t;
    default:
      break;
  }
  if (shape.rank != 2)
    throw ValueError(cat(what(), ": fan-in and fan-out need a rank-2 tensor [fan_out, fan_in]; ",
                         "this one is ", shape, " of rank ", shape.rank));
  if (shape.rows <= 0 || shape.cols <= 0)
    throw ValueError(
        cat(what(), ": a weight needs positive fan-in and fan-out; the shape is ", shape));
  init.weight(v, rng);
  return t;
}
/// init::fill drawing from this thread's default_rng().
template <Scalar T>
Tensor<T>& fill(Tensor<T>& t, const Initializer& init) {
  return fill(t, init, default_rng());
}

/// Looks an initialiser up by name (for command lines): zeros, xavier_uniform, xavier_normal,
/// he_uniform, he_normal, lecun_normal, nielsen, orthogonal, identity. Throws ValueError naming the
/// known names.
GRADSCOPE_COMPILED_API Initializer by_name(const std::string& n)
#if GRADSCOPE_NN_DECLARE_ONLY
    ;
#else
{
  if (n == "zeros") return zeros;
  if (n == "xavier_uniform" || n == "xavier" || n == "glorot") return xavier_uniform;
  if (n == "xavier_normal") return xavier_normal;
  if (n == "he_uniform") return he_uniform;
  if (n == "he_normal" || n == "he" || n == "kaiming") return he_normal;
  if (n == "lecun_normal" || n == "lecun") return lecun_normal;
  if (n == "nielsen") return nielsen;
  if (n == "orthogonal") return orthogonal();
  if (n == "identity") return identity();
  throw ValueError("init: unknown initialiser '" + n +
                   "' (known: zeros, xavier_uniform, xavier_normal, he_uniform, he_normal, "
                   "lecun_normal, nielsen, orthogonal, identity)");
}
#endif

}  // namespace gradscope::init
