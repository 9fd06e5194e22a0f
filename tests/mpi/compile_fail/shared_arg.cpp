// A shared-memory object cannot reach another machine: passing one to an mpi::Pool task must not
// compile.
// expect: cannot reach another machine
#include <procpool/mpi.hpp>

int peek(procpool::Value<int> v) {
  return v.load();
}

int main(int argc, char** argv) {
  procpool::mpi::init(argc, argv);
  procpool::mpi::Pool pool;
  procpool::Value<int> v(1);
  return pool.apply(peek, v);
}
