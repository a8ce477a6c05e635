/* duration: durations written as Docker writes them ("500ms", "3s",
 * "1m30s", "1h", "1.5s"), held as milliseconds.
 *
 * Units: h, m, s, ms, us, ns; a number may have a fraction; several
 * number-unit pairs add up ("1h2m3.5s"). "0" alone is zero. Anything else is
 * an error: no sign, no bare numbers, no spaces, nothing past ~292 years.
 */
#ifndef SKIFF_DURATION_H
#define SKIFF_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Parses s into *ms (sub-millisecond parts round up to 1 ms when the whole
 * is not zero). Returns 0 or SKIFF_EINVAL; *ms is untouched on error. */
int duration_parse(const char *s, int64_t *ms);

/* Writes ms as the shortest of Docker's forms: "0s", "500ms", "3s",
 * "1m30s", "1.5s", "2h0m5s". Returns out. len >= 32 is always enough. */
char *duration_format(int64_t ms, char *out, size_t len);

#endif
