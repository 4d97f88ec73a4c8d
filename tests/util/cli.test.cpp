// util::ArgParser: values, flags, checks, errors naming the option, help text.
#include <gradscope/util/cli.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

using Catch::Matchers::Contains;
using gradscope::util::ArgError;
using gradscope::util::ArgParser;

namespace {
struct Opts {
  int depth = 3;
  double lr = 1e-3;
  std::uint64_t seed = 1;
  std::string act = "relu";
  std::string data;
  bool bn = false, synthetic = false;
  std::vector<int> depths = {10, 30};
};

struct Fixture {
  Opts o;
  ArgParser p{"test program"};
  Fixture() {
    p.option("--depth", o.depth, "layers").range(1, 100);
    p.option("--lr", o.lr, "learning rate").positive();
    p.option("--seed", o.seed, "seed");
    p.option("--activation", o.act, "activation").choices({"relu", "tanh"});
    p.option("--data", o.data, "directory").excludes("--synthetic");
    p.flag("--synthetic", o.synthetic, "synthetic data");
    p.flag("--batchnorm", o.bn, "batch norm", true);
    p.option("--depths", o.depths, "depths").range(2, 200);
  }
  bool parse(std::vector<std::string> args) { return p.parse(args); }
  std::string error(std::vector<std::string> args) {
    try {
      p.parse(args);
    } catch (const ArgError& e) {
      return e.what();
    }
    return "";
  }
};
}  // namespace

TEST_CASE("ArgParser: defaults stay unless given; both value forms parse", "[util][cli]") {
  Fixture f;
  REQUIRE(f.parse({}));
  CHECK(f.o.depth == 3);
  CHECK(f.o.depths == std::vector<int>{10, 30});
  REQUIRE(f.parse({"--depth", "7", "--lr=0.5", "--seed", "18446744073709551615", "--activation",
                   "tanh", "--data", "/tmp/x"}));
  CHECK(f.o.depth == 7);
  CHECK(f.o.lr == 0.5);
  CHECK(f.o.seed == 18446744073709551615ull);
  CHECK(f.o.act == "tanh");
  CHECK(f.o.data == "/tmp/x");
  CHECK(f.p.given("--depth"));
  CHECK_FALSE(f.p.given("--synthetic"));
}

TEST_CASE("ArgParser: flags, --no- forms and lists", "[util][cli]") {
  Fixture f;
  REQUIRE(f.parse({"--batchnorm", "--synthetic", "--depths", "4", "8", "16"}));
  CHECK(f.o.bn);
  CHECK(f.o.synthetic);
  CHECK(f.o.depths == std::vector<int>{4, 8, 16});
  REQUIRE(f.parse({"--no-batchnorm"}));
  CHECK_FALSE(f.o.bn);
  // --no- of a flag that is not negatable is unknown.
  CHECK_THAT(f.error({"--no-synthetic"}), Contains("unknown option '--no-synthetic'"));
  CHECK_THAT(f.error({"--synthetic=1"}), Contains("takes no value"));
}

TEST_CASE("ArgParser: --help is reported, not parsed further", "[util][cli]") {
  Fixture f;
  CHECK_FALSE(f.parse({"--depth", "5", "--help", "--nonsense"}));
  const std::string h = f.p.help();
  CHECK_THAT(h, Contains("test program"));
  CHECK_THAT(h, Contains("--depth INT"));
  CHECK_THAT(h, Contains("[1, 100]"));
  CHECK_THAT(h, Contains("one of relu, tanh"));
  CHECK_THAT(h, Contains("--batchnorm, --no-batchnorm"));
  CHECK_THAT(h, Contains("--help"));
}

TEST_CASE("ArgParser: errors name the option and the value", "[util][cli]") {
  Fixture f;
  CHECK_THAT(f.error({"--depht", "3"}),
             Contains("unknown option '--depht'") && Contains("did you mean --depth?"));
  CHECK_THAT(f.error({"--depth", "abc"}), Contains("--depth: expected an integer, got 'abc'"));
  CHECK_THAT(f.error({"--depth", "3.5"}), Contains("--depth: expected an integer"));
  CHECK_THAT(f.error({"--depth", "0"}), Contains("--depth: 0 is outside [1, 100]"));
  CHECK_THAT(f.error({"--depth"}), Contains("--depth: needs a value"));
  CHECK_THAT(f.error({"--depth", "--lr", "1"}), Contains("--depth: needs a value"));
  CHECK_THAT(f.error({"--depth", "99999999999999999999"}), Contains("out of range"));
  CHECK_THAT(f.error({"--lr", "-1"}), Contains("--lr: must be positive, got -1"));
  CHECK_THAT(f.error({"--lr", "1e-3x"}), Contains("--lr: expected a number, got '1e-3x'"));
  CHECK_THAT(f.error({"--seed", "-5"}), Contains("--seed: expected a non-negative integer"));
  CHECK_THAT(f.error({"--activation", "gelu"}),
             Contains("--activation: 'gelu' is not one of relu, tanh"));
  CHECK_THAT(f.error({"--depths", "4", "1"}), Contains("--depths: 1 is outside [2, 200]"));
  CHECK_THAT(f.error({"--data", "d", "--synthetic"}), Contains("--data excludes --synthetic"));
  CHECK_THAT(f.error({"--depth", "3", "--depth", "4"}), Contains("--depth: given more than once"));
  CHECK_THAT(f.error({"stray"}), Contains("unexpected argument 'stray'"));
}

TEST_CASE("ArgParser: a second parse applies the arguments over changed defaults", "[util][cli]") {
  // The examples' preset pattern: parse, reset the variables to a preset, parse again.
  Fixture f;
  REQUIRE(f.parse({"--depth", "9"}));
  f.o.depth = 1;
  f.o.lr = 0.25;
  REQUIRE(f.parse({"--depth", "9"}));
  CHECK(f.o.depth == 9);
  CHECK(f.o.lr == 0.25);
}

TEST_CASE("ArgParser: bad option names are programming errors", "[util][cli]") {
  ArgParser p("x");
  int v = 0;
  CHECK_THROWS_AS(p.option("depth", v, ""), std::invalid_argument);
  p.option("--v", v, "");
  CHECK_THROWS_AS(p.option("--v", v, ""), std::invalid_argument);
}

TEST_CASE("ArgParser: every floating-point option rejects non-finite values", "[util][cli]") {
  // from_chars accepts "inf", "nan" and "infinity"; a training program has no use for them (an
  // infinite learning rate writes non-finite weights in one step), so the parser refuses them
  // for every float, double and list of them, checked or not, naming the option.
  double d = 1, checked = 1;
  float f = 1;
  std::vector<double> list = {1};
  std::vector<float> flist = {1};
  ArgParser p("x");
  p.option("--d", d, "");
  p.option("--checked", checked, "").non_negative();
  p.option("--f", f, "");
  p.option("--list", list, "");
  p.option("--flist", flist, "").range(-5, 5);
  auto error = [&](std::vector<std::string> args) {
    try {
      p.parse(args);
    } catch (const ArgError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  for (const char* name : {"--d", "--checked", "--f", "--list", "--flist"})
    for (const char* bad :
         {"inf", "-inf", "+inf", "nan", "-nan", "NaN", "INF", "infinity", "nan(123)"}) {
      INFO(name << ' ' << bad);
      CHECK_THAT(error({name, bad}),
                 Contains(std::string(name) + ": expected a finite number") && Contains(bad));
    }
  // Beyond the type's range: named as such, with the type.
  CHECK_THAT(error({"--d", "1e999"}), Contains("--d: '1e999' is out of the range of a double"));
  CHECK_THAT(error({"--checked", "-1e400"}), Contains("--checked: '-1e400' is out of the range"));
  CHECK_THAT(error({"--f", "1e39"}), Contains("--f: '1e39' is out of the range of a 32-bit float"));
  CHECK_THAT(error({"--list", "1", "1e999"}), Contains("--list: '1e999' is out of the range"));
  // A list is checked element by element; finite values still parse.
  CHECK_THAT(error({"--list", "1", "nan"}), Contains("--list: expected a finite number"));
  REQUIRE(p.parse({"--d", "1e300", "--f", "3e38", "--list", "0.5", "-2", "--flist", "1.5"}));
  CHECK(d == 1e300);
  CHECK(f == 3e38f);
  CHECK(list == std::vector<double>{0.5, -2});
  CHECK(flist == std::vector<float>{1.5f});
  REQUIRE(p.parse({"--d", "+0.25"}));  // a leading '+', as strtod reads it
  CHECK(d == 0.25);
  CHECK_THAT(error({"--d", "+-1"}), Contains("--d: expected a number"));
  // Checks quote the value as given.
  CHECK_THAT(error({"--checked", "-0.1"}), Contains("--checked: must be non-negative, got -0.1"));
}

TEST_CASE("ArgParser: a float's default is shown as written", "[util][cli]") {
  float lr = 1e-3f;
  ArgParser p("x");
  p.option("--lr", lr, "learning rate");
  CHECK_THAT(p.help(), Contains("default 0.001)"));
}
