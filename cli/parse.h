/* parse: values as Docker writes them on a command line or in a Compose file:
 * sizes ("512m"), CPUs ("0.5"), ports ("8080:80", "published=8080,target=80"),
 * mounts ("type=volume,source=data,target=/data"), command words.
 *
 * Pure functions, no I/O. Each returns 0, or SKIFF_EINVAL with a short reason
 * in why ("type must be volume or bind") that the caller puts after the
 * value in its own message; -ENOMEM when out of memory.
 */
#ifndef SKIFF_CLI_PARSE_H
#define SKIFF_CLI_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "skiff_pb.h"

/* A decimal number without sign, up to max. */
int parse_uint(const char *s, uint64_t max, uint64_t *out);

/* "true", "false", "1", "0" (and "yes", "no"). */
int parse_bool(const char *s, int *out);

/* A number between 0 and 1 ("0.25"). */
int parse_ratio(const char *s, double *out);

/* Docker's memory sizes: "1024", "512k", "512m", "1g", "1.5g", "64MiB",
 * "1gb" (binary units, case-insensitive), into bytes. */
int parse_memory(const char *s, int64_t *bytes);

/* CPUs as a decimal ("2", "0.5", "1.25") into nano-CPUs (1e9 per CPU). */
int parse_cpus(const char *s, int64_t *nano);

/* A port: "80" or "80/tcp" (tcp is the only protocol skiff balances). */
int parse_port(const char *s, uint32_t *port, char *why, size_t whylen);

/* -p/--publish: "8080:80", "8080:80/tcp", or the long form
 * "published=8080,target=80[,protocol=tcp][,mode=ingress]". Returns a new
 * PortConfig (pb_free) or NULL with why set. */
PortConfig *parse_publish(const char *s, char *why, size_t whylen);

/* --mount: "type=volume|bind,source=S,target=T[,readonly[=true|false]]"
 * (also src, dst, destination, ro). Returns a new Mount or NULL. */
Mount *parse_mount(const char *s, char *why, size_t whylen);

/* Splits a command line into words as a POSIX shell would, without
 * expansions: blanks separate, '...' and "..." quote, \ escapes. Appends
 * the words to *words (pb_push_str). */
int parse_words(const char *s, size_t *n, char ***words, char *why, size_t whylen);

/* A point in time as docker events takes it, into Unix ms: a duration
 * before now_ms ("10m", "1h30m"), Unix seconds ("1765029001", "1765029001.5"),
 * or an RFC 3339 date and time in UTC or with an offset
 * ("2026-12-06T13:50:01Z", "2026-12-06T13:50:01.123+01:00", "2026-12-06"). */
int parse_time(const char *s, int64_t now_ms, int64_t *out_ms);

/* Makes s one line: control characters become '?' (messages quote values
 * that may hold newlines). Returns s. */
char *parse_one_line(char *s);

/* Human form of a size in bytes ("512MiB", "1.5GiB", "100B") and of
 * nano-CPUs ("0.5"), for messages and JSON. */
char *format_memory(int64_t bytes, char *out, size_t len);
char *format_cpus(int64_t nano, char *out, size_t len);

#endif
