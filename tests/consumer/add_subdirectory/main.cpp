#include <gradscope/gradscope.hpp>

#include <cstdio>

int main() {
  std::printf("gradscope %s (add_subdirectory)\n", gradscope::version());
  return 0;
}
