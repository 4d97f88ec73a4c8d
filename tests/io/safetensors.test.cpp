// The safetensors format layer: files built by hand from the specification are read (and loaded
// into layers, as a PyTorch state_dict would be); our files are taken apart by hand and checked
// against the specification and the documented checksum; every kind of malformed file is
// rejected with a message naming the file and the byte offset.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>
#include <gradscope/io/io.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "io_test_util.hpp"

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace io = gradscope::io;
namespace optim = gradscope::optim;
using namespace io_test;
using Catch::Matchers::Contains;
using Catch::Matchers::Equals;
using Catch::Matchers::StartsWith;

namespace {

std::uint64_t u64_le(const Bytes& b, std::size_t at) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v |= std::to_integer<std::uint64_t>(b[at + i]) << (8 * i);
  return v;
}

/// FNV-1a 64, written independently of the library.
std::uint64_t fnv1a(std::uint64_t h, const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

TEST_CASE("a file built by hand from the specification is read", "[io][safetensors]") {
  TempDir dir;
  // Entries in no particular order, metadata between them, an I64 tensor, a scalar, an empty
  // tensor, and a header length that is not a multiple of 8.
  const std::string json = R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[16,40]},)"
                           R"("__metadata__":{"format":"pt"},)"
                           R"("s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},)"
                           R"( "n" : { "dtype" : "I64", "shape" : [1], "data_offsets" : [8, 16] },)"
                           R"("e":{"dtype":"F32","shape":[0,4],"data_offsets":[40,40]}})";
  REQUIRE(json.size() % 8 != 0);
  Bytes data;
  append_le<double>(data, 2.5);
  append_le<std::int64_t>(data, -7);
  for (const float v : {0.5f, -1.25f, 3.0f, 1e-3f, -0.0f, 6.0f}) append_le<float>(data, v);
  const auto path = dir / "hand.safetensors";
  write_bytes(path, safetensors_bytes(json, data));

  const io::SafetensorsFile f = io::read_safetensors(path);
  CHECK(f.header_length() == json.size());
  CHECK(f.data_start() == 8 + json.size());
  CHECK(f.file_size() == 8 + json.size() + 40);
  CHECK(f.metadata() == io::Metadata{{"format", "pt"}});
  CHECK_FALSE(f.checksum_verified());
  REQUIRE(f.tensors().size() == 4);
  // tensors() is in data order.
  CHECK(f.tensors()[0].name == "s");
  CHECK(f.tensors()[1].name == "n");
  CHECK(f.tensors()[2].name == "w");
  CHECK(f.tensors()[3].name == "e");

  const io::TensorEntry* w = f.find("w");
  REQUIRE(w);
  CHECK(w->dtype == "F32");
  CHECK(w->shape == std::vector<std::uint64_t>{2, 3});
  CHECK(w->shape_str() == "[2, 3]");
  CHECK(w->begin == 16);
  CHECK(w->end == 40);
  const auto wt = f.tensor<float>("w");
  CHECK(wt.shape() == gs::Shape::matrix(2, 3));
  gs::Matrix<float> expected(2, 3);
  expected << 0.5f, -1.25f, 3.0f, 1e-3f, -0.0f, 6.0f;
  CHECK(wt.to_matrix() == expected);
  CHECK(std::signbit(wt.value()(1, 1)));

  const auto s = f.tensor<double>("s");
  CHECK(s.rank() == 0);
  CHECK(s.item() == 2.5);
  CHECK(f.find("s")->shape_str() == "[]");

  const auto e = f.tensor<float>("e");
  CHECK(e.shape() == gs::Shape::matrix(0, 4));

  const io::TensorEntry* n = f.find("n");
  REQUIRE(n);
  CHECK(n->dtype == "I64");
  const auto raw = f.data(*n);
  REQUIRE(raw.size() == 8);
  std::int64_t nv = 0;
  std::memcpy(&nv, raw.data(), 8);
  CHECK(nv == -7);
  CHECK_THROWS_WITH(f.tensor<float>("n"), Contains("tensor 'n' has dtype I64, not F32"));
  CHECK_THROWS_WITH(f.tensor<double>("w"), Contains("tensor 'w' has dtype F32, not F64"));
  CHECK_THROWS_WITH(f.tensor<float>("zz"), Contains("no tensor 'zz'"));
  CHECK(f.find("zz") == nullptr);

  // A rank-3 tensor is readable as bytes but not as a gradscope tensor.
  const std::string json3 = R"({"t":{"dtype":"F32","shape":[1,1,2],"data_offsets":[0,8]}})";
  Bytes d3;
  append_le<float>(d3, 1.0f);
  append_le<float>(d3, 2.0f);
  const auto f3 = io::parse_safetensors(safetensors_bytes(json3, d3));
  CHECK(f3.find("t")->shape_str() == "[1, 1, 2]");
  CHECK_THROWS_AS(f3.tensor<float>("t"), gs::ShapeError);
}

TEST_CASE("a PyTorch-style state dict loads into layers", "[io][safetensors]") {
  // What safetensors.torch.save_file writes for nn.Linear(3, 2) plus an int64 counter: metadata
  // first, the header padded with spaces to a multiple of 8.
  std::string json = R"({"__metadata__":{"format":"pt"},)"
                     R"("bias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]},)"
                     R"("num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[32,40]},)"
                     R"("weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";
  json.append((8 - json.size() % 8) % 8, ' ');
  Bytes data;
  for (const float v : {1.f, 2.f, 3.f, -1.f, 0.f, 4.f}) append_le<float>(data, v);
  for (const float v : {0.5f, -2.f}) append_le<float>(data, v);
  append_le<std::int64_t>(data, 12);
  const io::SafetensorsFile f = io::parse_safetensors(safetensors_bytes(json, data), "linear.st");

  gs::Rng rng(1);
  nn::Dense<float> dense(3, 2, gs::init::xavier_uniform, true, &rng);
  const auto before = snapshot<float>(dense.named_parameters());
  CHECK_THAT(error_of([&] { io::load_checkpoint(f, dense); }),
             Contains("1 tensor in the file has nothing to load into: 'num_batches_tracked'"));
  CHECK(snapshot<float>(dense.named_parameters()) == before);

  io::load_checkpoint(f, dense, nullptr, {.strict = false});
  const gs::Tensor<float> x{{1, 1, 1}, {2, 0, -1}};
  gs::Matrix<float> y(2, 2);
  y << 1 + 2 + 3 + 0.5f, -1 + 0 + 4 - 2, 2 + 0 - 3 + 0.5f, -2 + 0 - 4 - 2;
  CHECK(dense(x).to_matrix() == y);

  // A float64 file loads into a float32 layer only on request; the message says how.
  const std::string json64 = R"({"weight":{"dtype":"F64","shape":[2,3],"data_offsets":[0,48]},)"
                             R"("bias":{"dtype":"F64","shape":[2],"data_offsets":[48,64]}})";
  const auto f64 = io::parse_safetensors(safetensors_bytes(json64, Bytes(64)), "linear64.st");
  CHECK_THAT(error_of([&] { io::load_checkpoint(f64, dense); }),
             Equals("[gradscope.data] linear64.st: tensor 'weight': file has dtype F64, "
                    "model has F32 (LoadOptions::convert_dtype = true converts F64 to F32)"));
  // A [1, 2] bias is not a [2] bias.
  const std::string json_rank = R"({"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                                R"("bias":{"dtype":"F32","shape":[1,2],"data_offsets":[24,32]}})";
  const auto fr = io::parse_safetensors(safetensors_bytes(json_rank, Bytes(32)), "rank.st");
  CHECK_THAT(error_of([&] { io::load_checkpoint(fr, dense); }),
             Equals("[gradscope.shape] rank.st: tensor 'bias': file has shape [1, 2], model "
                    "has [2]"));
  CHECK(dense(x).to_matrix() == y);
}

TEST_CASE("our files have the layout the specification describes", "[io][safetensors]") {
  TempDir dir;
  auto net = make_model<float>(4);
  optim::Adam<float> opt(net->parameters());
  train_step<float>(*net, opt, 1);
  const auto path = dir / "ours.safetensors";
  io::save_checkpoint(path, *net, &opt, {{"epoch", "9"}, {"who", "test"}});
  const Bytes b = read_bytes(path);

  // 8-byte little-endian header length, then a JSON object padded with spaces to 8 bytes.
  REQUIRE(b.size() >= 8);
  const std::uint64_t n = u64_le(b, 0);
  REQUIRE(8 + n <= b.size());
  CHECK(n % 8 == 0);
  const std::string text(reinterpret_cast<const char*>(b.data()) + 8, n);
  CHECK(text.front() == '{');
  const auto close = text.find_last_of('}');
  REQUIRE(close != std::string::npos);
  CHECK(text.find_first_not_of(' ', close + 1) == std::string::npos);
  CHECK(text.size() - close - 1 < 8);
  const auto header = nlohmann::json::parse(text);
  REQUIRE(header.is_object());

  // Metadata: string to string, with our format and checksum and the user's keys.
  const auto& meta = header.at("__metadata__");
  REQUIRE(meta.is_object());
  for (const auto& [k, v] : meta.items()) CHECK(v.is_string());
  CHECK(meta.at("gradscope.format") == "1");
  CHECK(meta.at("epoch") == "9");
  CHECK(meta.at("who") == "test");
  const std::string checksum = meta.at("gradscope.checksum");
  CHECK(checksum.size() == 16);
  CHECK(checksum.find_first_not_of("0123456789abcdef") == std::string::npos);

  // Every tensor: dtype F32, shape as in the model ([] / [n] / [r, c]), data at its offsets.
  const auto expected = gs::io::checkpoint_tensors(*net, &opt);
  CHECK(header.size() == expected.size() + 1);
  const std::uint64_t data_size = b.size() - 8 - n;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;
  for (const auto& t : expected) {
    INFO("tensor " << t.name);
    REQUIRE(header.contains(t.name));
    const auto& entry = header.at(t.name);
    CHECK(entry.at("dtype") == "F32");
    std::vector<std::uint64_t> shape = entry.at("shape");
    const gs::Shape s = t.tensor.shape();
    if (s.rank == 0) CHECK(shape.empty());
    if (s.rank == 1) CHECK(shape == std::vector<std::uint64_t>{std::uint64_t(s.cols)});
    if (s.rank == 2)
      CHECK(shape == std::vector<std::uint64_t>{std::uint64_t(s.rows), std::uint64_t(s.cols)});
    std::vector<std::uint64_t> off = entry.at("data_offsets");
    REQUIRE(off.size() == 2);
    REQUIRE(off[1] - off[0] == sizeof(float) * static_cast<std::uint64_t>(s.size()));
    REQUIRE(off[1] <= data_size);
    std::vector<float> values(static_cast<std::size_t>(s.size()));
    std::memcpy(values.data(), b.data() + 8 + n + off[0], off[1] - off[0]);  // little-endian host
    CHECK(std::memcmp(values.data(), t.tensor.value().data(), off[1] - off[0]) == 0);
    spans.emplace_back(off[0], off[1]);
  }
  CHECK(header.at("optim.step").at("shape").empty());
  // Contiguous, no holes, covering the data buffer.
  std::sort(spans.begin(), spans.end());
  std::uint64_t cursor = 0;
  for (const auto& [begin, end] : spans) {
    CHECK(begin == cursor);
    cursor = end;
  }
  CHECK(cursor == data_size);

  // The checksum, recomputed from its documented definition.
  std::vector<std::string> names;
  for (const auto& [k, v] : header.items())
    if (k != "__metadata__") names.push_back(k);
  std::sort(names.begin(), names.end());
  std::string canonical;
  for (const auto& name : names) {
    const auto& entry = header.at(name);
    std::string dims;
    for (const auto& d : entry.at("shape")) {
      if (!dims.empty()) dims += ',';
      dims += d.dump();
    }
    canonical += "tensor " + std::to_string(name.size()) + ":" + name + " " +
                 entry.at("dtype").get<std::string>() + " [" + dims + "] " +
                 entry.at("data_offsets")[0].dump() + " " + entry.at("data_offsets")[1].dump() +
                 "\n";
  }
  std::map<std::string, std::string> sorted_meta = meta;
  for (const auto& [k, v] : sorted_meta)
    if (k != "gradscope.checksum")
      canonical += "meta " + std::to_string(k.size()) + ":" + k + " " + std::to_string(v.size()) +
                   ":" + v + "\n";
  std::uint64_t h = fnv1a(0xcbf29ce484222325ull, canonical.data(), canonical.size());
  h = fnv1a(h, b.data() + 8 + n, data_size);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  CHECK(checksum == hex);
}

TEST_CASE("named tensors round-trip through save_safetensors", "[io][safetensors]") {
  TempDir dir;
  gs::Rng rng(5);
  const std::vector<gs::NamedTensor<double>> tensors = {
      {"scalar", gs::Tensor<double>::scalar(-3.25)},
      {"vector", gs::Tensor<double>::vector({1, 2, 3})},
      {"matrix", gs::Tensor<double>::randn(4, 7, rng)},
      {"unicode \xce\xbb", gs::Tensor<double>::randn(1, 1, rng)}};
  const auto path = dir / "named.safetensors";
  io::save_safetensors(path, tensors, {{"k", "v"}});
  const auto f = io::read_safetensors(path);
  CHECK(f.checksum_verified());
  CHECK(f.metadata().at("k") == "v");
  for (const auto& t : tensors) {
    const auto back = f.tensor<double>(t.name);
    CHECK(back.shape() == t.tensor.shape());
    CHECK(back.to_matrix() == t.tensor.to_matrix());
  }
  CHECK(io::encode_safetensors(tensors, {{"k", "v"}}) == read_bytes(path));

  std::vector<gs::NamedTensor<double>> targets;
  for (const auto& t : tensors)
    targets.push_back({t.name, gs::Tensor<double>::zeros(t.tensor.shape())});
  io::load_safetensors(path, targets);
  for (std::size_t i = 0; i < tensors.size(); ++i)
    CHECK(targets[i].tensor.to_matrix() == tensors[i].tensor.to_matrix());

  SECTION("invalid names and metadata are refused before anything is written") {
    using V = std::vector<gs::NamedTensor<double>>;
    const auto x = gs::Tensor<double>::scalar(1);
    const auto out = dir / "bad.safetensors";
    CHECK_THROWS_WITH(io::save_safetensors(out, V{{"a", x}, {"a", x}}),
                      Contains("two tensors are named 'a'"));
    CHECK_THROWS_AS(io::save_safetensors(out, V{{"", x}}), gs::ValueError);
    CHECK_THROWS_WITH(io::save_safetensors(out, V{{"__metadata__", x}}),
                      Contains("'__metadata__' cannot name a tensor"));
    CHECK_THROWS_WITH(io::save_safetensors(out, V{{"bad \xff", x}}),
                      Contains("is not valid UTF-8"));
    CHECK_THROWS_AS(io::save_safetensors(out, V{{"a", x}}, {{"k", "\xc3"}}), gs::ValueError);
    CHECK_THROWS_AS(io::save_safetensors(out, V{{"a", x}}, {{"gradscope.format", "2"}}),
                    gs::UsageError);
    CHECK_THROWS_AS(io::save_safetensors(out, V{{"a", gs::Tensor<double>()}}), gs::UsageError);
    CHECK(dir.entries() == std::vector<std::string>{"named.safetensors"});
  }
}

TEST_CASE("malformed files are rejected naming the file and the byte offset",
          "[io][safetensors][corruption]") {
  struct Case {
    const char* what;
    Bytes bytes;
    std::string message;
  };
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  auto file = [](const std::string& json, std::size_t data_bytes) {
    return safetensors_bytes(json, Bytes(data_bytes));
  };
  Bytes huge;
  append_le<std::uint64_t>(huge, 100ull * 1024 * 1024 + 1);
  Bytes beyond;
  append_le<std::uint64_t>(beyond, 64);
  beyond.resize(40, std::byte{' '});
  // clang-format off
  const std::vector<Case> cases = {
      {"empty file", {}, "the file is 0 bytes, too short for the 8-byte header length at byte offset 0"},
      {"header length above 100 MiB", huge, "the header length at byte offset 0 is 104857601 bytes, above the limit of 104857600"},
      {"header length beyond the file", beyond, "the header length at byte offset 0 says 64 bytes of JSON follow, but the file ends after 32"},
      {"invalid JSON", file(R"({"a":})", 0), "invalid JSON in the JSON header (byte offsets 8 to 14) at byte offset 13"},
      {"empty header", file("", 0), "invalid JSON in the JSON header (byte offsets 8 to 8) at byte offset 8"},
      {"trailing garbage", file(R"({} x)", 0), "at byte offset 11"},
      {"not an object", file("[1]", 0), "is a JSON array, not an object"},
      {"unknown dtype", file(R"({"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", 8), "tensor 'a' in the JSON header (byte offsets 8 to 61) has unknown dtype 'Q7'"},
      {"no dtype", file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8), "tensor 'a' in the JSON header (byte offsets 8 to 48) has no string \"dtype\""},
      {"entry not an object", file(R"({"a":3})", 0), "tensor 'a' in the JSON header (byte offsets 8 to 15) is not an object"},
      {"negative dimension", file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "\"shape\" holds -2, not a non-negative integer"},
      {"fractional dimension", file(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}})", 8), "\"shape\" holds 1.5, not a non-negative integer"},
      {"shape not an array", file(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8), "\"shape\" is not an array"},
      {"three offsets", file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", 8), "\"data_offsets\" has 3 values, not [begin, end]"},
      {"no offsets", file(R"({"a":{"dtype":"F32","shape":[2]}})", 8), "has no \"data_offsets\""},
      {"offsets reversed", file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8), "data_offsets [8, 0] end before they begin"},
      {"offsets beyond the data", file("{" + ok_entry + "}", 4), "data_offsets [0, 8] reach byte offset 70, beyond the end of the file at 66 (truncated?)"},
      {"offsets inconsistent with the shape", file(R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}})", 8), "data_offsets [0, 8] span 8 bytes, but dtype F64 with shape [2] needs 16"},
      {"overflowing shape", file(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8), "shape [4294967296, 4294967296] is too large"},
      {"overlap", file("{" + ok_entry + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "tensor 'b' (data at byte offsets 119 to 123) overlaps tensor 'a' (ending at byte offset 123)"},
      {"hole", file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "4 bytes of the data buffer belong to no tensor, at byte offsets 62 to 66"},
      {"trailing bytes", file("{" + ok_entry + "}", 12), "4 bytes at the end of the file belong to no tensor, at byte offsets 70 to 74"},
      {"non-string metadata", file(R"({"__metadata__":{"k":1}})", 0), "metadata key 'k' in the JSON header (byte offsets 8 to 32) holds a number"},
      {"metadata not an object", file(R"({"__metadata__":"x"})", 0), "\"__metadata__\" in the JSON header (byte offsets 8 to 28) is not an object"},
      {"unsupported format", file(R"({"__metadata__":{"gradscope.format":"2"}})", 0), "gradscope.format is '2'; this version reads format 1"},
      {"format without checksum", file(R"({"__metadata__":{"gradscope.format":"1"}})", 0), "the header declares gradscope.format but has no gradscope.checksum"},
      {"malformed checksum", file(R"({"__metadata__":{"gradscope.checksum":"XYZ"}})", 0), "gradscope.checksum 'XYZ' in the JSON header (byte offsets 8 to 53) is not 16 lowercase hex digits"},
      {"wrong checksum", file(R"({"__metadata__":{"gradscope.checksum":"0123456789abcdef"}})", 0), "checksum mismatch: the header says 0123456789abcdef but the header entries and data (byte offsets 8 to 66) hash to"},
      {"invalid UTF-8 in a name", file("{\"\xff\":{}}", 0), "invalid JSON"},
      {"NUL byte hiding trailing garbage", file(std::string("{} ") + '\0' + "xx", 0), "invalid JSON in the JSON header (byte offsets 8 to 14) at byte offset 11: a NUL byte"},
  };
  // clang-format on
  for (const auto& c : cases) {
    INFO(c.what);
    const std::string message = error_of([&] { io::parse_safetensors(c.bytes, "bad.st"); });
    CHECK_THAT(message, StartsWith("[gradscope.data] bad.st: "));
    CHECK_THAT(message, Contains(c.message));
  }
  // A zero-sized tensor anywhere, and no tensors at all, are fine.
  CHECK_NOTHROW(io::parse_safetensors(file("{}", 0)));
  CHECK_NOTHROW(io::parse_safetensors(
      file(R"({"z":{"dtype":"BF16","shape":[3,0],"data_offsets":[8,8]},)" + ok_entry + "}", 8)));
}

TEMPLATE_TEST_CASE("LoadOptions::convert_dtype loads F64, F32, F16 and BF16 files into a model",
                   "[io][safetensors][convert]", float, double) {
  using T = TestType;
  // Dense(3, 2): weight [2, 3] in F16, bias [2] in BF16, values chosen to cover the encodings
  // (normal, negative, subnormal, largest half, infinity).
  const std::string json = R"({"weight":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},)"
                           R"("bias":{"dtype":"BF16","shape":[2],"data_offsets":[12,16]}})";
  Bytes data;
  for (const std::uint16_t h : {0x3C00, 0xC000, 0x3800, 0x0001, 0x7BFF, 0xFC00})
    append_le<std::uint16_t>(data, h);  // 1, -2, 0.5, 2^-24, 65504, -inf
  for (const std::uint16_t b : {0x4049, 0xBF80}) append_le<std::uint16_t>(data, b);  // 3.140625, -1
  const auto file = io::parse_safetensors(safetensors_bytes(json, data), "half.st");
  gs::Rng rng(3);
  nn::Dense<T> dense(3, 2, gs::init::xavier_uniform, true, &rng);
  const auto before = snapshot<T>(dense.named_parameters());
  CHECK_THAT(
      error_of([&] { io::load_checkpoint(file, dense); }),
      Contains("tensor 'weight': file has dtype F16, model has " + std::string(io::dtype_of<T>()) +
               " (LoadOptions::convert_dtype = true "
               "converts F16 to " +
               std::string(io::dtype_of<T>()) + ")"));
  CHECK(snapshot<T>(dense.named_parameters()) == before);
  io::load_checkpoint(file, dense, nullptr, {.convert_dtype = true});
  const T inf = std::numeric_limits<T>::infinity();
  CHECK(dense.weight().to_matrix() ==
        (gs::Matrix<T>(2, 3) << 1, -2, 0.5, std::ldexp(T(1), -24), 65504, -inf).finished());
  CHECK(dense.bias().to_matrix() == (gs::Matrix<T>(1, 2) << T(3.140625), -1).finished());

  // Integers are never converted.
  const std::string ints = R"({"weight":{"dtype":"I16","shape":[2,3],"data_offsets":[0,12]},)"
                           R"("bias":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})";
  const auto fi = io::parse_safetensors(safetensors_bytes(ints, Bytes(20)), "ints.st");
  CHECK_THAT(error_of([&] { io::load_checkpoint(fi, dense, nullptr, {.convert_dtype = true}); }),
             Contains("file has dtype I16") && Contains("only floating-point tensors"));
}

TEST_CASE("a float64 checkpoint loads into a float model on request, with its optimiser",
          "[io][checkpoint][convert]") {
  TempDir dir;
  const auto path = dir / "double.safetensors";
  auto a = make_model<double>(1);
  optim::Adam<double> a_opt(a->parameters(), {.lr = 0.01});
  train_step<double>(*a, a_opt, 7);
  io::save_checkpoint(path, *a, &a_opt);

  auto b = make_model<float>(2);
  optim::Adam<float> b_opt(b->parameters(), {.lr = 0.01f});
  const auto before = snapshot<float>(*b, &b_opt);
  CHECK_THAT(error_of([&] { io::load_checkpoint(path, *b, &b_opt); }),
             Contains("file has dtype F64, model has F32 (LoadOptions::convert_dtype = true "
                      "converts F64 to F32)"));
  io::load_checkpoint(path, *b, &b_opt, {.convert_dtype = true});
  const auto want = io::checkpoint_tensors<double>(*a, &a_opt);
  const auto got = io::checkpoint_tensors<float>(*b, &b_opt);
  REQUIRE(want.size() == got.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO(want[i].name);
    CHECK(got[i].name == want[i].name);
    CHECK(got[i].tensor.to_matrix() == want[i].tensor.to_matrix().template cast<float>());
  }
  CHECK(b_opt.steps() == 1);

  // A value beyond float's range is an error, not an infinity, and the load changes nothing.
  a->named_parameters()[2].tensor.mutable_value()(0, 1) = -1e300;
  io::save_checkpoint(path, *a, &a_opt);
  auto c = make_model<float>(3);
  const auto c_before = snapshot<float>(*c);
  CHECK_THAT(error_of([&] { io::load_checkpoint(path, *c, nullptr, {.convert_dtype = true}); }),
             Contains("tensor '1.weight': element 1 (row 0, column 1) is beyond the range of F32 "
                      "(converting from F64)"));
  CHECK(snapshot<float>(*c) == c_before);
}

TEST_CASE("load_state_dict loads a name -> tensor map with the checks of the checkpoint loader",
          "[io][state_dict]") {
  const auto a = make_model<float>(1);
  auto b = make_model<float>(2);
  const auto b_before = snapshot<float>(*b);

  // state_dict shares the model's storage, as in PyTorch.
  auto sd = io::state_dict(*a);
  std::vector<std::string> names;
  for (const auto& [name, t] : sd) names.push_back(name);
  CHECK(names == std::vector<std::string>{"0.bias", "0.weight", "1.bias", "1.running_mean",
                                          "1.running_var", "1.weight", "3.bias", "3.weight"});
  CHECK(sd.at("0.weight").same_as(a->named_parameters()[0].tensor));

  SECTION("a matching map loads, values copied") {
    io::load_state_dict(*b, sd);
    CHECK(snapshot<float>(*b) == snapshot<float>(*a));
    CHECK_FALSE(b->named_parameters()[0].tensor.same_as(sd.at("0.weight")));
  }
  SECTION("missing and extra names") {
    auto partial = sd;
    partial.erase("3.bias");
    partial.erase("1.running_var");
    CHECK_THAT(error_of([&] { io::load_state_dict(*b, partial); }),
               Equals("[gradscope.data] load_state_dict: missing 2 tensors to load: '3.bias', "
                      "'1.running_var'"));
    auto extra = sd;
    extra.emplace("head.weight", gs::Tensor<float>::zeros(2, 2));
    CHECK_THAT(error_of([&] { io::load_state_dict(*b, extra); }),
               Equals("[gradscope.data] load_state_dict: 1 tensor in the state dict has nothing "
                      "to load into: 'head.weight' (LoadOptions::strict = false ignores them)"));
    CHECK(snapshot<float>(*b) == b_before);
    io::load_state_dict(*b, extra, {.strict = false});
    CHECK(snapshot<float>(*b) == snapshot<float>(*a));
  }
  SECTION("shapes and ranks") {
    auto wrong = sd;
    wrong["0.weight"] = gs::Tensor<float>::zeros(8, 4);
    CHECK_THAT(error_of([&] { io::load_state_dict(*b, wrong); }),
               Equals("[gradscope.shape] load_state_dict: tensor '0.weight': state dict has shape "
                      "[8, 4], model has [8, 5]"));
    wrong = sd;
    wrong["0.bias"] = gs::Tensor<float>::zeros(1, 8);  // a [1, 8] matrix is not an [8] vector
    CHECK_THROWS_AS(io::load_state_dict(*b, wrong), gs::ShapeError);
    wrong["0.bias"] = gs::Tensor<float>();
    CHECK_THROWS_WITH(io::load_state_dict(*b, wrong), Contains("tensor '0.bias' is undefined"));
    CHECK(snapshot<float>(*b) == b_before);
  }
  SECTION("the other scalar type converts only on request") {
    io::StateDict<double> wide;
    for (const auto& [name, t] : sd)
      wide.emplace(name, gs::Tensor<double>(t.to_matrix().cast<double>(), t.rank(), false));
    CHECK_THAT(error_of([&] { io::load_state_dict(*b, wide); }),
               Contains("state dict has dtype F64, model has F32 (LoadOptions::convert_dtype = "
                        "true converts F64 to F32)"));
    io::load_state_dict(*b, wide, {.convert_dtype = true});
    CHECK(snapshot<float>(*b) == snapshot<float>(*a));
    wide.at("3.weight").mutable_value()(1, 2) = 1e39;
    auto c = make_model<float>(3);
    const auto c_before = snapshot<float>(*c);
    CHECK_THAT(error_of([&] { io::load_state_dict(*c, wide, {.convert_dtype = true}); }),
               Contains("tensor '3.weight': element 10 (row 1, column 2) is beyond the range of "
                        "F32"));
    CHECK(snapshot<float>(*c) == c_before);
    // float into double widens exactly.
    auto d = make_model<double>(4);
    io::load_state_dict(*d, sd, {.convert_dtype = true});
    CHECK(d->named_parameters()[0].tensor.to_matrix() ==
          a->named_parameters()[0].tensor.to_matrix().cast<double>());
  }
  SECTION("non-finite values load as they are, as from a checkpoint") {
    auto odd = sd;
    odd["0.weight"] = gs::Tensor<float>(sd.at("0.weight").to_matrix(), 2, false);
    odd.at("0.weight").mutable_value()(0, 0) = std::numeric_limits<float>::quiet_NaN();
    odd.at("0.weight").mutable_value()(0, 1) = -std::numeric_limits<float>::infinity();
    io::load_state_dict(*b, odd);
    CHECK(std::isnan(b->named_parameters()[0].tensor.value()(0, 0)));
    CHECK(b->named_parameters()[0].tensor.value()(0, 1) == -std::numeric_limits<float>::infinity());
  }
  SECTION("named children round-trip through a state dict") {
    nn::Sequential<float> named, other;
    gs::Rng r1(1), r2(2);
    named.add("encoder", std::make_shared<nn::Dense<float>>(3, 4, gs::init::normal(1), true, &r1));
    other.add("encoder", std::make_shared<nn::Dense<float>>(3, 4, gs::init::normal(1), true, &r2));
    io::load_state_dict(other, io::state_dict(named));
    CHECK(other.at(0).parameters()[0].to_matrix() == named.at(0).parameters()[0].to_matrix());
  }
}

TEST_CASE("messages quoting a corrupted file escape bytes that are not printable UTF-8",
          "[io][safetensors][corruption]") {
  // A checkpoint whose header has one byte of a tensor name replaced by 0xFF: nlohmann's message
  // quotes the bytes it last read, raw, and the message carried them.
  auto net = make_model<float>(1);
  Bytes bytes = io::encode_checkpoint(*net);
  const std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const auto at = text.find("0.weight");
  REQUIRE(at != std::string::npos);
  bytes[at + 1] = std::byte{0xFF};
  const std::string message = error_of([&] { io::parse_safetensors(bytes, "bad.st"); });
  CHECK_THAT(message, StartsWith("[gradscope.data] bad.st: invalid JSON in the JSON header"));
  CHECK_THAT(message, Contains("\\xFF"));
  CHECK(printable_utf8(message));
  CHECK_NOTHROW(nlohmann::json(message).dump());  // valid UTF-8, by another judge

  // Control characters in names and metadata (valid JSON, valid UTF-8) could drive a terminal.
  const std::string meta = error_of([] {
    io::parse_safetensors(safetensors_bytes(R"({"__metadata__":{"k\u001b[2J\\":1}})", {}),
                          "esc.st");
  });
  CHECK_THAT(meta, Contains("metadata key 'k\\x1B[2J\\\\' in the JSON header"));
  CHECK(printable_utf8(meta));
  const std::string name = error_of([] {
    io::parse_safetensors(
        safetensors_bytes(R"({"a\u0007\u0085b":{"dtype":"Q1","shape":[],"data_offsets":[0,0]}})",
                          {}),
        "esc.st");
  });
  CHECK_THAT(name, Contains("tensor 'a\\x07\\xC2\\x85b'"));  // BEL and the C1 control NEL

  // A long name is cut at 80 bytes, never inside a character: 79 ASCII bytes then a euro sign.
  const std::string long_name = std::string(79, 'n') + "\u20ac" + std::string(20, 'n');
  const std::string cut = error_of([&] {
    io::parse_safetensors(
        safetensors_bytes(
            R"({")" + long_name + R"(":{"dtype":"Q1","shape":[],"data_offsets":[0,0]}})", {}),
        "esc.st");
  });
  CHECK_THAT(cut, Contains("tensor '" + std::string(79, 'n') + "...' (102 bytes)"));
  CHECK(printable_utf8(cut));
  // Printable text passes unchanged.
  CHECK(io::detail::quote_name("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "'caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80'");
  CHECK(io::detail::quote_name("\xed\xa0\x80|\xc0\xaf|\xf4\x90\x80\x80") ==
        "'\\xED\\xA0\\x80|\\xC0\\xAF|\\xF4\\x90\\x80\\x80'");  // surrogate, overlong, > U+10FFFF
}
