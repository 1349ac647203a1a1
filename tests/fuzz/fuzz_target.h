/* fuzz_target.h - the libFuzzer entry point every target defines and the replay driver calls. */
#ifndef SP_FUZZ_TARGET_H
#define SP_FUZZ_TARGET_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs start with one mode byte, then the file. Mode bit 0: the target rewrites every checksum
 * (header, blocks, index, trailer; the manifest's) so mutations reach the parsers behind them. */
#define FUZZ_FIX_CHECKSUMS 1u
/* Mode bit 1 (shards): the trailer's file size is set to the real one. */
#define FUZZ_FIX_FILE_SIZE 2u

#endif
