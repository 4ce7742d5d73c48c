// The whole-stack fuzzer: each input is a sequence of guest, VMM and KVM operations
// (workload/op_bytes.h: four bytes an operation) run on a fresh driven TD under the
// deterministic scheduler, so that an input replays exactly. A failure — a read the page model
// (workload/td_model.h) contradicts, an invariant of docs/invariants.md violated after an
// operation, a teardown that leaves a frame, a PAMT entry or plaintext behind — is printed
// with the sequence and aborts, which libFuzzer keeps as a crash input.
//
// The same sequences are the property tests' (src/workload/whole_stack_property_test.cc):
// there RapidCheck draws and shrinks them; here libFuzzer's coverage guides them.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>

#include "vmm/machine.h"
#include "workload/driven_td.h"
#include "workload/op_bytes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tdxsim::workload;
  const std::vector<Op> ops = decode_ops(std::span<const uint8_t>(data, size));
  SequenceOutcome outcome;
  run_scheduled([&] {
    const std::unique_ptr<tdxsim::vmm::Machine> machine = make_machine();
    outcome = run_sequence(*machine, ops, Judge::kRunWide);
  });
  if (outcome.failures.empty()) return 0;
  std::fprintf(stderr, "whole-stack fuzzer: the sequence fails");
  if (outcome.failed_at) {
    std::fprintf(stderr, " at %s", *outcome.failed_at < ops.size() ? "operation" : "the teardown");
    if (*outcome.failed_at < ops.size()) std::fprintf(stderr, " %zu", *outcome.failed_at);
  }
  std::fprintf(stderr, ":\n");
  const size_t last = outcome.failed_at ? std::min(*outcome.failed_at + 1, ops.size()) : 0;
  for (size_t i = 0; i < last; ++i) {
    std::fprintf(stderr, "  %3zu %s\n", i, to_string(ops[i]).c_str());
  }
  for (const std::string& f : outcome.failures) std::fprintf(stderr, "  failure: %s\n", f.c_str());
  std::abort();
}
