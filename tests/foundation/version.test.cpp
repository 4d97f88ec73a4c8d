#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>  // the umbrella header must compile on its own
#include <gradscope/version.hpp>

#include <string>

TEST_CASE("version() matches the version constants", "[foundation][version]") {
  const std::string expected = std::to_string(gradscope::version_major) + "." +
                               std::to_string(gradscope::version_minor) + "." +
                               std::to_string(gradscope::version_patch);
  CHECK(std::string(gradscope::version()) == expected);
}

TEST_CASE("version() is usable in constant expressions", "[foundation][version]") {
  static_assert(gradscope::version()[0] == '0');
  static_assert(noexcept(gradscope::version()));
  STATIC_REQUIRE(gradscope::version_major >= 0);
}

#ifdef GRADSCOPE_PROJECT_VERSION
TEST_CASE("version() matches the CMake project version", "[foundation][version]") {
  CHECK(std::string(gradscope::version()) == GRADSCOPE_PROJECT_VERSION);
}
#endif
