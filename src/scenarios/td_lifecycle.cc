// td_lifecycle: a TD built with an initial image (PAGE.ADD + MR.EXTEND + MR.FINALIZE), run by
// 4 vCPUs that each accept and fill a quarter of its private memory and verify it (the image
// first), moving between two logical CPUs in different packages after every MiB (each move
// a TDH.VP.FLUSH on the CPU left), then destroyed: every host frame is back in the
// allocator, no PAMT entry still names a TD page, and the host never read TD plaintext.
#include <atomic>
#include <thread>

#include "guest/program.h"
#include "kvm/vmx/tdx.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "tdx_module/pamt.h"
#include "tdx_module/tdx_module.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

constexpr uint64_t kImageRound = 0x1A6E;
constexpr uint64_t kFillRound = 1;
constexpr uint64_t kImageBytes = 64 << 10;
constexpr uint64_t kMigrateEvery = 1 << 20;
constexpr unsigned kVcpus = 4;
constexpr uint64_t kPrivateBytes = 32 << 20;
constexpr uint64_t kChunk = kPrivateBytes / kVcpus;  // each vCPU's

uint64_t image_word(uint64_t offset) {
  return guest::pattern(Gpa{offset}, kImageRound);
}

}  // namespace

void run_td_lifecycle(const ScenarioOptions& options, Report& report) {
  // Two packages of 6 CPUs: host threads on 0-1, vCPU i on 2 + i (package 0) and 6 + i
  // (package 1) in turn.
  MachineConfig mc = machine_config(options);
  mc.cpus_per_package = 6;
  mc.memory_bytes = uint64_t{256} << 20;
  Machine machine(mc);
  HostMemory& mem = machine.platform().memory();
  const uint64_t free_before = mem.free_frame_count();
  {
    const std::unique_ptr<Vm> td =
        create_private_td(machine, kVcpus, kPrivateBytes, kPrivateBytes, report);
    if (td == nullptr) return;
    Vm& vm = *td;
    report.check(vm.td_init_mem_region(Gpa{0}, kImageBytes, image_word).has_value(),
                 "init_mem_region");
    report.check(vm.td_finalize().has_value(), "finalize");
    RunChecks checks(machine, options);
    checks.watch(vm);

    std::vector<std::unique_ptr<guest::Program>> programs;
    for (unsigned i = 0; i < kVcpus; ++i) {
      const Gpa base{i * kChunk};
      programs.push_back(std::make_unique<guest::Program>(
          vm.flavour(), [base, i](guest::Guest& g) -> guest::GuestTask {
            for (uint64_t off = 0; off < kChunk; off += kPageSize) {
              co_await g.accept(base + off, Level::k4K);
              if ((off + kPageSize) % kMigrateEvery == 0) co_await g.sync(off);
            }
            // The measured image is what PAGE.ADD copied in.
            if (i == 0) co_await g.verify(Gpa{0}, kImageBytes, kImageRound);
            co_await g.fill(base, kChunk, kFillRound);
            co_await g.verify(base, kChunk, kFillRound);
            co_await g.done();
          }));
      vm.vcpu(i).set_guest(programs.back().get());
    }
    // Each GUEST_SYNC moves the vCPU to its other CPU for its next KVM_RUN.
    std::atomic<uint64_t> moves{0};
    run_vcpus_to_done(vm, programs, report, [&](unsigned i, uint64_t) {
      vmm::Vcpu& v = vm.vcpu(i);
      v.set_cpu(v.cpu() == machine.vcpu_cpu(i) ? machine.vcpu_cpu(i + kVcpus)
                                               : machine.vcpu_cpu(i));
      moves.fetch_add(1);
      return true;
    });
    const TdxStats& st = TdxOps::to_tdx(vm.kvm_vm()).stats();
    report.check(st.count(SeamcallLeaf::kVpFlush) >= moves.load(), "vp_flush_on_migration",
                 "{} moves, {} TDH.VP.FLUSH", moves.load(), st.count(SeamcallLeaf::kVpFlush));
    report.figure("vcpu_migrations", moves.load());
    report.figure("private_pages_accepted", kPrivateBytes / kPageSize);
    checks.finish_vm(vm, report, "");
    checks.unwatch(vm);
    checks.finish(report);
  }
  check_td_teardown(machine, free_before, report);
}

}  // namespace tdxsim
