// What one guest-physical translation produces: a translation, or the fault hardware
// raises. Shared by the EPT and NPT walkers, the TLBs and the logical CPUs.
#pragma once

#include <cstdint>
#include <expected>
#include <variant>

#include "base/addr.h"
#include "platform/key_id.h"

namespace tdxsim {

enum class PagingFormat : uint8_t { kEpt, kNpt };

enum class AccessType : uint8_t { kRead, kWrite, kFetch };

// One memory access as the CPU issues it to the second-level translation.
struct AccessRequest {
  AccessType type = AccessType::kRead;
  // CPL 3 access (EPT mode-based execute control: user fetches check bit 10, not bit 2).
  bool user_mode = false;
  // The guest linear address that produced the GPA, when there was one (qualification bit 7).
  bool gla_valid = true;
  // With gla_valid: false when the access is to a guest paging-structure entry (bit 8 = 0;
  // NPT error-code bit 33 instead of bit 32).
  bool final_translation = true;
};

// Effective permissions of a translation: the AND over every level walked.
// For NPT, read is present+user (all NPT accesses are user accesses), write is RW,
// exec is !NX; user_exec mirrors exec.
struct Perms {
  bool read = false;
  bool write = false;
  bool exec = false;       // EPT bit 2 (supervisor-mode execute under MBEC)
  bool user_exec = false;  // EPT bit 10 under MBEC; equal to exec otherwise
  bool operator==(const Perms&) const = default;
  // True if every access `*this` allows, `o` allows too.
  bool subset_of(const Perms& o) const {
    return (!read || o.read) && (!write || o.write) && (!exec || o.exec) &&
           (!user_exec || o.user_exec);
  }
  bool allows(const AccessRequest& a) const {
    switch (a.type) {
      case AccessType::kRead: return read;
      case AccessType::kWrite: return write;
      case AccessType::kFetch: return a.user_mode ? user_exec : exec;
    }
    return false;
  }
};

struct Translation {
  Gpa gpa;         // the page-aligned GPA of the leaf (aligned to `level`)
  Hpa hpa;         // the leaf's frame base, key bits stripped
  KeyId key;       // the key ID carried in the leaf's address bits
  Level level = Level::k4K;
  Perms perms;
  uint64_t leaf = 0;     // the leaf entry as read (after any A/D update)
  Hpa leaf_entry_hpa;    // where the leaf lives
  // This walk set the leaf's dirty flag (0 → 1): what page-modification logging records.
  bool dirty_set = false;
  // For a 4K leaf: the page table holding it and the AND / OR of the entries above that
  // table, what a paging-structure cache keeps of the walk (unset for larger leaves).
  Hpa leaf_table;
  uint64_t upper_all = ~uint64_t{0};
  uint64_t upper_any = 0;
  // The frame that backs `addr`, which must lie inside this translation.
  Hpa hpa_of(Gpa addr) const { return hpa + (addr.raw() - gpa.raw()); }
};

// EPT violation (VM exit 48). The qualification is the SDM's (Vol. 3, Table 28-7).
struct EptViolation {
  Gpa gpa;
  uint64_t qualification = 0;
  Level level = Level::k4K;  // level of the entry that stopped the walk
  // The suppress-#VE bit (63) of that entry: clear means a #VE is delivered instead of an
  // exit when the guest enabled EPT-violation #VE.
  bool suppress_ve = true;
};

// EPT misconfiguration (VM exit 49): only the GPA is reported.
struct EptMisconfig {
  Gpa gpa;
  Level level = Level::k4K;  // for tests and traces; hardware does not report it
};

// Nested page fault (#VMEXIT_NPF): EXITINFO1 is the error code, EXITINFO2 the GPA.
struct NptFault {
  Gpa gpa;
  uint64_t error_code = 0;
  Level level = Level::k4K;
};

// Page-modification log full (VM exit 62, SDM Vol. 3 §29.3.6): the access would have set a
// dirty flag while the PML index was outside 0–511. Neither the flag nor the log changed and
// the instruction did not retire.
struct PmlFull {
  Gpa gpa;
};

// Machine check (#MC, vector 18): the walk read an entry from a table page poisoned for the
// key it reads tables with (a TD's S-EPT page written with another key: TDX's integrity
// check failed). Nothing was translated; the instruction did not retire.
struct MachineCheck {
  Gpa gpa;
  Hpa entry_hpa;  // the poisoned entry
};

using TranslationFault = std::variant<EptViolation, EptMisconfig, NptFault, PmlFull, MachineCheck>;
using WalkResult = std::expected<Translation, TranslationFault>;

}  // namespace tdxsim
