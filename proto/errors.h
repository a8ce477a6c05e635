/* errors: skiff's own error codes, in one list that also gives their text.
 *
 * Functions that act return 0 or a negative code: either a negated errno
 * value (-ENOMEM, -ENOBUFS, ...) or one of the SKIFF_E* codes below, which
 * sit far below the errno range. skiff_strerror() names both.
 */
#ifndef SKIFF_ERRORS_H
#define SKIFF_ERRORS_H

#define SKIFF_ERRORS(X)                                                        \
    X(FRAME, -1001, "malformed frame")                                        \
    X(TOOBIG, -1002, "frame too large")                                       \
    X(AUTH, -1003, "authentication failed")                                   \
    X(PROTO, -1004, "protocol error")                                         \
    X(NOTFOUND, -1005, "not found")                                           \
    X(EXISTS, -1006, "already exists")                                        \
    X(INVAL, -1007, "invalid argument")                                       \
    X(CONFLICT, -1008, "conflict")                                            \
    X(LIMIT, -1009, "limit exceeded")                                         \
    X(ENGINE, -1010, "container engine error")                                \
    X(CLOSED, -1011, "connection closed")                                     \
    X(TIMEDOUT, -1012, "timed out")                                           \
    X(STORE, -1013, "store error")                                            \
    X(UNAVAILABLE, -1014, "unavailable")                                     \
    X(TLS, -1015, "TLS failed")

enum skiff_error {
#define SKIFF_ERROR_ENUM(name, code, text) SKIFF_E##name = code,
    SKIFF_ERRORS(SKIFF_ERROR_ENUM)
#undef SKIFF_ERROR_ENUM
};

/* The text of a skiff code or of a negated errno value. Never NULL. */
const char *skiff_strerror(int code);

#endif
