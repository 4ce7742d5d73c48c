#include "platform/table_builder.h"

#include "base/check.h"
#include "platform/ept_entry.h"
#include "platform/npt_entry.h"

namespace tdxsim {

TableBuilder::TableBuilder(HostMemory& mem, PagingFormat format, unsigned levels, KeyId table_key)
    : mem_(mem), format_(format), levels_(levels), table_key_(table_key) {
  TDXSIM_CHECK(levels == 4 || levels == 5, "{} paging levels", levels);
  auto pfn = mem_.alloc_frame();
  TDXSIM_CHECK(pfn.has_value(), "out of host memory for a root table");
  adopt(*pfn);
  root_ = pfn->hpa();
}

void TableBuilder::adopt(Pfn pfn) {
  // A re-keyed frame's old contents are garbage under the new key: initialise it with the
  // table's key (the TDX module does the same with MOVDIR64B for S-EPT pages).
  if (!table_key_.is_host()) {
    mem_.set_key(pfn, table_key_);
    mem_.fill(pfn, table_key_, 0);
  }
  tables_.push_back(pfn);
}

uint64_t TableBuilder::non_leaf_value(Hpa table) const {
  if (format_ == PagingFormat::kEpt)
    return EptEntry{}.with_read(true).with_write(true).with_exec(true).with_user_exec(true)
        .with_addr(table.raw()).raw();
  return NptEntry{}.with_present(true).with_writable(true).with_user(true)
      .with_addr(table.raw()).raw();
}

uint64_t TableBuilder::leaf_value(Hpa hpa, Level level, Perms perms, KeyId key,
                                  uint64_t extra) const {
  const uint64_t pa = mem_.layout().with_key(hpa, key);
  const bool large = level != Level::k4K;
  if (format_ == PagingFormat::kEpt) {
    return EptEntry{}.with_read(perms.read).with_write(perms.write).with_exec(perms.exec)
               .with_user_exec(perms.user_exec).with_mem_type(EptMemType::kWB)
               .with_page_size(large).with_addr(pa).raw() | extra;
  }
  return NptEntry{}.with_present(perms.read).with_writable(perms.write).with_user(true)
             .with_nx(!perms.exec).with_page_size(large).with_addr(pa).raw() | extra;
}

bool TableBuilder::present(uint64_t entry) const {
  return format_ == PagingFormat::kEpt ? (entry & 7) != 0 : (entry & 1) != 0;
}

Hpa TableBuilder::next_table(uint64_t entry) const {
  return mem_.layout().strip_key(entry & 0x000F'FFFF'FFFF'F000ull);
}

Hpa TableBuilder::find_table(Gpa gpa, Level level) const {
  Hpa table = root_;
  for (unsigned l = levels_; l > level_num(level); --l) {
    const uint64_t e = mem_.load(table + uint64_t{gpa.index(level_from(l))} * 8, table_key_,
                                 std::memory_order_acquire);
    TDXSIM_CHECK(present(e), "no {} table on the path of {}", level_name(level_from(l - 1)), gpa);
    table = next_table(e);
  }
  return table;
}

Hpa TableBuilder::ensure_table(Gpa gpa, Level level) {
  Hpa table = root_;
  for (unsigned l = levels_; l > level_num(level); --l) {
    const Hpa slot = table + uint64_t{gpa.index(level_from(l))} * 8;
    uint64_t e = mem_.load(slot, table_key_, std::memory_order_acquire);
    if (!present(e)) {
      auto pfn = mem_.alloc_frame();
      TDXSIM_CHECK(pfn.has_value(), "out of host memory for page tables");
      adopt(*pfn);
      e = non_leaf_value(pfn->hpa());
      mem_.store(slot, table_key_, e, std::memory_order_release);
    }
    table = next_table(e);
  }
  return table;
}

Hpa TableBuilder::map(Gpa gpa, Hpa hpa, Level level, Perms perms, KeyId key, uint64_t extra) {
  TDXSIM_CHECK(gpa.is_aligned(level) && hpa.is_aligned(level), "map {} -> {} at {} misaligned",
               gpa, hpa, level_name(level));
  const Hpa slot = ensure_table(gpa, level) + uint64_t{gpa.index(level)} * 8;
  mem_.store(slot, table_key_, leaf_value(hpa, level, perms, key, extra),
             std::memory_order_release);
  return slot;
}

Hpa TableBuilder::entry_hpa(Gpa gpa, Level level) const {
  return find_table(gpa, level) + uint64_t{gpa.index(level)} * 8;
}

uint64_t TableBuilder::read_entry(Gpa gpa, Level level) const {
  return mem_.load(entry_hpa(gpa, level), table_key_, std::memory_order_acquire);
}

void TableBuilder::write_entry(Gpa gpa, Level level, uint64_t value) {
  mem_.store(entry_hpa(gpa, level), table_key_, value, std::memory_order_release);
}

}  // namespace tdxsim
