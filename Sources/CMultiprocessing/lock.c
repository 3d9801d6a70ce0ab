// Locks and condition variables shared by processes. Each lock is the
// shim's robust mutex (robust.h), error-checking or recursive, plus a record
// of who holds it and how often, kept by lock and unlock themselves: a
// release by a thread that does not hold the lock is refused before the
// mutex is touched, and a description can name the holder.
#define _GNU_SOURCE
#include "CMultiprocessing.h"
#include "robust.h"

#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The calling thread as a lock records it: pid << 32 | thread id. Asking the
   kernel costs two system calls, so each thread remembers it; a forked child
   (whose one thread has new ids) forgets it in an atfork handler. */
static __thread uint64_t remembered_identity;
static pthread_once_t forget_on_fork_once = PTHREAD_ONCE_INIT;

static void forget_identity(void) { remembered_identity = 0; }

static void forget_on_fork(void) { pthread_atfork(NULL, NULL, forget_identity); }

static uint64_t identity(void) {
    uint64_t id = remembered_identity;
    if (__builtin_expect(id == 0, 0)) {
        pthread_once(&forget_on_fork_once, forget_on_fork);
#if defined(__linux__)
        uint32_t thread = (uint32_t)syscall(SYS_gettid);
#else
        uint64_t long_id = 0;
        pthread_threadid_np(NULL, &long_id);
        uint32_t thread = (uint32_t)long_id;
#endif
        id = (uint64_t)(uint32_t)getpid() << 32 | thread;
        remembered_identity = id;
    }
    return id;
}

static void record_holder(mp_lock *lock, uint64_t owner, int64_t depth) {
    __atomic_store_n(&lock->depth, depth, __ATOMIC_RELAXED);
    __atomic_store_n(&lock->owner, owner, __ATOMIC_RELAXED);
}

/* Whether the calling thread holds `lock`. Only the holder writes its own
   identity there, and clears it before it lets go, so no other thread can
   read that identity even without the mutex. */
static int held_by_caller(mp_lock *lock) { return __atomic_load_n(&lock->owner, __ATOMIC_RELAXED) == identity(); }

int mp_lock_init(mp_lock *lock, int recursive) {
    memset(lock, 0, sizeof(*lock));
    lock->recursive = recursive != 0;
    return mp_robust_mutex_init(&lock->mutex, recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK);
}

int mp_lock_acquire(mp_lock *lock, int64_t timeout_ns) {
    struct timespec deadline;
    if (timeout_ns > 0) mp_deadline_after(timeout_ns, &deadline);
    int r = mp_robust_acquire(&lock->mutex, timeout_ns, &deadline);
    if (r == 0)
        record_holder(lock, identity(), __atomic_load_n(&lock->depth, __ATOMIC_RELAXED) + 1);
    else if (r == EOWNERDEAD)
        record_holder(lock, identity(), 1); /* the dead owner's depth goes with it */
    return r;
}

int mp_lock_release(mp_lock *lock) {
    if (!held_by_caller(lock)) return EPERM;
    uint64_t owner = identity();
    int64_t depth = __atomic_load_n(&lock->depth, __ATOMIC_RELAXED);
    record_holder(lock, depth > 1 ? owner : 0, depth - 1);
    int r = pthread_mutex_unlock(&lock->mutex);
    if (r) record_holder(lock, owner, depth);
    return r;
}

int64_t mp_lock_owner(mp_lock *lock, int32_t *pid, int32_t *thread, int *mine) {
    uint64_t owner = __atomic_load_n(&lock->owner, __ATOMIC_RELAXED);
    *pid = (int32_t)(owner >> 32);
    *thread = (int32_t)(uint32_t)owner;
    *mine = owner != 0 && owner == identity();
    return owner ? __atomic_load_n(&lock->depth, __ATOMIC_RELAXED) : 0;
}

int mp_condition_init(mp_condition *condition) {
    int r = mp_lock_init(&condition->lock, 0);
    return r ? r : mp_shared_cond_init(&condition->changed);
}

int mp_condition_wait(mp_condition *condition, int64_t timeout_ns) {
    mp_lock *lock = &condition->lock;
    if (!held_by_caller(lock)) return EPERM;
    struct timespec deadline;
    if (timeout_ns > 0) mp_deadline_after(timeout_ns, &deadline);
    uint64_t owner = identity();
    /* The wait lets the mutex go and takes it again, whatever it returns. */
    record_holder(lock, 0, 0);
    int r = mp_robust_wait(&condition->changed, &lock->mutex, timeout_ns, &deadline);
    record_holder(lock, owner, 1);
    return r;
}

void mp_condition_notify(mp_condition *condition, int64_t count) {
    if (count < 0) {
        pthread_cond_broadcast(&condition->changed);
        return;
    }
    /* Each signal wakes one more waiter, if one is left. */
    for (int64_t i = 0; i < count; i++) pthread_cond_signal(&condition->changed);
}
