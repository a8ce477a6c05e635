/* log: one-line log records on stderr, with a level set once at start.
 *
 * A record reads "2026-11-27T21:44:47.123Z info  controller: node n1 ready".
 * The component is the binary's role, set with log_init().
 */
#ifndef SKIFF_LOG_H
#define SKIFF_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_init(const char *component, enum log_level level);

/* Parses "debug", "info", "warn" or "error". Returns 0 or SKIFF_EINVAL. */
int log_level_parse(const char *s, enum log_level *out);

void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_write(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

#endif
