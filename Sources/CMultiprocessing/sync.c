// Semaphores, events and barriers shared by processes: a counter under a
// robust mutex. A waiter that finds the mutex's owner dead marks it
// consistent and goes on: the counter is only changed by whole operations.
#define _GNU_SOURCE
#include "CMultiprocessing.h"
#include "robust.h"

#include <errno.h>
#include <string.h>
#include <time.h>

static int lock_sync(mp_sync *sync) { return mp_robust_lock(&sync->mutex); }

static int wait_changed(mp_sync *sync, int64_t timeout_ns, const struct timespec *deadline) {
    return mp_robust_wait(&sync->changed, &sync->mutex, timeout_ns, deadline);
}

int mp_sync_init(mp_sync *sync, int64_t value, int64_t limit) {
    memset(sync, 0, sizeof(*sync));
    int r = mp_robust_mutex_init(&sync->mutex, PTHREAD_MUTEX_NORMAL);
    if (!r) r = mp_shared_cond_init(&sync->changed);
    sync->value = value;
    sync->limit = limit;
    return r;
}

int64_t mp_sync_value(mp_sync *sync) {
    if (lock_sync(sync)) return 0;
    int64_t value = sync->value;
    pthread_mutex_unlock(&sync->mutex);
    return value;
}

int mp_semaphore_acquire(mp_sync *sync, int64_t timeout_ns) {
    struct timespec deadline;
    if (timeout_ns > 0) mp_deadline_after(timeout_ns, &deadline);
    int r = lock_sync(sync);
    if (r) return r;
    while (sync->value <= 0) {
        r = wait_changed(sync, timeout_ns, &deadline);
        if (r) {
            pthread_mutex_unlock(&sync->mutex);
            return r;
        }
    }
    sync->value -= 1;
    pthread_mutex_unlock(&sync->mutex);
    return 0;
}

int mp_semaphore_release(mp_sync *sync) {
    int r = lock_sync(sync);
    if (r) return r;
    if (sync->limit > 0 && sync->value >= sync->limit) {
        pthread_mutex_unlock(&sync->mutex);
        return EOVERFLOW;
    }
    sync->value += 1;
    pthread_cond_signal(&sync->changed);
    pthread_mutex_unlock(&sync->mutex);
    return 0;
}

void mp_event_set(mp_sync *sync, int flag) {
    if (lock_sync(sync)) return;
    sync->value = flag ? 1 : 0;
    if (flag) pthread_cond_broadcast(&sync->changed);
    pthread_mutex_unlock(&sync->mutex);
}

int mp_event_wait(mp_sync *sync, int64_t timeout_ns) {
    struct timespec deadline;
    if (timeout_ns > 0) mp_deadline_after(timeout_ns, &deadline);
    int r = lock_sync(sync);
    if (r) return r;
    while (!sync->value) {
        r = wait_changed(sync, timeout_ns, &deadline);
        if (r) {
            pthread_mutex_unlock(&sync->mutex);
            return r;
        }
    }
    pthread_mutex_unlock(&sync->mutex);
    return 0;
}

int mp_barrier_wait(mp_sync *sync, int64_t timeout_ns, int64_t *index) {
    struct timespec deadline;
    if (timeout_ns > 0) mp_deadline_after(timeout_ns, &deadline);
    int r = lock_sync(sync);
    if (r) return r;
    if (sync->broken) {
        pthread_mutex_unlock(&sync->mutex);
        return EPIPE;
    }
    uint64_t generation = sync->generation;
    *index = sync->limit - 1 - sync->value;
    sync->value += 1;
    if (sync->value == sync->limit) {
        sync->value = 0;
        sync->generation += 1;
        pthread_cond_broadcast(&sync->changed);
        pthread_mutex_unlock(&sync->mutex);
        return 0;
    }
    while (sync->generation == generation && !sync->broken) {
        r = wait_changed(sync, timeout_ns < 0 ? -1 : (timeout_ns == 0 ? 0 : 1), &deadline);
        if (r == ETIMEDOUT) {
            /* As in Python: a party that times out breaks the barrier for all. */
            sync->broken = 1;
            pthread_cond_broadcast(&sync->changed);
            pthread_mutex_unlock(&sync->mutex);
            return ETIMEDOUT;
        }
        if (r) {
            pthread_mutex_unlock(&sync->mutex);
            return r;
        }
    }
    r = sync->generation == generation ? EPIPE : 0;
    pthread_mutex_unlock(&sync->mutex);
    return r;
}

void mp_barrier_set_broken(mp_sync *sync, int broken) {
    if (lock_sync(sync)) return;
    sync->broken = broken;
    if (!broken) sync->value = 0;
    pthread_cond_broadcast(&sync->changed);
    pthread_mutex_unlock(&sync->mutex);
}
