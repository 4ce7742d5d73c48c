// TDXSIM_CHECK: the third tier of failure — corruption of the simulator itself.
//
// Unlike assert(), it stays on in every build type (NDEBUG never removes it): the lock
// assertions, page-table poisoning and structural checks of the model rely on it.
// Expected contention is a result the caller retries; a broken invariant in one simulated
// VM is that VM's bug_on (a later layer); only a broken simulator aborts here.
#pragma once

#include <fmt/format.h>

namespace tdxsim::detail {
[[noreturn, gnu::cold]] void check_failed(const char* file, int line, const char* expr,
                                          const std::string& msg);
}  // namespace tdxsim::detail

// The failure path is a cold lambda kept out of line, so that a check costs its caller a
// compare and a branch: an inlined fmt::format call would keep the small functions of the hot
// paths (the memory model's word accesses, the PAMT walk) from being inlined in turn. The
// lambda's body is outside clang's thread-safety analysis: its arguments only format a
// message on the way to abort, and the analysis cannot see the caller's locks there.
#if defined(__clang__)
#define TDXSIM_CHECK_COLD_ __attribute__((noinline, cold, noreturn, no_thread_safety_analysis))
#else
#define TDXSIM_CHECK_COLD_ __attribute__((noinline, cold, noreturn))
#endif
#define TDXSIM_CHECK(cond, ...)                                                                \
  do {                                                                                         \
    if (!(cond)) [[unlikely]]                                                                  \
      [&]() TDXSIM_CHECK_COLD_ {                                                               \
        ::tdxsim::detail::check_failed(__FILE__, __LINE__, #cond, ::fmt::format(__VA_ARGS__)); \
      }();                                                                                     \
  } while (0)
