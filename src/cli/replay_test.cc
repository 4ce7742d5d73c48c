// The replay issue's acceptance, in-process: deterministic runs repeat, seeds differ, and the
// planted race P1 is found by stress's deterministic runs, reproduced from a workload, replayed
// 10 times out of 10 with the same checks and digest, and found by the bounded exploration.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <string>

#include "cli/explore.h"
#include "cli/quiet_run.h"
#include "cli/run_scenario.h"
#include "cli/stress.h"
#include "scenarios/scenario.h"

namespace tdxsim::cli {
namespace {

const ScenarioInfo& scenario(std::string_view name) {
  const ScenarioInfo* s = find_scenario(name);
  EXPECT_NE(s, nullptr) << name;
  return *s;
}

// What a command wrote to `f`.
std::string contents(std::FILE* f) {
  std::rewind(f);
  std::string s;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
  return s;
}

ScenarioOptions small_default(uint64_t schedule_seed) {
  ScenarioOptions o;
  o.seed = 1;
  o.vcpus = 4;
  o.memory_bytes = uint64_t{64} << 20;
  o.schedule_seed = schedule_seed;
  return o;
}

TEST(ReplayTest, TheDefaultScenarioRepeatsUnderOneSeedAndDiffersUnderAnother) {
  const ScenarioInfo& def = scenario("default");
  const RunOutcome a = run_quietly(def, small_default(7));
  const RunOutcome b = run_quietly(def, small_default(7));
  ASSERT_FALSE(a.failed()) << a.first_failure;
  EXPECT_EQ(a.schedule->digest, b.schedule->digest);
  EXPECT_EQ(a.schedule->steps, b.schedule->steps);
  EXPECT_EQ(a.schedule->switches, b.schedule->switches);
  std::set<uint64_t> digests{a.schedule->digest};
  for (uint64_t s = 8; s < 11; ++s)
    digests.insert(run_quietly(def, small_default(s)).schedule->digest);
  EXPECT_EQ(digests.size(), 4u);
}

// A failing deterministic run of P1, found by stress: returns its replay options.
ScenarioOptions p1_found_by_stress() {
  StressConfig c;
  c.scenario = &scenario("td_stress");
  c.base.inject = {BugId::P1};
  c.seeds = 50;
  c.vcpus = {4};
  c.free_running = false;
  std::FILE* out = std::tmpfile();
  EXPECT_EQ(run_stress(c, out), 1);
  const std::string text = contents(out);
  std::fclose(out);
  const size_t at = text.find("workload seed ");
  EXPECT_NE(at, std::string::npos) << text;
  EXPECT_NE(text.find("replay: tdxsim run td_stress --seed "), std::string::npos) << text;
  ScenarioOptions o = c.base;
  o.seed = std::stoull(text.substr(at + 14));
  o.vcpus = 4;
  o.schedule_seed = o.seed;
  return o;
}

TEST(ReplayTest, StressFindsThePlantedRaceAndItsReplayRepeatsTenTimesOutOfTen) {
  const ScenarioOptions replay = p1_found_by_stress();
  const RunOutcome first = run_quietly(scenario("td_stress"), replay);
  ASSERT_TRUE(first.failed());
  EXPECT_TRUE(std::ranges::find(first.failed_checks, "no_vm_bug") != first.failed_checks.end())
      << join_checks(first.failed_checks);
  for (int i = 0; i < 10; ++i) {
    const RunOutcome again = run_quietly(scenario("td_stress"), replay);
    EXPECT_EQ(again.failed_checks, first.failed_checks);
    EXPECT_EQ(again.first_failure, first.first_failure);
    EXPECT_EQ(again.schedule->digest, first.schedule->digest);
  }
  // Without the planted race the same schedule seed passes.
  ScenarioOptions clean = replay;
  clean.inject.clear();
  EXPECT_FALSE(run_quietly(scenario("td_stress"), clean).failed());
}

TEST(ReplayTest, AWorkloadThatFailedIsReproducedUnderADeterministicSchedule) {
  // What stress does after a free-running failure: only the workload and the checks are known.
  ScenarioOptions workload;
  workload.seed = 38;
  workload.vcpus = 8;
  workload.memory_bytes = uint64_t{32} << 20;
  workload.inject = {BugId::P1};
  const std::optional<Reproduction> det = reproduce_deterministically(
      scenario("td_stress"), workload, {"no_vm_bug", "vcpu_exit"}, 1000);
  ASSERT_TRUE(det.has_value());
  EXPECT_EQ(det->outcome.failed_checks, (std::vector<std::string>{"no_vm_bug", "vcpu_exit"}));
  const RunOutcome again = run_quietly(scenario("td_stress"), det->options);
  EXPECT_EQ(again.failed_checks, det->outcome.failed_checks);
  EXPECT_EQ(again.schedule->digest, det->outcome.schedule->digest);
}

TEST(ReplayTest, BoundedExplorationFindsThePlantedRace) {
  ExploreConfig c;
  c.scenario = &scenario("td_race_small");
  c.base.inject = {BugId::P1};
  c.preemptions = 2;
  c.max_runs = 5000;
  std::FILE* out = std::tmpfile();
  EXPECT_EQ(run_explore(c, out), 1);
  const std::string text = contents(out);
  std::fclose(out);
  EXPECT_NE(text.find("replay: tdxsim run td_race_small --seed 1 --inject P1 --deterministic "
                      "--schedule-seed 1 --preempt "),
            std::string::npos)
      << text;
}

TEST(ReplayTest, BoundedExplorationOfTheCleanScenarioFindsNothing) {
  ExploreConfig c;
  c.scenario = &scenario("td_race_small");
  c.preemptions = 1;
  c.max_runs = 200;
  std::FILE* out = std::tmpfile();
  EXPECT_EQ(run_explore(c, out), 3);  // stopped by max_runs, no failure
  std::fclose(out);
}

}  // namespace
}  // namespace tdxsim::cli
