// The S-EPT census: what a TD's Secure EPT really holds, read through the host ABI only
// (TDH.MEM.SEPT.RD from the root down, as a host debugging a TD could), and where it
// disagrees with KVM's mirror of it.
//
// KVM never reads the S-EPT back: it assumes that every change it made to the mirror was
// reflected by a successful SEAMCALL. The census checks that assumption from outside — a
// mirror leaf the module never mapped, a module leaf KVM forgot, another PFN or level — so
// it catches whatever path let the two drift apart without knowing which one did.
//
// Cost: one SEAMCALL per entry of every S-EPT table page (512 per page), so about one per
// 4K page mapped plus 1/512 of that; each walks the module's S-EPT from the root. Docs:
// docs/invariants.md, `mirror_matches_sept`.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace tdxsim {

class KvmVm;
class LogicalCpu;

struct SeptCensus {
  // S-EPT leaves by level: 4K, 2M, 1G (any leaf state: MAPPED, PENDING, blocked ones).
  std::array<uint64_t, 3> leaves{};
  // S-EPT table pages by the level of the entries they hold: [0] page tables (4K
  // entries), [1] page directories, [2] PDPTs, [3] the root (512G entries).
  std::array<uint64_t, 4> tables{};
  // Disagreements with the mirror root, each with its GPA; at most kMaxEvidence, then one
  // line counting the rest. Also a SEPT.RD that failed (the census is then partial).
  std::vector<std::string> mismatches;
  uint64_t mirror_leaves = 0;  // present leaves in KVM's mirror root
  uint64_t sept_reads = 0;     // TDH.MEM.SEPT.RD calls made

  static constexpr size_t kMaxEvidence = 16;
};

// Takes the census of `vm`'s S-EPT and compares it with the mirror root. A VM that is not a
// TD, or a TD whose S-EPT the module does not let the host read (before KVM_TDX_INIT_VM,
// after the HKID release), gives an empty census.
// REQUIRES: the calling thread is bound to `cpu` (the SEAMCALLs run there); a quiescent
// point: no vCPU in the guest and no MMU work in flight (a removal caught half-way would
// read as a mismatch). Takes mmu_lock for read while it reads the mirror.
SeptCensus take_sept_census(KvmVm& vm, LogicalCpu& cpu);

}  // namespace tdxsim
