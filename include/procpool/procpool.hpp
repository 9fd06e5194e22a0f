#pragma once

#include <procpool/detail/cxx20.hpp>

/// procpool: a pool of worker processes for C++20. This header includes the whole public API.

#include <procpool/async_result.hpp>
#include <procpool/codec.hpp>
#include <procpool/cpu.hpp>
#include <procpool/dict.hpp>
#include <procpool/errors.hpp>
#include <procpool/imap.hpp>
#include <procpool/init.hpp>
#include <procpool/list.hpp>
#include <procpool/options.hpp>
#include <procpool/pipe.hpp>
#include <procpool/pool.hpp>
#include <procpool/process.hpp>
#include <procpool/queue.hpp>
#include <procpool/shared.hpp>
#include <procpool/sync.hpp>
#include <procpool/version.hpp>
