# cmake -DNM=<nm> -DOBJECT=<probe object> [-DDUMP=<GCC's -fdump-tree-original file>]
#       -P check_symbols.cmake
#
# Each function below must be referenced by the probe's object file and defined nowhere in it
# (with GRADSCOPE_EXTERN_TEMPLATES it is compiled once, in the instantiation unit). With GCC's
# dump of every function body the front end produced (DUMP), none of them may have a body there
# either: an inline member is instantiated for inlining despite an extern template declaration,
# and costs compile time even where the object file ends up only calling it.
set(compiled_once
    "gradscope::Tape<float>::Tape()"
    "gradscope::Tape<float>::backward(gradscope::Tensor<float> const&)"
    "gradscope::Tensor<float>::grad() const"
    "gradscope::nn::Module<float>::operator()(gradscope::Tensor<float> const&)"
    "gradscope::nn::Module<float>::parameters() const"
    "gradscope::nn::Dense<float>::Dense("
    "gradscope::nn::BatchNorm<float>::BatchNorm("
    "gradscope::nn::residual_block<float>("
    "gradscope::optim::Adam<float>::Adam("
    "gradscope::optim::Optimizer<float>::step()"
    "gradscope::optim::clip_grad_norm<float>("
    "gradscope::optim::schedule::cosine("
    "gradscope::init::by_name("
    "gradscope::diagnostics::GradientMonitor<float>::GradientMonitor("
    "gradscope::diagnostics::GradientMonitor<float>::record_gradients(double)"
    "gradscope::diagnostics::GradientMonitor<float>::report[abi:cxx11]() const"
    "gradscope::data::DataLoader<float>::DataLoader("
    "gradscope::data::synthetic_digits<float>("
    "gradscope::util::ArgParser::parse(int, char const* const*)"
    "gradscope::util::ArgParser::add_value("
    "gradscope::util::Progress::update(long long)"
    "gradscope::softmax_cross_entropy<float>(")

execute_process(COMMAND "${NM}" -C "${OBJECT}" OUTPUT_VARIABLE listing RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} -C ${OBJECT} failed (${rc})")
endif()
string(REPLACE "\n" ";" lines "${listing}")
set(undefined "")
set(defined "")
foreach(line IN LISTS lines)
  if(line MATCHES "^ +U (.*)$")
    string(APPEND undefined "${CMAKE_MATCH_1}\n")
  elseif(line MATCHES "^[0-9a-f]+ [A-Za-z] (.*)$")
    string(APPEND defined "${CMAKE_MATCH_1}\n")
  endif()
endforeach()

set(bodies "")
if(DUMP)
  file(STRINGS "${DUMP}" bodies REGEX "^;; Function ")
  string(REPLACE ";" "\n" bodies "${bodies}")
endif()

set(failures 0)
foreach(symbol IN LISTS compiled_once)
  if(DUMP)
    # The dump names templates by their pattern: Tape<T>::Tape(...) [with T = float].
    string(FIND "${symbol}" "(" paren)
    math(EXPR paren "${paren} + 1")
    string(SUBSTRING "${symbol}" 0 ${paren} key)
    string(REPLACE "<float>::" "<T>::" key "${key}")
    string(REPLACE "<float>(" "(" key "${key}")
    string(REPLACE "[abi:cxx11]" "" key "${key}")
    string(FIND "${bodies}" "${key}" at_body)
    if(NOT at_body EQUAL -1)
      message(SEND_ERROR "instantiated in the probe (its body is compiled in every file that "
                         "uses it, an inline member?): ${symbol}")
      math(EXPR failures "${failures} + 1")
      continue()
    endif()
  endif()
  string(FIND "${defined}" "${symbol}" at_defined)
  string(FIND "${undefined}" "${symbol}" at_undefined)
  if(NOT at_defined EQUAL -1)
    message(SEND_ERROR "defined in the probe (compiled in every file that uses it): ${symbol}")
    math(EXPR failures "${failures} + 1")
  elseif(at_undefined EQUAL -1)
    message(SEND_ERROR "not referenced by the probe (the probe no longer exercises it): ${symbol}")
    math(EXPR failures "${failures} + 1")
  endif()
endforeach()
list(LENGTH compiled_once total)
if(failures GREATER 0)
  message(FATAL_ERROR "${failures} of ${total} functions are not compiled once")
endif()
message(STATUS "all ${total} functions are referenced and compiled elsewhere")
