#include "platform/lazy_words.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "base/check.h"

namespace tdxsim {

LazyWords::LazyWords(uint64_t count) : count_(count) {
  if (count == 0) return;
  TDXSIM_CHECK(count <= (uint64_t{1} << 58) / sizeof(uint64_t),
               "LazyWords of {} words is too large", count);
  bytes_ = (count * sizeof(uint64_t) + kPageBytes - 1) / kPageBytes * kPageBytes;
  void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  TDXSIM_CHECK(p != MAP_FAILED, "mmap of {} bytes for lazily resident words failed: {}", bytes_,
               std::strerror(errno));
  // Best effort: without it the estimate is low, nothing breaks (THP may be compiled out).
  (void)madvise(p, bytes_, MADV_NOHUGEPAGE);
  base_ = static_cast<uint64_t*>(p);
  touched_.assign((bytes_ / kPageBytes + 63) / 64, 0);
}

LazyWords::LazyWords(LazyWords&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)),
      count_(std::exchange(o.count_, 0)),
      bytes_(std::exchange(o.bytes_, 0)),
      touched_(std::move(o.touched_)),
      touched_pages_(o.touched_pages_.exchange(0, std::memory_order_relaxed)) {}

LazyWords::~LazyWords() {
  if (base_ != nullptr) munmap(base_, bytes_);
}

void LazyWords::note_page_touched(uint64_t page) {
  AtomicWordRef bits(touched_[page / 64]);
  const uint64_t bit = uint64_t{1} << (page % 64);
  // Relaxed: the bit orders nothing; it bounds scans, whose words are read atomically.
  if ((bits.load(std::memory_order_relaxed) & bit) == 0 &&
      (bits.fetch_or(bit, std::memory_order_relaxed) & bit) == 0) {
    touched_pages_.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace tdxsim
