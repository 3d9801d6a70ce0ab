// What a child shows the world: its crash report and its exit (runtime.c).
#ifndef MP_RUNTIME_H
#define MP_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The first bytes of a crash report in a child's result file.
#define MP_CRASH_MAGIC "swift-multiprocessing crash report\n"

/// Loads the unwinder a crash report uses (the first `backtrace()` dlopens
/// libgcc_s): in a parent, once, so that forked children inherit it.
void mp_load_unwinder(void);

/// Catches SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT and SIGSYS: the
/// handler writes the signal, the faulting address and the first frames
/// (`backtrace_symbols_fd`) to `fd`, then re-raises the signal with its
/// default disposition, so the process still ends by that signal.
void mp_install_crash_handler(int fd, const char *name);
/// Where the next crash report goes; -1 for nowhere.
void mp_set_crash_fd(int fd);
/// The C name of a crash signal ("SIGSEGV").
const char *mp_signal_name(int sig);

/// Registers the exit handler that ends a child's normal exit: handlers
/// registered after it (by the child's own code) run, those before it (a
/// forked child inherited them) do not.
void mp_mark_exit_handlers(void);
/// Exits through `exit`, so the handlers registered since
/// `mp_mark_exit_handlers` run and output is flushed.
__attribute__((noreturn)) void mp_exit_running_own_handlers(int code);

/// From /proc/self/exe's symbol table: 1 if the program has an `@main` type,
/// 0 if it has none (its entry point is top-level code), -1 without a table.
int mp_program_entry_kind(void);
/// The function of the executable that contains `offset` (from the image's
/// load address), and its start, or NULL.
const char *mp_function_at_offset(uint64_t offset, uint64_t *start);

/// Remembers where the kernel put the program's arguments (called by the
/// start-up hook in every process), which a title may overwrite.
void mp_record_arguments(int argc, char **argv);
/// Lets the title also use `string`, a removed environment entry that lies
/// right after the arguments.
void mp_extend_title_area(char *string, size_t length);
/// The program's name: the last component of its first argument.
const char *mp_program_name(void);
/// Names the process: `short_name` (15 bytes at most) for the kernel's
/// `comm` (PR_SET_NAME, what `top` shows), and `title` over the program's
/// arguments (what `ps` and /proc/<pid>/cmdline show), cut to their room.
void mp_set_process_title(const char *title, const char *short_name);

#ifdef __cplusplus
}
#endif
#endif
