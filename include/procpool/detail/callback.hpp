#pragma once
// A move-only callable of one signature, for the engine's callbacks: what std::function gives
// them, without <functional>, which brings a good part of the standard library into every file
// that includes a pool. Callables of up to two pointers' size are stored in place, as
// std::function stores them, so a completion's callback costs no allocation.

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace procpool::detail {

template <class Signature>
class Callback;

template <class R, class... A>
class Callback<R(A...)> {
 public:
  Callback() noexcept = default;

  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, Callback> &&
           std::is_invocable_r_v<R, std::decay_t<F>&, A...>)
      Callback(F&& f) {  // implicit, as std::function's
    using D = std::decay_t<F>;
    if constexpr (in_place<D>) {
      ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
    } else {
      ::new (static_cast<void*>(buf_)) D*(new D(std::forward<F>(f)));
    }
    ops_ = &ops_for<D>;
  }

  Callback(Callback&& o) noexcept { take(o); }
  Callback& operator=(Callback&& o) noexcept {
    if (this != &o) {
      reset();
      take(o);
    }
    return *this;
  }
  ~Callback() { reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }
  R operator()(A... a) { return ops_->call(buf_, std::forward<A>(a)...); }

 private:
  static constexpr std::size_t size = 2 * sizeof(void*);

  template <class D>
  static constexpr bool in_place =
      sizeof(D) <= size &&
      alignof(D) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<D>;

  struct Ops {
    R (*call)(void* self, A&&... a);
    void (*move)(void* from, void* to) noexcept;  // constructs at `to`, destroys `from`
    void (*destroy)(void* self) noexcept;
  };

  template <class D>
  static D& target(void* self) noexcept {
    if constexpr (in_place<D>) {
      return *std::launder(static_cast<D*>(self));
    } else {
      return **std::launder(static_cast<D**>(self));
    }
  }

  template <class D>
  static constexpr Ops ops_for{
      [](void* self, A&&... a) -> R { return target<D>(self)(std::forward<A>(a)...); },
      [](void* from, void* to) noexcept {
        if constexpr (in_place<D>) {
          ::new (to) D(std::move(target<D>(from)));
          target<D>(from).~D();
        } else {
          ::new (to) D*(*std::launder(static_cast<D**>(from)));
        }
      },
      [](void* self) noexcept {
        if constexpr (in_place<D>) {
          target<D>(self).~D();
        } else {
          delete &target<D>(self);
        }
      }};

  void take(Callback& o) noexcept {
    if (o.ops_ == nullptr) return;
    o.ops_->move(o.buf_, buf_);
    ops_ = o.ops_;
    o.ops_ = nullptr;
  }
  void reset() noexcept {
    if (ops_ == nullptr) return;
    ops_->destroy(buf_);
    ops_ = nullptr;
  }

  alignas(std::max_align_t) unsigned char buf_[size];
  const Ops* ops_ = nullptr;
};

}  // namespace procpool::detail
