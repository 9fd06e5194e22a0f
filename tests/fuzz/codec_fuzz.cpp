// libFuzzer target for BinaryCodec decoding, and for reading a worker's result payload. The first
// input byte picks a type (or the payload check); the rest is decoded as that type. Decoding may
// only succeed or throw CodecError. When it succeeds, the value must re-encode to exactly the bytes
// it was decoded from (the encoding is canonical), or, for unordered containers, to an encoding
// that decodes to an equal value. Anything else aborts.
//
// Built with PROCPOOL_FUZZ_WRITE_SEEDS, the same file is a program that writes valid encodings
// of every type into a directory: the seed corpus, always in step with the format.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <procpool/codec.hpp>
#include <procpool/detail/invoke.hpp>
#include <procpool/detail/wire.hpp>

namespace {

enum class Level : std::uint8_t { low, mid, high };

struct Sample {  // padded: encoded field by field
  std::int32_t t;
  double value;
  std::int16_t quality;
  bool operator==(const Sample&) const = default;
};

struct Vec3 {  // no padding: copied in bulk
  double x, y, z;
  bool operator==(const Vec3&) const = default;
};

struct Empty {
  bool operator==(const Empty&) const = default;
};

struct Record {
  std::int32_t id;
  std::string name;
  std::vector<Sample> samples;
  std::optional<std::map<int, std::string>> tags;
  std::variant<std::monostate, bool, std::tuple<int, std::string>> extra;
  std::array<std::uint16_t, 3> dims;
  Level level;
  std::chrono::milliseconds timeout;
  std::deque<Vec3> points;
  bool operator==(const Record&) const = default;
};

// Private state and a codec<T> that validates: exercises the customization point and the
// wrapping of its exceptions into CodecError.
class Checked {
 public:
  explicit Checked(std::int32_t v) : v_(v) {}
  std::int32_t value() const { return v_; }
  bool operator==(const Checked&) const = default;

 private:
  std::int32_t v_;
};

}  // namespace

template <>
struct procpool::codec<Checked> {
  static void encode(Writer& w, const Checked& c) { w.write(c.value()); }
  static Checked decode(Reader& r) {
    const auto v = r.read<std::int32_t>();
    if (v < 0) throw std::invalid_argument("negative Checked");
    return Checked(v);
  }
};

namespace {

using Leaf = std::optional<std::variant<int, std::string, std::vector<double>>>;
using T0 = std::map<std::string, std::vector<Leaf>>;
using T1 = Record;
using T2 = std::tuple<std::list<std::string>, std::deque<bool>, std::set<std::int64_t>,
                      std::pair<char, double>, std::multimap<int, std::string>>;
using T3 = std::unordered_map<std::string, std::unordered_set<int>>;
using T4 = std::tuple<std::vector<Vec3>, std::vector<Sample>, std::vector<bool>,
                      std::array<Sample, 2>, std::vector<std::array<double, 2>>>;
using T5 = std::pair<std::vector<Checked>, std::optional<Checked>>;
using T6 = std::tuple<std::vector<std::monostate>, std::list<Empty>, std::multiset<std::string>,
                      std::chrono::nanoseconds, std::u16string>;
using T7 = std::vector<std::variant<std::monostate, Record, std::map<int, int>>>;

template <class T>
void encode_into(procpool::detail::Buffer& b, const T& v) {
  procpool::Writer w(b);
  w.write(v);
}

}  // namespace

#ifndef PROCPOOL_FUZZ_WRITE_SEEDS

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "procpool_codec_fuzz: %s\n", what);
  std::abort();
}

template <class T>
std::optional<T> try_decode(std::span<const std::byte> in, std::size_t& used) {
  try {
    procpool::Reader r(in);
    std::optional<T> v(r.read<T>());
    used = r.position();
    return v;
  } catch (const procpool::CodecError&) {
    return std::nullopt;  // expected for most inputs; any other exception escapes and aborts
  }
}

// Canonical types: re-encoding gives back exactly the bytes that were decoded.
template <class T>
void check_exact(std::span<const std::byte> in) {
  std::size_t used = 0;
  const std::optional<T> v = try_decode<T>(in, used);
  if (!v) return;
  procpool::detail::Buffer b;
  encode_into(b, *v);
  if (b.size() != used || (used > 0 && std::memcmp(b.data(), in.data(), used) != 0)) {
    fail("re-encoding differs from the decoded bytes");
  }
}

// Unordered containers iterate in no fixed order: compare values, and sizes of encodings.
template <class T>
void check_equal(std::span<const std::byte> in) {
  std::size_t used = 0;
  const std::optional<T> v = try_decode<T>(in, used);
  if (!v) return;
  procpool::detail::Buffer b;
  encode_into(b, *v);
  if (b.size() != used) fail("re-encoding has a different size");
  procpool::Reader r(b.span());
  const T again = r.read<T>();
  if (!r.at_end() || !(again == *v)) fail("round trip changed the value");
}

// A result frame's payload as the pool reads it, its item count in the first two bytes: walking
// its items and counting its outcomes must agree, and a payload read as whole holds its count.
void check_result_payload(std::span<const std::byte> in) {
  namespace d = procpool::detail;
  if (in.size() < 2) return;
  const auto count = static_cast<std::uint32_t>(std::to_integer<unsigned>(in[0]) |
                                                std::to_integer<unsigned>(in[1]) << 8);
  const auto payload = in.subspan(2);
  std::uint64_t items = 0, ok = 0, failed = 0, bytes = 0;
  const bool walked = d::for_each_item(payload, count, [&](const d::ItemView& it) {
    if (it.status > d::ItemStatus::skipped) fail("an item with a status no worker writes");
    ++items;
    bytes += it.bytes.size();
  });
  const bool counted = d::count_outcomes(payload, count, ok, failed);
  if (walked != counted) fail("walking and counting a result payload disagree");
  if (walked && (items != count || ok + failed != count))
    fail("a well-formed result payload holds other than its count");
  if (walked && bytes > payload.size()) fail("items reach past the payload");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  switch (data[0] % 9) {
    case 0:
      check_exact<T0>(in);
      break;
    case 1:
      check_exact<T1>(in);
      break;
    case 2:
      check_exact<T2>(in);
      break;
    case 3:
      check_equal<T3>(in);
      break;
    case 4:
      check_exact<T4>(in);
      break;
    case 5:
      check_exact<T5>(in);
      break;
    case 6:
      check_exact<T6>(in);
      break;
    case 7:
      check_exact<T7>(in);
      break;
    default:
      check_result_payload(in);
      break;
  }
  return 0;
}

#else

namespace {

Record sample_record() {
  Record rec{};
  rec.id = 7;
  rec.name = "record";
  rec.samples = {Sample{1, 0.5, 3}, Sample{2, -1.0, 4}};
  rec.tags = std::map<int, std::string>{{1, "one"}, {2, "two"}};
  rec.extra = std::tuple<int, std::string>{3, "three"};
  rec.dims = {1, 2, 3};
  rec.level = Level::high;
  rec.timeout = std::chrono::milliseconds(250);
  rec.points = {Vec3{1, 2, 3}};
  return rec;
}

template <class T>
void write_seed(const std::string& dir, int type, int n, const T& v) {
  procpool::detail::Buffer b;
  const auto tag = static_cast<std::uint8_t>(type);
  b.append(&tag, 1);
  encode_into(b, v);
  const std::string path = dir + "/seed_" + std::to_string(type) + "_" + std::to_string(n);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(b.data(), 1, b.size(), f) != b.size() || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
}

// A result payload seed: type 8, the item count, the payload.
void write_payload_seed(const std::string& dir, int n, std::uint16_t count,
                        const procpool::detail::Buffer& payload) {
  procpool::detail::Buffer b;
  const std::uint8_t tag = 8;
  b.append(&tag, 1);
  b.append(&count, sizeof count);
  b.append(payload.data(), payload.size());
  const std::string path = dir + "/seed_8_" + std::to_string(n);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(b.data(), 1, b.size(), f) != b.size() || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
}

void write_payload_seeds(const std::string& dir) {
  namespace d = procpool::detail;
  const int v[3] = {1, 2, 3};
  d::Buffer items;
  for (int x : v) {
    const std::size_t at = d::begin_item(items, d::ItemStatus::ok);
    items.append(&x, sizeof x);
    d::finish_item(items, at);
  }
  d::append_error_item(items, d::ItemStatus::remote_error, "std::runtime_error", "no");
  write_payload_seed(dir, 0, 4, items);
  d::Buffer packed;
  const auto tag = static_cast<std::uint8_t>(d::ItemStatus::packed);
  const std::uint64_t size = sizeof(int);
  packed.append(&tag, 1);
  packed.append(&size, sizeof size);
  packed.append(v, sizeof v);
  write_payload_seed(dir, 1, 3, packed);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  write_seed(dir, 0, 0, T0{});
  write_seed(dir, 0, 1,
             T0{{"a", {Leaf{}, Leaf{1}, Leaf{std::string("s")}}},
                {"b", {Leaf{std::vector<double>{1.5, 2.5}}}}});
  write_seed(dir, 1, 0, Record{});
  write_seed(dir, 1, 1, sample_record());
  write_seed(dir, 2, 0, T2{{"x", "yz"}, {true, false}, {-1, 5}, {'c', 2.5}, {{1, "a"}, {1, "b"}}});
  write_seed(dir, 3, 0, T3{{"k", {1, 2, 3}}, {"e", {}}});
  write_seed(dir, 4, 0, T4{{Vec3{1, 2, 3}}, {Sample{1, 2, 3}}, {true, true, false}, {}, {{1, 2}}});
  write_seed(dir, 5, 0, T5{{Checked(1), Checked(2)}, Checked(3)});
  write_seed(dir, 6, 0,
             T6{std::vector<std::monostate>(3),
                {Empty{}},
                {"m", "m"},
                std::chrono::nanoseconds(5),
                u"utf16"});
  write_seed(dir, 7, 0, T7{std::monostate{}, sample_record(), std::map<int, int>{{1, 2}}});
  write_payload_seeds(dir);
  return 0;
}

#endif
