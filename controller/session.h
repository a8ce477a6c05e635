/* session: the dashboard's login sessions, a bounded table in memory.
 *
 * A browser that logs in with the admin token (POST /api/v1/login) gets a
 * session: a random 256-bit id, sent back as an HttpOnly, SameSite=Strict
 * cookie, and a random 256-bit CSRF token, given to the page in the JSON
 * answer and required in X-CSRF-Token on every action. The browser keeps
 * no copy of the admin token. At most SESSION_MAX sessions live at once (a
 * login past that ends the one closest to its end), each SESSION_TTL_MS
 * from its login; none survives the controller's restart.
 *
 * Ids and CSRF tokens come from OpenSSL's RAND_bytes and are compared in
 * constant time. No I/O, no clock: times are the caller's (ms).
 */
#ifndef SKIFF_SESSION_H
#define SKIFF_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#define SESSION_MAX 64
#define SESSION_TTL_MS (12LL * 3600 * 1000)
#define SESSION_HEX 64 /* 32 random bytes in hex */
#define SESSION_COOKIE "skiff_session"

typedef struct session {
    char id[SESSION_HEX + 1];   /* "" when the slot is free */
    char csrf[SESSION_HEX + 1];
    int64_t expires_ms;
} session_t;

typedef struct sessions {
    session_t s[SESSION_MAX];
} sessions_t;

/* A new session, expiring at now_ms + SESSION_TTL_MS, in a free slot, an
 * expired one, or else the one that would end first. Returns it, or NULL
 * when no randomness could be had (nothing changed). */
const session_t *session_create(sessions_t *t, int64_t now_ms);

/* The live session of id, or NULL (unknown, or expired: then freed). */
const session_t *session_find(sessions_t *t, const char *id, int64_t now_ms);

/* Ends the session of id. Returns 0, or SKIFF_ENOTFOUND. */
int session_drop(sessions_t *t, const char *id);

/* Ends every session (the admin token changed). */
void session_clear(sessions_t *t);

/* The number of live sessions at now_ms. */
unsigned session_count(const sessions_t *t, int64_t now_ms);

/* Whether presented (may be NULL) is s's CSRF token. */
bool session_csrf_ok(const session_t *s, const char *presented);

/* The value of the SESSION_COOKIE cookie in a Cookie header ("a=1;
 * skiff_session=ID"), copied to out. Returns 0, or SKIFF_ENOTFOUND when the
 * header is NULL, has no such cookie or its value is not SESSION_HEX hex
 * digits. */
int session_cookie_id(const char *cookie_header, char out[SESSION_HEX + 1]);

#endif
