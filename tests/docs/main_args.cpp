// Prelude of the docs' fragments that are the body of a main(argc, argv)
// (scripts/check-docs.sh, <!-- docs-check: prelude main_args -->): run with no arguments.
#include <cstdio>
#include <string>
#include <vector>

// @HOIST

int main(int argc, char** argv) {
  {
    // @FRAGMENT
  }
  return 0;
}
