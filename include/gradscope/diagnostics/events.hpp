#pragma once
/// The event log: what happened during a run (an explosion, a divergence, a non-finite step that
/// an optimiser skipped or refused), kept after it has passed, so the final report still tells
/// it when the latest window looks calm. Bounded: occurrences of the same event merge, and a
/// full log counts what it could not keep.

#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "finding.hpp"

namespace gradscope::diagnostics {

/// One event: the steps at which one rule of one verdict fired, from the first to the last,
/// with the finding of its worst occurrence.
struct Event {
  Finding finding;               ///< the finding at the worst occurrence (numbers, layers, hints)
  std::int64_t first_step = 0;   ///< the first step the rule fired at
  std::int64_t last_step = 0;    ///< the last step it fired at
  std::int64_t worst_step = 0;   ///< the step of `finding`
  double severity = 0;           ///< the worst occurrence's severity (larger is worse)
  std::int64_t occurrences = 0;  ///< the steps it fired at (recorded steps, mostly)

  Verdict verdict() const noexcept { return finding.verdict; }
  const std::string& rule() const noexcept { return finding.rule; }
  /// "step 72" or "steps 1-17".
  std::string steps() const {
    return first_step == last_step
               ? "step " + std::to_string(first_step)
               : "steps " + std::to_string(first_step) + "-" + std::to_string(last_step);
  }
  /// "[exploding] steps 1-17 (15 recorded steps, worst at step 3): <summary>".
  std::string str() const {
    // Appended piece by piece: GCC 12 -O3 warns (-Wrestrict, falsely) on "[" + std::string(..).
    std::string s = "[";
    s += verdict_name(verdict());
    s += "] ";
    s += steps();
    if (first_step != last_step || occurrences > 1) {
      s += " (";
      s += std::to_string(occurrences);
      s += " recorded steps, worst at step ";
      s += std::to_string(worst_step);
      s += ")";
    }
    s += ": ";
    s += finding.summary;
    return s;
  }
};

/// The events of a run, oldest first. An occurrence of the same verdict and rule as an event
/// that last fired at most `merge_gap` steps before extends that event; otherwise it starts a
/// new one. The log keeps at most `capacity` events (the earliest: the first explosion is where
/// a story starts); later ones are counted, with their step range, and the reports say so.
/// Time verdicts and any other rule record into the same log through record().
class EventLog {
 public:
  static constexpr std::size_t default_capacity = 64;

  explicit EventLog(std::size_t capacity = default_capacity)
      : capacity_(std::max<std::size_t>(capacity, 1)) {}

  /// Records that `f` held at `step`; `severity` orders its occurrences (larger is worse: a
  /// growth factor, a norm, a count; for a shrinking measure pass its inverse).
  void record(std::int64_t step, const Finding& f, double severity, std::int64_t merge_gap) {
    for (auto it = events_.rbegin(); it != events_.rend(); ++it) {
      if (it->verdict() != f.verdict || it->rule() != f.rule) continue;
      if (step < it->first_step || step - it->last_step > merge_gap) break;
      it->last_step = std::max(it->last_step, step);
      ++it->occurrences;
      if (severity > it->severity || !(it->severity == it->severity)) {
        it->finding = f;
        it->severity = severity;
        it->worst_step = step;
      }
      return;
    }
    if (events_.size() < capacity_) {
      events_.push_back(Event{f, step, step, step, severity, 1});
      return;
    }
    // Full: count each dropped event once, however many steps it lasts.
    for (auto& [verdict, rule, last] : dropped_keys_)
      if (verdict == f.verdict && rule == f.rule) {
        const bool same = step >= last && step - last <= merge_gap;
        last = step;
        if (same)
          dropped_last_ = std::max(dropped_last_, step);
        else
          count_dropped(step);
        return;
      }
    dropped_keys_.emplace_back(f.verdict, f.rule, step);
    count_dropped(step);
  }

  /// The kept events, oldest first.
  const std::vector<Event>& events() const noexcept { return events_; }
  /// Whether nothing was recorded.
  bool empty() const noexcept { return events_.empty() && dropped_ == 0; }
  std::size_t capacity() const noexcept { return capacity_; }
  /// Events not kept because the log was full, each counted once.
  std::int64_t dropped() const noexcept { return dropped_; }
  /// The first step of the first dropped event and the last of the last (0 when none).
  std::int64_t dropped_first_step() const noexcept { return dropped_first_; }
  std::int64_t dropped_last_step() const noexcept { return dropped_last_; }
  /// "" or "(and 12 more events between steps 900 and 1500 that the log, capped at 64, did not
  /// keep)".
  std::string dropped_note() const {
    if (dropped_ == 0) return {};
    return "(and " + std::to_string(dropped_) + " more event" + (dropped_ == 1 ? "" : "s") +
           " between steps " + std::to_string(dropped_first_) + " and " +
           std::to_string(dropped_last_) + " that the log, capped at " + std::to_string(capacity_) +
           " events, did not keep)";
  }

 private:
  void count_dropped(std::int64_t step) {
    if (dropped_++ == 0) dropped_first_ = step;
    dropped_last_ = step;
  }

  std::vector<Event> events_;
  std::size_t capacity_;
  std::int64_t dropped_ = 0, dropped_first_ = 0, dropped_last_ = 0;
  // Per (verdict, rule) of dropped events: the step it last fired at (a handful of entries).
  std::vector<std::tuple<Verdict, std::string, std::int64_t>> dropped_keys_;
};

}  // namespace gradscope::diagnostics
