// expect: cannot count the fields of this aggregate
// A field whose type refuses every conversion (here a deleted converting constructor template)
// hides the fields from the counting probe: the aggregate must be rejected, not encoded as if it
// had fewer fields (or none).
#include <procpool/codec.hpp>

struct Meters {
  explicit Meters(double v) : value(v) {}
  template <class T>
  Meters(T) = delete;  // no implicit conversions
  double value;
};

struct Leg {
  int id;
  Meters length;
};

int main() {
  procpool::detail::Buffer buf;
  procpool::Writer w(buf);
  w.write(Leg{1, Meters(2.0)});
  return static_cast<int>(buf.size());
}
