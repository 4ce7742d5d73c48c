// KvmRun: what KVM_RUN tells userspace when it returns (struct kvm_run), and what userspace
// writes back before the next KVM_RUN (an MMIO read's data, a hypercall's return value).
// Exit reason values are the uapi's (include/uapi/linux/kvm.h).
#pragma once

#include <array>
#include <cstdint>

#include "base/addr.h"
#include "kvm/page_fault.h"

namespace tdxsim {

enum class KvmExitReason : uint32_t {
  kUnknown = 0,
  kException = 1,
  kIo = 2,
  kHypercall = 3,
  kHlt = 5,
  kMmio = 6,
  kShutdown = 8,
  kFailEntry = 9,
  kIntr = 10,
  kInternalError = 17,
  kSystemEvent = 24,
  kMemoryFault = 39,
  kTdx = 50,
};
const char* to_string(KvmExitReason r);

// KVM_HC_MAP_GPA_RANGE (include/uapi/linux/kvm_para.h) and its attribute bits.
inline constexpr uint64_t kKvmHcMapGpaRange = 12;
inline constexpr uint64_t kKvmMapGpaRangeEncrypted = uint64_t{1} << 4;
inline constexpr uint64_t kKvmMapGpaRangeDecrypted = 0;
// KVM_EXIT_HYPERCALL_LONG_MODE.
inline constexpr uint32_t kKvmExitHypercallLongMode = 1;
// KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON.
inline constexpr uint32_t kKvmInternalErrorUnexpectedExitReason = 4;
// KVM_SYSTEM_EVENT_TDX_FATAL.
inline constexpr uint32_t kKvmSystemEventTdxFatal = 6;

struct KvmRun {
  KvmExitReason exit_reason = KvmExitReason::kUnknown;

  // KVM_EXIT_MMIO: the guest accessed a GPA no memslot backs. For a read, userspace writes
  // `data` before the next KVM_RUN, which completes the access.
  struct Mmio {
    Gpa phys_addr;
    uint64_t data = 0;
    uint32_t len = 0;
    bool is_write = false;
  } mmio;

  // KVM_EXIT_HYPERCALL (KVM_HC_MAP_GPA_RANGE): userspace sets `ret` (0: done).
  struct Hypercall {
    uint64_t nr = 0;
    std::array<uint64_t, 6> args{};
    uint64_t ret = 0;
    uint32_t flags = 0;
  } hypercall;

  // KVM_EXIT_MEMORY_FAULT (KVM_RUN fails with EFAULT).
  MemoryFaultExit memory_fault{};

  // KVM_EXIT_FAIL_ENTRY.
  uint64_t fail_entry_hardware_reason = 0;
  unsigned fail_entry_cpu = 0;

  // KVM_EXIT_INTERNAL_ERROR.
  struct Internal {
    uint32_t suberror = 0;
    uint32_t ndata = 0;
    std::array<uint64_t, 16> data{};
  } internal;

  // KVM_EXIT_SYSTEM_EVENT.
  struct SystemEvent {
    uint32_t type = 0;
    uint32_t ndata = 0;
    std::array<uint64_t, 16> data{};
  } system_event;
};

}  // namespace tdxsim
