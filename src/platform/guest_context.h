// What the VMCS, VMCB or TD VMCS tells the CPU about second-level translation and exits for
// one guest: the controls a logical CPU reads at VM entry.
#pragma once

#include <cstdint>

#include "base/addr.h"
#include "platform/eptp.h"
#include "platform/key_id.h"
#include "platform/vm_exit.h"

namespace tdxsim {

// The virtualization-exception information area (SDM Vol. 3 §25.5.7.2). The CPU writes it
// when it delivers a #VE and sets `busy` to 0xFFFFFFFF; while busy, a further EPT violation
// that would be a #VE is a VM exit instead. The guest (or TDG.VP.VEINFO.GET) clears it.
struct VeInfoArea {
  uint32_t exit_reason = 0;  // 48
  uint32_t busy = 0;
  uint64_t qualification = 0;
  uint64_t gla = 0;
  uint64_t gpa = 0;
  uint16_t eptp_index = 0;
  static constexpr uint32_t kBusy = 0xFFFF'FFFF;
};

// SVM VMCB TLB_CONTROL (APM Vol. 2 §15.16.1), acted on at VMRUN.
enum class SvmTlbControl : uint8_t {
  kNothing = 0,
  kFlushAll = 1,
  kFlushAsid = 3,
  kFlushAsidNonGlobal = 7,
};

struct GuestContext {
  GuestMode mode = GuestMode::kVmx;

  // --- VMX and TD ---------------------------------------------------------------------
  // VMX: the EPT pointer. TD: the shared EPTP (KVM writes it with TDH.VP.WR).
  Eptp eptp;
  uint16_t vpid = 1;
  uint16_t pcid = 0;
  // EPT mode-based execute control (bit 10 of an entry is user execute).
  bool mbec = false;
  // "EPT-violation #VE" control and the area it writes.
  bool ve_enabled = false;
  VeInfoArea* ve_info = nullptr;

  // --- TD (SEAM): private GPAs through the secure EPT ----------------------------------
  Eptp secure_eptp;
  KeyId sept_key;            // the key the S-EPT pages are read with (the TD's HKID)
  unsigned shared_bit = 47;  // GPA bit that selects the shared EPT (47 or 51)

  // --- SVM ------------------------------------------------------------------------------
  Hpa ncr3;
  unsigned npt_levels = 4;
  uint16_t asid = 1;
  SvmTlbControl tlb_control = SvmTlbControl::kNothing;  // consumed by the next VMRUN

  // Instructions the guest may retire before a preemption-timer exit (0 = no limit).
  uint32_t instruction_budget = 4096;

  bool is_shared(Gpa gpa) const {
    return mode == GuestMode::kTd && ((gpa.raw() >> shared_bit) & 1) != 0;
  }
};

}  // namespace tdxsim
