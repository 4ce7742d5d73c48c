// td_convert_while_running: two vCPUs keep verifying their own private memory while the host
// converts another private region, which each vCPU accepted and filled first, to shared.
// Each conversion removes the pages from the S-EPT while vCPUs are in the guest: BLOCK,
// TRACK, the kick that makes every vCPU leave the guest, then REMOVE. The host's view of
// the converted region never shows the guests' data, and KVM's mirror and the S-EPT agree
// at the end.
#include <atomic>
#include <thread>

#include "base/sched.h"
#include "base/thread.h"
#include "guest/program.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

constexpr unsigned kVcpus = 2;
constexpr uint64_t kWork = 64 << 10;    // per vCPU, from GPA 0
constexpr Gpa kVictim{kVcpus * kWork};  // converted by the host
constexpr uint64_t kVictimPerVcpu = 64 << 10;
constexpr uint64_t kVictimSize = kVcpus * kVictimPerVcpu;
constexpr Gpa kStop{kVictim.raw() + kVictimSize};  // a shared page: the host's "stop"
constexpr uint64_t kSlotSize = 2 << 20;
constexpr uint64_t kStep = 32 << 10;
constexpr uint64_t kWorkRound = 5, kVictimRound = 9;

guest::GuestTask convert_guest(guest::Guest& g, unsigned i) {
  const Gpa work{i * kWork};
  const Gpa victim = kVictim + i * kVictimPerVcpu;
  for (uint64_t off = 0; off < kWork; off += kPageSize) co_await g.accept(work + off, Level::k4K);
  for (uint64_t off = 0; off < kVictimPerVcpu; off += kPageSize) {
    co_await g.accept(victim + off, Level::k4K);
  }
  co_await g.fill(work, kWork, kWorkRound);
  co_await g.fill(victim, kVictimPerVcpu, kVictimRound);
  co_await g.sync(0);  // ready: the host may start converting
  while (co_await g.read(g.flavour().to_shared(kStop)) == 0) {
    co_await g.verify(work, kWork, kWorkRound);
  }
  co_await g.done();
}

}  // namespace

void run_td_convert_while_running(const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.memory_bytes = uint64_t{64} << 20;
  Machine machine(mc);
  const std::unique_ptr<Vm> td = create_private_td(machine, kVcpus, kSlotSize, kStop.raw(), report);
  if (td == nullptr) return;
  Vm& vm = *td;
  report.check(vm.td_finalize().has_value(), "finalize");

  RunChecks checks(machine, options);
  checks.watch(vm);
  std::vector<std::unique_ptr<guest::Program>> programs;
  for (unsigned i = 0; i < kVcpus; ++i) {
    programs.push_back(std::make_unique<guest::Program>(
        vm.flavour(), [i](guest::Guest& g) { return convert_guest(g, i); }));
    vm.vcpu(i).set_guest(programs.back().get());
  }
  std::atomic<unsigned> ready{0};
  Thread vcpus([&] {
    run_vcpus_to_done(vm, programs, report, [&](unsigned, uint64_t) {
      ready.fetch_add(1);
      return true;
    });
  });
  while (ready.load() < kVcpus) sched_pause();

  for (uint64_t off = 0; off < kVictimSize; off += kStep) {
    const Gpa gpa = kVictim + off;
    if (!report.check(vm.set_shared(gpa, kStep).has_value(), "convert_to_shared", "at {}", gpa)) {
      break;
    }
    guest::for_each_sample(gpa, kStep, [&](Gpa p) {
      const KvmResult<uint64_t> v = vm.host_read(p);
      report.check(v.has_value() && *v == 0, "no_private_data_in_host_view", "{} reads {:#x}", p,
                   v.value_or(0));
    });
  }
  report.check(vm.host_write(kStop, 1).has_value(), "stop");
  vcpus.join();
  checks.finish_vm(vm, report, "");
  checks.unwatch(vm);
  checks.finish(report);
}

}  // namespace tdxsim
