#include "scenarios/scenario_util.h"

#include <thread>

#include "kvm/mmu_stats.h"

namespace tdxsim {

uint64_t HostStep::encode() const {
  return static_cast<uint64_t>(op) | check << 4 | write << 8 | (offset >> kPageShift) << 12 |
         (size >> kPageShift) << 32;
}

HostStep HostStep::decode(uint64_t a) {
  return HostStep{static_cast<HostOp>(a & 0xF), (a >> 4) & 0xF, (a >> 8) & 0xF,
                  ((a >> 12) & 0xFFFFF) << kPageShift, ((a >> 32) & 0xFFFFF) << kPageShift};
}

bool HostSync::operator()(unsigned vcpu, uint64_t arg) const {
  const HostStep step = HostStep::decode(arg);
  const Gpa base = base_of_(vcpu) + step.offset;
  if (step.op == HostOp::kPunch) {
    return report_.check(vm_.punch_hole(base, step.size).has_value(), "punch_hole",
                         "{}: vCPU {} at {}", tag_, vcpu, base);
  }
  bool ok = true;
  guest::for_each_sample(base, step.size, [&](Gpa gpa) {
    if (!ok) return;
    const KvmResult<uint64_t> seen = vm_.host_read(gpa);
    const uint64_t want = round_value(gpa, step.check);
    ok = report_.check(seen.has_value() && *seen == want, "host_view",
                       "{}: vCPU {}: the host reads {:#x} at {}, expected round {} ({:#x})", tag_,
                       vcpu, seen.value_or(0), gpa, step.check, want);
    if (ok && step.op == HostOp::kCheckWrite) {
      ok = report_.check(vm_.host_write(gpa, round_value(gpa, step.write)).has_value(),
                         "host_write", "{}: vCPU {} at {}", tag_, vcpu, gpa);
    }
  });
  return ok;
}

bool run_vcpu_to_done(Vm& vm, unsigned vcpu, const guest::Program& program, Report& report,
                      const SyncHandler& on_sync) {
  for (;;) {
    const VcpuStop stop = vm.vcpu(vcpu).run_to_ucall();
    if (!stop.ucall) {
      return report.check(false, "vcpu_exit", "vCPU {} stopped at exit {} ({})", vcpu,
                          to_string(stop.exit), stop.error ? to_string(*stop.error) : "no error");
    }
    switch (stop.ucall->cmd) {
      case guest::UcallCmd::kDone:
        return true;
      case guest::UcallCmd::kSync:
        if (on_sync && !on_sync(vcpu, stop.ucall->arg)) return false;
        break;
      case guest::UcallCmd::kAssert: {
        const guest::GuestFailure* f = program.failure(stop.ucall->arg);
        return report.check(false, "guest_assert", "vCPU {}: {}", vcpu,
                            f ? guest::to_string(*f) : std::string("(no record)"));
      }
    }
  }
}

void check_pressure(Vm& vm, const vmm::MemoryPressure& pressure, Report& report,
                    std::string_view tag) {
  const MmuStats& st = vm.kvm_vm().mmu().stats();
  const auto zapped = [&](ZapAlias a) {
    return st.zapped[static_cast<size_t>(ZapReason::kNotifier)][static_cast<size_t>(a)].value();
  };
  report.check(pressure.rounds() > 0, "memory_pressure", "{}: no reclaim pass ran", tag);
  report.check(zapped(ZapAlias::kPrivate) == 0, "notifier_spares_private",
               "{}: host reclaim zapped {} private leaves", tag, zapped(ZapAlias::kPrivate));
  report.figure("reclaim_passes", pressure.rounds());
  report.figure("notifier_zapped_shared", zapped(ZapAlias::kShared));
}

void run_vcpus_to_done(Vm& vm, const std::vector<std::unique_ptr<guest::Program>>& programs,
                       Report& report, const SyncHandler& on_sync) {
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < programs.size(); ++i) {
    threads.emplace_back([&, i] { run_vcpu_to_done(vm, i, *programs[i], report, on_sync); });
  }
  for (std::thread& t : threads) t.join();
}

}  // namespace tdxsim
