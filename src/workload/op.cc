#include "workload/op.h"

#include <fmt/format.h>

namespace tdxsim::workload {

const char* to_string(OpKind kind) {
  switch (kind) {
    case OpKind::kAccept:
      return "accept";
    case OpKind::kWrite:
      return "write";
    case OpKind::kRead:
      return "read";
    case OpKind::kMapGpa:
      return "map_gpa";
    case OpKind::kTouch:
      return "touch";
    case OpKind::kSetAttributes:
      return "set_attributes";
    case OpKind::kPunchHole:
      return "punch_hole";
    case OpKind::kZapShared:
      return "zap_gfn_range";
    case OpKind::kReclaim:
      return "reclaim";
    case OpKind::kHostRead:
      return "host_read";
    case OpKind::kHostWrite:
      return "host_write";
    case OpKind::kFlushTlbs:
      return "flush_remote_tlbs";
    case OpKind::kRecreateMemslot:
      return "recreate_memslot";
    case OpKind::kCount:
      break;
  }
  return "?";
}

bool well_formed(const Op& op) {
  return op.kind < OpKind::kCount && op.vcpu < kVcpus && op.count >= 1 && op.count <= kMaxCount &&
         unsigned{op.first} + op.count <= kPages && op.round >= 1 && op.round < kRounds;
}

std::string to_string(const Op& op) {
  const std::string who = op.is_guest() ? fmt::format("vcpu {}", op.vcpu) : std::string("host");
  if (op.kind == OpKind::kReclaim || op.kind == OpKind::kFlushTlbs ||
      op.kind == OpKind::kRecreateMemslot) {
    return fmt::format("{}: {}", who, to_string(op.kind));
  }
  std::string s = fmt::format("{}: {} pages {}..{}", who, to_string(op.kind), op.first,
                              op.first + op.count - 1);
  switch (op.kind) {
    case OpKind::kWrite:
    case OpKind::kHostWrite:
      s += fmt::format(" round {}", op.round);
      break;
    case OpKind::kMapGpa:
    case OpKind::kSetAttributes:
      s += op.to_shared ? " to shared" : " to private";
      break;
    case OpKind::kTouch:
      s += op.to_shared ? " via shared" : " via private";
      break;
    default:
      break;
  }
  return s;
}

}  // namespace tdxsim::workload
