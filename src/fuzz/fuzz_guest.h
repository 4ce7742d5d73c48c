// FuzzGuest: the guest program a fuzzed TD vCPU runs — a list of instructions the input chose
// (ACCEPTs, loads, stores, TDCALLs, MapGPA) — and the one thing the guest itself can judge:
// a page it has just accepted reads as zeros.
//
// A zero check is three instructions the builder emits together: TDG.MEM.PAGE.ACCEPT, a load
// of a word of the page into R12, then a check point. At the check point, an ACCEPT that
// answered TDX_SUCCESS (RAX = 0) with R12 non-zero is a suspect: the host's junk, or another
// page, reached the guest. The host confirms it after the entry (the page may have been
// poisoned by the hostile host's own writes, which is no module bug). The #VE handler is a
// bare IRET, so that RAX still holds the ACCEPT's answer when a load takes a #VE.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "base/addr.h"
#include "platform/guest_program.h"

namespace tdxsim::fuzz {

class FuzzGuest : public GuestProgram {
 public:
  static constexpr uint64_t kVeHandlerRip = 0x10000;
  static constexpr Gpr kLoaded = Gpr::kR12;

  // `tdr`: the TD whose vCPU runs it (whom the suspects concern). `first_rip`: where the
  // program's first instruction sits — the vCPU's RIP survives a new program, so the code
  // starts where the vCPU stands (below it: NOPs, for an IRET back into them).
  FuzzGuest(Hpa tdr, uint64_t first_rip) : tdr_(tdr), first_rip_(first_rip) {}

  Hpa tdr() const { return tdr_; }

  void add(GuestInsn insn);
  // ACCEPT of `gpa` at `tdx_level` (gpa | level in RCX), then the zero check of the word at
  // `word` (a GPA inside that page).
  void add_accept_and_check(Gpa gpa, unsigned tdx_level, Gpa word);
  // A TDCALL with RAX, RCX and RDX as given.
  void add_tdcall(uint64_t rax, uint64_t rcx, uint64_t rdx = 0);
  size_t size() const { return code_.size(); }

  GuestInsn fetch(GuestState& state) override;
  uint64_t ve_handler_rip() const override { return kVeHandlerRip; }

  // The (GPA, value) of each zero check that failed since the last call, each once.
  std::vector<std::pair<Gpa, uint64_t>> take_suspects();

 private:
  Hpa tdr_;
  uint64_t first_rip_;
  std::vector<GuestInsn> code_;
  std::map<uint64_t, Gpa> checks_;  // the RIP of each check point → the GPA its load read
  std::set<uint64_t> reported_;     // check points that made a suspect already
  std::vector<std::pair<Gpa, uint64_t>> suspects_;
};

}  // namespace tdxsim::fuzz
