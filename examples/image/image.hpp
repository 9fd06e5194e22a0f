// Images for the image_filter example: 8-bit RGB pixels, read from and written to PNG (libpng)
// and JPEG (libjpeg-turbo). Decoding errors, which both libraries report by a longjmp out of the
// failing call, come out of here as ImageError exceptions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace imgf {

/// Width x height pixels of 3 bytes (R, G, B), rows top to bottom.
struct Image {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> rgb;
};

enum class Format { png, jpeg };

/// A file that could not be read, decoded, encoded or written; what() says why.
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Decoding refuses images above this many pixels before allocating anything, the way image
/// libraries guard against decompression bombs (a small file whose header claims a huge image).
inline constexpr std::uint64_t kMaxPixels = 128'000'000;

/// The format a file name asks for (.png, .jpg, .jpeg; any case), if any.
std::optional<Format> format_of(std::string_view path);
const char* format_name(Format f);

/// Decodes PNG or JPEG bytes (recognized by their signature, not by the file name). JPEG data
/// that libjpeg can only partly decode (a truncated file) is an error too, not a grey patch.
Image decode_image(std::span<const std::uint8_t> bytes);
std::vector<std::uint8_t> encode_image(const Image& img, Format f, int jpeg_quality = 90);

std::vector<std::uint8_t> read_file(const std::string& path);
/// Writes through a temporary file and a rename, so a reader never sees half a file.
void write_file(const std::string& path, std::span<const std::uint8_t> bytes);

inline Image read_image(const std::string& path) {
  return decode_image(read_file(path));
}
/// Encodes and writes; returns the file's size in bytes.
std::size_t write_image(const std::string& path, const Image& img, Format f);

}  // namespace imgf
