#include "base/check.h"

#include <cstdio>
#include <cstdlib>

namespace tdxsim::detail {

void check_failed(const char* file, int line, const char* expr, const std::string& msg) {
  std::fprintf(stderr, "tdxsim: simulator check failed at %s:%d: %s: %s\n", file, line, expr,
               msg.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace tdxsim::detail
