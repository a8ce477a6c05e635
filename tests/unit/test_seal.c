/* Unit tests of controller/seal: sealing secrets, and the data key's line,
 * plain and wrapped by an unlock key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "errors.h"
#include "seal.h"

static void test_seal_round_trip(void **state)
{
    uint8_t key[SEAL_KEY_LEN], other[SEAL_KEY_LEN], *sealed, *opened;
    const char *plain = "correct horse battery staple";
    size_t len, olen;

    assert_int_equal(seal_new_key(key), 0);
    assert_int_equal(seal_new_key(other), 0);
    assert_int_equal(seal_encrypt(key, "id1", (const uint8_t *)plain, strlen(plain), &sealed,
                                  &len), 0);
    assert_int_equal(len, strlen(plain) + SEAL_OVERHEAD);
    assert_null(memmem(sealed, len, plain, strlen(plain)));
    assert_null(memmem(sealed, len, "horse", 5));
    assert_int_equal(seal_decrypt(key, "id1", sealed, len, &opened, &olen), 0);
    assert_int_equal(olen, strlen(plain));
    assert_memory_equal(opened, plain, olen);
    free(opened);
    /* Another key, another row's id, a changed byte, a short value: none opens. */
    assert_int_equal(seal_decrypt(other, "id1", sealed, len, &opened, &olen), SKIFF_EINVAL);
    assert_null(opened);
    assert_int_equal(seal_decrypt(key, "id2", sealed, len, &opened, &olen), SKIFF_EINVAL);
    sealed[SEAL_NONCE_LEN + 3] ^= 1;
    assert_int_equal(seal_decrypt(key, "id1", sealed, len, &opened, &olen), SKIFF_EINVAL);
    assert_int_equal(seal_decrypt(key, "id1", sealed, SEAL_OVERHEAD - 1, &opened, &olen),
                     SKIFF_EINVAL);
    free(sealed);
}

static void test_seal_twice_differs(void **state)
{
    uint8_t key[SEAL_KEY_LEN], *a, *b, *opened;
    size_t la, lb, lo;

    assert_int_equal(seal_new_key(key), 0);
    assert_int_equal(seal_encrypt(key, "x", (const uint8_t *)"v", 1, &a, &la), 0);
    assert_int_equal(seal_encrypt(key, "x", (const uint8_t *)"v", 1, &b, &lb), 0);
    assert_int_equal(la, lb);
    assert_memory_not_equal(a, b, la); /* a fresh nonce each time */
    free(a);
    free(b);
    /* An empty value seals too. */
    assert_int_equal(seal_encrypt(key, "x", NULL, 0, &a, &la), 0);
    assert_int_equal(seal_decrypt(key, "x", a, la, &opened, &lo), 0);
    assert_int_equal(lo, 0);
    free(opened);
    free(a);
}

static void test_key_line_plain(void **state)
{
    uint8_t key[SEAL_KEY_LEN], back[SEAL_KEY_LEN];
    char line[SEAL_KEY_TEXT_MAX];
    int wrapped = -1;

    assert_int_equal(seal_new_key(key), 0);
    assert_int_equal(seal_key_format(key, NULL, line), 0);
    assert_non_null(strstr(line, "skiff-secret-key 1 plain "));
    assert_int_equal(seal_key_parse(line, NULL, &wrapped, back), 0);
    assert_int_equal(wrapped, 0);
    assert_memory_equal(key, back, SEAL_KEY_LEN);
    assert_int_equal(seal_key_parse("skiff-secret-key 1 plain 00", NULL, &wrapped, back),
                     SKIFF_EINVAL);
    assert_int_equal(seal_key_parse("something else", NULL, &wrapped, back), SKIFF_EINVAL);
    line[strlen(line) - 1] = 'x'; /* trailing junk */
    assert_int_equal(seal_key_parse(line, NULL, &wrapped, back), SKIFF_EINVAL);
}

static void test_key_line_wrapped(void **state)
{
    uint8_t key[SEAL_KEY_LEN], unlock[SEAL_KEY_LEN], wrong[SEAL_KEY_LEN];
    uint8_t back[SEAL_KEY_LEN], parsed[SEAL_KEY_LEN];
    char line[SEAL_KEY_TEXT_MAX], text[SEAL_UNLOCK_TEXT_LEN + 1], hex[2 * SEAL_KEY_LEN + 1];
    int wrapped = -1;

    assert_int_equal(seal_new_key(key), 0);
    assert_int_equal(seal_new_key(unlock), 0);
    assert_int_equal(seal_new_key(wrong), 0);
    assert_int_equal(seal_key_format(key, unlock, line), 0);
    assert_non_null(strstr(line, "skiff-secret-key 1 wrapped "));
    /* The key is not in the line, in hex. */
    for (size_t i = 0; i < SEAL_KEY_LEN; i++)
        sprintf(hex + 2 * i, "%02x", key[i]);
    assert_null(strstr(line, hex));
    /* Without the unlock key: only that it is wrapped. */
    memset(back, 0, sizeof(back));
    assert_int_equal(seal_key_parse(line, NULL, &wrapped, back), 0);
    assert_int_equal(wrapped, 1);
    assert_int_equal(seal_key_parse(line, wrong, &wrapped, back), SKIFF_EAUTH);
    assert_int_equal(seal_key_parse(line, unlock, &wrapped, back), 0);
    assert_memory_equal(key, back, SEAL_KEY_LEN);

    seal_unlock_format(unlock, text);
    assert_int_equal(strlen(text), SEAL_UNLOCK_TEXT_LEN);
    assert_int_equal(strncmp(text, "SKIFF-UNLOCK-", 13), 0);
    assert_int_equal(seal_unlock_parse(text, parsed), 0);
    assert_memory_equal(parsed, unlock, SEAL_KEY_LEN);
    {
        char spaced[SEAL_UNLOCK_TEXT_LEN + 8];
        snprintf(spaced, sizeof spaced, "  %s\n", text);
        assert_int_equal(seal_unlock_parse(spaced, parsed), 0);
        spaced[20] = 'g';
        assert_int_equal(seal_unlock_parse(spaced, parsed), SKIFF_EINVAL);
    }
    assert_int_equal(seal_unlock_parse("SKIFF-UNLOCK-00", parsed), SKIFF_EINVAL);
    assert_int_equal(seal_unlock_parse("", parsed), SKIFF_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_round_trip),
        cmocka_unit_test(test_seal_twice_differs),
        cmocka_unit_test(test_key_line_plain),
        cmocka_unit_test(test_key_line_wrapped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
