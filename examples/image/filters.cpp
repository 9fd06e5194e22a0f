// Gaussian blur, unsharp-mask sharpening, Sobel edge detection and greyscale, each computed for
// a range of rows (see filters.hpp). Borders repeat the edge pixels.
#include "filters.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace imgf {

namespace {

std::uint8_t to_byte(float v) {
  return static_cast<std::uint8_t>(std::clamp(v + 0.5f, 0.0f, 255.0f));
}

int clamp_index(int i, int n) {
  return std::clamp(i, 0, n - 1);
}

std::size_t row_bytes(int width) {
  return static_cast<std::size_t>(width) * 3;
}

// Rec. 601 luma, in [0, 255].
float luma(const std::uint8_t* px) {
  return 0.299f * static_cast<float>(px[0]) + 0.587f * static_cast<float>(px[1]) +
         0.114f * static_cast<float>(px[2]);
}

// Separable Gaussian blur of rows [row_begin, row_end): calls emit(y, x0, x1, values) with the
// blurred pixels [x0, x1) of row y as 3 * (x1 - x0) floats. The image is done in tiles of
// columns, so the working set stays in a core's cache. Within a tile, horizontally blurred
// source rows live in a ring of 2R + 1 rows, each computed once; the vertical pass sums the
// ring. Every value is summed in the same order whatever the band, so bands reproduce the
// whole-image result exactly.
template <class Emit>
void gaussian_rows(const std::uint8_t* src, int width, int height, int row_begin, int row_end,
                   float sigma, Emit emit) {
  constexpr int kTile = 256;  // pixels: 2R + 1 rows of 3 KiB floats each stay in L2
  const int radius = std::max(1, static_cast<int>(std::ceil(3.0f * sigma)));
  const int taps = 2 * radius + 1;
  std::vector<float> kernel(static_cast<std::size_t>(taps));
  float total = 0;
  for (int j = 0; j < taps; ++j) {
    const float d = static_cast<float>(j - radius);
    kernel[static_cast<std::size_t>(j)] = std::exp(-d * d / (2 * sigma * sigma));
    total += kernel[static_cast<std::size_t>(j)];
  }
  for (float& k : kernel) k /= total;

  const std::size_t stride = row_bytes(width);
  const std::size_t most = row_bytes(std::min(width, kTile));
  std::vector<float> padded(most + 6 * static_cast<std::size_t>(radius));
  std::vector<float> ring(static_cast<std::size_t>(taps) * most);
  std::vector<int> ring_row(static_cast<std::size_t>(taps));  // the source row in each slot
  std::vector<float> acc(most);

  for (int x0 = 0; x0 < width; x0 += kTile) {
    const int x1 = std::min(width, x0 + kTile);
    const std::size_t n = row_bytes(x1 - x0);
    std::fill(ring_row.begin(), ring_row.end(), -1);

    // Source row y, pixels [x0, x1), blurred horizontally; from the ring.
    auto hrow = [&](int y) -> const float* {
      const std::size_t slot = static_cast<std::size_t>(y % taps);
      float* out = ring.data() + slot * n;
      if (ring_row[slot] == y) return out;
      ring_row[slot] = y;
      const std::uint8_t* row = src + static_cast<std::size_t>(y) * stride;
      for (int x = x0 - radius; x < x1 + radius; ++x) {
        const std::uint8_t* px = row + static_cast<std::size_t>(clamp_index(x, width)) * 3;
        float* p = padded.data() + static_cast<std::size_t>(x - x0 + radius) * 3;
        p[0] = px[0];
        p[1] = px[1];
        p[2] = px[2];
      }
      std::fill(out, out + n, 0.0f);
      for (int j = 0; j < taps; ++j) {
        const float k = kernel[static_cast<std::size_t>(j)];
        const float* p = padded.data() + static_cast<std::size_t>(j) * 3;
        for (std::size_t i = 0; i < n; ++i) out[i] += k * p[i];
      }
      return out;
    };

    for (int y = row_begin; y < row_end; ++y) {
      std::fill(acc.begin(), acc.begin() + static_cast<std::ptrdiff_t>(n), 0.0f);
      for (int j = 0; j < taps; ++j) {
        const float k = kernel[static_cast<std::size_t>(j)];
        const float* r = hrow(clamp_index(y + j - radius, height));
        for (std::size_t i = 0; i < n; ++i) acc[i] += k * r[i];
      }
      emit(y, x0, x1, acc.data());
    }
  }
}

void blur(const FilterSpec& spec, const std::uint8_t* src, std::uint8_t* dst, int width, int height,
          int row_begin, int row_end) {
  const std::size_t stride = row_bytes(width);
  gaussian_rows(src, width, height, row_begin, row_end, spec.sigma,
                [&](int y, int x0, int x1, const float* b) {
                  std::uint8_t* out = dst + static_cast<std::size_t>(y) * stride + row_bytes(x0);
                  const std::size_t n = row_bytes(x1 - x0);
                  for (std::size_t i = 0; i < n; ++i) out[i] = to_byte(b[i]);
                });
}

// Unsharp mask: the source plus `amount` times its difference from its blur.
void sharpen(const FilterSpec& spec, const std::uint8_t* src, std::uint8_t* dst, int width,
             int height, int row_begin, int row_end) {
  const std::size_t stride = row_bytes(width);
  gaussian_rows(src, width, height, row_begin, row_end, spec.sigma,
                [&](int y, int x0, int x1, const float* b) {
                  const std::size_t at = static_cast<std::size_t>(y) * stride + row_bytes(x0);
                  const std::uint8_t* in = src + at;
                  std::uint8_t* out = dst + at;
                  const std::size_t n = row_bytes(x1 - x0);
                  for (std::size_t i = 0; i < n; ++i) {
                    const float v = static_cast<float>(in[i]);
                    out[i] = to_byte(v + spec.amount * (v - b[i]));
                  }
                });
}

// Sobel gradient magnitude of the luma, times `amount`, white edges on black.
void edges(const FilterSpec& spec, const std::uint8_t* src, std::uint8_t* dst, int width,
           int height, int row_begin, int row_end) {
  const std::size_t n = row_bytes(width);
  const std::size_t w = static_cast<std::size_t>(width);
  std::vector<float> rows(3 * (w + 2));  // luma of rows y-1, y, y+1, one pixel of border each
  auto load = [&](float* out, int y) {
    const std::uint8_t* row = src + static_cast<std::size_t>(clamp_index(y, height)) * n;
    for (int x = -1; x <= width; ++x)
      out[x + 1] = luma(row + static_cast<std::size_t>(clamp_index(x, width)) * 3);
  };
  for (int y = row_begin; y < row_end; ++y) {
    float* above = rows.data();
    float* mid = above + (w + 2);
    float* below = mid + (w + 2);
    load(above, y - 1);
    load(mid, y);
    load(below, y + 1);
    std::uint8_t* out = dst + static_cast<std::size_t>(y) * n;
    for (std::size_t x = 1; x <= w; ++x) {
      const float gx = (above[x + 1] + 2 * mid[x + 1] + below[x + 1]) -
                       (above[x - 1] + 2 * mid[x - 1] + below[x - 1]);
      const float gy = (below[x - 1] + 2 * below[x] + below[x + 1]) -
                       (above[x - 1] + 2 * above[x] + above[x + 1]);
      const std::uint8_t v = to_byte(spec.amount * std::sqrt(gx * gx + gy * gy));
      out[(x - 1) * 3] = out[(x - 1) * 3 + 1] = out[(x - 1) * 3 + 2] = v;
    }
  }
}

void gray(const std::uint8_t* src, std::uint8_t* dst, int width, int row_begin, int row_end) {
  const std::size_t n = row_bytes(width);
  for (int y = row_begin; y < row_end; ++y) {
    const std::uint8_t* in = src + static_cast<std::size_t>(y) * n;
    std::uint8_t* out = dst + static_cast<std::size_t>(y) * n;
    for (std::size_t i = 0; i < n; i += 3) out[i] = out[i + 1] = out[i + 2] = to_byte(luma(in + i));
  }
}

}  // namespace

std::optional<Filter> parse_filter(std::string_view name) {
  if (name == "blur" || name == "gaussian") return Filter::blur;
  if (name == "sharpen") return Filter::sharpen;
  if (name == "edges" || name == "sobel") return Filter::edges;
  if (name == "gray" || name == "grey" || name == "grayscale" || name == "greyscale")
    return Filter::gray;
  return std::nullopt;
}

const char* filter_name(Filter f) {
  switch (f) {
    case Filter::blur:
      return "blur";
    case Filter::sharpen:
      return "sharpen";
    case Filter::edges:
      return "edges";
    case Filter::gray:
      return "gray";
  }
  return "?";
}

FilterSpec resolved(FilterSpec spec) {
  if (spec.sigma <= 0) spec.sigma = spec.filter == Filter::sharpen ? 1.5f : 3.0f;
  if (spec.amount <= 0) spec.amount = spec.filter == Filter::sharpen ? 1.5f : 1.0f;
  return spec;
}

void filter_rows(const FilterSpec& given, const std::uint8_t* src, std::uint8_t* dst, int width,
                 int height, int row_begin, int row_end) {
  const FilterSpec spec = resolved(given);
  row_begin = std::clamp(row_begin, 0, height);
  row_end = std::clamp(row_end, row_begin, height);
  switch (spec.filter) {
    case Filter::blur:
      return blur(spec, src, dst, width, height, row_begin, row_end);
    case Filter::sharpen:
      return sharpen(spec, src, dst, width, height, row_begin, row_end);
    case Filter::edges:
      return edges(spec, src, dst, width, height, row_begin, row_end);
    case Filter::gray:
      return gray(src, dst, width, row_begin, row_end);
  }
}

Image apply_filter(const FilterSpec& spec, const Image& src) {
  Image out;
  out.width = src.width;
  out.height = src.height;
  out.rgb.resize(src.rgb.size());
  filter_rows(spec, src.rgb.data(), out.rgb.data(), src.width, src.height, 0, src.height);
  return out;
}

}  // namespace imgf
