#include "CMultiprocessing.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

// The attachment counts of pooled shared memory segments. Every process
// that maps such a segment is counted in the segment's header, and a segment
// goes back to its pool only when the count falls to zero. A forked child
// inherits the parent's mappings, so before every fork each segment live in
// the parent is counted once more, for the child: before, not after, so the
// parent cannot release a segment to its pool while the child is not yet
// counted. (A fork that fails leaves a count too many: that segment is freed
// instead of reused.)
// The fork handlers are installed with the first segment, so that a
// process without pooled segments writes nothing around its forks (every
// page written after a fork is copied).
static pthread_mutex_t segments_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int64_t **segments;
static size_t segment_count, segment_capacity;
static pthread_once_t segments_handlers_once = PTHREAD_ONCE_INIT;
static void install_segments_handlers(void);

int mp_segment_register(void *header) {
    pthread_once(&segments_handlers_once, install_segments_handlers);
    pthread_mutex_lock(&segments_lock);
    if (segment_count == segment_capacity) {
        size_t capacity = segment_capacity ? 2 * segment_capacity : 16;
        void *grown = realloc(segments, capacity * sizeof *segments);
        if (!grown) {
            pthread_mutex_unlock(&segments_lock);
            return -1;
        }
        segments = grown;
        segment_capacity = capacity;
    }
    segments[segment_count++] = header;
    pthread_mutex_unlock(&segments_lock);
    return 0;
}

void mp_segment_unregister(void *header) {
    pthread_mutex_lock(&segments_lock);
    for (size_t i = 0; i < segment_count; i++) {
        if (segments[i] == header) {
            segments[i] = segments[--segment_count];
            break;
        }
    }
    pthread_mutex_unlock(&segments_lock);
}

void mp_segment_attach(void *header) { atomic_fetch_add((_Atomic int64_t *)header, 1); }

int64_t mp_segment_detach(void *header) { return atomic_fetch_sub((_Atomic int64_t *)header, 1) - 1; }

void mp_segment_set_attached(void *header, int64_t count) { atomic_store((_Atomic int64_t *)header, count); }

static void segments_before_fork(void) {
    pthread_mutex_lock(&segments_lock);
    for (size_t i = 0; i < segment_count; i++) atomic_fetch_add(segments[i], 1);
}

static void segments_after_fork(void) { pthread_mutex_unlock(&segments_lock); }

static void install_segments_handlers(void) {
    pthread_atfork(segments_before_fork, segments_after_fork, segments_after_fork);
}
