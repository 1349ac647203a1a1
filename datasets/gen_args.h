/* gen_args.h - command-line number parsing shared by the dataset generators. */
#ifndef SP_GEN_ARGS_H
#define SP_GEN_ARGS_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/* A whole unsigned number in [lo, hi] (decimal, 0x hex or 0 octal); 0 on success, -1 otherwise. */
static inline int gen_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    const unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

#endif
