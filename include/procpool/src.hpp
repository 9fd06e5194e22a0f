#pragma once
// The compiled mode's one translation unit. A program whose files are all built with
// PROCPOOL_SEPARATE_COMPILATION includes this in exactly one .cpp (CMake's procpool::compiled
// does it for you): the engine is compiled there, once, instead of in every file using a pool.

#ifndef PROCPOOL_SEPARATE_COMPILATION
#error "<procpool/src.hpp> is for the compiled mode: define PROCPOOL_SEPARATE_COMPILATION"
#endif

#include <procpool/detail/buffer_impl.hpp>
#include <procpool/detail/codec/io_impl.hpp>
#include <procpool/detail/completion_impl.hpp>
#include <procpool/detail/demangle_impl.hpp>
#include <procpool/detail/dict_impl.hpp>
#include <procpool/detail/engine_impl.hpp>
#include <procpool/detail/errors_impl.hpp>
#include <procpool/detail/imap_impl.hpp>
#include <procpool/detail/init_impl.hpp>
#include <procpool/detail/invoke_impl.hpp>
#include <procpool/detail/list_impl.hpp>
#include <procpool/detail/map_batch_impl.hpp>
#include <procpool/detail/process_impl.hpp>
#include <procpool/detail/segment_impl.hpp>
#include <procpool/detail/shared_heap_impl.hpp>
