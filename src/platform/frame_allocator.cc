#include "platform/frame_allocator.h"

#include <bit>

#include "base/check.h"
#include "base/mix.h"

namespace tdxsim {

FrameAllocator::FrameAllocator(ReusePolicy policy, uint64_t frames, uint64_t seed)
    : policy_(policy), frames_(frames), free_(frames), rng_(seed) {
  switch (policy) {
    case ReusePolicy::kLastFreedFirst:
    case ReusePolicy::kFirstFreedFirst:
      list_.emplace(frames);
      break;
    case ReusePolicy::kLowestFirst: {
      uint64_t words = (frames + 63) / 64;
      do {
        levels_.emplace_back(words);
        words = (words + 63) / 64;
      } while (levels_.back().size() > 1);
      break;
    }
    case ReusePolicy::kRandom:
      slots_.emplace(frames);
      break;
  }
}

std::optional<uint64_t> FrameAllocator::take() {
  std::optional<uint64_t> pfn;
  switch (policy_) {
    case ReusePolicy::kLastFreedFirst:
      pfn = listed_ != 0 ? (*list_)[--listed_] : take_bump();
      break;
    case ReusePolicy::kFirstFreedFirst:
      pfn = take_bump();
      if (!pfn && listed_ != 0) {
        pfn = (*list_)[front_];
        front_ = (front_ + 1) % frames_;
        --listed_;
      }
      break;
    case ReusePolicy::kLowestFirst:
      pfn = take_lowest();
      if (!pfn) pfn = take_bump();
      break;
    case ReusePolicy::kRandom:
      if (free_ != 0) pfn = take_random();
      break;
  }
  if (!pfn) return std::nullopt;
  --free_;
  return pfn;
}

void FrameAllocator::give(uint64_t pfn) {
  TDXSIM_CHECK(pfn < frames_ && free_ < frames_, "freeing pfn:{:#x} with {} of {} frames free",
               pfn, free_, frames_);
  switch (policy_) {
    case ReusePolicy::kLastFreedFirst:
      list_->set(listed_++, pfn);
      break;
    case ReusePolicy::kFirstFreedFirst:
      list_->set((front_ + listed_) % frames_, pfn);
      ++listed_;
      break;
    case ReusePolicy::kLowestFirst:
      bitmap_set(pfn);
      break;
    case ReusePolicy::kRandom:
      slots_->set(free_, pfn + 1);
      break;
  }
  ++free_;
}

std::optional<uint64_t> FrameAllocator::take_bump() {
  if (bump_ == frames_) return std::nullopt;
  return bump_++;
}

std::optional<uint64_t> FrameAllocator::take_lowest() {
  const uint64_t top = levels_.back()[0];
  if (top == 0) return std::nullopt;
  // Descend: at each level the lowest set bit names the first non-empty word below.
  uint64_t i = static_cast<uint64_t>(std::countr_zero(top));
  for (size_t l = levels_.size() - 1; l-- > 0;) {
    i = i * 64 + static_cast<uint64_t>(std::countr_zero(levels_[l][i]));
  }
  bitmap_clear(i);
  return i;
}

void FrameAllocator::bitmap_set(uint64_t pfn) {
  uint64_t i = pfn;
  for (LazyWords& level : levels_) {
    const uint64_t old = level[i / 64];
    level.set(i / 64, old | (uint64_t{1} << (i % 64)));
    if (old != 0) return;  // the summary above already says "non-empty"
    i /= 64;
  }
}

void FrameAllocator::bitmap_clear(uint64_t pfn) {
  uint64_t i = pfn;
  for (LazyWords& level : levels_) {
    const uint64_t now = level[i / 64] & ~(uint64_t{1} << (i % 64));
    level.set(i / 64, now);
    if (now != 0) return;  // the word is still non-empty: summaries above stay set
    i /= 64;
  }
}

uint64_t FrameAllocator::random_slot(uint64_t i) const {
  const uint64_t v = (*slots_)[i];
  return v == 0 ? i : v - 1;
}

uint64_t FrameAllocator::take_random() {
  // Swap-remove: the chosen slot takes the last free frame.
  const uint64_t i = random_below(free_);
  const uint64_t pfn = random_slot(i);
  const uint64_t last = free_ - 1;
  if (i != last) slots_->set(i, random_slot(last) + 1);
  return pfn;
}

uint64_t FrameAllocator::random_below(uint64_t n) {
  // Lemire's unbiased multiply-shift over a splitmix64 stream: reproducible for a seed on
  // every standard library, unlike std::uniform_int_distribution.
  for (;;) {
    rng_ += 0x9e3779b97f4a7c15ull;
    const unsigned __int128 m = static_cast<unsigned __int128>(mix64(rng_)) * n;
    const uint64_t low = static_cast<uint64_t>(m);
    if (low >= n || low >= (0 - n) % n) return static_cast<uint64_t>(m >> 64);
  }
}

uint64_t FrameAllocator::resident_bytes() const {
  uint64_t bytes = slots_ ? slots_->resident_bytes() : 0;
  if (list_) bytes += list_->resident_bytes();
  for (const LazyWords& level : levels_) bytes += level.resident_bytes();
  return bytes;
}

}  // namespace tdxsim
