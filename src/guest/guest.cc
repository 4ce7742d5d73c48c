// Guest's primitives: the instructions each one issues and how each reads its statuses.
#include "guest/guest.h"

#include <utility>

#include "base/check.h"
#include "tdx_module/page_info.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim::guest {

namespace {

GuestInsn insn(GuestInsnKind kind, Gpa gpa = Gpa{0}, uint64_t value = 0, Gpr dest = Gpr::kRax) {
  GuestInsn i;
  i.kind = kind;
  i.gpa = gpa;
  i.value = value;
  i.dest = dest;
  return i;
}

bool accept_busy(uint64_t status) {
  return is_status(status, TdxStatus::kOperandBusy) ||
         is_status(status, TdxStatus::kOperandBusyHostPriority);
}

}  // namespace

FramePool& frame_pool_of(Guest& g) {
  return g.pool_;
}

Operands::Operands(std::initializer_list<RegValue> regs) {
  TDXSIM_CHECK(regs.size() <= kMax, "{} call operands, at most {}", regs.size(), kMax);
  for (const RegValue& r : regs) regs_[count_++] = r;
}

// --- One instruction ------------------------------------------------------------------------

Load Guest::read(Gpa gpa, Gpr dest) {
  return Load(x_, insn(GuestInsnKind::kLoad, gpa, 0, dest));
}
Step Guest::write(Gpa gpa, uint64_t value) {
  return Step(x_, insn(GuestInsnKind::kStore, gpa, value));
}
Step Guest::fetch(Gpa gpa) {
  return Step(x_, insn(GuestInsnKind::kFetch, gpa));
}
Step Guest::pause() {
  return Step(x_, insn(GuestInsnKind::kPause));
}
Step Guest::hlt() {
  return Step(x_, insn(GuestInsnKind::kHlt));
}
Step Guest::mov(Gpr dest, uint64_t value) {
  return Step(x_, insn(GuestInsnKind::kMov, Gpa{0}, value, dest));
}
Step Guest::exec(const GuestInsn& i) {
  return Step(x_, i);
}

// --- ucall ----------------------------------------------------------------------------------

Step Guest::ucall(UcallCmd cmd, uint64_t arg) {
  return write(flavour_.to_shared(flavour_.ucall_gpa), encode_ucall(cmd, arg));
}
Step Guest::sync(uint64_t stage) {
  return ucall(UcallCmd::kSync, stage);
}
Step Guest::done() {
  return ucall(UcallCmd::kDone, 0);
}

Task<> Guest::ucall_tdvmcall(UcallCmd cmd, uint64_t arg) {
  // Operands are built outside the co_await: GCC 12 cannot keep an initializer_list's array
  // alive across a suspension point ("array used as initializer").
  const Operands ops{{Gpr::kR10, 0},
                     {Gpr::kR11, static_cast<uint64_t>(TdVmCall::kEptViolation)},
                     {Gpr::kR12, 8},
                     {Gpr::kR13, 1},
                     {Gpr::kR14, flavour_.to_shared(flavour_.ucall_gpa).raw()},
                     {Gpr::kR15, encode_ucall(cmd, arg)}};
  co_await tdvmcall(kMmioGprMask, ops);
}

Task<> Guest::fail(std::string what, Gpa gpa, uint64_t expected, uint64_t actual) {
  const uint64_t index = failures_.size();
  failures_.push_back(GuestFailure{std::move(what), gpa, expected, actual});
  // The #VE handler cannot take the #VE a ucall's write raises (the information area is busy
  // until VEINFO.GET, and a nested #VE would lose the interrupted RIP): it makes the call.
  if (flavour_.td && x_.in_ve_handler()) {
    co_await ucall_tdvmcall(UcallCmd::kAssert, index);
  } else {
    co_await ucall(UcallCmd::kAssert, index);
  }
  for (;;) co_await hlt();
}

const GuestFailure* Guest::failure(uint64_t index) const {
  return index < failures_.size() ? &failures_[index] : nullptr;
}

// --- Calls ----------------------------------------------------------------------------------

Task<GuestRegs> Guest::call(GuestInsnKind kind, uint64_t rax, Operands ops) {
  for (const RegValue& r : ops) co_await mov(r.reg, r.value);
  co_await mov(Gpr::kRax, rax);
  co_return co_await Call(x_, insn(kind));
}

// Not a coroutine itself: call's task is the one the caller awaits, so a TDCALL costs one
// frame, not two (every ACCEPT is one).
Task<GuestRegs> Guest::tdcall(TdcallLeaf leaf, Operands ops) {
  TDXSIM_CHECK(flavour_.td, "TDCALL {} in a non-TD guest", to_string(leaf));
  return call(GuestInsnKind::kTdcall, LeafAndVersion::of(leaf).raw(), ops);
}

Task<GuestRegs> Guest::tdvmcall(uint16_t gpr_mask, Operands ops) {
  TDXSIM_CHECK(flavour_.td, "TDG.VP.VMCALL in a non-TD guest");
  // RCX first: the operands may not name it (the mask is RCX).
  co_await mov(Gpr::kRcx, gpr_mask);
  co_return co_await call(GuestInsnKind::kTdcall, LeafAndVersion::of(TdcallLeaf::kVpVmcall).raw(),
                          ops);
}

Task<GuestRegs> Guest::vmcall(uint64_t nr, Operands ops) {
  return call(GuestInsnKind::kVmcall, nr, ops);
}

// --- Memory ---------------------------------------------------------------------------------

Task<> Guest::accept(Gpa gpa, Level level) {
  TDXSIM_CHECK(flavour_.td, "ACCEPT in a non-TD guest");
  for (;;) {
    const Operands ops{{Gpr::kRcx, PageInfo::of(gpa, level).raw()}};
    const GuestRegs r = co_await tdcall(TdcallLeaf::kMemPageAccept, ops);
    const uint64_t s = r[Gpr::kRax];
    if (s == raw(TdxStatus::kSuccess) || is_status(s, TdxStatus::kPageAlreadyAccepted)) {
      co_return;
    }
    if (accept_busy(s)) {
      // Contention with the host on the entry: the guest kernel's answer is to try again.
      co_await pause();
      continue;
    }
    if (is_status(s, TdxStatus::kPageSizeMismatch) && level != Level::k4K) {
      // The host mapped this range with smaller pages: accept those.
      const Level smaller = level_down(level);
      for (uint64_t off = 0; off < level_bytes(level); off += level_bytes(smaller)) {
        co_await accept(gpa + off, smaller);
      }
      co_return;
    }
    co_await fail("TDG.MEM.PAGE.ACCEPT", gpa, 0, s);
  }
}

Task<> Guest::map_gpa(Gpa gpa, uint64_t bytes, bool to_shared) {
  TDXSIM_CHECK(gpa.is_aligned(Level::k4K) && bytes % kPageSize == 0 && bytes != 0,
               "MapGPA of {:#x}+{:#x}: not 4K-aligned", gpa.raw(), bytes);
  if (!flavour_.td) {
    const Operands ops{
        {Gpr::kRbx, gpa.raw()},
        {Gpr::kRcx, bytes / kPageSize},
        {Gpr::kRdx, kKvmMapGpaRangePageSz4K |
                        (to_shared ? kKvmMapGpaRangeDecrypted : kKvmMapGpaRangeEncrypted)}};
    const GuestRegs r = co_await vmcall(kKvmHcMapGpaRange, ops);
    if (r[Gpr::kRax] != 0) co_await fail("KVM_HC_MAP_GPA_RANGE", gpa, 0, r[Gpr::kRax]);
    co_return;
  }
  const Gpa start = to_shared ? flavour_.to_shared(gpa) : flavour_.to_private(gpa);
  const Gpa end = start + bytes;
  Gpa next = start;
  for (;;) {
    const Operands ops{{Gpr::kR10, 0},
                       {Gpr::kR11, static_cast<uint64_t>(TdVmCall::kMapGpa)},
                       {Gpr::kR12, next.raw()},
                       {Gpr::kR13, end - next}};
    const GuestRegs r = co_await tdvmcall(kMapGpaGprMask, ops);
    if (r[Gpr::kRax] != raw(TdxStatus::kSuccess)) {
      co_await fail("TDG.VP.VMCALL<MapGPA>", next, 0, r[Gpr::kRax]);
    }
    const uint64_t status = r[Gpr::kR10];
    if (status == static_cast<uint64_t>(TdVmCallStatus::kSuccess)) co_return;
    if (status != static_cast<uint64_t>(TdVmCallStatus::kRetry)) {
      co_await fail("MapGPA status", next, 0, status);
    }
    // RETRY: the host converted up to R11 (a GPA in the same form as R12) and wants the
    // guest to call again from there — it must have moved forward and stayed in the range.
    const Gpa resume{r[Gpr::kR11]};
    if (resume <= next || resume >= end)
      co_await fail("MapGPA retry GPA", next, end.raw(), resume.raw());
    next = resume;
  }
}

Task<> Guest::fill(Gpa base, uint64_t bytes, uint64_t round, PatternFn fn) {
  TDXSIM_CHECK(base.is_aligned(Level::k4K) && bytes % kPageSize == 0,
               "fill of {:#x}+{:#x}: not 4K-aligned", base.raw(), bytes);
  for (uint64_t page = 0; page < bytes; page += kPageSize) {
    for (uint64_t off : kSampleOffsets) {
      const Gpa gpa = base + page + off;
      co_await write(gpa, fn(flavour_.to_private(gpa), round));
    }
  }
}

Task<> Guest::verify(Gpa base, uint64_t bytes, uint64_t round, PatternFn fn) {
  TDXSIM_CHECK(base.is_aligned(Level::k4K) && bytes % kPageSize == 0,
               "verify of {:#x}+{:#x}: not 4K-aligned", base.raw(), bytes);
  for (uint64_t page = 0; page < bytes; page += kPageSize) {
    for (uint64_t off : kSampleOffsets) {
      const Gpa gpa = base + page + off;
      const uint64_t want = fn(flavour_.to_private(gpa), round);
      const uint64_t got = co_await read(gpa);
      if (got != want) co_await fail("verify", gpa, want, got);
    }
  }
}

// --- #VE support ------------------------------------------------------------------------------

std::optional<GuestInsn> Guest::interrupted() const {
  const GuestState& s = *x_.state;
  if (s.exception_stack.empty() || !x_.main.started || s.exception_stack.back() != x_.main.rip) {
    return std::nullopt;
  }
  return x_.main.insn;
}

void Guest::skip_interrupted() {
  // The frame the #VE pushed is the handler's to edit, as a kernel's handler moves the saved
  // RIP in pt_regs past an instruction it emulated.
  x_.state->exception_stack.back() += x_.main.insn.length;
}

}  // namespace tdxsim::guest
