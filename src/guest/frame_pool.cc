// FramePool: size-class free lists over heap blocks, each block headed by its pool.
#include "guest/frame_pool.h"

#include <new>

#include "base/check.h"

namespace tdxsim::guest {

FramePool::~FramePool() {
  TDXSIM_CHECK(live_ == 0, "{} guest coroutine frames outlive their program", live_);
  for (FreeBlock*& head : free_) {
    while (head != nullptr) {
      FreeBlock* next = head->next;
      ::operator delete(head);
      head = next;
    }
  }
}

void* FramePool::allocate(std::size_t bytes) {
  const std::size_t total = bytes + kHeader;
  const std::size_t c = size_class(total);
  void* block = nullptr;
  if (c <= kClasses && free_[c] != nullptr) {
    block = free_[c];
    free_[c] = free_[c]->next;
  } else {
    block = ::operator new(c <= kClasses ? c * kGranule : total);
    ++heap_allocations_;
  }
  ++live_;
  *static_cast<FramePool**>(block) = this;
  return static_cast<std::byte*>(block) + kHeader;
}

void FramePool::deallocate(void* frame, std::size_t bytes) {
  void* block = static_cast<std::byte*>(frame) - kHeader;
  (*static_cast<FramePool**>(block))->release(block, bytes);
}

void FramePool::release(void* block, std::size_t bytes) {
  --live_;
  const std::size_t c = size_class(bytes + kHeader);
  if (c > kClasses) {
    ::operator delete(block);
    return;
  }
  auto* b = static_cast<FreeBlock*>(block);
  b->next = free_[c];
  free_[c] = b;
}

}  // namespace tdxsim::guest
