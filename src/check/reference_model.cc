#include "check/reference_model.h"

#include <fmt/format.h>

#include "kvm/vmx/tdx.h"
#include "platform/logical_cpu.h"
#include "platform/platform.h"

namespace tdxsim {

namespace {

constexpr size_t kShards = 64;
constexpr size_t kMaxViolationsKept = 16;

enum class Origin : uint8_t {
  kGuestStore,
  kHostWrite,
  kLearned,  // the first read of an unknown word
};

const char* to_string(Origin o) {
  switch (o) {
    case Origin::kGuestStore:
      return "a guest store";
    case Origin::kHostWrite:
      return "a host write";
    case Origin::kLearned:
      return "an earlier read (first seen)";
  }
  return "?";
}

struct Word {
  uint32_t offset = 0;
  Origin origin = Origin::kLearned;
  int writer = -1;  // the storing vCPU (-1: the host)
  uint64_t value = 0;
  uint64_t prev = 0;
  bool has_prev = false;  // whether `prev` is known
  // Check-clock stamp of the end of the store that made `value` current (kInFlight: not yet
  // ended); a load that began before it may have seen `prev`.
  uint64_t ended = 0;
};
constexpr uint64_t kInFlight = ~uint64_t{0};

// How the words a side does not list read.
enum class Fill : uint8_t {
  kUnknown,  // learned at the first read
  kZero,     // zeros
  kGone,     // no access may retire (a TD's private page not accepted again)
};

struct Side {
  // A TD's private side that TDG.MEM.PAGE.ACCEPT made the guest's, with nothing since that
  // could have taken it away (every such event resets the side).
  bool accepted = false;
  Fill fill = Fill::kUnknown;
  const char* why = "never defined";  // the event that set `fill`
  std::vector<Word> words;

  void reset(Fill f, const char* event) {
    fill = f;
    why = event;
    words.clear();
    accepted = false;
  }
  Word* find(uint32_t offset) {
    for (Word& w : words) {
      if (w.offset == offset) return &w;
    }
    return nullptr;
  }

  // A store of `value` begins: what was there becomes the value a racing load may still see.
  void store_begin(uint32_t off, uint64_t value, Origin origin, int writer) {
    Word* w = find(off);
    if (w == nullptr) {
      w = &words.emplace_back(Word{off});
      w->has_prev = fill == Fill::kZero;  // else unknown (or gone: anything)
    } else {
      w->prev = w->value;
      w->has_prev = true;
    }
    w->value = value;
    w->origin = origin;
    w->writer = writer;
    w->ended = kInFlight;
  }
  void store_end(uint32_t off, uint64_t value, uint64_t stamp) {
    Word* w = find(off);
    if (w != nullptr && w->value == value && w->ended == kInFlight) w->ended = stamp;
  }
  void learn(uint32_t off, uint64_t value, int reader) {
    Word* w = find(off);
    if (w == nullptr) w = &words.emplace_back(Word{off});
    *w = Word{off, Origin::kLearned, reader, value, 0, false, 0};
  }
};

struct Page {
  bool private_attr = false;  // software-protected VMs: which side an access reaches
  // A memslot ioctl is changing the memory here: loads may see the old or the new, and are
  // learned, not judged.
  bool slot_changing = false;
  Side priv, shared;
};

enum class LoadVerdict : uint8_t { kMatch, kLearned, kMismatch };

// Judges a load of `seen` that began at `started` from `side` (learning unknown words).
// On a mismatch, `why` says what the model holds and where it came from.
LoadVerdict judge_load(Page& page, Side& side, uint32_t off, uint64_t seen, uint64_t started,
                       int reader, std::string* why) {
  Word* w = side.find(off);
  if (page.slot_changing || (w == nullptr && side.fill == Fill::kUnknown)) {
    side.learn(off, seen, reader);
    return LoadVerdict::kLearned;
  }
  if (w == nullptr) {
    if (side.fill == Fill::kZero && seen == 0) return LoadVerdict::kMatch;
    *why = side.fill == Fill::kGone
               ? fmt::format("a page gone since {} and not accepted again", side.why)
               : fmt::format("the model holds zeros since {}", side.why);
    return LoadVerdict::kMismatch;
  }
  if (seen == w->value) return LoadVerdict::kMatch;
  if (w->ended > started && (!w->has_prev || seen == w->prev)) return LoadVerdict::kMatch;
  *why = fmt::format("the model holds {:#x} from {}{}", w->value, to_string(w->origin),
                     w->writer >= 0
                         ? fmt::format(" on vCPU {}", w->writer)
                         : std::string(w->origin == Origin::kHostWrite ? "" : " by the host"));
  return LoadVerdict::kMismatch;
}

}  // namespace

struct ReferenceModel::VmModel {
  vmm::Vm* vm = nullptr;
  VmType type = VmType::kDefault;
  Hpa tdr;  // TDs
  struct Shard {
    mutable Mutex mu{"reference model shard"};
    std::unordered_map<uint64_t, Page> pages TDXSIM_GUARDED_BY(mu);
  };
  std::array<Shard, kShards> shards;
  Tracepoint<VcpuRunEvent>::Subscription runs;
  Tracepoint<vmm::VmMemoryEvent>::Subscription memory;

  Shard& shard(uint64_t gfn) { return shards[gfn % kShards]; }

  // Applies `f(Page&)` to every page of [gpa, gpa + size).
  template <class F>
  void for_range(Gpa gpa, uint64_t size, F&& f) {
    const uint64_t first = gpa.raw() >> kPageShift;
    const uint64_t end = (gpa.raw() + size + kPageSize - 1) >> kPageShift;
    for (uint64_t g = first; g < end; ++g) {
      Shard& s = shard(g);
      MutexLock l(s.mu);
      f(s.pages[g]);
    }
  }

  // Which side an access reaches (TD: the alias; SW: the attribute; default: shared).
  Side& side_of(Page& p, bool shared_alias) const {
    if (type == VmType::kTdx) return shared_alias ? p.shared : p.priv;
    if (type == VmType::kSwProtected) return p.private_attr ? p.priv : p.shared;
    return p.shared;
  }
};

ReferenceModel::ReferenceModel(vmm::Machine& machine) : machine_(machine) {
  Platform& platform = machine.platform();
  nr_slots_ = platform.cpu_count();
  slots_ = std::make_unique<Slot[]>(nr_slots_);
  if (TdxModule* module = machine.tdx_module()) {
    accepted_ = module->page_accepted.attach([this](const PageAccepted& e) {
      const LogicalCpu* cpu = this_cpu();
      int vcpu = -1;
      VmModel* m = cpu != nullptr ? running_on(cpu->id(), &vcpu) : nullptr;
      if (m == nullptr || m->tdr != e.tdr) return;
      // The module lets a page be accepted only while it is PENDING: a page the guest
      // accepted before, with no conversion, punch or memslot change since, got there only
      // by the host removing it — and its contents are lost.
      uint64_t lost = 0;
      Gpa first_lost;
      m->for_range(e.gpa, level_bytes(e.level), [&](Page& p) {
        if (p.priv.accepted && lost++ == 0) first_lost = Gpa{e.gpa.raw()};
        p.priv.reset(Fill::kZero, "TDG.MEM.PAGE.ACCEPT");
        p.priv.accepted = true;
      });
      if (lost != 0) {
        violation(
            fmt::format("vCPU {} accepted {} ({}) again: {} page(s) the guest had "
                        "accepted were taken away with no conversion, punch or memslot "
                        "change, their contents lost",
                        vcpu, first_lost, level_name(e.level), lost));
      }
    });
  }
  platform.set_guest_access_observer(this);
}

ReferenceModel::~ReferenceModel() {
  machine_.platform().set_guest_access_observer(nullptr);
}

void ReferenceModel::watch(vmm::Vm& vm) {
  auto m = std::make_unique<VmModel>();
  VmModel* raw = m.get();
  raw->vm = &vm;
  raw->type = vm.kvm().type();
  if (raw->type == VmType::kTdx) raw->tdr = TdxOps::to_tdx(vm.kvm_vm()).tdr();
  raw->runs = vm.kvm().events().vcpu_run.attach([this, raw](const VcpuRunEvent& e) {
    if (e.cpu >= nr_slots_) return;
    Slot& s = slots_[e.cpu];
    if (e.phase == EventPhase::kBegin) {
      s.vcpu.store(e.vcpu_id, std::memory_order_relaxed);
      s.vm.store(raw, std::memory_order_relaxed);
    } else {
      s.vm.store(nullptr, std::memory_order_relaxed);
    }
  });
  raw->memory = vm.events().memory.attach([this, raw](const vmm::VmMemoryEvent& e) {
    const bool td = raw->type == VmType::kTdx;
    switch (e.op) {
      case vmm::VmMemoryOp::kToPrivate:
        raw->for_range(e.gpa, e.size, [](Page& p) { p.private_attr = true; });
        return;
      case vmm::VmMemoryOp::kToShared:
        raw->for_range(e.gpa, e.size, [td](Page& p) {
          p.private_attr = false;
          if (td) p.priv.reset(Fill::kGone, "the conversion to shared");
        });
        return;
      case vmm::VmMemoryOp::kPunch:
        raw->for_range(e.gpa, e.size, [td](Page& p) {
          p.priv.reset(td ? Fill::kGone : Fill::kZero, "the guest_memfd hole punch");
        });
        return;
      case vmm::VmMemoryOp::kSlotChanging:
        raw->for_range(e.gpa, e.size, [](Page& p) {
          p.slot_changing = true;
          p.priv.reset(Fill::kUnknown, "a memslot change");
          p.shared.reset(Fill::kUnknown, "a memslot change");
        });
        return;
      case vmm::VmMemoryOp::kSlotChanged:
        raw->for_range(e.gpa, e.size, [&e](Page& p) {
          p.slot_changing = false;
          const bool shared0 = (e.value & vmm::kFreshShared) != 0;
          const bool priv0 = (e.value & vmm::kFreshPrivate) != 0;
          p.shared.reset(shared0 ? Fill::kZero : Fill::kUnknown,
                         shared0 ? "a new memslot's fresh mapping" : "a memslot change");
          p.priv.reset(priv0 ? Fill::kZero : Fill::kUnknown,
                       priv0 ? "a new guest_memfd" : "a memslot change");
        });
        return;
      case vmm::VmMemoryOp::kHostWrite:
      case vmm::VmMemoryOp::kHostWritten: {
        const bool begin = e.op == vmm::VmMemoryOp::kHostWrite;
        if (begin) stores_.add();
        const uint64_t stamp = begin ? 0 : machine_.platform().check_clock().tick();
        raw->for_range(e.gpa, 8, [&](Page& p) {
          const uint32_t off = static_cast<uint32_t>(e.gpa.raw() & (kPageSize - 1));
          if (begin) {
            p.shared.store_begin(off, e.value, Origin::kHostWrite, -1);
          } else {
            p.shared.store_end(off, e.value, stamp);
          }
        });
        return;
      }
      case vmm::VmMemoryOp::kHostRead: {
        std::string why;
        LoadVerdict v = LoadVerdict::kMatch;
        raw->for_range(e.gpa, 8, [&](Page& p) {
          const uint32_t off = static_cast<uint32_t>(e.gpa.raw() & (kPageSize - 1));
          v = judge_load(p, p.shared, off, e.value, e.started, -1, &why);
        });
        (v == LoadVerdict::kLearned ? loads_learned_ : loads_checked_).add();
        if (v == LoadVerdict::kMismatch) {
          violation(fmt::format("the host read {:#x} at {} (shared): {}", e.value, e.gpa, why));
        }
        return;
      }
    }
  });
  MutexLock l(vms_mu_);
  vms_.push_back(std::move(m));
}

void ReferenceModel::unwatch(vmm::Vm& vm) {
  std::unique_ptr<VmModel> gone;
  {
    MutexLock l(vms_mu_);
    auto it = std::ranges::find_if(vms_, [&](const auto& m) { return m->vm == &vm; });
    if (it == vms_.end()) return;
    gone = std::move(*it);
    vms_.erase(it);
  }
  gone->runs.reset();
  gone->memory.reset();
  for (unsigned i = 0; i < nr_slots_; ++i) {
    VmModel* expected = gone.get();
    slots_[i].vm.compare_exchange_strong(expected, nullptr);
  }
}

ReferenceModel::VmModel* ReferenceModel::running_on(unsigned cpu, int* vcpu) const {
  if (cpu >= nr_slots_) return nullptr;
  const Slot& s = slots_[cpu];
  *vcpu = s.vcpu.load(std::memory_order_relaxed);
  return s.vm.load(std::memory_order_relaxed);
}

namespace {

struct Where {
  uint64_t gfn;
  uint32_t off;
  Gpa gpa;  // without a TD's shared bit
};

Where where(const vmm::Vm& vm, Gpa raw_gpa) {
  const Gpa gpa{raw_gpa.raw() & ~vm.flavour().shared_mask()};
  return Where{gpa.raw() >> kPageShift, static_cast<uint32_t>(gpa.raw() & (kPageSize - 1)), gpa};
}

}  // namespace

uint64_t ReferenceModel::load(const GuestAccess& a, HostMemory& mem) {
  int vcpu = -1;
  VmModel* m = running_on(a.cpu, &vcpu);
  if (m == nullptr) return mem.read(a.hpa, a.key).value;
  const Where at = where(*m->vm, a.gpa);
  std::string why;
  const char* alias = "private";
  LoadVerdict v = LoadVerdict::kMatch;
  uint64_t value = 0;
  {
    VmModel::Shard& s = m->shard(at.gfn);
    MutexLock l(s.mu);
    const uint64_t started = machine_.platform().check_clock().now();
    value = mem.read(a.hpa, a.key).value;
    Page& page = s.pages[at.gfn];
    Side& side = m->side_of(page, a.shared);
    if (&side == &page.shared) alias = "shared";
    v = judge_load(page, side, at.off, value, started, vcpu, &why);
  }
  (v == LoadVerdict::kLearned ? loads_learned_ : loads_checked_).add();
  if (v == LoadVerdict::kMismatch) {
    violation(fmt::format("vCPU {} loaded {:#x} at {} ({}, {}): {}", vcpu, value, at.gpa, alias,
                          a.hpa, why));
  }
  return value;
}

void ReferenceModel::store(const GuestAccess& a, HostMemory& mem, uint64_t value) {
  int vcpu = -1;
  VmModel* m = running_on(a.cpu, &vcpu);
  if (m == nullptr) {
    mem.write(a.hpa, a.key, value);
    return;
  }
  stores_.add();
  const Where at = where(*m->vm, a.gpa);
  std::string gone;
  bool private_side = false;
  {
    VmModel::Shard& s = m->shard(at.gfn);
    MutexLock l(s.mu);
    Page& page = s.pages[at.gfn];
    Side& side = m->side_of(page, a.shared);
    private_side = &side == &page.priv;
    if (side.fill == Fill::kGone && side.find(at.off) == nullptr) {
      gone = fmt::format(
          "vCPU {} stored {:#x} at {} ({}), a page gone since {} and not "
          "accepted again",
          vcpu, value, at.gpa, &side == &page.shared ? "shared" : "private", side.why);
    }
    side.store_begin(at.off, value, Origin::kGuestStore, vcpu);
    mem.write(a.hpa, a.key, value);
    side.store_end(at.off, value, machine_.platform().check_clock().tick());
  }
  if (!gone.empty()) violation(std::move(gone));
  if (GuestStoreListener* l = store_listener_.load(std::memory_order_acquire)) {
    l->stored(GuestStoreSeen{m->vm, vcpu, at.gpa, value, private_side});
  }
}

void ReferenceModel::violation(std::string what) {
  violation_count_.add();
  MutexLock l(violations_mu_);
  if (violations_.size() < kMaxViolationsKept) violations_.push_back(std::move(what));
}

ReferenceModelCounts ReferenceModel::counts() const {
  return ReferenceModelCounts{loads_checked_.value(), loads_learned_.value(), stores_.value(),
                              violation_count_.value()};
}

std::vector<std::string> ReferenceModel::violations() const {
  MutexLock l(violations_mu_);
  return violations_;
}

}  // namespace tdxsim
