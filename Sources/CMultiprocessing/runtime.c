// What a child shows the world: its crash report, its exit, and what the
// parent learns about the program from its own executable's symbol table.
#define _GNU_SOURCE
#include "CMultiprocessing.h"

#if defined(__linux__)
#include <elf.h>
#endif
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// MARK: The crash handler

static volatile int crash_fd = -1;
static char crash_name[96];

static size_t text_length(const char *text) {
    size_t n = 0;
    while (text[n]) n++;
    return n;
}

static void put(int fd, const char *text) { (void)!write(fd, text, text_length(text)); }

static void put_unsigned(int fd, unsigned long value, int base) {
    char digits[32];
    int n = 0;
    do {
        int digit = (int)(value % (unsigned long)base);
        digits[n++] = (char)(digit < 10 ? '0' + digit : 'a' + digit - 10);
        value /= (unsigned long)base;
    } while (value && n < 32);
    char out[34];
    int k = 0;
    if (base == 16) { out[k++] = '0'; out[k++] = 'x'; }
    while (n) out[k++] = digits[--n];
    (void)!write(fd, out, (size_t)k);
}

const char *mp_signal_name(int sig) {
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    case SIGTRAP: return "SIGTRAP";
    case SIGABRT: return "SIGABRT";
    case SIGSYS: return "SIGSYS";
    default: return "signal";
    }
}

static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT, SIGSYS};

static void on_crash(int sig, siginfo_t *info, void *context) {
    (void)context;
    int saved = errno;
    int fd = crash_fd;
    if (fd >= 0) {
        crash_fd = -1;
        put(fd, MP_CRASH_MAGIC);
        put(fd, mp_signal_name(sig));
        put(fd, " (signal ");
        put_unsigned(fd, (unsigned long)sig, 10);
        put(fd, ")");
        if (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE) {
            put(fd, " at address ");
            put_unsigned(fd, (unsigned long)info->si_addr, 16);
        }
        if (info->si_code <= 0) put(fd, ", sent by a process or raise()");
        put(fd, " in ");
        put(fd, crash_name);
        put(fd, " (pid ");
        put_unsigned(fd, (unsigned long)getpid(), 10);
        put(fd, ")\n");
        void *frames[48];
        int count = backtrace(frames, 48);
        // Frame 0 is this handler.
        if (count > 1) backtrace_symbols_fd(frames + 1, count - 1, fd);
    }
    // The default disposition, so the process ends with the real signal: a
    // fault happens again when the handler returns, a raised signal is
    // delivered as soon as it is unblocked.
    signal(sig, SIG_DFL);
    raise(sig);
    errno = saved;
}

void mp_load_unwinder(void) {
    static int loaded = 0;
    if (loaded) return;
    loaded = 1;
    // The first backtrace() loads the unwinder (a dlopen of libgcc_s).
    void *warm[2];
    (void)backtrace(warm, 2);
}

void mp_install_crash_handler(int fd, const char *name) {
    static int installed = 0;
    crash_fd = fd;
    snprintf(crash_name, sizeof(crash_name), "'%s'", name ? name : "child");
    if (installed) return;
    installed = 1;
    // Not something to do in a signal handler; done once in a parent that
    // forks children, so that they inherit it instead of each loading it.
    mp_load_unwinder();
    // Its own stack, for a stack overflow.
    static char alternate[64 * 1024];
    stack_t stack = {.ss_sp = alternate, .ss_size = sizeof(alternate), .ss_flags = 0};
    sigaltstack(&stack, NULL);
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = on_crash;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++) {
        sigaction(crash_signals[i], &action, NULL);
    }
}

void mp_set_crash_fd(int fd) { crash_fd = fd; }

// MARK: Leaving a child

// Called through pointers, which the loader fills at start-up, rather than
// through lazily bound PLT entries: a forked child would bind each anew
// (a symbol lookup and a copied page), on its way out.
// Volatile, so the compiler does not turn the calls back into direct ones.
static void (*volatile const exit_function)(int) = exit;
static void (*volatile const immediate_exit_function)(int) = _exit;
#if defined(__GLIBC__)
static int (*volatile const on_exit_function)(void (*)(int, void *), void *) = on_exit;
#endif

// Ends the exit at this handler, with the status given to `exit`: handlers
// registered before it (inherited) are skipped, those after it have run.
static void skip_inherited_handlers(int status, void *unused) {
    (void)unused;
    fflush(NULL);
    immediate_exit_function(status);
    __builtin_unreachable();
}

#if defined(__GLIBC__)
void mp_mark_exit_handlers(void) { on_exit_function(skip_inherited_handlers, NULL); }
#else
static void skip_inherited_handlers_without_status(void) { skip_inherited_handlers(0, NULL); }
void mp_mark_exit_handlers(void) { atexit(skip_inherited_handlers_without_status); }
#endif

void mp_exit_running_own_handlers(int code) {
    exit_function(code);
    __builtin_unreachable();
}

// MARK: The executable's symbol table

struct symbol {
    uint64_t address;
    uint64_t size;
    const char *name;
};

static struct {
    pthread_once_t once;
    int has_symtab;
    int has_main_type;
    struct symbol *functions;
    size_t count;
} image = {.once = PTHREAD_ONCE_INIT};

static int by_address(const void *a, const void *b) {
    uint64_t x = ((const struct symbol *)a)->address, y = ((const struct symbol *)b)->address;
    return x < y ? -1 : x > y;
}

static int ends_with(const char *text, const char *suffix) {
    size_t n = strlen(text), m = strlen(suffix);
    return n >= m && memcmp(text + n - m, suffix, m) == 0;
}

static void load_image(void) {
#if !defined(__linux__)
    // Mach-O: no symbol table is read; frames keep the C library's names.
    return;
#else
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat info;
    if (fstat(fd, &info) != 0 || (size_t)info.st_size < sizeof(Elf64_Ehdr)) { close(fd); return; }
    const unsigned char *file = mmap(NULL, (size_t)info.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (file == MAP_FAILED) return;
    size_t size = (size_t)info.st_size;
    const Elf64_Ehdr *header = (const Elf64_Ehdr *)file;
    if (memcmp(header->e_ident, ELFMAG, SELFMAG) != 0 || header->e_ident[EI_CLASS] != ELFCLASS64
        || header->e_shoff == 0 || header->e_shoff + (uint64_t)header->e_shnum * sizeof(Elf64_Shdr) > size)
        return;
    const Elf64_Shdr *sections = (const Elf64_Shdr *)(file + header->e_shoff);
    for (int i = 0; i < header->e_shnum; i++) {
        if (sections[i].sh_type != SHT_SYMTAB || sections[i].sh_link >= header->e_shnum) continue;
        const Elf64_Shdr *strings = &sections[sections[i].sh_link];
        if (sections[i].sh_offset + sections[i].sh_size > size || strings->sh_offset + strings->sh_size > size)
            return;
        const Elf64_Sym *symbols = (const Elf64_Sym *)(file + sections[i].sh_offset);
        size_t total = sections[i].sh_size / sizeof(Elf64_Sym);
        const char *names = (const char *)(file + strings->sh_offset);
        image.has_symtab = 1;
        image.functions = malloc(sizeof(struct symbol) * (total ? total : 1));
        if (!image.functions) return;
        for (size_t k = 0; k < total; k++) {
            if (ELF64_ST_TYPE(symbols[k].st_info) != STT_FUNC || symbols[k].st_value == 0) continue;
            if (symbols[k].st_name >= strings->sh_size) continue;
            const char *name = names + symbols[k].st_name;
            // `static func $main()` of an `@main` type (also async).
            if (strstr(name, "5$mainyy") && (ends_with(name, "FZ"))) image.has_main_type = 1;
            image.functions[image.count++] = (struct symbol){symbols[k].st_value, symbols[k].st_size, name};
        }
        qsort(image.functions, image.count, sizeof(struct symbol), by_address);
        return;
    }
#endif
}

int mp_program_entry_kind(void) {
    pthread_once(&image.once, load_image);
    if (!image.has_symtab) return -1;
    return image.has_main_type ? 1 : 0;
}

const char *mp_function_at_offset(uint64_t offset, uint64_t *start) {
    pthread_once(&image.once, load_image);
    size_t low = 0, high = image.count;
    while (low < high) {
        size_t middle = (low + high) / 2;
        if (image.functions[middle].address <= offset) low = middle + 1;
        else high = middle;
    }
    if (low == 0) return NULL;
    const struct symbol *found = &image.functions[low - 1];
    if (found->size && offset >= found->address + found->size) return NULL;
    *start = found->address;
    return found->name;
}

// MARK: The process's title

#if defined(__linux__)
#include <sys/prctl.h>
#endif

static char *title_area;
static size_t title_capacity;
static char program_name[64];

void mp_record_arguments(int argc, char **argv) {
    if (argc <= 0 || !argv || !argv[0]) return;
    const char *slash = strrchr(argv[0], '/');
    snprintf(program_name, sizeof(program_name), "%s", slash ? slash + 1 : argv[0]);
    // The strings of argv, when they lie end to end as the kernel put them.
    char *end = argv[0];
    for (int i = 0; i < argc; i++) {
        if (argv[i] != end) break;
        end = argv[i] + strlen(argv[i]) + 1;
    }
    title_area = argv[0];
    title_capacity = (size_t)(end - argv[0]);
}

void mp_extend_title_area(char *string, size_t length) {
    if (title_area && string == title_area + title_capacity) title_capacity += length + 1;
}

const char *mp_program_name(void) { return program_name; }

void mp_set_process_title(const char *title, const char *short_name) {
#if defined(__linux__)
    char comm[16];
    snprintf(comm, sizeof(comm), "%s", short_name);
    (void)prctl(PR_SET_NAME, comm, 0, 0, 0);
#endif
    if (!title_area || title_capacity < 2) return;
    size_t length = strlen(title);
    if (length > title_capacity - 1) length = title_capacity - 1;
    memcpy(title_area, title, length);
    memset(title_area + length, 0, title_capacity - length);
}
