// Guest mode under concurrent interrupts and flushes: vCPU threads run guests that read
// and write memory while other threads send IPIs (run_on), NMIs, and Hyper-V GPA-flush
// hypercalls that reach every TLB. Checked: every IPI ran exactly once on its target CPU,
// every NMI either exited a guest or was handled in host mode, and every guest store
// landed. Runs under TSan and ASan.
#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/fault_injection.h"
#include "platform/platform.h"
#include "platform/scripted_guest.h"
#include "platform/table_builder.h"

namespace tdxsim {
namespace {

constexpr Perms kRwx{true, true, true, true};
constexpr unsigned kVcpus = 3;
constexpr int kRounds = 300;

TEST(LogicalCpuStress, IpisNmisAndHypercallsAgainstRunningGuests) {
  FaultInjection faults;
  PlatformConfig config;
  config.cpus_per_package = kVcpus + 1;
  config.memory.bytes = 32 << 20;
  config.tlb.capacity = 64;
  config.hyperv = HyperVConfig{false};
  Platform platform(config, faults);
  HostMemory& mem = platform.memory();

  TableBuilder ept(mem, PagingFormat::kEpt, 4);
  std::vector<Pfn> pages;
  for (unsigned v = 0; v < kVcpus; ++v) {
    pages.push_back(*mem.alloc_frame());
    ept.map(Gpa{0x10000 + v * 0x1000}, pages.back().hpa(), Level::k4K, kRwx);
  }
  const Eptp eptp = Eptp::make(ept.root(), 4, true);

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ipis_ran[kVcpus] = {};
  std::atomic<uint64_t> nmi_exits{0};
  std::vector<std::thread> vcpus;
  for (unsigned v = 0; v < kVcpus; ++v) {
    vcpus.emplace_back([&, v] {
      auto binding = platform.bind(v);
      LogicalCpu& cpu = binding.cpu();
      GuestContext ctx;
      ctx.eptp = eptp;
      ctx.vpid = static_cast<uint16_t>(v + 1);
      ctx.instruction_budget = 64;
      const Gpa mine{0x10000 + v * 0x1000};
      uint64_t counter = 0;
      while (!stop.load(std::memory_order_acquire)) {
        // Each round stores a counter and reads it back: the store must land.
        ++counter;
        ScriptedGuest guest({ScriptedGuest::store(mine, counter), ScriptedGuest::load(mine),
                             ScriptedGuest::op(GuestInsnKind::kPause)});
        GuestState state;
        VmExit exit;
        do {
          exit = cpu.run_guest(ctx, state, guest);
          if (exit.is(VmxExitReason::kExceptionNmi)) {
            EXPECT_TRUE(cpu.handle_host_nmi());
            nmi_exits.fetch_add(1, std::memory_order_relaxed);
          }
          cpu.handle_interrupts();
        } while (!exit.is(VmxExitReason::kHlt));
        EXPECT_EQ(state.regs[Gpr::kRax], counter);
      }
    });
  }

  std::thread sender([&] {
    auto binding = platform.bind(kVcpus);
    for (int i = 0; i < kRounds; ++i) {
      const unsigned target = static_cast<unsigned>(i) % kVcpus;
      platform.cpu(target).run_on(
          [&, target](LogicalCpu& c) {
            EXPECT_EQ(c.id(), target);
            c.invept(InveptType::kSingleContext, eptp);
            ipis_ran[target].fetch_add(1, std::memory_order_relaxed);
          },
          &binding.cpu());
      if (i % 7 == 0) platform.cpu(target).send_nmi();
      if (i % 5 == 0) platform.hyperv()->flush_guest_physical_address_space(ept.root());
    }
  });
  sender.join();
  stop.store(true, std::memory_order_release);
  for (auto& t : vcpus) t.join();

  uint64_t total = 0;
  for (auto& n : ipis_ran) total += n.load();
  EXPECT_EQ(total, static_cast<uint64_t>(kRounds));
  uint64_t handled_in_host = 0, received = 0;
  for (unsigned v = 0; v < kVcpus; ++v) {
    received += platform.cpu(v).stats().nmis_received.value();
    handled_in_host += platform.cpu(v).stats().nmis_handled.value();
    EXPECT_EQ(platform.cpu(v).stats().spurious_nmis.value(), 0u);
  }
  // Every NMI was either taken by a guest exit (then handled) or handled in host mode.
  EXPECT_EQ(received, (kRounds + 6) / 7);
  EXPECT_EQ(handled_in_host, received);
  EXPECT_LE(nmi_exits.load(), received);
  EXPECT_EQ(platform.hyperv()->stats().flush_space_calls.value(),
            static_cast<uint64_t>((kRounds + 4) / 5));
}

}  // namespace
}  // namespace tdxsim

namespace tdxsim {
namespace {

// A thread that keeps giving its CPU up and taking it back while another keeps IPIing that
// CPU: every IPI runs exactly once, on the occupant or on the sender's behalf when the CPU is
// idle, and none is left queued behind an unbind (the sender would wait forever).
TEST(LogicalCpuStress, IpisRacingUnbind) {
  constexpr int kIpis = 20000;
  FaultInjection faults;
  PlatformConfig config;
  config.cpus_per_package = 2;
  config.memory.bytes = uint64_t{16} << 20;
  Platform platform(config, faults);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ran{0};
  std::thread occupant([&] {
    while (!stop.load(std::memory_order_acquire)) {
      // Bound and straight away unbound: the IPIs are run by the unbind, or on the
      // sender's behalf while the CPU is idle.
      CpuBinding b = platform.bind(0);
    }
  });
  {
    CpuBinding sender = platform.bind(1);
    for (int i = 0; i < kIpis; ++i) {
      platform.cpu(0).run_on([&](LogicalCpu&) { ran.fetch_add(1, std::memory_order_relaxed); },
                             &sender.cpu());
    }
  }
  stop.store(true, std::memory_order_release);
  occupant.join();
  EXPECT_EQ(ran.load(), static_cast<uint64_t>(kIpis));
}

}  // namespace
}  // namespace tdxsim
