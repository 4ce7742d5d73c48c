#include "kvm/vmx/tdx_host.h"

#include <fmt/format.h>

#include "base/check.h"
#include "tdxsim/seamcall.h"

namespace tdxsim {

namespace {

std::string failed(const char* step, unsigned cpu, uint64_t status) {
  return fmt::format("{} on CPU {} answered {}", step, cpu, describe_status(status));
}

}  // namespace

TdxHost::TdxHost(Platform& platform, TdxModule& module)
    : platform_(platform),
      module_(module),
      global_hkid_(KeyId{module.config().first_private_hkid}) {
  for (unsigned p = 0; p < platform.package_count(); ++p) {
    for (unsigned c = 0; c < platform.cpu_count(); ++c) {
      if (platform.cpu(c).package() == p) {
        package_leaders_.push_back(c);
        break;
      }
    }
  }
  // The global HKID is the module's; TDs get the rest of the range.
  const unsigned first = module.config().first_private_hkid;
  const unsigned last = module.config().last_private_hkid;
  MutexLock l(mu_);
  hkid_used_.assign(last - first, false);
}

std::expected<std::unique_ptr<TdxHost>, std::string> TdxHost::bring_up(Platform& platform,
                                                                       TdxModule& module) {
  TDXSIM_CHECK(platform.seam_module() == &module, "the TDX module is not installed");
  std::unique_ptr<TdxHost> host(new TdxHost(platform, module));
  if (const uint64_t s = tdh_sys_init(platform.bind(0).cpu()); s != 0) {
    return std::unexpected(failed("TDH.SYS.INIT", 0, s));
  }
  for (unsigned c = 0; c < platform.cpu_count(); ++c) {
    if (const uint64_t s = tdh_sys_lp_init(platform.bind(c).cpu()); s != 0) {
      return std::unexpected(failed("TDH.SYS.LP.INIT", c, s));
    }
  }
  // tdxsim's one TDMR covers all of memory: the module reads no TDMR-info list.
  if (const uint64_t s = tdh_sys_config(platform.bind(0).cpu(), Hpa{0}, 1, host->global_hkid_);
      s != 0) {
    return std::unexpected(failed("TDH.SYS.CONFIG", 0, s));
  }
  for (unsigned c : host->package_leaders_) {
    if (const uint64_t s = tdh_sys_key_config(platform.bind(c).cpu()); s != 0) {
      return std::unexpected(failed("TDH.SYS.KEY.CONFIG", c, s));
    }
  }
  const uint64_t end = platform.memory().total_frames() * kPageSize;
  for (uint64_t done = 0; done < end;) {
    uint64_t next = 0;
    if (const uint64_t s = tdh_sys_tdmr_init(platform.bind(0).cpu(), Hpa{0}, &next); s != 0) {
      return std::unexpected(failed("TDH.SYS.TDMR.INIT", 0, s));
    }
    TDXSIM_CHECK(next > done, "TDH.SYS.TDMR.INIT made no progress at {:#x}", done);
    done = next;
  }
  return host;
}

std::optional<KeyId> TdxHost::keyid_alloc() {
  MutexLock l(mu_);
  for (size_t i = 0; i < hkid_used_.size(); ++i) {
    if (hkid_used_[i]) continue;
    hkid_used_[i] = true;
    return KeyId{static_cast<uint16_t>(global_hkid_.raw() + 1 + i)};
  }
  return std::nullopt;
}

void TdxHost::keyid_free(KeyId hkid) {
  MutexLock l(mu_);
  const size_t i = hkid.raw() - global_hkid_.raw() - 1;
  TDXSIM_CHECK(hkid.raw() > global_hkid_.raw() && i < hkid_used_.size() && hkid_used_[i],
               "freeing HKID {} that is not in use", hkid.raw());
  hkid_used_[i] = false;
}

unsigned TdxHost::keyids_in_use() const {
  MutexLock l(mu_);
  unsigned n = 0;
  for (bool b : hkid_used_) n += b ? 1 : 0;
  return n;
}

}  // namespace tdxsim
