#pragma once
// Helpers shared by the diagnostics tests: seeded data, the networks the verdicts are tested on,
// one training step, and small parsers for the report formats (CSV, JSON Lines, SVG/XML and the
// console table). Not a test file itself (the build globs *.test.cpp only).

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace diag_test {

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace dg = gradscope::diagnostics;

// ---- data ---------------------------------------------------------------------------------

/// `rows` x `cols` "pixels" uniform in [0, 1), from a fixed seed.
template <class T>
gs::Tensor<T> pixels(gs::Index rows, gs::Index cols, std::uint64_t seed) {
  gs::Rng rng(seed);
  return gs::Tensor<T>::uniform(rows, cols, rng, T(0), T(1));
}

/// `n` labels uniform in [0, classes), from a fixed seed.
inline std::vector<int> labels(std::size_t n, int classes, std::uint64_t seed) {
  gs::Rng rng(seed);
  std::vector<int> y(n);
  for (auto& v : y) v = static_cast<int>(rng.below(static_cast<std::uint64_t>(classes)));
  return y;
}

/// A classification set: `classes` Gaussian blobs in `dims` dimensions (each class mean drawn
/// N(0, sep^2) per coordinate, unit noise around it), `n` samples with uniform labels.
template <class T>
struct Blobs {
  gs::Matrix<T> x;
  std::vector<int> y;
  /// Rows [begin, begin + rows) as a tensor, and their labels.
  gs::Tensor<T> rows(gs::Index begin, gs::Index count) const {
    return gs::Tensor<T>(gs::Matrix<T>(x.middleRows(begin, count)));
  }
  std::vector<int> labels(gs::Index begin, gs::Index count) const {
    return {y.begin() + begin, y.begin() + begin + count};
  }
};
template <class T>
Blobs<T> blobs(gs::Index n, gs::Index dims, int classes, double sep, std::uint64_t seed) {
  gs::Rng rng(seed);
  gs::Matrix<T> means(classes, dims);
  for (int c = 0; c < classes; ++c)
    for (gs::Index j = 0; j < dims; ++j) means(c, j) = static_cast<T>(sep * rng.normal());
  Blobs<T> b;
  b.x.resize(n, dims);
  b.y.resize(static_cast<std::size_t>(n));
  for (gs::Index i = 0; i < n; ++i) {
    const int c = static_cast<int>(rng.below(static_cast<std::uint64_t>(classes)));
    b.y[static_cast<std::size_t>(i)] = c;
    for (gs::Index j = 0; j < dims; ++j) b.x(i, j) = means(c, j) + static_cast<T>(rng.normal());
  }
  return b;
}

// ---- networks -----------------------------------------------------------------------------

/// Nielsen's deep sigmoid network: sizes[0] inputs, Dense + Sigmoid for every further size
/// (the output layer included), init::nielsen, weights drawn from Rng(seed).
template <class T>
std::shared_ptr<nn::Sequential<T>> nielsen_net(const std::vector<gs::Index>& sizes,
                                               std::uint64_t seed, bool final_sigmoid = true) {
  gs::Rng rng(seed);
  auto net = std::make_shared<nn::Sequential<T>>();
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
    net->template add<nn::Dense>(sizes[i], sizes[i + 1], gs::init::nielsen, true, &rng);
    if (i + 2 < sizes.size() || final_sigmoid) net->template add<nn::Sigmoid>();
  }
  return net;
}

/// A plain MLP: Dense + ReLU for each hidden width, then Dense(last, classes).
template <class T>
std::shared_ptr<nn::Sequential<T>> relu_mlp(
    const std::vector<gs::Index>& sizes, std::uint64_t seed,
    const gs::init::Initializer& init = gs::init::he_normal) {
  gs::Rng rng(seed);
  auto net = std::make_shared<nn::Sequential<T>>();
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
    net->template add<nn::Dense>(sizes[i], sizes[i + 1], init, true, &rng);
    if (i + 2 < sizes.size()) net->template add<nn::ReLU>();
  }
  return net;
}

/// Every Dense layer of a module tree, in forward order.
template <class T>
std::vector<nn::Dense<T>*> dense_layers(nn::Module<T>& m) {
  std::vector<nn::Dense<T>*> out;
  m.visit([&](nn::Module<T>& x) {
    if (auto* d = dynamic_cast<nn::Dense<T>*>(&x)) out.push_back(d);
  });
  return out;
}

/// One recorded training step: tape.reset, forward, softmax cross-entropy, backward,
/// record_gradients (before clipping and zero_grad), optimiser step, record_update, zero_grad.
template <class T>
double train_step(gs::Tape<T>& tape, nn::Module<T>& net, gs::optim::Optimizer<T>& opt,
                  dg::GradientMonitor<T>* monitor, const gs::Tensor<T>& x,
                  const std::vector<int>& y) {
  tape.reset();
  auto loss = nn::softmax_cross_entropy(net(x), y);
  tape.backward(loss);
  const double l = static_cast<double>(loss.item());
  if (monitor) monitor->record_gradients(l);
  opt.step();
  if (monitor) monitor->record_update();
  opt.zero_grad();
  return l;
}

/// Adam at lr 10 on a ReLU MLP [64, 128, 128, 10], batches of 128 from 1000 blob samples: the
/// loss jumps from about 3 to millions at step 1, the ReLUs die, and after some 20 steps the
/// latest window is calm (issue 23's "the monitor forgets"). `each(step, loss)` runs after
/// every step.
struct AdamExplosion {
  std::shared_ptr<nn::Sequential<float>> net;
  std::unique_ptr<dg::GradientMonitor<float>> monitor;
  double first_loss = 0, peak_loss = 0;

  template <class F>
  AdamExplosion(int steps, const dg::MonitorOptions& opt, F each) {
    const auto data = blobs<float>(1000, 64, 10, 0.3, 7);
    net = relu_mlp<float>({64, 128, 128, 10}, 3);
    gs::optim::Adam<float> adam(net->parameters(), {.lr = 10.0f});
    monitor = std::make_unique<dg::GradientMonitor<float>>(*net, opt);
    gs::Tape<float> tape;
    for (int step = 0; step < steps; ++step) {
      const gs::Index at = (step % 7) * 128;
      const double l =
          train_step(tape, *net, adam, monitor.get(), data.rows(at, 128), data.labels(at, 128));
      if (step == 0) first_loss = l;
      peak_loss = std::max(peak_loss, l);
      each(step, l);
    }
  }
  explicit AdamExplosion(int steps, const dg::MonitorOptions& opt = {})
      : AdamExplosion(steps, opt, [](int, double) {}) {}
};

/// The evidence of a finding by name (fails the test when it has none).
inline double evidence(const dg::Finding& f, const std::string& name) {
  for (const auto& [k, v] : f.evidence)
    if (k == name) return v;
  FAIL("finding has no evidence '" << name << "'");
  return 0;
}

/// MonitorOptions with the fields `set` sets. (Designated initializers such as
/// MonitorOptions{.every = 3} warn under GCC 12 -Wextra, -Wmissing-field-initializers, because
/// MonitorOptions::thresholds has no default member initializer.)
template <class F>
dg::MonitorOptions options(F set) {
  dg::MonitorOptions o;
  set(o);
  return o;
}

// ---- formats ------------------------------------------------------------------------------

/// printf("%.2e"): the table's number format.
inline std::string sci(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.2e", v);
  return buf;
}

/// Parses the whole string as a double (throws otherwise).
inline double to_double(const std::string& s) {
  if (s.empty()) throw std::runtime_error("empty number");
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) throw std::runtime_error("not a number: '" + s + "'");
  return v;
}

inline std::string trim(const std::string& s) {
  std::size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream is(text);
  for (std::string line; std::getline(is, line);) out.push_back(line);
  return out;
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream is(p, std::ios::binary);
  REQUIRE(is.good());
  std::ostringstream os;
  os << is.rdbuf();
  return os.str();
}

/// A fresh directory under the system temp dir, removed with the object.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("gradscope_diag_" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "_" +
            std::to_string(counter++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// CSV (RFC 4180: quoted fields, doubled quotes inside them) ---------------------------------

/// Splits one CSV record into fields; throws on a malformed quote.
inline std::vector<std::string> csv_split(const std::string& line) {
  std::vector<std::string> fields;
  std::string cur;
  std::size_t i = 0;
  bool start = true;
  while (true) {
    if (start && i < line.size() && line[i] == '"') {
      ++i;
      while (true) {
        if (i >= line.size()) throw std::runtime_error("unterminated quote in: " + line);
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            cur += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        cur += line[i++];
      }
      if (i < line.size() && line[i] != ',')
        throw std::runtime_error("text after a closing quote in: " + line);
    }
    start = false;
    if (i >= line.size()) {
      fields.push_back(cur);
      break;
    }
    if (line[i] == ',') {
      fields.push_back(cur);
      cur.clear();
      start = true;
      ++i;
      continue;
    }
    if (line[i] == '"') throw std::runtime_error("stray quote in: " + line);
    cur += line[i++];
  }
  return fields;
}

struct CsvRow {
  std::int64_t step;
  std::string layer, kind, metric;
  double value;
};

/// Parses the monitor's CSV (checks the header and the field count of every row).
inline std::vector<CsvRow> parse_csv(const std::string& text) {
  auto lines = lines_of(text);
  if (lines.empty() || lines[0] != "step,layer,kind,metric,value")
    throw std::runtime_error("bad CSV header");
  std::vector<CsvRow> rows;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const auto f = csv_split(lines[i]);
    if (f.size() != 5)
      throw std::runtime_error("CSV line " + std::to_string(i + 1) + " has " +
                               std::to_string(f.size()) + " fields: " + lines[i]);
    std::size_t used = 0;
    const long long step = std::stoll(f[0], &used);
    if (used != f[0].size()) throw std::runtime_error("bad step: " + f[0]);
    rows.push_back({step, f[1], f[2], f[3], to_double(f[4])});
  }
  return rows;
}

// JSON (a minimal recursive-descent parser: enough to check structure and read numbers) ------

struct Json {
  enum class Type { null, boolean, number, string, array, object } type = Type::null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<Json> arr;
  std::vector<std::pair<std::string, Json>> obj;

  bool has(const std::string& k) const {
    for (const auto& kv : obj)
      if (kv.first == k) return true;
    return false;
  }
  const Json& operator[](const std::string& k) const {
    for (const auto& kv : obj)
      if (kv.first == k) return kv.second;
    throw std::runtime_error("JSON object has no key '" + k + "'");
  }
  bool is_null() const { return type == Type::null; }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& s) : s_(s) {}
  /// Parses exactly one value filling the whole input (whitespace aside).
  Json parse_document() {
    Json v = value();
    ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("JSON: " + what + " at offset " + std::to_string(i_));
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  bool literal(const char* w) {
    const std::string word(w);
    if (s_.compare(i_, word.size(), word) == 0) {
      i_ += word.size();
      return true;
    }
    return false;
  }
  Json value() {
    ws();
    Json v;
    const char c = peek();
    if (c == '{') {
      v.type = Json::Type::object;
      ++i_;
      ws();
      if (peek() == '}') {
        ++i_;
        return v;
      }
      while (true) {
        ws();
        if (peek() != '"') fail("expected a key");
        std::string k = string();
        for (const auto& kv : v.obj)
          if (kv.first == k) fail("duplicate key '" + k + "'");
        ws();
        expect(':');
        Json x = value();
        v.obj.emplace_back(std::move(k), std::move(x));
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.type = Json::Type::array;
      ++i_;
      ws();
      if (peek() == ']') {
        ++i_;
        return v;
      }
      while (true) {
        v.arr.push_back(value());
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.type = Json::Type::string;
      v.str = string();
      return v;
    }
    if (literal("true")) {
      v.type = Json::Type::boolean;
      v.b = true;
      return v;
    }
    if (literal("false")) {
      v.type = Json::Type::boolean;
      return v;
    }
    if (literal("null")) return v;
    v.type = Json::Type::number;
    v.num = number();
    return v;
  }
  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("raw control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      const char e = peek();
      ++i_;
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          if (i_ + 4 > s_.size()) fail("short \\u escape");
          unsigned code = 0;
          for (int k = 0; k < 4; ++k) {
            const char h = s_[i_++];
            if (!std::isxdigit(static_cast<unsigned char>(h))) fail("bad \\u escape");
            code = code * 16 + static_cast<unsigned>(std::isdigit(static_cast<unsigned char>(h))
                                                         ? h - '0'
                                                         : std::tolower(h) - 'a' + 10);
          }
          if (code < 0x80) {
            out += static_cast<char>(code);
          } else {
            out += '?';  // not needed by these tests
          }
          break;
        }
        default:
          fail("bad escape");
      }
    }
  }
  double number() {
    // JSON grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
    const std::size_t start = i_;
    if (peek() == '-') ++i_;
    if (peek() == '0') {
      ++i_;
    } else if (std::isdigit(static_cast<unsigned char>(peek()))) {
      while (std::isdigit(static_cast<unsigned char>(peek()))) ++i_;
    } else {
      fail("bad value");
    }
    if (peek() == '.') {
      ++i_;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("digit expected after '.'");
      while (std::isdigit(static_cast<unsigned char>(peek()))) ++i_;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++i_;
      if (peek() == '+' || peek() == '-') ++i_;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("digit expected in exponent");
      while (std::isdigit(static_cast<unsigned char>(peek()))) ++i_;
    }
    return to_double(s_.substr(start, i_ - start));
  }

  const std::string& s_;
  std::size_t i_ = 0;
};

inline Json parse_json(const std::string& s) { return JsonParser(s).parse_document(); }

// XML (enough of it to check that an SVG is well formed and to read its elements) -----------

struct XmlElement {
  std::string name;
  std::map<std::string, std::string> attrs;
  int depth = 0;
};

/// Checks well-formedness (one root, balanced and properly nested tags, quoted attributes
/// without duplicates, '<' never in attribute values or text, '&' only in the five predefined
/// entities or numeric references) and returns every element in document order. Throws with
/// the offset of the first problem.
inline std::vector<XmlElement> parse_xml(const std::string& s) {
  std::vector<XmlElement> out;
  std::vector<std::string> stack;
  int roots = 0;
  std::size_t i = 0;
  auto fail = [&](const std::string& what) {
    throw std::runtime_error("XML: " + what + " at offset " + std::to_string(i));
  };
  auto check_entities = [&](const std::string& text) {
    for (std::size_t k = 0; k < text.size(); ++k) {
      if (text[k] == '<') fail("'<' in text or attribute");
      if (text[k] != '&') continue;
      const auto semi = text.find(';', k);
      if (semi == std::string::npos) fail("unterminated entity");
      const std::string ent = text.substr(k + 1, semi - k - 1);
      const bool named =
          ent == "lt" || ent == "gt" || ent == "amp" || ent == "quot" || ent == "apos";
      const bool numeric = ent.size() > 1 && ent[0] == '#';
      if (!named && !numeric) fail("unknown entity &" + ent + ";");
    }
  };
  auto is_name_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':' ||
           c == '.';
  };
  while (i < s.size()) {
    if (s[i] != '<') {
      const auto next = s.find('<', i);
      const std::string text =
          s.substr(i, next == std::string::npos ? std::string::npos : next - i);
      if (stack.empty() && !trim(text).empty()) fail("text outside the root element");
      check_entities(text);
      if (next == std::string::npos) break;
      i = next;
      continue;
    }
    if (s.compare(i, 2, "<?") == 0) {
      const auto end = s.find("?>", i);
      if (end == std::string::npos) fail("unterminated processing instruction");
      if (!out.empty() || !stack.empty()) fail("processing instruction after the root");
      i = end + 2;
      continue;
    }
    if (s.compare(i, 4, "<!--") == 0) {
      const auto end = s.find("-->", i);
      if (end == std::string::npos) fail("unterminated comment");
      i = end + 3;
      continue;
    }
    if (s.compare(i, 2, "</") == 0) {
      std::size_t k = i + 2;
      while (k < s.size() && is_name_char(s[k])) ++k;
      const std::string name = s.substr(i + 2, k - i - 2);
      while (k < s.size() && std::isspace(static_cast<unsigned char>(s[k]))) ++k;
      if (k >= s.size() || s[k] != '>') fail("bad end tag");
      if (stack.empty() || stack.back() != name)
        fail("end tag </" + name + "> does not match <" + (stack.empty() ? "" : stack.back()) +
             ">");
      stack.pop_back();
      i = k + 1;
      continue;
    }
    // Start tag or empty-element tag.
    std::size_t k = i + 1;
    while (k < s.size() && is_name_char(s[k])) ++k;
    XmlElement e;
    e.name = s.substr(i + 1, k - i - 1);
    if (e.name.empty()) fail("empty tag name");
    e.depth = static_cast<int>(stack.size());
    bool empty_tag = false;
    while (true) {
      const std::size_t before = k;
      while (k < s.size() && std::isspace(static_cast<unsigned char>(s[k]))) ++k;
      if (k >= s.size()) fail("unterminated tag");
      if (s[k] == '>') {
        ++k;
        break;
      }
      if (s.compare(k, 2, "/>") == 0) {
        k += 2;
        empty_tag = true;
        break;
      }
      if (k == before) fail("attributes must be separated by white space");
      std::size_t a = k;
      while (k < s.size() && is_name_char(s[k])) ++k;
      const std::string attr = s.substr(a, k - a);
      if (attr.empty()) fail("bad attribute name");
      if (k >= s.size() || s[k] != '=') fail("attribute '" + attr + "' without '='");
      ++k;
      if (k >= s.size() || (s[k] != '"' && s[k] != '\'')) fail("unquoted attribute '" + attr + "'");
      const char q = s[k++];
      const auto end = s.find(q, k);
      if (end == std::string::npos) fail("unterminated attribute value");
      const std::string value = s.substr(k, end - k);
      check_entities(value);
      if (!e.attrs.emplace(attr, value).second) fail("duplicate attribute '" + attr + "'");
      k = end + 1;
    }
    if (stack.empty()) {
      if (++roots > 1) fail("more than one root element");
    }
    out.push_back(e);
    if (!empty_tag) stack.push_back(e.name);
    i = k;
  }
  if (!stack.empty()) throw std::runtime_error("XML: unclosed element <" + stack.back() + ">");
  if (roots != 1) throw std::runtime_error("XML: no root element");
  return out;
}

// The console table -------------------------------------------------------------------------

/// One row of monitor.report()'s table, the numeric columns as printed.
struct TableRow {
  std::string layer, dW, db, delta, gain, upd;
};

/// Reads the table of format_report: finds the header, then for each row the right-aligned
/// columns ending where the header's column names end.
inline std::map<std::string, TableRow> parse_table(const std::string& report) {
  const auto lines = lines_of(report);
  std::size_t h = 0;
  while (h < lines.size() && lines[h].rfind("layer", 0) != 0) ++h;
  if (h == lines.size()) throw std::runtime_error("table header not found");
  const std::string& header = lines[h];
  auto column = [&](const std::string& name, std::size_t width) {
    const auto p = header.find(name);
    if (p == std::string::npos) throw std::runtime_error("no column " + name);
    const std::size_t end = p + name.size();
    return std::pair<std::size_t, std::size_t>(end - width, width);
  };
  const auto dW = column("|dW|", 10), db = column("|db|", 10), delta = column("|delta|", 10),
             gain = column("gain", 9), upd = column("upd/W", 10);
  std::map<std::string, TableRow> rows;
  for (std::size_t i = h + 1; i < lines.size(); ++i) {
    const std::string& l = lines[i];
    if (l.rfind("flags:", 0) == 0) break;
    if (l.size() < upd.first + upd.second) throw std::runtime_error("short table row: " + l);
    TableRow r;
    r.layer = l.substr(0, l.find(' '));
    r.dW = trim(l.substr(dW.first, dW.second));
    r.db = trim(l.substr(db.first, db.second));
    r.delta = trim(l.substr(delta.first, delta.second));
    r.gain = trim(l.substr(gain.first, gain.second));
    r.upd = trim(l.substr(upd.first, upd.second));
    rows[r.layer] = r;
  }
  return rows;
}

}  // namespace diag_test
