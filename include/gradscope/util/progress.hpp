#pragma once
/// A progress line: redrawn in place on a terminal (bar, percent, rate, ETA, user fields),
/// plain periodic lines when the output is not a terminal (logs, CI).

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "../detail/compiled.hpp"

namespace gradscope::util {

/// Shows the progress of `total` units of work (batches, samples) on a C stream.
class Progress {
 public:
  /// `label` prefixes the line; `out` defaults to stderr; `interactive` defaults to whether
  /// `out` is a terminal.
  explicit Progress(long long total, std::string label = {}, std::FILE* out = stderr,
                    int interactive = -1)
      : total_(total),
        label_(std::move(label)),
        out_(out),
        tty_(interactive < 0 ? ::isatty(::fileno(out)) == 1 : interactive == 1),
        start_(clock::now()),
        last_(start_) {}

  /// Sets a named field shown after the bar ("loss", "acc"), formatted with printf's %.4g.
  void field(const std::string& name, double value);
  /// Reports `done` units finished. Redraws at most every 100 ms on a terminal, prints a line
  /// at every quarter otherwise.
  void update(long long done);
  /// Ends the line (terminal) and returns the elapsed seconds.
  double finish();
  double elapsed() const { return std::chrono::duration<double>(clock::now() - start_).count(); }
  /// Units per second so far.
  double rate() const { return elapsed() > 0 ? static_cast<double>(done_) / elapsed() : 0.0; }
  /// The current line, without control characters.
  std::string line() const { return line(clock::now()); }

 private:
  using clock = std::chrono::steady_clock;
  std::string line(clock::time_point now) const;

  long long total_, done_ = 0;
  std::string label_;
  std::FILE* out_;
  bool tty_;
  clock::time_point start_, last_;
  int printed_quarter_ = -1;
  std::vector<std::pair<std::string, double>> fields_;
};

#if !GRADSCOPE_UTIL_DECLARE_ONLY
GRADSCOPE_COMPILED_API void Progress::field(const std::string& name, double value) {
  for (auto& f : fields_)
    if (f.first == name) {
      f.second = value;
      return;
    }
  fields_.emplace_back(name, value);
}

GRADSCOPE_COMPILED_API void Progress::update(long long done) {
  done_ = done;
  const auto now = clock::now();
  if (tty_) {
    if (now - last_ < std::chrono::milliseconds(100) && done < total_) return;
    last_ = now;
    std::fprintf(out_, "\r%s\033[K", line(now).c_str());
    std::fflush(out_);
  } else {
    const int quarter = total_ > 0 ? static_cast<int>(4 * done / total_) : 4;
    if (quarter <= printed_quarter_) return;
    printed_quarter_ = quarter;
    std::fprintf(out_, "%s\n", line(now).c_str());
    std::fflush(out_);
  }
}

GRADSCOPE_COMPILED_API double Progress::finish() {
  if (tty_) {
    std::fprintf(out_, "\r%s\033[K\n", line(clock::now()).c_str());
    std::fflush(out_);
  }
  return elapsed();
}

GRADSCOPE_COMPILED_API std::string Progress::line(clock::time_point now) const {
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double frac = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
  const double rate = secs > 0 ? static_cast<double>(done_) / secs : 0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : 0;
  std::string s = label_.empty() ? "" : label_ + " ";
  if (tty_) {
    const int width = 24, full = static_cast<int>(frac * width);
    s += "[";
    for (int i = 0; i < width; ++i) s += i < full ? "\u2588" : (i == full ? "\u258c" : " ");
    s += "] ";
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "%3.0f%% %lld/%lld %.0f/s eta %.0fs", 100 * frac, done_, total_,
                rate, eta);
  s += buf;
  for (const auto& f : fields_) {
    std::snprintf(buf, sizeof buf, " %s %.4g", f.first.c_str(), f.second);
    s += buf;
  }
  return s;
}
#endif  // !GRADSCOPE_UTIL_DECLARE_ONLY

}  // namespace gradscope::util
