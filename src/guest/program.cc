// Program: which lane a fetch belongs to, and when a lane's coroutine is resumed.
#include "guest/program.h"

#include "base/check.h"
#include "guest/ve_handler.h"

namespace tdxsim::guest {

namespace {

GuestInsn hlt() {
  GuestInsn i;
  i.kind = GuestInsnKind::kHlt;
  i.length = kInsnLength;
  return i;
}

}  // namespace

Program::Program(const VmFlavour& flavour, Code code)
    : guest_(flavour), code_(std::move(code)), main_(code_(guest_)) {}

GuestInsn Program::fetch(GuestState& state) {
  guest_.x_.state = &state;
  if (state.rip >= kVeHandlerRip) return fetch_ve(state.rip);
  if (ve_) {
    // Back in the program's code: only the handler's IRET returns there.
    TDXSIM_CHECK(guest_.x_.ve.insn.kind == GuestInsnKind::kIret,
                 "guest RIP {:#x} left the #VE handler at {:#x} without IRET", state.rip,
                 guest_.x_.ve.rip);
    ve_.reset();
    guest_.x_.ve = Lane{};
    ++ves_handled_;
  }
  return fetch_main(state.rip);
}

GuestInsn Program::fetch_main(uint64_t rip) {
  Lane& m = guest_.x_.main;
  if (!m.started) {
    m.started = true;
    m.next = main_.handle();
    return step(m, rip);
  }
  if (rip == m.rip) return m.insn;  // it exited: the same instruction runs again
  if (m.finished) return hlt();
  TDXSIM_CHECK(rip == m.rip + m.insn.length,
               "guest RIP {:#x}: neither the instruction at {:#x} nor the one after it", rip,
               m.rip);
  return step(m, rip);
}

GuestInsn Program::fetch_ve(uint64_t rip) {
  Lane& h = guest_.x_.ve;
  if (!ve_) {
    TDXSIM_CHECK(rip == kVeHandlerRip, "guest RIP {:#x} in the #VE handler before a #VE", rip);
    ve_ = ve_handler(guest_);
    h = Lane{};
    h.started = true;
    h.next = ve_.handle();
    return step(h, rip);
  }
  if (rip == h.rip) return h.insn;
  if (h.finished) return hlt();
  TDXSIM_CHECK(rip == h.rip + h.insn.length && h.insn.kind != GuestInsnKind::kIret,
               "guest RIP {:#x} in the #VE handler after {:#x}", rip, h.rip);
  return step(h, rip);
}

GuestInsn Program::step(Lane& lane, uint64_t rip) {
  Execution& x = guest_.x_;
  lane.rip = rip;
  lane.posted = false;
  x.current = &lane;
  lane.next.resume();
  x.current = nullptr;
  if (!lane.posted) {
    lane.finished = true;
    lane.insn = hlt();
  }
  return lane.insn;
}

}  // namespace tdxsim::guest
