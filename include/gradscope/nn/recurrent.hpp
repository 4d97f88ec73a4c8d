#pragma once
/// Recurrent layers: RNN (tanh or ReLU), LSTM and GRU over batch-first sequences, their one-step
/// cells, and Embedding. Parameters, names and gate order are PyTorch's (nn.RNN, nn.LSTM, nn.GRU),
/// so weights trained there load by name through a safetensors checkpoint and give the same
/// outputs. Backpropagation through time is the tape's ordinary reverse sweep over the unrolled
/// steps; each step's gate math is one fused node (core/recurrent_ops.hpp).

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../core/core.hpp"
#include "init.hpp"
#include "module.hpp"

namespace gradscope::nn {

/// The kind of a recurrent cell.
enum class CellKind { rnn, lstm, gru };

/// What a recurrent layer's forward(x) returns.
enum class RecurrentOutput {
  sequence,   ///< every step's output of the last layer, [B, T*H] (many-to-many)
  last_step,  ///< the last step's output of the last layer, [B, H] (many-to-one)
};

/// Options of RNN, LSTM and GRU (and of their cells, which use the init and bias fields).
struct RecurrentOptions {
  Index num_layers = 1;  ///< stacked layers: layer l > 0 reads layer l-1's outputs
  bool bias = true;      ///< bias_ih and bias_hh in every layer
  RecurrentOutput output = RecurrentOutput::sequence;
  RnnNonlinearity nonlinearity = RnnNonlinearity::tanh;  ///< RNN only
  /// LSTM only: the forget gate's bias (in bias_ih; bias_hh's forget block is 0). 1 by default, as
  /// Jozefowicz et al. 2015 recommend, so that the cell remembers from the start; PyTorch draws
  /// every bias from U(-1/sqrt(H), 1/sqrt(H)) instead (a forget bias near 0).
  double forget_bias = 1.0;
  /// Each gate's block [H, in] of weight_ih (PyTorch: U(-1/sqrt(H), 1/sqrt(H)) for everything).
  init::Initializer input_init = init::xavier_uniform;
  /// Each gate's block [H, H] of weight_hh: orthogonal (all singular values 1); init::identity()
  /// with ReLU is Le et al.'s IRNN.
  init::Initializer recurrent_init = init::orthogonal();
  double dropout = 0;  ///< dropout on the outputs of every layer but the last, in training
  Rng* rng = nullptr;  ///< draws the weights (default: default_rng())
};

/// The state a recurrent layer carries from step to step: for each layer, h [B, H] (and c [B, H]
/// for an LSTM).
template <Scalar T>
struct RecurrentState {
  std::vector<Tensor<T>> h;
  std::vector<Tensor<T>> c;  ///< LSTM only
  bool empty() const noexcept { return h.empty(); }
  /// Persistent copies cut from the tape: the state to carry into the next batch in truncated
  /// backpropagation through time (the gradient stops at the batch boundary).
  RecurrentState detached() const {
    RecurrentState s;
    for (const auto& t : h) s.h.push_back(t.detach());
    for (const auto& t : c) s.c.push_back(t.detach());
    return s;
  }
};

/// What a recurrent layer's stateful call returns.
template <Scalar T>
struct SequenceResult {
  Tensor<T> output;         ///< as forward(x): [B, T*H], or [B, H] with RecurrentOutput::last_step
  RecurrentState<T> state;  ///< after the last step, for every layer
};

namespace detail {
inline Index gates_of(CellKind k) { return k == CellKind::lstm ? 4 : k == CellKind::gru ? 3 : 1; }
inline const char* cell_name(CellKind k) {
  return k == CellKind::lstm ? "LSTM" : k == CellKind::gru ? "GRU" : "RNN";
}
// Draws weight [gates*H, in] block by block (each gate its own matrix) and sets the biases.
template <Scalar T>
void init_gates(Matrix<T>& W, Index gates, const init::Initializer& init, Rng& rng) {
  const Index H = W.rows() / gates;
  for (Index g = 0; g < gates; ++g) {
    auto block = W.middleRows(g * H, H);
    init.weight(block, rng);
  }
}
}  // namespace detail

/// RNN, LSTM or GRU (use those names): a stack of recurrent layers over batch-first sequences.
///
/// Input [B, T*I]: T steps of I features per row (step t in columns [t*I, (t+1)*I)), the layout
/// nn::stack produces and Sequential passes on. Output [B, T*H] (every step of the last layer) or
/// [B, H] (RecurrentOutput::last_step). forward(x) starts from the initial state set with
/// set_initial_state (zeros by default); the stateful call layer(x, state) returns the final
/// state as well; final_state() keeps the last forward's. Parameters per layer k, PyTorch's names
/// and layout: weight_ih_l{k} [G*H, in], weight_hh_l{k} [G*H, H], bias_ih_l{k} [G*H],
/// bias_hh_l{k} [G*H], gates G in the order i, f, g, o (LSTM), r, z, n (GRU).
template <Scalar T>
class Recurrent : public Module<T> {
 public:
  Recurrent(CellKind kind, Index input_size, Index hidden_size, RecurrentOptions opt = {});

  using Module<T>::operator();
  /// Runs the sequence from `initial` (an empty state means zeros) and returns the output and the
  /// final state. Hooks and the module's label apply as for layer(x).
  SequenceResult<T> operator()(const Tensor<T>& x, const RecurrentState<T>& initial);

  Tensor<T> forward(const Tensor<T>& x) override;
  std::string kind() const override { return detail::cell_name(kind_); }
  bool in_gradient_flow() const override { return true; }
  std::string describe() const override;

  CellKind cell() const noexcept { return kind_; }
  Index input_size() const noexcept { return input_; }
  Index hidden_size() const noexcept { return hidden_; }
  Index num_layers() const noexcept { return opt_.num_layers; }
  const RecurrentOptions& options() const noexcept { return opt_; }

  /// The state forward(x) starts from (persistent tensors, e.g. final_state().detached() of the
  /// previous batch for truncated BPTT); an empty state means zeros.
  void set_initial_state(RecurrentState<T> s) { initial_ = std::move(s); }
  /// Back to zero initial states.
  void reset_state() { initial_ = {}; }
  /// The state after the last step of the last forward (tape tensors while its tape lives).
  const RecurrentState<T>& final_state() const noexcept { return final_; }
  /// The outputs h_t of layer `layer` at every step of the last forward, on the tape: their
  /// gradients (register_hook, retain_grad) are dL/dh_t, through the output and the recurrence.
  const std::vector<Tensor<T>>& step_outputs(Index layer = -1) const {
    return time_steps(layer).outputs;
  }
  /// A layer's time steps in the last forward, on the tape: what the gradient monitor hooks.
  struct TimeSteps {
    /// h_t, t = 0..T-1: dL/dh_t is the total, through the output and the recurrence.
    std::vector<Tensor<T>> outputs;
    /// h_t as step t+1 reads it, t = 0..T-2 (a view of outputs[t]): dL/dh_t through the
    /// recurrence alone.
    std::vector<Tensor<T>> recurrent;
    /// Each step's cell (core's lstm_cell, gru_cell or rnn_cell node): cell_gates reads the
    /// gates it computed.
    std::vector<Tensor<T>> cells;
  };
  /// The time steps of layer `layer` (negative: from the last) in the last forward.
  const TimeSteps& time_steps(Index layer = -1) const;
  /// How much of its state the layer carried from step to step in the last forward: the mean
  /// over the batch, the units and the steps of the LSTM's forget gate f or the GRU's update
  /// gate z (1: everything kept). NaN for an RNN, or when the forward was not recorded on a tape.
  double carry_gate_mean(Index layer = -1) const;

  /// The parameters of layer k: weight_ih, weight_hh, bias_ih, bias_hh (biases undefined
  /// without bias).
  Tensor<T>& weight_ih(Index k) { return layers_.at(static_cast<std::size_t>(k)).w_ih; }
  Tensor<T>& weight_hh(Index k) { return layers_.at(static_cast<std::size_t>(k)).w_hh; }
  Tensor<T>& bias_ih(Index k) { return layers_.at(static_cast<std::size_t>(k)).b_ih; }
  Tensor<T>& bias_hh(Index k) { return layers_.at(static_cast<std::size_t>(k)).b_hh; }

 private:
  struct Layer {
    Tensor<T> w_ih, w_hh, b_ih, b_hh;
    TimeSteps time;  // of the last forward (capacities kept: no allocation)
  };
  const Layer& layer_at(Index layer, const char* what) const;
  Tensor<T> run(const Tensor<T>& x, const RecurrentState<T>& initial);
  Tensor<T> steps_of(const Tensor<T>& x, Index rows, Index cols);
  Tensor<T> first_gates(const Layer& l, Index batch);
  const Tensor<T>& zeros(Index batch);
  void check_state(const RecurrentState<T>& s, Index batch) const;

  CellKind kind_;
  Index input_, hidden_;
  RecurrentOptions opt_;
  std::vector<Layer> layers_;
  RecurrentState<T> initial_, final_;
  const RecurrentState<T>* pending_ = nullptr;  // the state of a stateful call, for forward()
  Tensor<T> zeros_;       // [B, H] zeros, kept for the next batch of the same size
  Tensor<T> flat_;        // a batch of data read as one row per step (steps_of), kept likewise
  Tensor<T> zero_gates_;  // [B, G*H] zeros (first_gates), kept likewise
  Rng dropout_rng_;
};

/// Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or ReLU
/// (options.nonlinearity).
template <Scalar T>
struct RNN : Recurrent<T> {
  RNN(Index input_size, Index hidden_size, RecurrentOptions opt = {})
      : Recurrent<T>(CellKind::rnn, input_size, hidden_size, opt) {}
};
/// LSTM (gates i, f, g, o): c_t = f c_{t-1} + i g, h_t = o tanh(c_t).
template <Scalar T>
struct LSTM : Recurrent<T> {
  LSTM(Index input_size, Index hidden_size, RecurrentOptions opt = {})
      : Recurrent<T>(CellKind::lstm, input_size, hidden_size, opt) {}
};
/// GRU (gates r, z, n): n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h_t = (1 - z) n + z h_{t-1}.
template <Scalar T>
struct GRU : Recurrent<T> {
  GRU(Index input_size, Index hidden_size, RecurrentOptions opt = {})
      : Recurrent<T>(CellKind::gru, input_size, hidden_size, opt) {}
};

template <Scalar T>
Recurrent<T>::Recurrent(CellKind kind, Index input_size, Index hidden_size, RecurrentOptions opt)
    : kind_(kind), input_(input_size), hidden_(hidden_size), opt_(std::move(opt)) {
  const char* name = detail::cell_name(kind);
  if (input_size <= 0 || hidden_size <= 0)
    throw ValueError(gradscope::detail::cat(name, ": needs positive sizes, got input ", input_size,
                                            ", hidden ", hidden_size));
  if (opt_.num_layers < 1)
    throw ValueError(
        gradscope::detail::cat(name, ": needs at least one layer, got ", opt_.num_layers));
  if (!(opt_.dropout >= 0 && opt_.dropout < 1))
    throw ValueError(
        gradscope::detail::cat(name, ": dropout must be in [0, 1), got ", opt_.dropout));
  if (!std::isfinite(opt_.forget_bias))
    throw ValueError(gradscope::detail::cat(name, ": forget_bias must be finite"));
  const Index G = detail::gates_of(kind), H = hidden_size;
  // The largest weight, [G*H, max(I, H)], must be an array that can exist.
  if (H > std::numeric_limits<Index>::max() / G)
    throw ValueError(gradscope::detail::cat(name, ": hidden size ", H, " is too large"));
  gradscope::detail::check_extent<T>(name, G * H, std::max(input_size, H));
  Rng& rng = opt_.rng ? *opt_.rng : default_rng();
  dropout_rng_.seed(rng.next_u64());
  opt_.rng = nullptr;  // not kept: the caller's generator may not outlive the layer
  layers_.resize(static_cast<std::size_t>(opt_.num_layers));
  for (Index k = 0; k < opt_.num_layers; ++k) {
    auto& l = layers_[static_cast<std::size_t>(k)];
    const std::string sfx = "_l" + std::to_string(k);
    Matrix<T> w_ih(G * H, k == 0 ? input_size : H), w_hh(G * H, H);
    detail::init_gates(w_ih, G, opt_.input_init, rng);
    detail::init_gates(w_hh, G, opt_.recurrent_init, rng);
    l.w_ih = this->register_parameter("weight_ih" + sfx, Tensor<T>::parameter(std::move(w_ih)));
    l.w_hh = this->register_parameter("weight_hh" + sfx, Tensor<T>::parameter(std::move(w_hh)));
    if (opt_.bias) {
      Matrix<T> b_ih = Matrix<T>::Zero(1, G * H), b_hh = Matrix<T>::Zero(1, G * H);
      if (kind == CellKind::lstm)
        b_ih.middleCols(H, H).setConstant(static_cast<T>(opt_.forget_bias));
      l.b_ih = this->register_parameter("bias_ih" + sfx, Tensor<T>::parameter(std::move(b_ih), 1));
      l.b_hh = this->register_parameter("bias_hh" + sfx, Tensor<T>::parameter(std::move(b_hh), 1));
    }
  }
}

template <Scalar T>
std::string Recurrent<T>::describe() const {
  std::string s = kind() + "(" + std::to_string(input_) + " -> " + std::to_string(hidden_);
  if (opt_.num_layers > 1) s += ", " + std::to_string(opt_.num_layers) + " layers";
  if (kind_ == CellKind::rnn && opt_.nonlinearity == RnnNonlinearity::relu) s += ", relu";
  if (!opt_.bias) s += ", no bias";
  if (opt_.output == RecurrentOutput::last_step) s += ", last step";
  return s + ")";
}

template <Scalar T>
SequenceResult<T> Recurrent<T>::operator()(const Tensor<T>& x, const RecurrentState<T>& initial) {
  struct Pending {  // cleared even when the forward throws
    const RecurrentState<T>*& p;
    ~Pending() { p = nullptr; }
  } pending{pending_};
  pending_ = &initial;
  Tensor<T> y = Module<T>::operator()(x);
  return {std::move(y), final_};
}

template <Scalar T>
Tensor<T> Recurrent<T>::forward(const Tensor<T>& x) {
  return run(x, pending_ ? *pending_ : initial_);
}

template <Scalar T>
const Tensor<T>& Recurrent<T>::zeros(Index batch) {
  if (!zeros_.defined() || zeros_.rows() != batch) zeros_ = Tensor<T>::zeros(batch, hidden_);
  return zeros_;
}

// The input [B, steps * I] read as one row per step, [B * steps, I]: the same values in the same
// order. On a tape, or with a gradient, that is reshape's view of it. A persistent input without a
// gradient (a batch of data) would be copied by reshape into a new tensor (three heap blocks)
// every batch; its values go into a buffer the layer keeps instead. A tape that recorded the
// buffer holds its storage until reset, and the buffer is then not overwritten but replaced (two
// forwards on one tape each keep their own).
template <Scalar T>
Tensor<T> Recurrent<T>::steps_of(const Tensor<T>& x, Index rows, Index cols) {
  if (!x.is_persistent() || x.requires_grad()) return reshape(x, rows, cols);
  if (!flat_.defined() || flat_.rows() != rows || flat_.cols() != cols ||
      flat_.storage().use_count() > 1)
    flat_ = Tensor<T>(Matrix<T>(rows, cols), 2, false);
  const auto v = x.value();
  std::copy_n(v.data(), v.size(), flat_.mutable_value().data());
  return flat_;
}

// gh of the first step from a zero state: h W_hh^T + b_hh with h = 0 is b_hh in every row, with
// no product to compute (forward, and for W_hh's gradient backward).
template <Scalar T>
Tensor<T> Recurrent<T>::first_gates(const Layer& l, Index batch) {
  const Index width = detail::gates_of(kind_) * hidden_;
  if (!zero_gates_.defined() || zero_gates_.rows() != batch)
    zero_gates_ = Tensor<T>::zeros(batch, width);
  return l.b_hh.defined() ? zero_gates_ + l.b_hh : zero_gates_;
}

template <Scalar T>
void Recurrent<T>::check_state(const RecurrentState<T>& s, Index batch) const {
  const auto L = static_cast<std::size_t>(opt_.num_layers);
  const bool lstm = kind_ == CellKind::lstm;
  if (s.h.size() != L || (lstm ? s.c.size() != L : !s.c.empty()))
    throw ShapeError(gradscope::detail::cat(this->label(), ": the initial state has ", s.h.size(),
                                            " h and ", s.c.size(), " c tensors; expected ", L, " h",
                                            lstm ? " and " + std::to_string(L) + " c" : "",
                                            " (one per layer)"));
  for (const auto* list : {&s.h, &s.c})
    for (std::size_t k = 0; k < list->size(); ++k)
      if ((*list)[k].rows() != batch || (*list)[k].cols() != hidden_)
        throw ShapeError(gradscope::detail::cat(
            this->label(), ": initial ", list == &s.h ? "h" : "c", " of layer ", k, " has shape ",
            (*list)[k].shape(), "; expected [", batch, ", ", hidden_, "]"));
}

template <Scalar T>
Tensor<T> Recurrent<T>::run(const Tensor<T>& x, const RecurrentState<T>& initial) {
  const Shape s = x.shape();
  if (s.cols % input_ != 0 || s.cols == 0)
    throw ShapeError(gradscope::detail::cat(this->label(), ": input ", s,
                                            " is not a whole number of steps of ", input_,
                                            " features (expected [batch, steps x ", input_, "])"));
  const Index B = s.rows, steps = s.cols / input_, H = hidden_;
  if (!initial.empty()) check_state(initial, B);
  const bool lstm = kind_ == CellKind::lstm;
  final_.h.resize(layers_.size());
  final_.c.resize(lstm ? layers_.size() : 0);
  Tensor<T> in = x;  // [B, steps * in_features]
  Tensor<T> out;
  for (std::size_t k = 0; k < layers_.size(); ++k) {
    auto& l = layers_[k];
    const Index in_features = k == 0 ? input_ : H;
    // The input projection of every step at once: [B*steps, in] x W_ih^T = [B*steps, G*H], which
    // the cells read as [B, steps*G*H] (the same memory), step t in block t of each row.
    const Tensor<T> xg = linear(steps_of(in, B * steps, in_features), l.w_ih, l.b_ih);
    Tensor<T> h = initial.empty() ? zeros(B) : initial.h[k];
    Tensor<T> state = lstm ? (initial.empty() ? zeros(B) : initial.c[k]) : Tensor<T>();
    auto& time = l.time;
    time.outputs.clear();
    time.recurrent.clear();
    time.cells.clear();
    for (Index t = 0; t < steps; ++t) {
      // The previous output enters the recurrence through a view of its own (no copy), so that
      // the gradient through the recurrence can be told from the total (TimeSteps).
      if (t > 0) time.recurrent.push_back(reshape(h, B, H));
      const Tensor<T>& h_prev = t > 0 ? time.recurrent.back() : h;
      const Tensor<T> gh =
          t == 0 && initial.empty() ? first_gates(l, B) : linear(h_prev, l.w_hh, l.b_hh);
      switch (kind_) {
        case CellKind::rnn:
          h = rnn_cell(xg, gh, opt_.nonlinearity, t);
          time.cells.push_back(h);
          break;
        case CellKind::lstm:
          state = lstm_cell(xg, gh, state, t);
          time.cells.push_back(state);
          h = slice_rows(state, 0, B);
          break;
        case CellKind::gru:
          h = gru_cell(xg, gh, h_prev, t);  // also z * h_prev: through the view
          time.cells.push_back(h);
          break;
      }
      time.outputs.push_back(h);
    }
    final_.h[k] = h;
    if (lstm) final_.c[k] = slice_rows(state, B, B);
    const bool last = k + 1 == layers_.size();
    if (last && opt_.output == RecurrentOutput::last_step) {
      out = h;
    } else {
      out = steps == 1 ? h : stack(time.outputs);
      if (!last && opt_.dropout > 0 && this->is_training())
        out = dropout(out, opt_.dropout, dropout_rng_);
    }
    in = out;
  }
  return out;
}

template <Scalar T>
const typename Recurrent<T>::Layer& Recurrent<T>::layer_at(Index layer, const char* what) const {
  const Index k = layer < 0 ? opt_.num_layers + layer : layer;
  if (k < 0 || k >= opt_.num_layers)
    throw UsageError(gradscope::detail::cat(this->label(), ": ", what, "(", layer, "): the ",
                                            kind(), " has ", opt_.num_layers, " layers"));
  return layers_[static_cast<std::size_t>(k)];
}

template <Scalar T>
const typename Recurrent<T>::TimeSteps& Recurrent<T>::time_steps(Index layer) const {
  return layer_at(layer, "time_steps").time;
}

template <Scalar T>
double Recurrent<T>::carry_gate_mean(Index layer) const {
  const auto& cells = layer_at(layer, "carry_gate_mean").time.cells;
  if (kind_ == CellKind::rnn || cells.empty()) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  Index count = 0;
  for (const auto& c : cells) {
    const auto gates = cell_gates(c);  // LSTM: i, f, g, o, tanh c; GRU: r, z, n
    if (gates.size() == 0) return std::numeric_limits<double>::quiet_NaN();
    const auto carry = gates.middleCols(hidden_, hidden_);
    sum += static_cast<double>(carry.sum());
    count += carry.size();
  }
  return sum / static_cast<double>(count);
}

/// One step of an RNN, LSTM or GRU (use RNNCell, LSTMCell, GRUCell): PyTorch's nn.*Cell, with
/// parameters weight_ih [G*H, I], weight_hh [G*H, H], bias_ih [G*H], bias_hh [G*H]. step(x, h)
/// (LSTM: step(x, h, c)) advances one step; forward(x) is one step from zeros.
template <Scalar T>
class Cell : public Module<T> {
 public:
  Cell(CellKind kind, Index input_size, Index hidden_size, RecurrentOptions opt = {});
  /// h_t [B, H] from x_t [B, I] and h_{t-1} [B, H] (RNN, GRU).
  Tensor<T> step(const Tensor<T>& x, const Tensor<T>& h);
  /// (h_t, c_t) from x_t, h_{t-1} and c_{t-1} (LSTM).
  std::pair<Tensor<T>, Tensor<T>> step(const Tensor<T>& x, const Tensor<T>& h, const Tensor<T>& c);
  /// One step from a zero state: h_t.
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string kind() const override { return std::string(detail::cell_name(kind_)) + "Cell"; }
  std::string describe() const override {
    return kind() + "(" + std::to_string(input_) + " -> " + std::to_string(hidden_) + ")";
  }
  Index input_size() const noexcept { return input_; }
  Index hidden_size() const noexcept { return hidden_; }

 private:
  Tensor<T> gates(const Tensor<T>& x, const Tensor<T>& h, Tensor<T>& xg) const;
  CellKind kind_;
  Index input_, hidden_;
  RnnNonlinearity act_;
  Tensor<T> w_ih_, w_hh_, b_ih_, b_hh_;
};

template <Scalar T>
Cell<T>::Cell(CellKind kind, Index input_size, Index hidden_size, RecurrentOptions opt)
    : kind_(kind), input_(input_size), hidden_(hidden_size), act_(opt.nonlinearity) {
  if (input_size <= 0 || hidden_size <= 0)
    throw ValueError(gradscope::detail::cat(detail::cell_name(kind), "Cell: needs positive sizes, ",
                                            "got input ", input_size, ", hidden ", hidden_size));
  const Index G = detail::gates_of(kind), H = hidden_size;
  if (H > std::numeric_limits<Index>::max() / G)
    throw ValueError(
        gradscope::detail::cat(detail::cell_name(kind), "Cell: hidden size ", H, " is too large"));
  gradscope::detail::check_extent<T>(detail::cell_name(kind), G * H, std::max(input_size, H));
  Rng& rng = opt.rng ? *opt.rng : default_rng();
  Matrix<T> w_ih(G * H, input_size), w_hh(G * H, H);
  detail::init_gates(w_ih, G, opt.input_init, rng);
  detail::init_gates(w_hh, G, opt.recurrent_init, rng);
  w_ih_ = this->register_parameter("weight_ih", Tensor<T>::parameter(std::move(w_ih)));
  w_hh_ = this->register_parameter("weight_hh", Tensor<T>::parameter(std::move(w_hh)));
  if (opt.bias) {
    Matrix<T> b_ih = Matrix<T>::Zero(1, G * H);
    if (kind == CellKind::lstm) b_ih.middleCols(H, H).setConstant(static_cast<T>(opt.forget_bias));
    b_ih_ = this->register_parameter("bias_ih", Tensor<T>::parameter(std::move(b_ih), 1));
    b_hh_ = this->register_parameter("bias_hh", Tensor<T>::parameter(Matrix<T>::Zero(1, G * H), 1));
  }
}

template <Scalar T>
Tensor<T> Cell<T>::gates(const Tensor<T>& x, const Tensor<T>& h, Tensor<T>& xg) const {
  if (x.cols() != input_ || h.cols() != hidden_ || x.rows() != h.rows())
    throw ShapeError(gradscope::detail::cat(
        this->label(), ": x ", x.shape(), " and h ", h.shape(), " do not fit a cell of input ",
        input_, " and hidden ", hidden_, " (expected [B, ", input_, "] and [B, ", hidden_, "])"));
  xg = linear(x, w_ih_, b_ih_);
  return linear(h, w_hh_, b_hh_);
}

template <Scalar T>
Tensor<T> Cell<T>::step(const Tensor<T>& x, const Tensor<T>& h) {
  if (kind_ == CellKind::lstm)
    throw UsageError(this->label() + ": an LSTM cell's step needs c: step(x, h, c)");
  LabelScope scope(this->label().c_str());
  Tensor<T> xg;
  const Tensor<T> gh = gates(x, h, xg);
  return kind_ == CellKind::gru ? gru_cell(xg, gh, h) : rnn_cell(xg, gh, act_);
}

template <Scalar T>
std::pair<Tensor<T>, Tensor<T>> Cell<T>::step(const Tensor<T>& x, const Tensor<T>& h,
                                              const Tensor<T>& c) {
  if (kind_ != CellKind::lstm)
    throw UsageError(this->label() + ": only an LSTM cell has a c state: step(x, h)");
  LabelScope scope(this->label().c_str());
  Tensor<T> xg;
  const Tensor<T> gh = gates(x, h, xg);
  if (c.rows() != h.rows() || c.cols() != hidden_)
    throw ShapeError(gradscope::detail::cat(this->label(), ": c has shape ", c.shape(),
                                            "; expected [", h.rows(), ", ", hidden_, "]"));
  const Tensor<T> state = lstm_cell(xg, gh, c);
  return {slice_rows(state, 0, h.rows()), slice_rows(state, h.rows(), h.rows())};
}

template <Scalar T>
Tensor<T> Cell<T>::forward(const Tensor<T>& x) {
  const Tensor<T> zero = Tensor<T>::zeros(x.rows(), hidden_);
  return kind_ == CellKind::lstm ? step(x, zero, zero).first : step(x, zero);
}

/// One step of an Elman RNN (PyTorch's nn.RNNCell).
template <Scalar T>
struct RNNCell : Cell<T> {
  RNNCell(Index input_size, Index hidden_size, RecurrentOptions opt = {})
      : Cell<T>(CellKind::rnn, input_size, hidden_size, opt) {}
};
/// One step of an LSTM (PyTorch's nn.LSTMCell).
template <Scalar T>
struct LSTMCell : Cell<T> {
  LSTMCell(Index input_size, Index hidden_size, RecurrentOptions opt = {})
      : Cell<T>(CellKind::lstm, input_size, hidden_size, opt) {}
};
/// One step of a GRU (PyTorch's nn.GRUCell).
template <Scalar T>
struct GRUCell : Cell<T> {
  GRUCell(Index input_size, Index hidden_size, RecurrentOptions opt = {})
      : Cell<T>(CellKind::gru, input_size, hidden_size, opt) {}
};

/// A lookup table of `num` vectors of `dim` (PyTorch's nn.Embedding, weight [num, dim] drawn from
/// N(0, 1)): forward(x) reads x [B, T] as indices (whole numbers in [0, num)) and returns their
/// vectors side by side, [B, T*dim]: T steps of dim features, the input of a recurrent layer.
template <Scalar T>
class Embedding : public Module<T> {
 public:
  Embedding(Index num, Index dim, const init::Initializer& init = init::normal(1.0),
            Rng* rng = nullptr);
  Tensor<T> forward(const Tensor<T>& x) override;
  /// The vectors of `indices`, [indices.size(), dim].
  Tensor<T> lookup(std::span<const int> indices);
  std::string kind() const override { return "Embedding"; }
  std::string describe() const override {
    return "Embedding(" + std::to_string(num_) + " x " + std::to_string(dim_) + ")";
  }
  Tensor<T>& weight() noexcept { return weight_; }
  Index num_embeddings() const noexcept { return num_; }
  Index embedding_dim() const noexcept { return dim_; }

 private:
  Index num_, dim_;
  Tensor<T> weight_;
  std::vector<int> indices_;  // capacity kept: no allocation per batch
};

template <Scalar T>
Embedding<T>::Embedding(Index num, Index dim, const init::Initializer& init, Rng* rng)
    : num_(num), dim_(dim) {
  if (num <= 0 || dim <= 0)
    throw ValueError(
        gradscope::detail::cat("Embedding: needs positive sizes, got ", num, " x ", dim));
  if (num > std::numeric_limits<int>::max())
    throw ValueError(gradscope::detail::cat("Embedding: at most ", std::numeric_limits<int>::max(),
                                            " vectors, got ", num));
  gradscope::detail::check_extent<T>("Embedding", num, dim);
  Matrix<T> W(num, dim);
  Rng& g = rng ? *rng : default_rng();
  // The table is drawn like a bias-free weight, except that the fan-based schemes see the
  // table's own shape (fan_in = dim).
  init.weight(W, g);
  weight_ = this->register_parameter("weight", Tensor<T>::parameter(std::move(W)));
}

template <Scalar T>
Tensor<T> Embedding<T>::lookup(std::span<const int> indices) {
  return gather_rows(weight_, indices);
}

template <Scalar T>
Tensor<T> Embedding<T>::forward(const Tensor<T>& x) {
  const auto v = x.value();
  indices_.resize(static_cast<std::size_t>(v.size()));
  for (Index i = 0; i < v.size(); ++i) {
    const T raw = v.data()[i];
    if (!(raw >= 0 && raw < static_cast<T>(num_)) || raw != std::floor(raw))
      throw ValueError(gradscope::detail::cat(
          this->label(), ": input (", i / v.cols(), ", ", i % v.cols(), ") is ", raw,
          "; indices must be whole numbers in [0, ", num_, ")"));
    indices_[static_cast<std::size_t>(i)] = static_cast<int>(raw);
  }
  return reshape(gather_rows(weight_, std::span<const int>(indices_)), v.rows(), v.cols() * dim_);
}

}  // namespace gradscope::nn
