// The shared state of process locks and conditions (lock.c).
#ifndef MP_LOCK_H
#define MP_LOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A lock shared by processes: a robust, process-shared, error-checking (or
/// recursive) mutex, and who holds it. `owner` and `depth` are written by the
/// holder and may be read by anyone.
typedef struct {
    pthread_mutex_t mutex;
    uint64_t owner;    /* the holder: its pid << 32 | its thread id; 0 when free */
    int64_t depth;     /* how many times the holder took it: 0 when free */
    int64_t recursive; /* whether the holder may take it again */
} mp_lock;

/// A condition variable with its own (not recursive) lock.
typedef struct {
    mp_lock lock;
    pthread_cond_t changed;
} mp_condition;

int mp_lock_init(mp_lock *lock, int recursive);
/// Takes the lock: once when `timeout_ns` is 0, as long as it takes when < 0,
/// else at most that long. Returns 0; EOWNERDEAD (taken: the previous owner
/// died holding it); EBUSY or ETIMEDOUT (not taken); EDEADLK (the calling
/// thread holds this lock, which is not recursive); or another errno.
int mp_lock_acquire(mp_lock *lock, int64_t timeout_ns);
/// Releases the lock once; EPERM when the calling thread does not hold it.
int mp_lock_release(mp_lock *lock);
/// Who holds the lock now: pid and thread id (0 when free), and the depth.
/// `*mine` says whether it is the calling thread.
int64_t mp_lock_owner(mp_lock *lock, int32_t *pid, int32_t *thread, int *mine);

int mp_condition_init(mp_condition *condition);
/// Releases the condition's lock, waits to be notified (or for `timeout_ns`,
/// as for `mp_lock_acquire`), and takes the lock again. Returns 0,
/// ETIMEDOUT, EPERM (the calling thread does not hold the lock), or another errno.
int mp_condition_wait(mp_condition *condition, int64_t timeout_ns);
/// Wakes up to `count` waiters, every one when `count` < 0.
void mp_condition_notify(mp_condition *condition, int64_t count);

#ifdef __cplusplus
}
#endif
#endif
