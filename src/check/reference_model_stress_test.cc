// The reference model under real concurrency: vCPU threads fill and verify their own memory
// while one stores to a word the others keep loading, the host reclaims shared pages under
// them — no read may be misjudged (racing loads see the old value or the new), and the
// model's own locking holds up under TSan.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <thread>

#include "check/reference_model.h"
#include "guest/program.h"
#include "vmm/machine.h"
#include "vmm/memory_pressure.h"
#include "vmm/vm.h"

namespace tdxsim {
namespace {

constexpr unsigned kVcpus = 4;
constexpr Gpa kBase{0x1000'0000};
constexpr uint64_t kChunk = 256 << 10;
constexpr Gpa kRaceWord{kBase.raw() + kVcpus * kChunk};
constexpr unsigned kRounds = 4, kRaces = 3000;

guest::GuestTask life(guest::Guest& g, unsigned i) {
  const Gpa base = kBase + i * kChunk;
  for (unsigned r = 1; r <= kRounds; ++r) {
    co_await g.fill(base, kChunk, r);
    co_await g.verify(base, kChunk, r);
    // Every vCPU touches the race word between its rounds: vCPU 0 stores, the rest load.
    for (unsigned k = 0; k < kRaces / kRounds; ++k) {
      if (i == 0) {
        co_await g.write(kRaceWord, r * kRaces + k);
      } else {
        co_await g.read(kRaceWord);
      }
    }
  }
  co_await g.done();
}

class ReferenceModelStress : public ::testing::TestWithParam<VmType> {};

TEST_P(ReferenceModelStress, ConcurrentVcpusAndReclaimGiveNoFalseViolation) {
  vmm::MachineConfig mc;
  mc.memory_bytes = 64 << 20;
  mc.tdx = false;
  vmm::Machine machine(mc);
  auto vm_or = vmm::Vm::create(machine, vmm::VmShape::of(GetParam(), kVcpus));
  ASSERT_TRUE(vm_or.has_value());
  vmm::Vm& vm = **vm_or;
  const uint64_t bytes = kVcpus * kChunk + kPageSize;
  const bool sw = GetParam() == VmType::kSwProtected;
  ASSERT_TRUE(vm.add_memory_region(0, kBase, bytes,
                                   sw ? vmm::MemoryRegion::with_gmem() : vmm::MemoryRegion{})
                  .has_value());
  ReferenceModel model(machine);
  model.watch(vm);
  // A software-protected VM's chunks are private (the race word stays shared, under the
  // host's reclaim).
  if (sw) {
    ASSERT_TRUE(vm.set_private(kBase, kVcpus * kChunk).has_value());
  }
  std::vector<std::unique_ptr<guest::Program>> programs;
  for (unsigned i = 0; i < kVcpus; ++i) {
    programs.push_back(std::make_unique<guest::Program>(
        vm.flavour(), [i](guest::Guest& g) { return life(g, i); }));
    vm.vcpu(i).set_guest(programs.back().get());
  }
  {
    vmm::MemoryPressure pressure(vm, {0}, 64 << 10);
    std::vector<std::thread> threads;
    for (unsigned i = 0; i < kVcpus; ++i) {
      threads.emplace_back([&vm, i] {
        const vmm::VcpuStop stop = vm.vcpu(i).run_to_ucall();
        EXPECT_TRUE(stop.ucall && stop.ucall->cmd == guest::UcallCmd::kDone) << "vCPU " << i;
      });
    }
    for (std::thread& t : threads) t.join();
    pressure.stop();
  }
  const ReferenceModelCounts c = model.counts();
  EXPECT_EQ(c.violations, 0u) << fmt::format("{}", fmt::join(model.violations(), "\n"));
  EXPECT_GT(c.loads_checked, kVcpus * kRounds * (kChunk / kPageSize));
  EXPECT_GE(c.stores, kRaces);
  model.unwatch(vm);
}

INSTANTIATE_TEST_SUITE_P(All, ReferenceModelStress,
                         ::testing::Values(VmType::kDefault, VmType::kSwProtected),
                         [](const auto& p) {
                           return p.param == VmType::kDefault ? std::string("default")
                                                              : std::string("sw_protected");
                         });

}  // namespace
}  // namespace tdxsim
