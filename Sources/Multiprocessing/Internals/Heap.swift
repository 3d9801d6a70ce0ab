import CMultiprocessing

/// Bytes of the C heap this process has in use (where glibc tells; 0 elsewhere), for leak checks.
func heapBytesInUse() -> Int { Int(mp_heap_bytes_in_use()) }
