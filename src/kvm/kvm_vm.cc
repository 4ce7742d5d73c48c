#include "kvm/kvm_vm.h"

#include <algorithm>

#include "base/check.h"
#include "kvm/memslot.h"
#include "platform/platform.h"

namespace tdxsim {

KvmResult<std::unique_ptr<KvmVm>> KvmVm::create(KvmHost& host, HostMm& mm,
                                                const KvmVmConfig& config) {
  if (config.max_vcpus == 0) return std::unexpected(Errno::kEinval);
  // The vendor decides the SPTE format for the whole host, whatever the caller asked.
  KvmVmConfig c = config;
  c.mmu.spte_format = host.ops().spte_format();
  std::unique_ptr<KvmVm> vm(new KvmVm(host, mm, c));
  if (KvmResult<> r = host.ops().vm_init(*vm); !r) return std::unexpected(r.error());
  vm->vendor_initialised_ = true;
  return vm;
}

KvmVm::KvmVm(KvmHost& host, HostMm& mm, const KvmVmConfig& config) : host_(host), config_(config) {
  kvm_ = std::make_unique<Kvm>(host.platform().memory(), mm,
                               KvmConfig{.type = config.type,
                                         .max_memslots = config.max_memslots,
                                         .first_generation = config.first_generation});
  kvm_->set_vm(this);
  mmu_ = std::make_unique<KvmMmu>(*kvm_, host.ops(), config_.mmu);
  vcpus_.resize(config.max_vcpus);
}

KvmVm::~KvmVm() {
  if (vendor_initialised_) release_private_memory();
  if (vendor_initialised_) ops().vm_pre_destroy(*this);
  const uint32_t n = online_vcpus();
  for (uint32_t i = 0; i < n; ++i) {
    mmu_->unload(vcpus_[i]->mmu());
    ops().vcpu_free(*vcpus_[i]);
  }
  mmu_.reset();
  if (vendor_initialised_) ops().vm_destroy(*this);
  vcpus_.clear();
  kvm_.reset();
}

void KvmVm::release_private_memory() {
  std::vector<std::shared_ptr<GuestMemfd>> files;
  {
    MutexLock l(kvm_->slots_lock());
    for (uint16_t as = 0; as < nr_memslot_as_ids(config_.type); ++as) {
      for (const Memslot& slot : kvm_->memslots(as)) {
        if (slot.gmem && std::ranges::find(files, slot.gmem) == files.end()) {
          files.push_back(slot.gmem);
        }
      }
    }
  }
  for (const auto& f : files) f->release(*kvm_);
}

KvmResult<KvmVcpu*> KvmVm::create_vcpu(int id) {
  if (id < 0 || static_cast<uint32_t>(id) >= config_.max_vcpus) {
    return std::unexpected(Errno::kEinval);
  }
  MutexLock l(lock_);
  const uint32_t n = online_vcpus();
  for (uint32_t i = 0; i < n; ++i) {
    if (vcpus_[i]->id() == id) return std::unexpected(Errno::kEexist);
  }
  auto vcpu = std::make_unique<KvmVcpu>(*this, id);
  if (KvmResult<> r = ops().vcpu_create(*vcpu); !r) return std::unexpected(r.error());
  KvmVcpu* out = vcpu.get();
  vcpus_[n] = std::move(vcpu);
  online_.store(n + 1, std::memory_order_release);
  return out;
}

KvmVcpu* KvmVm::vcpu(int id) const {
  const uint32_t n = online_vcpus();
  for (uint32_t i = 0; i < n; ++i) {
    if (vcpus_[i]->id() == id) return vcpus_[i].get();
  }
  return nullptr;
}

std::vector<KvmVcpu*> KvmVm::vcpus() const {
  const uint32_t n = online_vcpus();
  std::vector<KvmVcpu*> out;
  out.reserve(n);
  for (uint32_t i = 0; i < n; ++i) out.push_back(vcpus_[i].get());
  return out;
}

void KvmVm::make_all_cpus_request(KvmRequest r) {
  const uint32_t n = online_vcpus();
  // Kick all first, then wait: the exits overlap instead of queueing.
  uint64_t seen[64];
  std::vector<uint64_t> more;
  uint64_t* words = seen;
  if (n > std::size(seen)) {
    more.resize(n);
    words = more.data();
  }
  for (uint32_t i = 0; i < n; ++i) words[i] = vcpus_[i]->request_and_kick(r);
  if (!request_waits(r)) return;
  for (uint32_t i = 0; i < n; ++i) vcpus_[i]->wait_exited(words[i]);
}

}  // namespace tdxsim
