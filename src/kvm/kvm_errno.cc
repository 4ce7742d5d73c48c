#include "kvm/kvm_errno.h"

namespace tdxsim {

const char* to_string(Errno e) {
  switch (e) {
    case Errno::kEperm:
      return "EPERM";
    case Errno::kEnoent:
      return "ENOENT";
    case Errno::kEintr:
      return "EINTR";
    case Errno::kEio:
      return "EIO";
    case Errno::kE2big:
      return "E2BIG";
    case Errno::kEbadf:
      return "EBADF";
    case Errno::kEagain:
      return "EAGAIN";
    case Errno::kEnomem:
      return "ENOMEM";
    case Errno::kEfault:
      return "EFAULT";
    case Errno::kEbusy:
      return "EBUSY";
    case Errno::kEexist:
      return "EEXIST";
    case Errno::kEinval:
      return "EINVAL";
    case Errno::kEnospc:
      return "ENOSPC";
    case Errno::kEopnotsupp:
      return "EOPNOTSUPP";
  }
  return "E?";
}

}  // namespace tdxsim
