#include <gradscope/gradscope.hpp>

#include <cstdio>

int main() {
  std::printf("gradscope %s (find_package)\n", gradscope::version());
  return 0;
}
