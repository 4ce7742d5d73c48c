// FakeVendorOps: an MmuVendorOps for tests that records every call, keeps the external
// tables it was told about, checks them as the TDX module would (a leaf or table needs its
// parent table; a table is freed only when empty; a removal names what is mapped), and can
// answer EBUSY on demand.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/lock.h"
#include "kvm/mmu_vendor_ops.h"

namespace tdxsim {

class FakeVendorOps : public MmuVendorOps {
 public:
  enum class Kind { kLink, kSet, kFree, kRemove, kFlush, kLoadPgd, kFlushCurrent };
  struct Call {
    Kind kind;
    Gfn gfn;
    Level level;
    uint64_t arg;  // pfn or table hpa (kLoadPgd: the root; gfn holds the vCPU id)
  };
  // (gfn, level): a leaf mapped at `level`, or a table whose entries are at `level`.
  using Key = std::pair<uint64_t, Level>;

  // The mirror root's level: tables linked from it need no parent.
  explicit FakeVendorOps(Level root_level = Level::k512G) : root_level_(root_level) {}

  // The next `n` set_external_spte / link_external_spt calls answer EBUSY.
  void busy_sets(int n) { busy_sets_.store(n); }
  void busy_links(int n) { busy_links_.store(n); }
  void fail_frees(bool v) { fail_frees_.store(v); }

  KvmResult<> link_external_spt(Kvm*, Gfn gfn, Level level, Hpa table) override {
    MutexLock l(mu_);
    calls_.push_back({Kind::kLink, gfn, level, table.raw()});
    if (busy_links_.fetch_sub(1) > 0) return std::unexpected(Errno::kEbusy);
    const Level table_level = level_from(level_num(level) - 1);
    require_parent(gfn, level, "link");
    if (!tables_.emplace(Key{gfn.raw(), table_level}, table.raw()).second) {
      violation("link of an existing table", gfn, level);
    }
    return {};
  }
  KvmResult<> set_external_spte(Kvm*, Gfn gfn, Level level, Pfn pfn) override {
    MutexLock l(mu_);
    calls_.push_back({Kind::kSet, gfn, level, pfn.raw()});
    if (busy_sets_.fetch_sub(1) > 0) return std::unexpected(Errno::kEbusy);
    require_parent(gfn, level, "set");
    if (!leaves_.emplace(Key{gfn.raw(), level}, pfn.raw()).second) {
      violation("set of a mapped leaf", gfn, level);
    }
    return {};
  }
  KvmResult<> free_external_spt(Kvm*, Gfn gfn, Level level, Hpa table) override {
    MutexLock l(mu_);
    calls_.push_back({Kind::kFree, gfn, level, table.raw()});
    auto it = tables_.find(Key{gfn.raw(), level});
    if (it == tables_.end() || it->second != table.raw()) {
      violation("free of an unknown table", gfn, level);
    } else {
      const uint64_t span = level_pages(level) * 512;
      for (const auto& [k, v] : leaves_) {
        if (k.first >= gfn.raw() && k.first < gfn.raw() + span)
          violation("free of a table with leaves", gfn, level);
      }
      for (const auto& [k, v] : tables_) {
        if (k.second < level && k.first >= gfn.raw() && k.first < gfn.raw() + span) {
          violation("free of a table with tables", gfn, level);
        }
      }
      tables_.erase(it);
    }
    if (fail_frees_.load()) return std::unexpected(Errno::kEio);
    return {};
  }
  KvmResult<> remove_external_spte(Kvm*, Gfn gfn, Level level, Pfn pfn) override {
    MutexLock l(mu_);
    calls_.push_back({Kind::kRemove, gfn, level, pfn.raw()});
    auto it = leaves_.find(Key{gfn.raw(), level});
    if (it == leaves_.end() || it->second != pfn.raw()) {
      violation("remove of an unmapped leaf", gfn, level);
    } else {
      leaves_.erase(it);
    }
    return {};
  }
  void load_mmu_pgd(Kvm*, int vcpu_id, Hpa root, Level level) override {
    MutexLock l(mu_);
    calls_.push_back({Kind::kLoadPgd, Gfn{static_cast<uint64_t>(vcpu_id)}, level, root.raw()});
  }
  void flush_tlb_current(Kvm*, int vcpu_id) override {
    MutexLock l(mu_);
    calls_.push_back({Kind::kFlushCurrent, Gfn{static_cast<uint64_t>(vcpu_id)}, Level::k4K, 0});
  }
  bool flush_remote_tlbs(Kvm*) override {
    flushes_.fetch_add(1);
    return true;
  }
  // A CPU that logs dirty pages itself (VMX's PML) when non-zero.
  unsigned cpu_dirty_log_size(Kvm*) override { return dirty_log_size_; }
  void set_cpu_dirty_log_size(unsigned n) { dirty_log_size_ = n; }

  std::vector<Call> calls() const {
    MutexLock l(mu_);
    return calls_;
  }
  size_t count(Kind k) const {
    MutexLock l(mu_);
    size_t n = 0;
    for (const Call& c : calls_) n += c.kind == k ? 1 : 0;
    return n;
  }
  void clear_calls() {
    MutexLock l(mu_);
    calls_.clear();
  }
  std::map<Key, uint64_t> leaves() const {
    MutexLock l(mu_);
    return leaves_;
  }
  std::map<Key, uint64_t> tables() const {
    MutexLock l(mu_);
    return tables_;
  }
  std::vector<std::string> violations() const {
    MutexLock l(mu_);
    return violations_;
  }
  uint64_t flushes() const { return flushes_.load(); }
  unsigned dirty_log_size_ = 0;

 private:
  // The table holding an entry at `level` for `gfn` must be linked (or be the root).
  void require_parent(Gfn gfn, Level level, const char* what) TDXSIM_REQUIRES(mu_) {
    if (level == root_level_) return;
    if (!tables_.contains(Key{gfn.align_down(level_up(level)).raw(), level})) {
      violation(what, gfn, level);
    }
  }
  void violation(const char* what, Gfn gfn, Level level) TDXSIM_REQUIRES(mu_) {
    violations_.push_back(std::string(what) + " at gfn " + std::to_string(gfn.raw()) + " level " +
                          std::to_string(level_num(level)));
  }

  const Level root_level_;
  mutable Mutex mu_{"fake vendor ops"};
  std::vector<Call> calls_ TDXSIM_GUARDED_BY(mu_);
  std::map<Key, uint64_t> leaves_ TDXSIM_GUARDED_BY(mu_);
  std::map<Key, uint64_t> tables_ TDXSIM_GUARDED_BY(mu_);
  std::vector<std::string> violations_ TDXSIM_GUARDED_BY(mu_);
  std::atomic<int> busy_sets_{0};
  std::atomic<int> busy_links_{0};
  std::atomic<bool> fail_frees_{false};
  std::atomic<uint64_t> flushes_{0};
};

}  // namespace tdxsim
