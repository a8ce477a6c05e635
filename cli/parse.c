/* parse: see parse.h. */
#include "parse.h"
#include "duration.h"
#include "errors.h"
#include "pbutil.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

char *parse_one_line(char *s)
{
    for (char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return s;
}

static int parse_fail(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int parse_fail(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (why && len) {
        va_start(ap, fmt);
        vsnprintf(why, len, fmt, ap);
        va_end(ap);
        parse_one_line(why);
    }
    return SKIFF_EINVAL;
}

int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (!s || !*s)
        return SKIFF_EINVAL;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return SKIFF_EINVAL;
        uint64_t d = (uint64_t)(*p - '0');
        if (v > max / 10 || v * 10 > max - d || d > max)
            return SKIFF_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = { "true", "1", "yes" };
    static const char *const no[] = { "false", "0", "no" };

    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return SKIFF_EINVAL;
}

/* A decimal "123", "1.5", ".5" into its integer part and up to 9 fractional
 * digits (frac in 1e-9 units). Returns a pointer past the number, or NULL. */
static const char *parse_decimal(const char *s, uint64_t max_whole, uint64_t *whole,
                                 uint64_t *frac)
{
    uint64_t w = 0, f = 0, scale = 1000000000ULL;
    int digits = 0;

    while (isdigit((unsigned char)*s)) {
        uint64_t d = (uint64_t)(*s++ - '0');
        if (w > max_whole / 10 || w * 10 > max_whole - d || d > max_whole)
            return NULL;
        w = w * 10 + d;
        digits++;
    }
    if (*s == '.') {
        s++;
        while (isdigit((unsigned char)*s)) {
            if (scale > 1) {
                scale /= 10;
                f += (uint64_t)(*s - '0') * scale;
            }
            s++;
            digits++;
        }
    }
    if (!digits)
        return NULL;
    *whole = w;
    *frac = f;
    return s;
}

int parse_ratio(const char *s, double *out)
{
    uint64_t w, f;
    const char *end = parse_decimal(s, 1, &w, &f);

    if (!end || *end || (w == 1 && f != 0))
        return SKIFF_EINVAL;
    *out = (double)w + (double)f / 1e9;
    return 0;
}

int parse_memory(const char *s, int64_t *bytes)
{
    static const char units[] = "bkmgtp";
    uint64_t w, f, mul = 1;
    const char *p = parse_decimal(s, INT64_MAX, &w, &f), *u;
    long double v;

    if (!p)
        return SKIFF_EINVAL;
    if (*p) {
        u = strchr(units, tolower((unsigned char)*p));
        if (!u)
            return SKIFF_EINVAL;
        for (const char *q = units; q < u; q++)
            mul *= 1024;
        p++;
        if (u != units) { /* "m", "mb", "mib" */
            if (tolower((unsigned char)*p) == 'i')
                p++;
            if (tolower((unsigned char)*p) == 'b')
                p++;
        }
        if (*p)
            return SKIFF_EINVAL;
    }
    v = ((long double)w + (long double)f / 1e9L) * (long double)mul;
    if (v >= 9.2e18L)
        return SKIFF_EINVAL;
    *bytes = (int64_t)v;
    return 0;
}

int parse_cpus(const char *s, int64_t *nano)
{
    uint64_t w, f;
    const char *end = parse_decimal(s, 1000000, &w, &f);

    if (!end || *end)
        return SKIFF_EINVAL;
    *nano = (int64_t)(w * 1000000000ULL + f);
    return 0;
}

int parse_port(const char *s, uint32_t *port, char *why, size_t whylen)
{
    char num[16];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    uint64_t v;

    if (slash && strcmp(slash + 1, "tcp") != 0)
        return parse_fail(why, whylen, "only tcp ports are supported");
    if (n == 0 || n >= sizeof(num))
        return parse_fail(why, whylen, "a port between 1 and 65535");
    memcpy(num, s, n);
    num[n] = '\0';
    if (strchr(num, '-'))
        return parse_fail(why, whylen, "port ranges are not supported");
    if (parse_uint(num, 65535, &v) || v == 0)
        return parse_fail(why, whylen, "a port between 1 and 65535");
    *port = (uint32_t)v;
    return 0;
}

/* The value of "key=value" in a comma-separated option list. */
static int parse_kv(char *item, char **key, char **value)
{
    char *eq = strchr(item, '=');

    *key = item;
    *value = NULL;
    if (eq) {
        *eq = '\0';
        *value = eq + 1;
    }
    return **key ? 0 : SKIFF_EINVAL;
}

static PortConfig *parse_publish_long(char *s, PortConfig *p, char *why, size_t whylen)
{
    char *save = NULL, *item, *key, *value;
    uint32_t port;

    for (item = strtok_r(s, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        if (parse_kv(item, &key, &value) || !value) {
            parse_fail(why, whylen, "%s: expected key=value", item);
            return NULL;
        }
        if (strcmp(key, "published") == 0 || strcmp(key, "target") == 0) {
            if (parse_port(value, &port, why, whylen))
                return NULL;
            if (*key == 'p')
                p->published = port;
            else
                p->target = port;
        } else if (strcmp(key, "protocol") == 0) {
            if (strcmp(value, "tcp") != 0) {
                parse_fail(why, whylen, "only tcp ports are supported");
                return NULL;
            }
        } else if (strcmp(key, "mode") == 0) {
            if (strcmp(value, "ingress") != 0) {
                parse_fail(why, whylen, "mode %s is not supported (ingress only)", value);
                return NULL;
            }
        } else {
            parse_fail(why, whylen, "unknown option %s", key);
            return NULL;
        }
    }
    if (!p->target) {
        parse_fail(why, whylen, "target= is required");
        return NULL;
    }
    if (!p->published) {
        parse_fail(why, whylen, "published= is required");
        return NULL;
    }
    return p;
}

PortConfig *parse_publish(const char *s, char *why, size_t whylen)
{
    PortConfig *p = PB_NEW(PortConfig);
    char copy[256], *colon;
    int ok;

    if (!p || pb_set_str(&p->protocol, "tcp")) {
        parse_fail(why, whylen, "out of memory");
        goto out_free_port;
    }
    if (strlen(s) >= sizeof(copy)) {
        parse_fail(why, whylen, "too long");
        goto out_free_port;
    }
    strcpy(copy, s);
    if (strchr(copy, '=')) {
        if (!parse_publish_long(copy, p, why, whylen))
            goto out_free_port;
        return p;
    }
    colon = strchr(copy, ':');
    if (!colon) {
        parse_fail(why, whylen, "PUBLISHED:TARGET, e.g. 8080:80");
        goto out_free_port;
    }
    if (strchr(colon + 1, ':')) {
        parse_fail(why, whylen, "a host address is not supported; PUBLISHED:TARGET");
        goto out_free_port;
    }
    *colon = '\0';
    ok = strchr(copy, '/') == NULL && parse_port(copy, &p->published, why, whylen) == 0 &&
         parse_port(colon + 1, &p->target, why, whylen) == 0;
    if (!ok) {
        if (strchr(copy, '/'))
            parse_fail(why, whylen, "PUBLISHED:TARGET[/tcp], e.g. 8080:80");
        goto out_free_port;
    }
    return p;

out_free_port:
    pb_free(p);
    return NULL;
}

Mount *parse_mount(const char *s, char *why, size_t whylen)
{
    Mount *m = PB_NEW(Mount);
    char copy[4200], *save = NULL, *item, *key, *value;
    int has_type = 0, ro;

    if (!m) {
        parse_fail(why, whylen, "out of memory");
        return NULL;
    }
    if (strlen(s) >= sizeof(copy)) {
        parse_fail(why, whylen, "too long");
        goto out_free_mount;
    }
    strcpy(copy, s);
    for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        if (parse_kv(item, &key, &value)) {
            parse_fail(why, whylen, "empty option");
            goto out_free_mount;
        }
        if (strcmp(key, "readonly") == 0 || strcmp(key, "ro") == 0) {
            if (!value) {
                m->readonly = 1;
            } else if (parse_bool(value, &ro) == 0) {
                m->readonly = ro;
            } else {
                parse_fail(why, whylen, "%s must be true or false", key);
                goto out_free_mount;
            }
            continue;
        }
        if (!value) {
            parse_fail(why, whylen, "%s: expected key=value", key);
            goto out_free_mount;
        }
        if (strcmp(key, "type") == 0) {
            if (strcmp(value, "volume") == 0) {
                m->type = MOUNT_VOLUME;
            } else if (strcmp(value, "bind") == 0) {
                m->type = MOUNT_BIND;
            } else {
                parse_fail(why, whylen, "type must be volume or bind");
                goto out_free_mount;
            }
            has_type = 1;
        } else if (strcmp(key, "source") == 0 || strcmp(key, "src") == 0) {
            if (pb_set_str(&m->source, value))
                goto out_nomem;
        } else if (strcmp(key, "target") == 0 || strcmp(key, "dst") == 0 ||
                   strcmp(key, "destination") == 0) {
            if (pb_set_str(&m->target, value))
                goto out_nomem;
        } else {
            parse_fail(why, whylen, "unknown option %s", key);
            goto out_free_mount;
        }
    }
    if (!has_type)
        m->type = MOUNT_VOLUME; /* Docker's default */
    if (!*m->target) {
        parse_fail(why, whylen, "target= is required");
        goto out_free_mount;
    }
    if (m->target[0] != '/') {
        parse_fail(why, whylen, "target must be an absolute path");
        goto out_free_mount;
    }
    if (m->type == MOUNT_BIND && m->source[0] != '/') {
        parse_fail(why, whylen, "a bind mount needs an absolute source= path");
        goto out_free_mount;
    }
    return m;

out_nomem:
    parse_fail(why, whylen, "out of memory");
out_free_mount:
    pb_free(m);
    return NULL;
}

int parse_words(const char *s, size_t *n, char ***words, char *why, size_t whylen)
{
    size_t len = strlen(s), w = 0;
    char *word = malloc(len + 1);
    int in_word = 0, rc = 0;
    char quote = 0;

    if (!word)
        return -ENOMEM;
    for (const char *p = s;; p++) {
        char c = *p;
        if (quote) {
            if (!c) {
                rc = parse_fail(why, whylen, "unterminated %c quote", quote);
                goto out_free_word;
            }
            if (c == quote) {
                quote = 0;
            } else if (quote == '"' && c == '\\' && p[1] && strchr("\"\\$`", p[1])) {
                word[w++] = *++p;
            } else {
                word[w++] = c;
            }
            continue;
        }
        if (!c || c == ' ' || c == '\t' || c == '\n') {
            if (in_word) {
                word[w] = '\0';
                if ((rc = pb_push_str(n, words, word)))
                    goto out_free_word;
                w = 0;
                in_word = 0;
            }
            if (!c)
                break;
            continue;
        }
        in_word = 1;
        if (c == '\'' || c == '"') {
            quote = c;
        } else if (c == '\\') {
            if (!p[1]) {
                rc = parse_fail(why, whylen, "trailing backslash");
                goto out_free_word;
            }
            word[w++] = *++p;
        } else {
            word[w++] = c;
        }
    }
out_free_word:
    free(word);
    return rc;
}

char *format_memory(int64_t bytes, char *out, size_t len)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double v = (double)bytes;
    int u = 0;

    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0 || v == (double)(int64_t)v)
        snprintf(out, len, "%lld%s", (long long)v, units[u]);
    else
        snprintf(out, len, "%.4g%s", v, units[u]);
    return out;
}

char *format_cpus(int64_t nano, char *out, size_t len)
{
    char frac[16];
    size_t n;

    if (nano % 1000000000 == 0) {
        snprintf(out, len, "%lld", (long long)(nano / 1000000000));
        return out;
    }
    snprintf(frac, sizeof(frac), "%09lld", (long long)(nano % 1000000000));
    n = strlen(frac);
    while (n > 1 && frac[n - 1] == '0')
        frac[--n] = '\0';
    snprintf(out, len, "%lld.%s", (long long)(nano / 1000000000), frac);
    return out;
}

int parse_time(const char *s, int64_t now_ms, int64_t *out_ms)
{
    int64_t ms;
    struct tm tm;
    const char *rest;
    char *end;
    double secs;
    int64_t frac_ms = 0;

    if (!s || !*s)
        return SKIFF_EINVAL;
    if (duration_parse(s, &ms) == 0) {
        *out_ms = now_ms - ms;
        return 0;
    }
    if (isdigit((unsigned char)s[0]) && !strchr(s, '-') && !strchr(s, ':')) {
        errno = 0;
        secs = strtod(s, &end);
        if (errno || *end || secs < 0 || secs > 4e11)
            return SKIFF_EINVAL;
        *out_ms = (int64_t)(secs * 1000.0 + 0.5);
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    rest = strptime(s, "%Y-%m-%d", &tm);
    if (!rest)
        return SKIFF_EINVAL;
    if (*rest == 'T' || *rest == ' ') {
        rest = strptime(rest + 1, "%H:%M:%S", &tm);
        if (!rest)
            return SKIFF_EINVAL;
        if (*rest == '.') {
            int digits = 0;
            rest++;
            while (isdigit((unsigned char)*rest)) {
                if (digits < 3)
                    frac_ms = frac_ms * 10 + (*rest - '0');
                digits++;
                rest++;
            }
            if (!digits)
                return SKIFF_EINVAL;
            for (; digits < 3; digits++)
                frac_ms *= 10;
        }
    }
    ms = (int64_t)timegm(&tm) * 1000 + frac_ms;
    if (*rest == 'Z' || *rest == 'z') {
        rest++;
    } else if (*rest == '+' || *rest == '-') {
        int sign = *rest == '-' ? -1 : 1, hh, mm;
        if (sscanf(rest + 1, "%2d:%2d", &hh, &mm) != 2 || hh > 23 || mm > 59)
            return SKIFF_EINVAL;
        ms -= sign * ((int64_t)hh * 3600 + mm * 60) * 1000;
        rest += 6;
    }
    if (*rest)
        return SKIFF_EINVAL;
    *out_ms = ms;
    return 0;
}
