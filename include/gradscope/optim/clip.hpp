#pragma once
/// Gradient clipping by value and by global norm, and differentiable L1/L2 penalty terms.

#include <cmath>
#include <limits>
#include <vector>

#include "optimizer.hpp"

namespace gradscope::optim {

/// Clamps every gradient element to [-limit, limit] (limit > 0). NaNs are left in place for
/// the optimiser's non-finite policy to see. Frozen parameters (requires_grad off) are skipped
/// here and in grad_norm and clip_grad_norm, as PyTorch skips parameters without a gradient.
template <Scalar T>
void clip_grad_value(const std::vector<Tensor<T>>& params, std::type_identity_t<T> limit) {
  if (!(limit > 0) || !std::isfinite(static_cast<double>(limit)))
    throw ValueError(gradscope::detail::cat("clip_grad_value: limit must be a positive finite ",
                                            "number, got ", limit));
  for (Tensor<T> p : params) {
    if (!p.requires_grad()) continue;
    auto g = p.mutable_grad();
    for (Index i = 0; i < g.size(); ++i) {
      T& v = g.data()[i];
      if (v > limit) v = limit;
      if (v < -limit) v = -limit;
    }
  }
}

/// The total gradient norm: the p-norm of the per-parameter p-norms (p >= 1, or infinity for
/// the largest magnitude), accumulated in double.
template <Scalar T>
double grad_norm(const std::vector<Tensor<T>>& params, double p = 2) {
  if (!(p >= 1)) throw ValueError(gradscope::detail::cat("grad_norm: p must be >= 1, got ", p));
  const bool inf = std::isinf(p);
  double total = 0;
  for (const auto& t : params) {
    if (!t.requires_grad()) continue;
    const auto g = t.grad();
    if (inf) {
      for (Index i = 0; i < g.size(); ++i)
        total = std::max(total, std::abs(static_cast<double>(g.data()[i])));
      if (!gradscope::detail::all_finite(g)) return std::numeric_limits<double>::quiet_NaN();
    } else if (p == 2) {
      total += g.template cast<double>().squaredNorm();
    } else {
      for (Index i = 0; i < g.size(); ++i)
        total += std::pow(std::abs(static_cast<double>(g.data()[i])), p);
    }
  }
  if (inf) return total;
  return p == 2 ? std::sqrt(total) : std::pow(total, 1.0 / p);
}

/// Scales all gradients by max_norm / total when the total p-norm exceeds max_norm (Pascanu
/// et al. 2013) and returns the pre-clip total norm. A non-finite total is handled by `policy`:
/// error throws NumericalError naming the first parameter with a non-finite gradient; skip and
/// proceed leave the gradients untouched and return the non-finite norm (so the caller, or the
/// optimiser's own policy, decides). Gradients are never scaled by a non-finite factor.
template <Scalar T>
double clip_grad_norm(const std::vector<Tensor<T>>& params, double max_norm, double p = 2,
                      NonFinite policy = NonFinite::error) {
  if (!(max_norm > 0) || !std::isfinite(max_norm))
    throw ValueError(gradscope::detail::cat("clip_grad_norm: max_norm must be a positive finite ",
                                            "number, got ", max_norm));
  const double total = grad_norm(params, p);
  if (!std::isfinite(total)) {
    if (policy == NonFinite::error) {
      for (const auto& t : params)
        if (t.requires_grad() && !gradscope::detail::all_finite(t.grad()))
          throw NumericalError(
              gradscope::detail::cat("clip_grad_norm: non-finite gradient in parameter '",
                                     t.name().empty() ? std::string("(unnamed)") : t.name(),
                                     "' of shape ", t.shape()),
              "clip_grad_norm", "update", t.name().empty() ? std::string("(unnamed)") : t.name());
      throw NumericalError("clip_grad_norm: the total gradient norm overflowed", "clip_grad_norm",
                           "update");
    }
    return total;
  }
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1)
    for (Tensor<T> t : params)
      if (t.requires_grad()) t.mutable_grad() *= static_cast<T>(coef);
  return total;
}

/// Which parameters a penalty covers: by default matrices only (rank 2), so biases and
/// batch-norm parameters are excluded.
struct PenaltyOptions {
  bool include_vectors = false;
};

namespace detail {
template <Scalar T, class F>
Tensor<T> penalty(const std::vector<Tensor<T>>& params, PenaltyOptions opt, F term) {
  Tensor<T> total;
  for (const auto& p : params) {
    if (p.rank() < 2 && !opt.include_vectors) continue;
    Tensor<T> t = term(p);
    total = total.defined() ? add(total, t) : t;
  }
  return total.defined() ? total : Tensor<T>::scalar(T(0));
}
}  // namespace detail

/// sum of |w| over the covered parameters: add lambda * l1_penalty(params) to a loss.
template <Scalar T>
Tensor<T> l1_penalty(const std::vector<Tensor<T>>& params, PenaltyOptions opt = {}) {
  return detail::penalty(params, opt, [](const Tensor<T>& p) { return sum(abs(p)); });
}
/// sum of w^2 over the covered parameters: Nielsen's cost adds lambda / (2 n) * l2_penalty.
template <Scalar T>
Tensor<T> l2_penalty(const std::vector<Tensor<T>>& params, PenaltyOptions opt = {}) {
  return detail::penalty(params, opt, [](const Tensor<T>& p) { return sum(square(p)); });
}

}  // namespace gradscope::optim
