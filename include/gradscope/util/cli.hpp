#pragma once
/// A small command-line parser for gradscope's examples and tools: long options (`--name value`
/// or `--name=value`), flags with an optional `--no-` form, integer and real ranges, choices,
/// mutually exclusive options, list values, and a generated --help. Real values must be finite:
/// "inf", "nan" and values beyond the type's range (1e999 for a double, 1e39 for a float) are
/// errors for every floating-point option.
///
/// It exists for build time: CLI11 alone takes about 10 s of a 30 s example build, this header
/// well under a second, and the examples need nothing more. The parser's functions are defined
/// after the class, so that with GRADSCOPE_EXTERN_TEMPLATES they are compiled once, in the
/// instantiation unit (detail/compiled.hpp), not in every file that parses a command line. Errors
/// throw util::ArgError with a message naming the option and the value.
///
///     gradscope::util::ArgParser args("Train a model");
///     int depth = 3;
///     args.option("--depth", depth, "hidden layers").range(1, 1000);
///     if (!args.parse(argc, argv)) { std::fputs(args.help().c_str(), stdout); return 0; }

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "../detail/compiled.hpp"

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
    Option& range(double lo, double hi);
    /// Values must be > 0.
    Option& positive();
    /// Values must be >= 0.
    Option& non_negative();
    /// A string option must take one of these values.
    Option& choices(std::initializer_list<const char*> allowed);
    /// Giving this option and `other` together is an error.
    Option& excludes(std::string_view other);

   private:
    friend class ArgParser;
    enum class CheckKind { range, positive, non_negative };
    struct Check {
      CheckKind kind;
      double lo, hi;
    };
    // Stores one value parsed from text into the caller's variable (a plain function per value
    // type, not a std::function per option: smaller and faster to compile).
    using Setter = void (*)(const Option&, void* target, const std::string& text);

    static std::string format(double v);
    static std::string format_float(float v);
    // `text` is the value as given, for the messages.
    void check_number(double v, const std::string& text) const;
    void check_choice(const std::string& v) const;

    std::string name_, help_, metavar_, default_;
    bool is_flag_ = false, negatable_ = false, seen_ = false;
    void* target_ = nullptr;  // the caller's variable
    Setter set_ = nullptr;    // parses and stores one value (appends, for lists)
    Setter clear_ = nullptr;  // lists only (so: an option is a list when it has one)
    std::vector<Check> checks_;
    std::vector<std::string> choices_, excludes_;
    std::string range_;
    bool is_list() const noexcept { return clear_ != nullptr; }
  };

  explicit ArgParser(std::string description) : description_(std::move(description)) {}
  ArgParser(const ArgParser&) = delete;
  ArgParser& operator=(const ArgParser&) = delete;

  /// An option taking a value: std::string, an integer type, float or double, or a std::vector
  /// of those (one or more values after the option, until the next `--`).
  template <class V>
  Option& option(std::string_view name, V& target, std::string_view help) {
    // Everything but the value type's few functions is out of line: an option costs the caller
    // a call, not an inlined registration (a 30-option main compiled 4 s faster).
    if constexpr (is_vector<V>::value)
      return add_value(name, help, &target, &append_value<V>, &clear_value<V>,
                       metavar<typename V::value_type>(), &shown<V>);
    else
      return add_value(name, help, &target, &set_value<V>, nullptr, metavar<V>(), &shown<V>);
  }
  /// A flag: `--name` sets it; with `negatable`, `--no-name` clears it.
  Option& flag(std::string_view name, bool& target, std::string_view help, bool negatable = false);

  /// Parses argv[1..argc). Returns false when --help (or -h) was given, true otherwise; throws
  /// ArgError on a bad command line.
  bool parse(int argc, const char* const* argv);
  bool parse(const std::vector<std::string>& args);

  /// Whether the option was given in the last parse().
  bool given(std::string_view name) const;

  /// The --help text: description, then one line per option with its default and constraint.
  std::string help() const;

 private:
  template <class V>
  struct is_vector : std::false_type {};
  template <class E, class A>
  struct is_vector<std::vector<E, A>> : std::true_type {};

  Option& add(std::string_view name, std::string_view help);
  Option& add_value(std::string_view name, std::string_view help, void* target, Option::Setter set,
                    Option::Setter clear, const char* metavar, std::string (*shown)(const void*));
  Option* find(std::string_view name) const;
  // "--5" and "-3" are values (negative numbers), "--x" is an option.
  static bool is_option(const std::string& s) {
    return s.size() > 2 && s.rfind("--", 0) == 0 && !(s[2] >= '0' && s[2] <= '9');
  }
  std::string suggestion(const std::string& name) const;

  template <class V>
  static const char* metavar() {
    if constexpr (std::is_same_v<V, std::string>)
      return "TEXT";
    else if constexpr (std::is_integral_v<V>)
      return "INT";
    else
      return "REAL";
  }
  // What the range of a floating-point type is, for the out-of-range message.
  template <class V>
  static const char* float_range() {
    if constexpr (std::is_same_v<V, float>)
      return "a 32-bit float (magnitudes from 1.2e-38 to 3.4e+38, or 0)";
    else
      return "a double (magnitudes from 2.2e-308 to 1.8e+308, or 0)";
  }
  template <class V>
  static std::string show(const V& v) {
    if constexpr (std::is_same_v<V, std::string>)
      return v.empty() ? "" : "'" + v + "'";
    else if constexpr (std::is_integral_v<V>)
      return std::to_string(v);
    else if constexpr (std::is_same_v<V, float>)
      return Option::format_float(v);  // 0.001, not the double nearest 0.001f
    else
      return Option::format(static_cast<double>(v));
  }
  // The default shown by --help: the value, or a list's values separated by spaces.
  template <class V>
  static std::string shown(const void* target) {
    const V& v = *static_cast<const V*>(target);
    if constexpr (is_vector<V>::value) {
      std::string s;
      for (const auto& e : v) {
        if (!s.empty()) s += ' ';
        s += show(e);
      }
      return s;
    } else {
      return show(v);
    }
  }
  template <class V>
  static void set_value(const Option& o, void* target, const std::string& s) {
    *static_cast<V*>(target) = convert<V>(o, s);
  }
  template <class V>
  static void append_value(const Option& o, void* target, const std::string& s) {
    static_cast<V*>(target)->push_back(convert<typename V::value_type>(o, s));
  }
  template <class V>
  static void clear_value(const Option&, void* target, const std::string&) {
    static_cast<V*>(target)->clear();
  }
  // Parses one value. Defined below the class, and compiled once in compiled mode for the
  // common value types (the extern declarations at the end of this file).
  template <class V>
  static V convert(const Option& o, const std::string& s);

  std::string description_;
  std::vector<std::unique_ptr<Option>> options_;
};

template <class V>
V ArgParser::convert(const Option& o, const std::string& s) {
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
    if (s.size() > 1 && s[0] == '+' && s[1] != '-' && s[1] != '+') ++first;  // "+0.5", as strtod
    const auto [end, ec] = std::from_chars(first, last, v);
    if (ec == std::errc::result_out_of_range && end == last) {
      if constexpr (std::is_floating_point_v<V>)
        throw ArgError(o.name_ + ": '" + s + "' is out of the range of " + float_range<V>());
      else
        throw ArgError(o.name_ + ": '" + s + "' is out of range for " + metavar<V>());
    }
    if (ec != std::errc{} || end != last || s.empty())
      throw ArgError(o.name_ + ": expected " +
                     (std::is_integral_v<V> ? std::string("an integer") : std::string("a number")) +
                     ", got '" + s + "'");
    // from_chars reads "inf", "nan" and "infinity": no option of a training program means them
    // (an infinite learning rate writes non-finite weights in one step).
    if constexpr (std::is_floating_point_v<V>)
      if (!std::isfinite(v))
        throw ArgError(o.name_ + ": expected a finite number, got '" + s + "'");
    o.check_number(static_cast<double>(v), s);
    return v;
  }
}

// The value types compiled once in compiled mode (any other type is instantiated where used).
#define GRADSCOPE_UTIL_CONVERT_INSTANCES(PREFIX)                                             \
  PREFIX std::string ArgParser::convert<std::string>(const Option&, const std::string&);     \
  PREFIX int ArgParser::convert<int>(const Option&, const std::string&);                     \
  PREFIX long ArgParser::convert<long>(const Option&, const std::string&);                   \
  PREFIX long long ArgParser::convert<long long>(const Option&, const std::string&);         \
  PREFIX unsigned ArgParser::convert<unsigned>(const Option&, const std::string&);           \
  PREFIX unsigned long ArgParser::convert<unsigned long>(const Option&, const std::string&); \
  PREFIX unsigned long long ArgParser::convert<unsigned long long>(const Option&,            \
                                                                   const std::string&);      \
  PREFIX float ArgParser::convert<float>(const Option&, const std::string&);                 \
  PREFIX double ArgParser::convert<double>(const Option&, const std::string&);

#if GRADSCOPE_UTIL_DECLARE_ONLY
GRADSCOPE_UTIL_CONVERT_INSTANCES(extern template)
#else
#if defined(GRADSCOPE_INSTANTIATE_UTIL)
GRADSCOPE_UTIL_CONVERT_INSTANCES(template)
#endif

GRADSCOPE_COMPILED_API ArgParser::Option& ArgParser::Option::range(double lo, double hi) {
  checks_.push_back({CheckKind::range, lo, hi});
  // Built in a fresh string and moved: assigning a literal after inlining format() trips a
  // false positive of GCC 12's -Wrestrict.
  std::string r(1, '[');
  r.append(format(lo)).append(", ").append(format(hi)).push_back(']');
  range_ = std::move(r);
  return *this;
}
GRADSCOPE_COMPILED_API ArgParser::Option& ArgParser::Option::positive() {
  checks_.push_back({CheckKind::positive, 0, 0});
  range_ = "> 0";
  return *this;
}
GRADSCOPE_COMPILED_API ArgParser::Option& ArgParser::Option::non_negative() {
  checks_.push_back({CheckKind::non_negative, 0, 0});
  range_ = ">= 0";
  return *this;
}
GRADSCOPE_COMPILED_API ArgParser::Option& ArgParser::Option::choices(
    std::initializer_list<const char*> allowed) {
  choices_.assign(allowed.begin(), allowed.end());
  return *this;
}
GRADSCOPE_COMPILED_API ArgParser::Option& ArgParser::Option::excludes(std::string_view other) {
  excludes_.emplace_back(other);
  return *this;
}

GRADSCOPE_COMPILED_API std::string ArgParser::Option::format(double v) {
  if (v > -1e15 && v < 1e15 && v == static_cast<double>(static_cast<long long>(v)))
    return std::to_string(static_cast<long long>(v));  // 1000000, not 1e+06
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc{} ? std::string(buf, end) : std::string("?");
}

GRADSCOPE_COMPILED_API std::string ArgParser::Option::format_float(float v) {
  if (v > -1e7f && v < 1e7f && v == static_cast<float>(static_cast<long long>(v)))
    return std::to_string(static_cast<long long>(v));
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc{} ? std::string(buf, end) : std::string("?");
}

GRADSCOPE_COMPILED_API void ArgParser::Option::check_number(double v,
                                                            const std::string& text) const {
  for (const auto& c : checks_) {
    switch (c.kind) {
      case CheckKind::range:
        if (!(v >= c.lo && v <= c.hi))
          throw ArgError(name_ + ": " + text + " is outside [" + format(c.lo) + ", " +
                         format(c.hi) + "]");
        break;
      case CheckKind::positive:
        if (!(v > 0)) throw ArgError(name_ + ": must be positive, got " + text);
        break;
      case CheckKind::non_negative:
        if (!(v >= 0)) throw ArgError(name_ + ": must be non-negative, got " + text);
        break;
    }
  }
}

GRADSCOPE_COMPILED_API void ArgParser::Option::check_choice(const std::string& v) const {
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

GRADSCOPE_COMPILED_API ArgParser::Option& ArgParser::flag(std::string_view name, bool& target,
                                                          std::string_view help, bool negatable) {
  Option& o = add(name, help);
  o.is_flag_ = true;
  o.negatable_ = negatable;
  o.target_ = &target;
  o.set_ = [](const Option&, void* t, const std::string& s) {
    *static_cast<bool*>(t) = !s.empty();  // "1" sets, "" (the --no- form) clears
  };
  return o;
}

GRADSCOPE_COMPILED_API bool ArgParser::parse(int argc, const char* const* argv) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + (argc > 0 ? argc : 0));
  return parse(args);
}

GRADSCOPE_COMPILED_API bool ArgParser::parse(const std::vector<std::string>& args) {
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
    if (o->seen_ && !o->is_list()) throw ArgError(o->name_ + ": given more than once");
    o->seen_ = true;
    if (o->is_flag_) {
      if (eq != std::string::npos) throw ArgError(name + ": a flag takes no value");
      o->set_(*o, o->target_, negated ? "" : "1");
      continue;
    }
    std::vector<std::string> values;
    if (eq != std::string::npos) {
      values.push_back(a.substr(eq + 1));
    } else {
      while (i + 1 < args.size() && !is_option(args[i + 1])) {
        values.push_back(args[++i]);
        if (!o->is_list()) break;
      }
    }
    if (values.empty()) throw ArgError(o->name_ + ": needs a value (" + o->metavar_ + ")");
    if (o->clear_) o->clear_(*o, o->target_, {});
    for (const auto& v : values) o->set_(*o, o->target_, v);
  }
  for (const auto& o : options_)
    for (const auto& other : o->excludes_) {
      const Option* x = find(other);
      if (o->seen_ && x && x->seen_) throw ArgError(o->name_ + " excludes " + other);
    }
  return true;
}

GRADSCOPE_COMPILED_API bool ArgParser::given(std::string_view name) const {
  const Option* o = find(name);
  return o && o->seen_;
}

GRADSCOPE_COMPILED_API std::string ArgParser::help() const {
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

GRADSCOPE_COMPILED_API ArgParser::Option& ArgParser::add(std::string_view name,
                                                         std::string_view help) {
  const std::string n(name);
  if (n.size() < 3 || n.rfind("--", 0) != 0 || n.find('=') != std::string::npos)
    throw std::invalid_argument("ArgParser: option names look like --name, got '" + n + "'");
  if (find(n)) throw std::invalid_argument("ArgParser: option " + n + " added twice");
  options_.push_back(std::make_unique<Option>());
  Option& o = *options_.back();
  o.name_ = n;
  o.help_ = std::string(help);
  return o;
}

GRADSCOPE_COMPILED_API ArgParser::Option& ArgParser::add_value(
    std::string_view name, std::string_view help, void* target, Option::Setter set,
    Option::Setter clear, const char* metavar, std::string (*shown)(const void*)) {
  Option& o = add(name, help);
  o.target_ = target;
  o.set_ = set;
  o.clear_ = clear;
  o.metavar_ = metavar;
  if (o.is_list()) o.metavar_ += "...";
  o.default_ = shown(target);
  return o;
}

GRADSCOPE_COMPILED_API ArgParser::Option* ArgParser::find(std::string_view name) const {
  for (const auto& o : options_)
    if (o->name_ == name) return o.get();
  return nullptr;
}

GRADSCOPE_COMPILED_API std::string ArgParser::suggestion(const std::string& name) const {
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
#endif  // !GRADSCOPE_UTIL_DECLARE_ONLY

}  // namespace gradscope::util
