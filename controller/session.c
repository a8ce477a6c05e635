/* session: the dashboard's login sessions (see session.h). */
#include "session.h"

#include "errors.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

/* 32 random bytes as 64 lowercase hex digits. */
static int session_random_hex(char out[SESSION_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[SESSION_HEX / 2];

    if (RAND_bytes(raw, (int)sizeof(raw)) != 1)
        return SKIFF_EUNAVAILABLE;
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[SESSION_HEX] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

static bool session_hex_ok(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return n == SESSION_HEX;
}

/* Constant time for SESSION_HEX-long strings, whatever they hold. */
static bool session_equal(const char *expected, const char *presented)
{
    return presented && strlen(presented) == SESSION_HEX &&
           CRYPTO_memcmp(expected, presented, SESSION_HEX) == 0;
}

const session_t *session_create(sessions_t *t, int64_t now_ms)
{
    session_t fresh, *slot = NULL;

    if (session_random_hex(fresh.id) || session_random_hex(fresh.csrf))
        return NULL;
    fresh.expires_ms = now_ms + SESSION_TTL_MS;
    for (size_t i = 0; i < SESSION_MAX; i++) {
        session_t *s = &t->s[i];
        if (!s->id[0] || s->expires_ms <= now_ms) {
            slot = s;
            break;
        }
        if (!slot || s->expires_ms < slot->expires_ms)
            slot = s; /* the one that would end first */
    }
    *slot = fresh;
    OPENSSL_cleanse(&fresh, sizeof(fresh));
    return slot;
}

const session_t *session_find(sessions_t *t, const char *id, int64_t now_ms)
{
    session_t *found = NULL;

    if (!id || !session_hex_ok(id))
        return NULL;
    for (size_t i = 0; i < SESSION_MAX; i++) /* every slot: no early exit */
        if (t->s[i].id[0] && session_equal(t->s[i].id, id))
            found = &t->s[i];
    if (found && found->expires_ms <= now_ms) {
        OPENSSL_cleanse(found, sizeof(*found));
        return NULL;
    }
    return found;
}

int session_drop(sessions_t *t, const char *id)
{
    for (size_t i = 0; id && i < SESSION_MAX; i++) {
        if (t->s[i].id[0] && session_equal(t->s[i].id, id)) {
            OPENSSL_cleanse(&t->s[i], sizeof(t->s[i]));
            return 0;
        }
    }
    return SKIFF_ENOTFOUND;
}

void session_clear(sessions_t *t)
{
    OPENSSL_cleanse(t, sizeof(*t));
}

unsigned session_count(const sessions_t *t, int64_t now_ms)
{
    unsigned n = 0;

    for (size_t i = 0; i < SESSION_MAX; i++)
        n += t->s[i].id[0] && t->s[i].expires_ms > now_ms;
    return n;
}

bool session_csrf_ok(const session_t *s, const char *presented)
{
    return session_equal(s->csrf, presented);
}

int session_cookie_id(const char *h, char out[SESSION_HEX + 1])
{
    const size_t name_len = strlen(SESSION_COOKIE);

    out[0] = '\0';
    while (h && *h) {
        size_t n;
        h += strspn(h, " \t;");
        n = strcspn(h, ";");
        if (n == name_len + 1 + SESSION_HEX && strncmp(h, SESSION_COOKIE "=", name_len + 1) == 0) {
            memcpy(out, h + name_len + 1, SESSION_HEX);
            out[SESSION_HEX] = '\0';
            if (session_hex_ok(out))
                return 0;
            out[0] = '\0';
        }
        h += n;
    }
    return SKIFF_ENOTFOUND;
}
