#include <catch2/catch.hpp>

#include <gradscope/data/data.hpp>

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

namespace gs = gradscope;
namespace data = gradscope::data;

namespace {
data::Dataset<float> numbered(gs::Index n) {
  data::Dataset<float> d;
  d.images.resize(n, 3);
  d.labels.resize(static_cast<std::size_t>(n));
  for (gs::Index i = 0; i < n; ++i) {
    d.images.row(i).setConstant(static_cast<float>(i));
    d.labels[static_cast<std::size_t>(i)] = static_cast<int>(i % 10);
  }
  return d;
}
}  // namespace

TEST_CASE("DataLoader covers every row once per epoch, in batches", "[data][loader]") {
  const auto d = numbered(10);
  data::DataLoader<float> loader(d, {.batch_size = 4, .shuffle = true, .seed = 5});
  CHECK(loader.batches() == 3);
  std::vector<std::vector<int>> epochs;
  for (int e = 0; e < 2; ++e) {
    std::vector<int> seen;
    std::vector<gs::Index> sizes;
    for (auto& [x, y] : loader) {
      sizes.push_back(x.rows());
      REQUIRE(static_cast<gs::Index>(y.size()) == x.rows());
      for (gs::Index i = 0; i < x.rows(); ++i) {
        const int row = static_cast<int>(x.value()(i, 0));
        seen.push_back(row);
        CHECK(y[static_cast<std::size_t>(i)] == row % 10);  // labels travel with their images
      }
    }
    CHECK(sizes == std::vector<gs::Index>{4, 4, 2});
    std::vector<int> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    epochs.push_back(seen);
  }
  CHECK(epochs[0] != epochs[1]);  // reshuffled
  // The same seed gives the same order.
  data::DataLoader<float> again(d, {.batch_size = 4, .shuffle = true, .seed = 5});
  std::vector<int> first;
  for (auto& b : again)
    for (gs::Index i = 0; i < b.x.rows(); ++i) first.push_back(static_cast<int>(b.x.value()(i, 0)));
  CHECK(first == epochs[0]);
}

TEST_CASE("DataLoader set_epoch resumes the shuffling of an uninterrupted run", "[data][loader]") {
  // Each epoch shuffles the previous epoch's order, so a resumed run that starts a fresh loader
  // at epoch 3 sees other batches than the run it continues, unless set_epoch replays them.
  const auto d = numbered(13);
  auto order_of_epoch = [](data::DataLoader<float>& l) {
    std::vector<int> o;
    for (auto& b : l)
      for (gs::Index i = 0; i < b.x.rows(); ++i) o.push_back(static_cast<int>(b.x.value()(i, 0)));
    return o;
  };
  data::DataLoader<float> uninterrupted(d, {.batch_size = 4, .seed = 9});
  std::vector<std::vector<int>> epochs;
  for (int e = 0; e < 5; ++e) epochs.push_back(order_of_epoch(uninterrupted));
  REQUIRE(epochs[3] != epochs[2]);
  data::DataLoader<float> resumed(d, {.batch_size = 4, .seed = 9});
  resumed.set_epoch(3);
  CHECK(resumed.epoch() == 3);
  CHECK(order_of_epoch(resumed) == epochs[3]);
  CHECK(order_of_epoch(resumed) == epochs[4]);
  // Back to the start, from anywhere.
  resumed.set_epoch(0);
  CHECK(order_of_epoch(resumed) == epochs[0]);
  data::DataLoader<float> fresh(d, {.batch_size = 4, .seed = 9});
  CHECK(order_of_epoch(fresh) != epochs[3]);  // what a resume without set_epoch would get
  CHECK_THROWS_AS(resumed.set_epoch(-1), gs::ValueError);
}

TEST_CASE("DataLoader drop_last and no shuffle", "[data][loader]") {
  const auto d = numbered(10);
  data::DataLoader<float> loader(d, {.batch_size = 4, .shuffle = false, .drop_last = true});
  CHECK(loader.batches() == 2);
  int batches = 0, expected = 0;
  for (auto& [x, y] : loader) {
    ++batches;
    CHECK(x.rows() == 4);
    for (gs::Index i = 0; i < 4; ++i) CHECK(static_cast<int>(x.value()(i, 0)) == expected++);
  }
  CHECK(batches == 2);
  CHECK_THROWS_AS(data::DataLoader<float>(d, {.batch_size = 0}), gs::ValueError);
}

TEST_CASE("DataLoader reuses its batch buffers across epochs", "[data][loader]") {
  const auto d = numbered(10);
  data::DataLoader<float> loader(d, {.batch_size = 4});
  std::set<const float*> buffers;
  for (int e = 0; e < 3; ++e)
    for (auto& b : loader) buffers.insert(b.x.value().data());
  CHECK(buffers.size() == 2);  // one full-batch buffer and one tail buffer, for every epoch
}

TEST_CASE("Dataset split, subset and standardisation", "[data][dataset]") {
  const auto d = numbered(20);
  auto [a, b] = d.split(5, 1);
  CHECK(a.size() == 15);
  CHECK(b.size() == 5);
  std::set<int> rows;
  for (const auto* part : {&a, &b})
    for (gs::Index i = 0; i < part->size(); ++i) rows.insert(static_cast<int>(part->images(i, 0)));
  CHECK(rows.size() == 20);
  CHECK_THROWS_AS(d.split(21), gs::ValueError);
  CHECK_THROWS_AS(d.split(-1), gs::ValueError);
  // Indices outside the rows were read out of bounds.
  CHECK_THROWS_WITH(d.subset({0, 20}), Catch::Contains("index 1 is 20, outside the 20 rows"));
  CHECK_THROWS_WITH(d.subset({-1}), Catch::Contains("index 0 is -1"));
  CHECK(d.subset({19, 0}).labels == std::vector<int>{9, 0});
  auto s = d;
  const auto [mean, sd] = s.mean_std();
  CHECK(mean == Approx(9.5));
  s.standardize(mean, sd);
  const auto [m2, sd2] = s.mean_std();
  CHECK(m2 == Approx(0).margin(1e-5));
  CHECK(sd2 == Approx(1).epsilon(1e-4));
}

TEST_CASE("synthetic_digits is deterministic, balanced and learnable-looking",
          "[data][synthetic]") {
  const auto a = data::synthetic_digits<float>(200, 3);
  const auto b = data::synthetic_digits<float>(200, 3);
  const auto c = data::synthetic_digits<float>(200, 4);
  CHECK(a.images == b.images);
  CHECK(a.labels == b.labels);
  CHECK(a.images != c.images);
  CHECK(a.features() == 784);
  CHECK(a.images.minCoeff() >= 0.0f);
  CHECK(a.images.maxCoeff() <= 1.0f);
  std::vector<int> counts(10, 0);
  for (int l : a.labels) ++counts[static_cast<std::size_t>(l)];
  for (int k : counts) CHECK(k == 20);
  // Class means differ clearly: the digit "1" (two right segments) has far less ink than "8".
  double ink1 = 0, ink8 = 0;
  for (gs::Index i = 0; i < a.size(); ++i) {
    if (a.labels[static_cast<std::size_t>(i)] == 1) ink1 += a.images.row(i).sum();
    if (a.labels[static_cast<std::size_t>(i)] == 8) ink8 += a.images.row(i).sum();
  }
  CHECK(ink8 > 2 * ink1);
  CHECK_THROWS_AS(data::synthetic_digits<float>(0), gs::ValueError);
  CHECK_THROWS_WITH(data::synthetic_digits<float>(-3), Catch::Contains("got -3"));
  // 784 floats per image: more images than any array can hold is refused before allocating.
  CHECK_THROWS_WITH(data::synthetic_digits<float>(std::int64_t{1} << 60),
                    Catch::Contains("synthetic_digits: size 1152921504606846976 x 784 is too "
                                    "large"));
}

TEST_CASE("DataLoader refuses sizes it cannot serve", "[data][loader]") {
  auto d = numbered(10);
  CHECK_THROWS_WITH(data::DataLoader<float>(d, {.batch_size = 0}),
                    Catch::Contains("batch_size must be > 0, got 0"));
  CHECK_THROWS_WITH(data::DataLoader<float>(d, {.batch_size = -4}), Catch::Contains("got -4"));
  // Labels that do not match the images were read out of bounds by fill().
  d.labels.pop_back();
  CHECK_THROWS_WITH(data::DataLoader<float>(d, {.batch_size = 4}),
                    Catch::Contains("the dataset has 10 images but 9 labels"));
}
