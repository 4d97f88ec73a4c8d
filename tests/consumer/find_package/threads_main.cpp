// A program on the prebuilt library (built without OpenMP) whose own file is compiled with
// OpenMP: its large products run on OpenMP's threads without any setup (the file registers
// OpenMP with gradscope, core/detail/parallel.hpp), and set_num_threads caps them. Run with
// OMP_NUM_THREADS=2.
#include <gradscope/gradscope.hpp>

#include <cstdio>

namespace gs = gradscope;

int main() {
  const int threads = gs::num_threads();
  const int product = gs::detail::gemm_threads(1024, 1024, 1024);  // 2^30 multiply-adds
  gs::set_num_threads(1);
  const int capped = gs::detail::gemm_threads(1024, 1024, 1024);
  gs::set_num_threads(0);
  // A product that splits, computed on the threads: ones times ones: each element is 1024.
  gs::Tensor<float> a = gs::Tensor<float>::ones(1024, 1024);
  const float corner = gs::matmul(a, a).value()(1023, 1023);
  std::printf("gradscope %s (threads: %d, product on %d, capped %d, corner %g)\n", gs::version(),
              threads, product, capped, static_cast<double>(corner));
  return threads >= 2 && product == threads && capped == 1 && corner == 1024.0f ? 0 : 1;
}
