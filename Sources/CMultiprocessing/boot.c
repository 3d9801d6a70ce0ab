// Takes a re-executed child over before `main`, and the fork server's loop.
//
// A child spawned by the library is the program's own binary, started again
// with MP_BOOT_ENV set. The constructor below runs before `main`: it removes
// the marker, finishes the image's initialisation (with a static Swift
// standard library the runtime's own initialisers come after this one in
// `.init_array`), then runs the child's work and exits, so the program's
// `main` never runs in the child.
#define _GNU_SOURCE
#include "CMultiprocessing.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/// Defined in Swift (`@_cdecl`): runs the job found on MP_FD_JOB, returns
/// the exit code.
extern int swift_multiprocessing_child_main(void) __attribute__((weak));

typedef void (*init_fn)(int, char **, char **);
extern init_fn __init_array_start[] __attribute__((weak, visibility("hidden")));
extern init_fn __init_array_end[] __attribute__((weak, visibility("hidden")));

static void mp_boot(int argc, char **argv, char **envp);

static void run_later_initializers(int argc, char **argv, char **envp) {
    if (!__init_array_start || !__init_array_end) return;
    init_fn *entry = __init_array_start;
    while (entry < __init_array_end && *entry != (init_fn)mp_boot) entry++;
    if (entry == __init_array_end) return;
    for (entry++; entry < __init_array_end; entry++) (*entry)(argc, argv, envp);
}

static void run_child_and_exit(void) {
    int code = 70;
    // Exit handlers registered from here on (by the task) run at the child's
    // exit; those before (inherited from the fork server or a parent) do not.
    mp_mark_exit_handlers();
    if (swift_multiprocessing_child_main) {
        code = swift_multiprocessing_child_main();
    } else {
        static const char msg[] = "swift-multiprocessing: the child entry point is not linked into this binary\n";
        (void)!write(2, msg, sizeof(msg) - 1);
    }
    mp_exit_running_own_handlers(code);
}

// A child of a program whose entry point is top-level code (main.swift) runs
// that code too, as Python's spawn re-runs the main module, so that the
// globals it declares have their values: they are initialized by running it,
// and a task would otherwise read zeroes. The child takes over where the
// program first starts a process (see mp_boot_take_over_if_pending), with
// its standard output silenced until then so the program's output before that
// point is not repeated by every child.

static int pending_mode = 0;  // 1 spawn, 2 forkserver: main runs, the takeover waits
static int saved_stdout = -1;
static int crash_reports = 0;
static char **boot_argv;
static int watching_lifeline = 0;

int mp_boot_crash_reports(void) { return crash_reports; }

static void take_over(int mode) {
    if (mode == 2) {
        mp_forkserver_serve(MP_FD_JOB, MP_FD_LIFELINE);
        mp_set_boot_mode(2);
    } else {
        mp_set_boot_mode(1);
        if (!watching_lifeline) mp_watch_lifeline(MP_FD_LIFELINE);
    }
    run_child_and_exit();
}

static void restore_stdout(void) {
    if (saved_stdout < 0) return;
    fflush(stdout);
    dup2(saved_stdout, 1);
    close(saved_stdout);
    saved_stdout = -1;
}

static void exit_without_takeover(void) {
    if (!__atomic_exchange_n(&pending_mode, 0, __ATOMIC_ACQ_REL)) return;
    restore_stdout();
    static const char msg[] =
        "swift-multiprocessing: this child ran the program's top-level code to its end without reaching "
        "the point where the program started it, so it could not run its task. A child runs the top-level "
        "code of main.swift up to the program's first start of a process (a ChildProcess's start, a pool's "
        "creation): make the code before that point take the same path in every run (do not branch on "
        "input, time or randomness before it).\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(70);
}

int mp_boot_take_over_if_pending(void) {
    int mode = __atomic_exchange_n(&pending_mode, 0, __ATOMIC_ACQ_REL);
    if (!mode) return 0;
    restore_stdout();
    if (mode == 2 && mp_thread_count() > 1) {
        // Forking a process that runs other threads is not safe: serve from a
        // fresh image instead, whose children do not see the globals.
        static const char msg[] =
            "swift-multiprocessing: the program's top-level code started threads before it first started a "
            "process, so the fork server cannot keep its globals; children of the fork server will read "
            "globals of main.swift as zero. Start the first process before starting tasks or threads, or "
            "use StartMethod.spawn.\n";
        (void)!write(2, msg, sizeof(msg) - 1);
        setenv(MP_BOOT_ENV, crash_reports ? "forkserver:0:c" : "forkserver:0", 1);
        execv("/proc/self/exe", boot_argv);
        _exit(71);
    }
    take_over(mode);
    return 1;
}

__attribute__((constructor(101))) static void mp_boot(int argc, char **argv, char **envp) {
    mp_record_arguments(argc, argv);
    char *value = getenv(MP_BOOT_ENV);
    if (!value) return;
    char mode[32] = {0};
    char flags[8] = {0};
    int extras = 0;
    int fields = sscanf(value, "%31[a-z]:%d:%7[a-z]", mode, &extras, flags);
    if (fields < 2) return;
    int kind = strcmp(mode, "forkserver") == 0 ? 2 : 1;
    boot_argv = argv;
    crash_reports = strchr(flags, 'c') != NULL;
    // The marker (padded by the parent) follows the arguments: once removed
    // it is room for the process's title.
    char *marker = value - strlen(MP_BOOT_ENV "=");
    size_t marker_length = strlen(marker);
    unsetenv(MP_BOOT_ENV);
    mp_extend_title_area(marker, marker_length);
    mp_set_boot_extra_count(extras);
    if (strchr(flags, 'm')) {
        pending_mode = kind;
        fflush(stdout);
        saved_stdout = fcntl(1, F_DUPFD_CLOEXEC, 64);
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, 1);
            close(null);
        }
        atexit(exit_without_takeover);
        // A spawned child follows its parent from the start; the fork
        // server, which must stay single-threaded, watches in its loop.
        if (kind == 1) watching_lifeline = mp_watch_lifeline(MP_FD_LIFELINE) == 0;
        return;
    }
    // Initialisers that run after this one (the Swift runtime's, with a static
    // standard library) would otherwise never run: this function does not
    // return to the C library.
    run_later_initializers(argc, argv, envp);
    take_over(kind);
}

// The fork server.
//
// It is a spawned child that never runs Swift code: it waits on its control
// socket for requests, forks, and reports each worker's pid and, later, its
// wait status on the reply descriptor that came with the request. It exits
// when its lifeline (the parent) or its control socket goes away. Its workers
// watch the same lifeline, the parent's, not the server: a worker outlives the
// server's death and ends with the parent's.

enum { MP_MAX_WORKERS = 4096 };
static pid_t worker_pids[MP_MAX_WORKERS];
static int worker_replies[MP_MAX_WORKERS];
static int sigchld_pipe[2] = {-1, -1};

static void on_sigchld(int sig) {
    (void)sig;
    int saved = errno;
    char byte = 0;
    (void)!write(sigchld_pipe[1], &byte, 1);
    errno = saved;
}

static void report_exits(void) {
    for (;;) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) return;
        for (int i = 0; i < MP_MAX_WORKERS; i++) {
            if (worker_pids[i] != pid) continue;
            int32_t reply[2] = {(int32_t)pid, (int32_t)status};
            mp_write_all(worker_replies[i], reply, sizeof(reply));
            close(worker_replies[i]);
            worker_pids[i] = 0;
            worker_replies[i] = -1;
            break;
        }
    }
}

void mp_forkserver_serve(int control, int lifeline) {
    char title[128];
    snprintf(title, sizeof(title), "%s: fork server", mp_program_name());
    mp_set_process_title(title, "fork server");
    // The caller's signal mask (a Dispatch thread's, or the one the program
    // was started with) would hold back the SIGCHLD this loop waits for.
    mp_reset_signals();
    if (mp_pipe_cloexec(sigchld_pipe) != 0) _exit(71);
    fcntl(sigchld_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(sigchld_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    for (int i = 0; i < MP_MAX_WORKERS; i++) worker_replies[i] = -1;

    struct pollfd polls[3] = {
        {.fd = control, .events = POLLIN},
        {.fd = lifeline, .events = POLLIN},
        {.fd = sigchld_pipe[0], .events = POLLIN},
    };
    for (;;) {
        int ready = poll(polls, 3, -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            _exit(72);
        }
        if (polls[1].revents) _exit(0);
        if (polls[2].revents) {
            char drain[64];
            while (read(sigchld_pipe[0], drain, sizeof(drain)) > 0) {}
            report_exits();
        }
        if (!polls[0].revents) continue;

        // A request: one byte of payload, descriptors [reply, job, result, extras...].
        char payload[8];
        int fds[32];
        int nfds = 0;
        ssize_t n = mp_recv_with_fds(control, payload, sizeof(payload), fds, 32, &nfds);
        if (n <= 0) _exit(0);
        if (nfds < 3) {
            for (int i = 0; i < nfds; i++) close(fds[i]);
            continue;
        }
        int slot = -1;
        for (int i = 0; i < MP_MAX_WORKERS; i++) {
            if (worker_pids[i] == 0) { slot = i; break; }
        }
        pid_t pid = slot < 0 ? -1 : fork();
        if (pid == 0) {
            mp_reset_signals();
            close(control);
            close(sigchld_pipe[0]);
            close(sigchld_pipe[1]);
            close(fds[0]);
            for (int i = 0; i < MP_MAX_WORKERS; i++) {
                if (worker_replies[i] >= 0) close(worker_replies[i]);
            }
            // The job's descriptors stay where they landed: moving them to
            // fixed numbers, or closing the rest, would break descriptors
            // that the zygote's code (a ForkingPool's closure) holds.
            mp_set_boot_fds(fds[1], fds[2], fds + 3, nfds - 3);
            if (mp_watch_lifeline(lifeline) != 0) _exit(71);
            return;
        }
        int32_t reply[2] = {(int32_t)(pid < 0 ? -1 : pid), pid < 0 ? errno : 0};
        if (pid > 0) {
            worker_pids[slot] = pid;
            worker_replies[slot] = fds[0];
        }
        // The pid goes first; the wait status follows when the worker exits.
        mp_write_all(fds[0], reply, sizeof(int32_t));
        if (pid < 0) close(fds[0]);
        for (int i = 1; i < nfds; i++) close(fds[i]);
        // A worker may have exited before its slot was recorded.
        report_exits();
    }
}
