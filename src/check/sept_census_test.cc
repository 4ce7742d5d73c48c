// The census against a real TD: what KVM_TDX_INIT_MEM_REGION built is counted per level and
// agrees with the mirror; a page removed behind KVM's back (raw SEAMCALLs) is a mismatch with
// its GPA.
#include "check/sept_census.h"

#include <gtest/gtest.h>

#include "check/td_checks_for_test.h"
#include "tdx_module/page_info.h"
#include "tdxsim/seamcall.h"

namespace tdxsim {
namespace {

TEST(SeptCensusTest, CountsWhatTheImageMappedAndAgreesWithTheMirror) {
  SmallTd td(/*image_pages=*/5);
  CpuBinding b = td.machine().platform().bind(td.machine().host_cpu(0));
  const SeptCensus c = take_sept_census(td.vm().kvm_vm(), b.cpu());
  EXPECT_TRUE(c.mismatches.empty()) << c.mismatches.front();
  EXPECT_EQ(c.leaves[0], 5u);
  EXPECT_EQ(c.leaves[1], 0u);
  EXPECT_EQ(c.leaves[2], 0u);
  // One table per level on the way to GPA 0: PT, PD, PDPT and the root.
  EXPECT_EQ(c.tables, (std::array<uint64_t, 4>{1, 1, 1, 1}));
  EXPECT_EQ(c.mirror_leaves, 5u);
  // 512 entries in each of the PT, PD and PDPT, the private half (256) of the root.
  EXPECT_EQ(c.sept_reads, 3 * 512u + 256u);
}

TEST(SeptCensusTest, APageRemovedBehindKvmsBackIsAMismatchWithItsGpa) {
  SmallTd td(/*image_pages=*/3);
  CpuBinding b = td.machine().platform().bind(td.machine().host_cpu(0));
  // Before TDH.MR.FINALIZE the module removes a page without BLOCK and TRACK.
  const Gpa victim{2 * kPageSize};
  ASSERT_EQ(tdh_mem_page_remove(b.cpu(), td.tdr(), PageInfo::of(victim, Level::k4K)), 0u);
  const SeptCensus c = take_sept_census(td.vm().kvm_vm(), b.cpu());
  EXPECT_EQ(c.leaves[0], 2u);
  ASSERT_EQ(c.mismatches.size(), 1u);
  EXPECT_NE(c.mismatches[0].find("gpa:0x2000"), std::string::npos) << c.mismatches[0];
  EXPECT_NE(c.mismatches[0].find("S-EPT has no leaf"), std::string::npos) << c.mismatches[0];
}

TEST(SeptCensusTest, AVmThatIsNotATdHasAnEmptyCensus) {
  RcuThread rcu;
  vmm::MachineConfig mc;
  mc.memory_bytes = uint64_t{64} << 20;
  vmm::Machine machine(mc);
  auto vm = vmm::Vm::create(machine, vmm::VmShape::of(VmType::kDefault));
  ASSERT_TRUE(vm.has_value());
  CpuBinding b = machine.platform().bind(machine.host_cpu(0));
  const SeptCensus c = take_sept_census((*vm)->kvm_vm(), b.cpu());
  EXPECT_EQ(c.sept_reads, 0u);
  EXPECT_TRUE(c.mismatches.empty());
}

}  // namespace
}  // namespace tdxsim
