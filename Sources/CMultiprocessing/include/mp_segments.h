// Attachment counts of pooled shared memory segments, kept across forks (segments.c).
#ifndef MP_SEGMENTS_H
#define MP_SEGMENTS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif
#endif
