#include "kvm/vm_type.h"

namespace tdxsim {

const char* to_string(VmType t) {
  switch (t) {
    case VmType::kDefault:
      return "default";
    case VmType::kSwProtected:
      return "sw-protected";
    case VmType::kTdx:
      return "tdx";
  }
  return "?";
}

}  // namespace tdxsim
