#pragma once
/// A small, seedable random number generator whose stream is identical on every platform.

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>

namespace gradscope {

/// xoshiro256** seeded through splitmix64. Unlike std::mt19937 + std::normal_distribution,
/// both the integer stream and the derived distributions are specified here, so a seed gives the
/// same numbers with every standard library (normals also go through std::log, std::sqrt and
/// std::cos, which glibc computes correctly rounded in practice).
class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0x9E3779B97F4A7C15ull) { this->seed(seed); }

  /// The generator's complete state: where its stream is (for checkpoints; see io::RunState).
  struct State {
    std::array<std::uint64_t, 4> words{};  ///< xoshiro256**'s state, never all zero
    double spare = 0.0;                    ///< the cached second normal of a Box-Muller pair
    bool has_spare = false;
  };
  /// The current state: set_state(state()) later continues the stream from here.
  State state() const noexcept {
    return {{state_[0], state_[1], state_[2], state_[3]}, spare_, has_spare_};
  }
  /// Continues the stream from a state() (all-zero words are not a state: the generator would
  /// return zeros forever; callers reading states from files check that first).
  void set_state(const State& s) noexcept {
    for (std::size_t i = 0; i < 4; ++i) state_[i] = s.words[i];
    spare_ = s.spare;
    has_spare_ = s.has_spare;
  }

  /// Restarts the stream from `seed`.
  void seed(std::uint64_t seed) {
    for (auto& s : state_) {
      seed += 0x9E3779B97F4A7C15ull;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      s = z ^ (z >> 31);
    }
    has_spare_ = false;
  }

  /// The next 64 random bits.
  std::uint64_t next_u64() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  /// Uniform in [a, b).
  double uniform(double a, double b) { return a + (b - a) * uniform(); }

  /// Uniform integer in [0, n) without modulo bias (n > 0).
  std::uint64_t below(std::uint64_t n) {
    const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % n);
    std::uint64_t x;
    do {
      x = next_u64();
    } while (x >= limit);
    return x % n;
  }

  /// Standard normal by the Box-Muller transform (pairs; the spare is cached).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1;
    do {
      u1 = uniform();
    } while (u1 <= 0.0);
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = 2.0 * std::numbers::pi * u2;
    spare_ = r * std::sin(theta);
    has_spare_ = true;
    return r * std::cos(theta);
  }

  /// Normal with the given mean and standard deviation.
  double normal(double mean, double stddev) { return mean + stddev * normal(); }

  /// Bernoulli draw: true with probability p.
  bool bernoulli(double p) { return uniform() < p; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t state_[4]{};
  double spare_ = 0.0;
  bool has_spare_ = false;
};

/// The generator layers and initialisers use when none is passed: one per thread, with a fixed
/// seed, so a program is reproducible unless it reseeds.
inline Rng& default_rng() {
  static thread_local Rng rng(0x67726164u);
  return rng;
}
/// Reseeds this thread's default_rng() (like torch.manual_seed).
inline void manual_seed(std::uint64_t seed) { default_rng().seed(seed); }

}  // namespace gradscope
