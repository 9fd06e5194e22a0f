#pragma once
// procpool::mpi: the same pool over an MPI job. Every rank serves tasks with local worker
// processes of its own; rank 0's program submits them. Link with the CMake target procpool::mpi.

#include <procpool/detail/cxx20.hpp>

#include <array>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <procpool/detail/chrono.hpp>
#include <procpool/detail/mpi/agent.hpp>
#include <procpool/detail/mpi/node.hpp>
#include <procpool/detail/mpi/transport.hpp>
#include <procpool/init.hpp>
#include <procpool/procpool.hpp>

namespace procpool::mpi {

namespace detail {

// Shared-memory objects: their handles name memory on this machine only.
template <class T>
struct shares_memory : std::false_type {};
template <class T>
struct shares_memory<Value<T>> : std::true_type {};
template <class T>
struct shares_memory<Array<T>> : std::true_type {};
template <>
struct shares_memory<Mutex> : std::true_type {};
template <>
struct shares_memory<Semaphore> : std::true_type {};
template <>
struct shares_memory<Event> : std::true_type {};
template <>
struct shares_memory<Condition> : std::true_type {};
template <>
struct shares_memory<Barrier> : std::true_type {};
template <class T, class C>
struct shares_memory<Queue<T, C>> : std::true_type {};
template <class T, class C>
struct shares_memory<List<T, C>> : std::true_type {};
template <class K, class V, class C>
struct shares_memory<Dict<K, V, C>> : std::true_type {};
template <class T, class C>
struct shares_memory<Pipe<T, C>> : std::true_type {};
// ... and the standard containers that could carry one.
template <class... T>
struct shares_memory<std::tuple<T...>>
    : std::disjunction<shares_memory<std::remove_cvref_t<T>>...> {};
template <class A, class B>
struct shares_memory<std::pair<A, B>> : std::disjunction<shares_memory<std::remove_cvref_t<A>>,
                                                         shares_memory<std::remove_cvref_t<B>>> {};
template <class T, class A>
struct shares_memory<std::vector<T, A>> : shares_memory<T> {};
template <class T, std::size_t N>
struct shares_memory<std::array<T, N>> : shares_memory<T> {};
template <class T>
struct shares_memory<std::optional<T>> : shares_memory<T> {};

/// The argument check of mpi::Pool: nothing that lives in this machine's shared memory.
struct NoSharedArgs {
  template <class W>
  static constexpr void check() noexcept {
    static_assert(!shares_memory<W>::value,
                  "procpool::mpi: a shared-memory object (Value, Array, a lock, Queue, List, Dict "
                  "or a pipe end) cannot reach another machine; pass its contents instead");
  }
};

inline int env_int(const char* const* names, int fallback) {
  for (const char* const* n = names; *n; ++n)
    if (const char* v = std::getenv(*n); v && *v) return std::atoi(v);
  return fallback;
}

}  // namespace detail

/// Call first thing in `main` (instead of procpool::init). Starts procpool's fork server, then
/// MPI (MPI_THREAD_FUNNELED, on a thread of procpool's that makes every MPI call of this
/// process). On every rank but 0 it then serves tasks until rank 0's program ends, and exits; on
/// rank 0 it returns. MPI is shut down when rank 0's program ends (std::exit or return from main).
/// The program itself must not call MPI.
inline void init(int& argc, char**& argv) {
  procpool::init(argc, argv);  // a spawned worker runs here and never returns
  auto& node = procpool::detail::mpi::Node::get();
  node.start(&argc, &argv, [](procpool::detail::mpi::Comm& c) {
    procpool::detail::mpi::Agent agent(c);
    return agent.run();
  });
  if (node.rank() != 0) std::exit(node.wait_agent());
  std::atexit([] { procpool::detail::mpi::Node::get().stop(); });
}

/// This process's rank; inside a task, the rank whose worker runs it.
inline int rank() {
  auto& node = procpool::detail::mpi::Node::get();
  if (node.started()) return node.rank();
  // A worker: forked before MPI started, it knows its rank from the launcher.
  static const char* const names[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK",
                                      "SLURM_PROCID", nullptr};
  return detail::env_int(names, 0);
}

/// The number of ranks in the job.
inline int world_size() {
  auto& node = procpool::detail::mpi::Node::get();
  if (node.started()) return node.size();
  static const char* const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", nullptr};
  return detail::env_int(names, 1);
}

struct Options {
  unsigned processes_per_rank = 0;  ///< 0: cpu_count() on that rank's machine
  bool use_root = true;             ///< rank 0 runs workers too (a 1-rank job is a local pool)
  /// How each rank starts its workers. `fork` forks them from the fork server, which was
  /// started before MPI: no worker is a copy of a process that called MPI_Init.
  StartMethod start = StartMethod::fork;
  std::size_t maxtasksperchild = 0;
  std::chrono::milliseconds task_timeout{0};
  std::size_t memory_limit = 0;
};

/// A pool whose workers run on every rank of the MPI job. It has every method of
/// procpool::Pool, with the same results, errors and laziness. Make it on rank 0.
template <class Codec = BinaryCodec>
class Pool : public procpool::detail::PoolFront<Codec, detail::NoSharedArgs> {
 public:
  Pool() : Pool(Options{}) {}
  explicit Pool(Options opts) { start(opts, procpool::detail::Buffer{}); }

  /// Runs `initializer(initargs...)` in every worker on every rank when it starts. If it throws
  /// anywhere, this constructor throws a `RemoteError` quoting it.
  template <class F, class... A>
  Pool(Options opts, F initializer, A&&... initargs) {
    std::vector<std::shared_ptr<procpool::detail::Segment>> segments;
    auto payload = this->init_payload(segments, initializer, std::forward<A>(initargs)...);
    start(opts, std::move(payload));
  }

  /// The pool's counters; `restarts` counts the workers replaced on every rank.
  Stats stats() const {
    procpool::detail::mpi::Node::get().take_in();
    Stats s = procpool::detail::PoolFront<Codec, detail::NoSharedArgs>::stats();
    s.restarts += transport_->remote_restarts();
    return s;
  }

 private:
  void start(const Options& o, procpool::detail::Buffer init_task) {
    auto& node = procpool::detail::mpi::Node::get();
    if (!node.started())
      throw std::logic_error(procpool::detail::prefixed(
          "procpool::mpi::Pool needs procpool::mpi::init(argc, argv) first thing in main"));
    if (node.rank() != 0)
      throw std::logic_error(procpool::detail::prefixed("procpool::mpi::Pool is made on rank 0"));
    if (node.ending())
      throw std::logic_error(procpool::detail::prefixed(
          "procpool::mpi::Pool made after the program's end began (MPI is shutting down)"));
    if (o.processes_per_rank > 4096)
      throw std::invalid_argument(procpool::detail::prefixed("mpi::Options::processes_per_rank " +
                                                             std::to_string(o.processes_per_rank) +
                                                             " is above the limit of 4096"));
    const bool root = o.use_root || node.size() == 1;
    if (!o.use_root && node.size() == 1)
      throw std::invalid_argument(procpool::detail::prefixed(
          "mpi::Options::use_root is false but the job has one rank: no rank would run tasks"));
    procpool::Options local;
    local.processes = root ? (o.processes_per_rank ? o.processes_per_rank : cpu_count()) : 0;
    local.start = procpool::detail::mpi::local_start(o.start);
    local.maxtasksperchild = o.maxtasksperchild;
    local.task_timeout = o.task_timeout;
    local.memory_limit = o.memory_limit;
    this->check_options(local);
    if (root) procpool::detail::local::check_can_start(local.start, "procpool::mpi::Pool");
    procpool::detail::mpi::OpenSpec spec{o.processes_per_rank, static_cast<std::uint64_t>(o.start),
                                         o.maxtasksperchild, o.memory_limit};
    auto t = std::make_unique<procpool::detail::mpi::MpiTransport>(node, local, spec, init_task);
    auto* transport = t.get();
    transport_ = transport;
    procpool::Options engine = local;
    engine.processes = static_cast<unsigned>(transport->slots());
    auto supervisor = std::make_shared<procpool::detail::Supervisor>(engine, std::move(t));
    supervisor->start();
    // A pool still alive when the program ends (held by a static object) finishes its work
    // before MPI shuts down; its destructor then has nothing left to wait for.
    node.at_end(transport->pool(), [weak = std::weak_ptr(supervisor)] {
      if (auto s = weak.lock()) {
        s->queue().close();
        try {
          s->join();
        } catch (...) {
          // join() from the pool's own callback thread: it finishes on its own.
        }
      }
    });
    this->adopt(engine, std::move(supervisor));
    this->engine()->set_size(transport->workers());
  }

  // Owned by the engine, which lives as long as this pool.
  procpool::detail::mpi::MpiTransport* transport_ = nullptr;
};

Pool()->Pool<BinaryCodec>;
Pool(Options)->Pool<BinaryCodec>;
template <class F, class... A>
Pool(Options, F, A&&...) -> Pool<BinaryCodec>;

}  // namespace procpool::mpi
