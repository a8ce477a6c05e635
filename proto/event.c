/* event: see event.h. */
#include "event.h"
#include "pbutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

Event *event_new(const char *type, const char *action, const char *id, const char *name,
                 int64_t time_ms)
{
    Event *e = PB_NEW(Event);

    if (!e)
        return NULL;
    e->time_ms = time_ms;
    if (pb_set_str(&e->type, type) || pb_set_str(&e->action, action) ||
        pb_set_str(&e->id, id) || pb_set_str(&e->name, name)) {
        pb_free(e);
        return NULL;
    }
    return e;
}

int event_set_service(Event *e, const char *service)
{
    return pb_set_str(&e->service, service);
}

int event_set_node(Event *e, const char *node)
{
    return pb_set_str(&e->node, node);
}

int event_attr(Event *e, const char *key, const char *fmt, ...)
{
    Label *l = PB_NEW(Label);
    char value[512];
    va_list ap;

    if (!l)
        return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    if (pb_set_str(&l->key, key) || pb_set_str(&l->value, value) ||
        pb_push_msg(&e->n_attributes, (void ***)&e->attributes, l)) {
        pb_free(l);
        return -ENOMEM;
    }
    return 0;
}

const char *event_attr_get(const Event *e, const char *key)
{
    for (size_t i = 0; i < e->n_attributes; i++)
        if (strcmp(e->attributes[i]->key, key) == 0)
            return e->attributes[i]->value;
    return NULL;
}

void event_format_time(int64_t ms, char *out, size_t len)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&secs, &tm);
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

void event_format_line(const Event *e, char *out, size_t len)
{
    char when[80];
    size_t n;

    event_format_time(e->time_ms, when, sizeof(when));
    n = (size_t)snprintf(out, len, "%s %s %s %s", when, e->type, e->action, e->name);
    if (n < len && (*e->node || e->n_attributes)) {
        const char *sep = " (";
        if (*e->node && strcmp(e->type, "node") != 0) {
            n += (size_t)snprintf(out + n, len - n, "%snode=%s", sep, e->node);
            sep = ", ";
        }
        for (size_t i = 0; i < e->n_attributes && n < len; i++) {
            n += (size_t)snprintf(out + n, len - n, "%s%s=%s", sep, e->attributes[i]->key,
                                  e->attributes[i]->value);
            sep = ", ";
        }
        if (n < len && strcmp(sep, ", ") == 0)
            n += (size_t)snprintf(out + n, len - n, ")");
    }
    if (n < len && *e->message)
        snprintf(out + n, len - n, ": %s", e->message);
}

const char *task_state_name(TaskState s)
{
    static const char *const names[] = {
        "new", "pending", "assigned", "pulling", "starting", "running", "complete",
        "failed", "shutdown", "rejected", "orphaned", "removed",
    };

    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

const char *task_health_name(Health h)
{
    static const char *const names[] = { "none", "starting", "healthy", "unhealthy" };

    return (unsigned)h < sizeof(names) / sizeof(names[0]) ? names[h] : "unknown";
}
