// The start-up hook that takes a re-executed child over before `main`, and the fork server (boot.c).
#ifndef MP_BOOT_H
#define MP_BOOT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The environment variable that marks a re-executed child. The start-up hook
/// removes it before any Swift code runs.
#define MP_BOOT_ENV "SWIFT_MULTIPROCESSING_BOOT"

/// Descriptor numbers a spawned child (and the fork server) finds its
/// channel on. A fork-server worker keeps what it received where it landed
/// (see mp_set_boot_fds): it may run code that holds descriptors of its own.
#define MP_FD_JOB 3     /* parent -> child: the job frame */
#define MP_FD_RESULT 4  /* child -> parent: the file the outcome frame is written into */
#define MP_FD_LIFELINE 5 /* EOF when the parent is gone */
#define MP_FD_FIRST_EXTRA 6
#define MP_MAX_BOOT_EXTRAS 29

/// How the process was started: 0 = not a child of this library,
/// 1 = spawned, 2 = forked by the fork server, 3 = forked by `fork` start.
int mp_boot_mode(void);
void mp_set_boot_mode(int mode);
/// Number of extra descriptors (from MP_FD_FIRST_EXTRA on) the child received.
int mp_boot_extra_count(void);
void mp_set_boot_extra_count(int count);
/// The child's job and result descriptors, and its extra ones (index from 0).
int mp_boot_job_fd(void);
int mp_boot_result_fd(void);
int mp_boot_extra_fd(int index);
/// In a fork-server worker: where its descriptors are.
void mp_set_boot_fds(int job, int result, const int *extras, int count);

/// In a child of a program whose entry point is top-level code, which runs
/// that code up to the point where the program first starts a process: takes
/// the child over there (it runs its task, or the fork server's loop, and
/// exits; it never returns). Returns 0 in any other process.
int mp_boot_take_over_if_pending(void);
/// Whether the parent asked this child for the library's crash reports.
int mp_boot_crash_reports(void);

/// Runs the fork server's loop on `control` until the parent goes away (its
/// `lifeline` reports end-of-file, or `control` closes), then exits. Returns
/// only in a freshly forked worker, which has closed the server's own
/// descriptors and recorded its job's (mp_boot_job_fd...); every other
/// descriptor the server had (a zygote's: the program's) stays open.
void mp_forkserver_serve(int control, int lifeline);

#ifdef __cplusplus
}
#endif
#endif
