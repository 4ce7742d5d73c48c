// One guest instruction as something guest code awaits, and the lanes instructions are
// handed out on.
//
// A lane is a strand of guest code with its own RIPs: the program's code, and the #VE
// handler (a fresh coroutine per #VE). Awaiting an instruction posts it on the lane that is
// running and suspends; the adapter (program.h) hands it to the CPU and resumes the lane
// once RIP has moved past it. The awaiter's value is read from the registers at that point:
// what a load wrote into `dest`, what a TDCALL or VMCALL returned.
//
// Thread safety: the vCPU thread's, as the program's.
#pragma once

#include <coroutine>
#include <cstdint>

#include "platform/guest_program.h"

namespace tdxsim::guest {

// Every instruction is 4 bytes long: RIPs of a lane are 4 apart.
inline constexpr uint8_t kInsnLength = 4;

struct Lane {
  std::coroutine_handle<> next;  // where the lane resumes: the innermost suspended frame
  GuestInsn insn;                // the instruction at `rip`
  uint64_t rip = 0;
  bool started = false;
  bool posted = false;    // the last resume produced an instruction (else the code returned)
  bool finished = false;  // the code returned: HLT from here on
};

class Execution {
 public:
  Lane main;
  Lane ve;
  Lane* current = nullptr;      // the lane being resumed
  GuestState* state = nullptr;  // the vCPU state of the fetch in progress

  void post(const GuestInsn& insn, std::coroutine_handle<> h) {
    current->insn = insn;
    current->insn.length = kInsnLength;
    current->next = h;
    current->posted = true;
  }
  bool in_ve_handler() const { return current == &ve; }
};

enum class InsnResult : uint8_t { kNone, kDest, kRegs };

template <InsnResult R>
class [[nodiscard]] InsnAwaiter {
 public:
  InsnAwaiter(Execution& x, const GuestInsn& insn) : x_(&x), insn_(insn) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) noexcept { x_->post(insn_, h); }
  auto await_resume() const noexcept {
    if constexpr (R == InsnResult::kDest) {
      return x_->state->regs[insn_.dest];
    } else if constexpr (R == InsnResult::kRegs) {
      return x_->state->regs;
    }
  }

 private:
  Execution* x_;
  GuestInsn insn_;
};

using Step = InsnAwaiter<InsnResult::kNone>;  // its effect is all
using Load = InsnAwaiter<InsnResult::kDest>;  // the loaded word
using Call = InsnAwaiter<InsnResult::kRegs>;  // every register after TDCALL/VMCALL

}  // namespace tdxsim::guest
