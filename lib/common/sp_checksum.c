/* sp_checksum.c - the format's checksum: XXH3-64 with seed 0 (see docs/format.md for why). */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "sp_internal.h"

uint64_t sp_checksum64(const void *data, size_t size) { return XXH3_64bits(data, size); }
