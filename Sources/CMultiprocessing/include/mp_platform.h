// The Linux calls that Swift's Glibc module does not import, one wrapper each (shim.c).
#ifndef MP_PLATFORM_H
#define MP_PLATFORM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// pipe2(O_CLOEXEC).
int mp_pipe_cloexec(int fds[2]);
/// Sets the capacity of a pipe (F_SETPIPE_SZ); returns the new size or -1.
int mp_set_pipe_size(int fd, int size);
/// dup3(old, new, 0): like dup2 but an error when old == new.
int mp_pidfd_open(pid_t pid);
int mp_pidfd_send_signal(int pidfd, int sig);
/// The wait status of the process behind `pidfd` once it has ended and been
/// reaped, by whichever process reaped it (PIDFD_GET_INFO, Linux 6.15). 0, or
/// -1 with errno: EAGAIN while it has not been reaped, others where the
/// kernel cannot say.
int mp_pidfd_exit_status(int pidfd, int *status);
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
/// end-of-file or hang-up: the parent's end of the lifeline is gone. On Linux
/// it first kills the processes this one started and their descendants (it
/// becomes a subreaper, PR_SET_CHILD_SUBREAPER, only then: processes that had
/// already left the tree, orphaned earlier, are out of reach).
int mp_watch_lifeline(int fd);
/// Makes the kernel kill this process (SIGKILL) when the thread that forked it
/// exits (PR_SET_PDEATHSIG), and kills it at once if `parent` is already gone.
/// Only sound when that thread lives as long as its process: a main thread.
int mp_die_with_parent(pid_t parent);
/// Keeps large freed blocks in the C heap for reuse (glibc's mallopt), instead
/// of unmapping them and faulting in fresh zeroed pages at the next
/// allocation: for processes, such as pool workers, that allocate and free
/// the same large arrays over and over. Does nothing elsewhere.
void mp_keep_freed_memory_for_reuse(void);
/// Bytes of the C heap in use (glibc's mallinfo2 `uordblks`); 0 elsewhere.
size_t mp_heap_bytes_in_use(void);
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
/// Gives the calling thread an empty signal mask and every signal its default
/// disposition, whatever the process that started it had blocked or caught;
/// SIGPIPE stays ignored if it was (the library writes to pipes whose reader
/// may be gone), and a handler of a crash signal (SIGSEGV, SIGABRT...) stays:
/// it is a crash reporter. For a process the library starts by forking.
void mp_reset_signals(void);
/// Holds the fork gate (shared) until `mp_fork_gate_leave`: every fork of
/// this process waits until no thread holds it, so that a child never
/// inherits a runtime lock the holder had taken. For the library's threads
/// that run Swift code between waits in the kernel (a pool's engine); not
/// recursive.
void mp_fork_gate_enter(void);
/// Lets go of the fork gate, before a wait in the kernel.
void mp_fork_gate_leave(void);
/// Names the calling thread (at most 15 bytes are kept on Linux).
void mp_set_thread_name(const char *name);
/// Names another thread of this process (Linux only; elsewhere a thread
/// names itself with mp_set_thread_name).
void mp_name_thread(pthread_t thread, const char *name);
/// The calling thread's id (gettid), as /proc/self/task names it; -1 where
/// there is none.
int mp_current_thread_id(void);
/// Number of threads this library started in the current process.
int mp_own_thread_count(void);

/// Writes `len` bytes, retrying on EINTR and short writes. 0 or errno.
int mp_write_all(int fd, const void *buf, size_t len);
/// Reads exactly `len` bytes. 0, errno, or -1 on end-of-file.
int mp_read_all(int fd, void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
