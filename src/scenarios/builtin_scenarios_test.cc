// Every built-in scenario passes: the acceptance runs of the TD issue (and later ones), each
// a test of its own so a failure names the scenario and prints its failed checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "scenarios/scenario.h"

namespace tdxsim {
namespace {

class BuiltinScenario : public ::testing::TestWithParam<std::string> {};

TEST_P(BuiltinScenario, EveryCheckHolds) {
  const ScenarioInfo* s = find_scenario(GetParam());
  ASSERT_NE(s, nullptr);
  Report report;
  ScenarioOptions options;
  // The default scenario's full 4 GiB is `make run`'s; the suite runs it at 512 MiB.
  if (s->overrides.memory) options.memory_bytes = uint64_t{512} << 20;
  s->run(options, report);
  for (const std::string& f : report.failures()) ADD_FAILURE() << f;
  EXPECT_GT(report.checks(), 0u);
}

std::vector<std::string> names() {
  std::vector<std::string> out;
  for (const ScenarioInfo& s : builtin_scenarios()) out.emplace_back(s.name);
  return out;
}

INSTANTIATE_TEST_SUITE_P(All, BuiltinScenario, ::testing::ValuesIn(names()),
                         [](const auto& p) { return p.param; });

// Every bug row: its scenario passes without the switch (above) and fails with it, on a
// check that names an invariant, not the bug.
class BugRowScenario : public ::testing::TestWithParam<BugId> {};

TEST_P(BugRowScenario, TheSwitchBreaksACheck) {
  const BugId id = GetParam();
  auto row = std::ranges::find(bug_rows(), id, &BugRow::id);
  ASSERT_NE(row, bug_rows().end());
  const ScenarioInfo* s = find_scenario(row->scenario);
  ASSERT_NE(s, nullptr) << row->scenario;
  ScenarioOptions options;
  options.inject = {id};
  Report report;
  s->run(options, report);
  EXPECT_FALSE(report.passed()) << to_string(id) << " went unnoticed by " << row->scenario;
  for (const std::string& f : report.failures()) {
    EXPECT_EQ(f.find(to_string(id)), std::string::npos) << "a check that names the bug: " << f;
  }
}

std::vector<BugId> bug_ids() {
  std::vector<BugId> out;
  for (const BugRow& r : bug_rows()) out.push_back(r.id);
  return out;
}

INSTANTIATE_TEST_SUITE_P(All, BugRowScenario, ::testing::ValuesIn(bug_ids()),
                         [](const auto& p) { return std::string(to_string(p.param)); });

TEST(BuiltinScenarios, VmxOnTdxHostWithS0FailsHyperVUsage) {
  ScenarioOptions options;
  options.inject = {BugId::S0};
  Report report;
  find_scenario("vmx_on_tdx_host")->run(options, report);
  const std::vector<std::string> f = report.failures();
  ASSERT_FALSE(f.empty());
  EXPECT_EQ(f.front().rfind("hyperv_only_on_hyperv", 0), 0u) << f.front();
}

// Each TDX row (and M9) is caught by the invariant that says what its bug breaks.
TEST(BuiltinScenarios, TdxRowsFailTheirInvariant) {
  const std::pair<BugId, std::string_view> rows[] = {
      {BugId::M9, "dirty_log_covers_writes"},
      {BugId::M3, "reads_match_reference_model"},
      {BugId::S2, "exit_handled_only_after_valid_status"},
      {BugId::T3, "mirror_matches_sept"},
      {BugId::T12, "sept_removal_protocol"},
      {BugId::T1, "progress"},
      {BugId::T7, "memslots_unaliased"},
      {BugId::T5, "frames_returned"},
  };
  for (const auto& [id, invariant] : rows) {
    const BugRow* row = &*std::ranges::find(bug_rows(), id, &BugRow::id);
    ScenarioOptions options;
    options.inject = {id};
    Report report;
    find_scenario(row->scenario)->run(options, report);
    const std::vector<std::string> f = report.failures();
    EXPECT_TRUE(
        std::ranges::any_of(f, [&](const std::string& s) { return s.starts_with(invariant); }))
        << to_string(id) << ": " << (f.empty() ? std::string("no failure") : f.front());
  }
}

TEST(BuiltinScenarios, NamesAreUniqueAndDescribed) {
  std::vector<std::string> seen;
  for (const ScenarioInfo& s : builtin_scenarios()) {
    EXPECT_FALSE(s.description.empty()) << s.name;
    EXPECT_EQ(std::count(seen.begin(), seen.end(), std::string(s.name)), 0) << s.name;
    seen.emplace_back(s.name);
    EXPECT_EQ(find_scenario(s.name), &s);
  }
  EXPECT_EQ(find_scenario("no_such_scenario"), nullptr);
}

}  // namespace
}  // namespace tdxsim
