// BinaryCodec round trips, the codec<T> customization point, and decoding of hostile input.
#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <support/test_support.hpp>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <procpool/codec.hpp>
#include <procpool/detail/demangle.hpp>
#include <procpool/procpool.hpp>

#ifdef PROCPOOL_TEST_CEREAL
#include <cereal/types/map.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include <procpool/codecs/cereal.hpp>
#endif

using Catch::Matchers::Contains;
using Catch::Matchers::Equals;
using Catch::Matchers::StartsWith;
using procpool::CodecError;
using procpool::Reader;
using procpool::Writer;
using Bytes = std::vector<std::byte>;

namespace {

template <class T, class C = procpool::BinaryCodec>
Bytes encode(const T& v) {
  procpool::detail::Buffer buf;
  Writer w(buf);
  C::encode(w, v);
  const auto s = buf.span();
  return Bytes(s.begin(), s.end());
}

template <class T, class C = procpool::BinaryCodec>
T decode(const Bytes& b) {
  Reader r(b);
  T v = C::template decode<T>(r);
  if (!r.at_end()) throw std::logic_error("trailing bytes after decoding");
  return v;
}

template <class T>
T round_trip(const T& v) {
  return decode<T>(encode(v));
}

// The message of the CodecError that decoding `b` as T throws ("" if it does not throw).
template <class T, class C = procpool::BinaryCodec>
std::string decode_error(const Bytes& b) {
  try {
    (void)decode<T, C>(b);
  } catch (const CodecError& e) {
    return e.what();
  }
  return "";
}

template <class T>
void append_raw(Bytes& b, const T& v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  b.insert(b.end(), p, p + sizeof v);
}

// An allocator that records the largest request, to prove decoding never allocates more than
// the input justifies.
inline std::size_t largest_allocation = 0;

template <class T>
struct TrackingAlloc {
  using value_type = T;
  TrackingAlloc() = default;
  template <class U>
  TrackingAlloc(const TrackingAlloc<U>&) noexcept {}
  T* allocate(std::size_t n) {
    if (n * sizeof(T) > largest_allocation) largest_allocation = n * sizeof(T);
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }
  friend bool operator==(const TrackingAlloc&, const TrackingAlloc&) { return true; }
};

enum class Color : std::uint8_t { red, green, blue };
enum class Wide : std::int64_t { low = std::numeric_limits<std::int64_t>::min(), high = 1 };
enum Plain : int { plain_a = -5, plain_b = 7 };

struct Small {
  std::int32_t a;
  double b;
  float c;
  std::int16_t d;
  bool operator==(const Small&) const = default;
};

// No padding: its memory image is its encoding, so vectors of it are one memcpy.
struct Vec3 {
  double x, y, z;
  bool operator==(const Vec3&) const = default;
};

struct WithConst {
  const int id;
  double x;
};

struct ConstDefault {
  const int x = 0;
};

struct Timed {
  std::chrono::milliseconds after;
  Color color;
  bool operator==(const Timed&) const = default;
};

struct Empty {
  bool operator==(const Empty&) const = default;
};

struct Inner {
  std::string name;
  std::vector<int> values;
  std::optional<Small> small;
  bool operator==(const Inner&) const = default;
};

struct Outer {
  Inner inner;
  std::map<std::string, Inner> by_name;
  std::variant<std::monostate, int, Inner> choice;
  std::array<Small, 2> pair_of_small;
  Color color;
  bool operator==(const Outer&) const = default;
};

struct Fields20 {
  int f0;
  double f1;
  std::string f2;
  std::vector<int> f3;
  bool f4;
  char f5;
  std::uint64_t f6;
  float f7;
  std::optional<int> f8;
  std::variant<int, std::string> f9;
  std::pair<int, std::string> f10;
  std::tuple<int, double, std::string> f11;
  std::map<int, int> f12;
  std::set<std::string> f13;
  std::deque<short> f14;
  std::list<std::string> f15;
  std::array<int, 3> f16;
  std::chrono::milliseconds f17;
  Color f18;
  Small f19;
  bool operator==(const Fields20&) const = default;
};

struct Fields32 {
  int f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15;
  int f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30;
  std::string f31;
  bool operator==(const Fields32&) const = default;
};

// A type with private state and no default constructor: encodable only through codec<T>.
class Point {
 public:
  Point(int x, int y) : x_(x), y_(y) {}
  int x() const { return x_; }
  int y() const { return y_; }
  bool operator==(const Point&) const = default;

 private:
  int x_;
  int y_;
};

// An aggregate with a specialization: the specialization wins over field-by-field encoding.
struct Tagged {
  int value;
};

// A codec that throws on request, to check the wrapping into CodecError.
struct Fragile {
  int mode;  // 1: encode throws std::runtime_error, 2: decode does, 3: encode throws an int
};

// A whole codec (not a codec<T>) that fails with exceptions other than CodecError.
struct Throwing {
  template <class T>
  static void encode(Writer&, const T&) {
    throw std::bad_alloc();
  }
  template <class T>
  static T decode(Reader&) {
    throw std::length_error("too long");
  }
};

// An enum without a fixed underlying type needs a codec<T>; this one checks the range.
enum Legacy { legacy_a, legacy_b, legacy_c };

struct HasPoint {
  Point p;  // no default constructor: the aggregate is built from decoded fields
  const int id;
  std::vector<Point> more;
};

// Move-only, with private state: encodable only through codec<T>.
class Ticket {
 public:
  explicit Ticket(int id) : id_(std::make_unique<int>(id)) {}
  int id() const { return *id_; }

 private:
  std::unique_ptr<int> id_;
};

// Neither copyable nor movable: a decoded one must be built in place.
class Pinned {
 public:
  explicit Pinned(int v) : v_(v) {}
  Pinned(Pinned&&) = delete;
  int value() const { return v_; }

 private:
  int v_;
};

// Move-only fields first, in the middle and last.
struct TicketFirst {
  Ticket ticket;
  int tag;
};

struct TicketMiddle {
  int a;
  Ticket ticket;
  std::string s;
};

struct TicketLast {
  std::string s;
  double d;
  Ticket ticket;
};

// Move-only fields inside nested aggregates, containers and standard wrappers.
struct TicketNested {
  TicketFirst first;
  std::vector<TicketMiddle> middles;
  std::optional<TicketLast> last;
  std::map<int, Ticket> by_id;
  std::pair<Ticket, int> pair;
  std::tuple<int, Ticket> tuple;
  std::variant<int, Ticket> choice;
  std::vector<Ticket> tickets;  // a move-only field with a built-in encoding
};

struct WithPinned {
  int a;
  Pinned pinned;
  int b;
};

// Holds itself through a container: checking its fields must not recurse forever.
struct Tree {
  int value;
  std::vector<Tree> children;
  std::list<Tree> more;
};

}  // namespace

template <>
struct procpool::codec<Point> {
  static void encode(Writer& w, const Point& p) {
    w.write(p.x());
    w.write(p.y());
  }
  static Point decode(Reader& r) {
    const int x = r.read<int>();
    const int y = r.read<int>();
    return Point(x, y);
  }
};

template <>
struct procpool::codec<Tagged> {
  static void encode(Writer& w, const Tagged& t) {
    w.write(std::string("tag"));
    w.write(t.value);
  }
  static Tagged decode(Reader& r) {
    if (r.read<std::string>() != "tag") r.fail("missing tag");
    return Tagged{r.read<int>()};
  }
};

template <>
struct procpool::codec<Fragile> {
  static void encode(Writer& w, const Fragile& f) {
    w.write(f.mode);
    if (f.mode == 1) throw std::runtime_error("fragile encode failed");
    if (f.mode == 3) throw 42;
  }
  static Fragile decode(Reader& r) {
    const int mode = r.read<int>();
    if (mode == 2) throw std::out_of_range("fragile decode failed");
    return Fragile{mode};
  }
};

template <>
struct procpool::codec<Ticket> {
  static void encode(Writer& w, const Ticket& t) { w.write(t.id()); }
  static Ticket decode(Reader& r) { return Ticket(r.read<int>()); }
};

template <>
struct procpool::codec<Pinned> {
  static void encode(Writer& w, const Pinned& p) { w.write(p.value()); }
  static Pinned decode(Reader& r) { return Pinned(r.read<int>()); }
};

template <>
struct procpool::codec<Legacy> {
  static void encode(Writer& w, const Legacy& v) { w.write(static_cast<std::uint8_t>(v)); }
  static Legacy decode(Reader& r) {
    const auto v = r.read<std::uint8_t>();
    if (v > legacy_c) r.fail("invalid Legacy value " + std::to_string(v));
    return static_cast<Legacy>(v);
  }
};

static_assert(procpool::Codec<procpool::BinaryCodec>);
static_assert(procpool::CodecFor<procpool::BinaryCodec, std::vector<std::string>>);
static_assert(!procpool::CodecFor<procpool::BinaryCodec, int&>);

TEST_CASE("arithmetic types round trip", "[codec]") {
  CHECK(round_trip(true) == true);
  CHECK(round_trip(false) == false);
  CHECK(round_trip('x') == 'x');
  CHECK(round_trip(static_cast<signed char>(-3)) == -3);
  CHECK(round_trip(static_cast<unsigned char>(250)) == 250);
  CHECK(round_trip(u8'a') == u8'a');
  CHECK(round_trip(u'\u20ac') == u'\u20ac');
  CHECK(round_trip(U'\U0001F600') == U'\U0001F600');
  CHECK(round_trip(L'w') == L'w');
  CHECK(round_trip(std::numeric_limits<std::int16_t>::min()) ==
        std::numeric_limits<std::int16_t>::min());
  CHECK(round_trip(std::numeric_limits<std::uint16_t>::max()) ==
        std::numeric_limits<std::uint16_t>::max());
  CHECK(round_trip(std::numeric_limits<int>::min()) == std::numeric_limits<int>::min());
  CHECK(round_trip(std::numeric_limits<unsigned>::max()) == std::numeric_limits<unsigned>::max());
  CHECK(round_trip(std::numeric_limits<long long>::min()) == std::numeric_limits<long long>::min());
  CHECK(round_trip(std::numeric_limits<std::uint64_t>::max()) ==
        std::numeric_limits<std::uint64_t>::max());
  CHECK(round_trip(3.5f) == 3.5f);
  CHECK(round_trip(-0.1) == -0.1);
  CHECK(round_trip(1.25L) == 1.25L);
  CHECK(round_trip(std::numeric_limits<double>::infinity()) ==
        std::numeric_limits<double>::infinity());
  CHECK(round_trip(std::numeric_limits<double>::denorm_min()) ==
        std::numeric_limits<double>::denorm_min());
  CHECK(std::isnan(round_trip(std::numeric_limits<double>::quiet_NaN())));
  CHECK(std::signbit(round_trip(-0.0)));
  CHECK(encode(std::int32_t{7}).size() == 4);
  CHECK(encode(true).size() == 1);
}

TEST_CASE("enums round trip as their underlying type", "[codec]") {
  CHECK(round_trip(Color::blue) == Color::blue);
  CHECK(round_trip(Wide::low) == Wide::low);
  CHECK(round_trip(plain_a) == plain_a);
  CHECK(round_trip(std::byte{0xab}) == std::byte{0xab});
  CHECK(encode(Color::green).size() == 1);
  // Every value of a fixed underlying type is a valid enum value, so it decodes.
  CHECK(static_cast<int>(round_trip(static_cast<Color>(200))) == 200);
  CHECK(round_trip(std::vector<Color>{Color::red, Color::blue}) ==
        std::vector<Color>{Color::red, Color::blue});
  // Enums without a fixed underlying type go through a codec<T>, which checks the range.
  CHECK(round_trip(legacy_c) == legacy_c);
  CHECK_THAT(decode_error<Legacy>(Bytes{std::byte{9}}), Contains("invalid Legacy value 9"));
}

TEST_CASE("strings round trip", "[codec]") {
  CHECK(round_trip(std::string()).empty());
  CHECK(encode(std::string()).size() == 8);
  CHECK(round_trip(std::string("hello")) == "hello");
  const std::string with_nul("a\0b\0", 4);
  CHECK(round_trip(with_nul) == with_nul);
  const std::string big(1 << 20, 'z');
  CHECK(round_trip(big) == big);
  CHECK(encode(big).size() == big.size() + 8);
  CHECK(round_trip(std::wstring(L"wide")) == L"wide");
  CHECK(round_trip(std::u16string(u"\u00e9t\u00e9")) == u"\u00e9t\u00e9");
  CHECK(round_trip(std::u8string(u8"utf8")) == u8"utf8");
  CHECK(round_trip(std::u32string(U"\U0001F600")) == U"\U0001F600");
}

TEST_CASE("vectors round trip: empty, large, nested, bool", "[codec]") {
  CHECK(round_trip(std::vector<int>{}).empty());
  std::vector<double> big(1'000'000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<double>(i) * 0.5;
  CHECK(round_trip(big) == big);
  CHECK(encode(big).size() == 8 + big.size() * sizeof(double));

  std::vector<std::vector<int>> nested{{}, {1}, {2, 3, 4}};
  CHECK(round_trip(nested) == nested);
  std::vector<std::string> strings{"", "a", std::string(1000, 'b')};
  CHECK(round_trip(strings) == strings);

  std::vector<bool> bits(1001);
  for (std::size_t i = 0; i < bits.size(); i += 3) bits[i] = true;
  CHECK(round_trip(bits) == bits);
  CHECK(round_trip(std::vector<bool>{}).empty());

  std::vector<Small> smalls(100'000);
  for (std::size_t i = 0; i < smalls.size(); ++i) {
    const auto k = static_cast<int>(i);
    smalls[i] = Small{k, k * 1.5, static_cast<float>(k), static_cast<std::int16_t>(k % 1000)};
  }
  CHECK(round_trip(smalls) == smalls);
  // Aggregates are packed field by field: no padding on the wire.
  CHECK(encode(smalls).size() == 8 + smalls.size() * (4 + 8 + 4 + 2));
}

TEST_CASE("large vectors of plain values decode from bytes at any alignment", "[codec]") {
  // Past the size where decoding fills the vector straight from the input (no zeroing first).
  std::vector<double> doubles(700'000);
  for (std::size_t i = 0; i < doubles.size(); ++i) doubles[i] = static_cast<double>(i) * 0.25;
  std::vector<std::uint8_t> bytes(5'000'000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 7);
  std::vector<std::int16_t> shorts(3'000'000);
  for (std::size_t i = 0; i < shorts.size(); ++i) shorts[i] = static_cast<std::int16_t>(i);
  for (std::size_t shift = 0; shift < 3; ++shift) {
    // The same encoding, preceded by `shift` bytes: the elements lie misaligned.
    auto at = [&](const auto& v) {
      using V = std::remove_cvref_t<decltype(v)>;
      Bytes b(shift, std::byte{0});
      const Bytes e = encode(v);
      b.insert(b.end(), e.begin(), e.end());
      Reader r(std::span<const std::byte>(b).subspan(shift));
      V out = procpool::BinaryCodec::decode<V>(r);
      CHECK(r.at_end());
      return out;
    };
    CHECK(at(doubles) == doubles);
    CHECK(at(bytes) == bytes);
    CHECK(at(shorts) == shorts);
  }
  // A length the input cannot back is still refused before anything is allocated.
  Bytes truncated = encode(bytes);
  truncated.resize(truncated.size() - 1);
  CHECK_FALSE(decode_error<std::vector<std::uint8_t>>(truncated).empty());
}

TEST_CASE("std::array round trips", "[codec]") {
  CHECK(encode(std::array<int, 0>{}).empty());
  CHECK(round_trip(std::array<int, 4>{1, 2, 3, 4}) == std::array<int, 4>{1, 2, 3, 4});
  CHECK(encode(std::array<int, 4>{}).size() == 16);  // fixed size: no length prefix
  const std::array<std::string, 3> strings{"x", "", "zz"};
  CHECK(round_trip(strings) == strings);
  const std::array<bool, 3> bools{true, false, true};
  CHECK(round_trip(bools) == bools);
  // Elements with no default constructor are built in order from decoded values.
  const std::array<Point, 2> points{Point(1, 2), Point(3, 4)};
  CHECK(round_trip(points) == points);
  std::array<std::array<double, 2>, 2> grid{{{1, 2}, {3, 4}}};
  CHECK(round_trip(grid) == grid);
}

TEST_CASE("deque and list round trip", "[codec]") {
  CHECK(round_trip(std::deque<int>{}).empty());
  CHECK(round_trip(std::list<std::string>{}).empty());
  std::deque<long> d;
  for (long i = 0; i < 1'000'000; ++i) d.push_back(i * 3);
  CHECK(round_trip(d) == d);
  std::list<int> l;
  for (int i = 0; i < 1'000'000; ++i) l.push_back(-i);
  CHECK(round_trip(l) == l);
  std::list<std::deque<std::string>> nested{{"a", "b"}, {}, {"c"}};
  CHECK(round_trip(nested) == nested);
}

TEST_CASE("pair and tuple round trip", "[codec]") {
  CHECK(round_trip(std::pair<int, std::string>{1, "one"}) == std::pair<int, std::string>{1, "one"});
  CHECK(encode(std::tuple<>{}).empty());
  CHECK(round_trip(std::tuple<>{}) == std::tuple<>{});
  const std::tuple<int, double, std::string, std::vector<int>> t{1, 2.5, "three", {4}};
  CHECK(round_trip(t) == t);
  const std::tuple<std::pair<int, int>, std::tuple<bool, char>> nested{{1, 2}, {true, 'c'}};
  CHECK(round_trip(nested) == nested);
  const std::tuple<Point, Point> points{Point(1, 2), Point(3, 4)};
  CHECK(round_trip(points) == points);
}

TEST_CASE("optional round trips", "[codec]") {
  CHECK(round_trip(std::optional<int>{}) == std::nullopt);
  CHECK(round_trip(std::optional<int>{5}) == 5);
  CHECK(encode(std::optional<int>{}).size() == 1);
  CHECK(round_trip(std::optional<std::optional<int>>{std::optional<int>{}}) ==
        std::optional<std::optional<int>>{std::optional<int>{}});
  CHECK(round_trip(std::optional<std::string>{"s"}) == "s");
  CHECK(round_trip(std::optional<Point>{Point(7, 8)}) == Point(7, 8));
}

TEST_CASE("variant and monostate round trip", "[codec]") {
  using V = std::variant<std::monostate, int, std::string, std::vector<double>>;
  CHECK(round_trip(V{}) == V{});
  CHECK(round_trip(V{42}) == V{42});
  CHECK(round_trip(V{std::string("s")}) == V{std::string("s")});
  CHECK(round_trip(V{std::vector<double>{1.5}}) == V{std::vector<double>{1.5}});
  CHECK(encode(V{}).size() == 1);
  // Alternatives of the same type are told apart by index.
  using Twice = std::variant<int, int>;
  const Twice second(std::in_place_index<1>, 9);
  CHECK(round_trip(second).index() == 1);
  CHECK(round_trip(std::monostate{}) == std::monostate{});
  CHECK(encode(std::monostate{}).empty());
}

TEST_CASE("maps and sets round trip", "[codec]") {
  CHECK(round_trip(std::map<int, int>{}).empty());
  std::map<std::string, std::vector<int>> m{{"a", {1}}, {"b", {}}, {"c", {2, 3}}};
  CHECK(round_trip(m) == m);
  std::unordered_map<int, std::string> um;
  for (int i = 0; i < 100'000; ++i) um.emplace(i, std::to_string(i));
  CHECK(round_trip(um) == um);
  CHECK(round_trip(std::set<std::string>{"x", "y"}) == std::set<std::string>{"x", "y"});
  std::unordered_set<long> us;
  for (long i = 0; i < 100'000; ++i) us.insert(i * 7);
  CHECK(round_trip(us) == us);
  CHECK(round_trip(std::multimap<int, int>{{1, 1}, {1, 2}}) ==
        std::multimap<int, int>{{1, 1}, {1, 2}});
  CHECK(round_trip(std::multiset<int>{3, 3, 3}) == std::multiset<int>{3, 3, 3});
  std::map<int, std::map<int, std::set<int>>> nested{{1, {{2, {3, 4}}}}, {5, {}}};
  CHECK(round_trip(nested) == nested);
}

// Containers are recognised by their shape (allocator-aware, sized; appended to, or keyed), so
// the codec names none of them and a type built on one, or written like one, encodes too.
struct Scores : std::map<std::string, int> {
  using std::map<std::string, int>::map;
};
struct Samples : std::deque<double> {};

TEST_CASE("containers are recognised by their shape, not their names", "[codec]") {
  STATIC_REQUIRE(procpool::detail::bin::is_sequence<std::vector<int>>);
  STATIC_REQUIRE(procpool::detail::bin::is_sequence<std::list<int>>);
  STATIC_REQUIRE(!procpool::detail::bin::is_sequence<std::string>);
  STATIC_REQUIRE(procpool::detail::bin::is_map<std::unordered_multimap<int, int>>);
  STATIC_REQUIRE(procpool::detail::bin::is_multi<std::unordered_multimap<int, int>>);
  STATIC_REQUIRE(!procpool::detail::bin::is_ordered<std::unordered_multimap<int, int>>);
  STATIC_REQUIRE(procpool::detail::bin::is_set<std::multiset<int>>);
  STATIC_REQUIRE(procpool::detail::bin::is_ordered<std::multiset<int>>);
  STATIC_REQUIRE(!procpool::detail::bin::is_multi<std::set<int>>);
  STATIC_REQUIRE(!procpool::detail::bin::is_map<std::set<int>>);
  STATIC_REQUIRE(!procpool::detail::bin::is_set<std::map<int, int>>);

  std::unordered_multimap<int, std::string> umm{{1, "a"}, {1, "b"}, {2, "c"}};
  CHECK(round_trip(umm) == umm);
  Scores s{{"ada", 3}, {"bob", 1}};
  CHECK(round_trip(s) == s);
  Samples d;
  d.push_back(1.5);
  d.push_back(-2.0);
  CHECK(round_trip(d) == d);

  // The derived map keeps the map's checks: a duplicate or out-of-order key is rejected.
  Bytes dup;
  append_raw(dup, std::uint64_t{2});
  for (const char* k : {"bob", "ada"}) {
    append_raw(dup, std::uint64_t{3});
    dup.insert(dup.end(), reinterpret_cast<const std::byte*>(k),
               reinterpret_cast<const std::byte*>(k) + 3);
    append_raw(dup, 7);
  }
  CHECK_THAT(decode_error<Scores>(dup), Contains("keys out of order"));
}

TEST_CASE("durations round trip", "[codec]") {
  using namespace std::chrono_literals;
  CHECK(round_trip(1500ms) == 1500ms);
  CHECK(round_trip(std::chrono::nanoseconds::max()) == std::chrono::nanoseconds::max());
  CHECK(round_trip(std::chrono::duration<double>(2.5)) == std::chrono::duration<double>(2.5));
  CHECK(round_trip(std::vector<std::chrono::seconds>{1s, 2s}) ==
        std::vector<std::chrono::seconds>{1s, 2s});
}

TEST_CASE("nested combinations round trip", "[codec]") {
  using Leaf = std::optional<std::variant<int, std::string, std::vector<double>>>;
  std::map<std::string, std::vector<Leaf>> v{
      {"empty", {}},
      {"mixed", {Leaf{}, Leaf{1}, Leaf{std::string("two")}, Leaf{std::vector<double>{3.0}}}},
  };
  CHECK(round_trip(v) == v);
  std::vector<std::tuple<std::deque<std::list<int>>, std::unordered_map<int, std::set<char>>>> w;
  w.emplace_back(std::deque<std::list<int>>{{1, 2}, {}},
                 std::unordered_map<int, std::set<char>>{{1, {'a'}}});
  CHECK(round_trip(w) == w);
}

TEST_CASE("aggregates round trip field by field", "[codec]") {
  CHECK(round_trip(Small{1, 2.5, 3.5f, -4}) == Small{1, 2.5, 3.5f, -4});
  CHECK(round_trip(Empty{}) == Empty{});
  CHECK(encode(Empty{}).empty());

  Fields20 f{};
  f.f0 = 1;
  f.f1 = 2.5;
  f.f2 = "three";
  f.f3 = {4, 4};
  f.f4 = true;
  f.f5 = 'c';
  f.f6 = 1ULL << 60;
  f.f7 = 7.5f;
  f.f8 = 8;
  f.f9 = std::string("nine");
  f.f10 = {10, "ten"};
  f.f11 = {11, 11.5, "eleven"};
  f.f12 = {{12, 12}};
  f.f13 = {"thirteen"};
  f.f14 = {14};
  f.f15 = {"fifteen"};
  f.f16 = {16, 16, 16};
  f.f17 = std::chrono::milliseconds(17);
  f.f18 = Color::green;
  f.f19 = Small{19, 19.5, 19.25f, 19};
  CHECK(round_trip(f) == f);

  Fields32 g{};
  g.f0 = -1;
  g.f15 = 15;
  g.f30 = 30;
  g.f31 = "thirty-one";
  CHECK(round_trip(g) == g);

  Outer o{};
  o.inner = Inner{"in", {1, 2}, Small{1, 1, 1, 1}};
  o.by_name["x"] = Inner{"x", {}, std::nullopt};
  o.choice = Inner{"choice", {3}, std::nullopt};
  o.pair_of_small = {Small{1, 2, 3, 4}, Small{5, 6, 7, 8}};
  o.color = Color::blue;
  CHECK(round_trip(o) == o);
  CHECK(round_trip(std::vector<Outer>{o, Outer{}, o}) == std::vector<Outer>{o, Outer{}, o});

  // Const fields and fields without a default constructor are fine: the aggregate is built
  // from its decoded fields in one braced initialization.
  const HasPoint hp{Point(1, 2), 7, {Point(3, 4)}};
  const HasPoint back = round_trip(hp);
  CHECK(back.p == hp.p);
  CHECK(back.id == 7);
  CHECK(back.more == hp.more);
}

TEST_CASE("move-only fields round trip wherever they are", "[codec]") {
  // Every field is written: a field the codec could not count would be dropped silently.
  CHECK(encode(TicketFirst{Ticket(5), 9}).size() == 2 * sizeof(int));

  const TicketFirst first = decode<TicketFirst>(encode(TicketFirst{Ticket(5), 9}));
  CHECK(first.ticket.id() == 5);
  CHECK(first.tag == 9);

  const TicketMiddle middle = decode<TicketMiddle>(encode(TicketMiddle{1, Ticket(2), "three"}));
  CHECK(middle.a == 1);
  CHECK(middle.ticket.id() == 2);
  CHECK(middle.s == "three");

  const TicketLast last = decode<TicketLast>(encode(TicketLast{"four", 5.5, Ticket(6)}));
  CHECK(last.s == "four");
  CHECK(last.d == 5.5);
  CHECK(last.ticket.id() == 6);
}

TEST_CASE("move-only fields round trip in nested aggregates and containers", "[codec]") {
  TicketNested n{TicketFirst{Ticket(1), 2},
                 {},
                 TicketLast{"last", 3.5, Ticket(4)},
                 {},
                 {Ticket(5), 6},
                 {7, Ticket(8)},
                 Ticket(9),
                 {}};
  n.middles.push_back(TicketMiddle{10, Ticket(11), "m0"});
  n.middles.push_back(TicketMiddle{12, Ticket(13), "m1"});
  n.by_id.emplace(14, Ticket(15));
  n.tickets.emplace_back(16);

  const TicketNested back = decode<TicketNested>(encode(n));
  CHECK(back.first.ticket.id() == 1);
  CHECK(back.first.tag == 2);
  REQUIRE(back.middles.size() == 2);
  CHECK(back.middles[0].ticket.id() == 11);
  CHECK(back.middles[1].a == 12);
  CHECK(back.middles[1].ticket.id() == 13);
  CHECK(back.middles[1].s == "m1");
  REQUIRE(back.last.has_value());
  CHECK(back.last->ticket.id() == 4);
  CHECK(back.by_id.at(14).id() == 15);
  CHECK(back.pair.first.id() == 5);
  CHECK(back.pair.second == 6);
  CHECK(std::get<1>(back.tuple).id() == 8);
  CHECK(std::get<Ticket>(back.choice).id() == 9);
  REQUIRE(back.tickets.size() == 1);
  CHECK(back.tickets[0].id() == 16);
  CHECK(encode(back) == encode(n));
}

namespace {

// Task functions for the pool test: move-only aggregates in and out.
TicketLast renumber(TicketMiddle m) {
  return TicketLast{m.s + "!", m.a * 0.5, Ticket(m.ticket.id() + m.a)};
}

int ticket_sum(const TicketNested& n) {
  int sum = n.first.ticket.id() + n.pair.first.id();
  for (const TicketMiddle& m : n.middles) sum += m.ticket.id();
  return sum;
}

}  // namespace

TEST_CASE("move-only aggregates travel through pool tasks", "[codec][pool]") {
  procpool::Pool pool(procpool_test::workers(2));

  auto r = pool.apply_async(renumber, TicketMiddle{4, Ticket(10), "four"});
  const TicketLast out = r.get();
  CHECK(out.s == "four!");
  CHECK(out.d == 2.0);
  CHECK(out.ticket.id() == 14);

  std::vector<TicketMiddle> in;
  for (int i = 0; i < 20; ++i) in.push_back(TicketMiddle{i, Ticket(100 * i), std::to_string(i)});
  const std::vector<TicketLast> outs = pool.map(renumber, in, 3);
  REQUIRE(outs.size() == 20);
  for (int i = 0; i < 20; ++i) {
    const auto& o = outs[static_cast<std::size_t>(i)];
    CHECK(o.s == std::to_string(i) + "!");
    CHECK(o.ticket.id() == 101 * i);
  }

  TicketNested n{
      TicketFirst{Ticket(1), 2}, {}, std::nullopt, {}, {Ticket(3), 4}, {5, Ticket(6)}, 7, {}};
  n.middles.push_back(TicketMiddle{8, Ticket(9), "m"});
  CHECK(pool.apply(ticket_sum, std::move(n)) == 1 + 3 + 9);
}

TEST_CASE("an aggregate that holds itself through containers round trips", "[codec]") {
  Tree t{1, {Tree{2, {}, {}}, Tree{3, {Tree{4, {}, {}}}, {}}}, {}};
  t.more.push_back(Tree{5, {Tree{6, {}, {}}}, {}});
  const Tree back = round_trip(t);
  CHECK(back.value == 1);
  REQUIRE(back.children.size() == 2);
  REQUIRE(back.children[1].children.size() == 1);
  CHECK(back.children[1].children[0].value == 4);
  REQUIRE(back.more.size() == 1);
  CHECK(back.more.front().children.at(0).value == 6);
  CHECK(encode(back) == encode(t));
}

TEST_CASE("a field that can be neither copied nor moved is decoded in place", "[codec]") {
  const Bytes bytes = encode(WithPinned{1, Pinned(2), 3});
  CHECK(bytes.size() == 3 * sizeof(int));
  Reader r(bytes);
  const WithPinned back = r.read<WithPinned>();
  CHECK(r.at_end());
  CHECK(back.a == 1);
  CHECK(back.pinned.value() == 2);
  CHECK(back.b == 3);
}

TEST_CASE("fixed-size and padding-free values take the fast paths with the same bytes", "[codec]") {
  const Vec3 v{1, 2, 3};
  CHECK(round_trip(v) == v);
  CHECK(encode(v) == encode(std::tuple<double, double, double>{1, 2, 3}));
  const Small s{1, 2.5, 3.5f, 4};
  CHECK(encode(s) ==
        encode(std::tuple<std::int32_t, double, float, std::int16_t>{1, 2.5, 3.5f, 4}));
  std::vector<Vec3> vs(1000);
  for (std::size_t i = 0; i < vs.size(); ++i) vs[i] = Vec3{1.0 * static_cast<double>(i), 2, 3};
  CHECK(round_trip(vs) == vs);
  CHECK(encode(vs).size() == 8 + vs.size() * 24);
  const std::list<Small> ls{Small{1, 2, 3, 4}, Small{5, 6, 7, 8}};
  CHECK(round_trip(ls) == ls);
  const std::deque<std::pair<int, double>> dp{{1, 1.5}, {2, 2.5}};
  CHECK(round_trip(dp) == dp);
  const std::map<int, Small> ms{{1, Small{1, 2, 3, 4}}};
  CHECK(round_trip(ms) == ms);
  const std::vector<std::array<double, 3>> va{{1, 2, 3}, {4, 5, 6}};
  CHECK(round_trip(va) == va);
  const std::vector<WithConst> wc{{1, 2.0}, {3, 4.0}};
  const auto wc2 = round_trip(wc);
  REQUIRE(wc2.size() == 2);
  CHECK(wc2[1].id == 3);
  CHECK(wc2[1].x == 4.0);
  // Default-constructible but not assignable: built in one braced initialization instead.
  const std::array<ConstDefault, 2> cd{ConstDefault{1}, ConstDefault{2}};
  CHECK(round_trip(cd)[1].x == 2);
  const std::array<Timed, 2> timed{Timed{std::chrono::milliseconds(5), Color::blue},
                                   Timed{std::chrono::milliseconds(-1), Color::red}};
  CHECK(round_trip(timed) == timed);
}

TEST_CASE("codec<T> specializations take priority and compose", "[codec]") {
  CHECK(round_trip(Point(3, -4)) == Point(3, -4));
  CHECK(round_trip(std::vector<Point>{Point(1, 1), Point(2, 2)}) ==
        std::vector<Point>{Point(1, 1), Point(2, 2)});
  CHECK(round_trip(std::map<int, Point>{{1, Point(5, 6)}}) ==
        std::map<int, Point>{{1, Point(5, 6)}});
  // Tagged is an aggregate, but its specialization is what runs.
  CHECK(encode(Tagged{5}).size() == 8 + 3 + 4);
  CHECK(round_trip(Tagged{5}).value == 5);
  Bytes bad = encode(std::string("nope"));
  append_raw(bad, 5);
  const std::string msg = decode_error<Tagged>(bad);
  CHECK_THAT(msg, Contains("Tagged") && Contains("missing tag"));
}

TEST_CASE("a codec<T> that throws surfaces as CodecError naming T", "[codec]") {
  procpool::detail::Buffer buf;
  Writer w(buf);
  try {
    w.write(Fragile{1});
    FAIL("no exception");
  } catch (const CodecError& e) {
    CHECK_THAT(e.what(), Contains("Fragile") && Contains("fragile encode failed") &&
                             Contains("encode") && Contains("std::runtime_error"));
  }
  try {
    w.write(std::vector<Fragile>{Fragile{0}, Fragile{3}});
    FAIL("no exception");
  } catch (const CodecError& e) {
    CHECK_THAT(e.what(), Contains("Fragile"));
  }
  const std::string msg = decode_error<Fragile>(encode(Fragile{2}));
  CHECK_THAT(msg, Contains("Fragile") && Contains("fragile decode failed") &&
                      Contains("std::out_of_range"));
  // Inside a container, the message names the outer type and the failing one.
  const std::string nested =
      decode_error<std::vector<Fragile>>(encode(std::vector<Fragile>{Fragile{0}, Fragile{2}}));
  CHECK_THAT(nested, Contains("std::vector") && Contains("Fragile"));
}

TEST_CASE("Writer appends, Reader reads raw bytes", "[codec]") {
  procpool::detail::Buffer buf;
  buf.append("HEAD", 4);  // the pool writes its frame header first
  Writer w(buf);
  CHECK(w.size() == 0);
  w.write(std::uint16_t{0x1234});
  const std::array<std::byte, 3> raw{std::byte{1}, std::byte{2}, std::byte{3}};
  w.write_bytes(raw);
  w.write_length(2);
  CHECK(w.size() == 2 + 3 + 8);
  CHECK(buf.size() == 4 + w.size());
  CHECK(std::memcmp(buf.data(), "HEAD", 4) == 0);

  Reader r(buf.span().subspan(4));
  CHECK(r.remaining() == 13);
  CHECK(r.read<std::uint16_t>() == 0x1234);
  const auto got = r.read_bytes(3);
  CHECK(std::equal(got.begin(), got.end(), raw.begin()));
  CHECK(r.read_length(0) == 2);
  CHECK(r.at_end());
  CHECK(r.position() == 13);
  CHECK(r.read_bytes(0).empty());
  CHECK_THROWS_AS(r.read_bytes(1), CodecError);
  CHECK_THROWS_AS(r.read<char>(), CodecError);

  w.clear();  // reuse: drops only what this writer wrote
  CHECK(buf.size() == 4);
  CHECK(w.size() == 0);
}

TEST_CASE("read_length rejects counts the input cannot hold", "[codec]") {
  Bytes b;
  append_raw(b, std::uint64_t{3});
  b.resize(b.size() + 10);
  {
    Reader r(b);
    CHECK(r.read_length(3) == 3);
  }
  {
    Reader r(b);
    CHECK_THROWS_AS(r.read_length(4), CodecError);
  }
  Bytes huge;
  append_raw(huge, std::uint64_t{1} << 40);
  Reader r(huge);
  CHECK_THROWS_AS(r.read_length(0), CodecError);
}

TEST_CASE("every truncation of a nested value is a CodecError", "[codec]") {
  Outer o{};
  o.inner = Inner{"inner", {1, 2, 3}, Small{1, 2, 3, 4}};
  o.by_name["k"] = Inner{"v", {9}, std::nullopt};
  o.choice = 5;
  o.color = Color::green;
  using Leaf = std::optional<std::variant<int, std::string, std::vector<double>>>;
  const std::tuple<Outer, std::map<std::string, std::vector<Leaf>>, std::list<Point>> value{
      o, {{"a", {Leaf{}, Leaf{std::string("x")}, Leaf{std::vector<double>{1, 2}}}}}, {Point(1, 2)}};
  using T = std::remove_const_t<decltype(value)>;
  const Bytes full = encode(value);
  REQUIRE(decode<T>(full) == value);
  for (std::size_t n = 0; n < full.size(); ++n) {
    const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    const std::string msg = decode_error<T>(prefix);
    INFO("prefix length " << n);
    REQUIRE_THAT(msg, Contains("cannot decode") && Contains("std::tuple"));
  }
}

TEST_CASE("huge length prefixes fail fast without allocating", "[codec]") {
  using TrackedVector = std::vector<int, TrackingAlloc<int>>;
  using TrackedStrings = std::vector<std::string, TrackingAlloc<std::string>>;
  using TrackedString = std::basic_string<char, std::char_traits<char>, TrackingAlloc<char>>;
  using TrackedEmpty = std::vector<Empty, TrackingAlloc<Empty>>;
  using TrackedMap = std::map<int, int, std::less<int>, TrackingAlloc<std::pair<const int, int>>>;
  for (const std::uint64_t n : {std::uint64_t{1} << 63, std::uint64_t{1} << 40,
                                std::numeric_limits<std::uint64_t>::max(), std::uint64_t{1000}}) {
    Bytes b;
    append_raw(b, n);
    b.resize(b.size() + 256, std::byte{1});
    largest_allocation = 0;
    const auto start = std::chrono::steady_clock::now();
    CHECK_THAT(decode_error<TrackedVector>(b), Contains("length"));
    CHECK_THAT(decode_error<TrackedStrings>(b), Contains("length"));
    CHECK_THAT(decode_error<TrackedString>(b), Contains("length"));
    CHECK_THAT(decode_error<TrackedMap>(b), Contains("length"));
    CHECK_THAT(decode_error<std::set<std::string>>(b), Contains("length"));
    CHECK_THAT((decode_error<std::unordered_map<int, int>>(b)), Contains("length"));
    CHECK(largest_allocation <= b.size());
    // Elements that encode to nothing cannot be checked against the input; their count is
    // capped instead (PROCPOOL_CODEC_MAX_EMPTY_ELEMENTS).
    if (n > procpool::detail::max_empty_elements) {
      CHECK_THAT(decode_error<TrackedEmpty>(b), Contains("length"));
      CHECK_THAT(decode_error<std::list<std::monostate>>(b), Contains("length"));
      CHECK_THAT(decode_error<std::deque<std::tuple<>>>(b), Contains("length"));
      CHECK(largest_allocation <= b.size());
    }
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
  }
  // A length the input does hold, nested inside an element that lies about its own length.
  Bytes nested;
  append_raw(nested, std::uint64_t{2});
  append_raw(nested, std::uint64_t{1} << 62);
  nested.resize(nested.size() + 64);
  CHECK_THAT(decode_error<std::vector<std::vector<double>>>(nested), Contains("length"));
}

TEST_CASE("elements that encode to nothing are capped", "[codec]") {
  const std::vector<std::monostate> ok(1000);
  CHECK(round_trip(ok).size() == 1000);
  const std::vector<Empty> too_many(procpool::detail::max_empty_elements + 1);
  procpool::detail::Buffer buf;
  Writer w(buf);
  CHECK_THROWS_AS(w.write(too_many), CodecError);
}

TEST_CASE("invalid tags and flags are CodecErrors", "[codec]") {
  using V = std::variant<int, std::string>;
  Bytes b = encode(V{1});
  b[0] = std::byte{2};
  CHECK_THAT(decode_error<V>(b), Contains("variant index 2") && Contains("std::variant"));
  b[0] = std::byte{255};
  CHECK_THAT(decode_error<V>(b), Contains("out of range"));

  CHECK_THAT(decode_error<bool>(Bytes{std::byte{2}}), Contains("invalid bool value 2"));
  CHECK_THAT(decode_error<std::vector<bool>>([] {
               Bytes v = encode(std::vector<bool>{true, false});
               v.back() = std::byte{7};
               return v;
             }()),
             Contains("invalid bool"));

  Bytes opt = encode(std::optional<int>{3});
  opt[0] = std::byte{2};
  CHECK_THAT(decode_error<std::optional<int>>(opt), Contains("invalid optional flag 2"));

  // Unique-key containers do not silently drop duplicates.
  Bytes dup;
  append_raw(dup, std::uint64_t{2});
  append_raw(dup, 1);
  append_raw(dup, 10);
  append_raw(dup, 1);
  append_raw(dup, 20);
  CHECK_THAT((decode_error<std::map<int, int>>(dup)), Contains("duplicate key"));
  CHECK_THAT((decode_error<std::unordered_map<int, int>>(dup)), Contains("duplicate key"));
  CHECK((decode<std::multimap<int, int>>(dup)).size() == 2);
  CHECK(decode_error<std::set<int>>(encode(std::vector<int>{4, 4})) != "");
  // Ordered containers are written in order; other orders are not the encoder's output.
  CHECK_THAT(decode_error<std::set<int>>(encode(std::vector<int>{5, 1})),
             Contains("keys out of order"));
  CHECK_THAT(decode_error<std::multiset<int>>(encode(std::vector<int>{2, 1})),
             Contains("keys out of order"));
  CHECK(decode<std::multiset<int>>(encode(std::vector<int>{1, 1})).size() == 2);
  CHECK(decode<std::unordered_set<int>>(encode(std::vector<int>{5, 1})).size() == 2);
  // Descending order is in order for a descending set.
  CHECK(decode<std::set<int, std::greater<int>>>(encode(std::vector<int>{5, 1})).size() == 2);
}

TEST_CASE("empty elements: what decodes is what the encoder accepts", "[codec]") {
  // A count of zero-byte elements above the cap is refused even when trailing input could
  // "cover" it, since re-encoding such a value would fail.
  Bytes b;
  append_raw(b, static_cast<std::uint64_t>(procpool::detail::max_empty_elements + 10));
  b.resize(b.size() + 100);
  Reader r(b);
  try {
    (void)r.read<std::vector<std::monostate>>();
    FAIL("no exception");
  } catch (const CodecError& e) {
    CHECK_THAT(e.what(), Contains("PROCPOOL_CODEC_MAX_EMPTY_ELEMENTS"));
  }
}

TEST_CASE("random bit flips decode or throw CodecError, nothing else", "[codec]") {
  using Leaf = std::optional<std::variant<int, std::string, std::vector<double>, bool>>;
  using T = std::tuple<std::map<std::string, std::vector<Leaf>>, Outer, std::vector<bool>,
                       std::unordered_set<int>, std::list<std::deque<Color>>>;
  Outer o{};
  o.inner = Inner{"inner", {1, 2, 3}, Small{1, 2, 3, 4}};
  o.by_name["key"] = Inner{"v", {9, 8}, std::nullopt};
  o.choice = Inner{"c", {}, Small{}};
  const T value{{{"a", {Leaf{}, Leaf{7}, Leaf{std::string("seven")}}}, {"b", {Leaf{true}}}},
                o,
                {true, false, true},
                {1, 2, 3},
                {{Color::red}, {}}};
  const Bytes full = encode(value);
  std::mt19937_64 rng(12345);
  int decoded = 0;
  int rejected = 0;
  for (int i = 0; i < 5000; ++i) {
    Bytes b = full;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) {
      const auto bit = rng() % (b.size() * 8);
      b[bit / 8] ^= static_cast<std::byte>(1u << (bit % 8));
    }
    try {
      Reader r(b);
      (void)r.read<T>();
      ++decoded;
    } catch (const CodecError&) {
      ++rejected;
    }
  }
  CHECK(decoded + rejected == 5000);
  CHECK(rejected > 0);
}

TEST_CASE("CodecError messages name the type being decoded", "[codec]") {
  const std::string msg = decode_error<std::vector<Small>>(Bytes(3));
  CHECK_THAT(msg, Contains("procpool: cannot decode") && Contains("std::vector") &&
                      Contains("Small") && Contains("truncated"));
  // The length check catches most truncations; one inside an element names that element too.
  Bytes one = encode(std::vector<Inner>{Inner{"name", {1, 2}, Small{}}});
  one.pop_back();
  CHECK_THAT(decode_error<std::vector<Inner>>(one),
             Contains("cannot decode std::vector") && Contains("(in ") && Contains("Small)"));
  CHECK_THAT(decode_error<double>(Bytes(2)), Contains("cannot decode double"));
}

TEST_CASE("Type names in messages are spelled as written, whatever the standard library",
          "[codec]") {
  // libc++ demangles to std::__1::vector<…>; messages drop the ABI namespace.
  const std::string name = procpool::detail::type_name<std::vector<std::map<int, double>>>();
  CHECK_THAT(name, StartsWith("std::vector<std::map<int, double"));
  CHECK_THAT(name, !Contains("__1::"));
  // The name of libc++'s std::vector<int>, whichever library this is built with.
  const std::string libcxx = procpool::detail::demangle("NSt3__16vectorIiNS_9allocatorIiEEEE");
  CHECK_THAT(libcxx, StartsWith("std::vector<int, std::allocator<int>") && !Contains("__1"));
  // Only the standard library's own namespace: here mystd::__1 is a user's.
  CHECK_THAT(procpool::detail::demangle("N5mystd3__11XE"), Equals("mystd::__1::X"));
}

TEST_CASE("encode_value and decode_value wrap failures for the pool", "[codec]") {
  procpool::detail::Buffer buf;
  buf.append("hdr", 3);
  Writer w(buf);
  procpool::detail::encode_value<procpool::BinaryCodec>(w, 5);
  const std::size_t good = buf.size();
  CHECK_THROWS_AS(procpool::detail::encode_value<procpool::BinaryCodec>(w, Fragile{1}), CodecError);
  CHECK(buf.size() == good);  // the failed value left no bytes behind

  Reader r(buf.span().subspan(3));
  CHECK(procpool::detail::decode_value<procpool::BinaryCodec, int>(r) == 5);

  // A codec that throws something else still yields a CodecError naming T.
  static_assert(procpool::Codec<Throwing>);
  try {
    procpool::detail::encode_value<Throwing>(w, std::string("x"));
    FAIL("no exception");
  } catch (const CodecError& e) {
    CHECK_THAT(e.what(), Contains("cannot encode std::") && Contains("bad_alloc"));
  }
  Reader r2(buf.span());
  try {
    (void)procpool::detail::decode_value<Throwing, Point>(r2);
    FAIL("no exception");
  } catch (const CodecError& e) {
    CHECK_THAT(e.what(), Contains("cannot decode") && Contains("Point") && Contains("too long") &&
                             Contains("std::length_error"));
  }
}

#ifdef PROCPOOL_TEST_CEREAL

namespace {

struct CerealThing {
  int id = 0;
  std::string name;
  std::vector<double> values;
  std::map<std::string, std::vector<int>> groups;
  bool flag = false;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(id, name, values, groups, flag);
  }
  bool operator==(const CerealThing&) const = default;
};

}  // namespace

TEST_CASE("CerealCodec round trips cereal-serializable types", "[codec][cereal]") {
  using procpool::CerealCodec;
  static_assert(procpool::Codec<CerealCodec>);
  const CerealThing t{7, "seven", {1.5, 2.5}, {{"a", {1, 2}}, {"b", {}}}, true};
  CHECK((decode<CerealThing, CerealCodec>(encode<CerealThing, CerealCodec>(t))) == t);
  CHECK((decode<int, CerealCodec>(encode<int, CerealCodec>(42))) == 42);
  const std::vector<CerealThing> many(1000, t);
  CHECK((decode<std::vector<CerealThing>, CerealCodec>(
            encode<std::vector<CerealThing>, CerealCodec>(many))) == many);
  const std::vector<double> big(1 << 20, 0.25);
  CHECK((decode<std::vector<double>, CerealCodec>(encode<std::vector<double>, CerealCodec>(big))) ==
        big);

  // The blob is length-prefixed, so values follow each other in one buffer.
  procpool::detail::Buffer buf;
  Writer w(buf);
  CerealCodec::encode(w, t);
  CerealCodec::encode(w, std::string("after"));
  Reader r(buf.span());
  CHECK(CerealCodec::decode<CerealThing>(r) == t);
  CHECK(CerealCodec::decode<std::string>(r) == "after");
  CHECK(r.at_end());
}

TEST_CASE("CerealCodec turns bad input into CodecError naming the type", "[codec][cereal]") {
  using procpool::CerealCodec;
  const CerealThing t{7, "seven", {1.5, 2.5}, {{"a", {1, 2}}}, true};
  const Bytes full = encode<CerealThing, CerealCodec>(t);
  for (std::size_t n = 0; n < full.size(); ++n) {
    const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    INFO("prefix length " << n);
    REQUIRE_THAT((decode_error<CerealThing, CerealCodec>(prefix)), Contains("CerealThing"));
  }
  // A blob whose inner string length is huge: rejected before cereal allocates.
  Bytes inner;
  append_raw(inner, 1);                       // id
  append_raw(inner, std::uint64_t{1} << 40);  // name length
  inner.resize(inner.size() + 32, std::byte{0});
  Bytes blob;
  append_raw(blob, static_cast<std::uint64_t>(inner.size()));
  blob.insert(blob.end(), inner.begin(), inner.end());
  const auto start = std::chrono::steady_clock::now();
  CHECK_THAT((decode_error<CerealThing, CerealCodec>(blob)), Contains("CerealThing"));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
  // Invalid bool byte.
  Bytes bad_bool = full;
  bad_bool.back() = std::byte{5};
  CHECK_THAT((decode_error<CerealThing, CerealCodec>(bad_bool)), Contains("bool"));
  // Trailing bytes inside the blob mean the blob is not what was encoded.
  Bytes trailing = encode<int, CerealCodec>(1);
  trailing.push_back(std::byte{0});
  trailing[0] = std::byte{5};
  CHECK_THAT((decode_error<int, CerealCodec>(trailing)), Contains("int"));
  // Random flips: decode or CodecError, nothing else.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    Bytes b = full;
    const auto bit = rng() % (b.size() * 8);
    b[bit / 8] ^= static_cast<std::byte>(1u << (bit % 8));
    try {
      Reader r(b);
      (void)CerealCodec::decode<CerealThing>(r);
    } catch (const CodecError&) {
    }
  }
}

#endif  // PROCPOOL_TEST_CEREAL
