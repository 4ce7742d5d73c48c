// The command's flags against what each scenario takes: every refusal names its flag.
#include "cli/run_options.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/run_scenario.h"

namespace tdxsim::cli {
namespace {

const ScenarioInfo& scenario(std::string_view name) {
  const ScenarioInfo* s = find_scenario(name);
  EXPECT_NE(s, nullptr) << name;
  return *s;
}

TEST(ParseSize, SuffixesAndRefusals) {
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("4K"), 4096u);
  EXPECT_EQ(parse_size("512m"), uint64_t{512} << 20);
  EXPECT_EQ(parse_size("4G"), uint64_t{4} << 30);
  EXPECT_EQ(parse_size("1T"), uint64_t{1} << 40);
  for (const char* bad :
       {"", "G", "4X", "-1", "1.5G", "4 G", "99999999999999999999", "17179869184G"}) {
    EXPECT_EQ(parse_size(bad), std::nullopt) << bad;
  }
}

TEST(MakeOptions, TheDefaultScenarioTakesItsOverrides) {
  RunFlags f;
  f.seed = 7;
  f.vcpus = 2;
  f.memory = "256M";
  f.vm_type = "tdx";
  f.inject = {"s0"};
  auto o = make_options(scenario("default"), f);
  ASSERT_TRUE(o.has_value()) << o.error();
  EXPECT_EQ(o->seed, 7u);
  EXPECT_EQ(o->vcpus, 2u);
  EXPECT_EQ(o->memory_bytes, uint64_t{256} << 20);
  ASSERT_EQ(o->inject.size(), 1u);
  EXPECT_EQ(o->inject[0], BugId::S0);
}

TEST(MakeOptions, NoChecksTurnsTheInvariantsOffButNotWithABugSwitch) {
  EXPECT_TRUE(make_options(scenario("default"), RunFlags{})->checks);
  RunFlags off;
  off.no_checks = true;
  auto o = make_options(scenario("default"), off);
  ASSERT_TRUE(o.has_value()) << o.error();
  EXPECT_FALSE(o->checks);
  // Nothing would catch the bug: a usage error rather than a run that proves nothing.
  off.inject = {"S0"};
  o = make_options(scenario("vmx_on_tdx_host"), off);
  ASSERT_FALSE(o.has_value());
  EXPECT_EQ(o.error().rfind("--inject with --no-checks", 0), 0u) << o.error();
}

TEST(MakeOptions, WhatAScenarioCannotTakeIsAUsageError) {
  const auto refused = [](std::string_view name, RunFlags f, std::string_view flag) {
    auto o = make_options(scenario(name), f);
    ASSERT_FALSE(o.has_value()) << name;
    EXPECT_EQ(o.error().rfind(flag, 0), 0u) << o.error();
  };
  RunFlags plain_vm;
  plain_vm.vm_type = "default";
  refused("default", plain_vm, "--vm-type default");  // a TD-only scenario
  RunFlags vcpus;
  vcpus.vcpus = 2;
  refused("memslot_move", vcpus, "--vcpus");
  RunFlags zero;
  zero.vcpus = 0;
  refused("default", zero, "--vcpus 0");
  RunFlags memory;
  memory.memory = "1G";
  refused("td_lifecycle", memory, "--memory");
  RunFlags bad_size;
  bad_size.memory = "lots";
  refused("default", bad_size, "--memory lots");
  RunFlags tiny;
  tiny.memory = "2M";
  refused("default", tiny, "--memory 2M");
  RunFlags huge;
  huge.memory = "1T";
  refused("default", huge, "--memory 1T");
  RunFlags odd;
  odd.memory = "5M";
  refused("default", odd, "--memory 5M");
  RunFlags unknown_type;
  unknown_type.vm_type = "sev";
  refused("default", unknown_type, "--vm-type sev");
  RunFlags several;
  several.vm_type = "tdx";
  refused("private_mem_conversions", several, "--vm-type");
  RunFlags bug;
  bug.inject = {"Z9"};
  refused("default", bug, "--inject Z9");
  // Every catalogue row is a switch now; the check that an ID names a row stays for the next
  // rows the catalogue gets.
  for (const BugRow& row : bug_rows()) {
    RunFlags each;
    each.inject = {std::string(to_string(row.id))};
    EXPECT_TRUE(make_options(scenario(row.scenario), each).has_value()) << to_string(row.id);
  }
  // Every switch is a row or a planted bug, and --inject takes the planted ones too.
  EXPECT_EQ(bug_rows().size() + planted_bugs().size(), all_bug_ids().size());
  RunFlags planted;
  planted.inject = {"P1"};
  EXPECT_TRUE(make_options(scenario("td_stress"), planted).has_value());
}

}  // namespace
}  // namespace tdxsim::cli

namespace tdxsim::cli {
namespace {

nlohmann::json run_json(std::string_view name) {
  std::FILE* f = std::tmpfile();
  EXPECT_NE(f, nullptr);
  EXPECT_EQ(run_scenario(*find_scenario(name), ScenarioOptions{}, f, /*json=*/true), 0);
  std::rewind(f);
  std::string text;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
  std::fclose(f);
  return nlohmann::json::parse(text);  // throws (fails the test) unless it is one document
}

TEST(JsonOutput, OneDocumentWithHostAndScheduleApart) {
  const nlohmann::json a = run_json("hyperv_vmx_root_tracking");
  for (const char* key :
       {"scenario", "seed", "options", "verdict", "failures", "figures", "schedule", "host"}) {
    EXPECT_TRUE(a.contains(key)) << key;
  }
  EXPECT_EQ(a["verdict"], "pass");
  EXPECT_TRUE(a["host"].contains("wall_seconds"));
  EXPECT_TRUE(a["host"].contains("max_rss_bytes"));
  // Outside "host" and "schedule", a run is a function of the scenario and its seed.
  nlohmann::json b = run_json("hyperv_vmx_root_tracking");
  nlohmann::json a2 = a;
  for (const char* key : {"host", "schedule"}) {
    a2.erase(key);
    b.erase(key);
  }
  EXPECT_EQ(a2, b);
}

}  // namespace
}  // namespace tdxsim::cli
