/* ld_rows.h - the copies a decode worker makes into batch rows. */
#ifndef SP_LD_ROWS_H
#define SP_LD_ROWS_H

#include "sp_internal.h"

/* n bytes from src to dst, the same bytes. */
void ld_row_copy(uint8_t *dst, const uint8_t *src, size_t n);
/* count little-endian uint16 (resp. uint32) tokens at src as int32 at dst. */
void ld_row_widen16(uint8_t *dst, const uint8_t *src, size_t count);
void ld_row_widen32(uint8_t *dst, const uint8_t *src, size_t count);
/* Makes the rows written so far visible to other threads before a row is counted as done
 * (streaming stores are weakly ordered). */
void ld_rows_fence(void);

#endif
