#include "platform/seamcall.h"

#include "base/fault_injection.h"
#include "platform/logical_cpu.h"
#include "platform/platform.h"

namespace tdxsim {

const char* to_string(SeamcallInsnFault f) {
  switch (f) {
    case SeamcallInsnFault::kNone: return "none";
    case SeamcallInsnFault::kUd: return "#UD";
    case SeamcallInsnFault::kGp: return "#GP";
    case SeamcallInsnFault::kVmFailInvalid: return "VMfailInvalid";
  }
  return "?";
}

namespace {

// The instruction: either it faults/VMfails before the module runs, or SEAM mode handles it.
SeamcallInsnFault execute_seamcall(LogicalCpu& cpu, SeamcallRegs& regs) {
  cpu.assert_current();
  Platform& platform = cpu.platform();
  // An environment fault aimed at this leaf (RAX bits 15:0) or at any leaf.
  if (auto f = platform.faults().take(EnvFaultKind::kFailSeamcallInsn, regs.rax & 0xFFFF))
    return static_cast<SeamcallInsnFault>(*f);
  if (platform.seam_module() == nullptr) return SeamcallInsnFault::kVmFailInvalid;
  platform.seam_module()->seamcall(cpu, regs);
  return SeamcallInsnFault::kNone;
}

}  // namespace

uint64_t host_seamcall(LogicalCpu& cpu, SeamcallRegs& regs) {
  switch (execute_seamcall(cpu, regs)) {
    case SeamcallInsnFault::kNone: return regs.rax;
    case SeamcallInsnFault::kUd: return linux_status::kSeamcallUd;
    case SeamcallInsnFault::kGp: return linux_status::kSeamcallGp;
    case SeamcallInsnFault::kVmFailInvalid: return linux_status::kSeamcallVmFailInvalid;
  }
  return linux_status::kSwError;
}

}  // namespace tdxsim
