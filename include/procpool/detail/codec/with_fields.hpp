#pragma once
// An aggregate's fields by structured binding, for up to max_fields fields (generated code).
// Part of <procpool/codec.hpp>.

#include <procpool/detail/codec/traits.hpp>

namespace procpool::detail::bin {

// Calls fn(field_list<declared field types...>{}, fields...) with T's N fields bound by a
// structured binding, the one way C++20 names an aggregate's members without user code. decltype
// of a binding is the field's declared type, so reference fields show up as references.
// (Generated for N <= max_fields.)
template <std::size_t N, class T, class F>
decltype(auto) with_fields(T& v, F&& fn) {
  if constexpr (N == 0) {
    (void)v;
    return fn(field_list<>{});
  } else if constexpr (N == 1) {
    auto& [f0] = v;
    return fn(field_list<decltype(f0)>{}, f0);
  } else if constexpr (N == 2) {
    auto& [f0, f1] = v;
    return fn(field_list<decltype(f0), decltype(f1)>{}, f0, f1);
  } else if constexpr (N == 3) {
    auto& [f0, f1, f2] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2)>{}, f0, f1, f2);
  } else if constexpr (N == 4) {
    auto& [f0, f1, f2, f3] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3)>{}, f0, f1, f2, f3);
  } else if constexpr (N == 5) {
    auto& [f0, f1, f2, f3, f4] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4)>{},
              f0, f1, f2, f3, f4);
  } else if constexpr (N == 6) {
    auto& [f0, f1, f2, f3, f4, f5] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5)>{},
              f0, f1, f2, f3, f4, f5);
  } else if constexpr (N == 7) {
    auto& [f0, f1, f2, f3, f4, f5, f6] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6)>{},
              f0, f1, f2, f3, f4, f5, f6);
  } else if constexpr (N == 8) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7)>{},
              f0, f1, f2, f3, f4, f5, f6, f7);
  } else if constexpr (N == 9) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8);
  } else if constexpr (N == 10) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9);
  } else if constexpr (N == 11) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10);
  } else if constexpr (N == 12) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11);
  } else if constexpr (N == 13) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12);
  } else if constexpr (N == 14) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13);
  } else if constexpr (N == 15) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14] = v;
    return fn(
        field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                   decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                   decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14)>{},
        f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14);
  } else if constexpr (N == 16) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15);
  } else if constexpr (N == 17) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16);
  } else if constexpr (N == 18) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17);
  } else if constexpr (N == 19) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18);
  } else if constexpr (N == 20) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
           f19] = v;
    return fn(
        field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                   decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                   decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                   decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19)>{},
        f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19);
  } else if constexpr (N == 21) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20);
  } else if constexpr (N == 22) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21);
  } else if constexpr (N == 23) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22);
  } else if constexpr (N == 24) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22), decltype(f23)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22, f23);
  } else if constexpr (N == 25) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24] = v;
    return fn(
        field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                   decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                   decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                   decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                   decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24)>{},
        f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
        f20, f21, f22, f23, f24);
  } else if constexpr (N == 26) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24, f25] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24),
                         decltype(f25)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22, f23, f24, f25);
  } else if constexpr (N == 27) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24, f25, f26] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24),
                         decltype(f25), decltype(f26)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22, f23, f24, f25, f26);
  } else if constexpr (N == 28) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24, f25, f26, f27] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24),
                         decltype(f25), decltype(f26), decltype(f27)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22, f23, f24, f25, f26, f27);
  } else if constexpr (N == 29) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24, f25, f26, f27, f28] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24),
                         decltype(f25), decltype(f26), decltype(f27), decltype(f28)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22, f23, f24, f25, f26, f27, f28);
  } else if constexpr (N == 30) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24, f25, f26, f27, f28, f29] = v;
    return fn(
        field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                   decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                   decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                   decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                   decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24),
                   decltype(f25), decltype(f26), decltype(f27), decltype(f28), decltype(f29)>{},
        f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
        f20, f21, f22, f23, f24, f25, f26, f27, f28, f29);
  } else if constexpr (N == 31) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24),
                         decltype(f25), decltype(f26), decltype(f27), decltype(f28), decltype(f29),
                         decltype(f30)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30);
  } else if constexpr (N == 32) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24),
                         decltype(f25), decltype(f26), decltype(f27), decltype(f28), decltype(f29),
                         decltype(f30), decltype(f31)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31);
  }
}

}  // namespace procpool::detail::bin
