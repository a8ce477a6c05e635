/* fuzz_duration: duration_parse and duration_format.
 *
 * The input is a string (up to its first NUL). Checked:
 *   - what parses is not negative, and its format parses back to the same
 *     value, and formats to the same text again;
 *   - the first 8 bytes as a number of milliseconds (within what a duration
 *     can hold) format into fewer than 32 bytes and parse back to it;
 *   - parsing never reads past the NUL (ASan) and never overflows (UBSan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "errors.h"

#define FZ_MAX_MS (INT64_MAX / 1000000) /* the most a duration holds, in ms */

static void fz_format_parses_back(int64_t ms)
{
    char out[32], again[32];
    int64_t back = -1;

    duration_format(ms, out, sizeof(out));
    if (strlen(out) >= sizeof(out) - 1)
        abort();
    if (duration_parse(out, &back) != 0 || back != ms)
        abort();
    duration_format(back, again, sizeof(again));
    if (strcmp(out, again) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    int64_t ms = -1;
    int rc;

    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    rc = duration_parse(s, &ms);
    if (rc != 0 && rc != SKIFF_EINVAL)
        abort();
    if (rc == 0) {
        /* Sub-millisecond parts round up, so the largest duration parses
         * to one ms past what a whole number of ms can say (documented by
         * tests/unit/test_duration.c): that one does not parse back. */
        if (ms < 0 || ms > FZ_MAX_MS + 1)
            abort();
        if (ms <= FZ_MAX_MS)
            fz_format_parses_back(ms);
    } else if (ms != -1) {
        abort(); /* untouched on error */
    }
    free(s);

    if (size >= 8) {
        uint64_t raw;
        memcpy(&raw, data, 8);
        fz_format_parses_back((int64_t)(raw % ((uint64_t)FZ_MAX_MS + 1)));
    }
    return 0;
}
