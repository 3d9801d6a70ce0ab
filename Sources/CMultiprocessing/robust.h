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

/// Locks `mutex`; if its owner died holding it, marks it consistent and goes on.
static inline int mp_robust_lock(pthread_mutex_t *mutex) {
    int r = pthread_mutex_lock(mutex);
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
