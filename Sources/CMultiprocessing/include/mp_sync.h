// The shared state of semaphores, events and barriers (sync.c).
#ifndef MP_SYNC_H
#define MP_SYNC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The shared state of a semaphore, an event or a barrier: a counter under a
/// robust process-shared mutex, with a process-shared condition variable.
typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t changed;
    int64_t value;       /* semaphore: permits; event: 0 or 1; barrier: arrived */
    int64_t limit;       /* bounded semaphore: its maximum (0: none); barrier: parties */
    uint64_t generation; /* barrier: rounds ended */
    int64_t broken;      /* barrier: broken by a timeout, an abort or a failed action */
    uint64_t outcomes;   /* barrier: how the last 64 rounds ended, 1 bits broken (sync.c) */
} mp_sync;

int mp_sync_init(mp_sync *sync, int64_t value, int64_t limit);
int64_t mp_sync_value(mp_sync *sync);
/// Takes a permit; 0 or ETIMEDOUT. `timeout_ns` < 0 waits forever, 0 does not wait.
int mp_semaphore_acquire(mp_sync *sync, int64_t timeout_ns);
/// Returns a permit; EOVERFLOW when a bounded semaphore would exceed its maximum.
int mp_semaphore_release(mp_sync *sync);
void mp_event_set(mp_sync *sync, int flag);
/// Waits for the flag; 0 or ETIMEDOUT.
int mp_event_wait(mp_sync *sync, int64_t timeout_ns);
/// Waits for all parties. Returns 0 when the round passed, with this party's
/// arrival index in `*index`; EINPROGRESS when this party arrived last and
/// `has_action`: it runs the action, then calls `mp_barrier_finish` with
/// `*round`; ETIMEDOUT (and the barrier is now broken); or EPIPE (the
/// barrier is broken, or the round was reset).
int mp_barrier_wait(mp_sync *sync, int64_t timeout_ns, int has_action, int64_t *index, uint64_t *round);
/// Ends `round` after its action: releases every party when `passed`, else
/// breaks the barrier. Returns 0, or EPIPE when the round was broken or reset meanwhile.
int mp_barrier_finish(mp_sync *sync, uint64_t round, int passed);
/// Breaks the barrier: every waiter, and every later wait until a reset, gets EPIPE.
void mp_barrier_abort(mp_sync *sync);
/// Ends the current round broken, waking its waiters with EPIPE, and starts a new one.
void mp_barrier_reset(mp_sync *sync);
/// Whether the barrier is broken, and how many parties wait in `*waiting`.
int mp_barrier_state(mp_sync *sync, int64_t *waiting);

#ifdef __cplusplus
}
#endif
#endif
