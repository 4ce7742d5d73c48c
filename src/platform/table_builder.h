// Builds second-level page tables (EPT or NPT) in host memory directly, as firmware or a
// test harness would. KVM's MMU builds its own tables (through its single SPTE choke
// point); this is for the platform's tests, benchmarks and the `make run` demonstration,
// where the tables themselves are the subject.
//
// Thread safety: one thread builds; entries are published with release stores, so walks on
// other threads may run while it maps.
#pragma once

#include <cstdint>
#include <vector>

#include "base/addr.h"
#include "platform/host_memory.h"
#include "platform/key_id.h"
#include "platform/translation.h"

namespace tdxsim {

class TableBuilder {
 public:
  // Allocates the root table. `table_key` is the key the tables are written with (a TD's
  // HKID for an S-EPT-like table, the host key otherwise).
  TableBuilder(HostMemory& mem, PagingFormat format, unsigned levels, KeyId table_key = kHostKey);

  Hpa root() const { return root_; }
  PagingFormat format() const { return format_; }
  unsigned levels() const { return levels_; }

  // Maps [gpa, gpa + level_bytes(level)) to `hpa` (with `key` in the address bits) with
  // `perms`, allocating intermediate tables. EPT leaves get memory type WB; NPT leaves are
  // present+user. `extra` is OR-ed into the leaf (A/D, suppress-#VE, software bits).
  // Returns the leaf entry's HPA.
  Hpa map(Gpa gpa, Hpa hpa, Level level, Perms perms, KeyId key = kHostKey, uint64_t extra = 0);
  // The HPA of the entry at `level` on gpa's path (its table must exist).
  Hpa entry_hpa(Gpa gpa, Level level) const;
  uint64_t read_entry(Gpa gpa, Level level) const;
  // Replaces the entry at `level` on gpa's path (no flush: that is the point).
  void write_entry(Gpa gpa, Level level, uint64_t value);
  // The leaf value map() would write.
  uint64_t leaf_value(Hpa hpa, Level level, Perms perms, KeyId key, uint64_t extra) const;
  // Every table page allocated so far, root included.
  const std::vector<Pfn>& tables() const { return tables_; }

 private:
  uint64_t non_leaf_value(Hpa table) const;
  void adopt(Pfn pfn);  // a new table page: keyed and zeroed for table_key_
  bool present(uint64_t entry) const;
  Hpa next_table(uint64_t entry) const;
  Hpa find_table(Gpa gpa, Level level) const;  // the table holding gpa's entry at `level`
  Hpa ensure_table(Gpa gpa, Level level);      // the same, allocating missing tables

  HostMemory& mem_;
  PagingFormat format_;
  unsigned levels_;
  KeyId table_key_;
  Hpa root_;
  std::vector<Pfn> tables_;
};

}  // namespace tdxsim
