// BinaryCodec throughput: bulk arithmetic data (one memcpy) and a vector of small aggregates
// (field by field). The Writer's buffer is reused across iterations, as the pool reuses its
// frame buffer, so the numbers measure encoding rather than allocation.
#include <benchmark/benchmark.h>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <procpool/codec.hpp>

namespace {

struct Small {
  std::int32_t a;
  double b;
  float c;
  std::int16_t d;
};

const std::vector<double>& doubles() {
  static const std::vector<double> v = [] {
    std::vector<double> out((std::size_t{8} << 20) / sizeof(double));  // 8 MiB
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<double>(i) * 0.5;
    return out;
  }();
  return v;
}

const std::vector<Small>& smalls() {
  static const std::vector<Small> v = [] {
    std::vector<Small> out(100'000);
    for (std::size_t i = 0; i < out.size(); ++i) {
      const auto k = static_cast<std::int32_t>(i);
      out[i] = Small{k, k * 1.5, static_cast<float>(k), static_cast<std::int16_t>(k & 0x7fff)};
    }
    return out;
  }();
  return v;
}

template <class T>
void encode(benchmark::State& state, const T& value) {
  procpool::detail::Buffer buf;
  for (auto _ : state) {
    buf.clear();
    procpool::Writer w(buf);
    w.write(value);
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(buf.size()));
}

template <class T>
void decode(benchmark::State& state, const T& value) {
  procpool::detail::Buffer buf;
  procpool::Writer w(buf);
  w.write(value);
  for (auto _ : state) {
    procpool::Reader r(buf.span());
    T out = r.read<T>();
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(buf.size()));
}

template <class T>
void round_trip(benchmark::State& state, const T& value) {
  procpool::detail::Buffer buf;
  for (auto _ : state) {
    buf.clear();
    procpool::Writer w(buf);
    w.write(value);
    procpool::Reader r(buf.span());
    T out = r.read<T>();
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(buf.size()));
}

void BM_EncodeDoubles8MiB(benchmark::State& s) {
  encode(s, doubles());
}
void BM_DecodeDoubles8MiB(benchmark::State& s) {
  decode(s, doubles());
}
void BM_RoundTripDoubles8MiB(benchmark::State& s) {
  round_trip(s, doubles());
}
void BM_EncodeSmall100k(benchmark::State& s) {
  encode(s, smalls());
}
void BM_DecodeSmall100k(benchmark::State& s) {
  decode(s, smalls());
}
void BM_RoundTripSmall100k(benchmark::State& s) {
  round_trip(s, smalls());
}

}  // namespace

BENCHMARK(BM_EncodeDoubles8MiB);
BENCHMARK(BM_DecodeDoubles8MiB);
BENCHMARK(BM_RoundTripDoubles8MiB);
BENCHMARK(BM_EncodeSmall100k);
BENCHMARK(BM_DecodeSmall100k);
BENCHMARK(BM_RoundTripSmall100k);
