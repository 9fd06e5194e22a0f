// expect: pass the state as task arguments instead
// A std::function may hold state (and points into this process): procpool rejects it.
#include <functional>

#include <procpool/procpool.hpp>

int main() {
  procpool::Pool pool;
  std::function<int(int)> f = [](int x) { return x + 1; };
  return pool.apply(f, 4);
}
