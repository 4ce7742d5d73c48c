// The table of built-in scenarios.
#include <algorithm>

#include "scenarios/scenario.h"

namespace tdxsim {

void run_default(const ScenarioOptions&, Report&);
void run_td_lifecycle(const ScenarioOptions&, Report&);
void run_private_mem_conversions(const ScenarioOptions&, Report&);
void run_tdx_upm_explicit(const ScenarioOptions&, Report&);
void run_tdx_upm_implicit(const ScenarioOptions&, Report&);
void run_memslot_delete_private(const ScenarioOptions&, Report&);
void run_memslot_move(const ScenarioOptions&, Report&);
void run_removal_under_contention(const ScenarioOptions&, Report&);
void run_hyperv_vmx_root_tracking(const ScenarioOptions&, Report&);
void run_vmx_on_tdx_host(const ScenarioOptions&, Report&);
void run_hyperv_svm_enlightened_tlb(const ScenarioOptions&, Report&);
void run_hyperv_vmx_huge_leaf_flush(const ScenarioOptions&, Report&);
void run_tdp_zap_yield(const ScenarioOptions&, Report&);
void run_notifier_during_fast_zap(const ScenarioOptions&, Report&);
void run_td_shared_unmap_during_fast_zap(const ScenarioOptions&, Report&);
void run_fault_on_obsolete_root(const ScenarioOptions&, Report&);
void run_td_image_page_add_busy(const ScenarioOptions&, Report&);
void run_td_failed_entry_after_nmi(const ScenarioOptions&, Report&);
void run_td_convert_while_running(const ScenarioOptions&, Report&);
void run_td_private_fault_busy(const ScenarioOptions&, Report&);
void run_td_shared_alias_memslot(const ScenarioOptions&, Report&);
void run_pml_dirty_log_aging(const ScenarioOptions&, Report&);
void run_td_stress(const ScenarioOptions&, Report&);
void run_td_race_small(const ScenarioOptions&, Report&);

namespace {

constexpr ScenarioInfo kScenarios[] = {
    {"default",
     "a TD of 4 vCPUs and 4 GiB built with a measured image; guests accept and fill all of it, "
     "convert a quarter to shared and back under host memory pressure, a memslot is deleted, "
     "and teardown returns every frame",
     run_default,
     {true, true, "tdx"}},
    {"td_lifecycle",
     "a TD built with a measured image (PAGE.ADD, MR.EXTEND, MR.FINALIZE), 4 vCPUs moving "
     "between packages accept and fill all private memory, then teardown returns every frame "
     "and leaves the PAMT clean",
     run_td_lifecycle,
     {false, false, "tdx"}},
    {"private_mem_conversions",
     "KVM's private_mem_conversions_test on a software-protected VM and a TD: 1 and 4 vCPUs, 1 "
     "and 2 memslots over one guest_memfd, with and without punch-hole; host and guest views "
     "checked at every step",
     run_private_mem_conversions,
     {false, false, ""}},
    {"tdx_upm_explicit",
     "the TDX selftest tdx_upm_test, explicit: a 40 KiB focus area converted to shared and back "
     "by MapGPA, each side checking the other's writes; private data never reaches the host",
     run_tdx_upm_explicit,
     {false, false, "tdx"}},
    {"tdx_upm_implicit",
     "tdx_upm_test, implicit: the same conversions made by touching the other alias, which KVM "
     "turns into memory-fault exits the VMM answers by converting",
     run_tdx_upm_implicit,
     {false, false, "tdx"}},
    {"memslot_delete_private",
     "private_mem_kvm_exits_test: deleting the memslot under a private access loop gives "
     "EFAULT with a memory-fault exit (slot GPA, 4096, private), on a software-protected VM "
     "and a TD",
     run_memslot_delete_private,
     {false, false, ""}},
    {"memslot_move",
     "set_memory_region_test's move and delete on a plain VMX VM with a THP slot, quirk on and "
     "off: MMIO exits while the slot is gone, never stale data",
     run_memslot_move,
     {false, false, "default"}},
    {"removal_under_contention",
     "4 vCPUs run while the host converts private memory to shared: every removal is BLOCK, "
     "TRACK, kick, REMOVE, and forced OPERAND_BUSY on each is retried once with entry blocked",
     run_removal_under_contention,
     {false, false, "tdx"}},
    {"hyperv_vmx_root_tracking",
     "a VMX VM on Hyper-V: remote flushes are GPA-flush hypercalls, one per distinct vCPU root "
     "(one when all share a root, each after a fast zap leaves them diverged); a ranged flush "
     "names exactly the zapped range; no stale translation used",
     run_hyperv_vmx_root_tracking,
     {false, false, "default"}},
    {"vmx_on_tdx_host",
     "a TD and a plain VMX VM on a bare-metal TDX host sharing one vendor table: no Hyper-V "
     "root tracking or hypercall ever happens (seed 000)",
     run_vmx_on_tdx_host,
     {false, false, ""}},
    {"hyperv_svm_enlightened_tlb",
     "an SVM VM on Hyper-V with the enlightened NPT TLB: memory zapped, a freed root's page "
     "reused as a new root mapping the same GPAs to other frames; no stale GPA translation is "
     "used (seed 003)",
     run_hyperv_svm_enlightened_tlb,
     {false, false, "default"}},
    {"hyperv_vmx_huge_leaf_flush",
     "a VMX VM on Hyper-V: a 2M leaf replaces a page table that another vCPU's "
     "paging-structure cache still names (the slot stopped dirty logging); the table's frame "
     "is reused by another slot's page table, and that vCPU must read the region's own page",
     run_hyperv_vmx_huge_leaf_flush,
     {false, false, "default"}},
    {"tdp_zap_yield",
     "a VMX VM whose zaps yield mmu_lock every 4 entries: the guest fills 1 MiB of 4K pages, "
     "kvm_zap_gfn_range and the slot's deletion each leave their range unmapped in every "
     "root, and no lock assertion warns on the fault path",
     run_tdp_zap_yield,
     {false, false, "default"}},
    {"notifier_during_fast_zap",
     "a VMX VM deletes a slot (quirk on: every root invalidated, zapped under the read lock, "
     "yielding after each entry) while the host reclaims another slot: the notifier's unmap "
     "runs in the zap's yield and, once it returns, no root, the invalid one included, maps "
     "the reclaimed range",
     run_notifier_during_fast_zap,
     {false, false, "default"}},
    {"td_shared_unmap_during_fast_zap",
     "a TD fills two shared slots; the memslot generation's MMIO bits wrap, fast-zapping the "
     "direct roots under the read lock (yielding after each entry), while the host reclaims "
     "one shared slot: once the alias-filtered unmap returns, no direct root, the invalid one "
     "included, maps it",
     run_td_shared_unmap_during_fast_zap,
     {false, false, "tdx"}},
    {"fault_on_obsolete_root",
     "a VMX VM's fault is held before mmu_lock while a memslot update wraps the generation's "
     "MMIO bits and fast-zaps every root: the fault finds its root obsolete and retries on a "
     "new one, and every page-table page stays freed or reachable",
     run_fault_on_obsolete_root,
     {false, false, "default"}},
    {"td_image_page_add_busy",
     "a TD's initial image where the module answers the first TDH.MEM.PAGE.ADD with "
     "OPERAND_BUSY: KVM returns EBUSY, the mirror keeps no leaf the S-EPT lacks, the retried "
     "region and the finalized TD are whole",
     run_td_image_page_add_busy,
     {false, false, "tdx"}},
    {"td_failed_entry_after_nmi",
     "an NMI exit from a TD, then a TD entry refused with TDX_TSC_ROLLBACK (low bits 0, R9 "
     "still the NMI's): the NMI is handled once, the failed entry reaches userspace as an "
     "internal error, and the TD runs on (seed 002)",
     run_td_failed_entry_after_nmi,
     {false, false, "tdx"}},
    {"td_convert_while_running",
     "2 vCPUs verify their private memory while the host converts another private region to "
     "shared: each removal blocks, tracks and kicks the running vCPUs before REMOVE, the host "
     "never sees the guests' data, and the mirror agrees with the S-EPT",
     run_td_convert_while_running,
     {false, false, "tdx"}},
    {"td_private_fault_busy",
     "a TD vCPU's first private fault finds TDH.MEM.PAGE.AUG busy eight times in a row: KVM "
     "retries without sending the vCPU back into the guest to fault again (the module's "
     "zero-step mitigation counts such entries), and the page is mapped",
     run_td_private_fault_busy,
     {false, false, "tdx"}},
    {"td_shared_alias_memslot",
     "a VMM asks for a memslot at a TD's shared bit, as if the shared half were memory of its "
     "own: KVM refuses it (one memslot serves both halves; the shared bit is the MMU's), and "
     "the TD runs, converting part of its memory to shared for the host to read",
     run_td_shared_alias_memslot,
     {false, false, "tdx"}},
    {"pml_dirty_log_aging",
     "a VMX VM with PML dirty-logs one page: the host ages it while the guest writes it (the "
     "CPU sets D inside KVM's clear of A), logging restarts, the guest writes again and the "
     "harvest must report the page",
     run_pml_dirty_log_aging,
     {false, false, "default"}},
    {"td_stress",
     "the workload `tdxsim stress` varies: the vCPUs of a small TD share its 2 MiB regions page "
     "by page, each in its seed's order — accept, fill, verify, an eighth to shared and back — "
     "so that their faults race to build the same page tables and AUG neighbouring pages",
     run_td_stress,
     {true, true, "tdx"}},
    {"td_race_small",
     "td_stress for 2 vCPUs and 16 pages of one 2 MiB region, a few dozen operations: what "
     "`tdxsim explore` enumerates schedules of",
     run_td_race_small,
     {false, false, "tdx"}},
};

constexpr BugRow kBugRows[] = {
    {BugId::S0, "vmx_on_tdx_host",
     "VMX takes a non-null remote-flush op for Hyper-V's: on a TDX host a plain VMX VM does "
     "Hyper-V root tracking (seed 000)"},
    {BugId::S1, "tdx_upm_explicit",
     "the MMU notifier's unmap, before the attribute filter, zapped every alias of the GFNs "
     "its host range covered: reclaiming the VMM's shared pages took the TD's private pages "
     "at the same GFNs out of the S-EPT, and their contents with them (seed 001)"},
    {BugId::S3, "hyperv_svm_enlightened_tlb",
     "with Hyper-V's enlightened NPT TLB, SVM's flush of a newly loaded root is only an ASID "
     "flush: a freed root reused at the same HPA serves the L0's stale GPA translations "
     "(seed 003)"},
    {BugId::M3, "hyperv_vmx_huge_leaf_flush",
     "the TLB flush after a huge leaf replaced a page table started at the base gfn of the "
     "table holding the entry, not at the entry's own gfn: on Hyper-V the list flush missed "
     "the region, and a CPU's paging-structure cache walked the freed table's reused frame"},
    {BugId::M2, "tdp_zap_yield",
     "CVE-2022-45869: the TDP MMU's page fault, holding mmu_lock for read, called "
     "make_mmu_pages_available, which needs it for write (the shadow MMU's page list)"},
    {BugId::M4, "notifier_during_fast_zap",
     "the MMU notifier's unmap skipped invalid roots while a fast zap yielded: the invalid root "
     "kept mapping the reclaimed frames after the unmap returned (use-after-free)"},
    {BugId::M6, "fault_on_obsolete_root",
     "a fault that got mmu_lock after a memslot update invalidated its vCPU's root, and after "
     "the root's zap, installed there anyway: the tables it built outlived the root's last "
     "put, leaked"},
    {BugId::M8, "tdp_zap_yield",
     "after a zap yielded mmu_lock and restarted its walk, the iterator stepped past the entry "
     "it had yielded at, leaving that entry's mappings in the zapped range"},
    {BugId::T4, "td_shared_unmap_during_fast_zap",
     "the alias-filtered unmap (TDX's root types: shared alias = direct roots) forgot invalid "
     "roots: a direct root being fast-zapped kept mapping the reclaimed shared frames (M4 "
     "again)"},
    {BugId::S2, "td_failed_entry_after_nmi",
     "TD-entry errors decoded as exits: a failed TDH.VP.ENTER whose low 16 bits read "
     "\"exception or NMI\", with the previous exit's NMI information still in R9, ran the "
     "host's NMI handler for an NMI that never came (seed 002)"},
    {BugId::T3, "td_image_page_add_busy",
     "a TDH.MEM.PAGE.ADD that failed during KVM_TDX_INIT_MEM_REGION left its \"premapped\" "
     "mirror SPTE behind: KVM's mirror mapped a page the S-EPT never had"},
    {BugId::T12, "td_convert_while_running",
     "a private page removed without BLOCK → TRACK → kick: TDH.MEM.PAGE.REMOVE answered "
     "TDX_TLB_TRACKING_NOT_DONE, and KVM (which also ignored a failed BLOCK) went on as if "
     "the page were gone instead of bugging the VM"},
    {BugId::M9, "pml_dirty_log_aging",
     "KVM cleared an SPTE's accessed bit under mmu_lock with a plain read and store: a dirty "
     "bit the CPU set in between was lost, so restarting dirty logging flushed nothing and the "
     "guest's next write, through a TLB entry still dirty, was never logged"},
    {BugId::T1, "td_private_fault_busy",
     "a private fault that met TDX_OPERAND_BUSY went back into the guest to fault again, a "
     "blind retry by re-entry: with a busy S-EPT that livelocks, and each same-RIP fault counts "
     "toward the module's zero-step mitigation"},
    {BugId::T7, "td_shared_alias_memslot",
     "a memslot whose gfns carry the shared bit was accepted: with the bit added only inside "
     "the TDP iterator, such a slot aliases the private and shared halves"},
    {BugId::T5, "td_lifecycle",
     "the MMU-notifier release at process exit (exit_mm comes before the VM's fd is closed) "
     "zapped the TD's valid mirror roots while it still held its HKID: private pages removed "
     "early, S-EPT tables freed out of the module's teardown order (KVM bugs the VM and "
     "leaks them)"},
};

// Bugs planted for tdxsim's own tests: switches like the rows, but no bug of the past.
constexpr BugRow kPlantedBugs[] = {
    {BugId::P1, "td_stress",
     "planted: the fault path publishes a mirror SPTE before its S-EPT entry exists (no FROZEN "
     "step): a vCPU that walks in between maps below a page table the S-EPT lacks, and the "
     "module's walk fails"},
    {BugId::P2, "td_stress",
     "planted: a leaf zap stops one page short of its range's end, so every conversion, punch "
     "and invalidation leaves its last page mapped (what the property tests must catch and "
     "shrink)"},
};

}  // namespace

std::span<const BugRow> planted_bugs() {
  return kPlantedBugs;
}

std::span<const ScenarioInfo> builtin_scenarios() {
  return kScenarios;
}

std::span<const BugRow> bug_rows() {
  return kBugRows;
}

const BugRow* find_switch(BugId id) {
  for (std::span<const BugRow> rows : {bug_rows(), planted_bugs()}) {
    auto it = std::ranges::find(rows, id, &BugRow::id);
    if (it != rows.end()) return &*it;
  }
  return nullptr;
}

const ScenarioInfo* find_scenario(std::string_view name) {
  auto it = std::ranges::find(kScenarios, name, &ScenarioInfo::name);
  return it == std::end(kScenarios) ? nullptr : &*it;
}

}  // namespace tdxsim
