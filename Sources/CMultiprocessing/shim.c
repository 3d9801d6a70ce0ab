// The Linux calls Swift's Glibc module does not import, wrapped one each.
#define _GNU_SOURCE
#include "CMultiprocessing.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/mman.h>
#include <sys/prctl.h>
#include <malloc.h>
#endif

static int boot_mode = 0;
static int boot_job_fd = MP_FD_JOB;
static int boot_result_fd = MP_FD_RESULT;
static int boot_extra_fds[MP_MAX_BOOT_EXTRAS];
static int boot_extra_count = 0;
static int boot_extras_placed = 0;  // fork-server workers: received where they landed
static atomic_int own_threads = 0;

int mp_boot_mode(void) { return boot_mode; }
void mp_set_boot_mode(int mode) { boot_mode = mode; }
int mp_boot_extra_count(void) { return boot_extra_count; }
void mp_set_boot_extra_count(int count) { boot_extra_count = count; }
int mp_boot_job_fd(void) { return boot_job_fd; }
int mp_boot_result_fd(void) { return boot_result_fd; }
int mp_boot_extra_fd(int index) {
    return boot_extras_placed ? boot_extra_fds[index] : MP_FD_FIRST_EXTRA + index;
}

void mp_set_boot_fds(int job, int result, const int *extras, int count) {
    boot_job_fd = job;
    boot_result_fd = result;
    if (count > MP_MAX_BOOT_EXTRAS) count = MP_MAX_BOOT_EXTRAS;
    for (int i = 0; i < count; i++) boot_extra_fds[i] = extras[i];
    boot_extra_count = count;
    boot_extras_placed = 1;
}
int mp_own_thread_count(void) { return atomic_load(&own_threads); }

int mp_pipe_cloexec(int fds[2]) {
#if defined(__linux__)
    return pipe2(fds, O_CLOEXEC);
#else
    if (pipe(fds) != 0) return -1;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return 0;
#endif
}

int mp_set_pipe_size(int fd, int size) {
#if defined(__linux__)
    return fcntl(fd, F_SETPIPE_SZ, size);
#else
    (void)fd; (void)size;
    errno = ENOTSUP;
    return -1;
#endif
}

int mp_pidfd_open(pid_t pid) {
#if defined(__linux__) && defined(SYS_pidfd_open)
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

int mp_pidfd_send_signal(int pidfd, int sig) {
#if defined(__linux__) && defined(SYS_pidfd_send_signal)
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
#else
    (void)pidfd; (void)sig;
    errno = ENOSYS;
    return -1;
#endif
}

#if defined(__linux__)
// PIDFD_GET_INFO (Linux 6.15): its first version, which ends with the exit status.
struct mp_pidfd_info {
    uint64_t mask;
    uint64_t cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exit_code;
};
#define MP_PIDFD_GET_INFO _IOWR(0xFF, 11, struct mp_pidfd_info)
#define MP_PIDFD_INFO_EXIT (1ULL << 3)
#endif

int mp_pidfd_exit_status(int pidfd, int *status) {
#if defined(__linux__)
    struct mp_pidfd_info info;
    memset(&info, 0, sizeof(info));
    info.mask = MP_PIDFD_INFO_EXIT;
    if (ioctl(pidfd, MP_PIDFD_GET_INFO, &info) != 0) return -1;
    if (!(info.mask & MP_PIDFD_INFO_EXIT)) {
        errno = EAGAIN;
        return -1;
    }
    *status = info.exit_code;
    return 0;
#else
    (void)pidfd; (void)status;
    errno = ENOSYS;
    return -1;
#endif
}

void mp_set_thread_name(const char *name) {
#if defined(__linux__)
    (void)prctl(PR_SET_NAME, name, 0, 0, 0);
#else
    (void)pthread_setname_np(name);
#endif
}

void mp_name_thread(pthread_t thread, const char *name) {
#if defined(__linux__)
    (void)pthread_setname_np(thread, name);
#else
    (void)thread;
    (void)name;
#endif
}

int mp_current_thread_id(void) {
#if defined(__linux__)
    return (int)syscall(SYS_gettid);
#else
    return -1;
#endif
}

long mp_thread_count(void) {
    DIR *dir = opendir("/proc/self/task");
    if (!dir) return -1;
    long count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] != '.') count++;
    }
    closedir(dir);
    return count;
}

int mp_affinity_cpu_count(void) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    return CPU_COUNT(&set);
#else
    return -1;
#endif
}

int mp_anonymous_file(const char *name) {
#if defined(__linux__)
    return memfd_create(name, MFD_CLOEXEC);
#else
    /* An unlinked temporary file: nothing is left behind once every descriptor closes. */
    (void)name;
    char path[] = "/tmp/swift-multiprocessing-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    unlink(path);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
#endif
}

int mp_write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int mp_read_all(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

// Descriptors are first moved above every target slot, so that placing one
// can never overwrite another that is still to be placed.
#define MP_HIGH_FD 64

int mp_spawn_self(pid_t *pid, const int *fds, int nfds, char *const argv[], char *const envp[]) {
    int high[16];
    if (nfds > 16) return EINVAL;
    for (int i = 0; i < nfds; i++) high[i] = -1;
    int err = 0;
    for (int i = 0; i < nfds; i++) {
        if (fds[i] < 0) continue;
        high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, MP_HIGH_FD);
        if (high[i] < 0) { err = errno; goto out; }
    }
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    if ((err = posix_spawn_file_actions_init(&actions))) goto out;
    if ((err = posix_spawnattr_init(&attr))) { posix_spawn_file_actions_destroy(&actions); goto out; }
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    for (int i = 0; i < nfds; i++) {
        if (high[i] >= 0) posix_spawn_file_actions_adddup2(&actions, high[i], MP_FD_JOB + i);
    }
#if defined(__linux__)
    posix_spawn_file_actions_addclosefrom_np(&actions, MP_FD_JOB + nfds);
#endif
    err = posix_spawn(pid, "/proc/self/exe", &actions, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
out:
    for (int i = 0; i < nfds; i++) {
        if (high[i] >= 0) close(high[i]);
    }
    return err;
}

ssize_t mp_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds, int dontwait) {
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    char control[CMSG_SPACE(sizeof(int) * 32)];
    if (nfds > 32) { errno = EINVAL; return -1; }
    if (nfds > 0) {
        memset(control, 0, sizeof(control));
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    int flags = MSG_NOSIGNAL | (dontwait ? MSG_DONTWAIT : 0);
    do { n = sendmsg(sock, &msg, flags); } while (n < 0 && errno == EINTR);
    return n;
}

ssize_t mp_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds) {
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    char control[CMSG_SPACE(sizeof(int) * 32)];
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    *nfds = 0;
    ssize_t n;
    int flags = 0;
#if defined(__linux__)
    flags = MSG_CMSG_CLOEXEC;
#endif
    do { n = recvmsg(sock, &msg, flags); } while (n < 0 && errno == EINTR);
    if (n < 0) return n;
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *received = (int *)CMSG_DATA(cmsg);
        for (int i = 0; i < count; i++) {
            if (*nfds < maxfds) fds[(*nfds)++] = received[i];
            else close(received[i]);
        }
    }
    return n;
}

#if defined(__linux__)
/// SIGKILLs every child of this process that is not yet a zombie (found by
/// reading /proc/<pid>/stat: no CONFIG_PROC_CHILDREN needed). Returns how
/// many were living.
static int kill_living_children(pid_t self) {
    DIR *proc = opendir("/proc");
    if (!proc) return 0;
    int living = 0;
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        if (entry->d_name[0] < '1' || entry->d_name[0] > '9') continue;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%s/stat", entry->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        char buf[512];
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = 0;
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        char *close_paren = strrchr(buf, ')');
        if (!close_paren) continue;
        char state = 0;
        int ppid = 0;
        if (sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2) continue;
        if (ppid != self || state == 'Z' || state == 'X') continue;
        living++;
        kill((pid_t)atoi(entry->d_name), SIGKILL);
    }
    closedir(proc);
    return living;
}

/// Kills the process's whole tree below it: as a subreaper it adopts the
/// children of each child it kills, and kills them in the next round, until
/// only zombies are left (bounded, for processes stuck in the kernel).
static void kill_descendants(void) {
    pid_t self = getpid();
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    for (int round = 0; round < 2000; round++) {
        if (kill_living_children(self) == 0) return;
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&pause, NULL);
    }
}
#endif

static void *lifeline_watch(void *arg) {
    int fd = (int)(intptr_t)arg;
    // Named "mp-lifeline" by its creator: the library's threads are named
    // "mp-...", and a fork does not count them as the program's (see ThreadCensus).
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (;;) {
        int r = poll(&p, 1, -1);
        if (r < 0 && errno == EINTR) continue;
        // Nobody writes to a lifeline: readable means end-of-file. The
        // processes the task started go first, then this one.
#if defined(__linux__)
        kill_descendants();
#endif
        kill(getpid(), SIGKILL);
        _exit(137);
    }
    return NULL;
}

/* pthread_create and pthread_detach, called through pointers that the
   dynamic linker fills when the program loads. A forked child is where the
   watcher usually starts, and a first call through the PLT would bind the
   symbol there, lazily: the lookup reads the libraries' symbol tables, whose
   pages the child does not have mapped yet, a dozen page faults per child.
   (The other calls of the start are bound in the parent by
   mp_bind_forked_child_symbols.) Volatile, so the compiler calls through them. */
static int (*volatile create_thread)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *) = pthread_create;
static int (*volatile detach_thread)(pthread_t) = pthread_detach;

int mp_watch_lifeline(int fd) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    sigset_t all, old;
    sigfillset(&all);
    // The watcher must never run a signal handler meant for the program.
    pthread_sigmask(SIG_SETMASK, &all, &old);
#if defined(__linux__)
    // Named from its first instant, so that a fork right after already sees
    // it as the library's: a new thread takes its creator's name.
    char name[16] = {0};
    (void)prctl(PR_GET_NAME, name, 0, 0, 0);
    (void)prctl(PR_SET_NAME, "mp-lifeline", 0, 0, 0);
#endif
    pthread_t thread;
    int err = create_thread(&thread, &attr, lifeline_watch, (void *)(intptr_t)fd);
#if defined(__linux__)
    (void)prctl(PR_SET_NAME, name, 0, 0, 0);
#endif
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err == 0) {
        atomic_fetch_add(&own_threads, 1);
        detach_thread(thread);
    }
    return err;
}

static int is_crash_signal(int sig) {
    return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP || sig == SIGABRT
        || sig == SIGSYS;
}

void mp_reset_signals(void) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction current;
        if (sigaction(sig, NULL, &current) != 0) continue;  // not a signal here
        if (current.sa_handler == SIG_DFL && !(current.sa_flags & SA_SIGINFO)) continue;
        // The library ignores SIGPIPE once, process-wide, before it first
        // writes to a pipe (Platform.ignoreBrokenPipeSignal); a forked child
        // inherits that "once" as done, so restoring the default would let a
        // write to a pipe whose reader is gone kill it instead of failing.
        if (sig == SIGPIPE && current.sa_handler == SIG_IGN) continue;
        // A crash reporter (Swift's backtracer when SWIFT_BACKTRACE asks for
        // it, or the library's own) is kept: the child replaces it or wants it.
        if (is_crash_signal(sig) && current.sa_handler != SIG_IGN) continue;
        sigaction(sig, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
}

int mp_die_with_parent(pid_t parent) {
#if defined(__linux__)
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return -1;
    // The parent may have died between the fork and the prctl.
    if (getppid() != parent) kill(getpid(), SIGKILL);
    return 0;
#else
    (void)parent;
    errno = ENOSYS;
    return -1;
#endif
}

int mp_is_main_thread(void) {
#if defined(__linux__)
    return gettid() == getpid();
#else
    return pthread_main_np();
#endif
}

void mp_keep_freed_memory_for_reuse(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}

size_t mp_heap_bytes_in_use(void) {
#if defined(__GLIBC__)
    return mallinfo2().uordblks;
#else
    return 0;
#endif
}

void mp_bind_forked_child_symbols(void) {
#if defined(__linux__)
    int signal = 0;
    (void)prctl(PR_GET_PDEATHSIG, &signal);
    (void)syscall(SYS_getppid);
#endif
    (void)getppid();
    (void)write(-1, "", 0);
    // What a forked child's crash handler and exit call first (runtime.c).
    sigset_t set;
    sigemptyset(&set);
    struct sigaction action;
    volatile size_t size = sizeof(action);  // a real call to memset, not an inlined one
    memset(&action, 0, size);
    (void)sigaction(SIGSEGV, NULL, &action);
    stack_t stack;
    (void)sigaltstack(NULL, &stack);
    // What starting the lifeline's watcher calls (mp_watch_lifeline), and the watcher.
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    (void)pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_attr_destroy(&attr);
    sigset_t all, current;
    sigfillset(&all);
    (void)pthread_sigmask(SIG_BLOCK, NULL, &current);
    (void)poll(NULL, 0, 0);
}

void mp_exit_now(int code) {
#if defined(__linux__)
    for (;;) syscall(SYS_exit_group, code);
#else
    _exit(code);
#endif
}

// The fork gate. A pool's engine thread runs Swift code, which takes the
// runtime's locks (the metadata caches, among others): forked while it held
// one, a child would wait for it for ever. So the engine holds the gate,
// shared, whenever it is not waiting in the kernel, and every fork of this
// process (the library's or the program's own) takes it exclusively first,
// from pthread_atfork: the fork waits for the engines' current round, and a
// child never inherits a lock an engine held. Writers are preferred, so a
// busy engine cannot hold a fork off.
static pthread_rwlock_t fork_gate;
static __thread int holds_fork_gate = 0;

static void init_fork_gate(void) {
    pthread_rwlockattr_t attributes;
    pthread_rwlockattr_init(&attributes);
#if defined(__GLIBC__)
    pthread_rwlockattr_setkind_np(&attributes, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    pthread_rwlock_init(&fork_gate, &attributes);
    pthread_rwlockattr_destroy(&attributes);
}

void mp_fork_gate_enter(void) {
    pthread_rwlock_rdlock(&fork_gate);
    holds_fork_gate = 1;
}

void mp_fork_gate_leave(void) {
    holds_fork_gate = 0;
    pthread_rwlock_unlock(&fork_gate);
}

// A fork from an engine thread (a completion callback that forks) lets its
// own share go first, or it would wait for itself.
static void close_fork_gate(void) {
    if (holds_fork_gate) pthread_rwlock_unlock(&fork_gate);
    pthread_rwlock_wrlock(&fork_gate);
}

static void open_fork_gate_in_parent(void) {
    pthread_rwlock_unlock(&fork_gate);
    if (holds_fork_gate) pthread_rwlock_rdlock(&fork_gate);
}

// After fork only the forking thread exists: the watcher is not copied, and
// the gate, held by the forking thread for the parent, starts anew.
static void reset_in_child(void) {
    if (atomic_load(&own_threads) != 0) atomic_store(&own_threads, 0);
    init_fork_gate();
    if (holds_fork_gate) pthread_rwlock_rdlock(&fork_gate);
}

__attribute__((constructor)) static void mp_register_atfork(void) {
    init_fork_gate();
    pthread_atfork(close_fork_gate, open_fork_gate_in_parent, reset_in_child);
}
