#pragma once
// Every MPI call procpool makes lives in this file, as POSIX calls live in detail/posix/. One
// thread per process makes them: the thread that initialized MPI (MPI_THREAD_FUNNELED), which is
// the agent loop on ranks other than 0 and the courier thread on rank 0.

// The C API only: MPI's deprecated C++ bindings are not used (and do not build warning-free).
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mpi.h>
#include <string>
#include <vector>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/posix/fd.hpp>
#include <procpool/errors.hpp>

namespace procpool::detail::mpi {

/// MPI, as the one thread that makes its calls sees it: byte messages of any size between ranks,
/// sent without waiting, received by looking.
class Comm {
 public:
  /// Initializes MPI in this thread, then takes a communicator of its own (so the program's own
  /// MPI traffic, if any, never meets procpool's). Throws if MPI cannot give what it needs.
  void init(int* argc, char*** argv) {
    int provided = 0;
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized)
      throw Error("procpool::mpi::init must initialize MPI itself (MPI_Init was already called)");
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      throw Error("MPI_Init_thread failed");
    if (provided < MPI_THREAD_FUNNELED) {
      MPI_Finalize();
      throw Error("the MPI library does not support MPI_THREAD_FUNNELED");
    }
    check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    // Errors come back as codes, so they end the job with a message that says what was lost.
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    live_ = true;
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }

  /// Sends `b` to `dest` without waiting; `b` is kept until the send completes (see progress).
  void send(int dest, Buffer&& b) {
    auto& out = sends_.emplace_back();
    out.bytes = std::move(b);
    // MPI counts in int: a larger message goes in pieces, which MPI delivers in order.
    const std::size_t total = out.bytes.size();
    std::size_t at = 0;
    do {
      const std::size_t n = std::min(total - at, piece_);
      const int tag = at + n < total ? tag_piece : tag_last;
      MPI_Request r;
      check(MPI_Isend(out.bytes.data() + at, static_cast<int>(n), MPI_BYTE, dest, tag, comm_, &r),
            "MPI_Isend", dest);
      out.requests.push_back(r);
      at += n;
    } while (at < total);
  }

  /// Completes the sends that have finished; true if none is left.
  bool progress() {
    while (!sends_.empty()) {
      auto& s = sends_.front();
      int done = 0;
      check(MPI_Testall(static_cast<int>(s.requests.size()), s.requests.data(), &done,
                        MPI_STATUSES_IGNORE),
            "MPI_Testall");
      if (!done) return false;
      sends_.pop_front();
    }
    return true;
  }

  bool sending() const noexcept { return !sends_.empty(); }

  /// True if a message from `source` has arrived (and not been received yet).
  bool waiting(int source) {
    int flag = 0;
    check(MPI_Iprobe(source, MPI_ANY_TAG, comm_, &flag, MPI_STATUS_IGNORE), "MPI_Iprobe", source);
    return flag != 0;
  }

  /// Takes one whole message from `source` (any rank if negative) if one has arrived: its bytes
  /// go to `out`, its sender to `from`. False if none has.
  bool try_receive(int source, Buffer& out, int& from) {
    return try_receive(source, out, from, nullptr);
  }
  /// The same, with large messages received into blocks from `into_source` (see Buffer): a
  /// large task's frame then arrives where the local workers read it.
  bool try_receive(int source, Buffer& out, int& from, BlockSource* into_source) {
    for (;;) {
      int flag = 0;
      MPI_Status st;
      check(MPI_Iprobe(source < 0 ? MPI_ANY_SOURCE : source, MPI_ANY_TAG, comm_, &flag, &st),
            "MPI_Iprobe", source);
      if (!flag) return false;
      int count = 0;
      check(MPI_Get_count(&st, MPI_BYTE, &count), "MPI_Get_count");
      Buffer& into = partial_for(st.MPI_SOURCE);
      if (into.size() == 0) into.use_source(into_source);
      const std::size_t at = into.size();
      into.resize(at + static_cast<std::size_t>(count));
      check(MPI_Recv(into.data() + at, count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, comm_,
                     MPI_STATUS_IGNORE),
            "MPI_Recv", st.MPI_SOURCE);
      if (st.MPI_TAG != tag_last) continue;  // more pieces follow
      out = std::move(into);
      into = Buffer{};
      from = st.MPI_SOURCE;
      return true;
    }
  }

  /// Waits for every send to complete, then shuts MPI down.
  void finalize() {
    while (!progress()) {
    }
    if (!live_) return;
    live_ = false;
    MPI_Comm_free(&comm_);
    MPI_Finalize();
  }

  /// Ends the whole job with `why`: the one way out MPI leaves when a rank is lost.
  [[noreturn]] void abort(const std::string& why) noexcept {
    std::fprintf(stderr, "procpool::mpi: rank %d: %s; ending the MPI job\n", rank_, why.c_str());
    std::fflush(stderr);
    // MPICH's launcher may kill this process before it has read that line (seen losing it one
    // time in three): the abort waits, briefly, for the pipe to be read.
    posix::wait_pipe_drained(STDERR_FILENO, 2000);
    MPI_Abort(MPI_COMM_WORLD, 70);
    std::_Exit(70);
  }

 private:
  static constexpr int tag_piece = 1;
  static constexpr int tag_last = 2;

  struct Send {
    Buffer bytes;
    std::vector<MPI_Request> requests;
  };

  Buffer& partial_for(int source) {
    if (partial_.size() <= static_cast<std::size_t>(source))
      partial_.resize(static_cast<std::size_t>(source) + 1);
    return partial_[static_cast<std::size_t>(source)];
  }

  void check(int rc, const char* what, int peer = -1) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    std::string why =
        std::string(what) + " failed (" + std::string(text, static_cast<std::size_t>(len)) + ")";
    if (peer >= 0)
      why += ": rank " + std::to_string(peer) + " is lost (its machine or process died?)";
    abort(why);
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  bool live_ = false;
  std::size_t piece_ = std::size_t{1} << 30;
  std::deque<Send> sends_;
  std::vector<Buffer> partial_;  // by sender: pieces of a message still arriving
};

}  // namespace procpool::detail::mpi
