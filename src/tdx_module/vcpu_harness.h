// Test support: a TD that runs. On top of ModuleHarness: a TD built with vCPUs and page
// tables for one 2M of private GPAs, finalized or not; AUG of host pages with junk in them;
// TDH.VP.ENTER on a chosen logical CPU followed by the interrupt window KVM opens after an
// exit; guest programs built from TDCALL snippets; and the vCPU's state as the TDVPS holds it.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "platform/scripted_guest.h"
#include "tdx_module/module_test_harness.h"
#include "tdx_module/td_test_harness.h"
#include "tdx_module/td_exit.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim::test {

using SG = ScriptedGuest;

// What the host wrote into a page before AUG: the guest must never see it.
constexpr uint64_t kJunk = 0x5A5A'5A5A'5A5A'5A5A;

// Guest code: a TDCALL with RAX = leaf and RCX = rcx.
inline std::vector<GuestInsn> tdcall(TdcallLeaf leaf, uint64_t rcx = 0) {
  return {SG::mov(Gpr::kRcx, rcx), SG::mov(Gpr::kRax, LeafAndVersion::of(leaf).raw()),
          SG::op(GuestInsnKind::kTdcall)};
}
inline std::vector<GuestInsn> accept(Gpa gpa, unsigned tdx_level = 0) {
  return tdcall(TdcallLeaf::kMemPageAccept, gpa.raw() | tdx_level);
}
inline std::vector<GuestInsn> operator+(std::vector<GuestInsn> a, const std::vector<GuestInsn>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A guest that spins until kicked.
class SpinGuest : public GuestProgram {
 public:
  GuestInsn fetch(GuestState&) override { return SG::op(GuestInsnKind::kPause); }
  uint64_t ve_handler_rip() const override { return 0x10000; }
};

class VcpuHarness : public ModuleHarness {
 protected:
  using ModuleHarness::call;

  uint64_t call(SeamcallLeaf leaf, uint64_t rcx, uint64_t rdx = 0, uint64_t r8 = 0,
                SeamcallRegs* out = nullptr, unsigned cpu = 0) {
    SeamcallRegs regs;
    regs.rcx = rcx;
    regs.rdx = rdx;
    regs.r8 = r8;
    const uint64_t s = call(cpu, leaf, regs);
    if (out != nullptr) *out = regs;
    return s;
  }

  // A TD with one initialised vCPU and page tables for kGpa's 2M, not yet finalized.
  void build(uint64_t attributes = kTdAttrSeptVeDisable, unsigned vcpus = 1) {
    init_sys();
    TdSpec spec;
    spec.hkid = kTdHkid;
    spec.params.attributes = attributes;
    spec.params.max_vcpus = static_cast<uint16_t>(vcpus);
    spec.vcpus = vcpus;
    const BuiltTd td = build_td(spec);
    ASSERT_EQ(td.vcpus.size(), vcpus);
    tdr_ = td.tdr;
    for (const std::vector<Hpa>& v : td.vcpus) tdvprs_.push_back(v.front());
    for (unsigned l = 3; l >= 1; --l) {
      ASSERT_EQ(call(SeamcallLeaf::kMemSeptAdd, pi(kGpa, l), tdr_.raw(), page().raw()), kOk);
    }
  }
  void finalize() { ASSERT_EQ(call(SeamcallLeaf::kMrFinalize, tdr_.raw()), kOk); }
  void runnable(uint64_t attributes = kTdAttrSeptVeDisable, unsigned vcpus = 1) {
    build(attributes, vcpus);
    finalize();
  }

  // AUGs a fresh 4K page at `gpa` after the host wrote junk into it; returns the page.
  Hpa aug(Gpa gpa) {
    const Hpa p = page();
    mem().fill(p.pfn(), kHostKey, kJunk);
    EXPECT_EQ(call(SeamcallLeaf::kMemPageAug, pi(gpa, 0), tdr_.raw(), p.raw()), kOk);
    return p;
  }

  // TDH.VP.ENTER of vCPU `v` on `cpu`, then the interrupt window KVM opens after an exit.
  uint64_t enter(SeamcallRegs& regs, unsigned v = 0, unsigned cpu = 0) {
    regs.rax = LeafAndVersion::of(SeamcallLeaf::kVpEnter).raw();
    regs.rcx = tdvprs_[v].raw();
    CpuBinding b = platform_.bind(cpu);
    const uint64_t s = host_seamcall(b.cpu(), regs);
    b.cpu().handle_interrupts();
    return s;
  }
  uint64_t enter(unsigned v = 0, unsigned cpu = 0) {
    SeamcallRegs regs;
    return enter(regs, v, cpu);
  }
  void run(const std::vector<GuestInsn>& code, const std::vector<GuestInsn>& ve_handler = {},
           unsigned v = 0) {
    guests_.push_back(std::make_unique<SG>(code, ve_handler));
    ASSERT_TRUE(module_.attach_guest(tdvprs_[v], guests_.back().get()));
  }
  // A vCPU's RIP survives a new program: this one starts with NOPs up to it.
  void run_from_here(const std::vector<GuestInsn>& code, unsigned v = 0) {
    std::vector<GuestInsn> padded(guest(v).rip / 4, SG::op(GuestInsnKind::kNop));
    run(padded + code, {}, v);
  }
  GuestState guest(unsigned v = 0) { return *module_.vcpu_guest_state(tdvprs_[v]); }
  SeptState state(Gpa gpa) {
    SeamcallRegs r;
    EXPECT_EQ(call(SeamcallLeaf::kMemSeptRd, pi(gpa, 0), tdr_.raw(), 0, &r), kOk);
    return static_cast<SeptState>((r.rdx >> 8) & 0xFF);
  }

  // The exit of TDG.VP.VMCALL<Instruction.HLT> a halting guest ends with.
  static void expect_hlt_exit(uint64_t status, const SeamcallRegs& r) {
    EXPECT_EQ(status, static_cast<uint64_t>(VmxExitReason::kTdcall));
    EXPECT_EQ(r.rcx, (1u << 10) | (1u << 11) | (1u << 12));
    EXPECT_EQ(r.r11, static_cast<uint64_t>(TdVmCall::kHlt));
  }

  Hpa tdr_;
  std::vector<Hpa> tdvprs_;
  std::vector<std::unique_ptr<SG>> guests_;
};

}  // namespace tdxsim::test
