#pragma once
// Hand-written Eigen twin of the recurrent networks of bench/rnn_train.bench.cpp: the speed limit
// the library is measured against (DESIGN.md, Performance policy), as mlp_reference.hpp is for
// the MLPs.
//
// The network: one LSTM or GRU layer over a batch-first sequence X [B, T*I] (step t of sequence b
// in X(b, t*I .. t*I+I-1)), from a zero state, its last output h_T into a linear head H -> C, and
// softmax cross-entropy averaged over the batch; then plain SGD p -= lr * grad. The parameters are
// gradscope's (nn::LSTM / nn::GRU, which are PyTorch's): weight_ih [G*H, I], weight_hh [G*H, H],
// bias_ih [1, G*H], bias_hh [1, G*H], gates i, f, g, o (LSTM) or r, z, n (GRU), with
//   LSTM  i, f, o = sigmoid, g = tanh of the blocks of x W_ih^T + b_ih + h W_hh^T + b_hh;
//         c' = f c + i g,  h' = o tanh(c')
//   GRU   r, z = sigmoid of the first two blocks of the same sum;
//         n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn)),  h' = (1 - z) n + z h
// then the head's weight [C, H] and bias [1, C]; drawn from the same Rng stream in the same order
// as gradscope's layers, so both start from the same values.
//
// Written the way one would by hand for speed:
//   - every buffer is allocated once, for a fixed batch size and sequence length;
//   - the input is copied once into time-major order [T*B, I], so that each step's rows of every
//     buffer are one contiguous block;
//   - the input projection of all steps is one GEMM; each step adds its recurrent product
//     h W_hh^T onto its block of it with one GEMM (none at the first step, whose h is zero);
//   - the biases, the gate non-linearities, the cell update and the output are one pass per row
//     while the row is in cache, and so are the gate gradients of a step in the backward pass,
//     with the bias gradients summed on the way;
//   - backpropagation through time is written out: per step one GEMM for dL/dh_{t-1}; the weight
//     gradients of all steps are one GEMM each at the end (dW_ih = D^T X, dW_hh = D^T H_prev),
//     not T small ones;
//   - gradients are assigned (=), not accumulated, so no zero_grad is needed.
// tests/bench_reference/reference.test.cpp checks the gradients by central finite differences in
// double precision and one SGD step against gradscope's.
#include <cstddef>
#include <span>
#include <stdexcept>
#include <vector>

#include <Eigen/Core>

#include <gradscope/core/rng.hpp>
#include <gradscope/nn/init.hpp>

#include "mlp_reference.hpp"

namespace gradscope_bench::reference {

/// The recurrent cell of an RnnReference.
enum class RnnCell { lstm, gru };

/// The sizes and initialisers of an RnnReference; the defaults are gradscope's (nn::LSTM, nn::GRU
/// and nn::Dense with their default options).
struct RnnShape {
  RnnCell cell = RnnCell::lstm;
  Index steps = 28;    ///< T
  Index input = 28;    ///< I, features per step
  Index hidden = 128;  ///< H
  Index classes = 10;  ///< C, outputs of the head
  /// Each gate's block of weight_ih (RecurrentOptions::input_init).
  gradscope::init::Initializer input_init = gradscope::init::xavier_uniform;
  /// Each gate's block of weight_hh (RecurrentOptions::recurrent_init).
  gradscope::init::Initializer recurrent_init = gradscope::init::orthogonal();
  /// LSTM: the forget gate's block of bias_ih (RecurrentOptions::forget_bias).
  double forget_bias = 1.0;
  /// The head's weight and bias (Dense's default).
  gradscope::init::Initializer head_init = gradscope::init::xavier_uniform;

  Index gates() const { return cell == RnnCell::lstm ? 4 : 3; }
};

/// One recurrent layer (LSTM or GRU), last step, linear head, softmax cross-entropy; for a fixed
/// batch size.
template <class T>
class RnnReference {
 public:
  /// Draws the parameters from `rng` as gradscope's Sequential{LSTM or GRU (last step), Dense}
  /// does: one 64-bit draw (the recurrent layer seeds its dropout generator with it), weight_ih
  /// gate block by gate block, weight_hh likewise, then the head's weight and bias.
  RnnReference(const RnnShape& shape, Index batch, gradscope::Rng& rng)
      : s_(shape), B_(batch), G_(shape.gates()) {
    // (the parameter list points into the members: the object is neither copied nor moved)
    const Index steps = s_.steps, I = s_.input, H = s_.hidden, C = s_.classes, GH = G_ * H;
    if (steps < 1 || I < 1 || H < 1 || C < 1 || B_ < 1)
      throw std::invalid_argument("RnnReference: every size must be positive");
    (void)rng.next_u64();
    W_ih_.resize(GH, I);
    W_hh_.resize(GH, H);
    for (Index g = 0; g < G_; ++g) {
      auto block = W_ih_.middleRows(g * H, H);
      s_.input_init.weight(block, rng);
    }
    for (Index g = 0; g < G_; ++g) {
      auto block = W_hh_.middleRows(g * H, H);
      s_.recurrent_init.weight(block, rng);
    }
    b_ih_.setZero(1, GH);
    b_hh_.setZero(1, GH);
    if (s_.cell == RnnCell::lstm)
      b_ih_.middleCols(H, H).setConstant(static_cast<T>(s_.forget_bias));
    W_.resize(C, H);
    b_.resize(1, C);
    s_.head_init.weight(W_, rng);
    s_.head_init.bias(b_, rng);

    dW_ih_.setZero(GH, I);
    dW_hh_.setZero(GH, H);
    db_ih_.setZero(1, GH);
    db_hh_.setZero(1, GH);
    dW_.setZero(C, H);
    db_.setZero(1, C);
    bsum_.setZero(1, GH);
    Xt_.setZero(steps * B_, I);
    A_.setZero(steps * B_, GH);
    D_.setZero(steps * B_, GH);
    Hs_.setZero((steps + 1) * B_, H);  // block 0: the zero initial state
    if (s_.cell == RnnCell::lstm) {
      Cs_.setZero((steps + 1) * B_, H);
      TC_.setZero(steps * B_, H);
    } else {
      GH_.setZero(B_, GH);
      GHn_.setZero(steps * B_, H);
      DGH_.setZero(steps * B_, GH);
    }
    dh_.setZero(B_, H);
    dh2_.setZero(B_, H);
    dc_.setZero(B_, H);
    logits_.setZero(B_, C);
    dlogits_.setZero(B_, C);
    params_ = {{&W_ih_, &dW_ih_}, {&W_hh_, &dW_hh_}, {&b_ih_, &db_ih_},
               {&b_hh_, &db_hh_}, {&W_, &dW_},       {&b_, &db_}};
  }

  RnnReference(const RnnReference&) = delete;
  RnnReference& operator=(const RnnReference&) = delete;

  /// Forward, loss and backward for a batch X [B, T*I]: fills every gradient and returns the mean
  /// softmax cross-entropy.
  T forward_backward(const Mat<T>& X, std::span<const int> labels) {
    const Index steps = s_.steps, I = s_.input;
    if (X.rows() != B_ || X.cols() != steps * I || static_cast<Index>(labels.size()) != B_)
      throw std::invalid_argument("RnnReference: input or labels do not match the batch");
    // Time-major copy of the input: row t*B + b holds step t of sequence b.
    for (Index b = 0; b < B_; ++b)
      for (Index t = 0; t < steps; ++t) Xt_.row(t * B_ + b) = X.row(b).segment(t * I, I);
    // The input projection of every step, biases added in the step passes below.
    A_.noalias() = Xt_ * W_ih_.transpose();
    if (s_.cell == RnnCell::lstm)
      lstm_forward();
    else
      gru_forward();
    const auto hT = Hs_.middleRows(steps * B_, B_);
    logits_.noalias() = hT * W_.transpose();
    logits_.rowwise() += b_.row(0);
    const T loss = detail::softmax_cross_entropy(logits_, labels, dlogits_, db_);
    dW_.noalias() = dlogits_.transpose() * hT;
    dh_.noalias() = dlogits_ * W_;  // dL/dh_T
    if (s_.cell == RnnCell::lstm)
      lstm_backward();
    else
      gru_backward();
    // The weight gradients of all steps at once. Step 0's recurrent input is the zero state: it
    // adds nothing to dW_hh.
    dW_ih_.noalias() = D_.transpose() * Xt_;
    const Index rest = (steps - 1) * B_;
    const Mat<T>& Dh = s_.cell == RnnCell::lstm ? D_ : DGH_;
    if (rest > 0)
      dW_hh_.noalias() = Dh.bottomRows(rest).transpose() * Hs_.middleRows(B_, rest);
    else
      dW_hh_.setZero();
    return loss;
  }

  /// Plain SGD: p -= lr * grad for every parameter.
  void sgd_step(T lr) {
    for (auto& p : params_) *p.value -= lr * *p.grad;
  }

  /// One training step: forward_backward and sgd_step.
  T step(const Mat<T>& X, std::span<const int> labels, T lr) {
    const T loss = forward_backward(X, labels);
    sgd_step(lr);
    return loss;
  }

  /// The parameters in gradscope's order: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0,
  /// then the head's weight and bias.
  const std::vector<Param<T>>& parameters() const noexcept { return params_; }
  /// The logits of the last forward_backward.
  const Mat<T>& logits() const noexcept { return logits_; }
  const RnnShape& shape() const noexcept { return s_; }
  Index batch() const noexcept { return B_; }

  /// Floating-point operations of one step, GEMMs only, 2 M N K each, counted as for T full
  /// steps: forward the input projection and T recurrent products, backward dW_ih, dW_hh and T
  /// products for dL/dh (no input gradient), and the head's three. (Both the twin and gradscope
  /// skip what the zero initial state makes zero: the first step's recurrent product, its share
  /// of dW_hh, and dL/dh_0.)
  double step_flops() const { return step_flops(s_, B_); }
  /// The same for a network of `shape` at batch size `batch`.
  static double step_flops(const RnnShape& shape, Index batch) {
    const double steps = static_cast<double>(shape.steps), B = static_cast<double>(batch);
    const double I = static_cast<double>(shape.input), H = static_cast<double>(shape.hidden);
    const double GH = static_cast<double>(shape.gates()) * H;
    const double C = static_cast<double>(shape.classes);
    return 2.0 * steps * B * GH * (2.0 * I + 3.0 * H) + 3.0 * 2.0 * B * H * C;
  }

 private:
  void lstm_forward() {
    const Index steps = s_.steps, H = s_.hidden;
    bsum_ = b_ih_ + b_hh_;
    const auto bi = bsum_.row(0).segment(0, H).array(), bf = bsum_.row(0).segment(H, H).array();
    const auto bg = bsum_.row(0).segment(2 * H, H).array();
    const auto bo = bsum_.row(0).segment(3 * H, H).array();
    for (Index t = 0; t < steps; ++t) {
      auto At = A_.middleRows(t * B_, B_);
      if (t > 0) At.noalias() += Hs_.middleRows(t * B_, B_) * W_hh_.transpose();
      for (Index b = 0; b < B_; ++b) {
        const Index r = t * B_ + b;
        auto a = A_.row(r);
        auto i = a.segment(0, H).array(), f = a.segment(H, H).array();
        auto g = a.segment(2 * H, H).array(), o = a.segment(3 * H, H).array();
        i = (i + bi).logistic();
        f = (f + bf).logistic();
        g = (g + bg).tanh();
        o = (o + bo).logistic();
        auto c = Cs_.row(r + B_).array();
        auto tc = TC_.row(r).array();
        c = f * Cs_.row(r).array() + i * g;
        tc = c.tanh();
        Hs_.row(r + B_).array() = o * tc;
      }
    }
  }

  // dh_ = dL/dh_T on entry. Fills D_ (the gate gradients, = those of x W_ih^T + b_ih and of
  // h W_hh^T + b_hh) and both bias gradients.
  void lstm_backward() {
    const Index steps = s_.steps, H = s_.hidden;
    dc_.setZero();
    auto db = db_ih_.row(0);
    db.setZero();
    for (Index t = steps; t-- > 0;) {
      for (Index b = 0; b < B_; ++b) {
        const Index r = t * B_ + b;
        const auto a = A_.row(r);
        const auto i = a.segment(0, H).array(), f = a.segment(H, H).array();
        const auto g = a.segment(2 * H, H).array(), o = a.segment(3 * H, H).array();
        const auto tc = TC_.row(r).array();
        const auto dh = dh_.row(b).array();
        auto dc = dc_.row(b).array();
        auto d = D_.row(r);
        dc += dh * o * (T(1) - tc.square());
        d.segment(0, H).array() = dc * g * i * (T(1) - i);
        d.segment(H, H).array() = dc * Cs_.row(r).array() * f * (T(1) - f);
        d.segment(2 * H, H).array() = dc * i * (T(1) - g.square());
        d.segment(3 * H, H).array() = dh * tc * o * (T(1) - o);
        dc *= f;  // dL/dc_{t-1}
        db += d;
      }
      if (t > 0) dh_.noalias() = D_.middleRows(t * B_, B_) * W_hh_;
    }
    db_hh_ = db_ih_;
  }

  void gru_forward() {
    const Index steps = s_.steps, H = s_.hidden;
    bsum_ = b_ih_ + b_hh_;
    const auto brz = bsum_.row(0).segment(0, 2 * H).array();
    const auto b_in = b_ih_.row(0).segment(2 * H, H).array();
    const auto b_hn = b_hh_.row(0).segment(2 * H, H).array();
    for (Index t = 0; t < steps; ++t) {
      if (t > 0) GH_.noalias() = Hs_.middleRows(t * B_, B_) * W_hh_.transpose();
      for (Index b = 0; b < B_; ++b) {
        const Index r = t * B_ + b;
        auto a = A_.row(r);
        auto rz = a.segment(0, 2 * H).array();
        auto n = a.segment(2 * H, H).array();
        auto ghn = GHn_.row(r).array();
        if (t > 0) {
          rz = (rz + GH_.row(b).segment(0, 2 * H).array() + brz).logistic();
          ghn = GH_.row(b).segment(2 * H, H).array() + b_hn;
        } else {  // h_0 = 0: the recurrent pre-activations are b_hh
          rz = (rz + brz).logistic();
          ghn = b_hn;
        }
        const auto rg = a.segment(0, H).array(), z = a.segment(H, H).array();
        n = (n + b_in + rg * ghn).tanh();
        Hs_.row(r + B_).array() = (T(1) - z) * n + z * Hs_.row(r).array();
      }
    }
  }

  // dh_ = dL/dh_T on entry. Fills D_ (gradients of x W_ih^T + b_ih: dr, dz, dn), DGH_ (of
  // h W_hh^T + b_hh: dr, dz, r dn) and both bias gradients.
  void gru_backward() {
    const Index steps = s_.steps, H = s_.hidden;
    auto dbi = db_ih_.row(0);
    auto dbh = db_hh_.row(0);
    dbi.setZero();
    dbh.setZero();
    for (Index t = steps; t-- > 0;) {
      for (Index b = 0; b < B_; ++b) {
        const Index r = t * B_ + b;
        const auto a = A_.row(r);
        const auto rg = a.segment(0, H).array(), z = a.segment(H, H).array();
        const auto n = a.segment(2 * H, H).array();
        const auto dh = dh_.row(b).array();
        auto d = D_.row(r);
        auto dgh = DGH_.row(r);
        auto dn = d.segment(2 * H, H).array();
        dn = dh * (T(1) - z) * (T(1) - n.square());
        d.segment(0, H).array() = dn * GHn_.row(r).array() * rg * (T(1) - rg);
        d.segment(H, H).array() = dh * (Hs_.row(r).array() - n) * z * (T(1) - z);
        dgh.segment(0, 2 * H) = d.segment(0, 2 * H);
        dgh.segment(2 * H, H).array() = dn * rg;
        dh2_.row(b).array() = dh * z;  // through h' = ... + z h
        dbi += d;
        dbh += dgh;
      }
      if (t > 0) {
        dh2_.noalias() += DGH_.middleRows(t * B_, B_) * W_hh_;
        dh_.swap(dh2_);  // (swaps the buffers, no copy)
      }
    }
  }

  RnnShape s_;
  Index B_, G_;
  Mat<T> W_ih_, W_hh_, b_ih_, b_hh_, W_, b_;
  Mat<T> dW_ih_, dW_hh_, db_ih_, db_hh_, dW_, db_;
  Mat<T> bsum_;  // b_ih + b_hh
  Mat<T> Xt_;    // the input, time-major [T*B, I]
  Mat<T> A_;     // [T*B, G*H]: x W_ih^T (+ h W_hh^T for the LSTM), then the gate activations
  Mat<T> D_;     // [T*B, G*H]: dL/d(x W_ih^T + b_ih) of every step
  Mat<T> Hs_;    // [(T+1)*B, H]: h_0 = 0, h_1, ..., h_T (block t is step t's recurrent input)
  Mat<T> Cs_;    // LSTM [(T+1)*B, H]: c_0 = 0, c_1, ..., c_T
  Mat<T> TC_;    // LSTM [T*B, H]: tanh(c_t)
  Mat<T> GH_;    // GRU [B, G*H]: this step's h W_hh^T
  Mat<T> GHn_;   // GRU [T*B, H]: W_hn h + b_hn of every step (scaled by r)
  Mat<T> DGH_;   // GRU [T*B, G*H]: dL/d(h W_hh^T + b_hh) of every step
  Mat<T> dh_, dh2_, dc_;  // [B, H]: dL/dh of the current step (dh2_: the next), LSTM's dL/dc
  Mat<T> logits_, dlogits_;
  std::vector<Param<T>> params_;
};

}  // namespace gradscope_bench::reference
