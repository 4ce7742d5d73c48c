// KvmFixture: a VM of a chosen type over a small host memory and a HostMm, with a recording
// FakeArchHooks, and the region helpers the generic-KVM tests share.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "kvm/fake_arch_hooks_for_test.h"
#include "kvm/kvm.h"

namespace tdxsim {

// The errno of a result, or 0 for success, so EXPECT_EQ prints both sides.
inline int err(const KvmResult<>& r) {
  return r ? 0 : static_cast<int>(r.error());
}
template <class T>
int err(const KvmResult<T>& r) {
  return r ? 0 : static_cast<int>(r.error());
}
inline int err(Errno e) {
  return static_cast<int>(e);
}

class KvmFixture : public ::testing::Test {
 protected:
  // Members are destroyed in reverse: the arch before the VM, the VM before the mm.
  HostMemory mem{HostMemoryConfig{.bytes = 2048 * kPageSize}};
  HostMm mm{mem};
  std::unique_ptr<Kvm> kvm;
  std::unique_ptr<FakeArchHooks> arch;

  void make_vm(VmType type, uint32_t max_memslots = 32) {
    arch.reset();
    kvm = std::make_unique<Kvm>(mem, mm, KvmConfig{.type = type, .max_memslots = max_memslots});
    arch = std::make_unique<FakeArchHooks>(*kvm);
  }

  // A shared-memory region with a fresh userspace mapping of its size.
  UserspaceMemoryRegion2 region(uint32_t slot, uint64_t gpa, uint64_t size, uint32_t flags = 0) {
    UserspaceMemoryRegion2 r;
    r.slot = slot;
    r.flags = flags;
    r.guest_phys_addr = gpa;
    r.memory_size = size;
    r.userspace_addr = mm.mmap(size ? size : kPageSize);
    return r;
  }
  UserspaceMemoryRegion2 gmem_region(uint32_t slot, uint64_t gpa, uint64_t size,
                                     std::shared_ptr<GuestMemfd> gmem, uint64_t offset) {
    UserspaceMemoryRegion2 r = region(slot, gpa, size, kMemGuestMemfd);
    r.guest_memfd = std::move(gmem);
    r.guest_memfd_offset = offset;
    return r;
  }
  UserspaceMemoryRegion2 deletion(const UserspaceMemoryRegion2& r) {
    UserspaceMemoryRegion2 d = r;
    d.memory_size = 0;
    return d;
  }
  KvmResult<> set(const UserspaceMemoryRegion2& r) { return kvm->set_user_memory_region2(r); }

  // A copy of the slot with `id` as published now (nullopt if none).
  std::optional<Memslot> slot_copy(uint16_t id, uint16_t as_id = 0) {
    MutexLock l(kvm->slots_lock());
    const Memslot* s = kvm->memslots(as_id).by_id(id);
    return s ? std::optional<Memslot>(*s) : std::nullopt;
  }
};

}  // namespace tdxsim
