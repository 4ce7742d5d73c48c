// Guest programs as C++20 coroutines: the adapter that turns guest code written with Guest's
// primitives into the GuestProgram the CPU (and the TDX module) fetch instructions from.
//
// Writing a guest program. Guest code is a coroutine taking a `Guest&` and returning a
// GuestTask, written like a KVM selftest's guest_code: it awaits primitives — read/write,
// accept, map_gpa, fill/verify, sync/done — and reports failures with fail(), which is the
// selftests' GUEST_ASSERT (a ucall ASSERT whose details the host reads from the program).
// `Program program(VmFlavour::tdx(), guest_code);` makes it runnable: attach `program` to a
// vCPU (TdxModule::attach_guest, or LogicalCpu::run_guest with a VMX context) and run. The
// host loop answers the exits as KVM would — skipping emulated instructions, answering
// TDVMCALLs by writing the exposed registers before re-entering — and decodes ucalls from
// MMIO writes with decode_ucall (ucall.h). Host and guest agree on memory contents through
// pattern(gpa, round) at the words for_each_sample names (pattern.h). A TD's #VEs are handled
// by the program itself (ve_handler.h): lazy ACCEPT of PENDING pages, and MMIO (including
// the ucall) through TDG.VP.VMCALL<#VE.RequestMMIO>.
//
// RIP layout. Instructions are 4 bytes long. The program's code starts at the RIP of the
// first fetch (0 for a fresh vCPU) and each instruction it awaits gets the next RIP; the #VE
// handler's code starts at kVeHandlerRip, afresh for each #VE. A fetch at the RIP of the
// instruction last handed out returns it again (it exited and runs again); a fetch at the
// RIP just past it means it retired, or the host or module emulated and skipped it, and
// resumes the coroutine until it awaits the next one. Any other RIP is a simulator bug
// (checked), except the return of the #VE handler's IRET to the code it interrupted. Once the
// code has returned, every fetch answers HLT.
//
// Cost. The coroutine frames come from the program's FramePool: after the first use of each
// frame size nothing is allocated, per instruction or per primitive (a test checks it).
//
// One Program per vCPU: it holds that vCPU's place in the code (several vCPUs may run the
// same code, each with its own Program).
//
// Thread safety: a program belongs to the vCPU thread that runs it; the host reads failure
// records between runs.
#pragma once

#include <cstdint>
#include <functional>

#include "guest/guest.h"
#include "guest/task.h"
#include "guest/vm_flavour.h"
#include "platform/guest_program.h"

namespace tdxsim::guest {

class Program final : public GuestProgram {
 public:
  // Kernel-text-like: far above anything the program's code reaches.
  static constexpr uint64_t kVeHandlerRip = 0xFFFF'8000'0000'0000;

  // The code is kept for the program's life: a lambda's captures stay valid in its coroutine.
  using Code = std::function<GuestTask(Guest&)>;
  Program(const VmFlavour& flavour, Code code);
  ~Program() override = default;
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  GuestInsn fetch(GuestState& state) override;
  uint64_t ve_handler_rip() const override { return kVeHandlerRip; }

  Guest& guest() { return guest_; }
  const GuestFailure* failure(uint64_t index) const { return guest_.failure(index); }
  // The code has returned (it halts from here on).
  bool finished() const { return guest_.x_.main.finished; }
  // #VEs whose handler has returned (IRET retired).
  uint64_t ves_handled() const { return ves_handled_; }

 private:
  GuestInsn fetch_main(uint64_t rip);
  GuestInsn fetch_ve(uint64_t rip);
  // Resumes `lane` for the instruction at `rip`.
  GuestInsn step(Lane& lane, uint64_t rip);

  // Destroyed in reverse: the handler's frame, the code's, the code, then the Guest with
  // the pool they came from.
  Guest guest_;
  Code code_;
  GuestTask main_;
  GuestTask ve_;
  uint64_t ves_handled_ = 0;
};

}  // namespace tdxsim::guest
