// Guest: what guest code is given — the primitives of a KVM selftest's guest_code, for the
// VM flavour it runs in (TD or not). Each primitive is awaited:
//
//   co_await g.accept(gpa, Level::k4K);   // TD: TDG.MEM.PAGE.ACCEPT, statuses handled
//   co_await g.write(gpa, value);
//   uint64_t v = co_await g.read(gpa);
//   if (v != value) co_await g.fail("read back", gpa, value, v);   // GUEST_ASSERT
//   co_await g.sync(stage);               // GUEST_SYNC
//   co_await g.done();                    // GUEST_DONE
//
// Single instructions (read, write, fetch, pause, hlt, mov, sync, done) are plain awaiters;
// the rest are Tasks of several instructions. A guest failure is reported the selftests' way,
// by ucall ASSERT, and the guest then halts for good: fail() never returns.
//
// Register use: primitives pass operands in registers and read results back right after the
// instruction that produced them, never keeping a value in a register across another
// instruction — which is what lets the #VE handler (ve_handler.h) clobber the TDCALL
// registers without saving them.
//
// GCC 12: build a call's Operands in a statement of its own, not as a braced list inside the
// co_await expression (`const Operands ops{{Gpr::kRbx, 1}}; co_await g.vmcall(nr, ops);`):
// GCC 12 rejects an initializer_list that must live across a suspension point ("array used
// as initializer").
//
// Thread safety: the vCPU thread's; the failure records are read by the host between runs.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "base/addr.h"
#include "guest/frame_pool.h"
#include "guest/insn.h"
#include "guest/pattern.h"
#include "guest/task.h"
#include "guest/ucall.h"
#include "guest/vm_flavour.h"
#include "platform/guest_program.h"
#include "tdx_module/seamcall_leaf.h"

namespace tdxsim::guest {

// KVM's hypercall ABI (include/uapi/linux/kvm_para.h): VMCALL with RAX = number, RBX, RCX,
// RDX = arguments; the result in RAX.
inline constexpr uint64_t kKvmHcMapGpaRange = 12;
inline constexpr uint64_t kKvmMapGpaRangePageSz4K = 0;
inline constexpr uint64_t kKvmMapGpaRangeEncrypted = uint64_t{1} << 4;
inline constexpr uint64_t kKvmMapGpaRangeDecrypted = 0;

// The GPRs a TDG.VP.VMCALL exposes to the host (RCX's mask): MapGPA passes R10-R13 and gets
// R10 (status) and R11 (retry GPA) back; #VE.RequestMMIO uses R10-R15.
inline constexpr uint16_t kMapGpaGprMask = 0x3C00;
inline constexpr uint16_t kMmioGprMask = 0xFC00;

struct RegValue {
  Gpr reg;
  uint64_t value;
};

// The operands of a call, by value: a task may be awaited after the expression that made it.
class Operands {
 public:
  static constexpr unsigned kMax = 8;
  Operands() = default;
  Operands(std::initializer_list<RegValue> regs);
  const RegValue* begin() const { return regs_.data(); }
  const RegValue* end() const { return regs_.data() + count_; }

 private:
  std::array<RegValue, kMax> regs_{};
  uint8_t count_ = 0;
};

class Guest {
 public:
  explicit Guest(const VmFlavour& flavour) : flavour_(flavour) {}
  Guest(const Guest&) = delete;
  Guest& operator=(const Guest&) = delete;

  const VmFlavour& flavour() const { return flavour_; }

  // --- One instruction each -------------------------------------------------------------
  Load read(Gpa gpa, Gpr dest = Gpr::kRax);
  Step write(Gpa gpa, uint64_t value);
  Step fetch(Gpa gpa);
  Step pause();
  Step hlt();
  Step mov(Gpr dest, uint64_t value);
  Step exec(const GuestInsn& insn);  // anything else, as is

  // --- ucall (ucall.h) ----------------------------------------------------------------------
  Step sync(uint64_t stage);
  Step done();
  // GUEST_ASSERT's failure: records what failed, ucall ASSERT with its index, then HLT
  // forever. Never returns.
  Task<> fail(std::string what, Gpa gpa, uint64_t expected, uint64_t actual);

  // --- Memory ---------------------------------------------------------------------------------
  // TD only (checked). ACCEPT of the page of `level` at `gpa`: TDX_SUCCESS and
  // TDX_PAGE_ALREADY_ACCEPTED are fine, BUSY is retried, TDX_PAGE_SIZE_MISMATCH on a huge page
  // falls back to the 512 pages of the next level down; anything else fails the guest.
  Task<> accept(Gpa gpa, Level level);
  // Converts [gpa, gpa + bytes) to shared or private. TD: TDG.VP.VMCALL<MapGPA> (the GPA with
  // the shared bit when converting to shared), resumed from R11 on TDVMCALL_STATUS_RETRY.
  // Otherwise: KVM_HC_MAP_GPA_RANGE. A non-zero status fails the guest.
  // REQUIRES: gpa and bytes 4K-aligned (checked).
  Task<> map_gpa(Gpa gpa, uint64_t bytes, bool to_shared);
  // Writes / checks fn(gpa, round) at every sampled word (pattern.h) of [base, base + bytes);
  // `fn` sees the GPA without the shared bit. verify fails the guest at the first mismatch.
  Task<> fill(Gpa base, uint64_t bytes, uint64_t round, PatternFn fn = pattern);
  Task<> verify(Gpa base, uint64_t bytes, uint64_t round, PatternFn fn = pattern);

  // --- Calls: MOVs of the operands, then the instruction; every register after it ------------
  Task<GuestRegs> tdcall(TdcallLeaf leaf, Operands ops = {});
  // TDG.VP.VMCALL exposing `gpr_mask` (R10 = 0 and R11 = the sub-function go in `ops`).
  Task<GuestRegs> tdvmcall(uint16_t gpr_mask, Operands ops);
  // VMCALL with RAX = `nr` (a KVM hypercall number).
  Task<GuestRegs> vmcall(uint64_t nr, Operands ops);

  // --- For the host ---------------------------------------------------------------------------
  // The failure a ucall ASSERT's argument names; nullptr when there is none by that index.
  const GuestFailure* failure(uint64_t index) const;
  const std::vector<GuestFailure>& failures() const { return failures_; }
  const FramePool& frames() const { return pool_; }

 private:
  friend class Program;
  friend FramePool& frame_pool_of(Guest& g);
  friend GuestTask ve_handler(Guest& g);

  Task<GuestRegs> call(GuestInsnKind kind, uint64_t rax, Operands ops);
  Step ucall(UcallCmd cmd, uint64_t arg);
  // The ucall for code that cannot take a #VE (the #VE handler itself): the MMIO write as the
  // handler would have converted it.
  Task<> ucall_tdvmcall(UcallCmd cmd, uint64_t arg);
  // The instruction the #VE in progress interrupted: the main lane's, at the RIP on top of
  // the exception stack; nullopt when that is not where the main lane is.
  std::optional<GuestInsn> interrupted() const;
  // Moves the saved return RIP past the interrupted instruction: the handler emulated it.
  void skip_interrupted();

  // The pool before the lanes and tasks that use it: destroyed after them (Program).
  FramePool pool_;
  VmFlavour flavour_;
  Execution x_;
  std::vector<GuestFailure> failures_;
};

}  // namespace tdxsim::guest
