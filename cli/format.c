/* format: see format.h. */
#include "format.h"
#include "parse.h"
#include "pbjson.h"
#include "table.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t fmt_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *fmt_id(const char *id, int no_trunc, char *out, size_t len)
{
    size_t n = strlen(id);

    if (!no_trunc && n > FMT_ID_LEN)
        n = FMT_ID_LEN;
    if (n >= len)
        n = len - 1;
    memcpy(out, id, n);
    out[n] = '\0';
    return out;
}

char *fmt_age(int64_t since_ms, int64_t now_ms, char *out, size_t len)
{
    int64_t d = now_ms > since_ms ? now_ms - since_ms : 0;
    int64_t secs = d / 1000, mins = d / 60000, hours = (d + 1800000) / 3600000;

    if (secs < 1)
        snprintf(out, len, "less than a second ago");
    else if (secs == 1)
        snprintf(out, len, "1 second ago");
    else if (secs < 60)
        snprintf(out, len, "%lld seconds ago", (long long)secs);
    else if (mins == 1)
        snprintf(out, len, "about a minute ago");
    else if (mins < 60)
        snprintf(out, len, "%lld minutes ago", (long long)mins);
    else if (hours == 1)
        snprintf(out, len, "about an hour ago");
    else if (hours < 48)
        snprintf(out, len, "%lld hours ago", (long long)hours);
    else if (hours < 24 * 7 * 2)
        snprintf(out, len, "%lld days ago", (long long)(hours / 24));
    else if (hours < 24 * 30 * 2)
        snprintf(out, len, "%lld weeks ago", (long long)(hours / 24 / 7));
    else if (hours < 24 * 365 * 2)
        snprintf(out, len, "%lld months ago", (long long)(hours / 24 / 30));
    else
        snprintf(out, len, "%lld years ago", (long long)(d / 3600000 / 24 / 365));
    return out;
}

const char *fmt_task_state(TaskState s)
{
    static const char *const names[] = {
        [TASK_NEW] = "New",         [TASK_PENDING] = "Pending",   [TASK_ASSIGNED] = "Assigned",
        [TASK_PULLING] = "Pulling", [TASK_STARTING] = "Starting", [TASK_RUNNING] = "Running",
        [TASK_COMPLETE] = "Complete", [TASK_FAILED] = "Failed",   [TASK_SHUTDOWN] = "Shutdown",
        [TASK_REJECTED] = "Rejected", [TASK_ORPHANED] = "Orphaned", [TASK_REMOVED] = "Removed",
    };

    if ((unsigned)s < sizeof(names) / sizeof(names[0]) && names[s])
        return names[s];
    return "Unknown";
}

const char *fmt_desired_state(DesiredState s)
{
    switch (s) {
    case DESIRED_RUNNING: return "Running";
    case DESIRED_SHUTDOWN: return "Shutdown";
    case DESIRED_REMOVE: return "Remove";
    default: return "Unknown";
    }
}

char *fmt_ports(const ServiceSpec *s, char *out, size_t len)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; s && i < s->n_ports && used < len; i++) {
        const PortConfig *p = s->ports[i];
        int n = snprintf(out + used, len - used, "%s*:%u->%u/%s", i ? ", " : "", p->published,
                         p->target, *p->protocol ? p->protocol : "tcp");
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return out;
}

static int fmt_print_table(FILE *out, table_t *t, int rc)
{
    if (rc == 0)
        table_print(t, out);
    table_free(t);
    return rc;
}

/* ------------------------------------------------------------- services */

static int fmt_cmp_service(const void *a, const void *b)
{
    const Service *x = *(Service *const *)a, *y = *(Service *const *)b;
    const char *nx = x->spec ? x->spec->name : "", *ny = y->spec ? y->spec->name : "";

    return strcmp(nx, ny);
}

/* A sorted copy of a pointer array. */
static void **fmt_sorted(void *const *v, size_t n, int (*cmp)(const void *, const void *))
{
    void **copy = malloc((n ? n : 1) * sizeof(*copy));

    if (!copy)
        return NULL;
    if (n)
        memcpy(copy, v, n * sizeof(*copy));
    qsort(copy, n, sizeof(*copy), cmp);
    return copy;
}

int fmt_services(FILE *out, Service *const *svcs, size_t n, const fmt_opts_t *o)
{
    static const char *const headers[] = { "ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS" };
    Service **sorted;
    table_t *t = NULL;
    char id[80], replicas[64], ports[512];
    int rc = 0;

    if (o->json)
        return fmt_json(out, (void *const *)svcs, n);
    sorted = (Service **)fmt_sorted((void *const *)svcs, n, fmt_cmp_service);
    if (!sorted)
        return -ENOMEM;
    if (!o->quiet && !(t = table_create(6, headers))) {
        free(sorted);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const Service *s = sorted[i];
        const ServiceSpec *spec = s->spec;
        fmt_id(s->id, o->no_trunc, id, sizeof(id));
        if (o->quiet) {
            fprintf(out, "%s\n", id);
            continue;
        }
        if (spec && spec->autoscale)
            snprintf(replicas, sizeof(replicas), "%u/%u (auto %u-%u)", s->running_tasks,
                     spec->replicas, spec->autoscale->min, spec->autoscale->max);
        else
            snprintf(replicas, sizeof(replicas), "%u/%u", s->running_tasks,
                     spec ? spec->replicas : 0);
        const char *row[] = { id, spec ? spec->name : "", "replicated", replicas,
                              spec ? spec->image : "", fmt_ports(spec, ports, sizeof(ports)) };
        rc = table_add(t, row);
    }
    free(sorted);
    if (o->quiet)
        return 0;
    return fmt_print_table(out, t, rc);
}

/* ---------------------------------------------------------------- tasks */

static int fmt_cmp_task(const void *a, const void *b)
{
    const Task *x = *(Task *const *)a, *y = *(Task *const *)b;
    int c = strcmp(x->service_name, y->service_name);

    if (c)
        return c;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    /* the task that should run first, then the history, newest first */
    if ((x->desired_state == DESIRED_RUNNING) != (y->desired_state == DESIRED_RUNNING))
        return x->desired_state == DESIRED_RUNNING ? -1 : 1;
    if (x->created_ms != y->created_ms)
        return x->created_ms > y->created_ms ? -1 : 1;
    return strcmp(x->id, y->id);
}

static char *fmt_task_current(const Task *t, int64_t now, char *out, size_t len)
{
    int64_t since = t->state_since_ms ? t->state_since_ms : t->created_ms;
    const char *health = "";
    char age[48];

    if (t->state == TASK_RUNNING || t->state == TASK_STARTING) {
        switch (t->health) {
        case HEALTH_STARTING: health = " (health: starting)"; break;
        case HEALTH_HEALTHY: health = " (healthy)"; break;
        case HEALTH_UNHEALTHY: health = " (unhealthy)"; break;
        default: break;
        }
    }
    if (since)
        snprintf(out, len, "%s%s %s", fmt_task_state(t->state), health,
                 fmt_age(since, now, age, sizeof(age)));
    else
        snprintf(out, len, "%s%s", fmt_task_state(t->state), health);
    return out;
}

static char *fmt_task_error(const Task *t, int no_trunc, char *out, size_t len)
{
    char msg[512];
    size_t n;

    out[0] = '\0';
    if (t->state == TASK_RUNNING)
        return out;
    if (*t->message)
        snprintf(msg, sizeof(msg), "%s", t->message);
    else if (t->state == TASK_FAILED && t->exit_code)
        snprintf(msg, sizeof(msg), "task: non-zero exit (%d)", t->exit_code);
    else
        return out;
    n = strlen(msg);
    if (!no_trunc && table_width(msg) > FMT_ERROR_LEN) {
        /* cut at a character boundary, then add an ellipsis */
        n = 0;
        for (size_t chars = 0; msg[n] && chars < FMT_ERROR_LEN - 1; chars++) {
            n++;
            while (((unsigned char)msg[n] & 0xC0) == 0x80)
                n++;
        }
        snprintf(out, len, "\"%.*s\xE2\x80\xA6\"", (int)n, msg);
        return out;
    }
    snprintf(out, len, "\"%s\"", msg);
    return out;
}

int fmt_tasks(FILE *out, Task *const *tasks, size_t n, const fmt_opts_t *o)
{
    static const char *const headers[] = { "ID", "NAME", "IMAGE", "NODE", "DESIRED STATE",
                                           "CURRENT STATE", "ERROR" };
    Task **sorted;
    table_t *t = NULL;
    char id[80], name[160], current[160], error[600];
    int rc = 0;

    if (o->json)
        return fmt_json(out, (void *const *)tasks, n);
    sorted = (Task **)fmt_sorted((void *const *)tasks, n, fmt_cmp_task);
    if (!sorted)
        return -ENOMEM;
    if (!o->quiet && !(t = table_create(7, headers))) {
        free(sorted);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const Task *k = sorted[i];
        const Task *prev = i ? sorted[i - 1] : NULL;
        int history = prev && prev->slot == k->slot &&
                      strcmp(prev->service_name, k->service_name) == 0;
        fmt_id(k->id, o->no_trunc, id, sizeof(id));
        if (o->quiet) {
            fprintf(out, "%s\n", id);
            continue;
        }
        snprintf(name, sizeof(name), "%s%s.%u", history ? " \\_ " : "", k->service_name,
                 k->slot);
        const char *row[] = { id, name, k->image, k->node_name,
                              fmt_desired_state(k->desired_state),
                              fmt_task_current(k, o->now_ms, current, sizeof(current)),
                              fmt_task_error(k, o->no_trunc, error, sizeof(error)) };
        rc = table_add(t, row);
    }
    free(sorted);
    if (o->quiet)
        return 0;
    return fmt_print_table(out, t, rc);
}

/* ---------------------------------------------------------------- nodes */

static int fmt_cmp_node(const void *a, const void *b)
{
    const Node *x = *(Node *const *)a, *y = *(Node *const *)b;

    return strcmp(x->name, y->name);
}

int fmt_nodes(FILE *out, Node *const *nodes, size_t n, const fmt_opts_t *o)
{
    static const char *const headers[] = { "ID", "HOSTNAME", "STATUS", "AVAILABILITY",
                                           "ADDRESS", "TASKS" };
    Node **sorted;
    table_t *t = NULL;
    char id[80], tasks[16];
    int rc = 0;

    if (o->json)
        return fmt_json(out, (void *const *)nodes, n);
    sorted = (Node **)fmt_sorted((void *const *)nodes, n, fmt_cmp_node);
    if (!sorted)
        return -ENOMEM;
    if (!o->quiet && !(t = table_create(6, headers))) {
        free(sorted);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const Node *k = sorted[i];
        fmt_id(k->id, o->no_trunc, id, sizeof(id));
        if (o->quiet) {
            fprintf(out, "%s\n", id);
            continue;
        }
        snprintf(tasks, sizeof(tasks), "%u", k->tasks);
        const char *row[] = {
            id, k->name,
            k->state == NODE_READY ? "Ready" : k->state == NODE_DOWN ? "Down" : "Unknown",
            k->availability == AVAILABILITY_DRAIN ? "Drain" : "Active", k->address, tasks
        };
        rc = table_add(t, row);
    }
    free(sorted);
    if (o->quiet)
        return 0;
    return fmt_print_table(out, t, rc);
}

/* ---------------------------------------------------------- controllers */

static int fmt_cmp_controller(const void *a, const void *b)
{
    return strcmp((*(ControllerInfo *const *)a)->address, (*(ControllerInfo *const *)b)->address);
}

int fmt_controllers(FILE *out, ControllerInfo *const *cs, size_t n, const fmt_opts_t *o)
{
    static const char *const headers[] = { "ADDRESS", "ROLE", "STORE" };
    ControllerInfo **sorted;
    table_t *t;
    int rc = 0;

    if (o->json)
        return fmt_json(out, (void *const *)cs, n);
    sorted = (ControllerInfo **)fmt_sorted((void *const *)cs, n, fmt_cmp_controller);
    if (!sorted)
        return -ENOMEM;
    if (!(t = table_create(3, headers))) {
        free(sorted);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *row[] = { sorted[i]->address, sorted[i]->role, sorted[i]->store };
        rc = table_add(t, row);
    }
    free(sorted);
    return fmt_print_table(out, t, rc);
}

/* --------------------------------------------------------------- stacks */

static int fmt_cmp_stack(const void *a, const void *b)
{
    const Service *x = *(Service *const *)a, *y = *(Service *const *)b;

    return strcmp(x->spec ? x->spec->stack : "", y->spec ? y->spec->stack : "");
}

int fmt_stacks(FILE *out, Service *const *svcs, size_t n, const fmt_opts_t *o)
{
    static const char *const headers[] = { "NAME", "SERVICES" };
    Service **sorted = (Service **)fmt_sorted((void *const *)svcs, n, fmt_cmp_stack);
    json_t *arr = NULL;
    table_t *t = NULL;
    char count[16];
    int rc = -ENOMEM;

    if (!sorted)
        return -ENOMEM;
    if (o->json ? !(arr = json_array()) : !(t = table_create(2, headers)))
        goto out_free;
    for (size_t i = 0; i < n;) {
        const char *stack = sorted[i]->spec ? sorted[i]->spec->stack : "";
        size_t j = i;
        while (j < n && strcmp(sorted[j]->spec ? sorted[j]->spec->stack : "", stack) == 0)
            j++;
        if (*stack) {
            if (o->quiet) {
                fprintf(out, "%s\n", stack);
            } else if (arr) {
                if (json_array_append_new(arr, json_pack("{s:s, s:I}", "name", stack,
                                                         "services", (json_int_t)(j - i))))
                    goto out_free;
            } else {
                snprintf(count, sizeof(count), "%zu", j - i);
                const char *row[] = { stack, count };
                if (table_add(t, row))
                    goto out_free;
            }
        }
        i = j;
    }
    rc = 0;
    if (arr && !o->quiet) {
        char *s = json_dumps(arr, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
        if (!s) {
            rc = -ENOMEM;
            goto out_free;
        }
        fprintf(out, "%s\n", s);
        free(s);
    } else if (t && !o->quiet) {
        table_print(t, out);
    }
out_free:
    json_decref(arr);
    table_free(t);
    free(sorted);
    return rc;
}

/* ------------------------------------------------------ secrets, configs */

static int fmt_cmp_secret(const void *a, const void *b)
{
    return strcmp((*(Secret *const *)a)->name, (*(Secret *const *)b)->name);
}

int fmt_secrets(FILE *out, Secret *const *secrets, size_t n, const fmt_opts_t *o)
{
    static const char *const headers[] = { "ID", "NAME", "CREATED", "UPDATED" };
    Secret **sorted;
    table_t *t = NULL;
    char created[48], updated[48];
    int rc = 0;

    if (o->json)
        return fmt_secrets_inspect(out, secrets, n, 0);
    sorted = (Secret **)fmt_sorted((void *const *)secrets, n, fmt_cmp_secret);
    if (!sorted)
        return -ENOMEM;
    if (!o->quiet && !(t = table_create(4, headers))) {
        free(sorted);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const Secret *k = sorted[i];
        /* ids in full, as docker secret ls shows them */
        if (o->quiet) {
            fprintf(out, "%s\n", k->id);
            continue;
        }
        const char *row[] = { k->id, k->name,
                              fmt_age(k->created_ms, o->now_ms, created, sizeof(created)),
                              fmt_age(k->updated_ms ? k->updated_ms : k->created_ms, o->now_ms,
                                      updated, sizeof(updated)) };
        rc = table_add(t, row);
    }
    free(sorted);
    if (o->quiet)
        return 0;
    return fmt_print_table(out, t, rc);
}

static char *fmt_base64(const uint8_t *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* pbjson's object, with a config's data in base64 and never a secret's. */
static json_t *fmt_secret_json(const Secret *s)
{
    json_t *j = pbjson_from_message((const ProtobufCMessage *)s);
    char *b64;

    if (!j)
        return NULL;
    if (s->kind != SECRET_KIND_CONFIG) {
        json_object_del(j, "data");
        return j;
    }
    if (!(b64 = fmt_base64(s->data.data, s->data.len)) ||
        json_object_set_new(j, "data", json_string(b64))) {
        free(b64);
        json_decref(j);
        return NULL;
    }
    free(b64);
    return j;
}

static void fmt_secret_pretty(FILE *out, const Secret *s)
{
    char created[48] = "", updated[48] = "";
    struct tm tm;
    time_t t;

    if (s->created_ms) {
        t = (time_t)(s->created_ms / 1000);
        gmtime_r(&t, &tm);
        strftime(created, sizeof(created), "%Y-%m-%d %H:%M:%S +0000 UTC", &tm);
    }
    t = (time_t)((s->updated_ms ? s->updated_ms : s->created_ms) / 1000);
    gmtime_r(&t, &tm);
    strftime(updated, sizeof(updated), "%Y-%m-%d %H:%M:%S +0000 UTC", &tm);
    fprintf(out, "ID:              %s\nName:            %s\n", s->id, s->name);
    if (s->n_labels) {
        fprintf(out, "Labels:\n");
        for (size_t i = 0; i < s->n_labels; i++)
            fprintf(out, " - %s=%s\n", s->labels[i]->key, s->labels[i]->value);
    }
    if (*s->stack)
        fprintf(out, "Stack:           %s\n", s->stack);
    fprintf(out, "Size:            %u\n", s->size ? s->size : (unsigned)s->data.len);
    fprintf(out, "Created at:      %s\nUpdated at:      %s\n", created, updated);
    if (s->n_services) {
        fprintf(out, "Services:\n");
        for (size_t i = 0; i < s->n_services; i++)
            fprintf(out, " - %s\n", s->services[i]);
    }
    if (s->kind == SECRET_KIND_CONFIG) {
        fprintf(out, "Data:\n");
        fwrite(s->data.data, 1, s->data.len, out);
        if (s->data.len && s->data.data[s->data.len - 1] != '\n')
            fputc('\n', out);
    }
}

int fmt_secrets_inspect(FILE *out, Secret *const *secrets, size_t n, int pretty)
{
    json_t *arr;
    char *s;

    if (pretty) {
        for (size_t i = 0; i < n; i++) {
            if (i)
                fputc('\n', out);
            fmt_secret_pretty(out, secrets[i]);
        }
        return 0;
    }
    if (!(arr = json_array()))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (json_array_append_new(arr, fmt_secret_json(secrets[i]))) {
            json_decref(arr);
            return -ENOMEM;
        }
    }
    s = json_dumps(arr, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
    json_decref(arr);
    if (!s)
        return -ENOMEM;
    fprintf(out, "%s\n", s);
    free(s);
    return 0;
}

/* ----------------------------------------------------------------- json */

/* Decimal sizes, as docker stats writes network bytes: "3.61kB". */
static char *fmt_decimal_bytes(uint64_t bytes, char *out, size_t len)
{
    static const char *const units[] = { "B", "kB", "MB", "GB", "TB", "PB" };
    double v = (double)bytes;
    int u = 0;

    while (v >= 1000 && u < 5) {
        v /= 1000;
        u++;
    }
    snprintf(out, len, "%.3g%s", v, units[u]);
    return out;
}

static int fmt_json_lines(FILE *out, void *const *msgs, size_t n)
{
    json_t *arr = json_array();
    char *s;

    if (!arr)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (json_array_append_new(arr, pbjson_from_message(msgs[i]))) {
            json_decref(arr);
            return -ENOMEM;
        }
    }
    s = json_dumps(arr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(arr);
    if (!s)
        return -ENOMEM;
    fprintf(out, "%s\n", s);
    free(s);
    return 0;
}

int fmt_stats(FILE *out, TaskStats *const *tasks, size_t n, const fmt_opts_t *o)
{
    static const char *const headers[] = { "TASK ID", "NAME", "NODE", "CPU %",
                                           "MEM USAGE / LIMIT", "MEM %", "NET I/O", "CONN/S",
                                           "ACTIVE" };
    table_t *t;
    int rc = 0;

    if (o->json)
        return o->json_lines ? fmt_json_lines(out, (void *const *)tasks, n)
                             : fmt_json(out, (void *const *)tasks, n);
    if (!(t = table_create(9, headers)))
        return -ENOMEM;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const TaskStats *s = tasks[i];
        char id[80], cpu[32], mem[80], a[32], b[32], pct[32], net[80], cps[32], act[32];
        const char *cells[9];
        int have = s->time_ms != 0;
        snprintf(cpu, sizeof(cpu), "%.2f%%", s->cpu_percent);
        snprintf(mem, sizeof(mem), "%s / %s", format_memory((int64_t)s->memory_bytes, a, sizeof(a)),
                 format_memory((int64_t)s->memory_limit, b, sizeof(b)));
        snprintf(pct, sizeof(pct), "%.2f%%",
                 s->memory_limit ? 100.0 * (double)s->memory_bytes / (double)s->memory_limit : 0);
        snprintf(net, sizeof(net), "%s / %s", fmt_decimal_bytes(s->net_rx_bytes, a, sizeof(a)),
                 fmt_decimal_bytes(s->net_tx_bytes, b, sizeof(b)));
        snprintf(cps, sizeof(cps), "%.1f", s->connections_per_second);
        snprintf(act, sizeof(act), "%llu", (unsigned long long)s->active_connections);
        cells[0] = fmt_id(s->task_id, o->no_trunc, id, sizeof(id));
        cells[1] = s->task_name;
        cells[2] = s->node_name;
        cells[3] = have ? cpu : "--";
        cells[4] = have ? mem : "-- / --";
        cells[5] = have ? pct : "--";
        cells[6] = have ? net : "-- / --";
        cells[7] = cps;
        cells[8] = act;
        rc = table_add(t, cells);
    }
    if (rc == 0)
        table_print(t, out);
    table_free(t);
    return rc;
}

int fmt_json(FILE *out, void *const *msgs, size_t n)
{
    json_t *arr = json_array();
    char *s;

    if (!arr)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (json_array_append_new(arr, pbjson_from_message(msgs[i]))) {
            json_decref(arr);
            return -ENOMEM;
        }
    }
    s = json_dumps(arr, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
    json_decref(arr);
    if (!s)
        return -ENOMEM;
    fprintf(out, "%s\n", s);
    free(s);
    return 0;
}
