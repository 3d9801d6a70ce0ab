#ifndef CHAOS_HEAP_H
#define CHAOS_HEAP_H

#include <stddef.h>

/// Bytes the allocator has handed out and not had back (mallinfo2's
/// uordblks + hblkhd on glibc; 0 where there is no mallinfo2).
size_t chaos_heap_in_use(void);

#endif
