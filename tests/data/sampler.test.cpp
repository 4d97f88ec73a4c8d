// DistributedSampler (include/gradscope/dist/sampler.hpp, which needs no MPI) and DataLoader
// over a sampler: here, so that they run in every build, with or without MPI.
#include <catch2/catch.hpp>

#include <gradscope/data/data.hpp>
#include <gradscope/dist/sampler.hpp>

#include <algorithm>
#include <set>
#include <vector>

namespace {
namespace gs = gradscope;
namespace dist = gradscope::dist;
}  // namespace

TEST_CASE("DistributedSampler: disjoint shards of each epoch's permutation", "[data][sampler]") {
  for (const bool drop_last : {false, true}) {
    const gs::Index n = 10;
    const int ranks = 3;
    std::vector<std::vector<gs::Index>> epoch0, epoch1;
    for (int r = 0; r < ranks; ++r) {
      dist::DistributedSampler s(n, r, ranks, {.seed = 4, .drop_last = drop_last});
      CHECK(s.size() == (drop_last ? 3 : 4));
      epoch0.push_back(s.indices());
      s.set_epoch(1);
      epoch1.push_back(s.indices());
    }
    // Strided positions of one permutation: together they are the permutation (padded with its
    // first rows, or cut), every shard the same length.
    std::vector<gs::Index> all;
    for (std::size_t j = 0; j < epoch0[0].size(); ++j)
      for (int r = 0; r < ranks; ++r) all.push_back(epoch0[static_cast<std::size_t>(r)][j]);
    const std::set<gs::Index> distinct(all.begin(), all.end());
    if (drop_last) {
      CHECK(all.size() == 9);
      CHECK(distinct.size() == 9);
    } else {
      CHECK(all.size() == 12);
      CHECK(distinct.size() == 10);
      CHECK(all[10] == all[0]);
      CHECK(all[11] == all[1]);
    }
    CHECK(epoch0 != epoch1);  // a new permutation each epoch
  }
  dist::DistributedSampler same(10, 1, 3, {.seed = 4});
  CHECK(same.indices() == dist::DistributedSampler(10, 1, 3, {.seed = 4}).indices());
  dist::DistributedSampler in_order(5, 0, 2, {.shuffle = false});
  CHECK(in_order.indices() == std::vector<gs::Index>{0, 2, 4});
  CHECK_THROWS_WITH(dist::DistributedSampler(10, 3, 3), Catch::Contains("rank 3 is not in [0, 3)"));
  CHECK_THROWS_WITH(dist::DistributedSampler(2, 0, 3, {.drop_last = true}),
                    Catch::Contains("2 rows cannot give 3 ranks one row each"));
}

TEST_CASE("DataLoader over a DistributedSampler: each rank's batches, one global batch per step",
          "[data][sampler]") {
  gs::data::Dataset<double> d;
  d.images.resize(7, 2);
  d.labels.resize(7);
  for (int i = 0; i < 7; ++i) {
    d.images.row(i) << i, 10 * i;
    d.labels[static_cast<std::size_t>(i)] = i;
  }
  // Per-rank batch 2 on 2 ranks over the same permutation as one process with batch 4.
  std::vector<int> seen;
  for (int r = 0; r < 2; ++r) {
    dist::DistributedSampler s(7, r, 2, {.seed = 9});
    s.set_epoch(2);
    gs::data::DataLoader<double> loader(d, s, {.batch_size = 2});
    CHECK(loader.batches() == 2);
    const auto rows = s.indices();
    std::size_t k = 0;
    for (auto& [x, y] : loader)
      for (std::size_t i = 0; i < y.size(); ++i, ++k) {
        CHECK(y[i] == rows[k]);
        CHECK(x.value()(static_cast<gs::Index>(i), 1) == 10.0 * static_cast<double>(rows[k]));
        seen.push_back(y[i]);
      }
    CHECK(k == 4);
  }
  std::sort(seen.begin(), seen.end());
  CHECK(std::set<int>(seen.begin(), seen.end()).size() == 7);  // every row, one padded twice
  struct Bad {
    gs::Index size() const { return 2; }
    void indices(std::vector<gs::Index>& out) const { out = {0, 7}; }
  } bad;
  gs::data::DataLoader<double> loader(d, bad, {.batch_size = 2});
  CHECK_THROWS_WITH(loader.begin(), Catch::Contains("the sampler gave row 7 of a dataset of 7"));
}
