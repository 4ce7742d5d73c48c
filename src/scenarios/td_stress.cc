// td_stress: the workload `tdxsim stress` varies by seed and vCPU count. The vCPUs of a small
// TD (--vcpus, default 4; --memory, default 8 MiB of private memory) share its 2 MiB regions
// page by page — page k belongs to vCPU k mod N — and each takes its pages in an order its
// seed shuffles: accept, fill, verify, then a seeded eighth of them to shared and back
// (MapGPA, a host write checked by the guest, accept again, fill, verify). Their faults race
// to build the same page tables, AUG neighbouring pages and convert them under the write lock
// while others fault: the ground the replay issue's races live on. td_race_small is the same
// for 2 vCPUs and 16 pages, a few dozen operations: small enough for `tdxsim explore` to
// enumerate its schedules.
#include <algorithm>
#include <atomic>
#include <numeric>
#include <random>

#include "base/mix.h"
#include "guest/program.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

constexpr uint64_t kImageRound = 0x57;
constexpr uint64_t kImageBytes = 16 << 10;
constexpr Gpa kWorkBase{2 << 20};  // above the image's region
constexpr uint64_t kPrivate = 1, kShared = 2, kBack = 3;
constexpr unsigned kConvertOneIn = 8;

// vCPU i's pages, in the order its seed gives.
std::vector<uint64_t> pages_of(unsigned i, unsigned vcpus, uint64_t pages, uint64_t seed) {
  std::vector<uint64_t> mine;
  for (uint64_t k = i; k < pages; k += vcpus) mine.push_back(k);
  std::mt19937_64 rng(mix64(seed * 0x9e37 + i));
  std::shuffle(mine.begin(), mine.end(), rng);
  return mine;
}

// The workload for `vcpus` vCPUs over `work_bytes` of private memory.
void run_shared_regions(const ScenarioOptions& options, Report& report, unsigned vcpus,
                        uint64_t work_bytes) {
  const uint64_t pages = work_bytes / kPageSize;
  MachineConfig mc = machine_config(options);
  mc.memory_bytes = std::max<uint64_t>(uint64_t{128} << 20, 4 * work_bytes);
  Machine machine(mc);
  const uint64_t free_before = machine.platform().memory().free_frame_count();
  {
    const uint64_t slot_bytes = kWorkBase.raw() + work_bytes;
    const std::unique_ptr<Vm> td =
        create_private_td(machine, vcpus, slot_bytes, slot_bytes, report);
    if (td == nullptr) return;
    Vm& vm = *td;
    report.check(
        vm.td_init_mem_region(Gpa{0}, kImageBytes,
                              [](uint64_t off) { return guest::pattern(Gpa{off}, kImageRound); })
            .has_value(),
        "init_mem_region");
    report.check(vm.td_finalize().has_value(), "finalize");
    RunChecks checks(machine, options);
    checks.watch(vm);

    std::atomic<uint64_t> converted{0};
    std::vector<std::unique_ptr<guest::Program>> programs;
    for (unsigned i = 0; i < vcpus; ++i) {
      std::vector<uint64_t> mine = pages_of(i, vcpus, pages, options.seed);
      programs.push_back(std::make_unique<guest::Program>(
          vm.flavour(),
          [mine = std::move(mine), &converted,
           seed = options.seed](guest::Guest& g) -> guest::GuestTask {
            for (uint64_t k : mine) {
              const Gpa gpa = kWorkBase + k * kPageSize;
              co_await g.accept(gpa, Level::k4K);
              co_await g.fill(gpa, kPageSize, kPrivate);
            }
            for (uint64_t k : mine)
              co_await g.verify(kWorkBase + k * kPageSize, kPageSize, kPrivate);
            for (uint64_t k : mine) {
              if (mix64(seed ^ (k << 8)) % kConvertOneIn != 0) continue;
              const Gpa gpa = kWorkBase + k * kPageSize;
              const Gpa shared = g.flavour().to_shared(gpa);
              co_await g.map_gpa(gpa, kPageSize, /*to_shared=*/true);
              co_await g.fill(shared, kPageSize, kShared);
              co_await g.verify(shared, kPageSize, kShared);
              co_await g.map_gpa(gpa, kPageSize, /*to_shared=*/false);
              co_await g.accept(gpa, Level::k4K);
              co_await g.fill(gpa, kPageSize, kBack);
              co_await g.verify(gpa, kPageSize, kBack);
              converted.fetch_add(1, std::memory_order_relaxed);
            }
            co_await g.done();
          }));
      vm.vcpu(i).set_guest(programs.back().get());
    }
    run_vcpus_to_done(vm, programs, report);
    report.figure("pages", pages);
    report.figure("pages_converted_and_back", converted.load());
    checks.finish_vm(vm, report, "");
    checks.unwatch(vm);
    checks.finish(report);
  }
  check_td_teardown(machine, free_before, report);
}

}  // namespace

void run_td_stress(const ScenarioOptions& options, Report& report) {
  run_shared_regions(options, report, options.vcpus.value_or(4),
                     options.memory_bytes.value_or(uint64_t{8} << 20));
}

// Small enough to enumerate schedules of: 2 vCPUs, 16 pages of one region.
void run_td_race_small(const ScenarioOptions& options, Report& report) {
  run_shared_regions(options, report, 2, 16 * kPageSize);
}

}  // namespace tdxsim
