/* token: skiff's join and admin tokens, SKIFF-1-<digest>-<secret>.
 *
 * The digest is the sha256 (hex) of the cluster CA's certificate: whoever
 * holds a token can tell the real controller from an impostor before it
 * sends anything (tls.h, pinning). The secret is 32 random bytes in hex:
 * it goes to the controller only inside TLS, in NodeJoin (join token) or
 * Hello (admin token). The old bare tokens (64 hex digits, from before
 * TLS) are refused with a message saying where the new ones are.
 */
#ifndef SKIFF_TOKEN_H
#define SKIFF_TOKEN_H

#include <stddef.h>

#include "pki.h"

#define TOKEN_SECRET_HEX 64
#define TOKEN_PREFIX "SKIFF-1-"
/* "SKIFF-1-" + digest + "-" + secret */
#define TOKEN_LEN (8 + PKI_DIGEST_HEX + 1 + TOKEN_SECRET_HEX)

typedef struct token {
    char digest[PKI_DIGEST_HEX + 1];
    char secret[TOKEN_SECRET_HEX + 1];
} token_t;

/* Parses s (surrounding white space allowed; hex in either case, kept
 * lowercase). Returns 0, or SKIFF_EINVAL with err saying what is wrong,
 * one line: for an old bare token, where the new one is. */
int token_parse(const char *s, token_t *out, char *err, size_t errlen);

/* Writes the token (TOKEN_LEN + 1 bytes). */
void token_format(const token_t *t, char out[TOKEN_LEN + 1]);

/* 32 random bytes in hex (getrandom). */
void token_secret_new(char out[TOKEN_SECRET_HEX + 1]);

/* Constant-time comparison of a presented secret with the expected one
 * (lowercase hex, TOKEN_SECRET_HEX characters): always the same steps,
 * whatever length was presented; hex in either case. 1 when equal. */
int token_secret_match(const char *expected, const char *presented);

#endif
