#pragma once
// The agent: what every rank but 0 runs on its MPI thread. It serves rank 0's pools with local
// pools of its own (one per mpi::Pool, the same engine as procpool::Pool, workers from the fork
// server), so a task that crashes, hangs or exceeds its memory kills one local worker and fails
// one task, and the MPI job never sees it. Results are forwarded as the local engine settles
// them; a failed job goes back as a `failed` frame carrying its error.
//
// Starting a pool's workers (with their initializer) and waiting for them to end take as long
// as those take, so they happen on helper threads that report back: while one pool starts or
// ends here, the MPI thread goes on serving the others.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <typeinfo>
#include <utility>
#include <vector>

#include <procpool/cpu.hpp>
#include <procpool/detail/callback.hpp>
#include <procpool/detail/completion.hpp>
#include <procpool/detail/demangle.hpp>
#include <procpool/detail/invoke.hpp>
#include <procpool/detail/local/launcher.hpp>
#include <procpool/detail/local/transport.hpp>
#include <procpool/detail/mpi/comm.hpp>
#include <procpool/detail/mpi/node.hpp>
#include <procpool/detail/mpi/protocol.hpp>
#include <procpool/detail/posix/module.hpp>
#include <procpool/detail/supervisor.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/errors.hpp>
#include <procpool/options.hpp>

namespace procpool::detail::mpi {

/// The local start method for a pool's workers: plain fork would copy a process that called
/// MPI_Init, so fork means the fork server (forked before MPI started).
inline StartMethod local_start(StartMethod m) {
  return m == StartMethod::fork ? StartMethod::forkserver : m;
}

class Agent {
 public:
  explicit Agent(Comm& comm) : comm_(comm) {}
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;
  ~Agent() {
    for (auto& h : helpers_) h.thread.join();  // (run() failed: they still use this)
  }

  int run() {
    Pacer pacer;
    Buffer msg;
    Inbox inbox;
    int from = 0;
    while (!shutdown_) {
      bool busy = take_started();
      report_restarts();
      while (!shutdown_ && comm_.try_receive(0, msg, from, &local::SharedFrames::process())) {
        busy = true;
        if (!inbox.read(msg, [&](const Record& r) { handle(r); }))
          comm_.abort("a malformed message came from rank 0");
      }
      std::vector<Buffer> out;
      {
        std::lock_guard l(m_);
        out = out_.take();
        has_out_.store(false, std::memory_order_relaxed);
      }
      for (Buffer& m : out) {
        comm_.send(0, std::move(m));
        busy = true;
      }
      if (!out.empty()) last_sent_ = now_ns();
      comm_.progress();
      reap_helpers();
      beat();
      if (busy) {
        pacer.busy();
        continue;
      }
      if (pacer.spinning()) {
        help_pools();
        continue;
      }
      std::unique_lock l(m_);
      cv_.wait_for(l, pacer.next_nap(in_hand()),
                   [&] { return !out_.empty() || !started_.empty(); });
    }
    // Rank 0's program has ended: so do this rank's pools, those still starting too.
    std::vector<std::shared_ptr<LocalPool>> all;
    for (auto& [id, p] : pools_) all.push_back(p);
    pools_.clear();
    for (auto& p : all) stop_now(*p);
    for (auto& h : helpers_) h.thread.join();
    helpers_.clear();
    {
      std::lock_guard l(m_);
      for (auto& s : started_)
        if (s.pool) all.push_back(std::move(s.pool));
      started_.clear();
    }
    for (auto& p : all) {
      stop_now(*p);
      try {
        p->engine->join();
      } catch (...) {
      }
    }
    return 0;
  }

 private:
  struct LocalPool {
    std::shared_ptr<Supervisor> engine;
    unsigned processes = 0;
    std::uint64_t restarts = 0;            // as last reported to rank 0 (the MPI thread's)
    std::atomic<bool> dropping{false};     // terminated: its outcomes are no longer wanted
    std::atomic<std::int64_t> running{0};  // jobs submitted, not yet answered
    std::mutex jobs_m;
    std::map<std::uint64_t, std::weak_ptr<Completion>> jobs;  // not answered yet, for cancel
  };

  // A pool a helper is starting. Rank 0 may ask it to end meanwhile (its own start failed).
  struct Starting {
    std::uint64_t serial = 0;  // tells it from an earlier start of the same pool
    bool end = false;
    bool terminate = false;
    bool bye = false;
  };
  // A helper's report: the pool has started (or, if null, failed, and said so).
  struct Started {
    std::uint32_t id = 0;
    std::uint64_t serial = 0;
    std::shared_ptr<LocalPool> pool;
  };
  struct Helper {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };

  // Runs `f` on a helper thread; in this one if no thread can be made.
  template <class F>
  void spawn(F&& f) {
    auto work = std::make_shared<std::decay_t<F>>(std::forward<F>(f));
    auto done = std::make_shared<std::atomic<bool>>(false);
    try {
      helpers_.push_back({std::thread([work, done] {
                            (*work)();
                            done->store(true, std::memory_order_release);
                          }),
                          done});
    } catch (const std::system_error&) {
      (*work)();
    }
  }

  // A pool's life here (agent_pools.hpp): opened and started on a helper thread, taken into
  // pools_ once started, ended (or broken) with its workers waited for on a helper thread.
  inline void open(std::uint32_t pool, std::span<const std::byte> bytes);
  inline void start(std::uint32_t pool, std::uint64_t serial, const Options& o, const Buffer& init);
  inline bool take_started();
  inline void end(std::uint32_t pool, bool terminate, bool say_bye = true);
  inline void finish(std::shared_ptr<LocalPool> p, std::uint32_t pool, bool terminate,
                     bool say_bye);
  inline void broke(std::uint32_t pool);
  inline void reap_helpers();

  static void stop_now(LocalPool& p) {
    p.dropping.store(true);
    p.engine->queue().terminate();
  }

  void handle(const Record& r) {
    switch (r.op) {
      case Op::open:
        open(r.pool, r.bytes);
        return;
      case Op::task:
        task(r.pool, r.aux, r.bytes, r.body);
        return;
      case Op::close:
      case Op::terminate:
        end(r.pool, r.op == Op::terminate);
        return;
      case Op::shutdown:
        shutdown_ = true;
        return;
      case Op::cancel:
      case Op::revoke:
        cancel(r.pool, r.aux, r.op == Op::cancel);
        return;
      default:
        comm_.abort("an unknown request came from rank 0");
    }
  }

  // Rank 0's stats() counts the workers replaced on every rank: each pool's count goes back
  // when it changes (with its answers, see task; here, a worker recycled after its last one).
  // Says this rank is alive when it has said nothing for a second and rank 0 waits for it (see
  // Node::check_heartbeats).
  void beat() {
    const std::int64_t now = now_ns();
    if (now - last_sent_ < beat_ns || !in_hand()) return;
    last_sent_ = now;
    reply(0, Op::alive, 0, {});
  }

  // Whether rank 0 waits for this rank: pools starting or ending, or jobs not yet answered.
  bool in_hand() const {
    if (!starting_.empty() || !helpers_.empty()) return true;
    for (auto& [id, p] : pools_)
      if (p->running.load() > 0) return true;
    return false;
  }

  // Also looks for pools that cannot go on (see broke).
  void report_restarts() {
    std::vector<std::uint32_t> broken;
    for (auto& [id, p] : pools_) {
      const std::uint64_t n = p->engine->queue().stats().restarts;
      if (n != p->restarts) {
        p->restarts = n;
        reply(id, Op::stats, n, {});
      }
      if (p->engine->queue().broken()) broken.push_back(id);
    }
    for (auto id : broken) broke(id);
  }

  // While it would spin anyway, this thread does the local pools' work itself for a moment (as
  // a thread waiting for a result does, see Supervisor::help): a task's answer then reaches it
  // without waking the pool's thread twice. It stops as soon as there is something to send or a
  // message from rank 0 has arrived.
  void help_pools() {
    const auto until = Clock::now() + std::chrono::microseconds(100);
    for (auto& [id, p] : pools_) {
      if (p->running.load(std::memory_order_relaxed) <= 0) continue;
      (void)p->engine->help(
          [&] { return has_out_.load(std::memory_order_relaxed) || comm_.waiting(0); }, until,
          nullptr);
    }
  }

  void reply(std::uint32_t pool, Op op, std::uint64_t aux, std::span<const std::byte> bytes) {
    {
      std::lock_guard l(m_);
      out_.add(pool, op, aux, bytes);
      has_out_.store(true, std::memory_order_relaxed);
    }
    cv_.notify_one();
  }

  void reply_frame(std::uint32_t pool, const Buffer& frame, std::uint64_t aux = 0) {
    reply(pool, Op::frame, aux, std::span<const std::byte>(frame.data(), frame.size()));
  }

  // A result frame, under rank 0's id `job`: a job taken back from a stuck worker here (see
  // Scheduler::rebalance) ran under a fresh one.
  void reply_result(std::uint32_t pool, Buffer& frame, std::uint64_t job, std::uint64_t aux) {
    std::memcpy(frame.data() + offsetof(FrameHeader, id), &job, sizeof job);
    {
      std::lock_guard l(m_);
      out_.add(pool, Op::frame, aux, std::move(frame));
      has_out_.store(true, std::memory_order_relaxed);
    }
    cv_.notify_one();
  }

  void reply_failed(std::uint32_t pool, std::uint64_t job, ErrorInfo e, std::uint64_t aux = 0) {
    e.message = "on rank " + std::to_string(comm_.rank()) + ": " + e.message;
    Buffer f;
    std::size_t at = begin_frame(f, FrameKind::failed, job);
    e.put_report(f);
    finish_frame(f, at, 1);
    reply_frame(pool, f, aux);
  }

  // A task's name for messages: its function, or (a lambda) its trampoline, which names its type.
  static TaskName name_of(std::span<const std::byte> payload) {
    TaskName n;
    std::uint64_t v[4];
    if (payload.size() < sizeof v) return n;
    std::memcpy(v, payload.data(), sizeof v);
    posix::ImageAddress fn{v[2], v[3]}, tramp{v[0], v[1]};
    void* p = posix::resolve_code(v[2] != 0 || v[3] != 0 ? fn : tramp);
    n.fn = reinterpret_cast<std::uintptr_t>(p);
    return n;
  }

  void task(std::uint32_t pool, std::uint64_t timeout_ns, std::span<const std::byte> bytes,
            Buffer* body) {
    FrameHeader h;
    if (!read_frame_header(bytes, h) || h.kind != static_cast<std::uint8_t>(FrameKind::task))
      comm_.abort("a malformed task came from rank 0");
    auto it = pools_.find(pool);
    if (it == pools_.end()) {
      if (silenced_.count(pool) != 0) return;  // see broke
      ErrorInfo e;
      e.kind = ErrorInfo::Kind::cancelled;
      e.message = "the pool had ended here";
      reply_failed(pool, h.id, e);
      return;
    }
    std::shared_ptr<LocalPool> p = it->second;
    Job j;
    j.id = h.id;
    j.task = name_of(bytes.subspan(sizeof h));
    if (body) {
      j.frame = std::move(*body);  // a large task's own message: kept, not copied
    } else {
      j.frame.append(bytes.data(), bytes.size());
    }
    j.count = h.count;
    j.timeout_ns = static_cast<std::int64_t>(timeout_ns);
    auto c = std::make_shared<Completion>(1);
    c->items = h.count;
    const std::uint64_t id = h.id;
    // Until the job is queued, its completion cannot settle, so what is counted for it here is
    // taken back by hand if queuing fails.
    bool listed = false, counted = false;
    try {
      {
        std::lock_guard l(p->jobs_m);
        p->jobs[id] = c;
        listed = true;
      }
      c->on_complete(on_answer(p, pool, id));
      j.completion = c;
      p->running.fetch_add(1, std::memory_order_relaxed);
      counted = true;
      p->engine->queue().submit(std::move(j));
    } catch (const std::exception& e) {
      if (counted) p->running.fetch_sub(1, std::memory_order_relaxed);
      if (listed) {
        std::lock_guard l(p->jobs_m);
        p->jobs.erase(id);
      }
      if (p->engine->queue().broken()) return broke(pool);
      ErrorInfo info;
      if (dynamic_cast<const PoolClosed*>(&e)) {
        info.kind = ErrorInfo::Kind::closed;
      } else {
        info.kind = ErrorInfo::Kind::remote;  // out of memory here, say
        info.type_name = demangle(typeid(e).name());
      }
      info.message = e.what();
      reply_failed(pool, id, info);
    }
  }

  // What a job's completion does: it sends the job's answer to rank 0.
  Callback<void(Completion&)> on_answer(const std::shared_ptr<LocalPool>& p, std::uint32_t pool,
                                        std::uint64_t id) {
    return [this, p, pool, id](Completion& done) {
      {
        std::lock_guard l(p->jobs_m);
        p->jobs.erase(id);
      }
      p->running.fetch_sub(1, std::memory_order_relaxed);
      if (p->dropping.load()) return;
      // An answer carries the pool's restart count: a worker that died in this job was
      // replaced before it failed, and rank 0's stats() says so by the time the job fails there.
      const std::uint64_t restarts = p->engine->queue().stats().restarts;
      if (const auto& e = done.forced_error()) return reply_failed(pool, id, *e, restarts);
      // This completion is the agent's alone, and nobody reads its outcome after this: the
      // result frame is taken, not copied.
      auto& o = const_cast<JobOutcome&>(done.outcomes()[0]);
      if (o.error) return reply_failed(pool, id, *o.error, restarts);
      Buffer frame = o.take_frame();
      reply_result(pool, frame, id, restarts);
    };
  }

  // Rank 0 cancelled the job: it fails here as there (its worker killed if it started it and
  // `kill_running`, as on one machine), and the failure goes back as its answer.
  void cancel(std::uint32_t pool, std::uint64_t job, bool kill_running) {
    auto it = pools_.find(pool);
    if (it == pools_.end()) return;
    std::shared_ptr<Completion> c;
    {
      std::lock_guard l(it->second->jobs_m);
      if (auto j = it->second->jobs.find(job); j != it->second->jobs.end()) c = j->second.lock();
    }
    if (c) (void)it->second->engine->cancel(c, kill_running);
  }

  Comm& comm_;
  bool shutdown_ = false;
  std::map<std::uint32_t, std::shared_ptr<LocalPool>> pools_;  // started, taking tasks
  std::map<std::uint32_t, Starting> starting_;
  std::set<std::uint32_t> silenced_;  // ended here for good reason, until opened again (broke)
  std::uint64_t serial_ = 0;
  std::int64_t last_sent_ = 0;  // when this thread last sent rank 0 something
  std::vector<Helper> helpers_;
  std::mutex m_;
  std::condition_variable cv_;
  Outbox out_;  // records for rank 0, from this thread, the pools' threads and the helpers
  std::vector<Started> started_;  // from the helpers
  std::atomic<bool> has_out_{false};
};

}  // namespace procpool::detail::mpi

#include <procpool/detail/mpi/agent_pools.hpp>
