/* duration: see duration.h. */
#include "duration.h"
#include "errors.h"

#include <stdio.h>
#include <string.h>

/* Units in nanoseconds; longer names first, so that "ms" is not read as "m". */
static const struct {
    const char *name;
    int64_t ns;
} duration_units[] = {
    { "ns", 1 }, { "us", 1000 }, { "ms", 1000000 },
    { "h", 3600000000000LL }, { "m", 60000000000LL }, { "s", 1000000000LL },
};

#define DURATION_MAX_NS INT64_MAX

int duration_parse(const char *s, int64_t *ms)
{
    const char *p = s;
    int64_t total = 0; /* ns */

    if (!s || !*s)
        return SKIFF_EINVAL;
    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return 0;
    }
    while (*p) {
        int64_t whole = 0, frac = 0, scale = 1, unit = 0, part, fpart;
        int digits = 0;
        size_t i, n = 0;

        while (*p >= '0' && *p <= '9') {
            if (whole > (DURATION_MAX_NS - (*p - '0')) / 10)
                return SKIFF_EINVAL;
            whole = whole * 10 + (*p++ - '0');
            digits++;
        }
        if (*p == '.') {
            p++;
            while (*p >= '0' && *p <= '9') {
                if (scale < 1000000000LL) { /* finer than 1e-9 of a unit is dropped */
                    frac = frac * 10 + (*p - '0');
                    scale *= 10;
                }
                p++;
                digits++;
            }
        }
        if (digits == 0)
            return SKIFF_EINVAL;
        for (i = 0; i < sizeof(duration_units) / sizeof(duration_units[0]); i++) {
            n = strlen(duration_units[i].name);
            if (strncmp(p, duration_units[i].name, n) == 0) {
                unit = duration_units[i].ns;
                break;
            }
        }
        if (!unit)
            return SKIFF_EINVAL;
        p += n;
        if (whole > DURATION_MAX_NS / unit)
            return SKIFF_EINVAL;
        part = whole * unit;
        /* frac / scale of a unit; unit <= 3.6e12 and frac < scale <= 1e9 */
        fpart = (int64_t)((long double)frac * (long double)unit / (long double)scale);
        if (fpart > DURATION_MAX_NS - part || total > DURATION_MAX_NS - (part + fpart))
            return SKIFF_EINVAL;
        part += fpart;
        total += part;
    }
    *ms = total / 1000000 + (total % 1000000 ? 1 : 0);
    return 0;
}

char *duration_format(int64_t ms, char *out, size_t len)
{
    int64_t h, m, s, frac;
    char secs[32];
    size_t n;

    if (ms < 0)
        ms = 0;
    if (ms < 1000) {
        snprintf(out, len, ms == 0 ? "0s" : "%lldms", (long long)ms);
        return out;
    }
    h = ms / 3600000;
    m = ms / 60000 % 60;
    s = ms / 1000 % 60;
    frac = ms % 1000;
    if (frac) {
        snprintf(secs, sizeof(secs), "%lld.%03lld", (long long)s, (long long)frac);
        n = strlen(secs);
        while (secs[n - 1] == '0')
            secs[--n] = '\0';
    } else {
        snprintf(secs, sizeof(secs), "%lld", (long long)s);
    }
    if (h)
        snprintf(out, len, "%lldh%lldm%ss", (long long)h, (long long)m, secs);
    else if (m)
        snprintf(out, len, s || frac ? "%lldm%ss" : "%lldm", (long long)m, secs);
    else
        snprintf(out, len, "%ss", secs);
    return out;
}
