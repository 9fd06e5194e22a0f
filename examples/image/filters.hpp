// The image filters of the image_filter example. Every filter computes a range of output rows
// from the whole source image, reading neighbouring rows from the source only, so bands of rows
// can be filtered by different processes into one shared destination with no exchange of
// borders, and the result is the same byte for byte whatever the bands.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "image.hpp"

namespace imgf {

enum class Filter : std::uint8_t { blur, sharpen, edges, gray };

/// What to do to an image; travels to the workers as a task argument.
struct FilterSpec {
  Filter filter = Filter::edges;
  float sigma = 0;   ///< Gaussian radius for blur and sharpen; 0: the filter's default
  float amount = 0;  ///< sharpen strength or edge gain; 0: the filter's default
};

std::optional<Filter> parse_filter(std::string_view name);
const char* filter_name(Filter f);
/// The spec with its zeros replaced by the filter's defaults.
FilterSpec resolved(FilterSpec spec);

/// Computes rows [row_begin, row_end) of `dst` from `src`; both hold width * height RGB pixels.
/// Reads any row of `src`; writes only its own rows of `dst`.
void filter_rows(const FilterSpec& spec, const std::uint8_t* src, std::uint8_t* dst, int width,
                 int height, int row_begin, int row_end);

/// The whole image at once.
Image apply_filter(const FilterSpec& spec, const Image& src);

}  // namespace imgf
