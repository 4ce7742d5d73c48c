// private_mem_conversions: KVM's x86/private_mem_conversions_test, step for step (see
// docs/selftest-port.md), on a software-protected VM and on a TD, with 1 and 4 vCPUs, 1 and
// 2 memslots over one guest_memfd, and conversions with and without punching the retired
// private copy out of guest_memfd (the selftest's do_fallocate, per VM here: a TD's MapGPA
// has no room for the selftest's private flags). The host reclaims the shared memory all
// along (page migration through the MMU notifier), which must never cost a private page.
//
// Each vCPU owns a 4 MiB chunk from GPA 4 GiB (the selftest's 2 MiB + 4 KiB of data, aligned
// up to 2 MiB). The guest's GUEST_SYNC carries what the host must do on that step (HostStep): check
// that its view of a range holds one pattern round, optionally write another, or punch a
// range out of guest_memfd. Patterns are pattern(gpa, round): the selftest's 0xaa, 0xcc,
// 0x11… become rounds, so every word differs from its neighbours and from zero.
//
// On a TD the guest touches shared memory through the shared alias (GPA | bit 47) and
// accepts pages it converts to private; a page punched out of guest_memfd is accepted again
// lazily by its #VE handler. On the software-protected VM the same GPA is private or shared
// as its attribute says.
#include <array>

#include "guest/program.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

constexpr uint64_t kData = (2 << 20) + kPageSize;  // PER_CPU_DATA_SIZE
constexpr uint64_t kChunk = 4 << 20;               // per vCPU: kData aligned up to 2 MiB
constexpr Gpa kBase{uint64_t{4} << 30};

// The selftest's byte patterns, as rounds.
enum Round : uint64_t { kAA = 1, kCC = 2, k11 = 3, k22 = 4, k33 = 5, k44 = 6 };

struct TestRange {
  uint64_t offset, size;
};
constexpr std::array<TestRange, 5> kRanges = {{{0, kPageSize},
                                               {0, 2 << 20},
                                               {kPageSize, kPageSize},
                                               {kPageSize, 2 << 20},
                                               {2 << 20, kPageSize}}};

// guest_map_private / guest_map_shared: the conversion, and on a TD the accept a guest
// kernel does before it uses memory it made private.
guest::GuestTask map(guest::Guest& g, Gpa gpa, uint64_t size, bool to_shared) {
  co_await g.map_gpa(gpa, size, to_shared);
  if (g.flavour().td && !to_shared) {
    for (uint64_t off = 0; off < size; off += kPageSize) {
      co_await g.accept(gpa + off, Level::k4K);
    }
  }
}

// guest_test_explicit_conversion (data: the selftest's PER_CPU_DATA_SIZE, 2 MiB + 4 KiB).
guest::GuestTask explicit_conversion(guest::Guest& g, Gpa base) {
  const auto sh = [&](Gpa gpa) { return g.flavour().to_shared(gpa); };
  // Memory starts shared: the guest's and the host's writes are visible to each other.
  co_await g.fill(sh(base), kData, kAA);
  co_await g.verify(sh(base), kData, kAA);
  co_await g.sync(check_write(0, kData, kAA, kCC));
  co_await g.verify(sh(base), kData, kCC);

  for (const TestRange& r : kRanges) {
    const Gpa gpa = base + r.offset;
    co_await g.fill(sh(gpa), r.size, k11);
    co_await map(g, gpa, r.size, /*to_shared=*/false);
    if (r.size > kPageSize) {
      co_await g.fill(gpa, kPageSize, k22);
    } else {
      // Private writes are invisible to the host, whose view keeps the shared contents.
      co_await g.fill(gpa, r.size, k22);
      co_await g.sync(check(r.offset, r.size, k11));
      co_await g.verify(gpa, r.size, k22);
      if (r.offset > 0) co_await g.verify(sh(base), r.offset, kCC);
      if (r.offset + r.size < kData) {
        co_await g.verify(sh(gpa + r.size), kData - r.offset - r.size, kCC);
      }
      // Odd pages back to shared: holes in a private range.
      for (uint64_t j = 0; j < r.size; j += kPageSize) {
        if ((j >> kPageShift) & 1) {
          co_await map(g, gpa + j, kPageSize, /*to_shared=*/true);
          co_await g.sync(check_write(r.offset + j, kPageSize, k11, k33));
          co_await g.verify(sh(gpa + j), kPageSize, k33);
        } else {
          co_await g.sync(check(r.offset + j, kPageSize, k11));
        }
      }
    }
    // The whole range shared again: the host sees the guest's writes and vice versa.
    co_await map(g, gpa, r.size, /*to_shared=*/true);
    co_await g.fill(sh(gpa), r.size, k33);
    co_await g.sync(check_write(r.offset, r.size, k33, k44));
    co_await g.verify(sh(gpa), r.size, k44);
    co_await g.fill(sh(gpa), r.size, kCC);
    // Every private page freed before the next range: a clean slate.
    co_await map(g, base, kData, /*to_shared=*/true);
    co_await g.sync(punch(0, kData));
  }
}

// guest_test_punch_hole: punching frees memory (zaps the private mappings), and the next
// fault gets a zeroed page. `precise`: fault in only the target range, else all of it.
guest::GuestTask punch_hole(guest::Guest& g, Gpa base, bool precise) {
  co_await map(g, base, kData, /*to_shared=*/false);
  for (const TestRange& r : kRanges) {
    const Gpa gpa = base + r.offset;
    co_await g.sync(punch(0, kData));
    if (precise) {
      co_await g.fill(gpa, r.size, kCC);
      co_await g.verify(gpa, r.size, kCC);
    } else {
      co_await g.fill(base, kData, kCC);
      co_await g.verify(base, kData, kCC);
    }
    co_await g.sync(punch(r.offset, r.size));
    co_await g.verify(gpa, r.size, 0, zero_pattern);
  }
  // Back to shared, memory freed, for whatever runs next.
  co_await map(g, base, kData, /*to_shared=*/true);
  co_await g.sync(punch(0, kData));
}

struct Variant {
  VmType type;
  unsigned vcpus, memslots;
  bool discard;
};

void run_variant(const Variant& v, const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.memory_bytes = uint64_t{256} << 20;
  mc.tdx = v.type == VmType::kTdx;
  Machine machine(mc);
  VmShape shape = VmShape::of(v.type, v.vcpus);
  shape.discard_on_conversion = v.discard;
  auto vm_or = Vm::create(machine, shape);
  const std::string tag = fmt::format("{} vcpus={} memslots={} punch={}", to_string(v.type),
                                      v.vcpus, v.memslots, v.discard);
  if (!report.check(vm_or.has_value(), "vm_create", "{}: {}", tag, errno_name(vm_or))) return;
  Vm& vm = **vm_or;
  const uint64_t total = kChunk * v.vcpus;
  const uint64_t per_slot = total / v.memslots;
  for (unsigned s = 0; s < v.memslots; ++s) {
    MemoryRegion r =
        MemoryRegion::with_gmem(s * per_slot, s > 0 ? std::optional<uint32_t>(10) : std::nullopt);
    r.gmem_file_size = total;  // one file for every slot
    if (!report.check(vm.add_memory_region(10 + s, kBase + s * per_slot, per_slot, r).has_value(),
                      "memslot", "{}: slot {}", tag, 10 + s)) {
      return;
    }
  }
  if (v.type == VmType::kTdx) report.check(vm.td_finalize().has_value(), "finalize", "{}", tag);

  const HostSync on_sync(vm, report, tag, [](unsigned vcpu) { return kBase + vcpu * kChunk; });
  // One guest program per vCPU runs both tests in turn (a vCPU's RIP carries over).
  std::vector<std::unique_ptr<guest::Program>> programs;
  for (unsigned i = 0; i < v.vcpus; ++i) {
    const Gpa base = kBase + i * kChunk;
    programs.push_back(
        std::make_unique<guest::Program>(vm.flavour(), [base](guest::Guest& g) -> guest::GuestTask {
          co_await explicit_conversion(g, base);
          co_await punch_hole(g, base, /*precise=*/false);
          co_await punch_hole(g, base, /*precise=*/true);
          co_await g.done();
        }));
    vm.vcpu(i).set_guest(programs.back().get());
  }
  std::vector<uint32_t> slots;
  for (unsigned s = 0; s < v.memslots; ++s) slots.push_back(10 + s);
  RunChecks checks(machine, options);
  checks.watch(vm);
  vmm::MemoryPressure pressure(vm, slots);
  run_vcpus_to_done(vm, programs, report, on_sync.handler());
  pressure.stop();
  check_pressure(vm, pressure, report, tag);
  checks.verdict(report, tag);
}

}  // namespace

void run_private_mem_conversions(const ScenarioOptions& options, Report& report) {
  for (VmType type : {VmType::kSwProtected, VmType::kTdx}) {
    for (unsigned vcpus : {1u, 4u}) {
      for (unsigned memslots : {1u, 2u}) {
        for (bool discard : {false, true})
          run_variant({type, vcpus, memslots, discard}, options, report);
      }
    }
  }
}

}  // namespace tdxsim
