// expect: (unique_ptr<int>.*Holder.*encode a field|encode a field.*unique_ptr<int>, Holder)
// A task argument with a std::unique_ptr field must not compile: the pointer cannot travel, and
// the field must not be dropped either. The error names the field's type and the aggregate.
#include <memory>

#include <procpool/procpool.hpp>

struct Holder {
  std::unique_ptr<int> p;
};

int value(Holder h) {
  return h.p ? *h.p : -1;
}

int main() {
  procpool::Pool pool;
  return pool.apply(value, Holder{std::make_unique<int>(5)});
}
