#include "workload/op_bytes.h"

#include <algorithm>

#include "base/check.h"

namespace tdxsim::workload {

// Byte 0: the kind (mod kCount), bit 7 to_shared; byte 1: the first page (mod kPages), bit 7
// the vCPU; byte 2: count - 1 (mod kMaxCount, then clipped at the work area's end); byte 3:
// round - 1 (mod kRounds - 1).
static_assert(static_cast<unsigned>(OpKind::kCount) <= 0x80 && kPages <= 0x80 && kVcpus <= 2);

std::vector<Op> decode_ops(std::span<const uint8_t> bytes) {
  std::vector<Op> ops;
  const size_t n = std::min(bytes.size() / kOpBytes, kMaxOps);
  ops.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* b = &bytes[i * kOpBytes];
    Op op;
    op.kind = static_cast<OpKind>((b[0] & 0x7f) % static_cast<unsigned>(OpKind::kCount));
    op.to_shared = (b[0] & 0x80) != 0;
    op.first = static_cast<uint8_t>((b[1] & 0x7f) % kPages);
    op.vcpu = static_cast<uint8_t>((b[1] >> 7) % kVcpus);
    op.count = static_cast<uint8_t>(std::min(1u + b[2] % kMaxCount, kPages - op.first));
    op.round = static_cast<uint8_t>(1 + b[3] % (kRounds - 1));
    ops.push_back(op);
  }
  return ops;
}

std::vector<uint8_t> encode_ops(std::span<const Op> ops) {
  std::vector<uint8_t> bytes;
  bytes.reserve(ops.size() * kOpBytes);
  for (const Op& op : ops) {
    TDXSIM_CHECK(well_formed(op), "encoding an ill-formed operation ({})", to_string(op));
    bytes.push_back(
        static_cast<uint8_t>(static_cast<unsigned>(op.kind) | (op.to_shared ? 0x80 : 0)));
    bytes.push_back(static_cast<uint8_t>(op.first | (op.vcpu << 7)));
    bytes.push_back(static_cast<uint8_t>(op.count - 1));
    bytes.push_back(static_cast<uint8_t>(op.round - 1));
  }
  return bytes;
}

}  // namespace tdxsim::workload
