#pragma once
/// A small command-line parser for gradscope's examples and tools: long options (`--name value`
/// or `--name=value`), flags with an optional `--no-` form, integer and real ranges, choices,
/// mutually exclusive options, list values, and a generated --help.
///
/// It exists for build time: CLI11 alone takes about 10 s of a 30 s example build, this header
/// well under a second, and the examples need nothing more. Errors throw util::ArgError with a
/// message naming the option and the value.
///
///     gradscope::util::ArgParser args("Train a model");
///     int depth = 3;
///     args.option("--depth", depth, "hidden layers").range(1, 1000);
///     if (!args.parse(argc, argv)) { std::fputs(args.help().c_str(), stdout); return 0; }

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace gradscope::util {

/// A bad command line: unknown option, missing or malformed value, value out of range.
class ArgError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Parses long options into variables the caller owns. Options keep their current value (the
/// default) unless given; parse() may run again on the same arguments after defaults changed.
class ArgParser {
 public:
  /// One registered option, for chaining checks: `.range(1, 100)`, `.choices({...})`.
  class Option {
   public:
    /// Integer or real values must lie in [lo, hi] (every element, for a list).
    Option& range(double lo, double hi) {
      checks_.push_back([this, lo, hi](double v) {
        if (!(v >= lo && v <= hi))
          throw ArgError(name_ + ": " + format(v) + " is outside [" + format(lo) + ", " +
                         format(hi) + "]");
      });
      range_ = "[" + format(lo) + ", " + format(hi) + "]";
      return *this;
    }
    /// Values must be > 0.
    Option& positive() {
      checks_.push_back([this](double v) {
        if (!(v > 0)) throw ArgError(name_ + ": must be positive, got " + format(v));
      });
      range_ = "> 0";
      return *this;
    }
    /// Values must be >= 0.
    Option& non_negative() {
      checks_.push_back([this](double v) {
        if (!(v >= 0)) throw ArgError(name_ + ": must be non-negative, got " + format(v));
      });
      range_ = ">= 0";
      return *this;
    }
    /// A string option must take one of these values.
    Option& choices(std::initializer_list<const char*> allowed) {
      choices_.assign(allowed.begin(), allowed.end());
      return *this;
    }
    /// Giving this option and `other` together is an error.
    Option& excludes(const std::string& other) {
      excludes_.push_back(other);
      return *this;
    }

   private:
    friend class ArgParser;
    static std::string format(double v) {
      if (v > -1e15 && v < 1e15 && v == static_cast<double>(static_cast<long long>(v)))
        return std::to_string(static_cast<long long>(v));  // 1000000, not 1e+06
      char buf[32];
      const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
      return ec == std::errc{} ? std::string(buf, end) : std::string("?");
    }
    void check_number(double v) const {
      for (const auto& c : checks_) c(v);
    }
    void check_choice(const std::string& v) const {
      if (choices_.empty()) return;
      for (const auto& c : choices_)
        if (v == c) return;
      std::string list;
      for (const auto& c : choices_) {
        if (!list.empty()) list += ", ";
        list += c;
      }
      throw ArgError(name_ + ": '" + v + "' is not one of " + list);
    }

    std::string name_, help_, metavar_, default_;
    bool is_flag_ = false, negatable_ = false, seen_ = false;
    std::function<void(const std::string&)> set_;  // parses and stores one value
    std::function<void()> set_flag_;               // for flags: true, or false for --no-
    std::function<void()> clear_;                  // for lists: forget the defaults
    std::vector<std::function<void(double)>> checks_;
    std::vector<std::string> choices_, excludes_;
    std::string range_;
    bool list_ = false;
  };

  explicit ArgParser(std::string description) : description_(std::move(description)) {}
  ArgParser(const ArgParser&) = delete;
  ArgParser& operator=(const ArgParser&) = delete;

  /// An option taking a value: std::string, an integer type, float or double, or a std::vector
  /// of those (one or more values after the option, until the next `--`).
  template <class V>
  Option& option(const std::string& name, V& target, std::string help) {
    Option& o = add(name, std::move(help));
    if constexpr (is_vector<V>::value) {
      using E = typename V::value_type;
      o.list_ = true;
      o.metavar_ = metavar<E>() + "...";
      o.default_ = join(target);
      o.clear_ = [&target] { target.clear(); };
      o.set_ = [&target, &o](const std::string& s) { target.push_back(convert<E>(o, s)); };
    } else {
      o.metavar_ = metavar<V>();
      o.default_ = show(target);
      o.set_ = [&target, &o](const std::string& s) { target = convert<V>(o, s); };
    }
    return o;
  }
  /// A flag: `--name` sets it; with `negatable`, `--no-name` clears it.
  Option& flag(const std::string& name, bool& target, std::string help, bool negatable = false) {
    Option& o = add(name, std::move(help));
    o.is_flag_ = true;
    o.negatable_ = negatable;
    o.set_flag_ = [&target] { target = true; };
    o.set_ = [&target](const std::string&) { target = false; };  // the --no- form
    return o;
  }

  /// Parses argv[1..argc). Returns false when --help (or -h) was given, true otherwise; throws
  /// ArgError on a bad command line.
  bool parse(int argc, const char* const* argv) {
    std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + (argc > 0 ? argc : 0));
    return parse(args);
  }
  bool parse(const std::vector<std::string>& args) {
    for (auto& o : options_) o->seen_ = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (a == "--help" || a == "-h") return false;
      if (a.rfind("--", 0) != 0 || a.size() == 2)
        throw ArgError("unexpected argument '" + a + "' (options start with --)");
      const std::size_t eq = a.find('=');
      const std::string name = a.substr(0, eq);
      bool negated = false;
      Option* o = find(name);
      if (!o && name.rfind("--no-", 0) == 0) {
        o = find("--" + name.substr(5));
        negated = o && o->is_flag_ && o->negatable_;
        if (!negated) o = nullptr;
      }
      if (!o) throw ArgError("unknown option '" + name + "'" + suggestion(name));
      if (o->seen_ && !o->list_) throw ArgError(o->name_ + ": given more than once");
      o->seen_ = true;
      if (o->is_flag_) {
        if (eq != std::string::npos) throw ArgError(name + ": a flag takes no value");
        negated ? o->set_("") : o->set_flag_();
        continue;
      }
      std::vector<std::string> values;
      if (eq != std::string::npos) {
        values.push_back(a.substr(eq + 1));
      } else {
        while (i + 1 < args.size() && !is_option(args[i + 1])) {
          values.push_back(args[++i]);
          if (!o->list_) break;
        }
      }
      if (values.empty()) throw ArgError(o->name_ + ": needs a value (" + o->metavar_ + ")");
      if (o->clear_) o->clear_();
      for (const auto& v : values) o->set_(v);
    }
    for (const auto& o : options_)
      for (const auto& other : o->excludes_) {
        const Option* x = find(other);
        if (o->seen_ && x && x->seen_) throw ArgError(o->name_ + " excludes " + other);
      }
    return true;
  }

  /// Whether the option was given in the last parse().
  bool given(const std::string& name) const {
    const Option* o = find(name);
    return o && o->seen_;
  }

  /// The --help text: description, then one line per option with its default and constraint.
  std::string help() const {
    std::string out = description_ + "\n\nOptions:\n";
    std::vector<std::string> left;
    std::size_t width = 0;
    for (const auto& o : options_) {
      std::string l = "  " + o->name_;
      if (o->is_flag_ && o->negatable_) l += ", --no-" + o->name_.substr(2);
      if (!o->is_flag_) l += " " + o->metavar_;
      width = std::max(width, l.size());
      left.push_back(std::move(l));
    }
    for (std::size_t k = 0; k < options_.size(); ++k) {
      const Option& o = *options_[k];
      std::string line = left[k] + std::string(width + 2 - left[k].size(), ' ') + o.help_;
      std::string extra;
      if (!o.choices_.empty()) {
        extra += "one of ";
        for (std::size_t c = 0; c < o.choices_.size(); ++c) {
          if (c) extra += ", ";
          extra += o.choices_[c];
        }
      } else if (!o.range_.empty()) {
        extra += o.range_;
      }
      if (!o.is_flag_ && !o.default_.empty()) {
        if (!extra.empty()) extra += "; ";
        extra += "default ";
        extra += o.default_;
      }
      if (!extra.empty()) line += " (" + extra + ")";
      out += line + "\n";
    }
    out += "  -h, --help" + std::string(width + 2 > 12 ? width + 2 - 12 : 1, ' ') +
           "print this help and exit\n";
    return out;
  }

 private:
  template <class V>
  struct is_vector : std::false_type {};
  template <class E, class A>
  struct is_vector<std::vector<E, A>> : std::true_type {};

  Option& add(const std::string& name, std::string help) {
    if (name.size() < 3 || name.rfind("--", 0) != 0 || name.find('=') != std::string::npos)
      throw std::invalid_argument("ArgParser: option names look like --name, got '" + name + "'");
    if (find(name)) throw std::invalid_argument("ArgParser: option " + name + " added twice");
    options_.push_back(std::make_unique<Option>());
    Option& o = *options_.back();
    o.name_ = name;
    o.help_ = std::move(help);
    return o;
  }
  Option* find(const std::string& name) const {
    for (const auto& o : options_)
      if (o->name_ == name) return o.get();
    return nullptr;
  }
  // "--5" and "-3" are values (negative numbers), "--x" is an option.
  static bool is_option(const std::string& s) {
    return s.size() > 2 && s.rfind("--", 0) == 0 && !(s[2] >= '0' && s[2] <= '9');
  }
  std::string suggestion(const std::string& name) const {
    // The option sharing the longest prefix with the typo, if it shares at least 4 characters.
    const Option* best = nullptr;
    std::size_t best_len = 0;
    for (const auto& o : options_) {
      std::size_t k = 0;
      while (k < name.size() && k < o->name_.size() && name[k] == o->name_[k]) ++k;
      if (k > best_len) best_len = k, best = o.get();
    }
    return best && best_len >= 4 ? " (did you mean " + best->name_ + "?)" : "";
  }

  template <class V>
  static std::string metavar() {
    if constexpr (std::is_same_v<V, std::string>)
      return "TEXT";
    else if constexpr (std::is_integral_v<V>)
      return "INT";
    else
      return "REAL";
  }
  template <class V>
  static std::string show(const V& v) {
    if constexpr (std::is_same_v<V, std::string>)
      return v.empty() ? "" : "'" + v + "'";
    else if constexpr (std::is_integral_v<V>)
      return std::to_string(v);
    else
      return Option::format(static_cast<double>(v));
  }
  template <class V>
  static std::string join(const V& v) {
    std::string s;
    for (const auto& e : v) {
      if (!s.empty()) s += ' ';
      s += show(e);
    }
    return s;
  }
  template <class V>
  static V convert(const Option& o, const std::string& s) {
    if constexpr (std::is_same_v<V, std::string>) {
      o.check_choice(s);
      return s;
    } else {
      static_assert(std::is_arithmetic_v<V> && !std::is_same_v<V, bool>,
                    "ArgParser::option: use std::string, an integer or a floating-point type");
      V v{};
      const char* first = s.data();
      const char* last = s.data() + s.size();
      if constexpr (std::is_unsigned_v<V>)
        if (!s.empty() && s[0] == '-')
          throw ArgError(o.name_ + ": expected a non-negative integer, got '" + s + "'");
      const auto [end, ec] = std::from_chars(first, last, v);
      if (ec == std::errc::result_out_of_range)
        throw ArgError(o.name_ + ": '" + s + "' is out of range for " + metavar<V>());
      if (ec != std::errc{} || end != last || s.empty())
        throw ArgError(
            o.name_ + ": expected " +
            (std::is_integral_v<V> ? std::string("an integer") : std::string("a number")) +
            ", got '" + s + "'");
      o.check_number(static_cast<double>(v));
      return v;
    }
  }

  std::string description_;
  std::vector<std::unique_ptr<Option>> options_;
};

}  // namespace gradscope::util
