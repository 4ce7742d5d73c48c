// Clang thread-safety annotations (-Wthread-safety), spelled TDXSIM_*.
//
// They write the lock discipline into the types so that clang proves it at compile time:
// which capability guards which field, which function needs which lock held and in which
// mode. The clang preset's build turns every violation into an error. GCC has no such analysis,
// so there the macros expand to nothing. The run-time half of the same discipline is the
// assert_held*() family of base/lock.h (KVM's lockdep_assert_held*), which every build keeps.
//
// Reference: https://clang.llvm.org/docs/ThreadSafetyAnalysis.html
#pragma once

#if defined(__clang__)
#define TDXSIM_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define TDXSIM_THREAD_ANNOTATION(x)
#endif

// A type whose objects are locks; `x` names the kind in diagnostics ("mutex").
#define TDXSIM_CAPABILITY(x) TDXSIM_THREAD_ANNOTATION(capability(x))
// An RAII type that holds a capability for its lifetime.
#define TDXSIM_SCOPED_CAPABILITY TDXSIM_THREAD_ANNOTATION(scoped_lockable)

// Data that may be touched only with the capability held (writes need it exclusively).
#define TDXSIM_GUARDED_BY(x) TDXSIM_THREAD_ANNOTATION(guarded_by(x))
// The pointee (not the pointer) is guarded.
#define TDXSIM_PT_GUARDED_BY(x) TDXSIM_THREAD_ANNOTATION(pt_guarded_by(x))

// The caller must hold the capabilities, exclusively / at least shared.
#define TDXSIM_REQUIRES(...) TDXSIM_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define TDXSIM_REQUIRES_SHARED(...) \
  TDXSIM_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
// The caller must NOT hold the capabilities (the function takes them itself).
#define TDXSIM_EXCLUDES(...) TDXSIM_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))

// The function acquires / releases the capabilities (no argument: `this`).
#define TDXSIM_ACQUIRE(...) TDXSIM_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define TDXSIM_ACQUIRE_SHARED(...) \
  TDXSIM_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define TDXSIM_RELEASE(...) TDXSIM_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TDXSIM_RELEASE_SHARED(...) \
  TDXSIM_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
// Releases whichever mode is held (scoped-capability destructors).
#define TDXSIM_RELEASE_GENERIC(...) \
  TDXSIM_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))

// The function acquires the capabilities iff it returns the first argument (true/false).
// Clang follows the result only through a bool/int/pointer branch condition.
#define TDXSIM_TRY_ACQUIRE(...) TDXSIM_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define TDXSIM_TRY_ACQUIRE_SHARED(...) \
  TDXSIM_THREAD_ANNOTATION(try_acquire_shared_capability(__VA_ARGS__))

// A run-time check that aborts unless the capability is held; afterwards clang treats it
// as held for the rest of the scope.
#define TDXSIM_ASSERT_CAPABILITY(x) TDXSIM_THREAD_ANNOTATION(assert_capability(x))
#define TDXSIM_ASSERT_SHARED_CAPABILITY(x) TDXSIM_THREAD_ANNOTATION(assert_shared_capability(x))

// The function returns a reference to the capability (accessors such as `mu()`).
#define TDXSIM_RETURN_CAPABILITY(x) TDXSIM_THREAD_ANNOTATION(lock_returned(x))

// Opts one function out of the analysis. Every use says why in a comment.
#define TDXSIM_NO_THREAD_SAFETY_ANALYSIS TDXSIM_THREAD_ANNOTATION(no_thread_safety_analysis)
