// HostileHost: a fuzz input read as what a hostile host does to the TDX module.
//
// The first byte picks a start state, built through the same SEAMCALLs (a bare module; a TD
// built with a vCPU, S-EPT tables and two measured pages; the same finalised; the same with a
// 4K and a 2M page added and accepted). Then each operation is one byte and its operands:
//
//   raw SEAMCALL   a leaf the module dispatches (rarely any number), version, reserved RAX
//                  bits, a CPU, and RCX, RDX, R8, R9 each chosen by a selector byte: mostly
//                  the operand the leaf expects there (a TDR, a TDVPR, a fresh page, a page
//                  info at a GPA inside or outside the TD, at any level, …), else any kind
//                  of value, sometimes with one bit flipped
//   sequences      what KVM would do, as raw calls: build a TD or a vCPU, S-EPT tables
//                  down to a level, AUG, PAGE.ADD and MR.EXTEND, MR.FINALIZE, BLOCK/TRACK/
//                  REMOVE, DEMOTE/PROMOTE/RELOCATE, TD entry with a guest program, teardown;
//                  and the steered step: read an entry (SEPT.RD), throw what its state admits
//   host writes    a word or a whole page of any frame, written with the host's own key
//
// Operations run until the bytes run out (at most kMaxOps). Entries are followed by the
// guest's zero checks; the rest of the checks run at the end (module_invariants.h).
#pragma once

#include <cstdint>

#include "fuzz/fuzz_input.h"
#include "fuzz/host_world.h"

namespace tdxsim::fuzz {

class HostileHost {
 public:
  static constexpr unsigned kMaxOps = 128;

  HostileHost(HostWorld& world, FuzzInput& in) : world_(world), in_(in) {}

  void run();

  // What an operand register holds (see operand()).
  enum class Kind : uint8_t {
    kZero,
    kTdr,
    kTdvpr,
    kControlPage,  // a TDCS or TDCX page
    kFreshPage,    // a host page, usually one never named before
    kLeafPage,     // a page of the size RCX's page info names (2M: a 2M run)
    kPage2m,
    kModulePage,  // a page some leaf gave the module
    kAnyFrame,
    kKeyedPage,  // a page with key ID bits (WBINVD)
    kPageInfo,
    kGpa,  // a bare GPA, 256-byte chunks (MR.EXTEND, MEM.RD/WR, RELOCATE)
    kHkid,
    kTdParams,  // a host page holding TD_PARAMS
    kField,     // a metadata field ID
    kSmall,
    kRandom,
    kCount,
  };

 private:
  void start();
  void step();
  void raw_call();
  uint64_t operand(Kind k, const SeamcallRegs& so_far);

  // The sequences. Each takes its remaining choices from the input.
  TdRecord* build_td();
  void build_vcpu(TdRecord& td);
  void add_tables(TdRecord& td, Gpa gpa, unsigned to_level);
  void aug(TdRecord& td, Gpa gpa, unsigned tdx_level);
  void page_add(TdRecord& td, Gpa gpa);
  void enter(TdRecord& td);
  // The stress test's steered host: TDH.MEM.SEPT.RD of a GPA the host mapped (or any), then
  // the leaf that entry's state admits — which is what takes the S-EPT through every state.
  void steered(TdRecord& td);
  void remove(TdRecord& td);
  void resize(TdRecord& td);
  void teardown(TdRecord& td);
  void host_write();

  TdRecord* pick_td();
  Gpa pick_gpa(const TdRecord* td);
  uint64_t pick_page_info(const TdRecord* td);
  uint64_t page_info(Gpa gpa, unsigned tdx_level) const;
  // A TDH.VP.ENTER of one of the TD's vCPUs on a chosen CPU, then the guests' zero checks.
  void enter_vcpu(const TdRecord& td, size_t vcpu, unsigned cpu);

  HostWorld& world_;
  FuzzInput& in_;
  uint16_t next_hkid_ = kWorldFirstTdHkid;
};

}  // namespace tdxsim::fuzz
