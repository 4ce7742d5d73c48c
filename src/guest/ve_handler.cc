// The #VE handler's code (see ve_handler.h for what it does and why).
#include "guest/ve_handler.h"

#include <optional>

#include "platform/vm_exit.h"

namespace tdxsim::guest {

namespace {

constexpr uint64_t kEptViolation = static_cast<uint64_t>(VmxExitReason::kEptViolation);

GuestInsn iret() {
  GuestInsn i;
  i.kind = GuestInsnKind::kIret;
  return i;
}

}  // namespace

GuestTask ve_handler(Guest& g) {
  const GuestRegs info = co_await g.tdcall(TdcallLeaf::kVpVeinfoGet);
  if (info[Gpr::kRax] != 0) co_await g.fail("TDG.VP.VEINFO.GET", Gpa{0}, 0, info[Gpr::kRax]);
  const uint64_t reason = info[Gpr::kRcx];
  const Gpa gpa{info[Gpr::kR9]};
  if (reason != kEptViolation) co_await g.fail("#VE exit reason", gpa, kEptViolation, reason);

  if (g.flavour().is_shared(gpa)) {
    const std::optional<GuestInsn> insn = g.interrupted();
    const bool load = insn && insn->kind == GuestInsnKind::kLoad;
    const bool store = insn && insn->kind == GuestInsnKind::kStore;
    if ((!load && !store) || insn->gpa != gpa) {
      co_await g.fail("#VE on a shared GPA not from a load or store there", gpa, gpa.raw(),
                      insn ? insn->gpa.raw() : 0);
    }
    // Built outside the co_await (GCC 12; see Guest::ucall_tdvmcall).
    const Operands ops{
        {Gpr::kR10, 0},         {Gpr::kR11, static_cast<uint64_t>(TdVmCall::kEptViolation)},
        {Gpr::kR12, 8},         {Gpr::kR13, store ? 1u : 0u},
        {Gpr::kR14, gpa.raw()}, {Gpr::kR15, store ? insn->value : 0}};
    const GuestRegs r = co_await g.tdvmcall(kMmioGprMask, ops);
    const uint64_t status = r[Gpr::kRax] != 0 ? r[Gpr::kRax] : r[Gpr::kR10];
    if (status != 0) co_await g.fail("#VE.RequestMMIO", gpa, 0, status);
    if (load) co_await g.mov(insn->dest, r[Gpr::kR11]);
    g.skip_interrupted();
  } else {
    co_await g.accept(gpa.align_down(Level::k4K), Level::k4K);
  }
  co_await g.exec(iret());
  // Not resumed: the program ends this coroutine once the IRET has retired.
}

}  // namespace tdxsim::guest
