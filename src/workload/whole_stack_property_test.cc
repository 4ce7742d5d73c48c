// The whole stack against the page model, by RapidCheck's stateful testing: random sequences
// of guest, VMM and KVM operations (op.h) on a driven TD (driven_td.h), each operation's reads
// held to TdModel and every invariant of docs/invariants.md judged after it, the teardown
// judged after the last. A failure is shrunk to a shortest sequence that still fails.
//
// The planted bug P2 (a leaf zap one page short) must be caught and shrunk to a handful of
// operations: the acceptance of the property tests themselves.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <array>
#include <iostream>
#include <sstream>

#include "vmm/machine.h"
#include "workload/driven_td.h"
#include "workload/op.h"
#include "workload/td_model.h"

namespace tdxsim::workload {
namespace {

struct Sut {
  explicit Sut(vmm::Machine& machine) : td(machine) {}
  DrivenTd td;
  std::vector<Op> ran;
};

// Operations run by kind, over every case of a property: that the generator reaches them all.
using KindCounts = std::array<uint64_t, static_cast<size_t>(OpKind::kCount)>;

using OpCommandBase = rc::state::Command<TdModel, Sut>;

struct OpCommand final : OpCommandBase {
  explicit OpCommand(const Op& o) : op(o) {}
  void checkPreconditions(const TdModel&) const override { RC_PRE(well_formed(op)); }
  void apply(TdModel& model) const override { model.apply(op); }
  void run(const TdModel& model, Sut& sut) const override {
    sut.ran.push_back(op);
    const std::vector<std::string> f = sut.td.run(op, model);
    if (!f.empty()) RC_FAIL(fmt::format("after {}: {}", to_string(op), fmt::join(f, "; ")));
  }
  void show(std::ostream& os) const override { os << to_string(op); }
  Op op;
};

// Guests writing and reading, the host converting and punching, most; every kind some.
rc::Gen<Op> gen_op() {
  return rc::gen::exec([] {
    Op op;
    op.kind = *rc::gen::weightedElement<OpKind>({{3, OpKind::kAccept},
                                                 {5, OpKind::kWrite},
                                                 {5, OpKind::kRead},
                                                 {3, OpKind::kMapGpa},
                                                 {2, OpKind::kTouch},
                                                 {3, OpKind::kSetAttributes},
                                                 {2, OpKind::kPunchHole},
                                                 {2, OpKind::kZapShared},
                                                 {1, OpKind::kReclaim},
                                                 {2, OpKind::kHostRead},
                                                 {2, OpKind::kHostWrite},
                                                 {1, OpKind::kFlushTlbs},
                                                 {1, OpKind::kRecreateMemslot}});
    op.vcpu = static_cast<uint8_t>(*rc::gen::inRange(0u, kVcpus));
    op.first = static_cast<uint8_t>(*rc::gen::inRange(0u, kPages));
    op.count =
        static_cast<uint8_t>(*rc::gen::inRange(1u, std::min(kMaxCount, kPages - op.first) + 1));
    op.round = static_cast<uint8_t>(*rc::gen::inRange(1u, kRounds));
    op.to_shared = *rc::gen::arbitrary<bool>();
    return op;
  });
}

struct PropertyOutcome {
  bool passed = false;
  KindCounts ran{};
  std::string message;        // RapidCheck's report of the shrunk counterexample
  std::vector<Op> last_fail;  // the operations of the last failing case: the shrunk one
};

// Keeps a failure the test expects out of RapidCheck's report at exit ("Some of your RapidCheck
// properties had failures…"), which the global listener would print.
struct QuietListener final : rc::detail::TestListener {
  void onTestCaseFinished(const rc::detail::CaseDescription&) override {}
  void onShrinkTried(const rc::detail::CaseDescription&, bool) override {}
  void onTestFinished(const rc::detail::TestMetadata&, const rc::detail::TestResult&) override {}
};

// Runs the property over `cases` sequences with a fixed seed (a failure repeats), on machines
// with `bugs` switched on (with bugs, a failure is expected and not reported at exit).
PropertyOutcome check_whole_stack(const std::vector<BugId>& bugs, int cases, uint64_t seed) {
  PropertyOutcome out;
  const auto case_of = [&] {
    const std::unique_ptr<vmm::Machine> machine = make_machine(bugs);
    Sut sut(*machine);
    try {
      RC_ASSERT(sut.td.failures().empty());
      rc::state::check(TdModel{}, sut, [](const TdModel&) {
        return rc::gen::map(gen_op(), [](const Op& op) {
          return std::shared_ptr<const OpCommandBase>(std::make_shared<const OpCommand>(op));
        });
      });
      const std::vector<std::string> f = sut.td.finish();
      if (!f.empty()) RC_FAIL(fmt::format("at teardown: {}", fmt::join(f, "; ")));
    } catch (...) {
      out.last_fail = sut.ran;
      for (const Op& op : sut.ran) out.ran[static_cast<size_t>(op.kind)]++;
      throw;
    }
    for (const Op& op : sut.ran) out.ran[static_cast<size_t>(op.kind)]++;
  };
  const auto property = [&] { run_scheduled(case_of); };
  rc::detail::TestParams params;
  params.seed = seed;
  params.maxSuccess = cases;
  params.maxSize = 40;  // sequences of up to about 40 operations
  rc::detail::TestMetadata meta;
  meta.id = "WholeStackProperty";
  QuietListener quiet;
  const auto result = bugs.empty() ? rc::detail::checkTestable(property, meta, params)
                                   : rc::detail::checkTestable(property, meta, params, quiet);
  out.passed = result.template is<rc::detail::SuccessResult>();
  std::ostringstream os;
  rc::detail::printResultMessage(result, os);
  out.message = os.str();
  return out;
}

std::string listing(const std::vector<Op>& ops) {
  std::string s;
  for (const Op& op : ops) s += fmt::format("  {}\n", to_string(op));
  return s;
}

TEST(WholeStackProperty, RandomSequencesAgreeWithTheModelAndTheInvariants) {
  const PropertyOutcome o = check_whole_stack({}, 300, 0x5eed);
  EXPECT_TRUE(o.passed) << o.message << "\nlast failing sequence:\n" << listing(o.last_fail);
  uint64_t total = 0;
  for (size_t k = 0; k < o.ran.size(); ++k) {
    EXPECT_GE(o.ran[k], 20u) << to_string(static_cast<OpKind>(k)) << " was hardly run";
    total += o.ran[k];
  }
  EXPECT_GE(total, 3000u);
}

TEST(WholeStackProperty, PlantedZapOffByOneIsCaughtAndShrunkToAFewOperations) {
  const PropertyOutcome o = check_whole_stack({BugId::P2}, 150, 0x5eed);
  ASSERT_FALSE(o.passed) << "P2 went unnoticed";
  EXPECT_FALSE(o.last_fail.empty());
  EXPECT_LE(o.last_fail.size(), 10u) << o.message << listing(o.last_fail);
  std::cout << "P2 shrunk to " << o.last_fail.size() << " operations:\n" << listing(o.last_fail);
  // The shrunk sequence fails on its own, by the zap check, and only with P2; without any one
  // of its operations it passes (shrunk means minimal).
  const auto replay = [](const std::vector<Op>& ops, std::vector<BugId> bugs) {
    SequenceOutcome out;
    run_scheduled([&] {
      const std::unique_ptr<vmm::Machine> machine = make_machine(bugs);
      out = run_sequence(*machine, ops);
    });
    return out;
  };
  const SequenceOutcome again = replay(o.last_fail, {BugId::P2});
  ASSERT_FALSE(again.failures.empty());
  EXPECT_NE(fmt::format("{}", fmt::join(again.failures, "\n")).find("zapped_range_unmapped"),
            std::string::npos)
      << fmt::format("{}", fmt::join(again.failures, "\n"));
  EXPECT_TRUE(replay(o.last_fail, {}).failures.empty());
  for (size_t i = 0; i < o.last_fail.size(); ++i) {
    std::vector<Op> less = o.last_fail;
    less.erase(less.begin() + static_cast<std::ptrdiff_t>(i));
    EXPECT_TRUE(replay(less, {BugId::P2}).failures.empty())
        << "still fails without operation " << i << ":\n"
        << listing(less);
  }
}

}  // namespace
}  // namespace tdxsim::workload
