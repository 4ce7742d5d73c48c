// RunOptions: what `tdxsim run` was asked on the command line, checked against what the
// scenario can take. Every refusal is a usage error (exit 2) with a message naming the flag.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "scenarios/scenario.h"

namespace tdxsim::cli {

struct RunFlags {
  std::optional<uint64_t> seed;
  std::optional<unsigned> vcpus;
  std::optional<std::string> memory;   // "4G", "512M", "65536"
  std::optional<std::string> vm_type;  // "tdx", "default", "sw_protected"
  std::vector<std::string> inject;
  bool no_checks = false;
  bool deterministic = false;
  std::optional<uint64_t> schedule_seed;  // default: the run's --seed
  std::optional<std::string> preempt;     // "STEP:THREAD,…" or "none": an exploration's schedule
};

// --preempt's list, or nullopt when malformed (steps must increase).
std::optional<std::vector<Preemption>> parse_preemptions(std::string_view text);

// A byte count: digits with an optional K, M, G or T suffix (powers of 1024). nullopt when
// malformed or overflowing.
std::optional<uint64_t> parse_size(std::string_view text);

// The scenario's options, or the usage error's message.
std::expected<ScenarioOptions, std::string> make_options(const ScenarioInfo& scenario,
                                                         const RunFlags& flags);
// A scenario file's: its shape is the file's own, so only --seed and --inject apply.
std::expected<ScenarioOptions, std::string> make_file_options(const RunFlags& flags);

}  // namespace tdxsim::cli
