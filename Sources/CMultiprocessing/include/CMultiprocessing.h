// Private C shim of swift-multiprocessing: the Linux calls that Swift's Glibc
// module does not import (GNU extensions, raw syscalls, CMSG macros), and the
// start-up hook that takes over a re-executed child before `main`.
#ifndef C_MULTIPROCESSING_H
#define C_MULTIPROCESSING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The environment variable that marks a re-executed child. The start-up hook
/// removes it before any Swift code runs.
#define MP_BOOT_ENV "SWIFT_MULTIPROCESSING_BOOT"

/// Descriptor numbers every child finds its channel on.
#define MP_FD_JOB 3     /* parent -> child: the job frame */
#define MP_FD_RESULT 4  /* child -> parent: the file the outcome frame is written into */
#define MP_FD_LIFELINE 5 /* EOF when the parent is gone */
#define MP_FD_FIRST_EXTRA 6

/// How the process was started: 0 = not a child of this library,
/// 1 = spawned, 2 = forked by the fork server, 3 = forked by `fork` start.
int mp_boot_mode(void);
void mp_set_boot_mode(int mode);
/// Number of extra descriptors (from MP_FD_FIRST_EXTRA on) the child received.
int mp_boot_extra_count(void);
void mp_set_boot_extra_count(int count);

/// pipe2(O_CLOEXEC).
int mp_pipe_cloexec(int fds[2]);
/// Sets the capacity of a pipe (F_SETPIPE_SZ); returns the new size or -1.
int mp_set_pipe_size(int fd, int size);
/// dup3(old, new, 0): like dup2 but an error when old == new.
int mp_dup_to(int oldfd, int newfd, int cloexec);
int mp_close_from(int lowfd);
int mp_pidfd_open(pid_t pid);
int mp_pidfd_send_signal(int pidfd, int sig);
long mp_thread_count(void);
int mp_affinity_cpu_count(void);
/// A close-on-exec descriptor of a new, nameless file in memory (memfd; an
/// unlinked temporary file where there is no memfd), freed when the last
/// descriptor of it closes. -1 with errno on failure.
int mp_anonymous_file(const char *name);

/// posix_spawn of /proc/self/exe with argv/envp, placing `fds[i]` at
/// descriptor MP_FD_JOB + i in the child and closing every other descriptor
/// above 2. Standard input becomes /dev/null. Returns 0 or an errno value.
int mp_spawn_self(pid_t *pid, const int *fds, int nfds, char *const argv[], char *const envp[]);

/// Sends `len` bytes and `nfds` descriptors (SCM_RIGHTS) in one sendmsg;
/// with `dontwait`, fails with EAGAIN rather than wait for room.
ssize_t mp_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds, int dontwait);
/// Receives up to `len` bytes and up to `maxfds` descriptors (made close-on-exec).
ssize_t mp_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds);

/// Starts a thread that kills this process (SIGKILL) when `fd` reports
/// end-of-file or hang-up: the parent's end of the lifeline is gone.
int mp_watch_lifeline(int fd);
/// Makes the kernel kill this process (SIGKILL) when the thread that forked it
/// exits (PR_SET_PDEATHSIG), and kills it at once if `parent` is already gone.
/// Only sound when that thread lives as long as its process: a main thread.
int mp_die_with_parent(pid_t parent);
/// Pooled shared memory segments: `header` points at the segment's
/// attachment count (an int64_t in the segment). Registered segments are
/// counted once more, before the fork, for every child forked while they are
/// registered.
int mp_segment_register(void *header);
void mp_segment_unregister(void *header);
void mp_segment_attach(void *header);
/// Uncounts this process; returns the processes still counted.
int64_t mp_segment_detach(void *header);
void mp_segment_set_attached(void *header, int64_t count);

/// Keeps large freed blocks in the C heap for reuse (glibc's mallopt), instead
/// of unmapping them and faulting in fresh zeroed pages at the next
/// allocation: for processes, such as pool workers, that allocate and free
/// the same large arrays over and over. Does nothing elsewhere.
void mp_keep_freed_memory_for_reuse(void);
/// Whether the calling thread is the process's main thread.
int mp_is_main_thread(void);
/// Calls, harmlessly, the C library functions a forked child calls first, so
/// that their lazy bindings are resolved once in the parent and inherited,
/// instead of being looked up again in every child.
void mp_bind_forked_child_symbols(void);
/// Ends the process at once with `code`, like `_exit`, through the
/// `exit_group` system call (bound in the parent by
/// `mp_bind_forked_child_symbols`).
__attribute__((noreturn)) void mp_exit_now(int code);
/// Number of threads this library started in the current process.
int mp_own_thread_count(void);

/// Runs the fork server's loop on `control` until the parent goes away (its
/// `lifeline` reports end-of-file, or `control` closes), then exits. Returns
/// only in a freshly forked worker, whose descriptors are in place (see MP_FD_*).
void mp_forkserver_serve(int control, int lifeline);

/// Writes `len` bytes, retrying on EINTR and short writes. 0 or errno.
int mp_write_all(int fd, const void *buf, size_t len);
/// Reads exactly `len` bytes. 0, errno, or -1 on end-of-file.
int mp_read_all(int fd, void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif

#include <pthread.h>

/// A single-producer, single-consumer ring of byte records in shared memory
/// (see ring.c), used by pool workers to hand results to the pool without a
/// system call each.
typedef struct mp_ring mp_ring;
/// Bytes to map for a ring of `capacity` bytes (a power of two).
size_t mp_ring_size(uint64_t capacity);
void mp_ring_init(mp_ring *ring, uint64_t capacity);
/// The largest record a ring takes: a quarter of its capacity, less a header.
uint32_t mp_ring_max_record(const mp_ring *ring);
/// Producer: appends a record. Returns -1 when it does not fit now (or ever,
/// past `mp_ring_max_record`), 1 when the consumer asked to be woken (the
/// caller wakes it), 0 otherwise.
int mp_ring_put(mp_ring *ring, const void *bytes, uint32_t length);
/// Consumer: the next record's length, -1 when the ring is empty, -2 when
/// the ring's memory is corrupt.
int64_t mp_ring_peek(mp_ring *ring);
/// Consumer: copies out the next record (of the length `mp_ring_peek` gave) and frees it.
void mp_ring_take(mp_ring *ring, void *bytes, uint32_t length);
/// Consumer, before sleeping: asks to be woken by the next put. Returns 1
/// (and withdraws the request) when records are already waiting.
int mp_ring_prepare_wait(mp_ring *ring);
/// Consumer, once awake: withdraws the request.
void mp_ring_end_wait(mp_ring *ring);

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
    uint64_t closed;
} mp_queue;

/// Initialises a queue whose ring holds `capacity` bytes after the header.
int mp_queue_init(mp_queue *queue, uint64_t capacity, uint64_t max_count);
/// Appends a record. With `fd` >= 0 the record is a ticket for a large value
/// whose descriptor is sent on `sock` first. `timeout_ns` < 0 waits forever,
/// 0 does not wait. Returns 0, ETIMEDOUT (full), EPIPE (closed), EMSGSIZE
/// (larger than the ring), or another errno.
int mp_queue_put(mp_queue *queue, const void *bytes, uint64_t length, int sock, int fd, int64_t timeout_ns);
/// Removes the oldest record into `buffer` when it fits in `capacity` bytes,
/// else into a malloc'ed buffer (`*bytes`, `*length`), or for a ticket,
/// receives its descriptor into `*fd` (else -1). Returns 0, ETIMEDOUT
/// (empty), EPIPE (closed and empty), or another errno.
int mp_queue_get(mp_queue *queue, void *buffer, uint64_t capacity, void **bytes, uint64_t *length, int sock,
                 int *fd, int64_t timeout_ns);
/// Marks one record done (for join); EINVAL when more are marked than were put.
int mp_queue_task_done(mp_queue *queue);
/// Waits until every record put has been marked done.
int mp_queue_join(mp_queue *queue, int64_t timeout_ns);
/// Closes the queue: puts fail, gets drain what is left.
void mp_queue_close(mp_queue *queue);
/// The number of records, read under the lock.
uint64_t mp_queue_count(mp_queue *queue);

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
