// Operation sequences as bytes: how the whole-stack fuzzer reads its inputs, and how a
// sequence (a shrunk property-test failure, a hand-made seed) becomes a corpus file. Four
// bytes an operation; any bytes decode to well-formed operations (fields wrap into range), so
// every input the fuzzer mutates is a sequence, and decode(encode(ops)) == ops.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "workload/op.h"

namespace tdxsim::workload {

inline constexpr size_t kOpBytes = 4;
// Longer inputs are cut here: a sequence that needs more is a different test.
inline constexpr size_t kMaxOps = 256;

std::vector<Op> decode_ops(std::span<const uint8_t> bytes);
// REQUIRES: every op well_formed.
std::vector<uint8_t> encode_ops(std::span<const Op> ops);

}  // namespace tdxsim::workload
