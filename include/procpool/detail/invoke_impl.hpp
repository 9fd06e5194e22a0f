#pragma once
// A failed task's error item (one function for every task type), where a task's code lives, and
// its name for messages: inline in a header-only build, compiled once by src/procpool.cpp with
// PROCPOOL_SEPARATE_COMPILATION.

#include <cstring>
#include <string>

#include <procpool/detail/demangle.hpp>
#include <procpool/detail/invoke.hpp>
#include <procpool/detail/posix/module.hpp>

namespace procpool::detail {

PROCPOOL_SEPARATE_BEGIN

PROCPOOL_DECL void append_error_item(Buffer& out, ItemStatus st, const std::string& type,
                                     const std::string& msg) {
  const std::size_t at = begin_item(out, st);
  if (st == ItemStatus::remote_error) put_str(out, type);
  put_str(out, msg);
  finish_item(out, at);
}

PROCPOOL_DECL std::pair<std::string, std::string> thrown_type_and_message() {
  try {
    throw;
  } catch (const std::exception& e) {
    return {demangle(typeid(e).name()), e.what()};
  } catch (...) {
    return {current_exception_type(), "(not derived from std::exception)"};
  }
}

PROCPOOL_DECL void append_current_error(Buffer& out, std::size_t mark) noexcept {
  try {
    try {
      throw;
    } catch (const CodecError& e) {
      out.resize(mark);
      append_error_item(out, ItemStatus::codec_error, {}, bare_message(e));
    } catch (...) {
      const auto [type, message] = thrown_type_and_message();
      out.resize(mark);
      append_error_item(out, ItemStatus::remote_error, type, message);
    }
  } catch (...) {
    // Out of memory while reporting: leave a bare item so the frame stays well-formed.
    out.resize(mark);
    const std::size_t at = begin_item(out, ItemStatus::codec_error);
    finish_item(out, at);
  }
}

PROCPOOL_DECL void unpack_results(Buffer& out, std::size_t at, std::uint32_t done,
                                  std::size_t size) noexcept {
  constexpr std::size_t head = 1 + sizeof(std::uint64_t);
  const std::byte* values = out.data() + at + head;
  std::byte* items = out.data() + at;
  // From the last: an item never lands on a value not yet moved.
  for (std::uint32_t k = done; k-- > 0;) {
    std::byte* item = items + k * (head + size);
    std::memmove(item + head, values + k * size, size);
    item[0] = static_cast<std::byte>(ItemStatus::ok);
    const std::uint64_t n = size;
    std::memcpy(item + 1, &n, sizeof n);
  }
  out.resize(at + done * (head + size));  // within the room run_packed reserved
}

PROCPOOL_DECL posix::ImageAddress locate_or_throw(std::uintptr_t p, const char* what) {
  posix::ImageAddress a;
  if (!posix::locate_code(reinterpret_cast<const void*>(p), a))
    throw Error(std::string("cannot find the loaded object that holds the ") + what);
  return a;
}

PROCPOOL_SEPARATE_END

PROCPOOL_DECL std::string TaskName::str() const {
  if (fn != 0) {
    std::string sym = posix::symbol_at(reinterpret_cast<const void*>(fn));
    if (!sym.empty()) return demangle(sym.c_str());
  }
  return type ? type() : std::string("unknown");
}

}  // namespace procpool::detail
