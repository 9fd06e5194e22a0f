#pragma once
// This process's place in the MPI job: the thread that makes every MPI call (started by
// mpi::init, before which the fork server was already started, so no worker is ever forked from a
// process that called MPI_Init), and on rank 0 the courier that thread runs: it sends what the
// pools post, and hands what comes back to the pool it is for. Other ranks run the agent there
// (agent.hpp).
//
// No MPI call blocks: a blocking MPI wait cannot also wait for the pools' posts, and Open MPI's
// and MPICH's blocking calls spin anyway. The thread spins for a moment while traffic flows, then
// sleeps on a condition variable in growing steps (posts wake it at once), and sleeps for good
// when no answer is due.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/clock.hpp>
#include <procpool/detail/mpi/comm.hpp>
#include <procpool/detail/mpi/protocol.hpp>
#include <procpool/detail/posix/process.hpp>
#include <procpool/errors.hpp>

namespace procpool::detail::mpi {

// How the MPI thread waits: it spins (yielding) for PROCPOOL_MPI_SPIN_US after the last traffic,
// which covers a round trip to another rank, then naps in steps that double from 10 us to
// PROCPOOL_MPI_NAP_US; after a second without traffic, or at once on a rank with no work in
// hand, 1 ms. A post from a pool (or a result from the agent's pool) ends a nap at once; only a
// message from another rank waits for the nap to end.
#ifndef PROCPOOL_MPI_SPIN_US
#define PROCPOOL_MPI_SPIN_US 1000
#endif
#ifndef PROCPOOL_MPI_NAP_US
#define PROCPOOL_MPI_NAP_US 100
#endif
inline constexpr std::int64_t spin_ns = std::int64_t{PROCPOOL_MPI_SPIN_US} * 1000;
inline constexpr std::chrono::microseconds first_nap{10};
inline constexpr std::chrono::microseconds last_nap{PROCPOOL_MPI_NAP_US};
inline constexpr std::chrono::microseconds idle_nap{1000};
inline constexpr std::int64_t idle_after_ns = 1'000'000'000;

// A rank that owes answers and has said nothing for this long is taken for lost, and the job
// ends (PROCPOOL_MPI_HEARTBEAT_S, seconds; 0: never): mpiexec ends a job whose rank died, but
// not one whose rank stopped or whose machine dropped off the network. An agent with work says
// it is alive every second.
inline constexpr std::int64_t default_heartbeat_s = 60;
inline constexpr std::int64_t beat_ns = 1'000'000'000;

inline std::int64_t heartbeat_deadline_ns() {
  const char* v = std::getenv("PROCPOOL_MPI_HEARTBEAT_S");
  const std::int64_t s = v && *v ? std::atoll(v) : default_heartbeat_s;
  return s > 0 ? s * 1'000'000'000 : 0;
}

/// Spin, then naps that grow: one per idle round of the MPI thread.
class Pacer {
 public:
  void busy() noexcept {
    last_ = now_ns();
    nap_ = first_nap;
  }
  /// True while the thread should spin on.
  bool spinning() noexcept {
    // Yields rather than pauses: ranks often share cores with their own workers (and on a test
    // machine, with other ranks), which must not wait for a spinning thread's time slice.
    std::this_thread::yield();
    return now_ns() - last_ < spin_ns;
  }
  /// `expecting`: answers are due to this thread. A thread that waits only for new work (an
  /// agent with none) naps the long step at once: its many short naps woke a core thousands of
  /// times a second, taking it from the processes that did have work.
  std::chrono::microseconds next_nap(bool expecting = true) noexcept {
    if (!expecting) return idle_nap;
    auto n = nap_;
    const auto cap = now_ns() - last_ < idle_after_ns ? last_nap : idle_nap;
    nap_ = std::min(nap_ * 2, cap);
    return n;
  }

 private:
  std::int64_t last_ = 0;
  std::chrono::microseconds nap_ = first_nap;
};

/// A pool on rank 0, as the courier sees it: where the records for it go.
class Receiver {
 public:
  /// A record from rank `from` (called on the courier thread). Its body may be moved from.
  virtual void deliver(int from, const Record& r) = 0;

 protected:
  ~Receiver() = default;
};

class Node {
 public:
  static Node& get() {
    static Node* node = new Node;  // never destroyed: the MPI thread may outlive static objects
    return *node;
  }

  bool started() const noexcept { return started_.load(std::memory_order_acquire); }
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }

  /// Starts the MPI thread, which initializes MPI and, on ranks other than 0, runs `agent`.
  /// Returns once MPI is up (throws if it could not start).
  void start(int* argc, char*** argv, std::function<int(Comm&)> agent) {
    if (started()) throw std::logic_error(prefixed("procpool::mpi::init called twice"));
    agent_ = std::move(agent);
    {
      // The MPI thread takes no signal (MPI's runtime and the pools install their own handling).
      posix::BlockAllSignals blocked;
      thread_ = std::thread([this, argc, argv] { main(argc, argv); });
    }
    std::unique_lock l(m_);
    cv_.wait(l, [&] { return up_ || init_error_; });
    if (init_error_) {
      thread_.join();
      std::rethrow_exception(init_error_);
    }
    started_.store(true, std::memory_order_release);
  }

  /// On ranks other than 0: waits for the agent to end; its exit code.
  int wait_agent() {
    thread_.join();
    return agent_code_;
  }

  /// On rank 0, at the program's end: ends the pools still alive (a static object's pool is
  /// destroyed only after this), tells every agent to end, then shuts MPI down.
  void stop() {
    if (!started() || rank_ != 0) return;
    std::vector<std::function<void()>> enders;
    {
      std::lock_guard l(registry_m_);
      ending_ = true;
      for (auto& [pool, end] : enders_) enders.push_back(end);
    }
    for (auto& end : enders) end();
    {
      std::lock_guard l(m_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // ---- Rank 0: the pools' side of the courier -------------------------------------------------

  std::uint32_t new_pool_id() noexcept { return next_pool_.fetch_add(1); }

  void attach(std::uint32_t pool, Receiver* r) {
    std::lock_guard l(registry_m_);
    receivers_[pool] = r;
  }
  /// After this returns, `pool`'s receiver is not called again.
  void detach(std::uint32_t pool) {
    {
      std::lock_guard l(registry_m_);
      receivers_.erase(pool);
      enders_.erase(pool);
    }
    std::lock_guard l(m_);
    for (auto it = gone_.lower_bound(key(pool, 0)); it != gone_.end() && (*it >> 32) == pool;)
      it = gone_.erase(it);
  }
  /// `end` finishes `pool` (close, then join) if it is still alive when the program ends: a
  /// pool destroyed after that would wait for ever for ranks that have gone.
  void at_end(std::uint32_t pool, std::function<void()> end) {
    std::lock_guard l(registry_m_);
    enders_[pool] = std::move(end);
  }
  /// True once the program's end has begun: no pool may start.
  bool ending() {
    std::lock_guard l(registry_m_);
    return ending_;
  }

  /// Queues a record for rank `dest`; it leaves on the courier's next round.
  void post(int dest, std::uint32_t pool, Op op, std::uint64_t aux,
            std::span<const std::byte> bytes) {
    post_with(dest, pool, op, [&](Outbox& o) { o.add(pool, op, aux, bytes); });
  }
  /// Like post; a large `bytes` is sent as it is (see Outbox).
  void post(int dest, std::uint32_t pool, Op op, std::uint64_t aux, Buffer&& bytes) {
    post_with(dest, pool, op, [&](Outbox& o) { o.add(pool, op, aux, std::move(bytes)); });
  }

  /// Answers the other ranks still owe, over every pool: 0 once every pool has ended (a count
  /// that never returns to 0 would keep the courier awake, and trip the heartbeat).
  std::uint64_t owed() {
    std::lock_guard l(m_);
    return due_total();
  }

  /// Waits (briefly) until the courier has taken in what has arrived by now: records that are
  /// no answer (a rank's restart count) wait in MPI while the courier sleeps.
  void take_in() {
    std::unique_lock l(m_);
    if (stopping_ || rank_ != 0) return;
    const std::uint64_t target = rounds_ + 2;  // the next round starts, and ends, after this
    posted_ = true;
    cv_.notify_one();
    ++round_waiters_;
    round_cv_.wait_for(l, std::chrono::milliseconds(100),
                       [&] { return rounds_ >= target || stopping_; });
    --round_waiters_;
  }

 private:
  template <class Add>
  void post_with(int dest, std::uint32_t pool, Op op, Add&& add) {
    {
      std::lock_guard l(m_);
      if (out_.size() < static_cast<std::size_t>(size_))
        out_.resize(static_cast<std::size_t>(size_));
      // After its bye, a pool's link there is about to be buried (its jobs go back to the queue
      // or fail): what it still sends would never be answered, and would be owed for ever.
      if (op == Op::open) {
        gone_.erase(key(pool, dest));
      } else if (op != Op::shutdown && gone_.count(key(pool, dest)) != 0) {
        return;
      }
      add(out_[static_cast<std::size_t>(dest)]);
      // Each of the others is answered once (a cancelled job's answer answers its task).
      if (op != Op::shutdown && op != Op::cancel && op != Op::revoke) {
        auto& due = due_[key(pool, dest)];
        // Silence before now was no fault: the rank owed nothing.
        if (due == 0 && due_to(dest) == 0) heard_[static_cast<std::size_t>(dest)] = now_ns();
        ++due;
      }
      posted_ = true;
    }
    cv_.notify_one();
  }

  Node() = default;

  static std::uint64_t key(std::uint32_t pool, int rank) {
    return (std::uint64_t{pool} << 32) | static_cast<std::uint32_t>(rank);
  }

  void main(int* argc, char*** argv) {
    try {
      comm_.init(argc, argv);
    } catch (...) {
      std::lock_guard l(m_);
      init_error_ = std::current_exception();
      cv_.notify_all();
      return;
    }
    rank_ = comm_.rank();
    size_ = comm_.size();
    {
      std::lock_guard l(m_);
      heard_.assign(static_cast<std::size_t>(size_), 0);
      up_ = true;
    }
    cv_.notify_all();
    if (rank_ != 0) {
      try {
        agent_code_ = agent_(comm_);
      } catch (const std::exception& e) {
        comm_.abort(std::string("the agent failed: ") + e.what());
      }
      comm_.finalize();
      return;
    }
    try {
      courier();
    } catch (const std::exception& e) {
      comm_.abort(std::string("the courier failed: ") + e.what());
    }
    comm_.finalize();
  }

  // Rank 0's MPI thread.
  void courier() {
    Pacer pacer;
    std::vector<Outbox> out;
    inboxes_.resize(static_cast<std::size_t>(size_));
    Buffer msg;
    for (;;) {
      bool busy = false, stopping = false;
      {
        std::lock_guard l(m_);
        out.swap(out_);
        posted_ = false;
        stopping = stopping_;
        ++rounds_;
        if (round_waiters_ > 0) round_cv_.notify_all();
      }
      for (std::size_t r = 0; r < out.size(); ++r) {
        if (out[r].empty()) continue;
        for (Buffer& m : out[r].take()) comm_.send(static_cast<int>(r), std::move(m));
        busy = true;
      }
      comm_.progress();
      int from = 0;
      while (comm_.try_receive(-1, msg, from)) {
        {
          std::lock_guard l(m_);
          heard_[static_cast<std::size_t>(from)] = now_ns();
        }
        dispatch(from, msg);
        busy = true;
      }
      if (stopping) break;
      check_heartbeats();
      if (busy) {
        pacer.busy();
        continue;
      }
      if (pacer.spinning()) continue;
      std::unique_lock l(m_);
      if (posted_ || stopping_ || round_waiters_ > 0) continue;  // (take_in waits for a round)
      if (due_total() == 0 && !comm_.sending()) {
        cv_.wait(l, [&] { return posted_ || stopping_; });  // nothing can arrive
      } else {
        cv_.wait_for(l, pacer.next_nap(), [&] { return posted_ || stopping_; });
      }
    }
    // The program ends: every agent ends with it.
    for (int r = 1; r < size_; ++r) post(r, 0, Op::shutdown, 0, std::span<const std::byte>{});
    std::lock_guard l(m_);
    for (std::size_t r = 0; r < out_.size(); ++r)
      for (Buffer& m : out_[r].take()) comm_.send(static_cast<int>(r), std::move(m));
  }

  // Ends the job if a rank that owes answers has been silent past the deadline.
  void check_heartbeats() {
    if (heartbeat_ns_ <= 0) return;
    const std::int64_t now = now_ns();
    if (now - last_check_ < heartbeat_ns_ / 64) return;
    // This thread itself did not run for a long while (the whole job was suspended, say): the
    // others' silence proves nothing, so their clocks start again.
    const bool we_stalled = last_check_ != 0 && now - last_check_ > heartbeat_ns_ / 2;
    last_check_ = now;
    std::lock_guard l(m_);
    for (int r = 1; r < size_; ++r) {
      auto& heard = heard_[static_cast<std::size_t>(r)];
      if (we_stalled) heard = now;
      if (now - heard <= heartbeat_ns_ || due_to(r) == 0) continue;
      comm_.abort("rank " + std::to_string(r) + " has not been heard from for " +
                  std::to_string((now - heard) / 1'000'000'000) +
                  " s while it owes answers (its process stopped, or its machine or network is "
                  "lost?; PROCPOOL_MPI_HEARTBEAT_S sets the limit)");
    }
  }

  // Answers `rank` owes, over every pool (m_ held).
  std::uint64_t due_to(int rank) const {
    std::uint64_t n = 0;
    for (auto& [k, v] : due_)
      if (static_cast<int>(k & 0xffffffffu) == rank) n += v;
    return n;
  }

  std::uint64_t due_total() const {
    std::uint64_t n = 0;
    for (auto& [k, v] : due_) n += v;
    return n;
  }

  void dispatch(int from, Buffer& msg) {
    const bool ok = inboxes_[static_cast<std::size_t>(from)].read(msg, [&](const Record& r) {
      answered(r, from);
      std::lock_guard l(registry_m_);
      auto it = receivers_.find(r.pool);
      if (it != receivers_.end()) it->second->deliver(from, r);
    });
    if (!ok) comm_.abort("a malformed message came from rank " + std::to_string(from));
  }

  // Keeps count of the answers still due, so the courier knows when it may sleep for good.
  void answered(const Record& r, int from) {
    std::lock_guard l(m_);
    if (r.op == Op::bye) gone_.insert(key(r.pool, from));
    auto it = due_.find(key(r.pool, from));
    if (it == due_.end()) return;
    if (r.op == Op::bye) {
      due_.erase(it);  // whatever it still owed is dropped with its pool
      return;
    }
    if (r.op != Op::frame) return;
    FrameHeader h;
    if (!read_frame_header(r.bytes, h)) return;
    const auto kind = static_cast<FrameKind>(h.kind);
    if (kind == FrameKind::hello || kind == FrameKind::init_error || kind == FrameKind::result ||
        kind == FrameKind::failed)
      if (it->second > 0) --it->second;
  }

  Comm comm_;
  std::thread thread_;
  std::function<int(Comm&)> agent_;
  int agent_code_ = 0;
  std::atomic<bool> started_{false};
  int rank_ = 0;
  int size_ = 1;

  std::mutex m_;
  std::condition_variable cv_;
  bool up_ = false;
  std::exception_ptr init_error_;
  bool stopping_ = false;
  bool posted_ = false;
  std::uint64_t rounds_ = 0;         // of the courier's loop (see take_in)
  std::vector<std::int64_t> heard_;  // by rank: when a message from it last came (see due_to)
  const std::int64_t heartbeat_ns_ = heartbeat_deadline_ns();
  std::int64_t last_check_ = 0;  // (the courier's)
  int round_waiters_ = 0;
  std::condition_variable round_cv_;
  std::vector<Outbox> out_;                     // by destination rank: records not sent yet
  std::vector<Inbox> inboxes_;                  // by sending rank (the courier's thread only)
  std::map<std::uint64_t, std::uint64_t> due_;  // answers due, by (pool, rank)
  std::set<std::uint64_t> gone_;                // (pool, rank) that said bye, until opened again

  std::mutex registry_m_;
  std::map<std::uint32_t, Receiver*> receivers_;
  std::map<std::uint32_t, std::function<void()>> enders_;  // see at_end
  bool ending_ = false;
  std::atomic<std::uint32_t> next_pool_{1};
};

}  // namespace procpool::detail::mpi
