// A TD's private memory, end to end through every layer: the guest's TDG.MEM.PAGE.ACCEPT of
// a page not yet mapped exits the TD (EPT violation), KVM maps it in the mirror and AUGs it
// into the S-EPT, re-enters, the ACCEPT completes and the guest reads the page.
//
// BM_TdPrivateFault4K: one vCPU, pages one after another; each iteration is a batch of
// kBatch pages (the guest syncs after each batch), so the time per item is the time per
// private fault, VMM and guest included. Run with --benchmark_repetitions for the median.
// The platform's TLB-hit probe (a second walk per hit, for the stale-use checker) is off, as
// in the platform's benchmarks; BM_TdPrivateFault4KProbed keeps it on, as checked runs have it.
//
// BM_TdPopulate: a TD of `range(0)` GiB accepted page by page at 4K by 2 vCPUs (each its
// half), once; reports the wall time and the process's peak RSS (counter peak_rss_mib).
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <memory>
#include <thread>

#include "base/check.h"
#include "base/rcu.h"
#include "guest/program.h"
#include "vmm/vm.h"

namespace tdxsim {
namespace {

using vmm::Machine;
using vmm::MachineConfig;
using vmm::MemoryRegion;
using vmm::Vm;
using vmm::VmShape;

constexpr uint64_t kBatch = 1024;
constexpr Gpa kBase{uint64_t{4} << 30};

guest::GuestTask accept_and_read(guest::Guest& g, Gpa base, uint64_t pages, bool sync_batches) {
  for (uint64_t i = 0; i < pages; ++i) {
    const Gpa gpa = base + i * kPageSize;
    co_await g.accept(gpa, Level::k4K);
    co_await g.read(gpa);
    if (sync_batches && (i + 1) % kBatch == 0) co_await g.sync(i);
  }
  co_await g.done();
}

// Destroyed in reverse: the programs, the VM, then the machine it runs on.
struct Td {
  std::unique_ptr<Machine> machine;
  std::unique_ptr<Vm> vm;
  std::vector<std::unique_ptr<guest::Program>> programs;
};

// A runnable TD of `bytes` private memory at GPA 0 and `vcpus` vCPUs, vCPU i running
// accept_and_read over its share.
std::unique_ptr<Td> make_td(uint64_t bytes, unsigned vcpus, bool sync_batches,
                            bool probe_tlb_hits = false) {
  auto owner = std::make_unique<Td>();
  Td& td = *owner;
  MachineConfig mc;
  mc.memory_bytes = bytes + (uint64_t{512} << 20);
  mc.probe_tlb_hits = probe_tlb_hits;
  td.machine = std::make_unique<Machine>(mc);
  td.vm = std::move(*Vm::create(*td.machine, VmShape::of(VmType::kTdx, vcpus)));
  // From 4 GiB up: the ucall GPA below 4 GiB stays unbacked.
  TDXSIM_CHECK(td.vm->add_memory_region(0, kBase, bytes, MemoryRegion::with_gmem()).has_value(),
               "memslot");
  TDXSIM_CHECK(td.vm->set_private(kBase, bytes).has_value(), "set_private");
  TDXSIM_CHECK(td.vm->td_finalize().has_value(), "finalize");
  const uint64_t share = bytes / vcpus;
  for (unsigned i = 0; i < vcpus; ++i) {
    const Gpa base = kBase + i * share;
    td.programs.push_back(std::make_unique<guest::Program>(
        td.vm->flavour(), [base, share, sync_batches](guest::Guest& g) {
          return accept_and_read(g, base, share / kPageSize, sync_batches);
        }));
    td.vm->vcpu(i).set_guest(td.programs.back().get(), 0);
  }
  return owner;
}

void private_faults(benchmark::State& state, bool probe_tlb_hits) {
  RcuThread rcu;
  constexpr uint64_t kBytes = uint64_t{256} << 20;
  std::unique_ptr<Td> td = make_td(kBytes, 1, true, probe_tlb_hits);
  uint64_t done = 0;
  for (auto _ : state) {
    if (done == kBytes / kPageSize) {
      state.PauseTiming();
      td.reset();
      td = make_td(kBytes, 1, true, probe_tlb_hits);
      done = 0;
      state.ResumeTiming();
    }
    const vmm::VcpuStop stop = td->vm->vcpu(0).run_to_ucall();
    if (!stop.ucall || stop.ucall->cmd != guest::UcallCmd::kSync) {
      state.SkipWithError("the guest stopped early");
      break;
    }
    done += kBatch;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
}

void BM_TdPrivateFault4K(benchmark::State& state) {
  private_faults(state, false);
}
BENCHMARK(BM_TdPrivateFault4K)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_TdPrivateFault4KProbed(benchmark::State& state) {
  private_faults(state, true);
}
BENCHMARK(BM_TdPrivateFault4KProbed)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_TdPopulate(benchmark::State& state) {
  RcuThread rcu;
  const uint64_t bytes = static_cast<uint64_t>(state.range(0)) << 30;
  for (auto _ : state) {
    state.PauseTiming();
    std::unique_ptr<Td> td = make_td(bytes, 2, false);
    state.ResumeTiming();
    std::thread other([&] { (void)td->vm->vcpu(1).run_to_ucall(); });
    (void)td->vm->vcpu(0).run_to_ucall();
    other.join();
    state.PauseTiming();
    td.reset();
    state.ResumeTiming();
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  state.counters["peak_rss_mib"] = static_cast<double>(ru.ru_maxrss) / 1024.0;
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * (bytes / kPageSize)));
}
BENCHMARK(BM_TdPopulate)->Arg(1)->Arg(64)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace
}  // namespace tdxsim
