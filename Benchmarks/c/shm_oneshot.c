// C.shm.oneshot: what this machine allows for W5.shm.oneshot, in C, with
// every trick the Swift library uses (the child maps the segment with
// MAP_POPULATE, the destination asks for transparent huge pages). Creates a
// 256 MiB memfd segment, a forked child maps and fills it, the parent copies
// it out into a new buffer, then everything is released; GB/s per round.
// Prints JSON schema 1 (shared/bench/WORKLOADS.md).
//
//   gcc -O2 -o shm_oneshot Benchmarks/c/shm_oneshot.c && ./shm_oneshot --json out.json
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const size_t size = 256u << 20;
    enum { rounds = 7 };
    double rates[rounds];
    for (int round = 0; round < rounds; round++) {
        double start = now();
        int fd = memfd_create("oneshot", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)size) != 0) return 1;
        pid_t pid = fork();
        if (pid == 0) {
            unsigned char *child = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
            if (child == MAP_FAILED) _exit(1);
            memset(child, 9, size);
            _exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        unsigned char *shared = mmap(NULL, size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
        unsigned char *copy = aligned_alloc(2u << 20, size);
        if (shared == MAP_FAILED || copy == NULL) return 1;
        madvise(copy, size, MADV_HUGEPAGE);
        memcpy(copy, shared, size);
        if (copy[size - 1] != 9) return 1;
        munmap(shared, size);
        close(fd);
        free(copy);
        rates[round] = size / 1e9 / (now() - start);
    }
    qsort(rates, rounds, sizeof rates[0], compare);
    FILE *out = stdout;
    if (argc == 3 && strcmp(argv[1], "--json") == 0 && !(out = fopen(argv[2], "w"))) return 1;
    fprintf(out,
            "{\"tool\": \"c-shm-oneshot\", \"schema\": 1, \"results\": [{\"name\": \"C.shm.oneshot\", \"unit\": "
            "\"GB/s\", \"better\": \"higher\", \"median\": %.4f, \"min\": %.4f, \"max\": %.4f, \"reps\": %d, \"note\": "
            "\"memfd 256 MiB, forked child maps with MAP_POPULATE and fills it, parent copies out into a THP buffer, "
            "release\"}]}\n",
            rates[rounds / 2], rates[0], rates[rounds - 1], rounds);
    return 0;
}
