#pragma once
// The explicit instantiations behind GRADSCOPE_EXTERN_TEMPLATES, one list per component.
//
// GRADSCOPE_<COMPONENT>_INSTANCES(PREFIX, T) names every heavy template of that component for the
// scalar type T. Each component header expands it with PREFIX = `extern template` at its end when
// GRADSCOPE_EXTERN_TEMPLATES is defined, so translation units that include it do not instantiate
// (parse, optimise and emit) those templates themselves; <gradscope/instantiate.hpp> expands every
// list with PREFIX = `template`, in the one source file that provides the instantiations.
//
// A template missing from a list is simply instantiated where it is used, as without the macro:
// these lists are a compile-time saving, never a correctness matter. This header defines macros
// only and includes nothing, so any component header may include it.

#define GRADSCOPE_CORE_INSTANCES(PREFIX, T)                                                        \
  /* Tensor and Tape: only their out-of-line members. An explicit instantiation of the whole       \
     class would emit every inline member too, and GCC then inlines the hot ones (shape(),         \
     the node append) less often in the ops: 14% more instructions per recorded op. */             \
  PREFIX gradscope::ConstMatrixMap<T> gradscope::Tensor<T>::grad() const;                          \
  PREFIX gradscope::HookHandle gradscope::Tensor<T>::register_hook(                                \
      typename gradscope::Tensor<T>::HookFn);                                                      \
  PREFIX gradscope::HookHandle gradscope::Tensor<T>::register_post_accumulate_hook(                \
      typename gradscope::Tensor<T>::HookFn);                                                      \
  PREFIX gradscope::HookHandle gradscope::Tensor<T>::retain_grad();                                \
  PREFIX void gradscope::Tensor<T>::throw_bad_rank(gradscope::Index, gradscope::Index, int);       \
  PREFIX void gradscope::Tensor<T>::throw_undefined(const char*);                                  \
  PREFIX void gradscope::Tensor<T>::throw_not_persistent(const char*);                             \
  PREFIX void gradscope::Tensor<T>::throw_not_single() const;                                      \
  PREFIX gradscope::Tape<T>::Tape();                                                               \
  PREFIX gradscope::Tape<T>::~Tape();                                                              \
  PREFIX void gradscope::Tape<T>::backward(const gradscope::Tensor<T>&);                           \
  PREFIX void gradscope::Tape<T>::backward(const gradscope::Tensor<T>&,                            \
                                           const Eigen::Ref<const gradscope::Matrix<T>>&);         \
  PREFIX std::string gradscope::Tape<T>::listing() const;                                          \
  PREFIX gradscope::HookHandle gradscope::Tape<T>::add_hook(                                       \
      std::uint32_t, typename gradscope::Tensor<T>::HookFn);                                       \
  PREFIX gradscope::HookHandle gradscope::Tape<T>::retain(std::uint32_t);                          \
  PREFIX void gradscope::Tape<T>::throw_not_live(const gradscope::Tensor<T>&, const char*) const;  \
  PREFIX void gradscope::Tape<T>::check_root(const gradscope::Tensor<T>&, const char*) const;      \
  PREFIX void gradscope::Tape<T>::sweep(std::uint32_t,                                             \
                                        const Eigen::Ref<const gradscope::Matrix<T>>*);            \
  PREFIX void gradscope::Tape<T>::check_backward(const gradscope::detail::Node<T>&) const;         \
  PREFIX void gradscope::detail::backward_node<T>(gradscope::Tape<T>&,                             \
                                                  gradscope::detail::Node<T>&);                    \
  PREFIX gradscope::Tensor<T> gradscope::add<T>(const gradscope::Tensor<T>&,                       \
                                                const gradscope::Tensor<T>&);                      \
  PREFIX gradscope::Tensor<T> gradscope::sub<T>(const gradscope::Tensor<T>&,                       \
                                                const gradscope::Tensor<T>&);                      \
  PREFIX gradscope::Tensor<T> gradscope::mul<T>(const gradscope::Tensor<T>&,                       \
                                                const gradscope::Tensor<T>&);                      \
  PREFIX gradscope::Tensor<T> gradscope::div<T>(const gradscope::Tensor<T>&,                       \
                                                const gradscope::Tensor<T>&);                      \
  PREFIX gradscope::Tensor<T> gradscope::neg<T>(const gradscope::Tensor<T>&);                      \
  PREFIX gradscope::Tensor<T> gradscope::scale<T>(const gradscope::Tensor<T>&, T);                 \
  PREFIX gradscope::Tensor<T> gradscope::add_scalar<T>(const gradscope::Tensor<T>&, T);            \
  PREFIX gradscope::Tensor<T> gradscope::pow<T>(const gradscope::Tensor<T>&, T);                   \
  PREFIX gradscope::Tensor<T> gradscope::exp<T>(const gradscope::Tensor<T>&);                      \
  PREFIX gradscope::Tensor<T> gradscope::log<T>(const gradscope::Tensor<T>&);                      \
  PREFIX gradscope::Tensor<T> gradscope::sqrt<T>(const gradscope::Tensor<T>&);                     \
  PREFIX gradscope::Tensor<T> gradscope::square<T>(const gradscope::Tensor<T>&);                   \
  PREFIX gradscope::Tensor<T> gradscope::abs<T>(const gradscope::Tensor<T>&);                      \
  PREFIX gradscope::Tensor<T> gradscope::clamp<T>(const gradscope::Tensor<T>&, T, T);              \
  PREFIX gradscope::Tensor<T> gradscope::sigmoid<T>(const gradscope::Tensor<T>&);                  \
  PREFIX gradscope::Tensor<T> gradscope::tanh<T>(const gradscope::Tensor<T>&);                     \
  PREFIX gradscope::Tensor<T> gradscope::relu<T>(const gradscope::Tensor<T>&);                     \
  PREFIX gradscope::Tensor<T> gradscope::leaky_relu<T>(const gradscope::Tensor<T>&, T);            \
  PREFIX gradscope::Tensor<T> gradscope::elu<T>(const gradscope::Tensor<T>&, T);                   \
  PREFIX gradscope::Tensor<T> gradscope::matmul<T>(                                                \
      const gradscope::Tensor<T>&, const gradscope::Tensor<T>&, gradscope::MatmulOptions);         \
  PREFIX gradscope::Tensor<T> gradscope::transpose<T>(const gradscope::Tensor<T>&);                \
  PREFIX gradscope::Tensor<T> gradscope::sum<T>(const gradscope::Tensor<T>&, gradscope::Reduce);   \
  PREFIX gradscope::Tensor<T> gradscope::mean<T>(const gradscope::Tensor<T>&, gradscope::Reduce);  \
  PREFIX gradscope::Tensor<T> gradscope::softmax<T>(const gradscope::Tensor<T>&);                  \
  PREFIX gradscope::Tensor<T> gradscope::log_softmax<T>(const gradscope::Tensor<T>&);              \
  PREFIX gradscope::Tensor<T> gradscope::linear<T>(                                                \
      const gradscope::Tensor<T>&, const gradscope::Tensor<T>&, const gradscope::Tensor<T>&);      \
  PREFIX gradscope::Tensor<T> gradscope::softmax_cross_entropy<T>(const gradscope::Tensor<T>&,     \
                                                                  std::span<const int>);           \
  PREFIX gradscope::Tensor<T> gradscope::binary_cross_entropy_with_logits<T>(                      \
      const gradscope::Tensor<T>&, const gradscope::Tensor<T>&);                                   \
  PREFIX gradscope::Tensor<T> gradscope::batch_norm<T>(                                            \
      const gradscope::Tensor<T>&, const gradscope::Tensor<T>&, const gradscope::Tensor<T>&,       \
      gradscope::Tensor<T>&, gradscope::Tensor<T>&, const gradscope::BatchNormOptions<T>&);        \
  PREFIX gradscope::Tensor<T> gradscope::dropout<T>(const gradscope::Tensor<T>&, double,           \
                                                    gradscope::Rng&);                              \
  PREFIX gradscope::Tensor<T> gradscope::softplus<T>(const gradscope::Tensor<T>&);                 \
  PREFIX gradscope::Tensor<T> gradscope::log1p<T>(const gradscope::Tensor<T>&);                    \
  PREFIX gradscope::Tensor<T> gradscope::reshape<T>(const gradscope::Tensor<T>&, gradscope::Index, \
                                                    gradscope::Index);                             \
  PREFIX gradscope::Tensor<T> gradscope::slice_rows<T>(const gradscope::Tensor<T>&,                \
                                                       gradscope::Index, gradscope::Index);        \
  PREFIX gradscope::Tensor<T> gradscope::slice_cols<T>(const gradscope::Tensor<T>&,                \
                                                       gradscope::Index, gradscope::Index);        \
  PREFIX gradscope::Tensor<T> gradscope::concat_rows<T>(std::span<const gradscope::Tensor<T>>);    \
  PREFIX gradscope::Tensor<T> gradscope::concat_cols<T>(std::span<const gradscope::Tensor<T>>);    \
  PREFIX gradscope::Tensor<T> gradscope::stack<T>(std::span<const gradscope::Tensor<T>>);          \
  PREFIX std::vector<gradscope::Tensor<T>> gradscope::split_cols<T>(const gradscope::Tensor<T>&,   \
                                                                    gradscope::Index);             \
  PREFIX gradscope::Tensor<T> gradscope::gather_rows<T>(const gradscope::Tensor<T>&,               \
                                                        std::span<const int>);                     \
  PREFIX gradscope::Tensor<T> gradscope::max<T>(const gradscope::Tensor<T>&, gradscope::Reduce);   \
  PREFIX std::vector<gradscope::Index> gradscope::argmax<T>(const gradscope::Tensor<T>&,           \
                                                            gradscope::Reduce);                    \
  PREFIX gradscope::Tensor<T> gradscope::logsumexp<T>(const gradscope::Tensor<T>&,                 \
                                                      gradscope::Reduce);                          \
  PREFIX gradscope::Tensor<T> gradscope::where<T>(                                                 \
      const gradscope::Tensor<T>&, const gradscope::Tensor<T>&, const gradscope::Tensor<T>&);      \
  PREFIX gradscope::Tensor<T> gradscope::rnn_cell<T>(                                              \
      const gradscope::Tensor<T>&, const gradscope::Tensor<T>&, gradscope::RnnNonlinearity,        \
      gradscope::Index);                                                                           \
  PREFIX gradscope::Tensor<T> gradscope::lstm_cell<T>(                                             \
      const gradscope::Tensor<T>&, const gradscope::Tensor<T>&, const gradscope::Tensor<T>&,       \
      gradscope::Index);                                                                           \
  PREFIX gradscope::Tensor<T> gradscope::gru_cell<T>(                                              \
      const gradscope::Tensor<T>&, const gradscope::Tensor<T>&, const gradscope::Tensor<T>&,       \
      gradscope::Index);

#define GRADSCOPE_NN_INSTANCES(PREFIX, T)                                            \
  PREFIX class gradscope::nn::Module<T>;                                             \
  PREFIX class gradscope::nn::Dense<T>;                                              \
  PREFIX class gradscope::nn::Activation<T>;                                         \
  PREFIX struct gradscope::nn::Sigmoid<T>;                                           \
  PREFIX struct gradscope::nn::Tanh<T>;                                              \
  PREFIX struct gradscope::nn::ReLU<T>;                                              \
  PREFIX struct gradscope::nn::LeakyReLU<T>;                                         \
  PREFIX struct gradscope::nn::ELU<T>;                                               \
  PREFIX struct gradscope::nn::Identity<T>;                                          \
  PREFIX class gradscope::nn::BatchNorm<T>;                                          \
  PREFIX class gradscope::nn::Dropout<T>;                                            \
  PREFIX class gradscope::nn::Sequential<T>;                                         \
  PREFIX class gradscope::nn::Residual<T>;                                           \
  PREFIX class gradscope::nn::Recurrent<T>;                                          \
  PREFIX struct gradscope::nn::RNN<T>;                                               \
  PREFIX struct gradscope::nn::LSTM<T>;                                              \
  PREFIX struct gradscope::nn::GRU<T>;                                               \
  PREFIX class gradscope::nn::Cell<T>;                                               \
  PREFIX struct gradscope::nn::RNNCell<T>;                                           \
  PREFIX struct gradscope::nn::LSTMCell<T>;                                          \
  PREFIX struct gradscope::nn::GRUCell<T>;                                           \
  PREFIX class gradscope::nn::Embedding<T>;                                          \
  PREFIX std::shared_ptr<gradscope::nn::Module<T>> gradscope::nn::residual_block<T>( \
      gradscope::Index, gradscope::nn::ResidualOptions, gradscope::Rng*);            \
  PREFIX double gradscope::nn::accuracy<T>(const gradscope::Tensor<T>&, std::span<const int>);

#define GRADSCOPE_OPTIM_INSTANCES(PREFIX, T)                                                      \
  PREFIX class gradscope::optim::Optimizer<T>;                                                    \
  PREFIX class gradscope::optim::SGD<T>;                                                          \
  PREFIX class gradscope::optim::Adam<T>;                                                         \
  PREFIX class gradscope::optim::AdamW<T>;                                                        \
  PREFIX class gradscope::optim::RMSprop<T>;                                                      \
  PREFIX void gradscope::optim::clip_grad_value<T>(const std::vector<gradscope::Tensor<T>>&,      \
                                                   std::type_identity_t<T>);                      \
  PREFIX double gradscope::optim::grad_norm<T>(const std::vector<gradscope::Tensor<T>>&, double); \
  PREFIX double gradscope::optim::clip_grad_norm<T>(const std::vector<gradscope::Tensor<T>>&,     \
                                                    double, double, gradscope::optim::NonFinite);

#define GRADSCOPE_DIAGNOSTICS_INSTANCES(PREFIX, T) \
  PREFIX class gradscope::diagnostics::GradientMonitor<T>;

// io and data (their headers need nlohmann/json and zlib): instantiate.hpp expands these only
// when GRADSCOPE_INSTANTIATE_IO / GRADSCOPE_INSTANTIATE_DATA is defined.
#define GRADSCOPE_IO_INSTANCES(PREFIX, T)                                                        \
  PREFIX void gradscope::io::save_checkpoint<T>(                                                 \
      const std::filesystem::path&, const gradscope::nn::Module<T>&,                             \
      std::type_identity_t<gradscope::optim::Optimizer<T>>*, const gradscope::io::Metadata&,     \
      const gradscope::io::SaveOptions&);                                                        \
  PREFIX std::vector<std::byte> gradscope::io::encode_checkpoint<T>(                             \
      const gradscope::nn::Module<T>&, std::type_identity_t<gradscope::optim::Optimizer<T>>*,    \
      const gradscope::io::Metadata&);                                                           \
  PREFIX gradscope::io::Metadata gradscope::io::load_checkpoint<T>(                              \
      const gradscope::io::SafetensorsFile&, gradscope::nn::Module<T>&,                          \
      std::type_identity_t<gradscope::optim::Optimizer<T>>*, const gradscope::io::LoadOptions&); \
  PREFIX gradscope::io::Metadata gradscope::io::load_checkpoint<T>(                              \
      const std::filesystem::path&, gradscope::nn::Module<T>&,                                   \
      std::type_identity_t<gradscope::optim::Optimizer<T>>*, const gradscope::io::LoadOptions&); \
  PREFIX void gradscope::io::load_safetensors<T>(const gradscope::io::SafetensorsFile&,          \
                                                 const std::vector<gradscope::NamedTensor<T>>&,  \
                                                 const gradscope::io::LoadOptions&);             \
  PREFIX void gradscope::io::load_safetensors<T>(const std::filesystem::path&,                   \
                                                 const std::vector<gradscope::NamedTensor<T>>&,  \
                                                 const gradscope::io::LoadOptions&);             \
  PREFIX std::vector<std::byte> gradscope::io::encode_safetensors<T>(                            \
      const std::vector<gradscope::NamedTensor<T>>&, const gradscope::io::Metadata&);            \
  PREFIX void gradscope::io::save_safetensors<T>(                                                \
      const std::filesystem::path&, const std::vector<gradscope::NamedTensor<T>>&,               \
      const gradscope::io::Metadata&, const gradscope::io::SaveOptions&);

#define GRADSCOPE_DATA_INSTANCES(PREFIX, T)                                                 \
  PREFIX struct gradscope::data::Dataset<T>;                                                \
  PREFIX class gradscope::data::DataLoader<T>;                                              \
  PREFIX gradscope::data::Dataset<T> gradscope::data::load_idx_dataset<T>(                  \
      const std::string&, const std::string&, int);                                         \
  PREFIX gradscope::data::Dataset<T> gradscope::data::synthetic_digits<T>(gradscope::Index, \
                                                                          std::uint64_t);
