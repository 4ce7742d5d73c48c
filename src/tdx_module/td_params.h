// TD_PARAMS: the page TDH.MNG.INIT reads the TD's configuration from (TDX module
// include/tdx_api_defs.h td_params_t, Linux struct td_params; shared/spec/tdx-module-abi.md
// §1.2 leaf 21): 1024 bytes, 1024-aligned, in host-keyed memory. Only the fields tdxsim
// checks are here; the module reads the rest (XFAM, CPUID configuration, …) as zero.
//
// The byte offsets and attribute bits are ABI: DO NOT CHANGE THEM.
#pragma once

#include <cstdint>

#include "base/addr.h"
#include "platform/host_memory.h"

namespace tdxsim {

// TD_PARAMS.ATTRIBUTES bits tdxsim accepts (abi §8.3; module td_param_attributes_t).
inline constexpr uint64_t kTdAttrDebug = uint64_t{1} << 0;
inline constexpr uint64_t kTdAttrSeptVeDisable = uint64_t{1} << 28;

inline constexpr uint64_t kTdParamsAlign = 1024;

// Byte offsets of the fields tdxsim reads.
namespace td_params_offset {
inline constexpr uint64_t kAttributes = 0;     // u64
inline constexpr uint64_t kMaxVcpus = 16;      // u16 (in the word at 16, with XFAM at 8)
inline constexpr uint64_t kEptpControls = 24;  // u64: bits 2:0 memory type, 5:3 PWL
inline constexpr uint64_t kConfigFlags =
    32;  // u64: bit 0 GPAW, 1 FLEXIBLE_PENDING_VE, 2 NO_RBP_MOD
}  // namespace td_params_offset

// The defaults give what KVM creates unless told otherwise: a TD whose guest is not sent a
// #VE for a PENDING page, one vCPU, a 4-level write-back S-EPT, GPAW 48.
struct TdParams {
  uint64_t attributes = kTdAttrSeptVeDisable;
  uint16_t max_vcpus = 1;
  uint64_t eptp_controls = 6 | (3 << 3);  // WB, PWL 3 (4-level)
  uint64_t config_flags = 0;
};

// Fills the host page at `page` as KVM fills struct td_params before TDH.MNG.INIT.
// REQUIRES: `page` is a host-keyed frame (1024-aligned, as every frame is).
inline void write_td_params(HostMemory& mem, Hpa page, const TdParams& p) {
  mem.fill(page.pfn(), kHostKey, 0);
  mem.write(page + td_params_offset::kAttributes, kHostKey, p.attributes);
  mem.write(page + td_params_offset::kMaxVcpus, kHostKey, p.max_vcpus);
  mem.write(page + td_params_offset::kEptpControls, kHostKey, p.eptp_controls);
  mem.write(page + td_params_offset::kConfigFlags, kHostKey, p.config_flags);
}

}  // namespace tdxsim
