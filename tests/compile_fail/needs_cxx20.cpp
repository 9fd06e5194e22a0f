// expect: procpool needs C[+][+]20
// std: 17
// Compiled as C++17, the headers stop at one error that names the fix, not a thousand lines.
#include <procpool/procpool.hpp>

int main() {
  procpool::Pool pool;
  return static_cast<int>(pool.size());
}
