// A progress bar redrawn in place on a terminal; on anything else (a pipe, a log, CTest) a plain
// line at each quarter, so logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace procpool_examples {

class Progress {
 public:
  using Clock = std::chrono::steady_clock;

  Progress(std::FILE* out, const char* what, std::uint64_t total)
      : out_(out), what_(what), total_(total), tty_(isatty(fileno(out)) == 1) {}

  void update(std::uint64_t done) {
    const double t = std::chrono::duration<double>(Clock::now() - t0_).count();
    if (tty_) {
      if (done != total_ && t - last_draw_ < 0.1) return;
      last_draw_ = t;
      constexpr std::uint64_t width = 30;
      const std::uint64_t filled = total_ == 0 ? width : width * done / total_;
      std::string bar(static_cast<std::size_t>(filled), '#');
      bar.resize(width, '.');
      const double rate = t > 0 ? static_cast<double>(done) / t : 0;
      std::fprintf(out_, "\r[%s] %llu/%llu %s  %.1f/s  ETA %s\033[K", bar.c_str(),
                   static_cast<unsigned long long>(done), static_cast<unsigned long long>(total_),
                   what_, rate, eta(done, t).c_str());
    } else {
      const std::uint64_t quarter = total_ == 0 ? 4 : 4 * done / total_;
      if (quarter <= printed_) return;
      printed_ = quarter;
      // The share actually done: with 5 files, 2 done is 40%, not the quarter just passed.
      const std::uint64_t percent = total_ == 0 ? 100 : 100 * done / total_;
      std::fprintf(out_, "progress: %llu/%llu %s (%llu%%), %.2f s, ETA %s\n",
                   static_cast<unsigned long long>(done), static_cast<unsigned long long>(total_),
                   what_, static_cast<unsigned long long>(percent), t, eta(done, t).c_str());
    }
    std::fflush(out_);
  }

  /// Clears the bar so the next line starts clean.
  void finish() {
    if (!tty_) return;
    std::fprintf(out_, "\r\033[K");
    std::fflush(out_);
  }

 private:
  std::string eta(std::uint64_t done, double t) const {
    if (done == 0) return "?";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f s",
                  t * static_cast<double>(total_ - done) / static_cast<double>(done));
    return buf;
  }

  std::FILE* out_;
  const char* what_;
  std::uint64_t total_;
  bool tty_;
  Clock::time_point t0_ = Clock::now();
  double last_draw_ = -1;
  std::uint64_t printed_ = 0;
};

}  // namespace procpool_examples
