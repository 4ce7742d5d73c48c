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

#include "cli/explore.h"
#include "cli/platform_tour.h"
#include "cli/run_options.h"
#include "cli/run_scenario.h"
#include "cli/stress.h"
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
  run->add_option("--preempt", flags.preempt,
                  "with --deterministic: an exploration's schedule instead of a seeded one — "
                  "the token goes to THREAD at global STEP, and otherwise each thread runs until "
                  "it waits (what `tdxsim explore` prints)")
      ->type_name("STEP:THREAD,…");
  std::optional<std::string> trace_path;
  run->add_option("--trace", trace_path,
                  "write the run's timeline to FILE as Chrome/Perfetto trace-event JSON (open it "
                  "in ui.perfetto.dev or chrome://tracing): vCPU entries, faults, SEAMCALLs, "
                  "zaps, remote flushes; at most 400,000 events, each kind's most recent, with the "
                  "count dropped")
      ->type_name("FILE");
  // tdxsim stress / explore: the replay issue's search for races.
  std::string stress_name = "td_stress";
  tdxsim::cli::StressConfig stress_cfg;
  std::vector<unsigned> stress_vcpus;
  std::string stress_mode = "both";
  tdxsim::cli::RunFlags stress_flags;
  auto* stress = app.add_subcommand(
      "stress",
      "run a scenario over many workload seeds and vCPU counts, free-running and "
      "deterministic; a failure is reproduced under a deterministic schedule and its "
      "replay command printed (docs/replay.md)");
  stress->add_option("scenario", stress_name, "a built-in scenario (default: td_stress)");
  stress->add_option("--seeds", stress_cfg.seeds, "workload seeds to run (default 100)")
      ->type_name("N")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32));
  stress->add_option("--first-seed", stress_cfg.first_seed, "the first workload seed (default 1)")
      ->type_name("N");
  stress->add_option("--vcpus", stress_vcpus, "vCPU counts, comma-separated (default 1,2,4,8)")
      ->delimiter(',')
      ->type_name("N,…");
  stress->add_option("--mode", stress_mode, "free, deterministic or both (default)")
      ->check(CLI::IsMember({"free", "deterministic", "both"}));
  stress->add_option("--memory", stress_flags.memory, "guest memory, for scenarios that take it")
      ->type_name("SIZE");
  stress->add_option("--inject", stress_flags.inject, "a bug switch or planted bug; repeatable")
      ->type_name("ID");
  stress
      ->add_option("--reproduce-tries", stress_cfg.reproduce_tries,
                   "deterministic schedules tried to reproduce a free-running failure "
                   "(default 1000)")
      ->type_name("N")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32));

  std::string explore_name = "td_race_small";
  tdxsim::cli::ExploreConfig explore_cfg;
  tdxsim::cli::RunFlags explore_flags;
  auto* explore = app.add_subcommand(
      "explore",
      "enumerate a small scenario's schedules with at most N preemptions instead of "
      "sampling them; the first failure prints its replay command (docs/replay.md)");
  explore->add_option("scenario", explore_name, "a built-in scenario (default: td_race_small)");
  explore->add_option("--seed", explore_flags.seed, "the workload seed")->type_name("N");
  explore->add_option("--inject", explore_flags.inject, "a bug switch or planted bug; repeatable")
      ->type_name("ID");
  explore->add_option("--preemptions", explore_cfg.preemptions, "the preemption bound (default 2)")
      ->type_name("N")
      ->check(CLI::Range(1u, 4u));
  explore
      ->add_option("--max-runs", explore_cfg.max_runs,
                   "stop after this many schedules (default 20,000)")
      ->type_name("N")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40));

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
  // The scenario `name` and its options for subcommand `cmd`; nullopt after a usage error.
  auto scenario_with_options = [](const char* cmd, const std::string& wanted,
                                  const tdxsim::cli::RunFlags& f)
      -> std::optional<std::pair<const tdxsim::ScenarioInfo*, tdxsim::ScenarioOptions>> {
    const tdxsim::ScenarioInfo* s = tdxsim::find_scenario(wanted);
    if (s == nullptr) {
      fmt::print(stderr, "tdxsim {}: unknown scenario '{}' (try `tdxsim scenarios`)\n", cmd,
                 wanted);
      return std::nullopt;
    }
    auto options = tdxsim::cli::make_options(*s, f);
    if (!options) {
      fmt::print(stderr, "tdxsim {}: {}\n", cmd, options.error());
      return std::nullopt;
    }
    return std::pair{s, *options};
  };
  if (stress->parsed()) {
    const auto chosen = scenario_with_options("stress", stress_name, stress_flags);
    if (!chosen) return 2;
    const auto& [s, options] = *chosen;
    if (!stress_vcpus.empty()) {
      if (!s->overrides.vcpus) {
        fmt::print(stderr, "tdxsim stress: --vcpus: scenario '{}' has a fixed vCPU count\n",
                   stress_name);
        return 2;
      }
      for (unsigned v : stress_vcpus) {
        if (v < 1 || v > 64) {
          fmt::print(stderr, "tdxsim stress: --vcpus {}: expected 1 to 64\n", v);
          return 2;
        }
      }
      stress_cfg.vcpus = stress_vcpus;
    }
    stress_cfg.scenario = s;
    stress_cfg.base = options;
    stress_cfg.free_running = stress_mode != "deterministic";
    stress_cfg.deterministic = stress_mode != "free";
    return tdxsim::cli::run_stress(stress_cfg, stdout);
  }
  if (explore->parsed()) {
    const auto chosen = scenario_with_options("explore", explore_name, explore_flags);
    if (!chosen) return 2;
    const auto& [s, options] = *chosen;
    explore_cfg.scenario = s;
    explore_cfg.base = options;
    return tdxsim::cli::run_explore(explore_cfg, stdout);
  }
  if (bugs->parsed()) {
    for (const tdxsim::BugRow& b : tdxsim::bug_rows()) {
      fmt::print("{}\t{}\t{}\n", tdxsim::to_string(b.id), b.scenario, b.description);
    }
    for (const tdxsim::BugRow& b : tdxsim::planted_bugs()) {
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
      flags.no_checks || flags.deterministic || flags.schedule_seed || flags.preempt ||
      trace_path) {
    fmt::print(stderr, "tdxsim run: '{}' takes no options\n", name);
    return 2;
  }
  for (const Builtin& b : kBuiltins) {
    if (name == b.name) return b.run(stdout) == 0 ? 0 : 1;
  }
  fmt::print(stderr, "tdxsim: unknown scenario '{}' (try `tdxsim scenarios`)\n", name);
  return 2;
}
