// ReferenceModel: per GFN, what the guest and the host may observe there, kept from the
// architectural events alone, and every guest load and host read compared with it.
//
// Each GFN has two sides. The shared side is the VMM's memory behind the slot: the guest
// reaches it through a TD's shared alias (or any access of a default VM, or a software-
// protected VM's access while the GFN's attribute is shared), the host through its mapping.
// The private side is guest_memfd's page, reached by a TD's private alias or a software-
// protected VM's access while the GFN is private; the host never reads it. A side's words
// are known (a value someone stored, or zeros after an event that defines them), unknown
// (never defined: the first read learns it — an initial image the module copied, memory
// before the model watched), or, for a TD's private side, gone: after a conversion to
// shared or a hole punch the page must be accepted again before any load can retire there.
//
//   event                               private side                  shared side
//   TDG.MEM.PAGE.ACCEPT succeeded       zeros (the module cleared it)  -
//   KVM_SET_MEMORY_ATTRIBUTES → shared  TD: gone; SW: kept            -
//   guest_memfd PUNCH_HOLE              TD: gone; SW: zeros (a fresh   -
//                                       page at the next fault)
//   memslot deleted or moved            unknown                       unknown
//   guest store / host write            the value, on the side the access reached
//
// (Converting to private keeps the shared side: the selftests' VMM keeps the old copy.)
//
// A guest load must see the side's value: the model performs each guest access itself under
// the lock of its record (GuestAccessObserver), so guest loads and stores are judged exactly
// however the threads interleave. A host write is bracketed (begin, end) instead: a load
// between the two may see the value before it; a host read that began before a store ended
// likewise. Memory migrated under host pressure keeps its contents, so no event.
//
// Thread safety: the observer runs on every vCPU thread; records are sharded by GFN under
// leaf mutexes. watch()/unwatch() and the constructor/destructor REQUIRE that no guest runs.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/addr.h"
#include "base/lock.h"
#include "base/thread_annotations.h"
#include "base/trace.h"
#include "kvm/kvm_events.h"
#include "platform/guest_access.h"
#include "tdx_module/tdx_module.h"
#include "vmm/vm.h"

namespace tdxsim {

struct ReferenceModelCounts {
  uint64_t loads_checked = 0;  // guest loads and host reads compared with a known value
  uint64_t loads_learned = 0;  // … of an unknown word (learned)
  uint64_t stores = 0;         // guest stores and host writes recorded
  uint64_t violations = 0;
};

// A guest store the model recorded, once it retired: what checks that need every write the
// guest made (the dirty-log coverage) build on, instead of a second observer on the CPUs.
struct GuestStoreSeen {
  const vmm::Vm* vm = nullptr;
  int vcpu = -1;
  Gpa gpa;  // without a TD's shared bit
  uint64_t value = 0;
  bool private_side = false;  // reached guest_memfd's page, not the VMM's memory
};
class GuestStoreListener {
 public:
  virtual ~GuestStoreListener() = default;
  // Called on the storing vCPU's thread after the store, outside the model's locks.
  virtual void stored(const GuestStoreSeen& s) = 0;
};

class ReferenceModel final : public GuestAccessObserver {
 public:
  // Observes every CPU's guest accesses (one observer per platform) and the TDX module's
  // accepts. REQUIRES: no guest runs; the machine outlives the model.
  explicit ReferenceModel(vmm::Machine& machine);
  ~ReferenceModel() override;
  ReferenceModel(const ReferenceModel&) = delete;
  ReferenceModel& operator=(const ReferenceModel&) = delete;

  // Follows `vm` from now on (its words start unknown). REQUIRES: no guest of `vm` runs; the
  // VM outlives the watch, or unwatch() first.
  void watch(vmm::Vm& vm);
  void unwatch(vmm::Vm& vm);

  ReferenceModelCounts counts() const;
  // Tells `l` (or nobody) of every guest store of a watched VM. REQUIRES: no guest runs.
  void set_store_listener(GuestStoreListener* l) { store_listener_.store(l); }
  // The first violations, each a sentence: GPA, side, vCPU or host, what was read, what the
  // model holds and which event put it there.
  std::vector<std::string> violations() const;

  uint64_t load(const GuestAccess& a, HostMemory& mem) override;
  void store(const GuestAccess& a, HostMemory& mem, uint64_t value) override;

 private:
  struct VmModel;
  struct Slot {
    std::atomic<VmModel*> vm{nullptr};
    std::atomic<int> vcpu{-1};
  };

  VmModel* running_on(unsigned cpu, int* vcpu) const;
  void violation(std::string what);

  vmm::Machine& machine_;
  std::atomic<GuestStoreListener*> store_listener_{nullptr};
  std::unique_ptr<Slot[]> slots_;  // per logical CPU: the watched vCPU running there
  unsigned nr_slots_ = 0;
  Mutex vms_mu_{"reference model VMs"};
  std::vector<std::unique_ptr<VmModel>> vms_ TDXSIM_GUARDED_BY(vms_mu_);
  Tracepoint<PageAccepted>::Subscription accepted_;

  Counter loads_checked_, loads_learned_, stores_, violation_count_;
  mutable Mutex violations_mu_{"reference model violations"};
  std::vector<std::string> violations_ TDXSIM_GUARDED_BY(violations_mu_);
};

}  // namespace tdxsim
