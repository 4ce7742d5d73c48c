// TDXSIM_CHECK: the third tier of failure — corruption of the simulator itself.
//
// Unlike assert(), it stays on in every build type (NDEBUG never removes it): the lock
// assertions, page-table poisoning and structural checks of the model rely on it.
// Expected contention is a result the caller retries; a broken invariant in one simulated
// VM is that VM's bug_on (a later layer); only a broken simulator aborts here.
#pragma once

#include <fmt/format.h>

namespace tdxsim::detail {
[[noreturn]] void check_failed(const char* file, int line, const char* expr, const std::string& msg);
}  // namespace tdxsim::detail

#define TDXSIM_CHECK(cond, ...)                                                           \
  do {                                                                                    \
    if (!(cond)) [[unlikely]]                                                             \
      ::tdxsim::detail::check_failed(__FILE__, __LINE__, #cond, ::fmt::format(__VA_ARGS__)); \
  } while (0)
