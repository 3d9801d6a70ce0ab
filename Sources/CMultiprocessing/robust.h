// Helpers shared by the queue and the synchronisation objects: a robust
// process-shared mutex whose dead owner is recovered from, and timed waits.
#ifndef MP_ROBUST_H
#define MP_ROBUST_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

/// Initialises a robust, process-shared mutex.
static inline int mp_robust_mutex_init(pthread_mutex_t *mutex) {
    pthread_mutexattr_t attributes;
    pthread_mutexattr_init(&attributes);
    pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
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

/// How many times a locker tries a held lock again before it sleeps. A
/// queue's or a lock's critical section is a few hundred nanoseconds, far
/// less than a futex sleep and wake-up, so a short spin usually wins; a
/// robust mutex cannot be made adaptive by glibc, so the spin is done here.
#define MP_LOCK_SPINS 200

/// Locks `mutex`; if its owner died holding it, marks it consistent and goes on.
static inline int mp_robust_lock(pthread_mutex_t *mutex) {
    int r;
    for (int spin = 0; spin < MP_LOCK_SPINS; spin++) {
#ifdef __GLIBC__
        /* Look before trying, so that waiting does not bounce the lock's cache line. */
        if (__atomic_load_n(&mutex->__data.__lock, __ATOMIC_RELAXED) != 0) {
            mp_spin_pause();
            continue;
        }
#endif
        r = pthread_mutex_trylock(mutex);
        if (r != EBUSY) goto locked;
        mp_spin_pause();
    }
    r = pthread_mutex_lock(mutex);
locked:
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(mutex);
        r = 0;
    }
    return r;
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
