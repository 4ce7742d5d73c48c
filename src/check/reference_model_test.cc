// The reference model fed crafted event streams — the accesses a CPU reports, the VMM's
// memory events, the module's accepts — to show what it accepts and what it flags.
#include "check/reference_model.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "kvm/vmx/tdx.h"
#include "vmm/machine.h"
#include "vmm/vm.h"

namespace tdxsim {
namespace {

constexpr Gpa kGpa{0x10'0000};

class ReferenceModelTest : public ::testing::TestWithParam<VmType> {
 protected:
  ReferenceModelTest() : machine(config()) {
    vm = std::move(*vmm::Vm::create(machine, vmm::VmShape::of(GetParam())));
    frame_ = *mem().alloc_frame();
    model.emplace(machine);
    model->watch(*vm);
    // vCPU 0 enters on CPU 2: the accesses below are its.
    vm->kvm().events().vcpu_run.emit(VcpuRunEvent{EventPhase::kBegin, 0, kCpu, {}});
  }
  ~ReferenceModelTest() override {
    vm->kvm().events().vcpu_run.emit(VcpuRunEvent{EventPhase::kEnd, 0, kCpu, {}});
    model->unwatch(*vm);
    model.reset();
  }
  static vmm::MachineConfig config() {
    vmm::MachineConfig mc;
    mc.memory_bytes = 64 << 20;
    return mc;
  }
  bool td() const { return GetParam() == VmType::kTdx; }
  Gpa alias(bool shared) const { return shared ? vm->flavour().to_shared(kGpa) : kGpa; }
  // A guest access through the alias an ordinary access takes (a TD's private one, a
  // default VM's only one), to the frame `frame_` stands in for.
  GuestAccess at(bool shared) const {
    return GuestAccess{kCpu, alias(shared), shared && td(), frame_.hpa(), kHostKey};
  }
  void store(uint64_t v, bool shared = false) { model->store(at(shared), mem(), v); }
  // A load that finds `v` in memory (written behind the model's back first).
  void load(uint64_t v, bool shared = false) {
    mem().write(frame_.hpa(), kHostKey, v);
    EXPECT_EQ(model->load(at(shared), mem()), v);
  }
  HostMemory& mem() { return machine.platform().memory(); }
  void vmm_event(vmm::VmMemoryOp op, uint64_t size = kPageSize, uint64_t value = 0) {
    vm->events().memory.emit(
        vmm::VmMemoryEvent{op, kGpa, size, value, machine.platform().check_clock().tick()});
  }
  uint64_t violations() const { return model->counts().violations; }

  static constexpr unsigned kCpu = 2;
  Pfn frame_{0};
  vmm::Machine machine;
  std::unique_ptr<vmm::Vm> vm;
  std::optional<ReferenceModel> model;
};

TEST_P(ReferenceModelTest, LoadsSeeTheLastStoreAndUnknownWordsAreLearned) {
  load(0x77);  // nothing defined it yet: learned
  EXPECT_EQ(model->counts().loads_learned, 1u);
  load(0x77);
  store(5);
  load(5);
  EXPECT_EQ(violations(), 0u);
  EXPECT_EQ(model->counts().loads_checked, 2u);
  load(6);
  ASSERT_EQ(violations(), 1u);
  const std::string v = model->violations().front();
  EXPECT_NE(v.find("vCPU 0 loaded 0x6"), std::string::npos) << v;
  EXPECT_NE(v.find("0x5 from a guest store on vCPU 0"), std::string::npos) << v;
}

TEST_P(ReferenceModelTest, ALoadDuringAHostWriteMaySeeTheValueBefore) {
  if (GetParam() == VmType::kSwProtected) vmm_event(vmm::VmMemoryOp::kToShared);
  store(1, /*shared=*/true);
  vmm_event(vmm::VmMemoryOp::kHostWrite, 8, 2);
  load(1, /*shared=*/true);  // the host's write has not landed yet
  vmm_event(vmm::VmMemoryOp::kHostWritten, 8, 2);
  EXPECT_EQ(violations(), 0u);
  load(1, /*shared=*/true);  // it has
  EXPECT_EQ(violations(), 1u);
}

TEST_P(ReferenceModelTest, HostWritesAndReadsMeetTheGuestOnTheSharedSide) {
  if (GetParam() == VmType::kSwProtected) vmm_event(vmm::VmMemoryOp::kToShared);
  vmm_event(vmm::VmMemoryOp::kHostWrite, 8, 0xAB);
  vmm_event(vmm::VmMemoryOp::kHostWritten, 8, 0xAB);
  load(0xAB, /*shared=*/true);
  store(0xCD, /*shared=*/true);
  vmm_event(vmm::VmMemoryOp::kHostRead, 8, 0xCD);
  EXPECT_EQ(violations(), 0u);
  vmm_event(vmm::VmMemoryOp::kHostRead, 8, 0xAB);  // the guest's store was lost
  ASSERT_EQ(violations(), 1u);
  EXPECT_NE(model->violations().front().find("the host read 0xab"), std::string::npos)
      << model->violations().front();
}

TEST_P(ReferenceModelTest, AFreshMemslotReadsAsZerosAndAChangingOneIsNotJudged) {
  vmm_event(vmm::VmMemoryOp::kSlotChanging, kPageSize);
  load(0x1234);  // old or new memory: either may show while the ioctl runs
  vmm_event(vmm::VmMemoryOp::kSlotChanged, kPageSize, vmm::kFreshShared | vmm::kFreshPrivate);
  EXPECT_EQ(violations(), 0u);
  if (td()) return;  // a TD's private side stays unknown until accepted
  load(0);
  EXPECT_EQ(violations(), 0u);
  load(0x1234);  // the old memory after the ioctl returned
  EXPECT_EQ(violations(), 1u);
}

INSTANTIATE_TEST_SUITE_P(All, ReferenceModelTest,
                         ::testing::Values(VmType::kDefault, VmType::kSwProtected, VmType::kTdx),
                         [](const auto& p) {
                           std::string name = to_string(p.param);
                           std::ranges::replace(name, '-', '_');
                           return name;
                         });

class TdReferenceModelTest : public ReferenceModelTest {};

TEST_P(TdReferenceModelTest, PrivateMemoryIsGoneAfterAConversionUntilAccepted) {
  store(9);
  vmm_event(vmm::VmMemoryOp::kToShared);
  load(9);  // the private page was removed with the conversion: no load may retire
  ASSERT_EQ(violations(), 1u);
  EXPECT_NE(model->violations().front().find("gone since the conversion to shared"),
            std::string::npos)
      << model->violations().front();
  vmm_event(vmm::VmMemoryOp::kToPrivate);
  {
    auto bound = machine.platform().bind(kCpu);
    machine.tdx_module()->page_accepted.emit(
        PageAccepted{TdxOps::to_tdx(vm->kvm_vm()).tdr(), kGpa, Level::k4K});
  }
  load(0);
  EXPECT_EQ(violations(), 1u);
  load(9);  // the old contents after the accept zeroed the page
  EXPECT_EQ(violations(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Td, TdReferenceModelTest, ::testing::Values(VmType::kTdx),
                         [](const auto&) { return std::string("tdx"); });

}  // namespace
}  // namespace tdxsim
