// expect: cannot take apart an aggregate with a base class
// An aggregate with a base class counts its base as a field, and no structured binding names
// fields spread over a base and the derived struct: it must be rejected with a short message.
#include <procpool/codec.hpp>

struct Point2 {
  double x;
  double y;
};

struct Point3 : Point2 {
  double z;
};

int main() {
  procpool::detail::Buffer buf;
  procpool::Writer w(buf);
  w.write(Point3{{1.0, 2.0}, 3.0});
  return static_cast<int>(buf.size());
}
