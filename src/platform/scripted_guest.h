// A guest program given as a fixed list of instructions: the main code at RIP 0, 4, 8, …
// and a #VE handler at kVeHandlerRip. Past the end of its code it executes HLT. The
// platform's tests, benchmarks and demonstration use it; guest/ builds richer programs.
#pragma once

#include <vector>

#include "platform/guest_program.h"

namespace tdxsim {

class ScriptedGuest : public GuestProgram {
 public:
  static constexpr uint64_t kVeHandlerRip = 0x10000;

  explicit ScriptedGuest(std::vector<GuestInsn> code, std::vector<GuestInsn> ve_handler = {})
      : code_(std::move(code)), ve_handler_(std::move(ve_handler)) {
    for (auto* list : {&code_, &ve_handler_})
      for (auto& insn : *list) insn.length = 4;
  }

  GuestInsn fetch(GuestState& state) override {
    const bool in_handler = state.rip >= kVeHandlerRip;
    const auto& list = in_handler ? ve_handler_ : code_;
    const uint64_t index = (state.rip - (in_handler ? kVeHandlerRip : 0)) / 4;
    if (index < list.size()) return list[index];
    GuestInsn hlt;
    hlt.kind = GuestInsnKind::kHlt;
    return hlt;
  }
  uint64_t ve_handler_rip() const override { return kVeHandlerRip; }

  // Builders that read like the assembly they stand for.
  static GuestInsn load(Gpa gpa, Gpr dest = Gpr::kRax) {
    GuestInsn i;
    i.kind = GuestInsnKind::kLoad;
    i.gpa = gpa;
    i.dest = dest;
    return i;
  }
  static GuestInsn store(Gpa gpa, uint64_t value) {
    GuestInsn i;
    i.kind = GuestInsnKind::kStore;
    i.gpa = gpa;
    i.value = value;
    return i;
  }
  static GuestInsn fetch_at(Gpa gpa) {
    GuestInsn i;
    i.kind = GuestInsnKind::kFetch;
    i.gpa = gpa;
    return i;
  }
  static GuestInsn mov(Gpr dest, uint64_t value) {
    GuestInsn i;
    i.kind = GuestInsnKind::kMov;
    i.dest = dest;
    i.value = value;
    return i;
  }
  static GuestInsn op(GuestInsnKind kind) {
    GuestInsn i;
    i.kind = kind;
    return i;
  }

 private:
  std::vector<GuestInsn> code_;
  std::vector<GuestInsn> ve_handler_;
};

}  // namespace tdxsim
