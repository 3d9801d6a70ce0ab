// A single-producer, single-consumer byte ring in shared memory, with the
// wake-up handshake of an event count: the consumer says it is about to
// sleep, then looks once more; the producer, after publishing, wakes it only
// if it said so. Either the consumer sees the record or the producer sees the
// request, never neither (both sides use sequentially consistent atomics).
//
// A record is a 4-byte length and its bytes, padded to 8; it may wrap around
// the end of the ring. It becomes visible only when `tail` moves past it, so
// a producer that dies in the middle of a put leaves nothing half-written.
#include "CMultiprocessing.h"
#include "wrapcopy.h"

#include <stdatomic.h>
#include <string.h>

struct mp_ring {
    _Atomic uint64_t head; /* consumer: bytes taken */
    char pad_head[56];
    _Atomic uint64_t tail; /* producer: bytes published */
    char pad_tail[56];
    _Atomic uint32_t waiting; /* the consumer asked to be woken */
    uint32_t reserved;
    uint64_t capacity; /* a power of two */
    char pad[48];
    /* The producer's status words (see mp_ring_status), on a line of their own. */
    uint64_t status[8];
};

static unsigned char *data_of(mp_ring *ring) { return (unsigned char *)(ring + 1); }

static uint64_t padded(uint64_t length) { return (4 + length + 7) & ~(uint64_t)7; }

size_t mp_ring_size(uint64_t capacity) { return sizeof(mp_ring) + capacity; }

void mp_ring_init(mp_ring *ring, uint64_t capacity) {
    memset(ring, 0, sizeof(*ring));
    ring->capacity = capacity;
}

uint64_t *mp_ring_status(mp_ring *ring) { return ring->status; }

uint32_t mp_ring_max_record(const mp_ring *ring) { return (uint32_t)(ring->capacity / 4 - 8); }

static void copy_in(mp_ring *ring, uint64_t offset, const void *bytes, uint64_t length) {
    mp_wrap_copy_in(data_of(ring), ring->capacity, offset & (ring->capacity - 1), bytes, length);
}

static void copy_out(mp_ring *ring, uint64_t offset, void *bytes, uint64_t length) {
    mp_wrap_copy_out(data_of(ring), ring->capacity, offset & (ring->capacity - 1), bytes, length);
}

int mp_ring_put(mp_ring *ring, const void *bytes, uint32_t length) {
    if (length > mp_ring_max_record(ring)) return -1;
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_acquire);
    uint64_t needed = padded(length);
    if (ring->capacity - (tail - head) < needed) return -1;
    copy_in(ring, tail, &length, 4);
    copy_in(ring, tail + 4, bytes, length);
    atomic_store(&ring->tail, tail + needed);
    if (atomic_load(&ring->waiting) && atomic_exchange(&ring->waiting, 0)) return 1;
    return 0;
}

int64_t mp_ring_peek(mp_ring *ring) {
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    if (tail == head) return -1;
    uint32_t length;
    copy_out(ring, head, &length, 4);
    /* A length the producer could not have written means the memory was
       overwritten: report it rather than read past the record. */
    if (length > mp_ring_max_record(ring) || padded(length) > tail - head) return -2;
    return length;
}

void mp_ring_take(mp_ring *ring, void *bytes, uint32_t length) {
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    copy_out(ring, head + 4, bytes, length);
    atomic_store_explicit(&ring->head, head + padded(length), memory_order_release);
}

int mp_ring_has_records(const mp_ring *ring) {
    return atomic_load_explicit(&ring->tail, memory_order_acquire)
        != atomic_load_explicit(&ring->head, memory_order_relaxed);
}

int mp_ring_prepare_wait(mp_ring *ring) {
    atomic_store(&ring->waiting, 1);
    if (atomic_load(&ring->tail) != atomic_load_explicit(&ring->head, memory_order_relaxed)) {
        atomic_store(&ring->waiting, 0);
        return 1;
    }
    return 0;
}

void mp_ring_end_wait(mp_ring *ring) { atomic_store_explicit(&ring->waiting, 0, memory_order_relaxed); }
