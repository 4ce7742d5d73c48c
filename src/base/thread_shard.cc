#include "base/thread_shard.h"

#include <atomic>

namespace tdxsim {
namespace {

// The next shard to hand out. Process-wide on purpose: a shard is a property of the thread,
// shared by every sharded object it touches.
std::atomic<unsigned> g_next_shard{0};

constexpr unsigned kUnassigned = ~0u;
constinit thread_local unsigned t_shard = kUnassigned;

}  // namespace

unsigned this_thread_shard() {
  if (t_shard == kUnassigned) {
    t_shard = g_next_shard.fetch_add(1, std::memory_order_relaxed) % kThreadShards;
  }
  return t_shard;
}

}  // namespace tdxsim
