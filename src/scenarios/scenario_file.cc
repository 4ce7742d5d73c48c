// Reading a scenario file. toml++ does the syntax; everything after it is checked here, key by
// key, and the first problem ends the read with the position toml++ recorded for the offending
// key or value. A problem is thrown as BadInput inside this file only, so each check is one
// line and nothing half-read can escape: parse_scenario() catches it (and toml++'s
// parse_error) and returns the error.
#include "scenarios/scenario_file.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "guest/vm_flavour.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_counters.h"

namespace tdxsim {

std::string ScenarioFileError::to_string() const {
  return fmt::format("{}:{}:{}: error: {}", file, line, column, message);
}

const char* to_string(HostActionKind kind) {
  switch (kind) {
    case HostActionKind::kDeleteMemslot:
      return "delete_memslot";
    case HostActionKind::kMoveMemslot:
      return "move_memslot";
    case HostActionKind::kRecreateMemslot:
      return "recreate_memslot";
    case HostActionKind::kSetPrivate:
      return "set_private";
    case HostActionKind::kSetShared:
      return "set_shared";
    case HostActionKind::kPunchHole:
      return "punch_hole";
    case HostActionKind::kReclaim:
      return "reclaim";
    case HostActionKind::kZapGfnRange:
      return "zap_gfn_range";
    case HostActionKind::kFlushRemoteTlbs:
      return "flush_remote_tlbs";
    case HostActionKind::kPressureOn:
      return "pressure_on";
    case HostActionKind::kPressureOff:
      return "pressure_off";
    case HostActionKind::kCheck:
      return "check";
  }
  return "?";
}

namespace {

struct BadInput {
  SourcePos pos;
  std::string message;
};

[[noreturn]] void fail(SourcePos pos, std::string message) {
  throw BadInput{pos, std::move(message)};
}

SourcePos pos_of(const toml::source_region& r) {
  // The root table of a string has no region of its own: the file's start.
  if (r.begin.line == 0) return SourcePos{1, 1};
  return SourcePos{static_cast<uint32_t>(r.begin.line), static_cast<uint32_t>(r.begin.column)};
}
SourcePos pos_of(const toml::node& n) {
  return pos_of(n.source());
}

std::string got(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return fmt::format("the string \"{}\"", *n.value<std::string>());
    case toml::node_type::integer:
      return fmt::format("the integer {}", *n.value<int64_t>());
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    default:
      return "a date or time";
  }
}

std::string hex(uint64_t v) {
  return fmt::format("{:#x}", v);
}

// Byte counts: "4K", "2M", "1G", "3T" (binary multiples, optionally "KiB"/"KB"), or digits.
std::optional<uint64_t> parse_size_text(std::string_view s) {
  size_t i = 0;
  uint64_t v = 0;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    if (v > (~uint64_t{0} - 9) / 10) return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(s[i] - '0');
  }
  if (i == 0) return std::nullopt;
  std::string_view unit = s.substr(i);
  if (unit.empty()) return v;
  unsigned shift = 0;
  switch (unit[0]) {
    case 'K':
    case 'k':
      shift = 10;
      break;
    case 'M':
    case 'm':
      shift = 20;
      break;
    case 'G':
    case 'g':
      shift = 30;
      break;
    case 'T':
    case 't':
      shift = 40;
      break;
    default:
      return std::nullopt;
  }
  unit.remove_prefix(1);
  if (!unit.empty() && unit != "B" && unit != "iB") return std::nullopt;
  if (v > (~uint64_t{0} >> shift)) return std::nullopt;
  return v << shift;
}

// A table being read: which keys it may have (checked at once, so an unknown key is reported
// before anything it might have meant), and typed getters that name the key in messages.
class Table {
 public:
  Table(const toml::table& t, std::string path, const std::vector<std::string_view>& allowed)
      : t_(t), path_(std::move(path)) {
    for (auto&& [k, v] : t_) {
      if (std::ranges::find(allowed, k.str()) != allowed.end()) continue;
      std::string list;
      for (std::string_view a : allowed) list += fmt::format("{}{}", list.empty() ? "" : ", ", a);
      fail(pos_of(k.source()), fmt::format("{}: unknown key \"{}\"; expected one of: {}",
                                           path_.empty() ? "top level" : path_, k.str(), list));
    }
  }

  SourcePos pos() const { return pos_of(t_); }
  std::string where(std::string_view key) const {
    return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
  }
  bool has(std::string_view key) const { return t_.contains(key); }
  const toml::node* get(std::string_view key) const { return t_.get(key); }
  const toml::node& need(std::string_view key, std::string_view what) const {
    const toml::node* n = t_.get(key);
    if (n == nullptr)
      fail(pos(), fmt::format("{}: missing key \"{}\" ({})", path_.empty() ? "top level" : path_,
                              key, what));
    return *n;
  }
  SourcePos pos(std::string_view key) const {
    const toml::node* n = t_.get(key);
    return n != nullptr ? pos_of(*n) : pos();
  }

  std::optional<bool> boolean(std::string_view key) const {
    const toml::node* n = get(key);
    if (n == nullptr) return std::nullopt;
    if (!n->is_boolean())
      fail(pos_of(*n), fmt::format("{}: expected true or false, got {}", where(key), got(*n)));
    return *n->value<bool>();
  }
  std::optional<uint64_t> integer(std::string_view key, uint64_t min, uint64_t max) const {
    const toml::node* n = get(key);
    if (n == nullptr) return std::nullopt;
    return integer_of(*n, where(key), min, max);
  }
  std::optional<uint64_t> size(std::string_view key) const {
    const toml::node* n = get(key);
    if (n == nullptr) return std::nullopt;
    return size_of(*n, where(key));
  }
  std::optional<Gpa> gpa(std::string_view key) const {
    const toml::node* n = get(key);
    if (n == nullptr) return std::nullopt;
    if (!n->is_integer() || *n->value<int64_t>() < 0) {
      fail(pos_of(*n),
           fmt::format("{}: expected a guest physical address such as 0x80000000, got {}",
                       where(key), got(*n)));
    }
    const uint64_t v = static_cast<uint64_t>(*n->value<int64_t>());
    if (v % kPageSize != 0) {
      fail(pos_of(*n),
           fmt::format("{}: expected a 4K-aligned address, got {}", where(key), hex(v)));
    }
    return Gpa{v};
  }
  std::optional<std::string> string(std::string_view key) const {
    const toml::node* n = get(key);
    if (n == nullptr) return std::nullopt;
    if (!n->is_string())
      fail(pos_of(*n), fmt::format("{}: expected a string, got {}", where(key), got(*n)));
    return *n->value<std::string>();
  }
  // One of `names` (its index).
  std::optional<size_t> choice(std::string_view key,
                               std::initializer_list<std::string_view> names) const {
    const toml::node* n = get(key);
    if (n == nullptr) return std::nullopt;
    std::string list;
    for (std::string_view a : names) list += fmt::format("{}\"{}\"", list.empty() ? "" : ", ", a);
    if (n->is_string()) {
      const std::string s = *n->value<std::string>();
      size_t i = 0;
      for (std::string_view a : names) {
        if (a == s) return i;
        ++i;
      }
    }
    fail(pos_of(*n), fmt::format("{}: expected one of {}, got {}", where(key), list, got(*n)));
  }
  const toml::table* table(std::string_view key) const {
    const toml::node* n = get(key);
    if (n == nullptr) return nullptr;
    if (!n->is_table())
      fail(pos_of(*n), fmt::format("{}: expected a table, got {}", where(key), got(*n)));
    return n->as_table();
  }
  const toml::array* array(std::string_view key) const {
    const toml::node* n = get(key);
    if (n == nullptr) return nullptr;
    if (!n->is_array())
      fail(pos_of(*n), fmt::format("{}: expected an array, got {}", where(key), got(*n)));
    return n->as_array();
  }

  static uint64_t integer_of(const toml::node& n, const std::string& where, uint64_t min,
                             uint64_t max) {
    if (!n.is_integer())
      fail(pos_of(n), fmt::format("{}: expected an integer, got {}", where, got(n)));
    const int64_t v = *n.value<int64_t>();
    if (v < 0 || static_cast<uint64_t>(v) < min || static_cast<uint64_t>(v) > max) {
      fail(pos_of(n),
           fmt::format("{}: expected an integer from {} to {}, got {}", where, min, max, v));
    }
    return static_cast<uint64_t>(v);
  }
  static uint64_t size_of(const toml::node& n, const std::string& where) {
    std::optional<uint64_t> v;
    if (n.is_integer() && *n.value<int64_t>() >= 0) v = static_cast<uint64_t>(*n.value<int64_t>());
    if (n.is_string()) v = parse_size_text(*n.value<std::string>());
    if (!v) {
      fail(pos_of(n),
           fmt::format("{}: expected a size such as 4096 or \"2M\", got {}", where, got(n)));
    }
    if (*v == 0) fail(pos_of(n), fmt::format("{}: expected a size above 0", where));
    if (*v % kPageSize != 0) {
      fail(pos_of(n), fmt::format("{}: expected a multiple of 4K (4096), got {}", where, hex(*v)));
    }
    return *v;
  }

 private:
  const toml::table& t_;
  std::string path_;
};

// The tables of an array of tables ([[memslot]] or memslot = [{...}]).
std::vector<const toml::table*> tables_of(const Table& parent, std::string_view key) {
  std::vector<const toml::table*> out;
  const toml::array* a = parent.array(key);
  if (a == nullptr) return out;
  size_t i = 0;
  for (const toml::node& n : *a) {
    if (!n.is_table()) {
      fail(pos_of(n),
           fmt::format("{}[{}]: expected a table, got {}", parent.where(key), i, got(n)));
    }
    out.push_back(n.as_table());
    ++i;
  }
  return out;
}

// A range written as `slot = N` (the whole slot) or `gpa` + `size`.
struct RangeAt {
  GpaRange range;
  SourcePos pos;
};

class Reader {
 public:
  explicit Reader(std::string source) { spec_.source = std::move(source); }

  ScenarioSpec read(const toml::table& root) {
    const Table top(root, "",
                    {"description", "machine", "vm", "memslot", "guest", "vcpu", "host", "fault",
                     "inject", "expect"});
    spec_.description = top.string("description").value_or("");
    read_machine_and_vm(top);
    read_memslots(top);
    read_host(top);
    read_guests(top);
    check_host_stages();
    read_faults(top);
    read_inject(top);
    read_expects(top);
    return std::move(spec_);
  }

 private:
  bool td() const { return spec_.vm.type == VmType::kTdx; }
  bool has_private_memory() const { return spec_.vm.type != VmType::kDefault; }
  // Guest physical address bits a range must stay below: a TD's shared bit (47) is not
  // memory, and 4-level paging ends at 48 bits.
  unsigned address_bits() const { return td() ? 47 : 48; }

  void read_machine_and_vm(const Table& top) {
    const toml::table empty;
    const toml::table* vt = top.table("vm");
    const Table v(
        vt != nullptr ? *vt : empty, "vm",
        {"type", "vcpus", "sept_ve_disable", "quirk_slot_zap_all", "discard_on_conversion"});
    VmSpec& vm = spec_.vm;
    if (auto t = v.choice("type", {"default", "sw_protected", "tdx"})) {
      vm.type = *t == 0 ? VmType::kDefault : *t == 1 ? VmType::kSwProtected : VmType::kTdx;
    }
    const toml::table* mt = top.table("machine");
    const Table m(mt != nullptr ? *mt : empty, "machine",
                  {"vendor", "tdx", "hyperv", "enlightened_tlb", "memory", "cpus"});
    MachineSpec& mc = spec_.machine;
    if (auto vd = m.choice("vendor", {"intel", "amd"}))
      mc.vendor = *vd == 0 ? CpuVendor::kIntel : CpuVendor::kAmd;
    mc.tdx = m.boolean("tdx").value_or(td());
    mc.hyperv = m.boolean("hyperv").value_or(false);
    mc.enlightened_tlb = m.boolean("enlightened_tlb").value_or(false);
    if (auto mem = m.size("memory")) mc.memory = *mem;
    if (mc.memory < (32u << 20) || mc.memory > (uint64_t{16} << 30) ||
        mc.memory % (2u << 20) != 0) {
      fail(m.pos("memory"),
           fmt::format("machine.memory: expected a multiple of 2M from 32M to 16G, got {}",
                       hex(mc.memory)));
    }
    mc.cpus = static_cast<unsigned>(m.integer("cpus", 3, 64).value_or(8));
    if (mc.tdx && mc.vendor == CpuVendor::kAmd) {
      fail(m.pos(m.has("tdx") ? "tdx" : "vendor"),
           "machine.tdx: TDX is Intel's, but machine.vendor is \"amd\"");
    }
    if (mc.tdx && mc.hyperv) {
      fail(m.pos("hyperv"),
           "machine.hyperv: a TDX host runs on bare metal; expected hyperv = false "
           "with tdx = true");
    }
    if (mc.enlightened_tlb && !mc.hyperv) {
      fail(m.pos("enlightened_tlb"), "machine.enlightened_tlb: needs machine.hyperv = true");
    }
    if (td() && !mc.tdx) fail(v.pos("type"), "vm.type: \"tdx\" needs machine.tdx = true");
    if (td() && mc.vendor == CpuVendor::kAmd)
      fail(v.pos("type"), "vm.type: \"tdx\" needs an Intel machine");
    const unsigned max_vcpus = mc.cpus - 2;
    vm.vcpus = static_cast<unsigned>(v.integer("vcpus", 1, 1024).value_or(1));
    if (vm.vcpus > max_vcpus) {
      fail(v.pos("vcpus"), fmt::format("vm.vcpus: {} vCPUs need {} CPUs (2 run host threads), but "
                                       "machine.cpus is {}",
                                       vm.vcpus, vm.vcpus + 2, mc.cpus));
    }
    vm.sept_ve_disable = v.boolean("sept_ve_disable").value_or(false);
    if (vm.sept_ve_disable && !td())
      fail(v.pos("sept_ve_disable"), "vm.sept_ve_disable: only a TD has it");
    vm.quirk_slot_zap_all = v.boolean("quirk_slot_zap_all").value_or(true);
    vm.discard_on_conversion = v.boolean("discard_on_conversion").value_or(true);
  }

  void read_memslots(const Table& top) {
    const std::vector<const toml::table*> slots = tables_of(top, "memslot");
    if (slots.empty()) fail(top.pos("memslot"), "expected at least one [[memslot]]");
    uint64_t total = 0;
    for (size_t i = 0; i < slots.size(); ++i) {
      const Table t(*slots[i], fmt::format("memslot[{}]", i),
                    {"slot", "gpa", "size", "guest_memfd", "thp", "private"});
      MemslotSpec s;
      s.pos = t.pos();
      t.need("slot", "the memslot's id");
      s.slot = static_cast<uint32_t>(t.integer("slot", 0, 32767).value());
      t.need("gpa", "where the slot starts");
      s.range.gpa = t.gpa("gpa").value();
      t.need("size", "how many bytes it maps");
      s.range.size = t.size("size").value();
      s.guest_memfd = t.boolean("guest_memfd").value_or(false);
      s.thp = t.boolean("thp").value_or(false);
      s.initially_private = t.boolean("private").value_or(false);
      if (s.range.end() > (uint64_t{1} << address_bits()) || s.range.end() < s.range.size) {
        fail(t.pos("size"), fmt::format("{}: [{}, {}) goes beyond the VM's {}-bit guest physical "
                                        "address space",
                                        t.where("size"), hex(s.range.gpa.raw()), hex(s.range.end()),
                                        address_bits()));
      }
      const uint64_t ucall = guest::kDefaultUcallGpa.raw();
      if (s.range.gpa.raw() <= ucall && ucall < s.range.end()) {
        fail(t.pos("gpa"), fmt::format("{}: the slot covers {}, the ucall MMIO address guests talk "
                                       "to the host through; expected a range that leaves it out",
                                       t.where("gpa"), hex(ucall)));
      }
      for (size_t j = 0; j < spec_.memslots.size(); ++j) {
        const MemslotSpec& o = spec_.memslots[j];
        if (o.slot == s.slot) {
          fail(t.pos("slot"),
               fmt::format("{}: slot id {} is memslot[{}]'s already; expected a new id",
                           t.where("slot"), s.slot, j));
        }
        if (s.range.gpa.raw() < o.range.end() && o.range.gpa.raw() < s.range.end()) {
          fail(t.pos("gpa"), fmt::format("{}: [{}, {}) overlaps memslot[{}] (slot {}, [{}, {}))",
                                         t.where("gpa"), hex(s.range.gpa.raw()), hex(s.range.end()),
                                         j, o.slot, hex(o.range.gpa.raw()), hex(o.range.end())));
        }
      }
      if (s.guest_memfd && !has_private_memory()) {
        fail(t.pos("guest_memfd"), fmt::format("{}: a default VM has no private memory; expected "
                                               "vm.type = \"sw_protected\" or \"tdx\"",
                                               t.where("guest_memfd")));
      }
      if (s.initially_private && !s.guest_memfd) {
        fail(t.pos("private"), fmt::format("{}: private memory comes from guest_memfd; expected "
                                           "guest_memfd = true",
                                           t.where("private")));
      }
      total += s.range.size;
      if (total > spec_.machine.memory / 2) {
        fail(t.pos("size"),
             fmt::format("{}: the memslots map {} bytes; machine.memory ({}) must be "
                         "at least twice that",
                         t.where("size"), hex(total), hex(spec_.machine.memory)));
      }
      spec_.memslots.push_back(s);
    }
  }

  const MemslotSpec* slot_named(uint32_t id) const {
    for (const MemslotSpec& s : spec_.memslots) {
      if (s.slot == id) return &s;
    }
    return nullptr;
  }
  const MemslotSpec& need_slot(const Table& t, std::string_view key) const {
    t.need(key, "a memslot id");
    const uint32_t id = static_cast<uint32_t>(t.integer(key, 0, 32767).value());
    const MemslotSpec* s = slot_named(id);
    if (s == nullptr)
      fail(t.pos(key), fmt::format("{}: no [[memslot]] has slot = {}", t.where(key), id));
    return *s;
  }

  RangeAt read_range(const Table& t) const {
    if (t.has("slot")) {
      if (t.has("gpa") || t.has("size")) {
        fail(t.pos("slot"),
             fmt::format("{}: expected either slot or gpa and size, not both", t.where("slot")));
      }
      return RangeAt{need_slot(t, "slot").range, t.pos("slot")};
    }
    if (!t.has("gpa") || !t.has("size")) {
      fail(t.pos(), fmt::format("{}: expected a range: slot = N, or gpa and size", t.where("")));
    }
    return RangeAt{GpaRange{t.gpa("gpa").value(), t.size("size").value()}, t.pos("gpa")};
  }

  // The memslot (as declared, or where a host action moves it) that holds all of `r`.
  const MemslotSpec& slot_holding(const RangeAt& r, std::string_view what) const {
    for (const MemslotSpec& s : spec_.memslots) {
      std::vector<Gpa> places = {s.range.gpa};
      for (const HostActionSpec& h : spec_.host) {
        if (h.kind == HostActionKind::kMoveMemslot && h.slot == s.slot) places.push_back(h.to);
      }
      for (Gpa p : places) {
        if (r.range.gpa >= p && r.range.end() <= p.raw() + s.range.size &&
            r.range.end() > r.range.gpa.raw()) {
          return s;
        }
      }
    }
    fail(r.pos, fmt::format("{}: [{}, {}) is not inside any memslot (nor where one moves to)", what,
                            hex(r.range.gpa.raw()), hex(r.range.end())));
  }

  void read_host(const Table& top) {
    const std::vector<const toml::table*> hs = tables_of(top, "host");
    for (size_t i = 0; i < hs.size(); ++i) {
      const std::string path = fmt::format("host[{}]", i);
      const Table head(
          *hs[i], path,
          {"at", "action", "slot", "gpa", "size", "to", "discard", "round", "write", "slots"});
      head.need("action", "what the host does");
      const size_t a = head.choice("action", {"delete_memslot", "move_memslot", "recreate_memslot",
                                              "set_private", "set_shared", "punch_hole", "reclaim",
                                              "zap_gfn_range", "flush_remote_tlbs", "pressure_on",
                                              "pressure_off", "check"})
                           .value();
      HostActionSpec h;
      h.kind = static_cast<HostActionKind>(a);
      h.pos = head.pos();
      const std::string what = fmt::format("{} ({})", path, to_string(h.kind));
      // Each action's own keys, so a key that means nothing for it is an error.
      std::vector<std::string_view> keys;
      switch (h.kind) {
        case HostActionKind::kDeleteMemslot:
        case HostActionKind::kRecreateMemslot:
        case HostActionKind::kReclaim:
          keys = {"at", "action", "slot"};
          break;
        case HostActionKind::kMoveMemslot:
          keys = {"at", "action", "slot", "to"};
          break;
        case HostActionKind::kSetPrivate:
        case HostActionKind::kSetShared:
          keys = {"at", "action", "slot", "gpa", "size", "discard"};
          break;
        case HostActionKind::kPunchHole:
        case HostActionKind::kZapGfnRange:
          keys = {"at", "action", "slot", "gpa", "size"};
          break;
        case HostActionKind::kCheck:
          keys = {"at", "action", "slot", "gpa", "size", "round", "write"};
          break;
        case HostActionKind::kPressureOn:
          keys = {"at", "action", "slots"};
          break;
        case HostActionKind::kFlushRemoteTlbs:
        case HostActionKind::kPressureOff:
          keys = {"at", "action"};
          break;
      }
      const Table t(*hs[i], what, keys);
      t.need("at", "the sync stage it runs at");
      h.at = t.integer("at", 1, kMaxStage).value();
      switch (h.kind) {
        case HostActionKind::kDeleteMemslot:
        case HostActionKind::kRecreateMemslot:
        case HostActionKind::kReclaim:
          h.slot = need_slot(t, "slot").slot;
          break;
        case HostActionKind::kMoveMemslot: {
          const MemslotSpec& s = need_slot(t, "slot");
          h.slot = s.slot;
          t.need("to", "the GPA it moves to");
          h.to = t.gpa("to").value();
          if (h.to.raw() + s.range.size > (uint64_t{1} << address_bits())) {
            fail(t.pos("to"),
                 fmt::format("{}: the slot would end beyond the VM's {}-bit address space",
                             t.where("to"), address_bits()));
          }
          break;
        }
        case HostActionKind::kSetPrivate:
        case HostActionKind::kSetShared:
          if (!has_private_memory()) {
            fail(t.pos("action"),
                 fmt::format("{}: a default VM has no private memory", t.where("action")));
          }
          h.range = read_range(t).range;
          h.discard = t.boolean("discard").value_or(true);
          break;
        case HostActionKind::kZapGfnRange:
          if (td()) {
            fail(t.pos("action"), fmt::format("{}: KVM does not zap a TD's GFN ranges for MTRR "
                                              "changes (EOPNOTSUPP); expected a non-TD VM",
                                              t.where("action")));
          }
          h.range = read_range(t).range;
          break;
        case HostActionKind::kPunchHole:
          h.range = read_range(t).range;
          break;
        case HostActionKind::kCheck:
          h.range = read_range(t).range;
          t.need("round", "the pattern round the host must read (0: zeros)");
          h.round = t.integer("round", 0, kMaxRound).value();
          h.write = t.integer("write", 1, kMaxRound);
          break;
        case HostActionKind::kPressureOn:
          if (const toml::array* arr = t.array("slots")) {
            for (const toml::node& n : *arr) {
              const uint32_t id =
                  static_cast<uint32_t>(Table::integer_of(n, t.where("slots"), 0, 32767));
              if (slot_named(id) == nullptr)
                fail(pos_of(n),
                     fmt::format("{}: no [[memslot]] has slot = {}", t.where("slots"), id));
              h.slots.push_back(id);
            }
          } else {
            for (const MemslotSpec& s : spec_.memslots) h.slots.push_back(s.slot);
          }
          break;
        case HostActionKind::kFlushRemoteTlbs:
        case HostActionKind::kPressureOff:
          break;
      }
      spec_.host.push_back(h);
      host_range_pos_.push_back(t.has("slot") ? t.pos("slot") : t.pos("gpa"));
      host_at_pos_.push_back(t.pos("at"));
    }
    // Ranges are checked once every move is known (a range may lie where a slot moves to).
    for (size_t i = 0; i < spec_.host.size(); ++i) {
      const HostActionSpec& h = spec_.host[i];
      if (h.range.size == 0) continue;
      const MemslotSpec& s =
          slot_holding(RangeAt{h.range, host_range_pos_[i]}, fmt::format("host[{}]", i));
      if (h.kind == HostActionKind::kPunchHole && !s.guest_memfd) {
        fail(host_range_pos_[i],
             fmt::format("host[{}]: slot {} has no guest_memfd to punch", i, s.slot));
      }
    }
  }

  // A guest program, with shared phases split into vCPU `index`'s share of `of` vCPUs.
  std::vector<PhaseSpec> read_phases(const toml::array& arr, const std::string& path,
                                     unsigned index, unsigned of) {
    std::vector<PhaseSpec> out;
    uint64_t last_stage = 0;
    size_t i = 0;
    for (const toml::node& n : arr) {
      const std::string where = fmt::format("{}[{}]", path, i++);
      if (!n.is_table())
        fail(pos_of(n), fmt::format("{}: expected a phase table such as "
                                    "{{ op = \"fill\", slot = 0, round = 1 }}, got {}",
                                    where, got(n)));
      const toml::table& pt = *n.as_table();
      const Table head(pt, where,
                       {"op", "slot", "gpa", "size", "round", "repeat", "written_at", "to", "how",
                        "level", "stage"});
      head.need("op", "accept, fill, verify, convert, punch or sync");
      PhaseSpec p;
      p.op = static_cast<PhaseOp>(
          head.choice("op", {"accept", "fill", "verify", "convert", "punch", "sync"}).value());
      p.pos = head.pos();
      std::vector<std::string_view> keys;
      switch (p.op) {
        case PhaseOp::kAccept:
          keys = {"op", "slot", "gpa", "size", "level"};
          break;
        case PhaseOp::kFill:
          keys = {"op", "slot", "gpa", "size", "round"};
          break;
        case PhaseOp::kVerify:
          keys = {"op", "slot", "gpa", "size", "round", "repeat", "written_at"};
          break;
        case PhaseOp::kConvert:
          keys = {"op", "slot", "gpa", "size", "to", "how"};
          break;
        case PhaseOp::kPunch:
          keys = {"op", "slot", "gpa", "size"};
          break;
        case PhaseOp::kSync:
          keys = {"op", "stage"};
          break;
      }
      const Table t(pt, where, keys);
      if (p.op == PhaseOp::kSync) {
        t.need("stage", "the stage number the host's actions are keyed to");
        p.stage = t.integer("stage", 1, kMaxStage).value();
        if (p.stage <= last_stage) {
          fail(t.pos("stage"),
               fmt::format("{}.stage: expected a stage above {} (stages rise within "
                           "each vCPU's program), got {}",
                           where, last_stage, p.stage));
        }
        last_stage = p.stage;
        stages_.insert(p.stage);
        out.push_back(p);
        continue;
      }
      RangeAt r = read_range(t);
      const MemslotSpec& slot = slot_holding(r, where);
      const uint64_t share = r.range.size / of;
      if (of > 1) {
        if (r.range.size % (of * kPageSize) != 0) {
          fail(r.pos,
               fmt::format("{}: {} vCPUs cannot share [{}, {}) in whole pages; expected a size "
                           "that is a multiple of {}",
                           where, of, hex(r.range.gpa.raw()), hex(r.range.end()),
                           hex(of * kPageSize)));
        }
        r.range = GpaRange{r.range.gpa + index * share, share};
      }
      switch (p.op) {
        case PhaseOp::kAccept:
          if (!td())
            fail(t.pos("op"),
                 fmt::format("{}.op: only a TD accepts memory (vm.type = \"tdx\")", where));
          if (auto l = t.choice("level", {"4K", "2M"})) p.level = *l == 0 ? Level::k4K : Level::k2M;
          if (p.level == Level::k2M &&
              (!r.range.gpa.is_aligned(Level::k2M) || r.range.size % (2u << 20) != 0)) {
            fail(t.pos("level"),
                 fmt::format("{}.level: a 2M accept needs a 2M-aligned range", where));
          }
          break;
        case PhaseOp::kFill:
          t.need("round", "the pattern round to write");
          p.round = t.integer("round", 0, kMaxRound).value();
          break;
        case PhaseOp::kVerify:
          t.need("round", "the pattern round to expect (0: zeros)");
          p.round = t.integer("round", 0, kMaxRound).value();
          p.repeat = static_cast<unsigned>(t.integer("repeat", 1, 100000).value_or(1));
          if (auto w = t.gpa("written_at")) p.written_at = *w + (of > 1 ? index * share : 0);
          break;
        case PhaseOp::kConvert: {
          if (!has_private_memory()) {
            fail(t.pos("op"),
                 fmt::format("{}.op: a default VM has no private memory to convert", where));
          }
          if (!slot.guest_memfd) {
            fail(r.pos, fmt::format("{}: slot {} has no guest_memfd: nothing to convert", where,
                                    slot.slot));
          }
          t.need("to", "\"shared\" or \"private\"");
          p.to_private = t.choice("to", {"shared", "private"}).value() == 1;
          p.implicit = t.choice("how", {"explicit", "implicit"}).value_or(0) == 1;
          if (p.implicit && !td()) {
            fail(t.pos("how"),
                 fmt::format("{}.how: implicit conversion (touching the other alias) needs "
                             "a TD; expected how = \"explicit\"",
                             where));
          }
          break;
        }
        case PhaseOp::kPunch:
          if (!slot.guest_memfd)
            fail(r.pos, fmt::format("{}: slot {} has no guest_memfd to punch", where, slot.slot));
          break;
        case PhaseOp::kSync:
          break;
      }
      p.range = r.range;
      out.push_back(p);
    }
    return out;
  }

  void read_guests(const Table& top) {
    const unsigned n = spec_.vm.vcpus;
    spec_.guests.assign(n, GuestSpec{});
    std::vector<bool> own(n, false);
    const std::vector<const toml::table*> vs = tables_of(top, "vcpu");
    for (size_t i = 0; i < vs.size(); ++i) {
      const std::string path = fmt::format("vcpu[{}]", i);
      const Table t(*vs[i], path, {"id", "phases"});
      t.need("id", "the vCPU's index");
      const uint64_t id = t.integer("id", 0, 1023).value();
      if (id >= n)
        fail(t.pos("id"),
             fmt::format("{}.id: vCPU {} does not exist: vm.vcpus is {}", path, id, n));
      if (own[id])
        fail(t.pos("id"), fmt::format("{}.id: vCPU {} already has its own phases", path, id));
      own[id] = true;
      t.need("phases", "the vCPU's program");
      spec_.guests[id].phases = read_phases(*t.array("phases"), path + ".phases", 0, 1);
    }
    if (const toml::table* g = top.table("guest")) {
      const Table t(*g, "guest", {"phases"});
      t.need("phases", "what every vCPU runs on its own share of each range");
      const toml::array& arr = *t.array("phases");
      unsigned sharing = 0;
      for (unsigned i = 0; i < n; ++i) sharing += own[i] ? 0 : 1;
      unsigned share = 0;
      for (unsigned i = 0; i < n; ++i) {
        if (own[i]) continue;
        spec_.guests[i].phases = read_phases(arr, "guest.phases", share++, sharing);
      }
    }
  }

  void check_host_stages() const {
    for (size_t i = 0; i < spec_.host.size(); ++i) {
      if (stages_.contains(spec_.host[i].at)) continue;
      fail(host_at_pos_[i],
           fmt::format("host[{}].at: no vCPU syncs at stage {}; expected a stage of "
                       "a {{ op = \"sync\" }} phase",
                       i, spec_.host[i].at));
    }
  }

  void read_faults(const Table& top) {
    const std::vector<const toml::table*> fs = tables_of(top, "fault");
    for (size_t i = 0; i < fs.size(); ++i) {
      const std::string path = fmt::format("fault[{}]", i);
      const Table head(*fs[i], path, {"kind", "leaf", "vcpu", "count", "param", "at"});
      head.need("kind", "an environment fault kind");
      FaultSpec f;
      f.pos = head.pos();
      f.kind = static_cast<EnvFaultKind>(
          head.choice("kind", {"force_operand_busy", "fail_seamcall_insn", "arm_zero_step",
                               "force_previous_epoch_busy", "delay_td_exit"})
              .value());
      const bool by_leaf = f.kind == EnvFaultKind::kForceOperandBusy ||
                           f.kind == EnvFaultKind::kFailSeamcallInsn ||
                           f.kind == EnvFaultKind::kForcePreviousEpochBusy;
      const Table t = by_leaf ? Table(*fs[i], path, {"kind", "leaf", "count", "param", "at"})
                              : Table(*fs[i], path, {"kind", "vcpu", "count", "param", "at"});
      if (!td())
        fail(t.pos("kind"), fmt::format("{}.kind: TDX faults need a TD (vm.type = \"tdx\")", path));
      f.key = FaultInjection::kAnyKey;
      if (by_leaf) {
        if (auto name = t.string("leaf")) {
          const std::optional<SeamcallLeaf> leaf = seamcall_leaf_from_name(*name);
          if (!leaf) {
            fail(t.pos("leaf"),
                 fmt::format("{}.leaf: unknown SEAMCALL leaf \"{}\"; expected a name such "
                             "as \"TDH.MEM.RANGE.BLOCK\"",
                             path, *name));
          }
          f.key = static_cast<uint64_t>(*leaf);
        }
      } else if (auto v = t.integer("vcpu", 0, 1023)) {
        if (*v >= spec_.vm.vcpus) {
          fail(t.pos("vcpu"), fmt::format("{}.vcpu: vCPU {} does not exist: vm.vcpus is {}", path,
                                          *v, spec_.vm.vcpus));
        }
        f.key = *v;
      }
      if (const toml::node* c = t.get("count")) {
        if (c->is_string() && *c->value<std::string>() == "forever") {
          f.count = FaultInjection::kForever;
        } else if (!c->is_integer()) {
          fail(pos_of(*c),
               fmt::format("{}.count: expected an integer or \"forever\", got {}", path, got(*c)));
        } else {
          f.count = static_cast<uint32_t>(Table::integer_of(*c, path + ".count", 1, 1000000));
        }
      }
      if (const toml::node* pn = t.get("param")) {
        if (pn->is_string() && f.kind == EnvFaultKind::kForceOperandBusy) {
          f.param = operand_named(*pn, path);
        } else {
          f.param = Table::integer_of(*pn, path + ".param", 0, ~uint64_t{0} >> 1);
        }
      } else if (f.kind == EnvFaultKind::kForceOperandBusy) {
        f.param = 0x93;  // a SEPT entry: what BLOCK and REMOVE contend on
      }
      if (auto at = t.integer("at", 1, kMaxStage)) {
        if (!stages_.contains(*at)) {
          fail(t.pos("at"), fmt::format("{}.at: no vCPU syncs at stage {}", path, *at));
        }
        f.at = *at;
      }
      spec_.faults.push_back(f);
    }
  }

  static uint64_t operand_named(const toml::node& n, const std::string& path) {
    static constexpr std::pair<std::string_view, uint64_t> kOperands[] = {
        {"sept_entry", 0x93}, {"sept_tree", 0x92}, {"td_epoch", 0xA9}, {"tdr", 0x80},
        {"tdcs", 0x90},       {"tdvpr", 0x82},     {"op_state", 0xAC}, {"rcx", 1}};
    const std::string s = *n.value<std::string>();
    for (const auto& [name, id] : kOperands) {
      if (name == s) return id;
    }
    fail(pos_of(n),
         fmt::format("{}.param: unknown operand \"{}\"; expected an operand ID or one of "
                     "sept_entry, sept_tree, td_epoch, tdr, tdcs, tdvpr, op_state, rcx",
                     path, s));
  }

  void read_inject(const Table& top) {
    const toml::array* arr = top.array("inject");
    if (arr == nullptr) return;
    std::string listed;
    for (std::span<const BugRow> rows : {bug_rows(), planted_bugs()}) {
      for (const BugRow& r : rows)
        listed += fmt::format("{}{}", listed.empty() ? "" : ", ", to_string(r.id));
    }
    for (const toml::node& n : *arr) {
      if (!n.is_string())
        fail(pos_of(n), fmt::format("inject: expected a bug ID such as \"S0\", got {}", got(n)));
      const std::string s = *n.value<std::string>();
      const std::optional<BugId> id = parse_bug_id(s);
      const bool is_row = id && find_switch(*id) != nullptr;
      if (!is_row) {
        fail(pos_of(n),
             fmt::format("inject: \"{}\" is not a bug switch; expected one of {}", s, listed));
      }
      spec_.inject.push_back(*id);
    }
  }

  void read_expects(const Table& top) {
    const std::vector<const toml::table*> es = tables_of(top, "expect");
    for (size_t i = 0; i < es.size(); ++i) {
      const std::string path = fmt::format("expect[{}]", i);
      const Table t(*es[i], path, {"vcpu", "done", "memory_fault", "count", "at_least", "at_most"});
      ExpectSpec e;
      e.pos = t.pos();
      const int kinds = int{t.has("done")} + int{t.has("memory_fault")} + int{t.has("count")};
      if (kinds != 1) {
        fail(t.pos(), fmt::format("{}: expected exactly one of done, memory_fault or count", path));
      }
      if (t.has("count")) {
        if (t.has("vcpu"))
          fail(t.pos("vcpu"), fmt::format("{}.vcpu: a count is the whole VM's", path));
        e.kind = ExpectKind::kCount;
        e.counter = t.string("count").value();
        const std::optional<CounterRef> c = parse_counter(e.counter);
        if (!c) {
          fail(t.pos("count"),
               fmt::format("{}.count: unknown counter \"{}\"; expected one of {} (LEAF: a "
                           "SEAMCALL leaf name such as TDH.MEM.PAGE.AUG)",
                           path, e.counter, kCounterNames));
        }
        if (c->needs_td() && !td())
          fail(t.pos("count"),
               fmt::format("{}.count: \"{}\" counts a TD's events", path, e.counter));
        if (!t.has("at_least") && !t.has("at_most")) {
          fail(t.pos(), fmt::format("{}: expected at_least, at_most or both", path));
        }
        e.at_least = t.integer("at_least", 0, ~uint64_t{0} >> 1).value_or(0);
        e.at_most = t.integer("at_most", 0, ~uint64_t{0} >> 1);
        if (e.at_most && *e.at_most < e.at_least) {
          fail(t.pos("at_most"),
               fmt::format("{}.at_most: {} is below at_least ({})", path, *e.at_most, e.at_least));
        }
        spec_.expects.push_back(e);
        continue;
      }
      if (t.has("at_least") || t.has("at_most")) {
        fail(t.pos(t.has("at_least") ? "at_least" : "at_most"),
             fmt::format("{}: at_least and at_most go with count", path));
      }
      t.need("vcpu", "the vCPU it is about");
      e.vcpu = static_cast<unsigned>(t.integer("vcpu", 0, 1023).value());
      if (e.vcpu >= spec_.vm.vcpus) {
        fail(t.pos("vcpu"), fmt::format("{}.vcpu: vCPU {} does not exist: vm.vcpus is {}", path,
                                        e.vcpu, spec_.vm.vcpus));
      }
      if (t.has("done")) {
        if (!t.boolean("done").value()) {
          fail(t.pos("done"),
               fmt::format("{}.done: expected true (a vCPU that must stop early expects "
                           "a memory_fault)",
                           path));
        }
        e.kind = ExpectKind::kDone;
      } else {
        e.kind = ExpectKind::kMemoryFault;
        const Table mf(*t.table("memory_fault"), path + ".memory_fault",
                       {"gpa", "size", "private"});
        mf.need("gpa", "the faulting GPA");
        e.fault.gpa = mf.gpa("gpa").value();
        e.fault.size = mf.size("size").value_or(kPageSize);
        e.fault_private = mf.boolean("private").value_or(false);
      }
      for (const ExpectSpec& o : spec_.expects) {
        if (o.kind != ExpectKind::kCount && o.vcpu == e.vcpu) {
          fail(t.pos("vcpu"),
               fmt::format("{}.vcpu: vCPU {} has an expectation already", path, e.vcpu));
        }
      }
      spec_.expects.push_back(e);
    }
  }

  static constexpr uint64_t kMaxStage = uint64_t{1} << 40;
  static constexpr uint64_t kMaxRound = 0xFFFF'FFFF;

  ScenarioSpec spec_;
  std::set<uint64_t> stages_;
  std::vector<SourcePos> host_range_pos_;
  std::vector<SourcePos> host_at_pos_;
};

}  // namespace

std::expected<ScenarioSpec, ScenarioFileError> parse_scenario(std::string_view text,
                                                              std::string_view source_name) {
  const std::string file(source_name);
  try {
    const toml::table root = toml::parse(text, source_name);
    return Reader(file).read(root);
  } catch (const toml::parse_error& e) {
    const SourcePos p = pos_of(e.source());
    return std::unexpected(
        ScenarioFileError{file, p.line, p.column, fmt::format("TOML syntax: {}", e.description())});
  } catch (const BadInput& e) {
    return std::unexpected(ScenarioFileError{file, e.pos.line, e.pos.column, e.message});
  } catch (const std::exception& e) {
    // Not expected (toml++ and this reader report everything above); kept so no input crashes.
    return std::unexpected(ScenarioFileError{file, 1, 1, fmt::format("cannot read: {}", e.what())});
  }
}

std::expected<ScenarioSpec, ScenarioFileError> load_scenario_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(ScenarioFileError{path, 0, 0, "cannot open the file"});
  std::ostringstream text;
  text << in.rdbuf();
  return parse_scenario(text.str(), path);
}

}  // namespace tdxsim
