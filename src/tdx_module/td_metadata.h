// TD-scope metadata: the TDCS fields TDH.MNG.RD/WR (debug_leaves.cc) reach by field ID.
//
// A field ID (module md_field_id_t) packs the field code (23:0), element size (33:32),
// sequence bits, the context code (54:52: 0 SYS, 1 TD, 2 vCPU), the class (61:56) and a
// non-architectural flag (63). TDH.MNG.RD/WR overwrite the context code with TD before
// looking the field up, so an ID names the same field whatever context it carries.
//
// tdxsim knows the TDCS fields whose IDs shared/spec/tdx-module-abi.md §1.5 gives (Linux
// arch/x86/include/asm/shared/tdx.h); those are ABI values. Every other ID, TDCS fields
// tdxsim has state for included (ATTRIBUTES, MAX_VCPUS, NUM_VCPUS, TD_EPOCH, ...), is not
// supported: the leaves answer TDX_METADATA_FIELD_ID_INCORRECT (docs/abi.md).
#pragma once

#include <cstdint>
#include <optional>

#include "base/bitfield.h"
#include "tdx_module/td.h"

namespace tdxsim {

namespace td_field {
inline constexpr uint64_t kNotifyEnables = 0x9100'0000'0000'0010;
inline constexpr uint64_t kConfigFlags = 0x1110'0003'0000'0016;
inline constexpr uint64_t kTdCtls = 0x1110'0003'0000'0017;
}  // namespace td_field

// MD_FIELD_ID_NA: TDH.MNG.RD version 1's "no next field".
inline constexpr uint64_t kMdFieldIdNa = ~uint64_t{0};
inline constexpr uint64_t kMdContextMask = bit_range(54, 52);
inline constexpr uint64_t kMdContextTd = uint64_t{1} << 52;

// `id` with the TD context code, as TDH.MNG.RD/WR look it up.
constexpr uint64_t td_field_id(uint64_t id) { return (id & ~kMdContextMask) | kMdContextTd; }
// The null field ID (all bits but the context code zero): version 1's "first field" query.
constexpr bool is_null_field_id(uint64_t id) { return (id & ~kMdContextMask) == 0; }

// Returns: field `id`'s value in `td`, or nullopt for a field tdxsim does not know.
// REQUIRES: the TDR lock held and op_state at least INITIALIZED (td.h).
std::optional<uint64_t> read_td_field(const Td& td, uint64_t id);

// TDH.MNG.RD version 1's enumeration, in tdxsim's order (ascending ID, TD context): the
// first field, and the field after `id` (kMdFieldIdNa after the last or an unknown one).
uint64_t first_td_field();
uint64_t next_td_field(uint64_t id);

}  // namespace tdxsim
