/* ld_rows.c - writing one sample into its batch row. Rows of a shuffled window land all over a
 * batch ring far larger than any cache, so on x86 the writes bypass the cache (streaming stores):
 * no line is read only to be overwritten, and the decode buffers stay cached. */
#include "ld_rows.h"

#if defined(__SSE2__)
#include <emmintrin.h>

/* Bytes written one at a time until dst is 16-aligned; returns how many. */
static size_t head_bytes(const uint8_t *dst, size_t n)
{
    size_t h = (16 - ((uintptr_t)dst & 15)) & 15;
    return h < n ? h : n;
}

void ld_row_copy(uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t i = head_bytes(dst, n);
    memcpy(dst, src, i);
    for (; i + 16 <= n; i += 16)
        _mm_stream_si128((__m128i *)(void *)(dst + i), _mm_loadu_si128((const __m128i *)(const void *)(src + i)));
    memcpy(dst + i, src + i, n - i);
}

void ld_row_widen16(uint8_t *dst, const uint8_t *src, size_t count)
{
    int32_t *d = (int32_t *)(void *)dst;
    size_t i = 0;
    for (; i < count && ((uintptr_t)(d + i) & 15); i++)
        d[i] = (int32_t)sp_ld16(src + 2 * i);
    const __m128i zero = _mm_setzero_si128();
    for (; i + 8 <= count; i += 8) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i));
        _mm_stream_si128((__m128i *)(void *)(d + i), _mm_unpacklo_epi16(v, zero));
        _mm_stream_si128((__m128i *)(void *)(d + i + 4), _mm_unpackhi_epi16(v, zero));
    }
    for (; i < count; i++)
        d[i] = (int32_t)sp_ld16(src + 2 * i);
}

/* The OR of the tokens is kept beside the copy: one more instruction per 16 bytes, and the check of
 * its top bit is made once per row. */
bool ld_row_widen32(uint8_t *dst, const uint8_t *src, size_t count)
{
    int32_t *d = (int32_t *)(void *)dst;
    uint32_t any = 0;
    size_t i = 0;
    for (; i < count && ((uintptr_t)(d + i) & 15); i++) {
        uint32_t v = sp_ld32(src + 4 * i);
        any |= v;
        d[i] = (int32_t)v;
    }
    __m128i acc = _mm_setzero_si128();
    for (; i + 4 <= count; i += 4) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(src + 4 * i));
        acc = _mm_or_si128(acc, v);
        _mm_stream_si128((__m128i *)(void *)(d + i), v);
    }
    for (; i < count; i++) {
        uint32_t v = sp_ld32(src + 4 * i);
        any |= v;
        d[i] = (int32_t)v;
    }
    return !(any >> 31) && !_mm_movemask_ps(_mm_castsi128_ps(acc));
}

void ld_rows_fence(void) { _mm_sfence(); }

#else

void ld_row_copy(uint8_t *dst, const uint8_t *src, size_t n) { memcpy(dst, src, n); }

void ld_row_widen16(uint8_t *dst, const uint8_t *src, size_t count)
{
    int32_t *d = (int32_t *)(void *)dst;
    for (size_t i = 0; i < count; i++)
        d[i] = (int32_t)sp_ld16(src + 2 * i);
}

bool ld_row_widen32(uint8_t *dst, const uint8_t *src, size_t count)
{
    int32_t *d = (int32_t *)(void *)dst;
    uint32_t any = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t v = sp_ld32(src + 4 * i);
        any |= v;
        d[i] = (int32_t)v;
    }
    return !(any >> 31);
}

void ld_rows_fence(void) {}

#endif

size_t ld_row_first_big32(const uint8_t *src, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (sp_ld32(src + 4 * i) >> 31)
            return i;
    return count;
}
