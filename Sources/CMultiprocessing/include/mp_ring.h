// The single-producer, single-consumer result ring of a pool worker (ring.c).
#ifndef MP_RING_H
#define MP_RING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A single-producer, single-consumer ring of byte records in shared memory
/// (see ring.c), used by pool workers to hand results to the pool without a
/// system call each.
typedef struct mp_ring mp_ring;
/// Bytes to map for a ring of `capacity` bytes (a power of two).
size_t mp_ring_size(uint64_t capacity);
void mp_ring_init(mp_ring *ring, uint64_t capacity);
/// Eight words beside the ring that its producer writes and its consumer
/// reads without a record, each as one atomic word (a pool worker's status:
/// the chunk and item it runs, and since when).
uint64_t *mp_ring_status(mp_ring *ring);
/// The largest record a ring takes: a quarter of its capacity, less a header.
uint32_t mp_ring_max_record(const mp_ring *ring);
/// Producer: appends a record. Returns -1 when it does not fit now (or ever,
/// past `mp_ring_max_record`), 1 when the consumer asked to be woken (the
/// caller wakes it), 0 otherwise.
int mp_ring_put(mp_ring *ring, const void *bytes, uint32_t length);
/// Consumer: the next record's length, -1 when the ring is empty, -2 when
/// the ring's memory is corrupt.
int64_t mp_ring_peek(mp_ring *ring);
/// Whether records wait, for a reader that only looks (any thread; taking
/// them stays the consumer's).
int mp_ring_has_records(const mp_ring *ring);
/// Consumer: copies out the next record (of the length `mp_ring_peek` gave) and frees it.
void mp_ring_take(mp_ring *ring, void *bytes, uint32_t length);
/// Consumer, before sleeping: asks to be woken by the next put. Returns 1
/// (and withdraws the request) when records are already waiting.
int mp_ring_prepare_wait(mp_ring *ring);
/// Consumer, once awake: withdraws the request.
void mp_ring_end_wait(mp_ring *ring);

#ifdef __cplusplus
}
#endif
#endif
