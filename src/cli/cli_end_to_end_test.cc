// The command as a new user meets it: the built binary run through a shell, its exit status,
// stdout and stderr — what the library-level tests of the scenarios cannot show (argument
// parsing, the one-JSON-document rule, the trace file actually written).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace {

namespace fs = std::filesystem;

struct Outcome {
  int status = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("tdxsim_cli_{}_{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  Outcome tdxsim(const std::string& args) {
    const fs::path err = dir_ / "stderr";
    const std::string cmd = fmt::format("'{}' {} 2>'{}'", TDXSIM_BINARY, args, err.string());
    std::FILE* p = ::popen(cmd.c_str(), "r");
    Outcome o;
    if (p == nullptr) return o;
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) o.out.append(buf, n);
    const int w = ::pclose(p);
    o.status = WIFEXITED(w) ? WEXITSTATUS(w) : -1;
    o.err = slurp(err);
    return o;
  }

  fs::path dir_;
};

TEST_F(Cli, ScenariosListsNameThenDescription) {
  const Outcome o = tdxsim("scenarios");
  ASSERT_EQ(o.status, 0) << o.err;
  std::istringstream lines(o.out);
  int n = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    const size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    EXPECT_GT(tab, 0u) << line;
    EXPECT_GT(line.size(), tab + 10) << "no description: " << line;
  }
  EXPECT_GE(n, 10);
  EXPECT_EQ(o.out.find("default\t"), 0u) << "the default scenario comes first";
}

TEST_F(Cli, EveryExampleScenarioFileRunsGreen) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(fs::path(TDXSIM_SOURCE_DIR) / "scenarios")) {
    if (e.path().extension() != ".toml") continue;
    const Outcome o = tdxsim(fmt::format("run '{}'", e.path().string()));
    EXPECT_EQ(o.status, 0) << e.path() << "\n" << o.out << o.err;
    EXPECT_NE(o.out.find("\nPASS\n"), std::string::npos) << o.out;
    ++n;
  }
  EXPECT_GE(n, 6);
}

// Each malformed file names what it must produce in its first line: "# expect: L:C: text".
TEST_F(Cli, EveryMalformedScenarioFileIsAUsageErrorWithItsPosition) {
  int n = 0;
  const fs::path dir = fs::path(TDXSIM_SOURCE_DIR) / "src/scenarios/testdata/malformed";
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string text = slurp(e.path());
    const std::string tag = "# expect: ";
    if (!text.starts_with(tag)) continue;
    const std::string expect = text.substr(tag.size(), text.find('\n') - tag.size());
    const Outcome o = tdxsim(fmt::format("run '{}'", e.path().string()));
    EXPECT_EQ(o.status, 2) << e.path() << "\n" << o.out << o.err;
    EXPECT_TRUE(o.out.empty()) << e.path() << ": " << o.out;
    const std::string where = expect.substr(0, expect.find(' '));  // "L:C:"
    EXPECT_NE(o.err.find(e.path().string() + ":" + where), std::string::npos)
        << e.path() << " should be reported at " << where << ": " << o.err;
    EXPECT_NE(o.err.find(expect.substr(where.size() + 1)), std::string::npos)
        << e.path() << ": " << o.err;
    ++n;
  }
  EXPECT_GE(n, 20);
}

TEST_F(Cli, UsageErrorsExitTwo) {
  for (const char* args :
       {"run no_such_scenario", "run default --vm-type default", "run default --inject NOPE",
        "run default --memory 12Q", "run td_lifecycle --vcpus 3", "run platform_tour --seed 2",
        "run no_such_file.toml", "frobnicate", "", "run default --schedule-seed 3",
        "run default --deterministic --preempt 5", "run default --deterministic --preempt 9:1,2:1",
        "stress --vcpus 0", "stress no_such_scenario", "stress td_race_small --vcpus 2",
        "explore --preemptions 9", "stress --mode sideways"}) {
    const Outcome o = tdxsim(args);
    EXPECT_EQ(o.status, 2) << "tdxsim " << args << "\n" << o.out << o.err;
    EXPECT_FALSE(o.err.empty()) << "tdxsim " << args << " says nothing on stderr";
  }
}

TEST_F(Cli, HelpEverywhere) {
  for (const char* args : {"--help", "run --help", "scenarios --help", "bugs --help"}) {
    const Outcome o = tdxsim(args);
    EXPECT_EQ(o.status, 0) << args << o.err;
    EXPECT_NE(o.out.find("Usage"), std::string::npos) << args << o.out;
  }
}

TEST_F(Cli, AnInjectedBugFailsWithTheCheckNamed) {
  const Outcome o = tdxsim("run vmx_on_tdx_host --inject S0");
  EXPECT_EQ(o.status, 1) << o.out << o.err;
  EXPECT_NE(o.out.find("FAILED hyperv_only_on_hyperv"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("\nFAIL\n"), std::string::npos) << o.out;
}

// --no-checks runs the scenario without the invariants: its read-back checks still pass, and
// none of the checkers' figures appear.
TEST_F(Cli, NoChecksRunsWithoutTheInvariants) {
  const Outcome on = tdxsim("run tdx_upm_implicit --json");
  const Outcome off = tdxsim("run tdx_upm_implicit --json --no-checks");
  ASSERT_EQ(on.status, 0) << on.out << on.err;
  ASSERT_EQ(off.status, 0) << off.out << off.err;
  const nlohmann::json checked = nlohmann::json::parse(on.out);
  const nlohmann::json unchecked = nlohmann::json::parse(off.out);
  EXPECT_EQ(checked["options"]["checks"], true);
  EXPECT_EQ(unchecked["options"]["checks"], false);
  EXPECT_EQ(unchecked["verdict"], "pass");
  EXPECT_TRUE(checked["schedule"].contains("reference_model.loads_checked"));
  EXPECT_FALSE(unchecked["schedule"].contains("reference_model.loads_checked"));
  EXPECT_LT(unchecked["schedule"]["checks"].get<uint64_t>(),
            checked["schedule"]["checks"].get<uint64_t>());
  const Outcome text = tdxsim("run vmx_on_tdx_host --no-checks");
  EXPECT_EQ(text.status, 0) << text.out << text.err;
  EXPECT_NE(text.out.find("invariants off: --no-checks"), std::string::npos) << text.out;
}

// A deterministic run's JSON is the same outside "host" every time, with the schedule's
// digest; another schedule seed gives another digest; a failure prints its replay.
TEST_F(Cli, DeterministicRunsRepeatTheirJsonOutsideHost) {
  const std::string run = "run default --vcpus 4 --memory 64M --deterministic --json";
  std::vector<nlohmann::json> docs;
  for (const char* seed : {"--seed 3", "--seed 3", "--seed 3 --schedule-seed 4"}) {
    const Outcome o = tdxsim(fmt::format("{} {}", run, seed));
    ASSERT_EQ(o.status, 0) << o.out << o.err;
    docs.push_back(nlohmann::json::parse(o.out));
    docs.back().erase("host");
  }
  EXPECT_EQ(docs[0], docs[1]);
  EXPECT_EQ(docs[0]["options"]["schedule_seed"], 3);
  EXPECT_NE(docs[0]["schedule"]["digest"], docs[2]["schedule"]["digest"]);
  EXPECT_EQ(docs[0]["figures"], docs[2]["figures"]);  // the workload is the seed's alone

  // explore finds the planted race and prints a replay that fails the same way.
  const Outcome found = tdxsim("explore --inject P1 --max-runs 5000");
  EXPECT_EQ(found.status, 1) << found.out << found.err;
  const size_t at = found.out.find("replay: tdxsim ");
  ASSERT_NE(at, std::string::npos) << found.out;
  const std::string args = found.out.substr(at + 15, found.out.find('\n', at) - at - 15);
  const Outcome replayed = tdxsim(args);
  EXPECT_EQ(replayed.status, 1) << replayed.out << replayed.err;
  EXPECT_NE(replayed.out.find("FAILED no_vm_bug"), std::string::npos) << replayed.out;
  EXPECT_NE(replayed.out.find("replay: tdxsim " + args), std::string::npos) << replayed.out;
}

// --json keeps stdout one document even with --trace, and the trace is trace-event JSON whose
// events balance against the run's own counts.
TEST_F(Cli, JsonAndTraceOfATdRun) {
  const fs::path trace = dir_ / "run.json";
  const Outcome o = tdxsim(fmt::format("run tdx_upm_implicit --json --trace '{}'", trace.string()));
  ASSERT_EQ(o.status, 0) << o.out << o.err;
  const nlohmann::json doc = nlohmann::json::parse(o.out);  // throws on anything extra
  EXPECT_EQ(doc["verdict"], "pass");
  for (const char* key : {"figures", "schedule", "host"}) EXPECT_TRUE(doc.contains(key)) << key;
  EXPECT_GT(doc["host"]["wall_seconds"].get<double>(), 0.0);
  EXPECT_GT(doc["schedule"]["simulated_operations"].get<uint64_t>(), 0u);

  ASSERT_TRUE(fs::exists(trace));
  EXPECT_LE(fs::file_size(trace), uint64_t{100} << 20);
  const nlohmann::json t = nlohmann::json::parse(slurp(trace));
  uint64_t timed = 0;
  for (const nlohmann::json& e : t["traceEvents"]) {
    for (const char* key : {"ph", "ts", "pid", "tid", "name"}) {
      ASSERT_TRUE(e.contains(key)) << key << " missing in " << e.dump();
    }
    if (e["ph"] != "M") ++timed;
  }
  const nlohmann::json& other = t["otherData"];
  uint64_t recorded = 0;
  for (const auto& [kind, n] : other["recorded_by_kind"].items()) recorded += n.get<uint64_t>();
  EXPECT_EQ(timed + other["dropped_events"].get<uint64_t>(), recorded);
  // The VM is traced for all of its run: every fault and entry the summary counts.
  const nlohmann::json& sched = doc["schedule"];
  uint64_t faults = 0;
  for (const auto& [name, n] : sched.items()) {
    if (name.starts_with("faults.")) faults += n.get<uint64_t>();
  }
  EXPECT_GT(faults, 0u);
  EXPECT_EQ(other["counted"]["page_faults"].get<uint64_t>(), faults);
  EXPECT_EQ(other["counted"]["vcpu_entries"].get<uint64_t>(),
            sched["seamcall.TDH.VP.ENTER"].get<uint64_t>());
  EXPECT_EQ(other["counted"]["seamcalls"]["TDH.MEM.PAGE.AUG"].get<uint64_t>(),
            sched["seamcall.TDH.MEM.PAGE.AUG"].get<uint64_t>());
}

}  // namespace
