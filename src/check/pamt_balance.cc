#include "check/pamt_balance.h"

#include <fmt/format.h>

#include "tdx_module/pamt.h"

namespace tdxsim {

std::vector<std::string> pamt_imbalance(const Pamt& pamt, Hpa tdr, const SeptCensus& census) {
  std::vector<std::string> out;
  if (census.sept_reads == 0) return out;
  const Pfn owner = tdr.pfn();
  constexpr Level kLevels[] = {Level::k4K, Level::k2M, Level::k1G};
  for (size_t i = 0; i < 3; ++i) {
    const uint64_t reg = pamt.count_owned(PamtPageType::kReg, kLevels[i], owner);
    if (reg != census.leaves[i]) {
      out.push_back(fmt::format("{} {} PT_REG pages owned by the TD, {} {} leaves in its S-EPT",
                                reg, level_name(kLevels[i]), census.leaves[i],
                                level_name(kLevels[i])));
    }
  }
  const uint64_t ept = pamt.count_owned(PamtPageType::kEpt, Level::k4K, owner);
  // The root is not counted: the module keeps it among the TDCS pages (PT_TDCX).
  const uint64_t tables = census.tables[0] + census.tables[1] + census.tables[2];
  if (ept != tables) {
    out.push_back(fmt::format(
        "{} PT_EPT pages owned by the TD, {} table pages below its S-EPT root", ept, tables));
  }
  return out;
}

}  // namespace tdxsim
