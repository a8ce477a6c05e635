/* seal: see seal.h. */
#include "seal.h"
#include "errors.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define SEAL_KEY_AAD "skiff data key"

int seal_new_key(uint8_t key[SEAL_KEY_LEN])
{
    return RAND_bytes(key, SEAL_KEY_LEN) == 1 ? 0 : -1;
}

/* One pass of AES-256-GCM, either way. For decryption the tag is set
 * before the final step, which checks it. */
static int seal_gcm(int enc, const uint8_t *key, const uint8_t *nonce, const char *aad,
                    const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n, rc = -1;

    if (!c || len > INT32_MAX)
        goto out;
    if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce, enc) != 1 ||
        EVP_CipherUpdate(c, NULL, &n, (const uint8_t *)aad, (int)strlen(aad)) != 1 ||
        (len && EVP_CipherUpdate(c, out, &n, in, (int)len) != 1))
        goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, tag) != 1)
        goto out;
    if (EVP_CipherFinal_ex(c, out + len, &n) != 1)
        goto out;
    if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, tag) != 1)
        goto out;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

int seal_encrypt(const uint8_t key[SEAL_KEY_LEN], const char *aad, const uint8_t *plain,
                 size_t len, uint8_t **out, size_t *out_len)
{
    uint8_t *buf = malloc(len + SEAL_OVERHEAD + 16); /* room for the final block's bytes */

    *out = NULL;
    if (!buf)
        return -ENOMEM;
    if (RAND_bytes(buf, SEAL_NONCE_LEN) != 1 ||
        seal_gcm(1, key, buf, aad, plain, len, buf + SEAL_NONCE_LEN,
                 buf + SEAL_NONCE_LEN + len)) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = len + SEAL_OVERHEAD;
    return 0;
}

int seal_decrypt(const uint8_t key[SEAL_KEY_LEN], const char *aad, const uint8_t *sealed,
                 size_t len, uint8_t **out, size_t *out_len)
{
    uint8_t tag[SEAL_TAG_LEN], *buf;
    size_t n;

    *out = NULL;
    if (len < SEAL_OVERHEAD)
        return SKIFF_EINVAL;
    n = len - SEAL_OVERHEAD;
    if (!(buf = malloc(n + 17)))
        return -ENOMEM;
    memcpy(tag, sealed + SEAL_NONCE_LEN + n, SEAL_TAG_LEN);
    if (seal_gcm(0, key, sealed, aad, sealed + SEAL_NONCE_LEN, n, buf, tag)) {
        OPENSSL_cleanse(buf, n + 17);
        free(buf);
        return SKIFF_EINVAL;
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
}

static void seal_hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/* Reads exactly n bytes of hex; returns the characters read, or 0. */
static size_t seal_unhex(const char *s, uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (!isxdigit((unsigned char)s[2 * i]) || !isxdigit((unsigned char)s[2 * i + 1]) ||
            sscanf(s + 2 * i, "%2x", &v) != 1)
            return 0;
        b[i] = (uint8_t)v;
    }
    return 2 * n;
}

int seal_key_format(const uint8_t key[SEAL_KEY_LEN], const uint8_t *unlock,
                    char out[SEAL_KEY_TEXT_MAX])
{
    uint8_t *sealed;
    size_t len;
    int n;

    if (!unlock) {
        n = snprintf(out, SEAL_KEY_TEXT_MAX, "skiff-secret-key 1 plain ");
        seal_hex(key, SEAL_KEY_LEN, out + n);
        strcat(out, "\n");
        return 0;
    }
    if (seal_encrypt(unlock, SEAL_KEY_AAD, key, SEAL_KEY_LEN, &sealed, &len))
        return -1;
    n = snprintf(out, SEAL_KEY_TEXT_MAX, "skiff-secret-key 1 wrapped ");
    seal_hex(sealed, len, out + n);
    strcat(out, "\n");
    OPENSSL_cleanse(sealed, len);
    free(sealed);
    return 0;
}

int seal_key_parse(const char *line, const uint8_t *unlock, int *wrapped,
                   uint8_t key[SEAL_KEY_LEN])
{
    static const char plain[] = "skiff-secret-key 1 plain ";
    static const char wrap[] = "skiff-secret-key 1 wrapped ";
    uint8_t sealed[SEAL_KEY_LEN + SEAL_OVERHEAD], *opened;
    size_t n;
    const char *rest;
    int rc;

    if (strncmp(line, plain, sizeof(plain) - 1) == 0) {
        rest = line + sizeof(plain) - 1;
        *wrapped = 0;
        n = seal_unhex(rest, key, SEAL_KEY_LEN);
    } else if (strncmp(line, wrap, sizeof(wrap) - 1) == 0) {
        rest = line + sizeof(wrap) - 1;
        *wrapped = 1;
        n = seal_unhex(rest, sealed, sizeof(sealed));
    } else {
        return SKIFF_EINVAL;
    }
    if (!n || (rest[n] && strcmp(rest + n, "\n") != 0))
        return SKIFF_EINVAL;
    if (!*wrapped || !unlock)
        return 0;
    rc = seal_decrypt(unlock, SEAL_KEY_AAD, sealed, sizeof(sealed), &opened, &n);
    if (rc == SKIFF_EINVAL)
        return SKIFF_EAUTH;
    if (rc)
        return rc;
    memcpy(key, opened, SEAL_KEY_LEN);
    OPENSSL_cleanse(opened, n);
    free(opened);
    return 0;
}

void seal_unlock_format(const uint8_t unlock[SEAL_KEY_LEN], char out[SEAL_UNLOCK_TEXT_LEN + 1])
{
    memcpy(out, SEAL_UNLOCK_PREFIX, sizeof(SEAL_UNLOCK_PREFIX));
    seal_hex(unlock, SEAL_KEY_LEN, out + sizeof(SEAL_UNLOCK_PREFIX) - 1);
}

int seal_unlock_parse(const char *text, uint8_t unlock[SEAL_KEY_LEN])
{
    size_t n;

    while (isspace((unsigned char)*text))
        text++;
    if (strncmp(text, SEAL_UNLOCK_PREFIX, sizeof(SEAL_UNLOCK_PREFIX) - 1) != 0)
        return SKIFF_EINVAL;
    text += sizeof(SEAL_UNLOCK_PREFIX) - 1;
    if (!(n = seal_unhex(text, unlock, SEAL_KEY_LEN)))
        return SKIFF_EINVAL;
    for (text += n; *text; text++)
        if (!isspace((unsigned char)*text))
            return SKIFF_EINVAL;
    return 0;
}
