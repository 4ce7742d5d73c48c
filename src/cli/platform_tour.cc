#include "cli/platform_tour.h"

#include <fmt/format.h>

#include "base/fault_injection.h"
#include "platform/ept_entry.h"
#include "platform/platform.h"
#include "platform/scripted_guest.h"
#include "platform/table_builder.h"

namespace tdxsim::cli {
namespace {

using SG = ScriptedGuest;
constexpr Perms kRwx{true, true, true, true};

class Tour {
 public:
  explicit Tour(std::FILE* out) : out_(out) {}

  void say(const std::string& line) { fmt::print(out_, "{}\n", line); }
  void check(bool ok, const std::string& what) {
    ++checks_;
    if (!ok) ++failed_;
    fmt::print(out_, "   [{}] {}\n", ok ? "ok" : "FAILED", what);
  }
  int failed() const { return failed_; }
  int checks() const { return checks_; }

 private:
  std::FILE* out_;
  int checks_ = 0;
  int failed_ = 0;
};

}  // namespace

int run_platform_tour(std::FILE* out) {
  Tour t(out);
  FaultInjection faults;
  PlatformConfig config;
  config.cpus_per_package = 2;
  config.memory.bytes = 64 << 20;
  Platform platform(config, faults);
  HostMemory& mem = platform.memory();

  t.say(fmt::format("tdxsim platform tour: Intel, {} package x {} logical CPUs, {} MiB host memory",
                    config.packages, config.cpus_per_package, config.memory.bytes >> 20));

  TableBuilder ept(mem, PagingFormat::kEpt, 4);
  const Pfn old_page = *mem.alloc_frame(), new_page = *mem.alloc_frame();
  mem.fill(new_page, kHostKey, 0x5eed);
  ept.map(Gpa{0x1000}, old_page.hpa(), Level::k4K, kRwx);
  GuestContext ctx;
  ctx.eptp = Eptp::make(ept.root(), 4, /*ad_enabled=*/true);
  t.say(fmt::format("1. EPT: 4 levels, A/D enabled, root {}; gpa:0x1000 -> {} (4K, RWX, WB)",
                    ept.root(), old_page.hpa()));

  auto binding = platform.bind(0);
  LogicalCpu& cpu = binding.cpu();
  std::vector<StaleUse> stale;
  auto sub = cpu.stale_use.attach([&](const StaleUse& s) { stale.push_back(s); });
  auto run = [&](SG& guest, GuestState& state) {
    const VmExit exit = cpu.run_guest(ctx, state, guest);
    cpu.handle_interrupts();
    return exit;
  };

  {
    SG guest({SG::store(Gpa{0x1008}, 0xfeed), SG::load(Gpa{0x1008})});
    GuestState state;
    const VmExit exit = run(guest, state);
    const EptEntry leaf{ept.read_entry(Gpa{0x1000}, Level::k4K)};
    t.say(
        fmt::format("2. guest on CPU 0 stores 0xfeed at gpa:0x1008 and loads it back: rax={:#x}, "
                    "exit {}",
                    state.regs[Gpr::kRax], to_string(static_cast<VmxExitReason>(exit.reason))));
    t.check(state.regs[Gpr::kRax] == 0xfeed, "the load returned what the store wrote");
    t.check(cpu.tlb().stats().misses.value() == 1 && cpu.tlb().stats().hits.value() == 1,
            "one TLB miss (the walk), then one hit");
    t.check(leaf.is_accessed() && leaf.is_dirty(), "the walk set A and D in the leaf");
  }
  {
    ept.map(Gpa{0x1000}, new_page.hpa(), Level::k4K, kRwx);
    SG guest({SG::load(Gpa{0x1008})});
    GuestState state;
    run(guest, state);
    t.say(fmt::format("3. host remaps gpa:0x1000 -> {} without INVEPT; guest loads: rax={:#x}",
                      new_page.hpa(), state.regs[Gpr::kRax]));
    t.check(state.regs[Gpr::kRax] == 0xfeed && stale.size() == 1 &&
                stale[0].served.staleness == Staleness::kDifferentFrame,
            fmt::format("the TLB served the old frame and the probe flagged it: {}",
                        stale.empty() ? "none" : to_string(stale[0].served.staleness)));
  }
  {
    cpu.invept(InveptType::kSingleContext, ctx.eptp);
    SG guest({SG::load(Gpa{0x1008})});
    GuestState state;
    run(guest, state);
    t.say(fmt::format("4. INVEPT single-context; guest loads: rax={:#x}", state.regs[Gpr::kRax]));
    t.check(state.regs[Gpr::kRax] == 0x5eed && stale.size() == 1,
            "after INVEPT the new frame is used, and nothing stale");
  }
  {
    SG guest({SG::store(Gpa{0x5000}, 1)});
    GuestState state;
    const VmExit exit = run(guest, state);
    t.say(
        fmt::format("5. guest stores to unmapped gpa:0x5000: exit {} ({}), qualification {:#x}, "
                    "at {}, rip {:#x}",
                    exit.reason, to_string(static_cast<VmxExitReason>(exit.reason)),
                    exit.qualification, exit.gpa, exit.rip));
    t.check(exit.is(VmxExitReason::kEptViolation) && exit.qualification == 0x182 && exit.rip == 0,
            "EPT violation: write, no permissions, GLA valid, final translation; RIP unchanged");
  }
  {
    VeInfoArea ve;
    ctx.ve_enabled = true;
    ctx.ve_info = &ve;
    SG guest({SG::load(Gpa{0x6000})}, {SG::op(GuestInsnKind::kHlt)});
    GuestState state;
    const VmExit exit = run(guest, state);
    t.say(
        fmt::format("6. with #VE enabled, a load from gpa:0x6000 (not present, suppress-#VE "
                    "clear) runs the guest's #VE handler: rip {:#x}, VE info gpa {:#x}",
                    exit.rip, ve.gpa));
    t.check(exit.is(VmxExitReason::kHlt) && exit.rip == SG::kVeHandlerRip && ve.gpa == 0x6000 &&
                ve.busy == VeInfoArea::kBusy,
            "the violation became a #VE inside the guest, not a VM exit");
  }
  {
    SeamcallRegs regs;
    regs.rax = 16;  // TDH.MEM.SEPT.ADD; no TDX module is loaded on this platform
    const uint64_t status = host_seamcall(cpu, regs);
    t.say(fmt::format("7. SEAMCALL with no TDX module loaded: status {:#018x}", status));
    t.check(status == linux_status::kSeamcallVmFailInvalid,
            "VMfailInvalid became Linux's class-0xFF status (its low 16 bits read as exit "
            "reason 0: a decoder must check the class first)");
  }
  t.say(fmt::format("checks: {} of {} held", t.checks() - t.failed(), t.checks()));
  return t.failed();
}

}  // namespace tdxsim::cli
