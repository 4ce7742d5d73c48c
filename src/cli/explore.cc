#include "cli/explore.h"

#include <fmt/format.h>

#include <chrono>
#include <vector>

#include "cli/quiet_run.h"
#include "cli/run_scenario.h"

namespace tdxsim::cli {

namespace {

class Explorer {
 public:
  Explorer(const ExploreConfig& c, std::FILE* out) : c_(c), out_(out) {}

  int run() {
    const auto t0 = std::chrono::steady_clock::now();
    const RunOutcome plain = once({});
    if (found_) return 1;
    fmt::print(out_,
               "explore {}: seed {}, {} threads, {} preemption points in the schedule "
               "without preemptions, bound {}\n",
               c_.scenario->name, c_.base.seed, plain.schedule->threads,
               plain.schedule->preemptible.size(), c_.preemptions);
    for (unsigned bound = 1; bound <= c_.preemptions && !found_ && !out_of_runs(); ++bound) {
      const uint64_t before = runs_;
      extend({}, plain, bound);
      fmt::print(out_, "  {} preemption{}: {} schedules{}\n", bound, bound == 1 ? "" : "s",
                 runs_ - before, found_ ? ", a failure" : "");
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (found_) return 1;
    if (out_of_runs()) {
      fmt::print(out_,
                 "INCOMPLETE: stopped after {} schedules (--max-runs), no failure ({:.1f} s)\n",
                 runs_, secs);
      return 3;
    }
    fmt::print(out_,
               "PASS: every schedule with at most {} preemptions, {} in all, passed ({:.1f} s)\n",
               c_.preemptions, runs_, secs);
    return 0;
  }

 private:
  bool out_of_runs() const { return runs_ >= c_.max_runs; }

  RunOutcome once(const std::vector<Preemption>& script) {
    ScenarioOptions o = c_.base;
    o.schedule_seed = o.seed;
    o.schedule_script = script;
    ++runs_;
    RunOutcome r = run_quietly(*c_.scenario, o);
    if (r.failed()) {
      found_ = true;
      fmt::print(out_, "FAILED after {} schedules, with preemptions {} (digest {:016x}): {} ({})\n",
                 runs_, format_preemptions(script), r.schedule->digest, r.first_failure,
                 join_checks(r.failed_checks));
      fmt::print(out_, "replay: {}\n", replay_command(c_.scenario->name, o));
    }
    return r;
  }

  // Runs every schedule that adds preemptions after `script`'s, up to `bound` in all, at the
  // points `parent` (the run of `script`) reached after its last one. Only schedules of
  // exactly `bound` preemptions are new at this bound: shorter ones ran at a lower one.
  void extend(const std::vector<Preemption>& script, const RunOutcome& parent, unsigned bound) {
    const uint64_t after = script.empty() ? 0 : script.back().step;
    const unsigned threads = parent.schedule->threads;
    for (const Preemption& at : parent.schedule->preemptible) {
      if (at.step <= after) continue;
      // Thread 1 is the RCU-callback thread: it runs whenever the others wait.
      for (unsigned to = 0; to < threads; ++to) {
        if (to == at.thread || to == 1) continue;
        std::vector<Preemption> next = script;
        next.push_back({at.step, to});
        if (next.size() == bound) {
          once(next);
        } else {
          const RunOutcome child = once(next);  // re-run: its points after the preemption
          if (!found_ && !out_of_runs()) extend(next, child, bound);
        }
        if (found_ || out_of_runs()) return;
      }
    }
  }

  const ExploreConfig& c_;
  std::FILE* out_;
  uint64_t runs_ = 0;
  bool found_ = false;
};

}  // namespace

int run_explore(const ExploreConfig& config, std::FILE* out) {
  return Explorer(config, out).run();
}

}  // namespace tdxsim::cli
