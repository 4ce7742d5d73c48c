// TdxHost: what the host kernel sets up once per boot before KVM can build a TD
// (arch/x86/virt/vmx/tdx/tdx.c): the module brought up on every logical CPU, the TDMR
// initialised, and the private HKIDs handed out to TDs (tdx_guest_keyid_alloc/free).
//
// Bring-up, in Linux's order (init_tdx_module, tdx_cpu_enable): TDH.SYS.INIT; TDH.SYS.LP.INIT
// on every CPU; TDH.SYS.CONFIG with the global private HKID (the first of the module's
// private range: TDRs and the module's own structures use it); TDH.SYS.KEY.CONFIG once per
// package; TDH.SYS.TDMR.INIT until the whole TDMR is initialised.
//
// Thread safety: bring_up() runs before any other thread uses the platform. keyid_alloc/free
// and the counters may be called from any thread; tdx_lock() is the global mutex KVM takes
// around TD creation and HKID release.
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/lock.h"
#include "base/thread_annotations.h"
#include "platform/key_id.h"
#include "platform/platform.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {

class TdxHost {
 public:
  // Runs the bring-up on `platform` (binding the calling thread to each CPU in turn).
  // Returns: the host, or a message naming the step that failed and its status.
  // REQUIRES: `module` is installed on `platform`; both outlive the host; no other thread
  // is bound to a CPU of the platform.
  static std::expected<std::unique_ptr<TdxHost>, std::string> bring_up(Platform& platform,
                                                                       TdxModule& module);
  TdxHost(const TdxHost&) = delete;
  TdxHost& operator=(const TdxHost&) = delete;

  Platform& platform() const { return platform_; }
  TdxModule& module() const { return module_; }
  KeyId global_hkid() const { return global_hkid_; }

  // tdx_guest_keyid_alloc: a free private HKID for a TD, or nullopt when all are in use.
  std::optional<KeyId> keyid_alloc() TDXSIM_EXCLUDES(mu_);
  // tdx_guest_keyid_free. REQUIRES: `hkid` came from keyid_alloc and was not freed since.
  void keyid_free(KeyId hkid) TDXSIM_EXCLUDES(mu_);
  // HKIDs handed out and not freed (nr_configured_hkid).
  unsigned keyids_in_use() const TDXSIM_EXCLUDES(mu_);

  // The first logical CPU of each package: where per-package SEAMCALLs run (KEY.CONFIG,
  // CACHE.WB), as KVM picks the first online CPU of each package.
  const std::vector<unsigned>& package_leaders() const { return package_leaders_; }

  // tdx_lock: serialises TD creation (MNG.CREATE + KEY.CONFIG) against HKID release.
  Mutex& tdx_lock() { return tdx_lock_; }

 private:
  TdxHost(Platform& platform, TdxModule& module);

  Platform& platform_;
  TdxModule& module_;
  const KeyId global_hkid_;
  std::vector<unsigned> package_leaders_;
  mutable Mutex mu_{"tdx_guest_keyid_pool"};
  std::vector<bool> hkid_used_ TDXSIM_GUARDED_BY(mu_);  // index: hkid - first TD HKID
  Mutex tdx_lock_{"tdx_lock"};
};

}  // namespace tdxsim
