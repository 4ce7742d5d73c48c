// ScenarioSpec: what a scenario file (docs/scenarios.md) says, checked and resolved — the
// machine, the VM and its memslots, each vCPU's guest program as a list of phases, the host's
// actions at the guests' sync stages, environment faults, bug switches and what the checks
// must see. scenario_file.h builds one from TOML; scenario_runner.h runs it.
//
// Everything here has passed the file's checks: ranges are page aligned and inside a memslot
// (or a place a memslot moves to), vCPU indices exist, stages rise within each program. The
// runner may rely on that and only reports what the run itself does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/fault_injection.h"
#include "kvm/vm_type.h"
#include "platform/platform.h"
#include "tdx_module/seamcall_leaf.h"

namespace tdxsim {

// Where in the file a thing was written (1-based; 0: not from a file).
struct SourcePos {
  uint32_t line = 0;
  uint32_t column = 0;
};

struct GpaRange {
  Gpa gpa;
  uint64_t size = 0;
  uint64_t end() const { return gpa.raw() + size; }
};

struct MachineSpec {
  CpuVendor vendor = CpuVendor::kIntel;
  bool tdx = false;
  bool hyperv = false;
  bool enlightened_tlb = false;  // Hyper-V's enlightened NPT TLB (AMD)
  uint64_t memory = uint64_t{256} << 20;
  unsigned cpus = 8;  // logical CPUs; 2 of them run host threads
};

struct VmSpec {
  VmType type = VmType::kDefault;
  unsigned vcpus = 1;
  bool sept_ve_disable = false;
  bool quirk_slot_zap_all = true;
  bool discard_on_conversion = true;
};

struct MemslotSpec {
  uint32_t slot = 0;
  GpaRange range;
  bool guest_memfd = false;
  bool thp = false;
  bool initially_private = false;
  SourcePos pos;
};

enum class PhaseOp : uint8_t { kAccept, kFill, kVerify, kConvert, kPunch, kSync };

// One step of a guest program. Ranges are this vCPU's own (already split).
struct PhaseSpec {
  PhaseOp op = PhaseOp::kSync;
  GpaRange range;
  uint64_t round = 0;             // fill / verify (verify of round 0: zeros)
  unsigned repeat = 1;            // verify: how many passes
  std::optional<Gpa> written_at;  // verify: the GPA the round was filled at (a moved slot)
  bool to_private = false;        // convert
  bool implicit = false;          // convert: by touching the other alias (TD) instead of MapGPA
  Level level = Level::k4K;       // accept
  uint64_t stage = 0;             // sync
  SourcePos pos;
};

struct GuestSpec {
  std::vector<PhaseSpec> phases;
};

enum class HostActionKind : uint8_t {
  kDeleteMemslot,
  kMoveMemslot,
  kRecreateMemslot,
  kSetPrivate,
  kSetShared,
  kPunchHole,
  kReclaim,
  kZapGfnRange,
  kFlushRemoteTlbs,
  kPressureOn,
  kPressureOff,
  kCheck,
};
const char* to_string(HostActionKind kind);

struct HostActionSpec {
  uint64_t at = 0;  // the sync stage
  HostActionKind kind = HostActionKind::kCheck;
  uint32_t slot = 0;              // memslot actions, reclaim
  Gpa to;                         // move_memslot: the new GPA
  GpaRange range;                 // conversions, punch, zap, check
  bool discard = true;            // conversions
  uint64_t round = 0;             // check: what the host must read
  std::optional<uint64_t> write;  // check: what it then writes
  std::vector<uint32_t> slots;    // pressure_on
  SourcePos pos;
};

struct FaultSpec {
  EnvFaultKind kind = EnvFaultKind::kForceOperandBusy;
  uint64_t key = 0;  // a SEAMCALL leaf or a vCPU index, or FaultInjection::kAnyKey
  uint32_t count = 1;
  uint64_t param = 0;
  std::optional<uint64_t> at;  // armed with that stage's host actions; else before the run
  SourcePos pos;
};

enum class ExpectKind : uint8_t { kDone, kMemoryFault, kCount };

struct ExpectSpec {
  ExpectKind kind = ExpectKind::kDone;
  unsigned vcpu = 0;  // kDone, kMemoryFault
  GpaRange fault;     // kMemoryFault
  bool fault_private = false;
  std::string counter;  // kCount: a counter name (docs/scenarios.md)
  uint64_t at_least = 0;
  std::optional<uint64_t> at_most;
  SourcePos pos;
};

struct ScenarioSpec {
  std::string source;  // the file it came from
  std::string description;
  MachineSpec machine;
  VmSpec vm;
  std::vector<MemslotSpec> memslots;
  std::vector<GuestSpec> guests;  // one per vCPU
  std::vector<HostActionSpec> host;
  std::vector<FaultSpec> faults;
  std::vector<BugId> inject;
  std::vector<ExpectSpec> expects;
};

}  // namespace tdxsim
