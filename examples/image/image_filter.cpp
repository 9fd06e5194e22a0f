// image_filter: a batch image filter on a procpool::Pool. Reads PNG and JPEG files (libpng,
// libjpeg-turbo), applies a Gaussian blur, sharpening, Sobel edge detection or greyscale in
// worker processes, and writes the results.
//
//   image_filter [options] FILE...     many files: one task per file, with imap_unordered
//   image_filter [options] --big FILE  one big image: bands of rows filtered in shared memory
//   image_filter [options]             a demo: generates sample images (and a few broken files),
//                                      filters them, then filters one big synthetic image
//
// What it shows:
//   - fault isolation: a corrupt, truncated or hostile file fails on its own (reported with the
//     decoder's message) while every other file is processed; a worker that dies would fail
//     only its own task (WorkerCrashed), and a per-worker memory limit (Options::memory_limit)
//     keeps a runaway decoder from taking the machine with it;
//   - tasks as plain functions with plain-struct arguments and results (file names and the
//     filter in, status, size and error message out);
//   - zero copy: the big image lives in a procpool::Array<std::uint8_t> in shared memory; tasks
//     get it as an argument (only a handle travels) and write their rows of the result in place.
//
// Exit status: 0 when everything went as expected, 1 when a file failed (or, in the demo,
// anything went otherwise than expected), 2 for a bad command line or a pool that cannot start.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <unistd.h>

#include "../progress.hpp"
#include "filters.hpp"
#include "image.hpp"
#include "samples.hpp"
#include <procpool/procpool.hpp>

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// "process" or "processes"
const char* processes(std::size_t n) {
  return n == 1 ? "process" : "processes";
}

#if defined(PROCPOOL_SANITIZED) || defined(__SANITIZE_ADDRESS__)
// AddressSanitizer reserves terabytes of address space: an RLIMIT_AS would fail every allocation.
constexpr std::size_t kDefaultMemoryLimitMiB = 0;
#else
constexpr std::size_t kDefaultMemoryLimitMiB = 1024;
#endif

// ---- Tasks: plain functions; everything they need arrives as arguments --------------------

struct FileJob {
  std::string input;
  std::string output;
  imgf::FilterSpec spec;
};

struct FileResult {
  std::string input;
  std::string output;
  bool ok = false;
  std::string error;
  int width = 0;
  int height = 0;
  std::uint64_t output_bytes = 0;
  double seconds = 0;
  int pid = 0;
};

// Many-files mode: decode, filter and encode one file. Decoder errors come back as a result
// (ok = false, error = the decoder's message), so the report can name the file.
FileResult filter_file(FileJob job) {
  const auto t0 = Clock::now();
  FileResult r;
  r.input = job.input;
  r.output = job.output;
  r.pid = static_cast<int>(getpid());
  try {
    const imgf::Image in = imgf::read_image(job.input);
    r.width = in.width;
    r.height = in.height;
    const imgf::Image out = imgf::apply_filter(job.spec, in);
    r.output_bytes =
        imgf::write_image(job.output, out, imgf::format_of(job.output).value_or(imgf::Format::png));
    r.ok = true;
  } catch (const std::bad_alloc&) {
    r.error = "out of memory: the worker could not allocate enough (see --memory-limit)";
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  r.seconds = seconds_since(t0);
  return r;
}

struct SampleJob {
  std::string dir;
  int index = 0;
  int size = 0;
};

// Renders and writes one sample image; returns its file name.
std::string make_sample(SampleJob job) {
  const std::string name = imgf::sample_file_name(job.index);
  const imgf::Image img = imgf::render_sample(job.index, job.size, job.size);
  imgf::write_image(job.dir + "/" + name, img, imgf::format_of(name).value_or(imgf::Format::png));
  return name;
}

struct OutputCheck {
  bool ok = false;
  std::string problem;
  double error = 0;        // mean absolute difference from the filter's result, per channel
  double mean_change = 0;  // mean absolute difference from the input, per channel
};

double mean_difference(const imgf::Image& a, const imgf::Image& b) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < a.rgb.size(); ++i)
    sum += static_cast<std::uint64_t>(std::abs(int{a.rgb[i]} - int{b.rgb[i]}));
  return static_cast<double>(sum) / static_cast<double>(a.rgb.size());
}

// Decodes an output again and compares it with the filter applied to its input here: a PNG
// must match exactly, a JPEG within its compression error.
OutputCheck check_output(std::string input, std::string output, imgf::FilterSpec spec) {
  OutputCheck c;
  try {
    const imgf::Image in = imgf::read_image(input);
    const imgf::Image out = imgf::read_image(output);
    if (in.width != out.width || in.height != out.height) {
      c.problem = "its size differs from the input's";
      return c;
    }
    c.error = mean_difference(imgf::apply_filter(spec, in), out);
    c.mean_change = mean_difference(in, out);
    const bool lossless = imgf::format_of(output) == imgf::Format::png;
    c.ok = lossless ? c.error == 0 : c.error < 4;
    if (!c.ok)
      c.problem = "differs from the filter's result by " + std::to_string(c.error) + " levels";
  } catch (const std::exception& e) {
    c.problem = e.what();
  }
  return c;
}

// One-big-image mode. The pixels stay in shared memory: a task receives the two arrays as
// arguments (handles; the worker maps the same memory) and writes its rows of `dst` in place.
// Neighbouring rows are read from `src`, so bands need no exchange of borders.
struct Band {
  procpool::Array<std::uint8_t> src;
  procpool::Array<std::uint8_t> dst;
  int width;
  int height;
  int row_begin;
  int row_end;
  imgf::FilterSpec spec;
};

int filter_band(Band b) {
  imgf::filter_rows(b.spec, b.src.data(), b.dst.data(), b.width, b.height, b.row_begin, b.row_end);
  return static_cast<int>(getpid());
}

struct RenderBand {
  procpool::Array<std::uint8_t> dst;
  int index;
  int width;
  int height;
  int row_begin;
  int row_end;
};

void render_band(RenderBand b) {
  imgf::render_rows(b.index, b.width, b.height, b.row_begin, b.row_end, b.dst.data());
}

// ---- Command line ----------------------------------------------------------------------------

struct Config {
  imgf::FilterSpec spec;
  procpool::Options pool;
  std::size_t memory_limit_mib = kDefaultMemoryLimitMiB;
  std::string out;  // empty: the default for the mode
  std::vector<std::string> files;
  std::string big_file;
  int count = 24;
  int size = 512;
  int big_size = 4096;
};

void usage(std::FILE* out) {
  std::fprintf(
      out,
      "usage: image_filter [options] [FILE...]\n"
      "Filters PNG and JPEG images in a pool of worker processes.\n"
      "  FILE...            one task per file (a directory: its .png, .jpg and .jpeg files);\n"
      "                     results go to --out (default ./filtered) as NAME.FILTER.png / .jpg;\n"
      "                     a file that fails is reported, the rest go on\n"
      "  --big FILE         filter one big image in shared memory, by bands of rows in parallel,\n"
      "                     and compare with one process\n"
      "  (neither)          demo: generate sample images and a few broken files in a new\n"
      "                     directory (or --out), filter them all, then one big synthetic image\n"
      "\n"
      "  --filter NAME      blur, sharpen, edges or gray (default edges)\n"
      "  --sigma S          Gaussian radius of blur and sharpen (default 3 and 1.5)\n"
      "  --amount A         sharpening strength or edge gain (default 1.5 and 1)\n"
      "  --out DIR          where results go\n"
      "  --processes P      worker processes (default: the CPUs this process may use)\n"
      "  --start METHOD     how workers start: fork (default), spawn or forkserver\n"
      "  --memory-limit MIB address space per worker, 0 for none (default %zu)\n"
      "  --count N          demo: number of sample images (default 24)\n"
      "  --size N           demo: their width and height (default 512)\n"
      "  --big-size N       demo: width and height of the big image (default 4096; 0: skip it)\n"
      "  --quick            demo at small sizes: --count 8 --size 128 --big-size 768\n"
      "  --help             this text\n"
      "\n"
      "Exit status: 0 when every file was filtered (demo: when everything went as expected),\n"
      "1 otherwise, 2 for a bad command line or a pool that cannot start with these options.\n",
      kDefaultMemoryLimitMiB);
}

[[noreturn]] void bad_usage(const std::string& msg) {
  std::fprintf(stderr, "image_filter: %s (try --help)\n", msg.c_str());
  std::exit(2);
}

long parse_int(const std::string& flag, const char* text, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi)
    bad_usage(flag + " needs a whole number from " + std::to_string(lo) + " to " +
              std::to_string(hi) + ", not '" + text + "'");
  return v;
}

float parse_float(const std::string& flag, const char* text, float lo, float hi) {
  char* end = nullptr;
  errno = 0;
  const float v = std::strtof(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !(v >= lo && v <= hi))
    bad_usage(flag + " needs a number from " + std::to_string(lo) + " to " + std::to_string(hi) +
              ", not '" + text + "'");
  return v;
}

Config parse_args(int argc, char** argv) {
  Config c;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) bad_usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (a == "--filter") {
      const char* v = value();
      auto f = imgf::parse_filter(v);
      if (!f)
        bad_usage(std::string("--filter must be blur, sharpen, edges or gray, not '") + v + "'");
      c.spec.filter = *f;
    } else if (a == "--sigma") {
      c.spec.sigma = parse_float(a, value(), 0.3f, 50.0f);
    } else if (a == "--amount") {
      c.spec.amount = parse_float(a, value(), 0.01f, 100.0f);
    } else if (a == "--out") {
      c.out = value();
    } else if (a == "--processes") {
      c.pool.processes = static_cast<unsigned>(parse_int(a, value(), 1, 4096));
    } else if (a == "--start") {
      const std::string_view s = value();
      if (s == "fork") {
        c.pool.start = procpool::StartMethod::fork;
      } else if (s == "spawn") {
        c.pool.start = procpool::StartMethod::spawn;
      } else if (s == "forkserver") {
        c.pool.start = procpool::StartMethod::forkserver;
      } else {
        bad_usage("--start must be fork, spawn or forkserver, not '" + std::string(s) + "'");
      }
    } else if (a == "--memory-limit") {
      c.memory_limit_mib = static_cast<std::size_t>(parse_int(a, value(), 0, 1L << 30));
      if (c.memory_limit_mib != 0 && c.memory_limit_mib < 64)
        bad_usage("--memory-limit below 64 MiB leaves a worker no room to start");
    } else if (a == "--count") {
      c.count = static_cast<int>(parse_int(a, value(), 1, 1000));
    } else if (a == "--size") {
      c.size = static_cast<int>(parse_int(a, value(), 16, 8192));
    } else if (a == "--big-size") {
      c.big_size = static_cast<int>(parse_int(a, value(), 0, 10000));
    } else if (a == "--big") {
      c.big_file = value();
    } else if (a == "--quick") {
      c.count = 8;
      c.size = 128;
      c.big_size = 768;
    } else if (a.size() > 1 && a[0] == '-') {
      bad_usage("unknown option '" + a + "'");
    } else {
      c.files.push_back(a);
    }
  }
  c.pool.memory_limit = c.memory_limit_mib << 20;
  return c;
}

// ---- Many files ----------------------------------------------------------------------------

std::string kib(std::uint64_t bytes) {
  char buf[32];
  if (bytes >= (10u << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  else
    std::snprintf(buf, sizeof buf, "%.0f KiB", static_cast<double>(bytes) / 1024);
  return buf;
}

std::string output_name(const fs::path& input, imgf::Filter f) {
  const auto format = imgf::format_of(input.string());
  const std::string ext = format == imgf::Format::jpeg ? input.extension().string() : ".png";
  return input.stem().string() + "." + imgf::filter_name(f) + ext;
}

// The files named, with each directory replaced by the PNG and JPEG files in it.
std::vector<std::string> expand(const std::vector<std::string>& args) {
  std::vector<std::string> files;
  for (const std::string& a : args) {
    std::error_code ec;
    if (!fs::is_directory(a, ec)) {
      files.push_back(a);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(a, ec))
      if (e.is_regular_file(ec) && imgf::format_of(e.path().string()))
        found.push_back(e.path().string());
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

struct BatchOutcome {
  std::vector<FileResult> results;  // in input order
  std::size_t failed = 0;
};

BatchOutcome run_batch(procpool::Pool<>& pool, const std::vector<std::string>& files,
                       const fs::path& out_dir, const imgf::FilterSpec& spec) {
  fs::create_directories(out_dir);
  std::vector<FileJob> jobs;
  std::set<std::string> used;
  for (const std::string& f : files) {
    std::string name = output_name(fs::path(f), spec.filter);
    for (int k = 2; !used.insert(name).second; ++k)  // two inputs with one name: keep both
      name = fs::path(f).stem().string() + "-" + std::to_string(k) + "." +
             imgf::filter_name(spec.filter) + fs::path(name).extension().string();
    jobs.push_back({f, (out_dir / name).string(), spec});
  }

  std::printf("filtering %zu file%s with '%s' in %zu worker %s, one task per file:\n", jobs.size(),
              jobs.size() == 1 ? "" : "s", imgf::filter_name(spec.filter), pool.size(),
              processes(pool.size()));
  std::fflush(stdout);
  const auto t0 = Clock::now();
  std::map<std::string, FileResult> by_input;
  std::vector<std::string> crashes;  // errors of tasks that did not return (a worker died...)
  procpool_examples::Progress progress(stdout, "files", jobs.size());
  std::size_t done = 0;
  // Completion order: a slow file holds nobody up. A task whose worker died rethrows its error
  // (WorkerCrashed) at its turn in the iteration, which then goes on with the other results.
  auto results = pool.imap_unordered(filter_file, jobs);
  for (;;) {
    try {
      std::optional<FileResult> r = results.next();
      if (!r) break;
      by_input[r->input] = std::move(*r);
    } catch (const procpool::Error& e) {
      crashes.push_back(e.what());
    }
    progress.update(++done);
  }
  const double elapsed = seconds_since(t0);
  progress.finish();

  // A task that did not return cannot say which file it had: those are the files without a
  // result. With one such failure the file is known; with several, each gets the list.
  BatchOutcome outcome;
  std::vector<std::size_t> missing;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    auto it = by_input.find(jobs[i].input);
    if (it != by_input.end()) {
      outcome.results.push_back(it->second);
    } else {
      missing.push_back(i);
      FileResult r;
      r.input = jobs[i].input;
      r.output = jobs[i].output;
      outcome.results.push_back(r);
    }
  }
  for (std::size_t m : missing) {
    FileResult& r = outcome.results[m];
    if (missing.size() == 1 && crashes.size() == 1) {
      r.error = crashes.front();
    } else {
      r.error = "one of " + std::to_string(missing.size()) + " tasks that did not return:";
      for (std::size_t k = 0; k < crashes.size(); ++k)
        r.error += (k == 0 ? " " : "; ") + crashes[k];
    }
  }

  std::size_t width = 0;
  for (const FileResult& r : outcome.results)
    width = std::max(width, fs::path(r.input).filename().string().size());
  for (const FileResult& r : outcome.results) {
    const std::string name = fs::path(r.input).filename().string();
    if (r.ok) {
      std::printf("  ok      %-*s %5dx%-5d %4.0f ms  pid %-7d -> %s (%s)\n",
                  static_cast<int>(width), name.c_str(), r.width, r.height, r.seconds * 1000, r.pid,
                  fs::path(r.output).filename().string().c_str(), kib(r.output_bytes).c_str());
    } else {
      ++outcome.failed;
      std::printf("  FAILED  %-*s %s\n", static_cast<int>(width), name.c_str(), r.error.c_str());
    }
  }
  const std::size_t ok = jobs.size() - outcome.failed;
  std::printf("%zu of %zu file%s filtered in %.2f s (%.0f files/s) with %zu %s; %zu failed\n", ok,
              jobs.size(), jobs.size() == 1 ? "" : "s", elapsed,
              static_cast<double>(jobs.size()) / elapsed, pool.size(), processes(pool.size()),
              outcome.failed);
  std::printf("results in %s\n", out_dir.string().c_str());
  return outcome;
}

// ---- One big image ---------------------------------------------------------------------------

// Filters `src` by bands in the pool and in this process alone; true if both agree.
bool run_big(procpool::Pool<>& pool, const procpool::Array<std::uint8_t>& src, int width,
             int height, const imgf::FilterSpec& spec, const fs::path& output) {
  const std::size_t bytes = src.size();
  std::printf("\none big image: %dx%d pixels (%s) in shared memory, filter '%s'\n", width, height,
              kib(bytes).c_str(), imgf::filter_name(spec.filter));

  // Each way runs a few times and the best time counts, which keeps other load on the machine
  // out of the comparison (the first run also pays for mapping the memory).
  constexpr int kRuns = 3;
  auto best_of = [](auto&& run) {
    double best = 1e300;
    for (int i = 0; i < kRuns; ++i) {
      const auto t0 = Clock::now();
      run();
      best = std::min(best, seconds_since(t0));
    }
    return best;
  };

  // One process: the same function over all rows. The output is left uninitialized, as the
  // filter writes every byte (libc++ 14 has no make_unique_for_overwrite).
  const std::unique_ptr<std::uint8_t[]> alone(new std::uint8_t[bytes]);
  const double serial_s =
      best_of([&] { imgf::filter_rows(spec, src.data(), alone.get(), width, height, 0, height); });
  std::printf("  one process:   %.3f s (best of %d)\n", serial_s, kRuns);

  // The pool: a few bands per worker, so a slow band does not leave a worker idle at the end.
  procpool::Array<std::uint8_t> dst(bytes);
  const int nbands = std::clamp(static_cast<int>(4 * pool.size()), 1, height);
  const int rows = (height + nbands - 1) / nbands;
  std::vector<Band> bands;
  for (int r = 0; r < height; r += rows)
    bands.push_back({src, dst, width, height, r, std::min(height, r + rows), spec});
  std::set<int> pids;
  const double parallel_s = best_of([&] {
    for (int pid : pool.map(filter_band, bands)) pids.insert(pid);
  });
  std::printf("  %zu %s:   %.3f s (best of %d): speedup %.2fx\n", pool.size(),
              processes(pool.size()), parallel_s, kRuns, serial_s / parallel_s);
  std::printf(
      "  %zu tasks of %d rows, run by %zu workers; each task got two shared-memory handles\n"
      "  and a row range: no pixel was copied\n",
      bands.size(), rows, pids.size());

  const bool same = std::memcmp(alone.get(), dst.data(), bytes) == 0;
  if (same)
    std::printf("  identical to the one-process result, byte for byte\n");
  else
    std::printf("  WRONG: the bands differ from the one-process result\n");

  const auto t0 = Clock::now();
  imgf::Image out;
  out.width = width;
  out.height = height;
  out.rgb.assign(dst.begin(), dst.end());
  const std::size_t written = imgf::write_image(
      output.string(), out, imgf::format_of(output.string()).value_or(imgf::Format::png));
  std::printf("  written to %s (%s, %.2f s)\n", output.string().c_str(), kib(written).c_str(),
              seconds_since(t0));
  return same;
}

int big_from_file(procpool::Pool<>& pool, const Config& cfg) {
  imgf::Image img;
  try {
    img = imgf::read_image(cfg.big_file);
  } catch (const std::exception& e) {
    std::printf("FAILED %s: %s\n", cfg.big_file.c_str(), e.what());
    return 1;
  }
  procpool::Array<std::uint8_t> src(img.rgb);
  const fs::path out_dir = cfg.out.empty() ? fs::path("filtered") : fs::path(cfg.out);
  fs::create_directories(out_dir);
  return run_big(pool, src, img.width, img.height, cfg.spec,
                 out_dir / output_name(fs::path(cfg.big_file), cfg.spec.filter))
             ? 0
             : 1;
}

// ---- The demo --------------------------------------------------------------------------------

fs::path make_demo_dir(const Config& cfg) {
  if (!cfg.out.empty()) {
    fs::create_directories(cfg.out);
    return fs::path(cfg.out);
  }
  std::string tmpl = (fs::temp_directory_path() / "image_filter-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr)
    throw std::runtime_error("cannot create a directory from " + tmpl + ": " +
                             std::strerror(errno));
  return fs::path(tmpl);
}

int demo(procpool::Pool<>& pool, const Config& cfg) {
  const fs::path dir = make_demo_dir(cfg);
  const fs::path samples = dir / "samples";
  fs::create_directories(samples);
  std::printf("no input files given: a demo in %s\n", dir.string().c_str());

  // Sample images, rendered and encoded in the pool too (map: results in input order).
  auto t0 = Clock::now();
  std::vector<SampleJob> sample_jobs;
  for (int i = 0; i < cfg.count; ++i) sample_jobs.push_back({samples.string(), i, cfg.size});
  std::vector<std::string> names = pool.map(make_sample, sample_jobs);
  const std::set<std::string> good(names.begin(), names.end());
  // The broken files are cut from the first PNG and JPEG samples.
  std::vector<std::uint8_t> png, jpeg;
  for (const std::string& n : names) {
    const auto f = imgf::format_of(n);
    if (f == imgf::Format::png && png.empty()) png = imgf::read_file((samples / n).string());
    if (f == imgf::Format::jpeg && jpeg.empty()) jpeg = imgf::read_file((samples / n).string());
  }
  if (jpeg.empty())  // a one-sample demo has no JPEG: make one
    jpeg = imgf::encode_image(imgf::render_sample(1, cfg.size, cfg.size), imgf::Format::jpeg);
  const std::vector<std::string> bad = imgf::write_bad_files(samples.string(), png, jpeg);
  std::printf("generated %d sample images (%dx%d, PNG and JPEG) in %.2f s, and %zu broken files:",
              cfg.count, cfg.size, cfg.size, seconds_since(t0), bad.size());
  for (const std::string& b : bad) std::printf(" %s", b.c_str());
  std::printf("\n\n");

  // All of them, the broken ones mixed in.
  std::vector<std::string> files;
  for (const std::string& n : names) files.push_back((samples / n).string());
  for (const std::string& n : bad) files.push_back((samples / n).string());
  std::sort(files.begin(), files.end());
  const fs::path out_dir = dir / "filtered";
  const BatchOutcome batch = run_batch(pool, files, out_dir, cfg.spec);

  bool as_expected = true;
  std::vector<std::string> surprises;
  std::vector<std::string> inputs, outputs;
  for (const FileResult& r : batch.results) {
    const std::string name = fs::path(r.input).filename().string();
    const bool should_fail = !good.count(name);
    if (r.ok == should_fail) surprises.push_back(name + (r.ok ? " succeeded" : " failed"));
    if (r.ok) {
      inputs.push_back(r.input);
      outputs.push_back(r.output);
    }
  }
  if (surprises.empty()) {
    std::printf("as expected: the %zu planted bad files failed, and all %zu others were filtered\n",
                bad.size(), good.size());
  } else {
    as_expected = false;
    std::printf("UNEXPECTED:");
    for (const std::string& s : surprises) std::printf(" %s;", s.c_str());
    std::printf("\n");
  }

  // Read every output back, in the pool again (starmap: each tuple becomes the arguments).
  std::vector<std::tuple<std::string, std::string, imgf::FilterSpec>> triples;
  for (std::size_t i = 0; i < inputs.size(); ++i)
    triples.emplace_back(inputs[i], outputs[i], cfg.spec);
  const std::vector<OutputCheck> checks = pool.starmap(check_output, triples);
  double change = 0, jpeg_error = 0;
  std::size_t bad_outputs = 0;
  for (std::size_t i = 0; i < checks.size(); ++i) {
    change += checks[i].mean_change;
    jpeg_error = std::max(jpeg_error, checks[i].error);
    if (!checks[i].ok) {
      ++bad_outputs;
      std::printf("WRONG: %s: %s\n", outputs[i].c_str(), checks[i].problem.c_str());
    }
  }
  if (bad_outputs == 0 && !checks.empty()) {
    std::printf(
        "verified: all %zu outputs decode to the filter's result (PNG exactly; JPEG off by at "
        "most\n"
        "  %.1f levels on average, its compression error); they differ from their inputs by\n"
        "  %.1f levels on average\n",
        checks.size(), jpeg_error, change / static_cast<double>(checks.size()));
  } else {
    as_expected = false;
  }

  // One big synthetic image, rendered straight into shared memory by bands in the pool.
  if (cfg.big_size > 0) {
    const int side = cfg.big_size;
    t0 = Clock::now();
    procpool::Array<std::uint8_t> src(static_cast<std::size_t>(side) *
                                      static_cast<std::size_t>(side) * 3);
    std::vector<RenderBand> render;
    const int rows = std::max(1, side / static_cast<int>(4 * pool.size()));
    for (int r = 0; r < side; r += rows)
      render.push_back({src, 0, side, side, r, std::min(side, r + rows)});
    pool.map(render_band, render);
    std::printf("\nrendered a %dx%d synthetic image into shared memory in %.2f s\n", side, side,
                seconds_since(t0));
    const fs::path out = out_dir / ("big-" + std::to_string(side) + "." +
                                    imgf::filter_name(cfg.spec.filter) + ".png");
    if (!run_big(pool, src, side, side, cfg.spec, out)) as_expected = false;
  }

  std::printf("\nlook at the results: %s (inputs in %s)\n", out_dir.string().c_str(),
              samples.string().c_str());
  std::printf("%s\n", as_expected ? "image_filter: everything went as expected"
                                  : "image_filter: something did not go as expected");
  return as_expected ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  procpool::init(argc, argv);  // first thing: a spawn or forkserver worker starts its work here
  const Config cfg = parse_args(argc, argv);
  try {
    std::optional<procpool::Pool<>> pool;
    try {
      pool.emplace(cfg.pool);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "image_filter: cannot start the pool: %s\n", e.what());
      return 2;
    }
    if (cfg.files.empty() && cfg.big_file.empty()) return demo(*pool, cfg);
    int status = 0;
    if (!cfg.files.empty()) {
      const fs::path out_dir = cfg.out.empty() ? fs::path("filtered") : fs::path(cfg.out);
      const std::vector<std::string> files = expand(cfg.files);
      if (files.empty()) {
        std::fprintf(stderr, "image_filter: no PNG or JPEG files in the directories given\n");
        return 1;
      }
      if (run_batch(*pool, files, out_dir, cfg.spec).failed > 0) status = 1;
    }
    if (!cfg.big_file.empty() && big_from_file(*pool, cfg) != 0) status = 1;
    return status;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "image_filter: %s\n", e.what());
    return 1;
  }
}
