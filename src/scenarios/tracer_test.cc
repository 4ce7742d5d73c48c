#include "scenarios/tracer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"

namespace tdxsim {
namespace {

// A file under the test's temporary directory, removed at the end.
class TempFile {
 public:
  explicit TempFile(const std::string& name)
      : path_(std::filesystem::temp_directory_path() /
              fmt::format("tdxsim_{}_{}.json", name, ::getpid())) {}
  ~TempFile() { std::filesystem::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

nlohmann::json write_and_parse(const Tracer& tracer, const TempFile& file) {
  const auto written = tracer.write(file.path());
  EXPECT_TRUE(written.has_value()) << written.error();
  std::ifstream in(file.path());
  return nlohmann::json::parse(in);  // throws, failing the test, on invalid JSON
}

// Every event carries what a trace viewer needs.
void expect_well_formed(const nlohmann::json& doc) {
  ASSERT_TRUE(doc.contains("traceEvents"));
  EXPECT_EQ(doc["displayTimeUnit"], "ns");
  for (const nlohmann::json& e : doc["traceEvents"]) {
    ASSERT_TRUE(e.contains("ph") && e["ph"].is_string()) << e.dump();
    ASSERT_TRUE(e.contains("ts") && e["ts"].is_number()) << e.dump();
    ASSERT_TRUE(e.contains("pid") && e["pid"].is_number_integer()) << e.dump();
    ASSERT_TRUE(e.contains("tid") && e["tid"].is_number_integer()) << e.dump();
    ASSERT_TRUE(e.contains("name") && e["name"].is_string()) << e.dump();
    if (e["ph"] == "X") {
      EXPECT_TRUE(e.contains("dur")) << e.dump();
    }
  }
}

// Events in the file by kind ("cat"), and SEAMCALLs by leaf name.
struct FileCounts {
  std::map<std::string, uint64_t> by_kind;
  std::map<std::string, uint64_t> seamcalls;
};
FileCounts count(const nlohmann::json& doc) {
  FileCounts c;
  for (const nlohmann::json& e : doc["traceEvents"]) {
    if (e["ph"] == "M") continue;
    const std::string kind = e["cat"];
    ++c.by_kind[kind];
    if (kind == "seamcall") ++c.seamcalls[e["name"].get<std::string>()];
  }
  return c;
}

uint64_t at(const std::map<std::string, uint64_t>& m, const std::string& key) {
  const auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

// A plain VM whose tracepoints the tests drive by hand.
struct PlainVm {
  PlainVm() : machine(machine_config(ScenarioOptions{})) {
    auto v = Vm::create(machine, VmShape::of(VmType::kDefault, 1));
    EXPECT_TRUE(v.has_value());
    vm = std::move(*v);
  }
  void entries(unsigned n) {
    Tracepoint<VcpuRunEvent>& tp = vm->kvm().events().vcpu_run;
    for (unsigned i = 0; i < n; ++i) {
      tp.emit(VcpuRunEvent{EventPhase::kBegin, 0, 1, ExitFastpath::kNone});
      tp.emit(VcpuRunEvent{EventPhase::kEnd, 0, 1, ExitFastpath::kExitHandled});
    }
  }
  void flushes(unsigned n) {
    Tracepoint<RemoteFlushEvent>& tp = vm->kvm().events().remote_flush;
    for (unsigned i = 0; i < n; ++i) {
      tp.emit(RemoteFlushEvent{EventPhase::kBegin, Gfn{0}, 0, true});
      tp.emit(RemoteFlushEvent{EventPhase::kEnd, Gfn{0}, 0, true});
    }
  }
  Machine machine;
  std::unique_ptr<Vm> vm;
};

TEST(TracerTest, KeepsEverythingWithinCapacity) {
  PlainVm p;
  Tracer tracer(600);  // 100 a kind
  {
    const auto attached = tracer.attach(*p.vm);
    p.entries(30);
    p.flushes(20);
  }
  p.entries(5);  // detached: not traced
  EXPECT_EQ(tracer.recorded(Tracer::Kind::kVcpuRun), 30u);
  EXPECT_EQ(tracer.recorded(Tracer::Kind::kRemoteFlush), 20u);
  EXPECT_EQ(tracer.dropped(), 0u);
  TempFile file("tracer_within");
  const nlohmann::json doc = write_and_parse(tracer, file);
  expect_well_formed(doc);
  const FileCounts c = count(doc);
  EXPECT_EQ(at(c.by_kind, "vcpu_run"), 30u);
  EXPECT_EQ(at(c.by_kind, "remote_flush"), 20u);
  EXPECT_EQ(doc["otherData"]["dropped_events"], 0);
  EXPECT_EQ(doc["otherData"]["recorded_by_kind"]["vcpu_run"], 30);
}

TEST(TracerTest, EachKindsRingKeepsItsMostRecentAndCountsWhatItDropped) {
  PlainVm p;
  Tracer tracer(60);  // 10 a kind
  {
    const auto attached = tracer.attach(*p.vm);
    p.flushes(4);
    p.entries(12);  // pushes out 2 entries, not the flushes
    p.flushes(8);   // pushes out the first 2 flushes
  }
  EXPECT_EQ(tracer.dropped(Tracer::Kind::kRemoteFlush), 2u);
  EXPECT_EQ(tracer.dropped(Tracer::Kind::kVcpuRun), 2u);
  EXPECT_EQ(tracer.dropped(), 4u);
  TempFile file("tracer_ring");
  const nlohmann::json doc = write_and_parse(tracer, file);
  expect_well_formed(doc);
  const FileCounts c = count(doc);
  EXPECT_EQ(at(c.by_kind, "vcpu_run"), 10u);
  EXPECT_EQ(at(c.by_kind, "remote_flush"), 10u);
  EXPECT_EQ(doc["otherData"]["dropped_events"], 4);
  EXPECT_EQ(doc["otherData"]["dropped_by_kind"]["remote_flush"], 2);
  EXPECT_EQ(doc["otherData"]["dropped_by_kind"]["vcpu_run"], 2);
  // The flushes kept are the last 10: the two before the entries went first.
  uint64_t after_entries = 0;
  double last_entry = 0;
  for (const nlohmann::json& e : doc["traceEvents"]) {
    if (e["ph"] != "M" && e["cat"] == "vcpu_run")
      last_entry = std::max(last_entry, e["ts"].get<double>());
  }
  for (const nlohmann::json& e : doc["traceEvents"]) {
    if (e["ph"] != "M" && e["cat"] == "remote_flush" && e["ts"].get<double>() >= last_entry) {
      ++after_entries;
    }
  }
  EXPECT_EQ(after_entries, 8u);
}

TEST(TracerTest, OneTrackPerThreadNamedForItsVcpu) {
  PlainVm p;
  Tracer tracer(100);
  {
    const auto attached = tracer.attach(*p.vm);
    p.entries(1);                               // this thread: "vCPU 0"
    std::thread([&] { p.flushes(1); }).join();  // another: "host 0"
  }
  TempFile file("tracer_tracks");
  const nlohmann::json doc = write_and_parse(tracer, file);
  expect_well_formed(doc);
  std::map<int, std::string> names;
  for (const nlohmann::json& e : doc["traceEvents"]) {
    if (e["ph"] == "M" && e["name"] == "thread_name") names[e["tid"]] = e["args"]["name"];
  }
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names.begin()->second, "vCPU 0");
  EXPECT_EQ(names.rbegin()->second, "host 0");
  std::map<std::string, int> tid_of;
  for (const nlohmann::json& e : doc["traceEvents"]) {
    if (e["ph"] != "M") tid_of[e["cat"]] = e["tid"];
  }
  EXPECT_NE(tid_of["vcpu_run"], tid_of["remote_flush"]);
}

TEST(TracerTest, AnUnwritablePathIsAnErrorNamingIt) {
  Tracer tracer(10);
  const auto written = tracer.write("/nonexistent-dir/t.json");
  ASSERT_FALSE(written.has_value());
  EXPECT_NE(written.error().find("/nonexistent-dir/t.json"), std::string::npos);
}

// The default scenario, small, traced: for every kind, the events in the file plus those
// dropped are what the VM counted (VcpuStats::entries, MmuStats, TdxStats per leaf).
void expect_default_run_balances(size_t capacity, bool expect_drops) {
  Tracer tracer(capacity);
  ScenarioOptions options;
  options.memory_bytes = uint64_t{64} << 20;
  options.vcpus = 2;
  options.tracer = &tracer;
  Report report;
  find_scenario("default")->run(options, report);
  ASSERT_TRUE(report.passed()) << ::testing::PrintToString(report.failures());

  TempFile file(fmt::format("tracer_default_{}", capacity));
  const nlohmann::json doc = write_and_parse(tracer, file);
  expect_well_formed(doc);
  EXPECT_LT(std::filesystem::file_size(file.path()), uint64_t{100} << 20);
  const FileCounts c = count(doc);
  const nlohmann::json& other = doc["otherData"];
  const Tracer::Counted counted = tracer.counted();
  if (expect_drops) {
    EXPECT_GT(tracer.dropped(), 0u);
  }
  EXPECT_EQ(other["dropped_events"].get<uint64_t>(), tracer.dropped());

  EXPECT_GT(counted.vcpu_entries, 0u);
  EXPECT_EQ(at(c.by_kind, "vcpu_run") + tracer.dropped(Tracer::Kind::kVcpuRun),
            counted.vcpu_entries);
  EXPECT_GT(counted.page_faults, 0u);
  EXPECT_EQ(at(c.by_kind, "page_fault") + tracer.dropped(Tracer::Kind::kPageFault),
            counted.page_faults);
  EXPECT_GT(counted.remote_flushes, 0u);
  EXPECT_EQ(at(c.by_kind, "remote_flush") + tracer.dropped(Tracer::Kind::kRemoteFlush),
            counted.remote_flushes);
  EXPECT_EQ(other["counted"]["vcpu_entries"].get<uint64_t>(), counted.vcpu_entries);

  uint64_t seamcalls = 0;
  for (size_t i = 0; i < kNumSeamcallLeaves; ++i) {
    const auto leaf = static_cast<SeamcallLeaf>(i);
    const std::string name = to_string(leaf);
    EXPECT_EQ(at(c.seamcalls, name) + tracer.dropped_seamcalls(leaf), counted.seamcalls[i]) << name;
    seamcalls += counted.seamcalls[i];
  }
  EXPECT_GT(seamcalls, 0u);
  EXPECT_EQ(at(c.by_kind, "seamcall") + tracer.dropped(Tracer::Kind::kSeamcall), seamcalls);
  // The tracer's window starts before the image is built: it saw every PAGE.ADD the
  // scenario reports.
  for (const auto& [name, value] : report.figures()) {
    if (name == "tdh_mem_page_add") {
      EXPECT_EQ(counted.seamcalls[static_cast<size_t>(SeamcallLeaf::kMemPageAdd)], value);
    }
  }
  EXPECT_GT(at(c.by_kind, "zap") + tracer.dropped(Tracer::Kind::kZap), 0u);
}

TEST(TracerTest, DefaultRunBalancesAgainstItsStatistics) {
  // Even this small run's SEAMCALLs come near one kind's ring (schedule-dependent): it may drop.
  expect_default_run_balances(Tracer::kDefaultCapacity, /*expect_drops=*/false);
}

TEST(TracerTest, DefaultRunBalancesWithATinyRing) {
  expect_default_run_balances(64, /*expect_drops=*/true);
}

}  // namespace
}  // namespace tdxsim
