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

/* A barrier counts rounds (`generation`). A round ends when its last party
   arrives (and its action, if any, has run), or when reset() ends it broken;
   `outcomes` keeps how the last 64 rounds ended (bit 0: the latest, 1:
   broken), so that a party woken after its round is over learns how it
   ended even if later rounds have begun. `broken` breaks the current round,
   and every wait after it, until a reset. A round whose last party runs the
   action is full (`value` == `limit`): parties that arrive then wait for the
   next round. */

static void end_round(mp_sync *sync, int broken) {
    sync->outcomes = sync->outcomes << 1 | (broken != 0);
    sync->generation += 1;
    sync->value = 0;
    sync->broken = 0;
    pthread_cond_broadcast(&sync->changed);
}

static void break_barrier(mp_sync *sync) {
    sync->broken = 1;
    pthread_cond_broadcast(&sync->changed);
}

/* How round `round`, which is over, ended: 0 (passed) or EPIPE (broken). A
   party more than 64 rounds late is told broken. */
static int outcome_of(const mp_sync *sync, uint64_t round) {
    uint64_t age = sync->generation - 1 - round;
    return age < 64 && !(sync->outcomes >> age & 1) ? 0 : EPIPE;
}

/* Waits until `done` says the wait is over. When the time runs out first,
   breaks the barrier and returns ETIMEDOUT. */
static int wait_barrier(mp_sync *sync, int64_t timeout_ns, const struct timespec *deadline,
                        int (*done)(const mp_sync *, uint64_t), uint64_t round) {
    while (!done(sync, round)) {
        int r = wait_changed(sync, timeout_ns < 0 ? -1 : (timeout_ns == 0 ? 0 : 1), deadline);
        if (r == ETIMEDOUT && !done(sync, round)) {
            break_barrier(sync);
            return ETIMEDOUT;
        }
        if (r && r != ETIMEDOUT) return r;
    }
    return 0;
}

static int round_has_room(const mp_sync *sync, uint64_t unused) {
    (void)unused;
    return sync->broken || sync->value < sync->limit;
}

static int round_over(const mp_sync *sync, uint64_t round) { return sync->broken || sync->generation != round; }

int mp_barrier_wait(mp_sync *sync, int64_t timeout_ns, int has_action, int64_t *index, uint64_t *round) {
    struct timespec deadline;
    if (timeout_ns > 0) mp_deadline_after(timeout_ns, &deadline);
    int r = lock_sync(sync);
    if (r) return r;
    r = wait_barrier(sync, timeout_ns, &deadline, round_has_room, 0);
    if (r == 0 && sync->broken) r = EPIPE;
    if (r) {
        pthread_mutex_unlock(&sync->mutex);
        return r;
    }
    uint64_t generation = sync->generation;
    *round = generation;
    *index = sync->limit - 1 - sync->value;
    sync->value += 1;
    if (sync->value == sync->limit) {
        if (has_action)
            r = EINPROGRESS;
        else
            end_round(sync, 0);
        pthread_mutex_unlock(&sync->mutex);
        return r;
    }
    r = wait_barrier(sync, timeout_ns, &deadline, round_over, generation);
    if (r == 0) r = sync->generation != generation ? outcome_of(sync, generation) : EPIPE;
    pthread_mutex_unlock(&sync->mutex);
    return r;
}

int mp_barrier_finish(mp_sync *sync, uint64_t round, int passed) {
    int r = lock_sync(sync);
    if (r) return r;
    if (sync->broken || sync->generation != round)
        r = EPIPE;
    else if (passed)
        end_round(sync, 0);
    else
        break_barrier(sync);
    pthread_mutex_unlock(&sync->mutex);
    return r;
}

void mp_barrier_abort(mp_sync *sync) {
    if (lock_sync(sync)) return;
    break_barrier(sync);
    pthread_mutex_unlock(&sync->mutex);
}

void mp_barrier_reset(mp_sync *sync) {
    if (lock_sync(sync)) return;
    if (sync->value > 0 || sync->broken) end_round(sync, 1);
    pthread_mutex_unlock(&sync->mutex);
}

int mp_barrier_state(mp_sync *sync, int64_t *waiting) {
    if (lock_sync(sync)) return 0;
    int broken = sync->broken != 0;
    *waiting = broken ? 0 : (sync->value < sync->limit ? sync->value : sync->limit - 1);
    pthread_mutex_unlock(&sync->mutex);
    return broken;
}
