/* ld_rows.h - the copies a decode worker makes into batch rows. */
#ifndef SP_LD_ROWS_H
#define SP_LD_ROWS_H

#include "sp_internal.h"

/* n bytes from src to dst, the same bytes. */
void ld_row_copy(uint8_t *dst, const uint8_t *src, size_t n);
/* count little-endian uint16 tokens at src as int32 at dst. */
void ld_row_widen16(uint8_t *dst, const uint8_t *src, size_t count);
/* count little-endian uint32 tokens at src as int32 at dst. False when one of them is 2^31 or more
 * and so reads as a negative id: the row is then not usable (ld_row_first_big32 finds the token). */
bool ld_row_widen32(uint8_t *dst, const uint8_t *src, size_t count);
/* Index of the first of count uint32 tokens at src that is 2^31 or more; count when none is. */
size_t ld_row_first_big32(const uint8_t *src, size_t count);
/* Makes the rows written so far visible to other threads before a row is counted as done
 * (streaming stores are weakly ordered). */
void ld_rows_fence(void);

#endif
