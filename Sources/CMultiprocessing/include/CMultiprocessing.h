// Private C shim of swift-multiprocessing, one header per C file:
// - mp_boot.h: the start-up hook of re-executed children and the fork server;
// - mp_platform.h: Linux calls that Swift's Glibc module does not import;
// - mp_segments.h: attachment counts of pooled shared memory segments;
// - mp_ring.h, mp_queue.h, mp_sync.h, mp_lock.h: the data structures that
//   live in shared memory (a pool worker's result ring, a queue, the state of
//   semaphores, events and barriers, and locks and conditions).
// - mp_runtime.h: a child's crash report and exit, the program's symbol table.
#ifndef C_MULTIPROCESSING_H
#define C_MULTIPROCESSING_H

#include "mp_boot.h"
#include "mp_lock.h"
#include "mp_platform.h"
#include "mp_queue.h"
#include "mp_ring.h"
#include "mp_runtime.h"
#include "mp_segments.h"
#include "mp_sync.h"

#endif
