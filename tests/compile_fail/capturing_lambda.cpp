// expect: pass the state as task arguments instead
// A capturing lambda cannot travel to another process; procpool rejects it at compile time.
#include <procpool/procpool.hpp>

int main() {
  procpool::Pool pool;
  int offset = 3;
  return pool.apply([offset](int x) { return x + offset; }, 4);
}
