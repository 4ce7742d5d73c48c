// tdxsim: the command.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "cli/platform_tour.h"
#include "cli/run_scenario.h"
#include "scenarios/scenario.h"

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

  std::string name = "td_lifecycle";
  auto* run = app.add_subcommand("run", "run a built-in scenario (default: " + name + ")");
  run->add_option("scenario", name, "the scenario's name (see `tdxsim scenarios`)");
  auto* scenarios = app.add_subcommand("scenarios", "list the built-in scenarios, one per line");

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
  if (const tdxsim::ScenarioInfo* s = tdxsim::find_scenario(name)) {
    return tdxsim::cli::run_scenario(*s, tdxsim::ScenarioOptions{}, stdout);
  }
  for (const Builtin& b : kBuiltins) {
    if (name == b.name) return b.run(stdout) == 0 ? 0 : 1;
  }
  fmt::print(stderr, "tdxsim: unknown scenario '{}' (try `tdxsim scenarios`)\n", name);
  return 2;
}
