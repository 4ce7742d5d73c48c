#include "base/try_lock.h"

#include "base/check.h"

namespace tdxsim {

const char* to_string(Requester r) {
  switch (r) {
    case Requester::kHost: return "host";
    case Requester::kGuest: return "guest";
  }
  return "?";
}

const char* to_string(TryLockResult r) {
  switch (r) {
    case TryLockResult::kAcquired: return "acquired";
    case TryLockResult::kBusy: return "busy";
    case TryLockResult::kBusyHostPriority: return "busy (host priority)";
  }
  return "?";
}

}  // namespace tdxsim
