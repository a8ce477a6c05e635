/* token: see token.h. */
#include "token.h"
#include "errors.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static int token_hex(const char *s, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return 0;
        out[i] = (char)tolower((unsigned char)s[i]);
    }
    out[n] = '\0';
    return 1;
}

int token_parse(const char *s, token_t *out, char *err, size_t errlen)
{
    size_t n;

    memset(out, 0, sizeof(*out));
    while (isspace((unsigned char)*s))
        s++;
    for (n = strlen(s); n > 0 && isspace((unsigned char)s[n - 1]); n--)
        ;
    if (n == TOKEN_SECRET_HEX && strspn(s, "0123456789abcdefABCDEF") >= n) {
        snprintf(err, errlen, "an old token, from before TLS: the controller has written a "
                 "new one (SKIFF-1-...) in its data dir (join-token, admin-token); use that");
        return SKIFF_EINVAL;
    }
    if (n != TOKEN_LEN || strncmp(s, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) != 0 ||
        s[strlen(TOKEN_PREFIX) + PKI_DIGEST_HEX] != '-' ||
        !token_hex(s + strlen(TOKEN_PREFIX), PKI_DIGEST_HEX, out->digest) ||
        !token_hex(s + strlen(TOKEN_PREFIX) + PKI_DIGEST_HEX + 1, TOKEN_SECRET_HEX,
                   out->secret)) {
        memset(out, 0, sizeof(*out));
        snprintf(err, errlen, "not a skiff token (SKIFF-1-<64 hex digits>-<64 hex digits>)");
        return SKIFF_EINVAL;
    }
    return 0;
}

void token_format(const token_t *t, char out[TOKEN_LEN + 1])
{
    snprintf(out, TOKEN_LEN + 1, TOKEN_PREFIX "%s-%s", t->digest, t->secret);
}

void token_secret_new(char out[TOKEN_SECRET_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[TOKEN_SECRET_HEX / 2];
    size_t got = 0;

    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[TOKEN_SECRET_HEX] = '\0';
}

int token_secret_match(const char *expected, const char *presented)
{
    size_t n = strlen(presented);
    unsigned char diff = n != TOKEN_SECRET_HEX;

    /* Always TOKEN_SECRET_HEX steps, whatever was presented. Hex in either
     * case: 'A'-'F' read as 'a'-'f' (expected is lowercase). */
    for (size_t i = 0; i < TOKEN_SECRET_HEX; i++) {
        unsigned char c = (unsigned char)(i < n ? presented[i] : 0);
        c |= (unsigned char)((c >= 'A' && c <= 'F') << 5);
        diff |= (unsigned char)expected[i] ^ c;
    }
    return diff == 0;
}
