/* seal: secrets at rest, AES-256-GCM with OpenSSL.
 *
 * A sealed value is nonce (12 random bytes) | ciphertext | tag (16), bound
 * to what it belongs to by the additional data (a secret's id), so that a
 * sealed value copied onto another row does not open there.
 *
 * The data key that seals the cluster's secrets lives outside the store:
 * in <data-dir>/secret-key (SQLite), or on a shared store in its row
 * keys/secret. Either holds one line, the key plain, or wrapped (sealed)
 * by an unlock key that is never written anywhere (--autolock):
 *   skiff-secret-key 1 plain <64 hex>
 *   skiff-secret-key 1 wrapped <hex of the sealed key>
 * An unlock key is shown to people as SKIFF-UNLOCK-<64 hex>.
 *
 * Pure functions: no I/O but the random bytes.
 */
#ifndef SKIFF_SEAL_H
#define SKIFF_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define SEAL_KEY_LEN 32
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN 16
#define SEAL_OVERHEAD (SEAL_NONCE_LEN + SEAL_TAG_LEN)
#define SEAL_UNLOCK_PREFIX "SKIFF-UNLOCK-"
#define SEAL_UNLOCK_TEXT_LEN (sizeof(SEAL_UNLOCK_PREFIX) - 1 + 2 * SEAL_KEY_LEN)
#define SEAL_KEY_TEXT_MAX 256

/* Fills key with random bytes. Returns 0, or -1 when the random source failed. */
int seal_new_key(uint8_t key[SEAL_KEY_LEN]);

/* Seals len bytes of plain into a new buffer of len + SEAL_OVERHEAD bytes
 * (*out, malloc'd). Returns 0, -ENOMEM, or -1 when OpenSSL failed. */
int seal_encrypt(const uint8_t key[SEAL_KEY_LEN], const char *aad, const uint8_t *plain,
                 size_t len, uint8_t **out, size_t *out_len);

/* Opens a sealed value into a new buffer (*out, malloc'd, *out_len bytes;
 * NUL-terminated past the end for convenience). Returns 0, -ENOMEM, or
 * SKIFF_EINVAL when it does not open with this key and aad (the wrong key,
 * or changed bytes). */
int seal_decrypt(const uint8_t key[SEAL_KEY_LEN], const char *aad, const uint8_t *sealed,
                 size_t len, uint8_t **out, size_t *out_len);

/* The key line of a data key: plain, or wrapped by unlock (NULL: plain).
 * Returns 0, or -1 when sealing failed. */
int seal_key_format(const uint8_t key[SEAL_KEY_LEN], const uint8_t *unlock,
                    char out[SEAL_KEY_TEXT_MAX]);

/* Reads a key line. *wrapped tells whether it needs an unlock key; when it
 * does, key is filled only if unlock (NULL: none yet) opens it. Returns 0,
 * SKIFF_EINVAL for a line that is not a key line, or SKIFF_EAUTH for an
 * unlock key that does not open it. */
int seal_key_parse(const char *line, const uint8_t *unlock, int *wrapped,
                   uint8_t key[SEAL_KEY_LEN]);

/* An unlock key as people see it, and back (spaces and a newline around it
 * are allowed). parse returns 0 or SKIFF_EINVAL. */
void seal_unlock_format(const uint8_t unlock[SEAL_KEY_LEN], char out[SEAL_UNLOCK_TEXT_LEN + 1]);
int seal_unlock_parse(const char *text, uint8_t unlock[SEAL_KEY_LEN]);

#endif
