/* event: building and printing Event messages (proto/skiff.proto), the
 * records of what happened in a cluster. The controller makes them
 * (controller/events.h keeps them); `skiff events` prints them.
 */
#ifndef SKIFF_EVENT_H
#define SKIFF_EVENT_H

#include <stddef.h>

#include "skiff_pb.h"

/* A new event (wholly malloc'd, pbutil.h's rule) of this type and action
 * about the object id/name, at time_ms (Unix ms). NULL when out of memory. */
Event *event_new(const char *type, const char *action, const char *id, const char *name,
                 int64_t time_ms);
/* Set the service or node concerned. Return 0 or -ENOMEM. */
int event_set_service(Event *e, const char *service);
int event_set_node(Event *e, const char *node);
/* Adds the attribute key=value (printf-style). Returns 0 or -ENOMEM. */
int event_attr(Event *e, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The value of an attribute, or NULL. */
const char *event_attr_get(const Event *e, const char *key);

/* The line `skiff events` prints, as docker events does:
 *   2026-12-06T13:50:01.123Z task running web.2 (node=n1, from=starting): message
 * Truncated to len. */
void event_format_line(const Event *e, char *out, size_t len);

/* The lowercase names of task states ("running") and health ("healthy"),
 * as events, metrics and logs write them. */
const char *task_state_name(TaskState s);
const char *task_health_name(Health h);

/* Unix ms as "2026-12-06T13:50:01.123Z" (24 characters for years 1000 to 9999). */
void event_format_time(int64_t ms, char *out, size_t len);

#endif
