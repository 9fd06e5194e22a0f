// Synthetic images for the image_filter example, so it runs with no input of its own: shapes,
// rings, fractals, text, stripes... each sample rendered row by row (bands of a big image can be
// rendered by different processes), plus deliberately broken files for the failure report.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "image.hpp"

namespace imgf {

/// Distinct patterns; sample `index` uses pattern index % kPatterns and varies with the rest.
inline constexpr int kPatterns = 12;

/// "07-spiral.jpg": the sample's file name; PNG and JPEG alternate.
std::string sample_file_name(int index);

/// Renders rows [row_begin, row_end) of sample `index` at width x height into `rgb`, which
/// holds the whole image (width * height * 3 bytes).
void render_rows(int index, int width, int height, int row_begin, int row_end, std::uint8_t* rgb);

Image render_sample(int index, int width, int height);

/// Writes the broken files next to the samples: a truncated PNG and JPEG (cut from `png` and
/// `jpeg`), a JPEG with a damaged header, a file of random bytes named .png, and a PNG whose
/// header claims 100000 x 100000 pixels. Returns their file names.
std::vector<std::string> write_bad_files(const std::string& dir,
                                         const std::vector<std::uint8_t>& png,
                                         const std::vector<std::uint8_t>& jpeg);

}  // namespace imgf
