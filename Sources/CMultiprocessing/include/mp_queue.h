// The shared state of a process queue (queue.c).
#ifndef MP_QUEUE_H
#define MP_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The shared state of a process queue: a byte ring of records, guarded by a
/// robust process-shared mutex, with process-shared condition variables.
/// Lives at the start of a shared memory segment; the ring follows it.
typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    pthread_cond_t all_done;
    uint64_t capacity;   /* bytes in the ring */
    uint64_t head;       /* offset of the oldest record */
    uint64_t used;       /* bytes used by records */
    uint64_t count;      /* records */
    uint64_t max_count;  /* 0: unbounded */
    uint64_t unfinished; /* records put and not yet marked done */
    uint64_t next_ticket;
    uint64_t ended;      /* 0; EPIPE once closed; ESHUTDOWN once shut down */
} mp_queue;

/// Initialises a queue whose ring holds `capacity` bytes after the header.
int mp_queue_init(mp_queue *queue, uint64_t capacity, uint64_t max_count);
/// Appends a record. With `fd` >= 0 the record is a ticket for a large value
/// whose descriptor is sent on `sock` first. `timeout_ns` < 0 waits forever,
/// 0 does not wait. Returns 0, ETIMEDOUT (full), EPIPE (closed), ESHUTDOWN
/// (shut down), EMSGSIZE (larger than the ring), or another errno.
int mp_queue_put(mp_queue *queue, const void *bytes, uint64_t length, int sock, int fd, int64_t timeout_ns);
/// Removes the oldest record into `buffer` when it fits in `capacity` bytes,
/// else into a malloc'ed buffer (`*bytes`, `*length`), or for a ticket,
/// receives its descriptor into `*fd` (else -1). Returns 0, ETIMEDOUT
/// (empty), EPIPE (closed and empty), ESHUTDOWN (shut down and empty),
/// EMSGSIZE (the value's size, in `*length`, is above `max_length`: the
/// record is discarded and counts as done), EBADMSG (the ring's memory was
/// overwritten), or another errno.
int mp_queue_get(mp_queue *queue, void *buffer, uint64_t capacity, uint64_t max_length, void **bytes,
                 uint64_t *length, int sock, int *fd, int64_t timeout_ns);
/// Marks one record done (for join); EINVAL when more are marked than were put.
int mp_queue_task_done(mp_queue *queue);
/// Waits until every record put has been marked done.
int mp_queue_join(mp_queue *queue, int64_t timeout_ns);
/// Ends the queue for `reason`, EPIPE (closed) or ESHUTDOWN (shut down, which
/// a close does not undo): puts fail with it, gets drain what is left and
/// then fail with it. With `immediate`, what is left is discarded now, and
/// counts as done; its descriptors are received on `sock` and closed. Wakes
/// every waiter. Returns 0 or an errno.
int mp_queue_end(mp_queue *queue, int reason, int immediate, int sock);
/// The number of records, read under the lock.
uint64_t mp_queue_count(mp_queue *queue);

#ifdef __cplusplus
}
#endif
#endif
