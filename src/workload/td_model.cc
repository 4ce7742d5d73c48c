#include "workload/td_model.h"

namespace tdxsim::workload {

uint8_t TdModel::guest_view(unsigned p) const {
  const PageState& s = pages_.at(p);
  if (!s.is_private) return s.shared_round;
  return s.accepted ? s.private_round : 0;
}

uint8_t TdModel::view_through(unsigned p, bool shared) const {
  TdModel after = *this;
  after.convert(p, shared);
  return after.guest_view(p);
}

void TdModel::convert(unsigned p, bool to_shared) {
  PageState& s = pages_.at(p);
  if (s.is_private != to_shared) return;  // already that way: KVM changes nothing
  s.is_private = !to_shared;
  // Either way the next private use is a fresh page: to shared discards the private one, and
  // to private starts from nothing the guest accepted.
  s.accepted = false;
  s.private_round = 0;
}

void TdModel::use_private(unsigned p) {
  PageState& s = pages_.at(p);
  if (s.accepted) return;
  s.accepted = true;
  s.private_round = 0;
}

void TdModel::apply(const Op& op) {
  if (op.kind == OpKind::kRecreateMemslot) {
    for (PageState& s : pages_) {
      PageState fresh;
      fresh.is_private = s.is_private;
      s = fresh;
    }
    return;
  }
  for (unsigned p = op.first; p < unsigned{op.first} + op.count; ++p) {
    PageState& s = pages_.at(p);
    switch (op.kind) {
      case OpKind::kAccept:
        convert(p, /*to_shared=*/false);
        use_private(p);
        break;
      case OpKind::kWrite:
        if (s.is_private) {
          use_private(p);
          s.private_round = op.round;
        } else {
          s.shared_round = op.round;
        }
        break;
      case OpKind::kRead:
        if (s.is_private) use_private(p);
        break;
      case OpKind::kTouch:
        convert(p, op.to_shared);
        if (s.is_private) use_private(p);
        break;
      case OpKind::kMapGpa:
      case OpKind::kSetAttributes:
        convert(p, op.to_shared);
        break;
      case OpKind::kPunchHole:
        if (s.is_private) {
          s.accepted = false;
          s.private_round = 0;
        }
        break;
      case OpKind::kHostWrite:
        s.shared_round = op.round;
        break;
      case OpKind::kRecreateMemslot:
        break;  // every page, below
      case OpKind::kZapShared:
      case OpKind::kReclaim:
      case OpKind::kHostRead:
      case OpKind::kFlushTlbs:
      case OpKind::kCount:
        break;
    }
  }
}

}  // namespace tdxsim::workload
