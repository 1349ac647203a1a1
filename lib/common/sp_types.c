/* sp_types.c - version, dtype and field-kind names. */
#include <strings.h>

#include "sp_internal.h"

#define SP_STR2_(x) #x
#define SP_STR_(x) SP_STR2_(x)

const char *sp_version(void)
{
    return SP_STR_(SP_VERSION_MAJOR) "." SP_STR_(SP_VERSION_MINOR) "." SP_STR_(SP_VERSION_PATCH);
}

int sp_abi_version(void) { return SP_ABI_VERSION; }

const char *sp_dtype_name(int dtype)
{
    switch (dtype) {
#define SP_X_(sfx, value, name, size)                                                              \
    case value:                                                                                    \
        return name;
        SP_DTYPE_TABLE(SP_X_)
#undef SP_X_
    }
    sp_fail(NULL, SP_EINVAL, "sp_dtype_name: %d is not a dtype", dtype);
    return NULL;
}

size_t sp_dtype_size(int dtype)
{
    switch (dtype) {
#define SP_X_(sfx, value, name, size)                                                              \
    case value:                                                                                    \
        return size;
        SP_DTYPE_TABLE(SP_X_)
#undef SP_X_
    }
    sp_fail(NULL, SP_EINVAL, "sp_dtype_size: %d is not a dtype", dtype);
    return 0;
}

int sp_dtype_from_name(const char *name)
{
#define SP_X_(sfx, value, str, size)                                                               \
    if (name && strcmp(name, str) == 0)                                                            \
        return value;
    SP_DTYPE_TABLE(SP_X_)
#undef SP_X_
    return sp_fail(NULL, SP_EINVAL, "sp_dtype_from_name: '%s' is not a dtype name", name ? name : "(null)");
}

const char *sp_field_kind_name(int kind)
{
    switch (kind) {
#define SP_X_(sfx, value, name)                                                                    \
    case value:                                                                                    \
        return name;
        SP_FIELD_KIND_TABLE(SP_X_)
#undef SP_X_
    }
    sp_fail(NULL, SP_EINVAL, "sp_field_kind_name: %d is not a field kind", kind);
    return NULL;
}

int sp_field_kind_from_name(const char *name)
{
#define SP_X_(sfx, value, str)                                                                     \
    if (name && strcmp(name, str) == 0)                                                            \
        return value;
    SP_FIELD_KIND_TABLE(SP_X_)
#undef SP_X_
    return sp_fail(NULL, SP_EINVAL, "sp_field_kind_from_name: '%s' is not a field kind name", name ? name : "(null)");
}
