#include "kvm/mmu_stats.h"

namespace tdxsim {

const char* to_string(ZapReason r) {
  switch (r) {
    case ZapReason::kMemslot:
      return "memslot";
    case ZapReason::kNotifier:
      return "notifier";
    case ZapReason::kAttributes:
      return "attributes";
    case ZapReason::kGmemPunch:
      return "gmem-punch";
    case ZapReason::kRoots:
      return "roots";
    case ZapReason::kCount:
      break;
  }
  return "?";
}

}  // namespace tdxsim
