#include "kvm/mmu_page.h"

#include "base/check.h"
#include "kvm/spte.h"

namespace tdxsim {
namespace {

// The gfns one page-table page at `level` spans: 512 entries of level_pages(level) each.
constexpr uint64_t table_span(Level level) {
  return level_pages(level) * kPtesPerTable;
}

}  // namespace

MmuPage::MmuPage(HostMemory& mem, MmuPageRole role, Gfn gfn, Hpa spt)
    : mem_(mem), role_(role), gfn_(gfn), spt_(spt) {}

std::unique_ptr<MmuPage> MmuPage::create(HostMemory& mem, MmuPageRole role, Gfn gfn,
                                         bool with_external_spt) {
  TDXSIM_CHECK(!role.invalid, "a page created invalid");
  TDXSIM_CHECK(gfn.raw() % table_span(role.level) == 0, "{} table at {} misaligned",
               level_name(role.level), gfn);
  TDXSIM_CHECK(!with_external_spt || role.is_mirror, "an S-EPT page for a direct page");
  const std::optional<Pfn> spt = mem.alloc_frame();
  if (!spt) return nullptr;
  std::optional<Pfn> external;
  if (with_external_spt) {
    external = mem.alloc_frame();
    if (!external) {
      mem.free_frame(*spt);
      return nullptr;
    }
  }
  // Filled before anyone can see the page: the SPTE that links it is published with release.
  mem.fill(*spt, kHostKey, Spte::kNonPresentValue);
  std::unique_ptr<MmuPage> page{new MmuPage(mem, role, gfn, spt->hpa())};
  if (external) page->external_spt_ = external->hpa();
  return page;
}

std::unique_ptr<MmuPage> MmuPage::create_root(HostMemory& mem, MmuPageRole role,
                                              uint64_t refcount) {
  TDXSIM_CHECK(refcount > 0, "a root without references");
  std::unique_ptr<MmuPage> root = create(mem, role, Gfn{0});
  if (root) root->root_refcount_.store(refcount, std::memory_order_relaxed);
  return root;
}

// The poison is none of the values a table entry can hold.
static_assert(!Spte{kFreedTablePoison}.is_shadow_present());
static_assert(!Spte{kFreedTablePoison}.is_frozen() && kFreedTablePoison != Spte::kNonPresentValue);
static_assert(!Spte{kFreedTablePoison}.is_mmio(MmioValue::kEptMisconfig) &&
              !Spte{kFreedTablePoison}.is_mmio(MmioValue::kTdVe));
static_assert((kFreedTablePoison & (Spte::kEptRwxMask | NptEntry::Present::kMask)) == 0);

MmuPage::~MmuPage() {
  // A walker still in this table (one that outlived the grace period) reads the poison,
  // never what the frame holds next (an allocation hands it out zero-filled).
  mem_.fill(spt_.pfn(), kHostKey, kFreedTablePoison);
  mem_.free_frame(spt_.pfn());
  if (external_spt_) mem_.free_frame(external_spt_->pfn());
}

MmuPageRole MmuPage::role() const {
  MmuPageRole r = role_;
  r.invalid = invalid_.load(std::memory_order_acquire) != 0;
  return r;
}

Hpa MmuPage::sptep(unsigned index) const {
  TDXSIM_CHECK(index < kPtesPerTable, "SPTE index {}", index);
  return spt_ + uint64_t{index} * sizeof(uint64_t);
}

void MmuPage::mark_invalid() {
  invalid_.store(1, std::memory_order_release);
}

bool MmuPage::try_get_root() {
  uint64_t refs = root_refcount_.load(std::memory_order_relaxed);
  while (refs != 0) {
    // Acquire pairs with the release of a put that left the count non-zero: what the
    // previous holder did to the root happens before this holder uses it.
    if (root_refcount_.compare_exchange(refs, refs + 1, std::memory_order_acquire)) return true;
  }
  return false;
}

bool MmuPage::put_root() {
  const uint64_t before = root_refcount_.fetch_sub(1, std::memory_order_acq_rel);
  TDXSIM_CHECK(before != 0, "root refcount underflow");
  return before == 1;
}

}  // namespace tdxsim
