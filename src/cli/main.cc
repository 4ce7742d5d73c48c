// tdxsim: the command.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "cli/platform_tour.h"
#include "cli/run_options.h"
#include "cli/run_scenario.h"
#include "cli/tty_progress.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_file.h"
#include "scenarios/tracer.h"

namespace {

struct Builtin {
  const char* name;
  const char* description;
  int (*run)(std::FILE*);
};

constexpr Builtin kBuiltins[] = {
    {"platform_tour",
     "the simulated silicon: EPT walk, TLB hit, a stale entry served until INVEPT, an EPT "
     "violation, a #VE, SEAMCALL without a module",
     tdxsim::cli::run_platform_tour},
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tdxsim: an executable model of KVM's TDX memory virtualisation"};
  app.require_subcommand(1);

  std::string name = "default";
  tdxsim::cli::RunFlags flags;
  auto* run = app.add_subcommand("run", "run a built-in scenario (default: " + name + ")");
  run->add_option("scenario", name,
                  "a built-in scenario's name (see `tdxsim scenarios`) or a scenario file, "
                  "FILE.toml (see docs/scenarios.md)");
  run->add_option("--seed", flags.seed, "the run's seed")->type_name("N");
  run->add_option("--vcpus", flags.vcpus, "vCPUs, for scenarios that take it")->type_name("N");
  run->add_option("--memory", flags.memory,
                  "guest memory (4G, 512M, …), for scenarios that take it")
      ->type_name("SIZE");
  run->add_option("--vm-type", flags.vm_type,
                  "default, sw_protected or tdx, if the scenario runs it")
      ->type_name("TYPE");
  bool json = false;
  run->add_flag("--json", json,
                "print one JSON document and nothing else (host-dependent figures under "
                "\"host\", schedule-dependent ones under \"schedule\")");
  run->add_option("--inject", flags.inject,
                  "turn on a bug-catalogue switch for the run (see `tdxsim bugs`); repeatable")
      ->type_name("ID");
  run->add_flag("--no-checks", flags.no_checks,
                "run without the invariants of docs/invariants.md (the scenario's own read-back "
                "checks stay), to measure what the checker costs");
  run->add_flag("--deterministic", flags.deterministic,
                "interleave the run's threads with the seeded scheduler (one runs at a time), so "
                "that the run, its JSON and its schedule.digest repeat exactly");
  run->add_option("--schedule-seed", flags.schedule_seed,
                  "the deterministic schedule's seed (default: --seed)")
      ->type_name("N");
  std::optional<std::string> trace_path;
  run->add_option("--trace", trace_path,
                  "write the run's timeline to FILE as Chrome/Perfetto trace-event JSON (open it "
                  "in ui.perfetto.dev or chrome://tracing): vCPU entries, faults, SEAMCALLs, "
                  "zaps, remote flushes; at most 400,000 events, each kind's most recent, with the "
                  "count dropped")
      ->type_name("FILE");
  auto* scenarios = app.add_subcommand("scenarios", "list the built-in scenarios, one per line");
  auto* bugs = app.add_subcommand(
      "bugs", "list the bug-catalogue rows that exist as switches: ID, scenario, description");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 exits 0 for --help and 106/109… for errors; tdxsim's usage errors are 2.
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  if (scenarios->parsed()) {
    for (const tdxsim::ScenarioInfo& s : tdxsim::builtin_scenarios()) {
      fmt::print("{}\t{}\n", s.name, s.description);
    }
    for (const Builtin& b : kBuiltins) fmt::print("{}\t{}\n", b.name, b.description);
    return 0;
  }
  if (bugs->parsed()) {
    for (const tdxsim::BugRow& b : tdxsim::bug_rows()) {
      fmt::print("{}\t{}\t{}\n", tdxsim::to_string(b.id), b.scenario, b.description);
    }
    for (const tdxsim::BugRow& b : tdxsim::planted_races()) {
      fmt::print("{}\t{}\t{}\n", tdxsim::to_string(b.id), b.scenario, b.description);
    }
    return 0;
  }
  // Runs `body` with the options, traced into trace_path when asked, with progress on stderr
  // when a person watches it.
  auto traced = [&](tdxsim::ScenarioOptions options, auto&& body) -> int {
    std::optional<tdxsim::cli::TtyProgress> progress;
    if (isatty(STDERR_FILENO) == 1) options.progress = &progress.emplace(stderr);
    if (!trace_path) return body(options);
    // Checked before the run: a long run whose timeline cannot be kept is wasted.
    std::FILE* f = std::fopen(trace_path->c_str(), "w");
    if (f == nullptr) {
      fmt::print(stderr, "tdxsim run: cannot write {}: {}\n", *trace_path, std::strerror(errno));
      return 2;
    }
    std::fclose(f);
    tdxsim::Tracer tracer;
    options.tracer = &tracer;
    const int rc = body(options);
    if (auto written = tracer.write(*trace_path); !written) {
      fmt::print(stderr, "tdxsim run: {}\n", written.error());
      return 2;
    }
    // stdout stays one JSON document with --json.
    if (!json) fmt::print("trace: {} ({} events dropped)\n", *trace_path, tracer.dropped());
    return rc;
  };
  if (const tdxsim::ScenarioInfo* s = tdxsim::find_scenario(name)) {
    auto options = tdxsim::cli::make_options(*s, flags);
    if (!options) {
      fmt::print(stderr, "tdxsim run: {}\n", options.error());
      return 2;
    }
    return traced(*options, [&](const tdxsim::ScenarioOptions& o) {
      return tdxsim::cli::run_scenario(*s, o, stdout, json);
    });
  }
  if (name.ends_with(".toml")) {
    auto spec = tdxsim::load_scenario_file(name);
    if (!spec) {
      fmt::print(stderr, "{}\n", spec.error().to_string());
      return 2;
    }
    auto options = tdxsim::cli::make_file_options(flags);
    if (!options) {
      fmt::print(stderr, "tdxsim run: {}\n", options.error());
      return 2;
    }
    return traced(*options, [&](const tdxsim::ScenarioOptions& o) {
      return tdxsim::cli::run_scenario_file(name, *spec, o, stdout, json);
    });
  }
  if (!flags.inject.empty() || flags.vcpus || flags.memory || flags.vm_type || flags.seed ||
      flags.no_checks || flags.deterministic || flags.schedule_seed || trace_path) {
    fmt::print(stderr, "tdxsim run: '{}' takes no options\n", name);
    return 2;
  }
  for (const Builtin& b : kBuiltins) {
    if (name == b.name) return b.run(stdout) == 0 ? 0 : 1;
  }
  fmt::print(stderr, "tdxsim: unknown scenario '{}' (try `tdxsim scenarios`)\n", name);
  return 2;
}
