#pragma once
// The agent's pools, from rank 0's open to their bye (members of Agent, declared in agent.hpp):
// a pool starts on a helper thread, which reports to the MPI thread; the MPI thread says hello to
// rank 0 once the pool can take tasks; a pool that ends or cannot go on is closed or terminated
// and its workers are waited for on a helper thread, which then says bye.

#include <procpool/detail/mpi/agent.hpp>

namespace procpool::detail::mpi {

inline void Agent::reap_helpers() {
  for (auto it = helpers_.begin(); it != helpers_.end();) {
    if (!it->done->load(std::memory_order_acquire)) {
      ++it;
      continue;
    }
    it->thread.join();
    it = helpers_.erase(it);
  }
}

// The pool here cannot go on (a replacement worker's initializer failed, say: its tasks have
// failed with that error). It ends, and says bye, so rank 0 starts it afresh, or, if it fails
// to start, fails the whole pool as one machine would. Tasks that come for it meanwhile get
// no answer: rank 0 puts them back in its queue when the bye comes.
inline void Agent::broke(std::uint32_t pool) {
  auto it = pools_.find(pool);
  if (it == pools_.end()) return;
  auto p = std::move(it->second);
  pools_.erase(it);
  silenced_.insert(pool);
  finish(std::move(p), pool, true, true);
}

inline void Agent::open(std::uint32_t pool, std::span<const std::byte> bytes) {
  OpenSpec spec;
  if (bytes.size() < sizeof spec) comm_.abort("a malformed pool request came from rank 0");
  std::memcpy(&spec, bytes.data(), sizeof spec);
  Buffer init;
  init.append(bytes.data() + sizeof spec, bytes.size() - sizeof spec);
  Options o;
  o.processes = spec.processes != 0 ? static_cast<unsigned>(spec.processes) : cpu_count();
  o.start = local_start(static_cast<StartMethod>(spec.start));
  o.maxtasksperchild = static_cast<std::size_t>(spec.maxtasksperchild);
  o.memory_limit = static_cast<std::size_t>(spec.memory_limit);
  // Opened again (its predecessor here was ended for a malformed answer): a fresh pool.
  if (pools_.count(pool) != 0) end(pool, true, false);
  silenced_.erase(pool);
  const std::uint64_t serial = ++serial_;
  starting_[pool] = Starting{serial};  // an earlier start of it, if any, is not wanted
  spawn([this, pool, serial, o, init = std::move(init)] { start(pool, serial, o, init); });
}

// On a helper thread: starts the pool's workers, then reports to the MPI thread, which says
// hello once the pool can take tasks (see take_started).
inline void Agent::start(std::uint32_t pool, std::uint64_t serial, const Options& o,
                         const Buffer& init) {
  auto p = std::make_shared<LocalPool>();
  p->processes = o.processes;
  try {
    local::check_can_start(o.start, "procpool::mpi::Pool");
    auto t =
        std::make_unique<local::LocalTransport>(o, init, std::vector<std::shared_ptr<Segment>>{});
    p->engine = std::make_shared<Supervisor>(o, std::move(t));
    p->engine->start();
  } catch (const std::exception& e) {
    p.reset();
    // Reported as the initializer's failure (the usual cause); the message says what it was.
    std::string type = "procpool::Error", msg = e.what();
    if (auto* re = dynamic_cast<const RemoteError*>(&e)) type = re->type_name();
    const std::string mark = "the initializer failed: ";
    if (auto at = msg.find(mark); at != std::string::npos) msg = msg.substr(at + mark.size());
    msg = "on rank " + std::to_string(comm_.rank()) + ": " + msg;
    Buffer f;
    std::size_t at = begin_frame(f, FrameKind::init_error, 0);
    append_error_item(f, ItemStatus::remote_error, type, msg);
    finish_frame(f, at, 1);
    reply_frame(pool, f);
  }
  {
    std::lock_guard l(m_);
    started_.push_back({pool, serial, std::move(p)});
  }
  cv_.notify_one();
}

// The pools the helpers have started since the last look; true if there were any.
inline bool Agent::take_started() {
  std::vector<Started> done;
  {
    std::lock_guard l(m_);
    if (started_.empty()) return false;
    done.swap(started_);
  }
  for (auto& s : done) {
    auto it = starting_.find(s.id);
    if (it == starting_.end() || it->second.serial != s.serial) {
      if (s.pool) finish(std::move(s.pool), s.id, true, false);  // opened again since
      continue;
    }
    const Starting st = it->second;
    starting_.erase(it);
    if (st.end) {
      if (s.pool) {
        finish(std::move(s.pool), s.id, st.terminate, st.bye);
      } else if (st.bye) {
        reply(s.id, Op::bye, 0, {});
      }
      continue;
    }
    if (!s.pool) continue;  // its failure went back already
    pools_[s.id] = s.pool;
    Buffer f;
    std::size_t at = begin_frame(f, FrameKind::hello, 0);
    finish_frame(f, at, 0);
    reply_frame(s.id, f, s.pool->processes);
  }
  return true;
}

inline void Agent::end(std::uint32_t pool, bool terminate, bool say_bye) {
  if (silenced_.count(pool) != 0) return;  // ended already; its bye is on its way
  if (auto it = pools_.find(pool); it != pools_.end()) {
    auto p = std::move(it->second);
    pools_.erase(it);
    finish(std::move(p), pool, terminate, say_bye);
    return;
  }
  if (auto it = starting_.find(pool); it != starting_.end()) {
    it->second.end = true;  // done once it has started (see take_started)
    it->second.terminate = it->second.terminate || terminate;
    it->second.bye = say_bye;
    return;
  }
  if (say_bye) reply(pool, Op::bye, 0, {});
}

// Ends a pool no longer in pools_: its workers are waited for on a helper thread, which then
// says bye (after the pool's last answer).
inline void Agent::finish(std::shared_ptr<LocalPool> p, std::uint32_t pool, bool terminate,
                          bool say_bye) {
  if (terminate) {
    stop_now(*p);
  } else {
    p->engine->queue().close();
  }
  spawn([this, p = std::move(p), pool, say_bye] {
    try {
      p->engine->join();
    } catch (...) {
      // join() cannot fail here: the queue is closed and this is no callback of the pool.
    }
    if (!say_bye) return;
    reply(pool, Op::stats, p->engine->queue().stats().restarts, {});
    reply(pool, Op::bye, 0, {});
  });
}

}  // namespace procpool::detail::mpi
