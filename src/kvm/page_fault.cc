#include "kvm/page_fault.h"

namespace tdxsim {

const char* to_string(RetPf r) {
  switch (r) {
    case RetPf::kContinue:
      return "continue";
    case RetPf::kRetry:
      return "retry";
    case RetPf::kEmulate:
      return "emulate";
    case RetPf::kWriteProtected:
      return "write-protected";
    case RetPf::kInvalid:
      return "invalid";
    case RetPf::kFixed:
      return "fixed";
    case RetPf::kSpurious:
      return "spurious";
  }
  return "?";
}

}  // namespace tdxsim
