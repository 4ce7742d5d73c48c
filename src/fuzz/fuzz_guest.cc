#include "fuzz/fuzz_guest.h"

#include "platform/scripted_guest.h"
#include "tdx_module/seamcall_leaf.h"

namespace tdxsim::fuzz {

namespace {
constexpr uint8_t kInsnBytes = 4;
}  // namespace

void FuzzGuest::add(GuestInsn insn) {
  insn.length = kInsnBytes;
  code_.push_back(insn);
}

void FuzzGuest::add_tdcall(uint64_t rax, uint64_t rcx, uint64_t rdx) {
  add(ScriptedGuest::mov(Gpr::kRcx, rcx));
  add(ScriptedGuest::mov(Gpr::kRdx, rdx));
  add(ScriptedGuest::mov(Gpr::kRax, rax));
  add(ScriptedGuest::op(GuestInsnKind::kTdcall));
}

void FuzzGuest::add_accept_and_check(Gpa gpa, unsigned tdx_level, Gpa word) {
  add_tdcall(LeafAndVersion::of(TdcallLeaf::kMemPageAccept).raw(), gpa.raw() | tdx_level);
  add(ScriptedGuest::load(word, kLoaded));
  checks_.emplace(first_rip_ + code_.size() * kInsnBytes, word);
  add(ScriptedGuest::op(GuestInsnKind::kNop));
}

GuestInsn FuzzGuest::fetch(GuestState& state) {
  if (state.rip >= kVeHandlerRip) return ScriptedGuest::op(GuestInsnKind::kIret);
  if (const auto c = checks_.find(state.rip); c != checks_.end()) {
    const uint64_t value = state.regs[kLoaded];
    if (state.regs[Gpr::kRax] == 0 && value != 0 && reported_.insert(state.rip).second) {
      suspects_.emplace_back(c->second, value);
    }
  }
  if (state.rip < first_rip_) return ScriptedGuest::op(GuestInsnKind::kNop);
  const uint64_t index = (state.rip - first_rip_) / kInsnBytes;
  if (index < code_.size()) return code_[index];
  return ScriptedGuest::op(GuestInsnKind::kHlt);
}

std::vector<std::pair<Gpa, uint64_t>> FuzzGuest::take_suspects() {
  return std::exchange(suspects_, {});
}

}  // namespace tdxsim::fuzz
