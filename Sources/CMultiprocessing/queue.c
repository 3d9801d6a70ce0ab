// The process queue's shared ring. Every change happens under the queue's
// robust mutex, and a record becomes visible (count, used) only after all its
// bytes are written: a producer killed in the middle of a put leaves nothing
// behind, and the next locker, told EOWNERDEAD, finds the ring consistent.
#define _GNU_SOURCE
#include "CMultiprocessing.h"
#include "robust.h"
#include "wrapcopy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RECORD_TICKET (1ULL << 63)

static unsigned char *ring_of(mp_queue *queue) { return (unsigned char *)(queue + 1); }

static int lock(mp_queue *queue) { return mp_robust_lock(&queue->mutex); }

static int wait_on(mp_queue *queue, pthread_cond_t *cond, int64_t timeout_ns, const struct timespec *deadline) {
    return mp_robust_wait(cond, &queue->mutex, timeout_ns, deadline);
}

int mp_queue_init(mp_queue *queue, uint64_t capacity, uint64_t max_count) {
    memset(queue, 0, sizeof(*queue));
    int r = mp_robust_mutex_init(&queue->mutex, PTHREAD_MUTEX_NORMAL);
    if (!r) r = mp_shared_cond_init(&queue->not_empty);
    if (!r) r = mp_shared_cond_init(&queue->not_full);
    if (!r) r = mp_shared_cond_init(&queue->all_done);
    if (r) return r;
    queue->capacity = capacity;
    queue->max_count = max_count;
    return 0;
}

static void ring_copy_in(mp_queue *queue, uint64_t offset, const void *bytes, uint64_t length) {
    mp_wrap_copy_in(ring_of(queue), queue->capacity, offset % queue->capacity, bytes, length);
}

static void ring_copy_out(mp_queue *queue, uint64_t offset, void *bytes, uint64_t length) {
    mp_wrap_copy_out(ring_of(queue), queue->capacity, offset % queue->capacity, bytes, length);
}

int mp_queue_put(mp_queue *queue, const void *bytes, uint64_t length, int sock, int fd, int64_t timeout_ns) {
    uint64_t header = 8;
    uint64_t payload = fd >= 0 ? 16 : length; /* a ticket carries its number and the value's size */
    uint64_t needed = header + payload;
    if (needed > queue->capacity) return EMSGSIZE;
    struct timespec deadline;
    if (timeout_ns > 0) mp_deadline_after(timeout_ns, &deadline);
    int r = lock(queue);
    if (r) return r;
    uint64_t ticket = 0;
    for (;;) {
        while (!queue->ended && (queue->capacity - queue->used < needed ||
                                  (queue->max_count && queue->count >= queue->max_count))) {
            r = wait_on(queue, &queue->not_full, timeout_ns, &deadline);
            if (r) {
                pthread_mutex_unlock(&queue->mutex);
                return r;
            }
        }
        if (queue->ended) {
            pthread_mutex_unlock(&queue->mutex);
            return (int)queue->ended;
        }
        if (fd < 0) break;
        /* The descriptor travels first, tagged with its ticket, so a consumer
           can match it even if a producer died between the two steps. It is
           sent without waiting: the socket holds a few hundred descriptors,
           and only a get, which needs this lock, takes them out. A full
           socket is a full queue: wait for a get, then try again. The
           number is taken before the send, so a producer that dies after
           sending leaves a descriptor no later record claims. */
        ticket = queue->next_ticket++;
        if (mp_send_with_fds(sock, &ticket, sizeof ticket, &fd, 1, 1) >= 0) break;
        r = errno;
        if (r != EAGAIN && r != EWOULDBLOCK) {
            pthread_mutex_unlock(&queue->mutex);
            return r;
        }
        r = wait_on(queue, &queue->not_full, timeout_ns, &deadline);
        if (r) {
            pthread_mutex_unlock(&queue->mutex);
            return r;
        }
    }
    uint64_t tail = queue->head + queue->used;
    uint64_t word = payload | (fd >= 0 ? RECORD_TICKET : 0);
    if (fd >= 0) {
        uint64_t record[2] = {ticket, length};
        ring_copy_in(queue, tail, &word, 8);
        ring_copy_in(queue, tail + 8, record, 16);
    } else {
        ring_copy_in(queue, tail, &word, 8);
        ring_copy_in(queue, tail + 8, bytes, length);
    }
    /* Commit: only now does the record exist. */
    queue->used += needed;
    queue->count += 1;
    queue->unfinished += 1;
    pthread_cond_signal(&queue->not_empty);
    pthread_mutex_unlock(&queue->mutex);
    return 0;
}

/* How long a getter that finds the queue empty watches it before it sleeps
   (in pauses, about 5 us): in a stream the next put is usually that close,
   and a sleep costs the producer a futex wake on each put. */
#define EMPTY_SPINS 100

/* Receives descriptors until the one sent with `ticket`; older ones belong
   to puts whose producer died before committing, and are dropped. */
static int receive_ticket(int sock, uint64_t ticket, int *fd) {
    for (;;) {
        uint64_t got = 0;
        int fds[1];
        int nfds = 0;
        ssize_t n = mp_recv_with_fds(sock, &got, sizeof(got), fds, 1, &nfds);
        if (n <= 0) return n < 0 ? errno : EPIPE;
        if (nfds == 1 && got == ticket) {
            *fd = fds[0];
            return 0;
        }
        if (nfds == 1) close(fds[0]);
    }
}

/* The record at the head: its payload's size in the ring, and the size of
   the value it holds, or for a ticket, its number and the value's size.
   EBADMSG when its header claims more than the ring holds: the shared
   memory was overwritten. */
static int peek_head(mp_queue *queue, uint64_t *payload, uint64_t ticket[2]) {
    uint64_t word;
    ring_copy_out(queue, queue->head, &word, 8);
    *payload = word & ~RECORD_TICKET;
    int is_ticket = (word & RECORD_TICKET) != 0;
    if (8 + *payload > queue->used || (is_ticket && *payload != 16)) return EBADMSG;
    if (is_ticket)
        ring_copy_out(queue, queue->head + 8, ticket, 16);
    else
        ticket[1] = *payload;
    return is_ticket ? EINPROGRESS : 0;
}

/* Removes the head record of `payload` bytes; with `forget`, also from the
   count of unfinished puts, for a record that no get hands out. */
static void drop_head(mp_queue *queue, uint64_t payload, int forget) {
    queue->head = (queue->head + 8 + payload) % queue->capacity;
    queue->used -= 8 + payload;
    queue->count -= 1;
    pthread_cond_broadcast(&queue->not_full);
    if (forget && queue->unfinished > 0 && --queue->unfinished == 0) pthread_cond_broadcast(&queue->all_done);
}

/* Removes the head record unread: for a ticket, receives its descriptor and closes it. */
static int discard_head(mp_queue *queue, int sock) {
    uint64_t payload, ticket[2];
    int r = peek_head(queue, &payload, ticket);
    if (r == EINPROGRESS) {
        int fd = -1;
        r = receive_ticket(sock, ticket[0], &fd);
        if (fd >= 0) close(fd);
    }
    if (r) return r;
    drop_head(queue, payload, 1);
    return 0;
}

int mp_queue_get(mp_queue *queue, void *buffer, uint64_t capacity, uint64_t max_length, void **bytes,
                 uint64_t *length, int sock, int *fd, int64_t timeout_ns) {
    *bytes = NULL;
    *length = 0;
    *fd = -1;
    struct timespec deadline;
    if (timeout_ns > 0) mp_deadline_after(timeout_ns, &deadline);
    if (timeout_ns != 0) {
        for (int spin = 0; spin < EMPTY_SPINS && __atomic_load_n(&queue->count, __ATOMIC_RELAXED) == 0 &&
                           !__atomic_load_n(&queue->ended, __ATOMIC_RELAXED);
             spin++)
            mp_spin_pause();
    }
    int r = lock(queue);
    if (r) return r;
    while (queue->count == 0) {
        if (queue->ended) {
            pthread_mutex_unlock(&queue->mutex);
            return (int)queue->ended;
        }
        r = wait_on(queue, &queue->not_empty, timeout_ns, &deadline);
        if (r) {
            pthread_mutex_unlock(&queue->mutex);
            return r;
        }
    }
    uint64_t payload, ticket[2];
    int kind = peek_head(queue, &payload, ticket);
    if (kind == EBADMSG) {
        pthread_mutex_unlock(&queue->mutex);
        return EBADMSG;
    }
    *length = ticket[1];
    if (ticket[1] > max_length) {
        /* Refused before anything the size claims is allocated or mapped. */
        r = discard_head(queue, sock);
        pthread_mutex_unlock(&queue->mutex);
        return r ? r : EMSGSIZE;
    }
    if (kind == EINPROGRESS) {
        r = receive_ticket(sock, ticket[0], fd);
        if (r) {
            pthread_mutex_unlock(&queue->mutex);
            return r;
        }
    } else {
        void *copy = payload <= capacity ? buffer : malloc(payload ? payload : 1);
        if (!copy) {
            pthread_mutex_unlock(&queue->mutex);
            return ENOMEM;
        }
        ring_copy_out(queue, queue->head + 8, copy, payload);
        *bytes = copy;
    }
    drop_head(queue, payload, 0);
    pthread_mutex_unlock(&queue->mutex);
    return 0;
}

int mp_queue_task_done(mp_queue *queue) {
    int r = lock(queue);
    if (r) return r;
    if (queue->unfinished == 0) {
        pthread_mutex_unlock(&queue->mutex);
        return EINVAL;
    }
    queue->unfinished -= 1;
    if (queue->unfinished == 0) pthread_cond_broadcast(&queue->all_done);
    pthread_mutex_unlock(&queue->mutex);
    return 0;
}

int mp_queue_join(mp_queue *queue, int64_t timeout_ns) {
    struct timespec deadline;
    if (timeout_ns > 0) mp_deadline_after(timeout_ns, &deadline);
    int r = lock(queue);
    if (r) return r;
    while (queue->unfinished > 0) {
        r = wait_on(queue, &queue->all_done, timeout_ns, &deadline);
        if (r) {
            pthread_mutex_unlock(&queue->mutex);
            return r;
        }
    }
    pthread_mutex_unlock(&queue->mutex);
    return 0;
}

int mp_queue_end(mp_queue *queue, int reason, int immediate, int sock) {
    int r = lock(queue);
    if (r) return r;
    if (queue->ended != ESHUTDOWN) queue->ended = (uint64_t)reason;
    while (immediate && queue->count > 0 && !r) r = discard_head(queue, sock);
    pthread_cond_broadcast(&queue->not_empty);
    pthread_cond_broadcast(&queue->not_full);
    pthread_mutex_unlock(&queue->mutex);
    return r;
}

uint64_t mp_queue_count(mp_queue *queue) {
    if (lock(queue)) return 0;
    uint64_t count = queue->count;
    pthread_mutex_unlock(&queue->mutex);
    return count;
}
