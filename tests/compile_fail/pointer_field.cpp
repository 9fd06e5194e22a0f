// expect: (const char.*Label.*encode a pointer field|encode a pointer field.*const char \*, Label)
// A raw pointer field means nothing in another process: encoding it must not compile, wherever
// the field is.
#include <procpool/codec.hpp>

struct Label {
  int id;
  const char* name;
  double weight;
};

int main() {
  procpool::detail::Buffer buf;
  procpool::Writer w(buf);
  w.write(Label{1, "one", 2.0});
  return static_cast<int>(buf.size());
}
