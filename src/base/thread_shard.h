// this_thread_shard(): a small per-thread index for spreading hot shared counters (and the
// read side of SharedMutex) over separate cache lines.
//
// A word every thread writes on its fast path bounces between cores and caps scaling well
// below the core count; a word per shard does not, as long as threads land on different
// shards. Threads get shards round-robin in the order they first ask, so the first
// kThreadShards threads never share one.
//
// Thread safety: any thread; the index is the calling thread's own.
#pragma once

#include <cstddef>

namespace tdxsim {

inline constexpr unsigned kThreadShards = 32;
// A shard's slot is this far from the next: a cache line, so two shards never share one.
inline constexpr size_t kShardStride = 64;

unsigned this_thread_shard();

}  // namespace tdxsim
