/* sp_params.c - the parameter table: descriptions, lookup by name, parsing and bounds. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <strings.h>

#include "sp_internal.h"

static const sp_param_info param_table[SP_PARAM_COUNT_] = {
#define SP_X_(key, name, type, def, lo, hi, choices, scope, doc)                                   \
    { sizeof(sp_param_info), SP_PARAM_##key, name, type, def, lo, hi, choices, doc, scope },
    SP_PARAM_TABLE(SP_X_)
#undef SP_X_
};

struct sp_params {
    int64_t v[SP_PARAM_COUNT_];
    double f[SP_PARAM_COUNT_][3]; /* FLOAT3 parameters */
    char *s[SP_PARAM_COUNT_];     /* STRING parameters: owned copies, NULL when unset */
    bool set[SP_PARAM_COUNT_];    /* given a value by a setter (even the default's): sp_params_was_set */
};

#define SP_PARAM_STR_MAX 4096 /* bytes of a string parameter's value, its NUL included */

/* Parses "a,b,c" (spaces allowed around the numbers); SP_EINVAL when it is not three finite
 * numbers. */
static int parse_float3(const char *s, double out[3])
{
    for (int i = 0; i < 3; i++) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || errno == ERANGE || !isfinite(v))
            return SP_EINVAL;
        while (*end == ' ')
            end++;
        if (*end != (i < 2 ? ',' : '\0'))
            return SP_EINVAL;
        out[i] = v;
        s = end + (i < 2);
    }
    return SP_OK;
}

int sp_param_count(void) { return SP_PARAM_COUNT_; }

int sp_param_describe(int key, sp_param_info *out)
{
    int rc = sp_out_check("sp_param_describe", "sp_param_info", out);
    if (rc)
        return rc;
    if (key < 0 || key >= SP_PARAM_COUNT_)
        return sp_fail(NULL, SP_EINVAL, "sp_param_describe: no parameter has key %d (keys are 0..%d)", key,
                       SP_PARAM_COUNT_ - 1);
    sp_out_put(out, &param_table[key], sizeof param_table[key]);
    return SP_OK;
}

/* Names compare with '-' and '_' taken as equal, so CLI flags map onto the table directly. */
static bool name_matches(const char *table_name, const char *name)
{
    for (; *table_name && *name; table_name++, name++) {
        char a = *table_name == '-' ? '_' : *table_name;
        char b = *name == '-' ? '_' : *name;
        if (a != b)
            return false;
    }
    return *table_name == *name;
}

int sp_param_lookup(const char *name)
{
    for (int i = 0; name && i < SP_PARAM_COUNT_; i++)
        if (name_matches(param_table[i].name, name))
            return i;
    return sp_fail(NULL, SP_ENOENT, "sp_param_lookup: no parameter is named '%s'", name ? name : "(null)");
}

sp_params *sp_params_create(void)
{
    sp_params *p = sp_malloc(sizeof *p);
    if (!p) {
        sp_fail(NULL, SP_ENOMEM, "sp_params_create: out of memory");
        return NULL;
    }
    for (int i = 0; i < SP_PARAM_COUNT_; i++) {
        p->v[i] = param_table[i].def;
        p->s[i] = NULL;
        p->set[i] = false;
        if (param_table[i].type == SP_PTYPE_FLOAT3 && parse_float3(param_table[i].choices, p->f[i]) != SP_OK)
            p->f[i][0] = p->f[i][1] = p->f[i][2] = 0; /* cannot happen: the table's defaults parse */
    }
    return p;
}

void sp_params_destroy(sp_params *p)
{
    for (int i = 0; p && i < SP_PARAM_COUNT_; i++)
        sp_free(p->s[i]);
    sp_free(p);
}

/* A copy of s in memory of its own, or NULL. */
static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = sp_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

sp_params *sp_params_dup(const sp_params *p)
{
    sp_params *d = p ? sp_malloc(sizeof *d) : sp_params_create();
    if (!d || !p)
        return d;
    memcpy(d, p, sizeof *d);
    for (int i = 0; i < SP_PARAM_COUNT_; i++) {
        if (p->s[i] && !(d->s[i] = dup_str(p->s[i]))) {
            while (i--)
                sp_free(d->s[i]);
            sp_free(d);
            return NULL;
        }
    }
    return d;
}

const char *sp_params_get_str(const sp_params *p, int key)
{
    if (key < 0 || key >= SP_PARAM_COUNT_ || param_table[key].type != SP_PTYPE_STRING) {
        sp_fail(NULL, SP_EINVAL, "sp_params_get_str: parameter key %d does not take a string", key);
        return NULL;
    }
    return p && p->s[key] ? p->s[key] : "";
}

int64_t sp_params_get(const sp_params *p, int key)
{
    if (key < 0 || key >= SP_PARAM_COUNT_) {
        sp_fail(NULL, SP_EINVAL, "sp_params_get: unknown parameter key %d", key);
        return 0;
    }
    return p ? p->v[key] : param_table[key].def;
}

int sp_params_get_float3(const sp_params *p, int key, double out[3])
{
    if (key < 0 || key >= SP_PARAM_COUNT_ || param_table[key].type != SP_PTYPE_FLOAT3 || !out)
        return sp_fail(NULL, SP_EINVAL, "sp_params_get_float3: parameter key %d does not take three numbers%s", key,
                       out ? "" : " (NULL out)");
    if (p) {
        memcpy(out, p->f[key], sizeof p->f[key]);
        return SP_OK;
    }
    return parse_float3(param_table[key].choices, out);
}

int sp_params_set_float3(sp_params *p, int key, const double v[3])
{
    sp_clear_error();
    if (!p || !v || key < 0 || key >= SP_PARAM_COUNT_ || param_table[key].type != SP_PTYPE_FLOAT3)
        return sp_fail(NULL, SP_EINVAL, "sp_params_set_float3: parameter key %d does not take three numbers%s", key,
                       p && v ? "" : " (NULL argument)");
    const sp_param_info *pi = &param_table[key];
    for (int i = 0; i < 3; i++) {
        if (!isfinite(v[i]))
            return sp_fail(NULL, SP_EINVAL, "parameter %s: number %d is not finite", pi->name, i + 1);
        if (v[i] * 1000 < (double)pi->min || v[i] * 1000 > (double)pi->max)
            return sp_fail(NULL, SP_ERANGE, "parameter %s: %g is outside [%g, %g]", pi->name, v[i],
                           (double)pi->min / 1000, (double)pi->max / 1000);
    }
    memcpy(p->f[key], v, sizeof p->f[key]);
    p->set[key] = true;
    return SP_OK;
}

bool sp_params_was_set(const sp_params *p, int key) { return p && key >= 0 && key < SP_PARAM_COUNT_ && p->set[key]; }

static int out_of_range(const sp_param_info *pi, int64_t value)
{
    if (pi->type == SP_PTYPE_ENUM)
        return sp_fail(NULL, SP_ERANGE, "parameter %s: %lld is not one of %s", pi->name,
                       (long long)value, pi->choices);
    return sp_fail(NULL, SP_ERANGE, "parameter %s: %lld is outside [%lld, %lld]", pi->name,
                   (long long)value, (long long)pi->min, (long long)pi->max);
}

int sp_params_set(sp_params *p, int key, int64_t value)
{
    sp_clear_error();
    if (!p)
        return sp_fail(NULL, SP_EINVAL, "sp_params_set: NULL parameter set");
    if (key < 0 || key >= SP_PARAM_COUNT_)
        return sp_fail(NULL, SP_EINVAL, "sp_params_set: unknown parameter key %d", key);
    const sp_param_info *pi = &param_table[key];
    if (pi->type == SP_PTYPE_FLOAT3)
        return sp_fail(NULL, SP_EINVAL, "parameter %s takes three numbers (sp_params_set_float3)", pi->name);
    if (pi->type == SP_PTYPE_STRING)
        return sp_fail(NULL, SP_EINVAL, "parameter %s takes a string (sp_params_set_str)", pi->name);
    if (value < pi->min || value > pi->max)
        return out_of_range(pi, value);
    p->v[key] = value;
    p->set[key] = true;
    return SP_OK;
}

static int parse_int(const char *s, int64_t *out, bool size_suffix)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s)
        return SP_EINVAL;
    if (errno == ERANGE)
        return SP_ERANGE; /* a number, only beyond int64: out of bounds like any other */
    if (size_suffix && *end) {
        int shift = 0;
        switch (toupper((unsigned char)*end)) {
        case 'K': shift = 10; break;
        case 'M': shift = 20; break;
        case 'G': shift = 30; break;
        case 'T': shift = 40; break;
        default: return SP_EINVAL;
        }
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'B' || *end == 'b')
            end++;
        if (v > (INT64_MAX >> shift) || v < -(INT64_MAX >> shift))
            return SP_ERANGE;
        v *= 1LL << shift;
    }
    if (*end)
        return SP_EINVAL;
    *out = v;
    return SP_OK;
}

static int parse_bool(const char *s, int64_t *out, bool has_auto)
{
    if (has_auto && strcasecmp(s, "auto") == 0)
        return *out = -1, SP_OK;
    static const char *const yes[] = { "1", "true", "yes", "on" };
    static const char *const no[] = { "0", "false", "no", "off" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = 1, SP_OK;
        if (strcasecmp(s, no[i]) == 0)
            return *out = 0, SP_OK;
    }
    return SP_EINVAL;
}

/* The index of value among the '|'-separated choices, or -1. */
static int64_t parse_choice(const char *choices, const char *value)
{
    size_t n = strlen(value);
    int64_t idx = 0;
    for (const char *c = choices; *c; idx++) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && strncmp(c, value, n) == 0)
            return idx;
        if (!bar)
            break;
        c = bar + 1;
    }
    return -1;
}

/* "auto", "cpu", "cuda" or "cuda:N" (N decimal, no sign). */
static int parse_device(const char *s, int64_t *out)
{
    if (strcasecmp(s, "auto") == 0)
        return *out = SP_DEVICE_AUTO, SP_OK;
    if (strcasecmp(s, "cpu") == 0)
        return *out = SP_DEVICE_CPU, SP_OK;
    if (strncasecmp(s, "cuda", 4) != 0)
        return SP_EINVAL;
    if (s[4] == 0)
        return *out = 0, SP_OK;
    if (s[4] != ':' || !isdigit((unsigned char)s[5]))
        return SP_EINVAL;
    return parse_int(s + 5, out, false);
}

int sp_params_set_str(sp_params *p, const char *name, const char *value)
{
    sp_clear_error();
    int key = sp_param_lookup(name);
    if (key < 0)
        return sp_fail(NULL, SP_ENOENT, "unknown parameter '%s'", name ? name : "(null)");
    if (!p || !value)
        return sp_fail(NULL, SP_EINVAL, "sp_params_set_str: parameter %s: %s", name,
                       p ? "no value" : "NULL parameter set");
    const sp_param_info *pi = &param_table[key];
    int64_t v = 0;
    int rc;
    switch (pi->type) {
    case SP_PTYPE_STRING: {
        if (strlen(value) >= SP_PARAM_STR_MAX)
            return sp_fail(NULL, SP_ERANGE, "parameter %s: %zu bytes is longer than %d", pi->name, strlen(value),
                           SP_PARAM_STR_MAX - 1);
        char *copy = *value ? dup_str(value) : NULL;
        if (*value && !copy)
            return sp_fail(NULL, SP_ENOMEM, "parameter %s: out of memory", pi->name);
        sp_free(p->s[key]);
        p->s[key] = copy;
        p->set[key] = true;
        return SP_OK;
    }
    case SP_PTYPE_BOOL:
        rc = parse_bool(value, &v, pi->min < 0);
        if (rc)
            return sp_fail(NULL, rc, "parameter %s: '%s' is not a boolean (true/false%s)", pi->name, value,
                           pi->min < 0 ? "/auto" : "");
        break;
    case SP_PTYPE_FLOAT3: {
        double f[3];
        if (parse_float3(value, f) != SP_OK)
            return sp_fail(NULL, SP_EINVAL, "parameter %s: '%s' is not three numbers written a,b,c", pi->name,
                           value);
        return sp_params_set_float3(p, key, f);
    }
    case SP_PTYPE_DEVICE:
        rc = parse_device(value, &v);
        if (rc == SP_EINVAL)
            return sp_fail(NULL, rc, "parameter %s: '%s' is not auto, cpu, cuda or cuda:N", pi->name, value);
        if (rc || v > pi->max)
            return sp_fail(NULL, SP_ERANGE, "parameter %s: '%s' is past cuda:%lld", pi->name, value,
                           (long long)pi->max);
        break;
    case SP_PTYPE_ENUM:
        v = parse_choice(pi->choices, value);
        if (v < 0)
            return sp_fail(NULL, SP_EINVAL, "parameter %s: '%s' is not one of %s", pi->name, value,
                           pi->choices);
        break;
    default:
        rc = parse_int(value, &v, pi->type == SP_PTYPE_SIZE);
        if (rc == SP_EINVAL)
            return sp_fail(NULL, rc, "parameter %s: '%s' is not %s", pi->name, value,
                           pi->type == SP_PTYPE_SIZE ? "a size (e.g. 4096, 64K, 1M, 2G)" : "an integer");
        if (rc)
            return sp_fail(NULL, rc, "parameter %s: '%s' is outside [%lld, %lld]", pi->name, value,
                           (long long)pi->min, (long long)pi->max);
        break;
    }
    return sp_params_set(p, key, v);
}
