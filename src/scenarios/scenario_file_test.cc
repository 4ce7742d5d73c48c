// Scenario files: every example in scenarios/ loads and passes; malformed files give an error
// at the right place; random damage to the examples never crashes the reader.
#include "scenarios/scenario_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "scenarios/scenario_runner.h"

namespace tdxsim {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".toml") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class ScenarioFileExample : public testing::TestWithParam<std::string> {};

TEST_P(ScenarioFileExample, LoadsAndPasses) {
  auto spec = load_scenario_file(GetParam());
  ASSERT_TRUE(spec.has_value()) << spec.error().to_string();
  Report report;
  run_scenario_spec(*spec, ScenarioOptions{}, report);
  std::string failures;
  for (const std::string& f : report.failures()) failures += f + "\n";
  EXPECT_TRUE(report.passed()) << failures;
  EXPECT_GT(report.checks(), 0u);
}

std::string file_name(const testing::TestParamInfo<std::string>& info) {
  std::string n = fs::path(info.param).stem().string();
  for (char& c : n) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return n;
}

INSTANTIATE_TEST_SUITE_P(Examples, ScenarioFileExample,
                         testing::ValuesIn(files_in(TDXSIM_SCENARIO_DIR)), file_name);

// Each malformed file starts "# expect: LINE:COLUMN: SUBSTRING".
class ScenarioFileMalformed : public testing::TestWithParam<std::string> {};

TEST_P(ScenarioFileMalformed, ErrorAtThePlace) {
  const std::string text = read_all(GetParam());
  const std::string tag = "# expect: ";
  ASSERT_EQ(text.rfind(tag, 0), 0u) << "no expect line";
  const std::string line = text.substr(tag.size(), text.find('\n') - tag.size());
  unsigned want_line = 0, want_col = 0;
  int used = 0;
  ASSERT_EQ(std::sscanf(line.c_str(), "%u:%u: %n", &want_line, &want_col, &used), 2) << line;
  const std::string want_msg = line.substr(static_cast<size_t>(used));
  auto spec = load_scenario_file(GetParam());
  ASSERT_FALSE(spec.has_value()) << "the file was accepted";
  const ScenarioFileError& e = spec.error();
  EXPECT_EQ(e.line, want_line) << e.to_string();
  EXPECT_EQ(e.column, want_col) << e.to_string();
  EXPECT_NE(e.message.find(want_msg), std::string::npos) << e.to_string();
  EXPECT_EQ(e.to_string().rfind(GetParam() + ":", 0), 0u);
}

INSTANTIATE_TEST_SUITE_P(Files, ScenarioFileMalformed,
                         testing::ValuesIn(files_in(TDXSIM_TESTDATA "/malformed")), file_name);

TEST(ScenarioFile, MissingFileIsAnError) {
  auto spec = load_scenario_file("/nonexistent/scenario.toml");
  ASSERT_FALSE(spec.has_value());
  EXPECT_NE(spec.error().to_string().find("cannot open"), std::string::npos);
}

TEST(ScenarioFile, SizesAcceptSuffixes) {
  auto spec = parse_scenario(
      "[[memslot]]\nslot = 1\ngpa = 0x100000\nsize = \"64K\"\n"
      "[[memslot]]\nslot = 2\ngpa = 0x40000000\nsize = 8192\n",
      "t.toml");
  ASSERT_TRUE(spec.has_value()) << spec.error().to_string();
  EXPECT_EQ(spec->memslots[0].range.size, 64u << 10);
  EXPECT_EQ(spec->memslots[1].range.size, 8192u);
}

// Random truncations and byte changes of the examples: a spec or an error at line >= 1,
// never a crash or a hang.
TEST(ScenarioFileFuzz, MutationsNeverCrash) {
  std::mt19937_64 rng(1);
  const std::string noise = "=[]{}\"'#,.\n 0x1Gz-_\\";
  for (const std::string& path : files_in(TDXSIM_SCENARIO_DIR)) {
    const std::string text = read_all(path);
    for (int i = 0; i < 300; ++i) {
      std::string t = text;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < edits && !t.empty(); ++k) {
        const size_t at = rng() % t.size();
        switch (rng() % 4) {
          case 0:
            t.resize(at);
            break;
          case 1:
            t[at] = noise[rng() % noise.size()];
            break;
          case 2:
            t.erase(at, 1 + rng() % 8);
            break;
          default:
            t.insert(at, 1, noise[rng() % noise.size()]);
            break;
        }
      }
      auto spec = parse_scenario(t, "mutated.toml");
      if (!spec) {
        EXPECT_GE(spec.error().line, 1u) << spec.error().to_string();
      }
    }
  }
}

}  // namespace
}  // namespace tdxsim

namespace tdxsim {
namespace {

// The checks can fail: a verify of the wrong round is a guest assert with its GPA and vCPU,
// and a count that did not happen is reported.
TEST(ScenarioFileRun, WrongVerifyAndCountFail) {
  auto spec = parse_scenario(
      "[vm]\ntype = \"tdx\"\n"
      "[[memslot]]\nslot = 0\ngpa = 0x80000000\nsize = \"64K\"\nguest_memfd = true\nprivate = "
      "true\n"
      "[guest]\nphases = [ { op = \"fill\", slot = 0, round = 1 }, { op = \"verify\", slot = 0, "
      "round = 2 } ]\n"
      "[[expect]]\ncount = \"exits.map_gpa\"\nat_least = 1\n",
      "wrong.toml");
  ASSERT_TRUE(spec.has_value()) << spec.error().to_string();
  Report report;
  run_scenario_spec(*spec, ScenarioOptions{}, report);
  EXPECT_FALSE(report.passed());
  std::string all;
  for (const std::string& f : report.failures()) all += f + "\n";
  EXPECT_NE(all.find("guest_assert"), std::string::npos) << all;
  EXPECT_NE(all.find("vCPU 0"), std::string::npos) << all;
  EXPECT_NE(all.find("exits.map_gpa is 0"), std::string::npos) << all;
}

// A memory-fault exit a file expects: the guest reads a private page after the host deleted
// its memslot (private_mem_kvm_exits_test).
TEST(ScenarioFileRun, ExpectedMemoryFault) {
  auto spec = parse_scenario(
      "[vm]\ntype = \"sw_protected\"\n"
      "[[memslot]]\nslot = 0\ngpa = 0xC0000000\nsize = \"4K\"\nguest_memfd = true\nprivate = true\n"
      "[guest]\nphases = [ { op = \"fill\", slot = 0, round = 1 }, { op = \"sync\", stage = 1 },"
      " { op = \"verify\", slot = 0, round = 1 } ]\n"
      "[[host]]\nat = 1\naction = \"delete_memslot\"\nslot = 0\n"
      "[[expect]]\nvcpu = 0\nmemory_fault = { gpa = 0xC0000000, size = \"4K\", private = true }\n",
      "fault.toml");
  ASSERT_TRUE(spec.has_value()) << spec.error().to_string();
  Report report;
  run_scenario_spec(*spec, ScenarioOptions{}, report);
  std::string all;
  for (const std::string& f : report.failures()) all += f + "\n";
  EXPECT_TRUE(report.passed()) << all;
}

}  // namespace
}  // namespace tdxsim
