// Task<T>: the coroutine type guest code is written in. A guest program's code and every
// multi-instruction primitive (ACCEPT with its fallback, MapGPA with its retries, fill/verify)
// is a Task; a task awaiting another runs it to completion and gets its value back, the way
// a function call would. Single instructions are not tasks but plain awaiters (insn.h), so
// `co_await g.read(gpa)` costs no frame at all.
//
// Every task starts suspended and runs only when awaited (or, for a program's top-level
// task, when the adapter first asks for an instruction). On completion it resumes its awaiter
// directly (symmetric transfer), so a whole chain of nested tasks runs inside the one
// resume() the adapter makes per instruction, without growing the host stack.
//
// Frames come from the program's FramePool, found through the `Guest&` every guest coroutine
// takes as a parameter (for a member of Guest, its object; for a lambda, any parameter): a
// coroutine without one does not compile.
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <type_traits>
#include <utility>

#include "guest/frame_pool.h"

namespace tdxsim::guest {

class Guest;
FramePool& frame_pool_of(Guest& g);

namespace detail {

inline Guest* guest_ptr(Guest& g) {
  return &g;
}
template <class T>
Guest* guest_ptr(T&) {
  return nullptr;
}

class PromiseBase {
 public:
  template <class... A>
  static void* operator new(std::size_t bytes, A&... args) {
    static_assert((std::is_same_v<A, Guest> || ...),
                  "a guest coroutine takes a Guest& parameter (its frame comes from the "
                  "program's pool)");
    Guest* g = nullptr;
    ((g = g != nullptr ? g : guest_ptr(args)), ...);
    return frame_pool_of(*g).allocate(bytes);
  }
  static void operator delete(void* frame, std::size_t bytes) {
    FramePool::deallocate(frame, bytes);
  }

  std::suspend_always initial_suspend() noexcept { return {}; }
  auto final_suspend() noexcept {
    struct Resumer {
      std::coroutine_handle<> next;
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<>) noexcept { return next; }
      void await_resume() noexcept {}
    };
    return Resumer{continuation_ ? continuation_ : std::noop_coroutine()};
  }
  // Guest code reports failures through ucall ASSERT, never by throwing.
  void unhandled_exception() noexcept { std::terminate(); }

  void set_continuation(std::coroutine_handle<> c) { continuation_ = c; }

 private:
  std::coroutine_handle<> continuation_;
};

template <class T>
class ValuePromise : public PromiseBase {
 public:
  void return_value(T v) { value_ = std::move(v); }
  T take() { return std::move(value_); }

 private:
  T value_{};
};

template <>
class ValuePromise<void> : public PromiseBase {
 public:
  void return_void() {}
  void take() {}
};

}  // namespace detail

template <class T = void>
class [[nodiscard]] Task {
 public:
  struct promise_type : detail::ValuePromise<T> {
    Task get_return_object() {
      return Task(std::coroutine_handle<promise_type>::from_promise(*this));
    }
  };

  Task() = default;
  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  // Destroying a suspended task destroys its frame, and with it the tasks it is awaiting.
  ~Task() { reset(); }

  // Awaiting runs the task to completion; its value is the co_await's.
  auto operator co_await() && noexcept {
    struct Awaiter {
      std::coroutine_handle<promise_type> h;
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> parent) noexcept {
        h.promise().set_continuation(parent);
        return h;
      }
      T await_resume() { return h.promise().take(); }
    };
    return Awaiter{h_};
  }

  // For the adapter, which drives a top-level task itself.
  std::coroutine_handle<> handle() const { return h_; }
  bool done() const { return h_ && h_.done(); }
  explicit operator bool() const { return static_cast<bool>(h_); }
  void reset() {
    if (h_) std::exchange(h_, {}).destroy();
  }

 private:
  explicit Task(std::coroutine_handle<promise_type> h) : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

// A guest program's code: `GuestTask code(Guest& g) { ... co_await g.done(); }`.
using GuestTask = Task<void>;

}  // namespace tdxsim::guest
