// PNG and JPEG reading and writing for the image_filter example.
//
// libpng's "simplified API" (png_image_*) does its own setjmp and returns 0 with a message on
// failure. libjpeg reports errors by calling error_exit, which must not return: ours formats the
// message and longjmps back to the setjmp in the function that started the operation, which
// then turns it into an ImageError. Between setjmp and longjmp only C objects live in that
// function, so the jump skips no destructor.
#include <algorithm>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <unistd.h>

#include "image.hpp"

// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>
#include <png.h>

namespace imgf {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

void check_size(std::uint64_t width, std::uint64_t height, const char* what) {
  if (width == 0 || height == 0) throw ImageError(std::string(what) + ": the image has no pixels");
  if (width * height > kMaxPixels)
    throw ImageError(std::string(what) + ": the header claims " + std::to_string(width) + "x" +
                     std::to_string(height) + " pixels, over the limit of " +
                     std::to_string(kMaxPixels / 1'000'000) +
                     " megapixels (a decompression bomb?); refused before allocating");
}

// ---- PNG ----

Image decode_png(std::span<const std::uint8_t> bytes) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size()))
    throw ImageError(std::string("PNG: ") + png.message);
  try {
    check_size(png.width, png.height, "PNG");
  } catch (...) {
    png_image_free(&png);
    throw;
  }
  png.format = PNG_FORMAT_RGB;  // grey, palette and 16-bit input are converted; alpha is
                                // composited over the background below
  Image img;
  img.width = static_cast<int>(png.width);
  img.height = static_cast<int>(png.height);
  try {
    img.rgb.resize(std::size_t{png.width} * png.height * 3);
  } catch (...) {
    png_image_free(&png);
    throw;
  }
  const png_color white{255, 255, 255};
  if (!png_image_finish_read(&png, &white, img.rgb.data(), 0, nullptr))
    throw ImageError(std::string("PNG: ") + png.message);  // finish_read frees on failure too
  return img;
}

std::vector<std::uint8_t> encode_png(const Image& img) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(img.width);
  png.height = static_cast<png_uint_32>(img.height);
  png.format = PNG_FORMAT_RGB;
  png.flags = PNG_IMAGE_FLAG_FAST;  // a little larger, much faster to write
  png_alloc_size_t size = PNG_IMAGE_PNG_SIZE_MAX(png);
  std::vector<std::uint8_t> out(size);
  if (!png_image_write_to_memory(&png, out.data(), &size, 0, img.rgb.data(), 0, nullptr))
    throw ImageError(std::string("PNG encoder: ") + png.message);
  out.resize(size);
  return out;
}

// ---- JPEG ----

struct JpegErrors {
  jpeg_error_mgr mgr;  // first member: libjpeg hands us a pointer to it
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  char warning[JMSG_LENGTH_MAX];
  int warnings;
  std::uint64_t refused_width, refused_height;  // set when the header claims too many pixels
};

extern "C" void jpeg_fail(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

// Level -1 is a warning about corrupt data (for instance "Premature end of JPEG file": libjpeg
// then fills the rest with grey and carries on). Keep the first; ignore trace messages.
extern "C" void jpeg_note(j_common_ptr cinfo, int level) {
  auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
  if (level >= 0) return;
  if (e->warnings++ == 0) (*cinfo->err->format_message)(cinfo, e->warning);
}

void install(JpegErrors& e) {
  jpeg_std_error(&e.mgr);
  e.mgr.error_exit = jpeg_fail;
  e.mgr.emit_message = jpeg_note;
  e.message[0] = e.warning[0] = '\0';
  e.warnings = 0;
  e.refused_width = e.refused_height = 0;
}

// Decodes into `img`; false with e.message set on failure. No C++ object with a destructor is
// created between the setjmp and the end of the function.
bool decode_jpeg_into(std::span<const std::uint8_t> bytes, Image& img, JpegErrors& e) {
  jpeg_decompress_struct cinfo;
  cinfo.err = &e.mgr;
  if (setjmp(e.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  if (std::uint64_t{cinfo.image_width} * cinfo.image_height > kMaxPixels) {
    e.refused_width = cinfo.image_width;
    e.refused_height = cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = JCS_RGB;  // greyscale and YCbCr convert; CMYK is refused
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_components != 3) {
    std::snprintf(e.message, sizeof e.message, "unsupported colour space (%d components)",
                  cinfo.output_components);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  img.width = static_cast<int>(cinfo.output_width);
  img.height = static_cast<int>(cinfo.output_height);
  try {
    img.rgb.resize(std::size_t{cinfo.output_width} * cinfo.output_height * 3);
  } catch (...) {
    jpeg_destroy_decompress(&cinfo);
    throw;
  }
  const std::size_t stride = std::size_t{cinfo.output_width} * 3;
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = img.rgb.data() + cinfo.output_scanline * stride;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

Image decode_jpeg(std::span<const std::uint8_t> bytes) {
  JpegErrors e;
  install(e);
  Image img;
  if (!decode_jpeg_into(bytes, img, e)) {
    if (e.refused_width != 0) check_size(e.refused_width, e.refused_height, "JPEG");
    throw ImageError(std::string("JPEG: ") + e.message);
  }
  if (e.warnings > 0)
    throw ImageError(std::string("JPEG: corrupt data: ") + e.warning +
                     (e.warnings > 1 ? " (and " + std::to_string(e.warnings - 1) + " more)" : ""));
  return img;
}

bool encode_jpeg_into(const Image& img, int quality, unsigned char** out, unsigned long* size,
                      JpegErrors& e) {
  jpeg_compress_struct cinfo;
  cinfo.err = &e.mgr;
  if (setjmp(e.jump)) {
    jpeg_destroy_compress(&cinfo);
    return false;
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, out, size);
  cinfo.image_width = static_cast<JDIMENSION>(img.width);
  cinfo.image_height = static_cast<JDIMENSION>(img.height);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  const std::size_t stride = static_cast<std::size_t>(img.width) * 3;
  while (cinfo.next_scanline < cinfo.image_height) {
    // libjpeg's row type is not const; it only reads the rows.
    JSAMPROW row = const_cast<JSAMPLE*>(img.rgb.data() + cinfo.next_scanline * stride);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  return true;
}

std::vector<std::uint8_t> encode_jpeg(const Image& img, int quality) {
  JpegErrors e;
  install(e);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  const bool ok = encode_jpeg_into(img, quality, &buf, &size, e);
  std::vector<std::uint8_t> out;
  if (ok) out.assign(buf, buf + size);
  std::free(buf);  // jpeg_mem_dest's buffer, allocated with malloc
  if (!ok) throw ImageError(std::string("JPEG encoder: ") + e.message);
  return out;
}

}  // namespace

std::optional<Format> format_of(std::string_view path) {
  const std::string p = lower(path);
  auto ends = [&](std::string_view ext) {
    return p.size() >= ext.size() && p.compare(p.size() - ext.size(), ext.size(), ext) == 0;
  };
  if (ends(".png")) return Format::png;
  if (ends(".jpg") || ends(".jpeg")) return Format::jpeg;
  return std::nullopt;
}

const char* format_name(Format f) {
  return f == Format::png ? "PNG" : "JPEG";
}

Image decode_image(std::span<const std::uint8_t> bytes) {
  static constexpr std::uint8_t png_sig[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.empty()) throw ImageError("empty file");
  if (bytes.size() >= 8 && std::equal(png_sig, png_sig + 8, bytes.begin()))
    return decode_png(bytes);
  if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF)
    return decode_jpeg(bytes);
  throw ImageError("not a PNG or JPEG file (unknown signature)");
}

std::vector<std::uint8_t> encode_image(const Image& img, Format f, int jpeg_quality) {
  if (img.width <= 0 || img.height <= 0 ||
      img.rgb.size() !=
          static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) * 3)
    throw ImageError("encode: the image's size and pixel count disagree");
  return f == Format::png ? encode_png(img) : encode_jpeg(img, jpeg_quality);
}

std::vector<std::uint8_t> read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw ImageError("is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ImageError("cannot open: " + std::string(std::strerror(errno)));
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
  if (in.bad()) throw ImageError("read error");
  return bytes;
}

void write_file(const std::string& path, std::span<const std::uint8_t> bytes) {
  const std::string tmp = path + ".tmp" + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw ImageError("cannot create " + tmp + ": " + std::strerror(errno));
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw ImageError("cannot write " + tmp);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw ImageError("cannot rename " + tmp + " to " + path + ": " + std::strerror(err));
  }
}

std::size_t write_image(const std::string& path, const Image& img, Format f) {
  const std::vector<std::uint8_t> bytes = encode_image(img, f);
  write_file(path, bytes);
  return bytes.size();
}

}  // namespace imgf
