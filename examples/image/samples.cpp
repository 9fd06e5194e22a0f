// Synthetic sample images (see samples.hpp). Everything is computed from normalized coordinates,
// so a sample looks the same at 128 or 4096 pixels, and from a seed, so runs are reproducible.
#include "samples.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <string_view>

namespace imgf {

namespace {

constexpr float kPi = 3.14159265358979f;

struct Rgb {
  float r, g, b;
};

Rgb mix(Rgb a, Rgb b, float t) {
  return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}

// Hue in turns (0..1), saturation and value in 0..1; result in 0..255.
Rgb hsv(float h, float s, float v) {
  h = (h - std::floor(h)) * 6;
  const int i = static_cast<int>(h) % 6;
  const float f = h - std::floor(h);
  const float p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  Rgb c{};
  switch (i) {
    case 0:
      c = {v, t, p};
      break;
    case 1:
      c = {q, v, p};
      break;
    case 2:
      c = {p, v, t};
      break;
    case 3:
      c = {p, q, v};
      break;
    case 4:
      c = {t, p, v};
      break;
    default:
      c = {v, p, q};
      break;
  }
  return {c.r * 255, c.g * 255, c.b * 255};
}

// A deterministic stream of numbers in [0, 1) (splitmix64).
class Random {
 public:
  explicit Random(std::uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  float next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<float>(z >> 40) / static_cast<float>(1ull << 24);
  }
  float in(float lo, float hi) { return lo + (hi - lo) * next(); }

 private:
  std::uint64_t s_;
};

// ---- A 5x7 bitmap font for upper case, digits and a little punctuation ----

struct Glyph {
  char c;
  std::array<std::string_view, 7> rows;
};
// clang-format off
constexpr Glyph kFont[] = {
  {'A', {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
  {'B', {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}},
  {'C', {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}},
  {'D', {"####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."}},
  {'E', {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
  {'F', {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}},
  {'G', {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}},
  {'H', {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
  {'I', {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
  {'J', {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
  {'K', {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}},
  {'L', {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}},
  {'M', {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
  {'N', {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}},
  {'O', {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
  {'P', {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}},
  {'Q', {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}},
  {'R', {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}},
  {'S', {".####", "#....", "#....", ".###.", "....#", "....#", "####."}},
  {'T', {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
  {'U', {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
  {'V', {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
  {'W', {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}},
  {'X', {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}},
  {'Y', {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}},
  {'Z', {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}},
  {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
  {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
  {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
  {'3', {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}},
  {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
  {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
  {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
  {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
  {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
  {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
  {'-', {".....", ".....", ".....", "#####", ".....", ".....", "....."}},
  {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
  {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
  {',', {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}},
  {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
  {'!', {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."}},
  {'/', {"....#", "....#", "...#.", "..#..", ".#...", "#....", "#...."}},
  {'_', {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
};
// clang-format on

bool glyph_pixel(char c, int col, int row) {
  for (const Glyph& g : kFont)
    if (g.c == c)
      return g.rows[static_cast<std::size_t>(row)][static_cast<std::size_t>(col)] == '#';
  return false;  // space and anything unknown
}

// A line of text: `scale` pixels per font pixel, each character 6 font pixels wide.
struct Text {
  std::string_view s;
  float x, y;  // top left, in pixels
  float scale;
  Rgb color;

  float width() const { return static_cast<float>(s.size()) * 6 * scale - scale; }
  bool covers(float px, float py) const {
    const float fx = (px - x) / scale, fy = (py - y) / scale;
    if (fx < 0 || fy < 0 || fy >= 7) return false;
    const auto cell = static_cast<std::size_t>(fx / 6);
    const int col = static_cast<int>(fx) - static_cast<int>(cell) * 6;
    if (cell >= s.size() || col >= 5) return false;
    return glyph_pixel(s[cell], col, static_cast<int>(fy));
  }
};

Text centered(std::string_view s, float cy, float scale, Rgb color, int width) {
  Text t{s, 0, cy - 3.5f * scale, scale, color};
  t.x = std::floor((static_cast<float>(width) - t.width()) / 2);
  return t;
}

struct Circle {
  float cx, cy, r;  // normalized
  Rgb color;
  float alpha;
};

struct Rect {
  float x0, y0, x1, y1;  // normalized
  Rgb color;
};

// Escape-time fractals: a smooth iteration count in [0, 1], 1 for points inside.
float escape(float zr, float zi, float cr, float ci, int max_iter) {
  for (int i = 0; i < max_iter; ++i) {
    const float r2 = zr * zr, i2 = zi * zi;
    if (r2 + i2 > 64) {
      const float smooth = static_cast<float>(i) + 1 - std::log2(std::log2(r2 + i2) / 2);
      return std::clamp(smooth / static_cast<float>(max_iter), 0.0f, 0.999f);
    }
    zi = 2 * zr * zi + ci;
    zr = r2 - i2 + cr;
  }
  return 1;
}

// Everything a sample needs, computed once per call of render_rows.
struct Scene {
  int pattern = 0;
  int variant = 0;
  int width = 0, height = 0;
  float hue = 0;  // shifts the colours of a variant
  std::vector<Circle> circles;
  std::vector<Rect> rects;
  std::vector<Text> texts;
  float angle = 0;
  float cx = 0.5f, cy = 0.5f;

  Scene(int index, int w, int h)
      : pattern(index % kPatterns), variant(index / kPatterns), width(w), height(h) {
    Random rnd(static_cast<std::uint64_t>(index) + 1);
    hue = rnd.next();
    angle = rnd.in(0.2f, 1.2f);
    cx = rnd.in(0.35f, 0.65f);
    cy = rnd.in(0.35f, 0.65f);
    const float s = static_cast<float>(std::min(w, h));
    switch (pattern) {
      case 0: {  // shapes: sun, balloons, houses and a title over a landscape
        circles.push_back({0.8f, 0.17f, 0.08f, {250, 205, 60}, 1});
        for (int i = 0; i < 5; ++i)
          circles.push_back({rnd.in(0.12f, 0.88f), rnd.in(0.3f, 0.6f), rnd.in(0.05f, 0.1f),
                             hsv(hue + rnd.next(), 0.75f, rnd.in(0.45f, 0.95f)), 1});
        for (int i = 0; i < 3; ++i) {
          const float x = 0.08f + 0.3f * static_cast<float>(i) + rnd.in(0, 0.08f);
          const float top = rnd.in(0.55f, 0.66f);
          rects.push_back(
              {x, top, x + rnd.in(0.12f, 0.18f), 0.8f, hsv(hue + rnd.next(), 0.5f, 0.7f)});
        }
        texts.push_back(centered("PROCPOOL", 0.9f * static_cast<float>(h),
                                 std::max(1.0f, std::floor(s / 90)), {255, 255, 255}, w));
        break;
      }
      case 5: {  // text on paper
        static constexpr std::string_view lines[] = {
            "THE QUICK BROWN FOX", "JUMPS OVER THE LAZY DOG", "0123456789 +-/.,:!",
            "IMAP_UNORDERED",      "ONE TASK PER FILE",       "ZERO-COPY BANDS"};
        const float scale = std::max(1.0f, std::floor(s / 170));
        texts.push_back(
            centered("PROCPOOL", 0.12f * static_cast<float>(h), 2 * scale, {200, 40, 40}, w));
        for (std::size_t i = 0; i < std::size(lines); ++i)
          texts.push_back({lines[i],
                           0.06f * static_cast<float>(w),
                           (0.26f + 0.12f * static_cast<float>(i)) * static_cast<float>(h),
                           scale,
                           {30, 30, 45}});
        break;
      }
      case 8: {  // bubbles
        for (int i = 0; i < 28; ++i)
          circles.push_back({rnd.next(), rnd.next(), rnd.in(0.03f, 0.14f),
                             hsv(hue + rnd.in(0, 0.5f), rnd.in(0.5f, 1), rnd.in(0.6f, 1)), 0.65f});
        break;
      }
      default:
        break;
    }
  }

  Rgb at(int x, int y) const {
    const float px = static_cast<float>(x) + 0.5f, py = static_cast<float>(y) + 0.5f;
    const float u = px / static_cast<float>(width), v = py / static_cast<float>(height);
    switch (pattern) {
      case 0:
        return shapes(px, py, u, v);
      case 1: {  // rings: a zone plate, rings tighter outwards
        const float du = u - cx, dv = v - cy;
        const float t =
            0.5f + 0.5f * std::sin(90 * (du * du + dv * dv) * (1 + static_cast<float>(variant)));
        return mix(hsv(hue, 0.8f, 0.25f), hsv(hue + 0.15f, 0.4f, 1), t);
      }
      case 2: {  // Mandelbrot set
        const bool zoom = variant % 2 == 1;
        const float span = zoom ? 0.06f : 2.8f;
        const float cr = (zoom ? -0.7445f : -0.65f) + (u - 0.5f) * span;
        const float ci = (zoom ? 0.1245f : 0) + (v - 0.5f) * span;
        const float t = escape(0, 0, cr, ci, 96);
        return t >= 1 ? Rgb{10, 10, 20} : hsv(hue + 3 * t, 0.85f, std::min(1.0f, 5 * t + 0.15f));
      }
      case 3: {  // plasma
        const float t = std::sin(11 * u + 7 * hue) + std::sin(9 * v) + std::sin(8 * (u + v)) +
                        std::sin(14 * std::sqrt((u - cx) * (u - cx) + (v - cy) * (v - cy)));
        return hsv(hue + t / 8, 0.7f, 0.55f + 0.1f * t);
      }
      case 4: {  // rotated checkerboard under a soft light
        const float ca = std::cos(angle), sa = std::sin(angle);
        const float ru = (u - 0.5f) * ca - (v - 0.5f) * sa, rv = (u - 0.5f) * sa + (v - 0.5f) * ca;
        const bool dark =
            (static_cast<int>(std::floor(ru * 8)) + static_cast<int>(std::floor(rv * 8))) % 2 != 0;
        const Rgb c = dark ? hsv(hue, 0.6f, 0.35f) : hsv(hue + 0.5f, 0.15f, 0.95f);
        return mix(c, {255, 255, 255}, 0.25f * std::max(0.0f, 1 - 2 * std::hypot(u - cx, v - cy)));
      }
      case 5: {  // text on paper
        for (const Text& t : texts)
          if (t.covers(px, py)) return t.color;
        return mix({250, 246, 232}, {225, 215, 190}, v);
      }
      case 6: {  // diagonal stripes
        const float d = (u * std::cos(angle) + v * std::sin(angle)) * 10;
        return hsv(hue + std::floor(d) / 10, 0.7f, d - std::floor(d) < 0.8f ? 0.9f : 0.2f);
      }
      case 7: {  // spiral
        const float du = u - cx, dv = v - cy;
        const float r = std::sqrt(du * du + dv * dv), a = std::atan2(dv, du);
        const float t = 0.5f + 0.5f * std::sin(5 * a + 40 * r);
        return mix(hsv(hue + r, 0.9f, 0.2f), hsv(hue + r + 0.3f, 0.6f, 1), t);
      }
      case 8: {  // bubbles
        Rgb c = mix({15, 20, 45}, {40, 30, 70}, v);
        for (const Circle& k : circles) {
          const float d = std::hypot(u - k.cx, v - k.cy);
          if (d < k.r) c = mix(c, mix(k.color, {255, 255, 255}, 0.4f * (1 - d / k.r)), k.alpha);
        }
        return c;
      }
      case 9:
        return sunset(u, v);
      case 10: {  // graph paper with two curves
        const float fine = 1.0f / 16, line = 1.5f / static_cast<float>(width);
        const float fu = std::fmod(u, fine), fv = std::fmod(v, fine);
        Rgb c{252, 252, 248};
        if (fu < line || fv < line) c = {170, 200, 230};
        if (std::fmod(u, 4 * fine) < 2 * line || std::fmod(v, 4 * fine) < 2 * line)
          c = {90, 140, 200};
        const float curve = 0.5f - 0.3f * std::sin(2 * kPi * (u * 2 + hue));
        if (std::fabs(v - curve) < 0.008f) c = {210, 40, 40};
        const float parabola = 0.9f - 3 * (u - cx) * (u - cx);
        if (std::fabs(v - parabola) < 0.006f) c = {40, 120, 40};
        return c;
      }
      default: {  // Julia set
        const float t = escape((u - 0.5f) * 3.2f, (v - 0.5f) * 3.2f, -0.8f, 0.156f, 96);
        return t >= 1 ? Rgb{250, 250, 240} : hsv(hue + 2 * t, 0.9f, std::min(1.0f, 6 * t + 0.05f));
      }
    }
  }

  Rgb shapes(float px, float py, float u, float v) const {
    for (const Text& t : texts)
      if (t.covers(px, py)) return t.color;
    Rgb c = v < 0.8f ? mix({70, 130, 210}, {225, 235, 250}, v / 0.8f)
                     : mix({95, 165, 75}, {50, 110, 45}, (v - 0.8f) / 0.2f);
    for (const Circle& k : circles)
      if (std::hypot(u - k.cx, v - k.cy) < k.r) c = k.color;
    for (const Rect& r : rects) {
      if (u >= r.x0 && u < r.x1 && v >= r.y0 && v < r.y1) {
        c = r.color;
        const float wu = (u - r.x0) / (r.x1 - r.x0), wv = (v - r.y0) / (r.y1 - r.y0);
        if (wv > 0.2f && wv < 0.45f && (std::fabs(wu - 0.3f) < 0.1f || std::fabs(wu - 0.7f) < 0.1f))
          c = {250, 240, 170};                                            // windows
        if (wv > 0.6f && std::fabs(wu - 0.5f) < 0.12f) c = {90, 55, 35};  // door
      }
      // roof
      const float mid = (r.x0 + r.x1) / 2, half = (r.x1 - r.x0) * 0.6f;
      if (v < r.y0 && v > r.y0 - 0.08f && std::fabs(u - mid) < half * (1 - (r.y0 - v) / 0.08f))
        c = {170, 60, 50};
    }
    return c;
  }

  Rgb sunset(float u, float v) const {
    const float horizon = 0.62f;
    if (v < horizon) {
      Rgb c = mix({45, 25, 90}, {250, 130, 60}, v / horizon);
      if (std::hypot(u - 0.5f, v - (horizon - 0.04f)) < 0.12f) c = {255, 215, 120};
      const float ridge =
          horizon - 0.05f - 0.07f * std::fabs(std::sin(7 * u + 9 * hue)) - 0.03f * std::sin(23 * u);
      if (v > ridge) c = {35, 20, 45};
      return c;
    }
    Rgb c = mix({60, 40, 90}, {15, 20, 50}, (v - horizon) / (1 - horizon));
    const float glitter = std::sin(260 * v * v);
    if (std::fabs(u - 0.5f) < 0.14f * (1 - (v - horizon)) && glitter > 0.6f) c = {240, 170, 90};
    return c;
  }
};

void put(std::uint8_t* p, Rgb c) {
  auto b = [](float f) { return static_cast<std::uint8_t>(std::clamp(f + 0.5f, 0.0f, 255.0f)); };
  p[0] = b(c.r);
  p[1] = b(c.g);
  p[2] = b(c.b);
}

// ---- PNG chunks, for the file whose header lies ----

std::uint32_t crc32(const std::uint8_t* data, std::size_t n) {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) {
    crc ^= data[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return crc ^ 0xFFFFFFFFu;
}

void put_be32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

void put_chunk(std::vector<std::uint8_t>& out, const char* type,
               const std::vector<std::uint8_t>& data) {
  put_be32(out, static_cast<std::uint32_t>(data.size()));
  const std::size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put_be32(out, crc32(out.data() + start, out.size() - start));
}

}  // namespace

std::string sample_file_name(int index) {
  static constexpr const char* names[kPatterns] = {"shapes",  "rings",  "mandelbrot", "plasma",
                                                   "checker", "text",   "stripes",    "spiral",
                                                   "bubbles", "sunset", "graph",      "julia"};
  const bool png = (index % kPatterns + index / kPatterns) % 2 == 0;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%02d-%s.%s", index, names[index % kPatterns],
                png ? "png" : "jpg");
  return buf;
}

void render_rows(int index, int width, int height, int row_begin, int row_end, std::uint8_t* rgb) {
  const Scene scene(index, width, height);
  for (int y = row_begin; y < row_end; ++y) {
    std::uint8_t* row = rgb + static_cast<std::size_t>(y) * static_cast<std::size_t>(width) * 3;
    for (int x = 0; x < width; ++x) put(row + static_cast<std::size_t>(x) * 3, scene.at(x, y));
  }
}

Image render_sample(int index, int width, int height) {
  Image img;
  img.width = width;
  img.height = height;
  img.rgb.resize(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3);
  render_rows(index, width, height, 0, height, img.rgb.data());
  return img;
}

std::vector<std::string> write_bad_files(const std::string& dir,
                                         const std::vector<std::uint8_t>& png,
                                         const std::vector<std::uint8_t>& jpeg) {
  std::vector<std::string> names;
  auto write = [&](const std::string& name, std::span<const std::uint8_t> bytes) {
    write_file(dir + "/" + name, bytes);
    names.push_back(name);
  };
  // Cut off mid-stream, as by an interrupted download.
  write("truncated.png", std::span(png).first(png.size() * 55 / 100));
  write("truncated.jpg", std::span(jpeg).first(jpeg.size() / 2));
  // A damaged header: the frame header (SOF0 marker) gives an impossible length.
  std::vector<std::uint8_t> header(jpeg);
  for (std::size_t i = 2; i + 3 < header.size(); ++i) {
    if (header[i] == 0xFF && header[i + 1] == 0xC0) {
      header[i + 2] = 0;
      header[i + 3] = 3;
      break;
    }
  }
  write("bad-header.jpg", header);
  // Not an image at all.
  std::vector<std::uint8_t> noise(4096);
  Random rnd(42);
  for (std::uint8_t& b : noise) b = static_cast<std::uint8_t>(rnd.next() * 256);
  write("not-an-image.png", noise);
  // A well-formed PNG header claiming 100000 x 100000 RGB pixels (30 GB once decoded) in a
  // file of a few dozen bytes: a decompression bomb's calling card.
  std::vector<std::uint8_t> bomb = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<std::uint8_t> ihdr;
  put_be32(ihdr, 100000);
  put_be32(ihdr, 100000);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8 bits, RGB, deflate, no filter, no interlace
  put_chunk(bomb, "IHDR", ihdr);
  put_chunk(bomb, "IDAT", {0x78, 0x9c, 0x03, 0x00});  // a zlib stream cut short
  put_chunk(bomb, "IEND", {});
  write("bomb-100000x100000.png", bomb);
  return names;
}

}  // namespace imgf
