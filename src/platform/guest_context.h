// What the VMCS, VMCB or TD VMCS tells the CPU about second-level translation and exits for
// one guest: the controls a logical CPU reads at VM entry.
#pragma once

#include <array>
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

// Page-modification logging (SDM Vol. 3 §29.3.6). With the "enable PML" secondary control
// set and EPT A/D on, each time the CPU sets a dirty flag in an EPT leaf for a guest access
// it writes the 4K-aligned GPA to entry `PML index` of the 4K log and decrements the index;
// an index outside 0–511 when a flag is to be set is a PML-full VM exit instead.
inline constexpr uint16_t kPmlEntries = 512;
struct PmlLog {
  std::array<uint64_t, kPmlEntries> gpa{};
};

// The VMCS encodings of PML's fields (SDM Vol. 3 Appendix B) and its control bit, for
// whoever reads or writes them by number.
enum class VmcsField : uint32_t {
  kGuestPmlIndex = 0x0812,
  kPmlAddress = 0x200E,
};
enum class SecondaryExecControl : uint32_t {
  kEnableEpt = 1u << 1,
  kEnableVpid = 1u << 5,
  kEnablePml = 1u << 17,
  kEptViolationVe = 1u << 18,
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
  // Page-modification logging (VMX only): the "enable PML" control, the PML address (the
  // log lives in the hypervisor's memory, as the VE information area does) and the guest PML
  // index, which the CPU decrements as it logs.
  bool enable_pml = false;
  PmlLog* pml_address = nullptr;
  uint16_t pml_index = kPmlEntries - 1;

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
