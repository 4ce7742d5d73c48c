#include "check/page_table_balance.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <vector>

#include "kvm/tdp_mmu.h"

namespace tdxsim {

std::optional<std::string> page_table_balance_violation(const TdpMmu& mmu) {
  const TdpMmu::TableCensus c = mmu.table_census();
  if (c.balanced()) return std::nullopt;
  std::vector<std::string> tables;
  for (const TdpMmu::TableCensus::Table& t : c.unreachable) {
    tables.push_back(fmt::format("{} {} table at {} mapping from {}",
                                 t.mirror ? "mirror" : "direct", level_name(t.level), t.spt,
                                 t.gfn));
  }
  return fmt::format(
      "{} page-table page(s) allocated, {} released, {} reachable from {} root(s) ({} invalid): "
      "{} page(s) neither freed nor reachable{}{}",
      c.allocated, c.released, c.reachable, c.roots, c.invalid_roots,
      static_cast<int64_t>(c.allocated - c.released) - static_cast<int64_t>(c.reachable),
      tables.empty() ? "" : "; ", fmt::join(tables, ", "));
}

std::optional<std::string> freed_table_read_violation(const TdpMmu& mmu) {
  const FreedTableReads& r = mmu.freed_table_reads();
  const uint64_t n = r.count();
  if (n == 0) return std::nullopt;
  const std::optional<Hpa> first = r.first();
  return fmt::format("{} entry read(s) of a freed page-table page (poison {:#x}); first at {}", n,
                     kFreedTablePoison, first ? fmt::format("{}", *first) : std::string("?"));
}

}  // namespace tdxsim
