#pragma once

// Durations and clocks, which is all procpool uses of <chrono>. In C++20, libstdc++'s <chrono>
// also brings the calendar, time zones and their stream output, with <sstream>: some 40,000
// lines, more than a third of what a file that includes the pool parses. <bits/chrono.h> holds
// the durations and clocks alone (libstdc++'s own <thread> and <future> include just that).
#include <version>
#if defined(_GLIBCXX_RELEASE) && _GLIBCXX_RELEASE >= 11 && __has_include(<bits/chrono.h>)
#include <bits/chrono.h>
#else
#include <chrono>
#endif
