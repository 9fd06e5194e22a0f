// expect: procpool::codec
// A class with private state has no built-in encoding: BinaryCodec must refuse it at compile time
// with a static_assert that says how to add a procpool::codec<T> specialization.
#include <procpool/codec.hpp>

class Opaque {
 public:
  int get() const { return hidden_; }

 private:
  int hidden_ = 0;
};

int main() {
  procpool::detail::Buffer buf;
  procpool::Writer w(buf);
  w.write(Opaque{});
  return static_cast<int>(buf.size());
}
