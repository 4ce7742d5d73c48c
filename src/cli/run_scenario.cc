#include "cli/run_scenario.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "base/sched.h"
#include "scenarios/scenario_runner.h"

namespace tdxsim::cli {

namespace {

uint64_t max_rss_bytes() {
  rusage u{};
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
  return static_cast<uint64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

using Figures = std::vector<std::pair<std::string, uint64_t>>;

// Figures one per line, except runs of figures that share a first dotted component
// ("faults.fixed", "faults.retry"): those share one line (wrapped), so that a summary of a
// few dozen counts reads at a glance.
void print_figures(const Figures& figures, std::FILE* out) {
  constexpr size_t kName = 24, kWidth = 100;
  for (size_t i = 0; i < figures.size();) {
    const std::string& name = figures[i].first;
    const size_t dot = name.find('.');
    if (dot == std::string::npos) {
      fmt::print(out, "  {:<{}} {}\n", name, kName, figures[i].second);
      ++i;
      continue;
    }
    const std::string_view group(name.data(), dot + 1);
    std::string line = fmt::format("  {:<{}} ", name.substr(0, dot), kName);
    const size_t indent = line.size();
    bool first = true;
    for (; i < figures.size() && figures[i].first.starts_with(group); ++i) {
      std::string item =
          fmt::format("{} {}", figures[i].first.substr(group.size()), figures[i].second);
      if (!first && line.size() + 2 + item.size() > kWidth) {
        fmt::print(out, "{},\n", line);
        line = std::string(indent, ' ');
        first = true;
      }
      line += first ? item : ", " + item;
      first = false;
    }
    fmt::print(out, "{}\n", line);
  }
}

// The digest as printed: 16 hex digits, so that two runs compare by eye.
std::string digest_text(uint64_t d) {
  return fmt::format("{:016x}", d);
}

void print_json(std::string_view name, std::string_view description, const ScenarioOptions& options,
                const Report& report, const std::optional<ScheduleSummary>& sched, double secs,
                std::FILE* out) {
  const uint64_t ops = report.operations();
  nlohmann::ordered_json doc;
  doc["scenario"] = name;
  doc["description"] = description;
  doc["seed"] = options.seed;
  nlohmann::ordered_json opts = nlohmann::ordered_json::object();
  if (options.vcpus) opts["vcpus"] = *options.vcpus;
  if (options.memory_bytes) opts["memory_bytes"] = *options.memory_bytes;
  nlohmann::ordered_json inject = nlohmann::ordered_json::array();
  for (BugId id : options.inject) inject.push_back(to_string(id));
  opts["inject"] = inject;
  opts["checks"] = options.checks;
  if (options.schedule_seed) opts["schedule_seed"] = *options.schedule_seed;
  doc["options"] = opts;
  const std::vector<std::string> failures = report.failures();
  doc["verdict"] = failures.empty() ? "pass" : "fail";
  nlohmann::ordered_json f = nlohmann::ordered_json::array();
  for (const std::string& line : failures) {
    const size_t colon = line.find(": ");
    f.push_back({{"check", line.substr(0, colon)},
                 {"evidence", colon == std::string::npos ? "" : line.substr(colon + 2)}});
  }
  doc["failures"] = f;
  if (sched && !failures.empty()) doc["replay"] = replay_command(name, options);
  nlohmann::ordered_json figures = nlohmann::ordered_json::object();
  for (const auto& [fig, value] : report.figures()) figures[fig] = value;
  doc["figures"] = figures;
  nlohmann::ordered_json schedule = nlohmann::ordered_json::object();
  for (const auto& [fig, value] : report.schedule_figures()) schedule[fig] = value;
  schedule["checks"] = report.checks();
  schedule["simulated_operations"] = ops;
  if (sched) {
    schedule["digest"] = digest_text(sched->digest);
    schedule["threads"] = sched->threads;
    schedule["steps"] = sched->steps;
    schedule["switches"] = sched->switches;
    schedule["preemptions"] = sched->preemptions;
  }
  doc["schedule"] = schedule;
  doc["host"] = {{"wall_seconds", secs},
                 {"simulated_operations_per_second", secs > 0 ? ops / secs : 0.0},
                 {"max_rss_bytes", max_rss_bytes()}};
  fmt::print(out, "{}\n", doc.dump(2));
}

template <class Body>
int run_and_print(std::string_view name, std::string_view description,
                  const ScenarioOptions& options, std::FILE* out, bool json, Body&& body) {
  Report report;
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<ScheduleSummary> sched;
  if (options.schedule_seed) {
    sched = run_deterministic(options, [&] { body(report); });
  } else {
    body(report);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::vector<std::string> failures = report.failures();
  if (json) {
    print_json(name, description, options, report, sched, secs, out);
    return failures.empty() ? 0 : 1;
  }
  fmt::print(out, "scenario {}: {}\n", name, description);
  print_figures(report.figures(), out);
  print_figures(report.schedule_figures(), out);
  const uint64_t ops = report.operations();
  fmt::print(out, "  {:<24} {}{}\n", "checks", report.checks(),
             options.checks ? "" : " (invariants off: --no-checks)");
  fmt::print(out, "  {:<24} {:.2f} s, {} simulated operations ({:.1f} M/s)\n", "wall time", secs,
             ops, secs > 0 ? ops / secs / 1e6 : 0.0);
  fmt::print(out, "  {:<24} {} MiB\n", "peak resident memory", max_rss_bytes() >> 20);
  if (sched) {
    fmt::print(out,
               "  {:<24} deterministic, seed {}: digest {}, {} threads, {} steps, {} switches "
               "({} preemptions)\n",
               "schedule", *options.schedule_seed, digest_text(sched->digest), sched->threads,
               sched->steps, sched->switches, sched->preemptions);
  }
  for (const std::string& f : failures) fmt::print(out, "FAILED {}\n", f);
  if (sched && !failures.empty()) fmt::print(out, "replay: {}\n", replay_command(name, options));
  fmt::print(out, "{}\n", failures.empty() ? "PASS" : "FAIL");
  return failures.empty() ? 0 : 1;
}

}  // namespace

std::string replay_command(std::string_view name, const ScenarioOptions& options) {
  std::string cmd = fmt::format("tdxsim run {} --seed {}", name, options.seed);
  if (options.vcpus) cmd += fmt::format(" --vcpus {}", *options.vcpus);
  if (options.memory_bytes) cmd += fmt::format(" --memory {}", *options.memory_bytes);
  for (BugId id : options.inject) cmd += fmt::format(" --inject {}", to_string(id));
  if (!options.checks) cmd += " --no-checks";
  if (options.schedule_seed) {
    cmd += fmt::format(" --deterministic --schedule-seed {}", *options.schedule_seed);
  }
  if (options.schedule_script) cmd += " --preempt " + format_preemptions(*options.schedule_script);
  return cmd;
}

std::string format_preemptions(const std::vector<Preemption>& script) {
  std::string out;
  for (const Preemption& p : script)
    out += fmt::format("{}{}:{}", out.empty() ? "" : ",", p.step, p.thread);
  return out.empty() ? "none" : out;
}

ScheduleSummary run_deterministic(const ScenarioOptions& options,
                                  const std::function<void()>& body) {
  SchedOptions so;
  so.seed = options.schedule_seed.value_or(options.seed);
  so.script = options.schedule_script;
  Scheduler scheduler(so);
  scheduler.run(body);
  return scheduler.summary();
}

int run_scenario(const ScenarioInfo& scenario, const ScenarioOptions& options, std::FILE* out,
                 bool json) {
  return run_and_print(scenario.name, scenario.description, options, out, json,
                       [&](Report& report) { scenario.run(options, report); });
}

int run_scenario_file(const std::string& path, const ScenarioSpec& spec,
                      const ScenarioOptions& options, std::FILE* out, bool json) {
  return run_and_print(path, spec.description, options, out, json,
                       [&](Report& report) { run_scenario_spec(spec, options, report); });
}

}  // namespace tdxsim::cli
