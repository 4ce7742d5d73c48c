// ShardedCounter: a statistics count that many threads bump on their fast path, one cache
// line per thread shard (base/thread_shard.h), summed when read.
//
// A plain Counter is one word every writer locks: two vCPU threads faulting in parallel
// would trade its cache line on every fault. Here each writer adds to its own shard's word.
// Signed, so that it also serves as a gauge (pages mapped now: +1 on map, -1 on zap, the two
// possibly on different shards).
//
// Thread safety: add() from any thread; value() from any thread, a sum of relaxed loads (not
// a snapshot while writers run). Relaxed on purpose: a counter never orders other memory.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "base/thread_shard.h"

namespace tdxsim {

class ShardedCounter {
 public:
  void add(int64_t n = 1) {
    shards_[this_thread_shard()].v.fetch_add(n, std::memory_order_relaxed);
  }
  int64_t value() const {
    int64_t sum = 0;
    for (const Shard& s : shards_) sum += s.v.load(std::memory_order_relaxed);
    return sum;
  }

 private:
  struct alignas(kShardStride) Shard {
    std::atomic<int64_t> v{0};
  };
  std::array<Shard, kThreadShards> shards_;
};

}  // namespace tdxsim
