// The one robust mutex of the shim, shared by the locks and conditions
// (lock.c), the queue (queue.c) and the semaphores, events and barriers
// (sync.c): a process-shared mutex whose dead owner is recovered from, taken
// after a short spin, and the timed waits on it.
#ifndef MP_ROBUST_H
#define MP_ROBUST_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

/// Initialises a robust, process-shared mutex of `type` (PTHREAD_MUTEX_NORMAL,
/// _ERRORCHECK or _RECURSIVE).
static inline int mp_robust_mutex_init(pthread_mutex_t *mutex, int type) {
    pthread_mutexattr_t attributes;
    pthread_mutexattr_init(&attributes);
    pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_settype(&attributes, type);
    int r = pthread_mutex_init(mutex, &attributes);
    pthread_mutexattr_destroy(&attributes);
    return r;
}

/// Initialises a process-shared condition variable on CLOCK_MONOTONIC.
static inline int mp_shared_cond_init(pthread_cond_t *cond) {
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    int r = pthread_cond_init(cond, &attributes);
    pthread_condattr_destroy(&attributes);
    return r;
}

/// A pause in a spin loop: tells the CPU, and a hypervisor, that this thread waits.
static inline void mp_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// Whether `mutex` seems to be held, read without taking it, so that a
/// spinning locker waits on its own copy of the cache line instead of
/// taking the line away from the holder with a trylock each turn.
///
/// This is the shim's only read of a C library's private field: glibc's
/// lock word (`__data.__lock`, the holder's thread id, 0 when free). It is a
/// hint and may be stale; the trylock that follows decides. Elsewhere the
/// answer is "maybe free", and the spin is one trylock a turn.
static inline int mp_mutex_seems_held(pthread_mutex_t *mutex) {
#ifdef __GLIBC__
    return __atomic_load_n(&mutex->__data.__lock, __ATOMIC_RELAXED) != 0;
#else
    (void)mutex;
    return 0;
#endif
}

/// How many times a locker tries a held lock again before it sleeps. A
/// queue's or a lock's critical section is a few hundred nanoseconds, far
/// less than a futex sleep and wake-up, so a short spin usually wins; a
/// robust mutex cannot be made adaptive by glibc, so the spin is done here.
#define MP_LOCK_SPINS 200

/// Waits for `mutex` until `deadline` (CLOCK_MONOTONIC).
static inline int mp_mutex_lock_until(pthread_mutex_t *mutex, const struct timespec *deadline) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 30)
    return pthread_mutex_clocklock(mutex, CLOCK_MONOTONIC, deadline);
#else
    /* Only CLOCK_REALTIME deadlines here: move the monotonic one over. */
    struct timespec now, realtime;
    clock_gettime(CLOCK_MONOTONIC, &now);
    clock_gettime(CLOCK_REALTIME, &realtime);
    int64_t left = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000000000 + (deadline->tv_nsec - now.tv_nsec);
    if (left < 0) left = 0;
    realtime.tv_sec += left / 1000000000;
    realtime.tv_nsec += left % 1000000000;
    if (realtime.tv_nsec >= 1000000000) {
        realtime.tv_sec += 1;
        realtime.tv_nsec -= 1000000000;
    }
    return pthread_mutex_timedlock(mutex, &realtime);
#endif
}

/// Takes `mutex`: once when `timeout_ns` is 0; else after a short spin, as
/// long as it takes when `timeout_ns` < 0, or until `deadline`
/// (CLOCK_MONOTONIC). Returns 0; EOWNERDEAD when its owner died holding it
/// (it is taken and marked consistent again, but what it guards may be half
/// updated); EBUSY or ETIMEDOUT when it was not taken; EDEADLK for an
/// error-checking mutex the calling thread holds; or another errno.
static inline int mp_robust_acquire(pthread_mutex_t *mutex, int64_t timeout_ns, const struct timespec *deadline) {
    int r = pthread_mutex_trylock(mutex);
    for (int spin = 0; r == EBUSY && timeout_ns != 0 && spin < MP_LOCK_SPINS; spin++) {
        mp_spin_pause();
        if (!mp_mutex_seems_held(mutex)) r = pthread_mutex_trylock(mutex);
    }
    if (r == EBUSY && timeout_ns != 0)
        r = timeout_ns < 0 ? pthread_mutex_lock(mutex) : mp_mutex_lock_until(mutex, deadline);
    if (r == EOWNERDEAD) pthread_mutex_consistent(mutex);
    return r;
}

/// Locks `mutex`, as long as it takes; if its owner died holding it, marks
/// it consistent and goes on (for state that only whole operations change).
static inline int mp_robust_lock(pthread_mutex_t *mutex) {
    int r = mp_robust_acquire(mutex, -1, NULL);
    return r == EOWNERDEAD ? 0 : r;
}

/// The CLOCK_MONOTONIC time `timeout_ns` from now.
static inline void mp_deadline_after(int64_t timeout_ns, struct timespec *deadline) {
    clock_gettime(CLOCK_MONOTONIC, deadline);
    deadline->tv_sec += timeout_ns / 1000000000;
    deadline->tv_nsec += timeout_ns % 1000000000;
    if (deadline->tv_nsec >= 1000000000) {
        deadline->tv_sec += 1;
        deadline->tv_nsec -= 1000000000;
    }
}

/// Waits on `cond` (created with CLOCK_MONOTONIC): forever when `timeout_ns`
/// < 0, not at all when 0 (ETIMEDOUT), else until `deadline`. Recovers the
/// mutex if its owner died.
static inline int mp_robust_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, int64_t timeout_ns,
                                 const struct timespec *deadline) {
    if (timeout_ns == 0) return ETIMEDOUT;
    int r = timeout_ns < 0 ? pthread_cond_wait(cond, mutex) : pthread_cond_timedwait(cond, mutex, deadline);
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(mutex);
        r = 0;
    }
    return r;
}

#endif
