// Where guest coroutine frames live: a per-program pool of recycled blocks, so that a guest
// program allocates from the heap only while it warms up (the first time each frame size is
// needed) and never per instruction or per primitive after that.
//
// Frames are freed in any order (a nested primitive's frame dies before its caller's, but a
// #VE handler's frame is born and dies while the interrupted code's frames stay), so blocks
// go back to a free list per size class instead of a stack.
//
// Thread safety: none; a program and its pool belong to the vCPU thread that runs them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace tdxsim::guest {

class FramePool {
 public:
  FramePool() = default;
  // REQUIRES: every frame was returned (a coroutine outliving its program is a bug: checked).
  ~FramePool();
  FramePool(const FramePool&) = delete;
  FramePool& operator=(const FramePool&) = delete;

  void* allocate(std::size_t bytes);
  // Returns a block to the pool that allocated it (found from the block's header).
  static void deallocate(void* frame, std::size_t bytes);

  // Blocks taken from the heap so far: stops growing once the program is warm.
  uint64_t heap_allocations() const { return heap_allocations_; }
  uint64_t live_frames() const { return live_; }

 private:
  struct FreeBlock {
    FreeBlock* next;
  };
  // Frames are rounded up to the granule; larger ones than the last class go to the heap
  // each time (no guest coroutine is anywhere near that big).
  static constexpr std::size_t kGranule = 64;
  static constexpr std::size_t kClasses = 64;
  // The header in front of each frame: the owning pool. 16 bytes keep the frame aligned as
  // operator new would (__STDCPP_DEFAULT_NEW_ALIGNMENT__).
  static constexpr std::size_t kHeader = 16;

  static std::size_t size_class(std::size_t bytes) { return (bytes + kGranule - 1) / kGranule; }
  void release(void* block, std::size_t bytes);

  std::array<FreeBlock*, kClasses + 1> free_{};
  uint64_t heap_allocations_ = 0;
  uint64_t live_ = 0;
};

}  // namespace tdxsim::guest
