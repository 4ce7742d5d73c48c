#include "cli/run_options.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>

namespace tdxsim::cli {

std::optional<uint64_t> parse_size(std::string_view text) {
  if (text.empty()) return std::nullopt;
  unsigned shift = 0;
  switch (std::toupper(static_cast<unsigned char>(text.back()))) {
    case 'K':
      shift = 10;
      break;
    case 'M':
      shift = 20;
      break;
    case 'G':
      shift = 30;
      break;
    case 'T':
      shift = 40;
      break;
    default:
      break;
  }
  if (shift != 0) text.remove_suffix(1);
  if (text.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  if (shift != 0 && v > (std::numeric_limits<uint64_t>::max() >> shift)) return std::nullopt;
  return v << shift;
}

std::optional<std::vector<Preemption>> parse_preemptions(std::string_view text) {
  std::vector<Preemption> out;
  if (text == "none") return out;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    const size_t colon = item.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    Preemption p;
    const std::string_view step = item.substr(0, colon), thread = item.substr(colon + 1);
    if (std::from_chars(step.data(), step.data() + step.size(), p.step).ptr !=
            step.data() + step.size() ||
        std::from_chars(thread.data(), thread.data() + thread.size(), p.thread).ptr !=
            thread.data() + thread.size() ||
        step.empty() || thread.empty()) {
      return std::nullopt;
    }
    if (!out.empty() && p.step <= out.back().step) return std::nullopt;
    out.push_back(p);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
    if (text.empty()) return std::nullopt;
  }
  return out.empty() ? std::nullopt : std::optional(std::move(out));
}

std::expected<ScenarioOptions, std::string> make_file_options(const RunFlags& flags) {
  if (flags.vcpus || flags.memory || flags.vm_type) {
    return std::unexpected(std::string(
        "--vcpus, --memory and --vm-type do not apply to a scenario file: set them in the file"));
  }
  static constexpr ScenarioInfo kFile{"scenario file", "", nullptr, {false, false, ""}};
  return make_options(kFile, flags);
}

std::expected<ScenarioOptions, std::string> make_options(const ScenarioInfo& scenario,
                                                         const RunFlags& flags) {
  ScenarioOptions o;
  if (flags.seed) o.seed = *flags.seed;
  const ScenarioOverrides& can = scenario.overrides;
  if (flags.vcpus) {
    if (!can.vcpus) {
      return std::unexpected(
          fmt::format("--vcpus: scenario '{}' has a fixed vCPU count", scenario.name));
    }
    if (*flags.vcpus < 1 || *flags.vcpus > 64) {
      return std::unexpected(fmt::format("--vcpus {}: expected 1 to 64", *flags.vcpus));
    }
    o.vcpus = *flags.vcpus;
  }
  if (flags.memory) {
    if (!can.memory) {
      return std::unexpected(
          fmt::format("--memory: scenario '{}' has a fixed memory size", scenario.name));
    }
    const std::optional<uint64_t> bytes = parse_size(*flags.memory);
    if (!bytes) {
      return std::unexpected(
          fmt::format("--memory {}: expected a size such as 4G, 512M or 1048576", *flags.memory));
    }
    // At least 4 MiB a vCPU, at most 64 GiB (what the simulated host is sized for).
    const uint64_t per_vcpu_min = uint64_t{4} << 20;
    const unsigned n = o.vcpus.value_or(1);
    if (*bytes < per_vcpu_min * n || *bytes > (uint64_t{64} << 30) || *bytes % (2 << 20) != 0) {
      return std::unexpected(
          fmt::format("--memory {}: expected a multiple of 2M between {} MiB and 64 GiB",
                      *flags.memory, (per_vcpu_min * n) >> 20));
    }
    o.memory_bytes = *bytes;
  }
  if (flags.vm_type) {
    static constexpr std::string_view kTypes[] = {"default", "sw_protected", "tdx"};
    if (std::ranges::find(kTypes, *flags.vm_type) == std::end(kTypes)) {
      return std::unexpected(
          fmt::format("--vm-type {}: expected one of default, sw_protected, tdx", *flags.vm_type));
    }
    if (can.vm_type.empty() || can.vm_type != *flags.vm_type) {
      return std::unexpected(
          can.vm_type.empty()
              ? fmt::format("--vm-type: scenario '{}' runs several VM types of its own",
                            scenario.name)
              : fmt::format("--vm-type {}: scenario '{}' runs only {} VMs", *flags.vm_type,
                            scenario.name, can.vm_type));
    }
  }
  for (const std::string& id : flags.inject) {
    const std::optional<BugId> bug = parse_bug_id(id);
    const bool exists = bug && find_switch(*bug) != nullptr;
    if (!exists) {
      return std::unexpected(
          fmt::format("--inject {}: no such bug switch (try `tdxsim bugs`)", id));
    }
    o.inject.push_back(*bug);
  }
  if (flags.no_checks && !o.inject.empty()) {
    return std::unexpected(
        std::string("--inject with --no-checks: the invariants that would catch the bug are off"));
  }
  o.checks = !flags.no_checks;
  if (flags.schedule_seed && !flags.deterministic) {
    return std::unexpected(std::string(
        "--schedule-seed without --deterministic: a free-running schedule has no seed"));
  }
  if (flags.deterministic) o.schedule_seed = flags.schedule_seed.value_or(o.seed);
  if (flags.preempt) {
    if (!flags.deterministic) {
      return std::unexpected(std::string("--preempt without --deterministic"));
    }
    std::optional<std::vector<Preemption>> script = parse_preemptions(*flags.preempt);
    if (!script) {
      return std::unexpected(fmt::format(
          "--preempt {}: expected STEP:THREAD pairs with increasing steps, comma-separated "
          "(e.g. 1200:2,4711:3), or none",
          *flags.preempt));
    }
    o.schedule_script = std::move(script);
  }
  return o;
}

}  // namespace tdxsim::cli
