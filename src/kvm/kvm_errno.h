// Errno: the negative errno values KVM's ioctls and internal helpers return, as a type.
//
// KVM answers userspace with -EINVAL, -EEXIST, -EFAULT …, and its MMU passes -EBUSY and
// -EAGAIN between layers. tdxsim keeps the same vocabulary (a test says "EEXIST", as the
// selftests do), carried in std::expected instead of a negative int. Values are Linux's.
#pragma once

#include <expected>

namespace tdxsim {

enum class Errno : int {
  kEperm = 1,
  kEnoent = 2,
  kEintr = 4,
  kEio = 5,
  kE2big = 7,
  kEbadf = 9,
  kEagain = 11,
  kEnomem = 12,
  kEfault = 14,
  kEbusy = 16,
  kEexist = 17,
  kEinval = 22,
  kEnospc = 28,
  kEopnotsupp = 95,
};

// "EINVAL", …
const char* to_string(Errno e);

template <class T = void>
using KvmResult = std::expected<T, Errno>;

}  // namespace tdxsim
