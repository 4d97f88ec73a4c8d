#pragma once
// Hand-written Eigen twins of the networks of bench/mlp_train.bench.cpp: the speed limit the
// library is measured against (DESIGN.md, Performance policy).
//
// Each twin computes exactly what gradscope computes for the same network (same parameters in
// the same order, the same initial values drawn from the same Rng stream, softmax
// cross-entropy averaged over the batch, PyTorch's BatchNorm, plain SGD p -= lr * grad), written
// the way one would by hand:
//   - every buffer (activations, deltas, gradients) is allocated once, for a fixed batch size;
//   - bias and activation are fused into one pass after each GEMM, and the activation
//     derivative and the bias gradient into one pass before the backward GEMMs;
//   - softmax, cross-entropy and its gradient are one pass over the logits;
//   - gradients are assigned (=), not accumulated, so no zero_grad is needed;
//   - every product is one Eigen GEMM with .noalias().
// tests/bench_reference/reference.test.cpp checks the gradients by central finite differences in
// double precision and one SGD step against gradscope's.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <gradscope/core/rng.hpp>
#include <gradscope/nn/init.hpp>

namespace gradscope_bench::reference {

using Index = Eigen::Index;
/// Row-major like gradscope: rows are the batch.
template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Hidden-layer activation of an MLP twin.
enum class Activation { sigmoid, relu };

/// A trainable tensor of a twin and its gradient buffer.
template <class T>
struct Param {
  Mat<T>* value;
  Mat<T>* grad;
};

namespace detail {

/// out = column sums of M (rows are the batch), vectorised along the rows.
template <class T>
void column_sums(const Mat<T>& M, Mat<T>& out) {
  out.setZero();
  for (Index i = 0; i < M.rows(); ++i) out.row(0) += M.row(i);
}

/// Softmax cross-entropy of each row of `logits` against `labels`, averaged over the batch, in
/// one pass: returns the loss, writes dloss/dlogits into `delta` and its column sums into `db`.
template <class T>
T softmax_cross_entropy(const Mat<T>& logits, std::span<const int> labels, Mat<T>& delta,
                        Mat<T>& db) {
  const Index n = logits.rows();
  const T inv_n = T(1) / static_cast<T>(n);
  double total = 0;
  db.setZero();
  for (Index i = 0; i < n; ++i) {
    const int label = labels[static_cast<std::size_t>(i)];
    const T m = logits.row(i).maxCoeff();
    delta.row(i).array() = (logits.row(i).array() - m).exp();
    const T z = delta.row(i).sum();
    total += static_cast<double>(m + std::log(z) - logits(i, label));
    delta.row(i) *= inv_n / z;
    delta(i, label) -= inv_n;
    db.row(0) += delta.row(i);
  }
  return static_cast<T>(total / static_cast<double>(n));
}

/// Floating-point operations of one training step of a chain of dense layers of the given widths
/// (2 M N K per GEMM: one forward, two backward, no input gradient for the first layer).
inline double dense_step_flops(const std::vector<Index>& widths_in,
                               const std::vector<Index>& widths_out, Index batch) {
  double f = 0;
  for (std::size_t l = 0; l < widths_in.size(); ++l) {
    const double gemm = 2.0 * static_cast<double>(batch) * static_cast<double>(widths_in[l]) *
                        static_cast<double>(widths_out[l]);
    f += (l == 0 ? 2.0 : 3.0) * gemm;
  }
  return f;
}

}  // namespace detail

/// A multilayer perceptron: Dense(sizes[0] -> sizes[1]), [BatchNorm], activation, ...,
/// Dense(-> sizes.back()) giving the logits. Nets A, B, C and D of the benchmark.
template <class T>
class MlpReference {
 public:
  /// Draws the weights with `init` from `rng` in gradscope's order (per Dense: weight, then
  /// bias), so a gradscope Sequential built with the same Rng state holds the same values.
  /// BatchNorm (batch_norm = true) follows every hidden Dense, before the activation.
  MlpReference(std::vector<Index> sizes, Activation act, bool batch_norm, Index batch,
               const gradscope::init::Initializer& init, gradscope::Rng& rng,
               T bn_momentum = T(0.1), T bn_eps = T(1e-5))
      : sizes_(std::move(sizes)),
        act_(act),
        bn_(batch_norm),
        batch_(batch),
        momentum_(bn_momentum),
        eps_(bn_eps) {
    // (the parameter list points into the member vectors: the object is neither copied nor moved)
    if (sizes_.size() < 2) throw std::invalid_argument("MlpReference: needs at least 2 sizes");
    const std::size_t L = sizes_.size() - 1;
    W_.resize(L), b_.resize(L), dW_.resize(L), db_.resize(L), A_.resize(L), D_.resize(L);
    for (std::size_t l = 0; l < L; ++l) {
      const Index in = sizes_[l], out = sizes_[l + 1];
      W_[l].resize(out, in);
      b_[l].resize(1, out);
      init.weight(W_[l], rng);
      init.bias(b_[l], rng);
      dW_[l].setZero(out, in);
      db_[l].setZero(1, out);
      A_[l].setZero(batch, out);
      D_[l].setZero(batch, out);
    }
    if (bn_) {
      const std::size_t H = L - 1;
      gamma_.resize(H), beta_.resize(H), dgamma_.resize(H), dbeta_.resize(H);
      running_mean_.resize(H), running_var_.resize(H), xhat_.resize(H), invstd_.resize(H);
      mean_.resize(H), var_.resize(H);
      for (std::size_t l = 0; l < H; ++l) {
        const Index c = sizes_[l + 1];
        gamma_[l].setOnes(1, c);
        beta_[l].setZero(1, c);
        dgamma_[l].setZero(1, c);
        dbeta_[l].setZero(1, c);
        running_mean_[l].setZero(1, c);
        running_var_[l].setOnes(1, c);
        xhat_[l].setZero(batch, c);
        invstd_[l].setZero(1, c);
        mean_[l].setZero(1, c);
        var_[l].setZero(1, c);
      }
      Index widest = 0;
      for (auto s : sizes_) widest = std::max(widest, s);
      scratch_.setZero(3, widest);
    }
    for (std::size_t l = 0; l < L; ++l) {
      params_.push_back({&W_[l], &dW_[l]});
      params_.push_back({&b_[l], &db_[l]});
      if (bn_ && l + 1 < L) {
        params_.push_back({&gamma_[l], &dgamma_[l]});
        params_.push_back({&beta_[l], &dbeta_[l]});
      }
    }
  }

  MlpReference(const MlpReference&) = delete;
  MlpReference& operator=(const MlpReference&) = delete;

  /// Forward, loss and backward for a batch X [batch, sizes[0]]: fills every gradient and
  /// returns the mean softmax cross-entropy. BatchNorm runs in training mode (batch statistics,
  /// running statistics updated).
  T forward_backward(const Mat<T>& X, std::span<const int> labels) {
    const std::size_t L = W_.size();
    check_input(X, labels);
    // ---- forward ----
    for (std::size_t l = 0; l < L; ++l) {
      const Mat<T>& H = l == 0 ? X : A_[l - 1];
      Mat<T>& A = A_[l];
      A.noalias() = H * W_[l].transpose();
      if (l + 1 == L) {
        A.rowwise() += b_[l].row(0);  // logits
      } else if (bn_) {
        batch_norm_forward(l);
      } else if (act_ == Activation::relu) {
        for (Index i = 0; i < batch_; ++i) A.row(i) = (A.row(i) + b_[l].row(0)).cwiseMax(T(0));
      } else {
        for (Index i = 0; i < batch_; ++i)
          A.row(i).array() = (A.row(i) + b_[l].row(0)).array().logistic();
      }
    }
    const T loss = detail::softmax_cross_entropy(A_[L - 1], labels, D_[L - 1], db_[L - 1]);
    // ---- backward: D_[l] holds dloss/d(output of layer l) ----
    for (std::size_t l = L; l-- > 0;) {
      if (l + 1 < L) {  // turn dloss/dA into dloss/d(pre-activation), with the bias gradient
        if (bn_)
          batch_norm_backward(l);
        else
          activation_backward(l);
      }
      const Mat<T>& H = l == 0 ? X : A_[l - 1];
      dW_[l].noalias() = D_[l].transpose() * H;
      if (l > 0) D_[l - 1].noalias() = D_[l] * W_[l];
    }
    return loss;
  }

  /// Plain SGD: p -= lr * grad for every parameter.
  void sgd_step(T lr) {
    for (auto& p : params_) *p.value -= lr * *p.grad;
  }

  /// The parameters in gradscope's order: per Dense weight [out, in] and bias [1, out], and after
  /// a hidden Dense its BatchNorm's weight (gamma) and bias (beta).
  const std::vector<Param<T>>& parameters() const noexcept { return params_; }
  /// The batch size the buffers were allocated for.
  Index batch() const noexcept { return batch_; }
  /// Floating-point operations of one step (GEMMs only).
  double step_flops() const {
    std::vector<Index> in(sizes_.begin(), sizes_.end() - 1), out(sizes_.begin() + 1, sizes_.end());
    return detail::dense_step_flops(in, out, batch_);
  }
  /// The logits of the last forward_backward.
  const Mat<T>& logits() const { return A_.back(); }
  const Mat<T>& running_mean(std::size_t l) const { return running_mean_[l]; }
  const Mat<T>& running_var(std::size_t l) const { return running_var_[l]; }

 private:
  void check_input(const Mat<T>& X, std::span<const int> labels) const {
    if (X.rows() != batch_ || X.cols() != sizes_[0] || static_cast<Index>(labels.size()) != batch_)
      throw std::invalid_argument("MlpReference: input or labels do not match the batch");
  }

  // A_[l] holds X W^T (without bias) on entry; on exit xhat_[l] and the activation output.
  void batch_norm_forward(std::size_t l) {
    Mat<T>& A = A_[l];
    auto& mean = mean_[l];
    auto& var = var_[l];
    const T inv_n = T(1) / static_cast<T>(batch_);
    // pass 1: add the bias, sum the columns
    mean.setZero();
    for (Index i = 0; i < batch_; ++i) {
      A.row(i) += b_[l].row(0);
      mean.row(0) += A.row(i);
    }
    mean *= inv_n;
    // pass 2: biased variance
    var.setZero();
    for (Index i = 0; i < batch_; ++i)
      var.row(0).array() += (A.row(i) - mean.row(0)).array().square();
    var *= inv_n;
    invstd_[l].array() = (var.array() + eps_).rsqrt();
    // pass 3: xhat, then gamma xhat + beta and the activation, in place
    const auto is = invstd_[l].row(0).array();
    const auto g = gamma_[l].row(0).array();
    const auto be = beta_[l].row(0).array();
    for (Index i = 0; i < batch_; ++i) {
      xhat_[l].row(i).array() = (A.row(i) - mean.row(0)).array() * is;
      if (act_ == Activation::relu)
        A.row(i).array() = (xhat_[l].row(i).array() * g + be).max(T(0));
      else
        A.row(i).array() = (xhat_[l].row(i).array() * g + be).logistic();
    }
    const T unbias = static_cast<T>(batch_) / static_cast<T>(batch_ - 1);
    running_mean_[l] = (T(1) - momentum_) * running_mean_[l] + momentum_ * mean;
    running_var_[l] = (T(1) - momentum_) * running_var_[l] + (momentum_ * unbias) * var;
  }

  // D_[l] = dloss/dA on entry, dloss/d(X W^T + b) on exit; db_[l] = its column sums.
  void activation_backward(std::size_t l) {
    Mat<T>& D = D_[l];
    const Mat<T>& A = A_[l];
    auto db = db_[l].row(0);
    db.setZero();
    for (Index i = 0; i < batch_; ++i) {
      if (act_ == Activation::relu)
        D.row(i).array() = (A.row(i).array() > T(0)).select(D.row(i).array(), T(0));
      else
        D.row(i).array() *= A.row(i).array() * (T(1) - A.row(i).array());
      db += D.row(i);
    }
  }

  // D_[l] = dloss/dA on entry; through the activation and BatchNorm to dloss/d(X W^T + b).
  void batch_norm_backward(std::size_t l) {
    Mat<T>& D = D_[l];
    const Mat<T>& A = A_[l];
    const Mat<T>& xhat = xhat_[l];
    auto dg = dgamma_[l].row(0);
    auto dbeta = dbeta_[l].row(0);
    dg.setZero();
    dbeta.setZero();
    // pass 1: through the activation; sums for gamma and beta
    for (Index i = 0; i < batch_; ++i) {
      if (act_ == Activation::relu)
        D.row(i).array() = (A.row(i).array() > T(0)).select(D.row(i).array(), T(0));
      else
        D.row(i).array() *= A.row(i).array() * (T(1) - A.row(i).array());
      dbeta += D.row(i);
      dg.array() += D.row(i).array() * xhat.row(i).array();
    }
    // pass 2: dx = gamma invstd / N (N dy - sum dy - xhat sum(dy xhat)); bias gradient
    const T inv_n = T(1) / static_cast<T>(batch_);
    const Index c = D.cols();
    auto k = scratch_.row(0).head(c).array();
    auto sum_dy = scratch_.row(1).head(c).array();
    auto sum_dyx = scratch_.row(2).head(c).array();
    k = gamma_[l].row(0).array() * invstd_[l].row(0).array();
    sum_dy = dbeta.array() * inv_n;
    sum_dyx = dg.array() * inv_n;
    auto db = db_[l].row(0);
    db.setZero();
    for (Index i = 0; i < batch_; ++i) {
      D.row(i).array() = k * (D.row(i).array() - sum_dy - xhat.row(i).array() * sum_dyx);
      db += D.row(i);
    }
  }

  std::vector<Index> sizes_;
  Activation act_;
  bool bn_;
  Index batch_;
  T momentum_, eps_;
  std::vector<Mat<T>> W_, b_, dW_, db_;
  std::vector<Mat<T>> A_;  // output of each layer (after BatchNorm and activation; the logits)
  std::vector<Mat<T>> D_;  // dloss/d(output), then dloss/d(pre-activation), of each layer
  std::vector<Mat<T>> gamma_, beta_, dgamma_, dbeta_, running_mean_, running_var_;
  std::vector<Mat<T>> xhat_, invstd_, mean_, var_;
  Mat<T> scratch_;  // three rows of working memory for batch_norm_backward
  std::vector<Param<T>> params_;
};

/// Net E: Dense(in -> width), `blocks` residual blocks h + W2 relu(W1 h + b1) + b2 of the given
/// width, then Dense(width -> classes). In gradscope: a Sequential of Dense, `blocks` x
/// Residual(Sequential(Dense, ReLU, Dense)), Dense.
template <class T>
class ResidualReference {
 public:
  /// `init` draws the first and last Dense and W1 of every block, `block_out_init` W2 (and b2).
  ResidualReference(Index in, Index width, int blocks, Index classes, Index batch,
                    const gradscope::init::Initializer& init,
                    const gradscope::init::Initializer& block_out_init, gradscope::Rng& rng)
      : in_(in), width_(width), classes_(classes), batch_(batch) {
    const auto dense = [&](Index fan_in, Index fan_out, const gradscope::init::Initializer& init) {
      Layer d;
      d.W.resize(fan_out, fan_in);
      d.b.resize(1, fan_out);
      init.weight(d.W, rng);
      init.bias(d.b, rng);
      d.dW.setZero(fan_out, fan_in);
      d.db.setZero(1, fan_out);
      return d;
    };
    first_ = dense(in, width, init);
    for (int k = 0; k < blocks; ++k) {
      Block blk;
      blk.l1 = dense(width, width, init);
      blk.l2 = dense(width, width, block_out_init);
      blocks_.push_back(std::move(blk));
    }
    last_ = dense(width, classes, init);
    H_.assign(static_cast<std::size_t>(blocks) + 1, Mat<T>::Zero(batch, width));
    U_.assign(static_cast<std::size_t>(blocks), Mat<T>::Zero(batch, width));
    logits_.setZero(batch, classes);
    dlogits_.setZero(batch, classes);
    dH_.setZero(batch, width);
    dU_.setZero(batch, width);
    const auto add = [&](Layer& d) {
      params_.push_back({&d.W, &d.dW});
      params_.push_back({&d.b, &d.db});
    };
    add(first_);
    for (auto& blk : blocks_) add(blk.l1), add(blk.l2);
    add(last_);
  }

  ResidualReference(const ResidualReference&) = delete;
  ResidualReference& operator=(const ResidualReference&) = delete;

  /// Forward, loss and backward for a batch X [batch, in]; returns the mean cross-entropy.
  T forward_backward(const Mat<T>& X, std::span<const int> labels) {
    if (X.rows() != batch_ || X.cols() != in_ || static_cast<Index>(labels.size()) != batch_)
      throw std::invalid_argument("ResidualReference: input or labels do not match the batch");
    const std::size_t K = blocks_.size();
    // ---- forward ----
    H_[0].noalias() = X * first_.W.transpose();
    H_[0].rowwise() += first_.b.row(0);
    for (std::size_t k = 0; k < K; ++k) {
      auto& blk = blocks_[k];
      Mat<T>& U = U_[k];
      Mat<T>& Hn = H_[k + 1];
      U.noalias() = H_[k] * blk.l1.W.transpose();
      for (Index i = 0; i < batch_; ++i) U.row(i) = (U.row(i) + blk.l1.b.row(0)).cwiseMax(T(0));
      Hn.noalias() = U * blk.l2.W.transpose();
      for (Index i = 0; i < batch_; ++i) Hn.row(i) += H_[k].row(i) + blk.l2.b.row(0);
    }
    logits_.noalias() = H_[K] * last_.W.transpose();
    logits_.rowwise() += last_.b.row(0);
    const T loss = detail::softmax_cross_entropy(logits_, labels, dlogits_, last_.db);
    // ---- backward ----
    last_.dW.noalias() = dlogits_.transpose() * H_[K];
    dH_.noalias() = dlogits_ * last_.W;  // dloss/dH_[K]
    for (std::size_t k = K; k-- > 0;) {
      auto& blk = blocks_[k];
      const Mat<T>& U = U_[k];
      blk.l2.dW.noalias() = dH_.transpose() * U;
      detail::column_sums(dH_, blk.l2.db);
      dU_.noalias() = dH_ * blk.l2.W;
      auto db1 = blk.l1.db.row(0);
      db1.setZero();
      for (Index i = 0; i < batch_; ++i) {
        dU_.row(i).array() = (U.row(i).array() > T(0)).select(dU_.row(i).array(), T(0));
        db1 += dU_.row(i);
      }
      blk.l1.dW.noalias() = dU_.transpose() * H_[k];
      dH_.noalias() += dU_ * blk.l1.W;  // dloss/dH_[k] = shortcut + inner
    }
    first_.dW.noalias() = dH_.transpose() * X;
    detail::column_sums(dH_, first_.db);
    return loss;
  }

  void sgd_step(T lr) {
    for (auto& p : params_) *p.value -= lr * *p.grad;
  }

  /// gradscope's order: first Dense, then per block inner.0 (W1, b1) and inner.2 (W2, b2), then
  /// the last Dense; weight before bias.
  const std::vector<Param<T>>& parameters() const noexcept { return params_; }
  Index batch() const noexcept { return batch_; }
  double step_flops() const {
    std::vector<Index> in{in_}, out{width_};
    for (std::size_t k = 0; k < 2 * blocks_.size(); ++k)
      in.push_back(width_), out.push_back(width_);
    in.push_back(width_), out.push_back(classes_);
    return detail::dense_step_flops(in, out, batch_);
  }
  const Mat<T>& logits() const { return logits_; }

 private:
  struct Layer {
    Mat<T> W, b, dW, db;
  };
  struct Block {
    Layer l1, l2;
  };
  Index in_, width_, classes_, batch_;
  Layer first_, last_;
  std::vector<Block> blocks_;
  std::vector<Mat<T>> H_, U_;
  Mat<T> logits_, dlogits_, dH_, dU_;
  std::vector<Param<T>> params_;
};

}  // namespace gradscope_bench::reference
