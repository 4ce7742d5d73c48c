#include "cli/run_scenario.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "scenarios/scenario_runner.h"

namespace tdxsim::cli {

namespace {

uint64_t max_rss_bytes() {
  rusage u{};
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
  return static_cast<uint64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

void print_json(std::string_view name, std::string_view description, const ScenarioOptions& options,
                const Report& report, double secs, std::FILE* out) {
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
  nlohmann::ordered_json figures = nlohmann::ordered_json::object();
  for (const auto& [fig, value] : report.figures()) figures[fig] = value;
  doc["figures"] = figures;
  nlohmann::ordered_json schedule = nlohmann::ordered_json::object();
  for (const auto& [fig, value] : report.schedule_figures()) schedule[fig] = value;
  schedule["checks"] = report.checks();
  doc["schedule"] = schedule;
  doc["host"] = {{"wall_seconds", secs}, {"max_rss_bytes", max_rss_bytes()}};
  fmt::print(out, "{}\n", doc.dump(2));
}

template <class Body>
int run_and_print(std::string_view name, std::string_view description,
                  const ScenarioOptions& options, std::FILE* out, bool json, Body&& body) {
  Report report;
  const auto t0 = std::chrono::steady_clock::now();
  body(report);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::vector<std::string> failures = report.failures();
  if (json) {
    print_json(name, description, options, report, secs, out);
    return failures.empty() ? 0 : 1;
  }
  fmt::print(out, "scenario {}: {}\n", name, description);
  for (const auto& [fig, value] : report.figures()) fmt::print(out, "  {:<34} {}\n", fig, value);
  for (const auto& [fig, value] : report.schedule_figures()) {
    fmt::print(out, "  {:<34} {}\n", fig, value);
  }
  fmt::print(out, "  {:<34} {}\n", "checks", report.checks());
  fmt::print(out, "  {:<34} {:.2f} s\n", "wall time", secs);
  fmt::print(out, "  {:<34} {} MiB\n", "peak resident memory", max_rss_bytes() >> 20);
  for (const std::string& f : failures) fmt::print(out, "FAILED {}\n", f);
  fmt::print(out, "{}\n", failures.empty() ? "PASS" : "FAIL");
  return failures.empty() ? 0 : 1;
}

}  // namespace

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
