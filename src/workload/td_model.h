// TdModel: what each page of DrivenTd's work area holds, as the architecture defines it — the
// oracle the property tests and the whole-stack fuzzer hold the stack to, beside the checker's
// own invariants. A page has a KVM attribute (private or shared), a private incarnation the
// guest has or has not accepted, and the shared memory behind it (the VMM's), each with the
// pattern round last written (0: zeros).
//
// The rules, from the selftests' private_mem_conversions and the TDX module's ABI: a private
// page reads zero once accepted and keeps what the guest writes; converting it to shared
// discards it (the VMM punches guest_memfd), as does a punch, so the next private use is a new
// PENDING page; shared memory is the VMM's and survives conversions both ways, reclaim and
// zaps; the host sees only shared memory. A memslot deleted and added again is new memory
// and a new guest_memfd: every page starts over (the attributes are the VM's and stay).
#pragma once

#include <array>
#include <cstdint>

#include "workload/op.h"

namespace tdxsim::workload {

struct PageState {
  bool is_private = true;
  bool accepted = false;      // private: this incarnation was accepted
  uint8_t private_round = 0;  // private: what it holds once accepted
  uint8_t shared_round = 0;   // the shared memory behind the page
  friend bool operator==(const PageState&, const PageState&) = default;
};

class TdModel {
 public:
  const PageState& page(unsigned p) const { return pages_.at(p); }
  // The round a guest reads at page p through the alias its attribute names (a PENDING private
  // page is accepted first by the guest's #VE handler: zeros).
  uint8_t guest_view(unsigned p) const;
  // The round the guest reads through the given alias: after the implicit conversion a touch
  // through the other alias causes.
  uint8_t view_through(unsigned p, bool shared) const;
  // REQUIRES: well_formed(op).
  void apply(const Op& op);
  friend bool operator==(const TdModel&, const TdModel&) = default;

 private:
  void convert(unsigned p, bool to_shared);
  void use_private(unsigned p);

  std::array<PageState, kPages> pages_{};
};

}  // namespace tdxsim::workload
