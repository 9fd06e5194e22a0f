#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iterator>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <procpool/codec.hpp>
#include <procpool/detail/buffer.hpp>
#include <procpool/detail/demangle.hpp>
#include <procpool/detail/posix/image_address.hpp>
#include <procpool/detail/recycled_vectors.hpp>
#include <procpool/detail/separate.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/errors.hpp>

namespace procpool::detail {

// ---- What may be a task -------------------------------------------------------------------

template <class F>
inline constexpr bool is_function_pointer_v =
    std::is_pointer_v<F>&& std::is_function_v<std::remove_pointer_t<F>>;

template <class F>
inline constexpr bool is_stateless_object_v =
    std::is_class_v<F>&& std::is_empty_v<F>&& std::is_default_constructible_v<F>;

template <class F>
constexpr void check_task() {
  static_assert(is_function_pointer_v<F> || is_stateless_object_v<F>,
                "procpool: a task must be a plain function or a captureless lambda / empty, "
                "default-constructible function object (capturing lambdas and std::function "
                "cannot travel to another process): pass the state as task arguments instead");
}

// ---- The argument types that travel -------------------------------------------------------

template <class M>
struct member_call_traits {
  static constexpr bool known = false;
};
#define PROCPOOL_MEMBER_TRAITS(QUAL)               \
  template <class R, class C, class... P>          \
  struct member_call_traits<R (C::*)(P...) QUAL> { \
    static constexpr bool known = true;            \
    using args = std::tuple<std::decay_t<P>...>;   \
  };
PROCPOOL_MEMBER_TRAITS()
PROCPOOL_MEMBER_TRAITS(const)
PROCPOOL_MEMBER_TRAITS(noexcept)
PROCPOOL_MEMBER_TRAITS(const noexcept)
#undef PROCPOOL_MEMBER_TRAITS

template <class F, class = void>
struct call_traits {
  static constexpr bool known = false;  // e.g. a generic lambda: the caller's types travel
};
template <class R, class... P>
struct call_traits<R (*)(P...)> {
  static constexpr bool known = true;
  using args = std::tuple<std::decay_t<P>...>;
};
template <class R, class... P>
struct call_traits<R (*)(P...) noexcept> : call_traits<R (*)(P...)> {};
template <class F>
struct call_traits<F, std::void_t<decltype(&F::operator())>>
    : member_call_traits<decltype(&F::operator())> {};

/// The tuple of types that are encoded for a call of `F` with arguments `A...`: the task's own
/// parameter types (decayed) when they can be read off it, else the caller's argument types.
template <class F, class... A>
struct wire_args {
  using type = std::tuple<std::decay_t<A>...>;
};
template <class F, class... A>
requires call_traits<F>::known struct wire_args<F, A...> {
  using type = typename call_traits<F>::args;
  static_assert(std::tuple_size_v<type> == sizeof...(A),
                "procpool: the task is called with the wrong number of arguments");
};
template <class F, class... A>
using wire_args_t = typename wire_args<F, A...>::type;

template <class F, class Tuple>
struct apply_result;
template <class F, class... W>
struct apply_result<F, std::tuple<W...>> {
  using type = std::invoke_result_t<F&, W&&...>;
};
template <class F, class Tuple>
using apply_result_t = typename apply_result<F, Tuple>::type;

// ---- Encoding arguments (caller side) ------------------------------------------------------

template <class Codec, class W, class A>
void encode_arg(Writer& w, A&& a) {
  if constexpr (std::is_same_v<std::remove_cvref_t<A>, W>) {
    encode_value<Codec, W>(w, a);
  } else {
    static_assert(std::is_constructible_v<W, A&&>,
                  "procpool: an argument cannot be converted to the task's parameter type");
    encode_value<Codec, W>(w, W(std::forward<A>(a)));
  }
}

template <class Codec, class Tuple>
struct ArgEncoder;
template <class Codec, class... W>
struct ArgEncoder<Codec, std::tuple<W...>> {
  template <class... A>
  static void encode(Writer& w, A&&... a) {
    (encode_arg<Codec, W>(w, std::forward<A>(a)), ...);
  }
};

// ---- Running a task (worker side) -----------------------------------------------------------

/// Decodes one item's arguments, runs the task and appends a result item to `out` (`packed` 0);
/// or runs the `packed` items of a packed run, whose arguments `args` holds back to back, all of
/// one size, appending their results (a packed run of them when they are plain values and all
/// succeed). Never throws: every failure becomes an error item.
using Trampoline = void (*)(std::uintptr_t fn, std::span<const std::byte> args, Buffer& out,
                            std::uint32_t packed);

PROCPOOL_SEPARATE_BEGIN
/// Appends an error item: `type` (for a remote error) and `msg`.
PROCPOOL_DECL void append_error_item(Buffer& out, ItemStatus st, const std::string& type,
                                     const std::string& msg);
/// The exception in flight (call from a catch block) as a task's error names it: its demangled
/// type and its message, "(not derived from std::exception)" for one that has none.
PROCPOOL_DECL std::pair<std::string, std::string> thrown_type_and_message();
/// Replaces what a failed task appended to `out` after `mark` with an error item describing the
/// exception in flight (called from a catch block). Never throws.
PROCPOOL_DECL void append_current_error(Buffer& out, std::size_t mark) noexcept;
/// Turns the packed run of results at `at` in `out`, `done` values of `size` bytes, back into
/// `done` ok items, in place; `out` has room for them (one of the run's tasks failed).
PROCPOOL_DECL void unpack_results(Buffer& out, std::size_t at, std::uint32_t done,
                                  std::size_t size) noexcept;
PROCPOOL_SEPARATE_END

// A task's argument or result the worker is done with: a large vector of plain values is kept
// for the next argument of its type, which BinaryCodec decodes into it (see RecycledVectors).
template <class Codec, class T>
void recycle(T& v) noexcept {
  if constexpr (std::is_same_v<Codec, BinaryCodec> && bin::is_instance<std::vector, T>) {
    using E = typename T::value_type;
    if constexpr (std::is_same_v<T, std::vector<E>> && bin::is_bulk<E>())
      RecycledVectors::process().keep(v);
  }
}

template <class Codec, class F, class Tuple>
struct Invoker;
template <class Codec, class F, class... W>
struct Invoker<Codec, F, std::tuple<W...>> {
  using R = std::invoke_result_t<F&, W&&...>;

  // One plain argument and a plain (or no) result: a packed run needs neither a Reader nor a
  // status and length per item.
  static constexpr bool packs() {
    if constexpr (sizeof...(W) != 1 || !(raw_encoded<Codec, W>() && ...)) {
      return false;
    } else if constexpr (std::is_void_v<R>) {
      return true;
    } else {
      return raw_encoded<Codec, std::remove_cvref_t<R>>();
    }
  }

  static void run(std::uintptr_t fn, std::span<const std::byte> args, Buffer& out,
                  std::uint32_t packed) noexcept {
    if (packed == 0) return run_one(fn, args, out);
    const std::size_t size = args.size() / packed;  // the worker checked that it divides
    std::uint32_t i = 0;
    if constexpr (packs()) {
      if (size == (sizeof(W) + ...)) i = run_packed(fn, args, out, packed);
    }
    for (; i < packed; ++i) run_one(fn, args.subspan(i * size, size), out);
  }

  // Runs items until one throws; returns how many it used up (0: it could not start).
  static std::uint32_t run_packed(std::uintptr_t fn, std::span<const std::byte> args, Buffer& out,
                                  std::uint32_t n) noexcept {
    using Result = std::conditional_t<std::is_void_v<R>, char, std::remove_cvref_t<R>>;
    constexpr std::uint64_t rsize = std::is_void_v<R> ? 0 : sizeof(Result);
    constexpr std::size_t head = 1 + sizeof(std::uint64_t);
    const std::size_t at = out.size();
    std::byte* values = nullptr;
    try {
      // Room for the results as items too, should a task throw.
      out.reserve(at + std::size_t{n} * (head + rsize));
      values = out.grow(head + std::size_t{n} * rsize) + head;
    } catch (...) {
      return 0;
    }
    values[-static_cast<std::ptrdiff_t>(head)] = static_cast<std::byte>(ItemStatus::packed);
    std::memcpy(values - sizeof rsize, &rsize, sizeof rsize);
    std::uint32_t i = 0;
    try {
      F f = make(fn);
      for (; i < n; ++i) {
        std::tuple<W...> t;
        constexpr std::size_t asize = (sizeof(W) + ...);
        std::memcpy(static_cast<void*>(&std::get<0>(t)), args.data() + i * asize, asize);
        if constexpr (std::is_void_v<R>) {
          f(std::move(std::get<0>(t)));
        } else {
          Result r = f(std::move(std::get<0>(t)));
          std::memcpy(values + i * rsize, &r, rsize);
        }
      }
      return n;
    } catch (...) {
      unpack_results(out, at, i, rsize);
      append_current_error(out, out.size());
      return i + 1;
    }
  }

  static void run_one(std::uintptr_t fn, std::span<const std::byte> args, Buffer& out) noexcept {
    const std::size_t mark = out.size();
    try {
      std::size_t at = begin_item(out, ItemStatus::ok);
      F f = make(fn);
      auto call = [&](std::tuple<W...>& t) {
        if constexpr (std::is_void_v<R>) {
          std::apply([&](W&... a) { f(std::move(a)...); }, t);
        } else {
          R result = std::apply([&](W&... a) -> R { return f(std::move(a)...); }, t);
          if constexpr (raw_encoded<Codec, std::remove_cvref_t<R>>()) {
            out.append(&result, sizeof result);
          } else {
            Writer w(out);
            encode_value<Codec, std::remove_cvref_t<R>>(w, result);
            // Only a value the task gave away, not a reference to one it keeps.
            if constexpr (std::is_object_v<R> && !std::is_const_v<R>) recycle<Codec>(result);
          }
        }
        // What the task took by reference (or left unmoved) is done with too.
        std::apply([](W&... a) { (recycle<Codec>(a), ...); }, t);
      };
      // A map over plain numbers or structs runs this per element: one copy, no Reader.
      if constexpr (sizeof...(W) == 1 && (raw_encoded<Codec, W>() && ...)) {
        if (args.size() == (sizeof(W) + ...)) {
          std::tuple<W...> t;
          std::memcpy(static_cast<void*>(&std::get<0>(t)), args.data(), args.size());
          call(t);
          finish_item(out, at);
          return;
        }
      }
      Reader r(args);
      // Braced initialization decodes the arguments left to right.
      std::tuple<W...> t{decode_value<Codec, W>(r)...};
      if (!r.at_end()) throw CodecError("task arguments have trailing bytes");
      call(t);
      finish_item(out, at);
    } catch (...) {
      append_current_error(out, mark);
    }
  }

  static F make(std::uintptr_t fn) {
    if constexpr (std::is_pointer_v<F>) {
      return std::bit_cast<F>(fn);
    } else {
      return F{};
    }
  }
};

/// What a task is called, for messages about it: worked out only when one is needed.
struct TaskName {
  std::uintptr_t fn = 0;            // a function's address; 0 for a function object
  std::string (*type)() = nullptr;  // the task's type (see type_name)

  PROCPOOL_DECL std::string str() const;
};

template <class F>
TaskName task_name_of(F f) {
  TaskName n;
  if constexpr (std::is_pointer_v<F>) n.fn = std::bit_cast<std::uintptr_t>(f);
  (void)f;
  n.type = &type_name<F>;
  return n;
}

/// Where a task's trampoline and function live, image-relative (see posix::ImageAddress).
struct TaskRef {
  posix::ImageAddress trampoline;
  posix::ImageAddress fn;  // {0, 0} for a function object
};

inline void put_task_ref(Buffer& out, const TaskRef& r) {
  const std::uint64_t v[4] = {r.trampoline.module, r.trampoline.offset, r.fn.module, r.fn.offset};
  out.append(v, sizeof v);
}

PROCPOOL_SEPARATE_BEGIN
/// Where the code at `p` lives; throws naming `what` if no loaded object holds it.
PROCPOOL_DECL posix::ImageAddress locate_or_throw(std::uintptr_t p, const char* what);
PROCPOOL_SEPARATE_END

template <class Codec, class F, class Tuple>
TaskRef task_ref(F f) {
  static const posix::ImageAddress tramp = locate_or_throw(
      std::bit_cast<std::uintptr_t>(&Invoker<Codec, F, Tuple>::run), "task trampoline");
  TaskRef r{tramp, {}};
  if constexpr (std::is_pointer_v<F>) {
    // Tasks are usually submitted many times in a row: remember the last lookup.
    thread_local std::uintptr_t last_fn = 0;
    thread_local posix::ImageAddress last_addr;
    auto p = std::bit_cast<std::uintptr_t>(f);
    if (p != last_fn) {
      last_addr = locate_or_throw(p, "task function");
      last_fn = p;
    }
    r.fn = last_addr;
  } else {
    (void)f;
  }
  return r;
}

}  // namespace procpool::detail

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/invoke_impl.hpp>
#endif
