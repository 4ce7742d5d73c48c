// pamt_balance against a real TD: the PAMT's pages owned by the TD match what the S-EPT holds
// after KVM_TDX_INIT_MEM_REGION and after a removal; a census that disagrees is reported by
// page type; an unreadable S-EPT (empty census) is not judged.
#include "check/pamt_balance.h"

#include <gtest/gtest.h>

#include "check/td_checks_for_test.h"
#include "tdx_module/page_info.h"
#include "tdx_module/tdx_module.h"
#include "tdxsim/seamcall.h"

namespace tdxsim {
namespace {

TEST(PamtBalanceTest, ThePamtHoldsWhatTheSeptMapsAndACensusThatDisagreesIsReported) {
  SmallTd td(/*image_pages=*/5);
  CpuBinding b = td.machine().platform().bind(td.machine().host_cpu(0));
  const Pamt& pamt = td.machine().tdx_module()->pamt();
  SeptCensus c = take_sept_census(td.vm().kvm_vm(), b.cpu());
  EXPECT_EQ(pamt_imbalance(pamt, td.tdr(), c), std::vector<std::string>{});
  // The module frees a page with its leaf: still balanced.
  ASSERT_EQ(tdh_mem_page_remove(b.cpu(), td.tdr(), PageInfo::of(Gpa{kPageSize}, Level::k4K)), 0u);
  c = take_sept_census(td.vm().kvm_vm(), b.cpu());
  EXPECT_EQ(pamt_imbalance(pamt, td.tdr(), c), std::vector<std::string>{});

  SeptCensus off = c;
  off.leaves[0] -= 1;
  off.tables[1] += 1;
  const std::vector<std::string> v = pamt_imbalance(pamt, td.tdr(), off);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_NE(v[0].find("4 4K PT_REG pages owned by the TD, 3 4K leaves"), std::string::npos) << v[0];
  EXPECT_NE(v[1].find("3 PT_EPT pages owned by the TD, 4 table pages"), std::string::npos) << v[1];
  off.sept_reads = 0;
  EXPECT_EQ(pamt_imbalance(pamt, td.tdr(), off), std::vector<std::string>{});
}

}  // namespace
}  // namespace tdxsim
