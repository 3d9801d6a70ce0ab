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
    uint64_t generation; /* barrier: rounds completed */
    int64_t broken;      /* barrier: broken by a timeout or an abort */
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
/// Waits for all parties; 0 (with this party's arrival index in `*index`),
/// ETIMEDOUT (and the barrier is broken), or EPIPE (the barrier is broken).
int mp_barrier_wait(mp_sync *sync, int64_t timeout_ns, int64_t *index);
/// Breaks the barrier (1) or repairs it for a new round (0).
void mp_barrier_set_broken(mp_sync *sync, int broken);

#ifdef __cplusplus
}
#endif
#endif
