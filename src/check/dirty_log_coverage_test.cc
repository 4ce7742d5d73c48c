// The dirty-log coverage check fed crafted streams — guest stores as the reference model
// reports them, KVM's dirty_log events — to show what it accepts and what it flags.
#include "check/dirty_log_coverage.h"

#include <gtest/gtest.h>

#include "vmm/machine.h"
#include "vmm/vm.h"

namespace tdxsim {
namespace {

constexpr Gfn kBase{0x100};
constexpr uint32_t kSlot = 3;

class DirtyLogCoverageTest : public ::testing::Test {
 protected:
  DirtyLogCoverageTest() : machine(config()) {
    vm = std::move(*vmm::Vm::create(machine, vmm::VmShape::of(VmType::kDefault)));
    check.watch(*vm);
  }
  ~DirtyLogCoverageTest() override { check.unwatch(*vm); }
  static vmm::MachineConfig config() {
    vmm::MachineConfig mc;
    mc.memory_bytes = 64 << 20;
    mc.tdx = false;
    return mc;
  }
  void event(DirtyLogOp op, const std::vector<uint64_t>* bitmap = nullptr) {
    vm->kvm().events().dirty_log.emit(DirtyLogEvent{op, kSlot, kBase, 128, bitmap});
  }
  void store(uint64_t page, uint64_t value = 1) {
    check.stored(GuestStoreSeen{vm.get(), 0, (kBase + page).gpa() + 8, value, false});
  }
  void harvest(std::vector<uint64_t> bitmap) {
    event(DirtyLogOp::kHarvestBegin);
    event(DirtyLogOp::kHarvestEnd, &bitmap);
  }
  uint64_t violations() const { return check.counts().violations; }

  vmm::Machine machine;
  std::unique_ptr<vmm::Vm> vm;
  DirtyLogCoverage check;
};

TEST_F(DirtyLogCoverageTest, StoresBeforeLoggingStartsAreNotTracked) {
  store(1);
  event(DirtyLogOp::kStart);
  harvest({0, 0});
  EXPECT_EQ(violations(), 0u);
  EXPECT_EQ(check.counts().stores_tracked, 0u);
}

TEST_F(DirtyLogCoverageTest, AHarvestThatReportsEveryWrittenPagePasses) {
  event(DirtyLogOp::kStart);
  store(1);
  store(1, 2);
  store(70);
  harvest({uint64_t{1} << 1, uint64_t{1} << 6});
  EXPECT_EQ(violations(), 0u);
  EXPECT_EQ(check.counts().pages_checked, 2u);
  // Covered: the next harvest owes nothing for them.
  harvest({0, 0});
  EXPECT_EQ(violations(), 0u);
}

TEST_F(DirtyLogCoverageTest, APageWrittenBeforeTheHarvestAndMissingIsAViolation) {
  event(DirtyLogOp::kStart);
  store(1);
  store(5, 0xabc);
  harvest({uint64_t{1} << 1, 0});
  ASSERT_EQ(violations(), 1u);
  const std::string v = check.violations().front();
  EXPECT_NE(v.find("gpa:0x105008"), std::string::npos) << v;
  EXPECT_NE(v.find("0xabc"), std::string::npos) << v;
  EXPECT_NE(v.find("harvest #1"), std::string::npos) << v;
}

TEST_F(DirtyLogCoverageTest, AStoreDuringAHarvestMayWaitForTheNextOne) {
  event(DirtyLogOp::kStart);
  event(DirtyLogOp::kHarvestBegin);
  store(4);
  std::vector<uint64_t> empty{0, 0};
  event(DirtyLogOp::kHarvestEnd, &empty);
  EXPECT_EQ(violations(), 0u);
  harvest({0, 0});  // but the next one must have it
  EXPECT_EQ(violations(), 1u);
}

TEST_F(DirtyLogCoverageTest, StoppingLoggingForgetsTheSlotsStores) {
  event(DirtyLogOp::kStart);
  store(2);
  event(DirtyLogOp::kStop);
  event(DirtyLogOp::kStart);
  harvest({0, 0});
  EXPECT_EQ(violations(), 0u);
}

TEST_F(DirtyLogCoverageTest, StoresOutsideTheSlotOrToPrivateMemoryDoNotCount) {
  event(DirtyLogOp::kStart);
  check.stored(GuestStoreSeen{vm.get(), 0, (kBase + 200).gpa(), 1, false});
  check.stored(GuestStoreSeen{vm.get(), 0, (kBase + 1).gpa(), 1, true});
  harvest({0, 0});
  EXPECT_EQ(violations(), 0u);
  EXPECT_EQ(check.counts().stores_tracked, 0u);
}

}  // namespace
}  // namespace tdxsim
