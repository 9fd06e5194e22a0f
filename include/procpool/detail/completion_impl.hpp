#pragma once
// What completions and errors do that does not depend on a task's types: inline in a header-only
// build, compiled once by src/procpool.cpp with PROCPOOL_SEPARATE_COMPILATION.

#include <cerrno>
#include <cstdio>

#include <procpool/detail/completion.hpp>
#include <procpool/detail/demangle.hpp>

namespace procpool::detail {

PROCPOOL_DECL void ErrorInfo::raise() const {
  switch (kind) {
    case Kind::remote:
      throw RemoteError(type_name, message);
    case Kind::codec:
      throw CodecError(message);
    case Kind::crashed:
      throw WorkerCrashed(message, pid, signal, code);
    case Kind::timeout:
      throw TaskTimeout(message);
    case Kind::cancelled:
      throw Cancelled(message);
    case Kind::closed:
      throw PoolClosed(message);
    case Kind::system:
      throw SystemError(ec, message);
  }
  throw Error(message);
}

PROCPOOL_DECL std::exception_ptr ErrorInfo::make() const {
  try {
    raise();
  } catch (...) {
    return std::current_exception();
  }
}

PROCPOOL_DECL void ErrorInfo::put_report(Buffer& out) const {
  const std::uint64_t v[4] = {static_cast<std::uint64_t>(kind), static_cast<std::uint64_t>(pid),
                              static_cast<std::uint64_t>(static_cast<std::int64_t>(signal)),
                              static_cast<std::uint64_t>(static_cast<std::int64_t>(code))};
  out.append(v, sizeof v);
  put_str(out, type_name);
  put_str(out, message);
}

PROCPOOL_DECL bool ErrorInfo::from_report(std::span<const std::byte> bytes, ErrorInfo& e) {
  WireCursor c(bytes);
  const std::uint64_t k = c.u64(), p = c.u64(), sig = c.u64(), cd = c.u64();
  e.type_name = c.str();
  e.message = c.str();
  if (c.bad || c.left != 0 || k > static_cast<std::uint64_t>(Kind::system)) return false;
  e.kind = static_cast<Kind>(k);
  e.pid = static_cast<pid_t>(p);
  e.signal = static_cast<int>(static_cast<std::int64_t>(sig));
  e.code = static_cast<int>(static_cast<std::int64_t>(cd));
  // The error code of a system failure names an errno there; the message says what failed.
  if (e.kind == Kind::system) e.ec = std::error_code(EIO, std::generic_category());
  return true;
}

PROCPOOL_DECL ErrorInfo ErrorInfo::from_item(const ItemView& item) {
  WireCursor c(item.bytes);
  ErrorInfo e;
  if (item.status == ItemStatus::remote_error) {
    e.kind = Kind::remote;
    e.type_name = c.str();
    e.message = c.str();
  } else {
    e.kind = Kind::codec;
    e.message = c.str();
  }
  if (c.bad) {
    e.kind = Kind::codec;
    e.message = "malformed error report from a worker";
  }
  return e;
}

PROCPOOL_DECL Buffer JobOutcome::take_frame() {
  if (lent) {
    frame = Buffer();
    frame.append(lent.get(), lent_size);
    lent.reset();
  }
  return std::move(frame);
}

PROCPOOL_DECL bool Completion::wait_until(std::optional<Clock::time_point> deadline) {
  if (done()) return true;
  const auto t0 = Clock::now();
  bool ok = false;
  if (auto p = pool.lock())  // not held while sleeping: the pool may go away meanwhile
    ok = p->help([this] { return done(); }, deadline.value_or(Clock::time_point::max()), this);
  if (!ok) {
    std::unique_lock lock(m_);
    if (deadline) {
      ok = cv_.wait_until(lock, *deadline, [&] { return done(); });
    } else {
      cv_.wait(lock, [&] { return done(); });
      ok = true;
    }
  }
  if (ok)
    if (auto p = pool.lock()) p->waited(Clock::now() - t0);
  return ok;
}

PROCPOOL_DECL void Completion::finish(Callbacks& run) {
  // `done_` was set under the lock, which a waiter holds from its check until it sleeps: it has
  // seen it, or sleeps already and is woken here.
  cv_.notify_all();
  if (run.first) run_callback(run.first);
  for (auto& cb : run.more) run_callback(cb);
}

PROCPOOL_DECL void Completion::run_callback(Callback<void(Completion&)>& cb) {
  // A callback has nobody to report to; the pool must keep working.
  try {
    cb(*this);
  } catch (const std::exception& e) {
    const std::string line =
        prefixed("a result callback threw " + current_exception_type() + ": " + e.what());
    std::fprintf(stderr, "%s\n", line.c_str());
  } catch (...) {
    const std::string line = prefixed("a result callback threw " + current_exception_type());
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

PROCPOOL_DECL Completion::~Completion() = default;

PROCPOOL_DECL void ResultState::resolve() {
  if (resolved_.load(std::memory_order_acquire)) return;
  std::lock_guard lock(resolve_m_);
  if (resolved_.load(std::memory_order_relaxed)) return;
  if (forced_error()) {
    error = *forced_error();
  } else {
    try {
      decode_(*this);
    } catch (const CodecError& e) {
      ErrorInfo info;
      info.kind = ErrorInfo::Kind::codec;
      info.message = bare_message(e);
      error = std::move(info);
    }
  }
  release_outcomes();
  // Only now: a decode that threw anything else leaves it unset, and the next caller tries again.
  resolved_.store(true, std::memory_order_release);
}

}  // namespace procpool::detail
