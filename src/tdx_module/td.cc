#include "tdx_module/td.h"

#include "base/check.h"

namespace tdxsim {

const char* to_string(TdLifecycle s) {
  switch (s) {
    case TdLifecycle::kHkidAssigned: return "TD_HKID_ASSIGNED";
    case TdLifecycle::kKeysConfigured: return "TD_KEYS_CONFIGURED";
    case TdLifecycle::kBlocked: return "TD_BLOCKED";
    case TdLifecycle::kTeardown: return "TD_TEARDOWN";
  }
  return "?";
}

const char* to_string(TdOpState s) {
  switch (s) {
    case TdOpState::kUninitialized: return "OP_STATE_UNINITIALIZED";
    case TdOpState::kInitialized: return "OP_STATE_INITIALIZED";
    case TdOpState::kRunnable: return "OP_STATE_RUNNABLE";
  }
  return "?";
}

const char* to_string(VcpuState s) {
  switch (s) {
    case VcpuState::kCreated: return "VCPU_CREATED";
    case VcpuState::kReady: return "VCPU_READY";
    case VcpuState::kActive: return "VCPU_ACTIVE";
    case VcpuState::kDisabled: return "VCPU_DISABLED";
  }
  return "?";
}

Pfn Td::sept_root() const {
  TDXSIM_CHECK(tdcs_pages.size() > kTdcsSeptRootPageIndex, "TD {} has {} TDCS pages, no S-EPT root",
               tdr, tdcs_pages.size());
  return tdcs_pages[kTdcsSeptRootPageIndex];
}

}  // namespace tdxsim
