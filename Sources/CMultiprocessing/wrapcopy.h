// Copies into and out of a byte ring, wrapping around its end: shared by the
// process queue's ring (queue.c) and the pool's result ring (ring.c).
#ifndef MP_WRAPCOPY_H
#define MP_WRAPCOPY_H

#include <stdint.h>
#include <string.h>

/// Copies `length` bytes to `data` (a ring of `capacity` bytes) from offset `at` (< capacity) on.
static inline void mp_wrap_copy_in(unsigned char *data, uint64_t capacity, uint64_t at, const void *bytes,
                                   uint64_t length) {
    uint64_t first = length < capacity - at ? length : capacity - at;
    memcpy(data + at, bytes, first);
    if (length > first) memcpy(data, (const unsigned char *)bytes + first, length - first);
}

/// Copies `length` bytes out of `data` (a ring of `capacity` bytes) from offset `at` (< capacity) on.
static inline void mp_wrap_copy_out(const unsigned char *data, uint64_t capacity, uint64_t at, void *bytes,
                                    uint64_t length) {
    uint64_t first = length < capacity - at ? length : capacity - at;
    memcpy(bytes, data + at, first);
    if (length > first) memcpy((unsigned char *)bytes + first, data, length - first);
}

#endif
