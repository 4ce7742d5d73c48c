// Every built-in scenario passes: the acceptance runs of the TD issue (and later ones), each
// a test of its own so a failure names the scenario and prints its failed checks.
#include <gtest/gtest.h>

#include <string>

#include "scenarios/scenario.h"

namespace tdxsim {
namespace {

class BuiltinScenario : public ::testing::TestWithParam<std::string> {};

TEST_P(BuiltinScenario, EveryCheckHolds) {
  const ScenarioInfo* s = find_scenario(GetParam());
  ASSERT_NE(s, nullptr);
  Report report;
  s->run(ScenarioOptions{}, report);
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
