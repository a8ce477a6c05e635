/* fuzz_engine_json: the agent's readers of what the Docker engine sends
 * (agent/engine_json.h): inspect, list, events, created, info, network,
 * error bodies, pull progress, image references, times, and the two stream
 * formats (lines, multiplexed logs).
 *
 * The first byte picks the reader (and, for the streams, how the rest is
 * cut into reads); the rest is the engine's answer. Every reader is given
 * the text without a terminating NUL, as curl hands it over. Checked:
 * nothing crashes or trips a sanitizer, every string that comes out is
 * NUL-terminated within its field and on one line where the header says so,
 * ports are real ports, and the streams give back exactly the bytes that
 * went in (lines: every byte but the newlines, dropped lines aside; logs:
 * every payload byte).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine_json.h"
#include "errors.h"

static void fz_str(const char *s, size_t size, int one_line)
{
    size_t n = strnlen(s, size);

    if (n == size)
        abort(); /* not terminated within its field */
    if (one_line && (memchr(s, '\n', n) || memchr(s, '\r', n)))
        abort();
}

static void fz_container(const engine_container_t *c)
{
    fz_str(c->id, sizeof(c->id), 0);
    fz_str(c->name, sizeof(c->name), 1);
    fz_str(c->error, sizeof(c->error), 1);
    fz_str(c->labels.cluster, sizeof(c->labels.cluster), 0);
    fz_str(c->labels.node, sizeof(c->labels.node), 0);
    fz_str(c->labels.service, sizeof(c->labels.service), 0);
    fz_str(c->labels.task, sizeof(c->labels.task), 0);
    if (c->labels.ok && (!c->labels.cluster[0] || !c->labels.node[0] || !c->labels.task[0]))
        abort();
    if (c->n_ports > ENGINE_MAX_PORTS)
        abort();
    for (size_t i = 0; i < c->n_ports; i++)
        if (c->ports[i].target < 1 || c->ports[i].target > 65535 ||
            c->ports[i].host_port > 65535)
            abort();
}

/* Streams: what the callbacks saw. */
static size_t fz_bytes_seen, fz_lines_seen;
volatile unsigned fz_sum; /* every payload byte is read into it */

static void fz_on_line(void *arg, const char *line, size_t len)
{
    engine_event_t ev;
    size_t max = *(size_t *)arg;

    if (len > max || memchr(line, '\n', len))
        abort();
    fz_lines_seen++;
    fz_bytes_seen += len;
    /* Each line is an event (or a line of pull progress) in its own right. */
    if (engine_json_parse_event(line, len, &ev) == 0) {
        fz_str(ev.id, sizeof(ev.id), 0);
        fz_str(ev.labels.task, sizeof(ev.labels.task), 0);
    }
}

static void fz_on_data(void *arg, int is_stderr, const char *data, size_t len)
{

    (void)arg;
    (void)is_stderr;
    if (len == 0)
        abort(); /* no empty pieces */
    for (size_t i = 0; i < len; i++) /* every byte readable: ASan checks */
        fz_sum += (unsigned char)data[i];
    fz_bytes_seen += len;
}

static void fz_lines(const char *text, size_t len, unsigned cut)
{
    size_t max = 1 + cut * 7, off = 0, newlines = 0;
    engine_lines_t l;
    int rc = 0;

    engine_lines_init(&l, max);
    fz_bytes_seen = fz_lines_seen = 0;
    while (off < len && rc == 0) {
        size_t n = 1 + (off * 31 + cut) % 97;
        if (n > len - off)
            n = len - off;
        rc = engine_lines_feed(&l, text + off, n, fz_on_line, &max);
        off += n;
    }
    engine_lines_free(&l);
    if (rc)
        abort();
    /* No line is lost but those dropped for their length, and no line
     * holds more than the bytes between the newlines. */
    for (size_t i = 0; i < len; i++)
        newlines += text[i] == '\n';
    if (fz_lines_seen + l.dropped > newlines + 1)
        abort();
    if (l.dropped == 0 && fz_lines_seen != newlines)
        abort();
    if (fz_bytes_seen > len - newlines)
        abort();
}

static void fz_demux(const char *text, size_t len, unsigned cut)
{
    engine_demux_t d;
    size_t off = 0;
    int rc = 0;

    engine_demux_init(&d);
    fz_bytes_seen = 0;
    while (off < len && rc == 0) {
        size_t n = 1 + (off * 13 + cut) % 61;
        if (n > len - off)
            n = len - off;
        rc = engine_demux_feed(&d, text + off, n, fz_on_data, NULL);
        off += n;
    }
    if (rc != 0 && rc != SKIFF_EINVAL)
        abort();
    if (fz_bytes_seen > len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    engine_container_t c, *list = NULL;
    engine_event_t ev;
    engine_info_t info;
    char id[ENGINE_ID_MAX], gw[64], bridge[64], subnet[64], msg[ENGINE_MESSAGE_MAX];
    char name[256], tag[128];
    const char *text;
    size_t n = 0, len;
    unsigned which, cut;
    char *copy;

    if (size < 1)
        return 0;
    which = data[0] % 12;
    cut = data[0] / 12;
    /* An exact-size heap copy, so that ASan sees any read past the end. */
    len = size - 1;
    copy = malloc(len ? len : 1);
    if (!copy)
        return 0;
    memcpy(copy, data + 1, len);
    text = copy;

    switch (which) {
    case 0:
        if (engine_json_parse_inspect(text, len, &c) == 0)
            fz_container(&c);
        break;
    case 1:
        if (engine_json_parse_list(text, len, &list, &n) == 0) {
            if ((n == 0) != (list == NULL))
                abort();
            for (size_t i = 0; i < n; i++)
                fz_container(&list[i]);
            free(list);
        }
        break;
    case 2:
        if (engine_json_parse_event(text, len, &ev) == 0) {
            fz_str(ev.id, sizeof(ev.id), 0);
            fz_str(ev.labels.cluster, sizeof(ev.labels.cluster), 0);
            if (ev.kind == ENGINE_EVENT_DIE && (ev.exit_code < -1 || ev.exit_code > 255))
                abort();
        }
        break;
    case 3:
        if (engine_json_parse_created(text, len, id, sizeof(id)) == 0)
            fz_str(id, sizeof(id), 0);
        break;
    case 4:
        if (engine_json_parse_info(text, len, &info) == 0) {
            if (info.ncpu < 0 || info.mem_total < 0)
                abort();
            fz_str(info.server_version, sizeof(info.server_version), 1);
            fz_str(info.os, sizeof(info.os), 1);
        }
        break;
    case 5:
        if (engine_json_parse_network(text, len, gw, sizeof(gw), bridge, sizeof(bridge), subnet,
                                      sizeof(subnet)) == 0) {
            fz_str(gw, sizeof(gw), 0);
            fz_str(bridge, sizeof(bridge), 0);
            fz_str(subnet, sizeof(subnet), 0);
        }
        break;
    case 6:
        engine_json_error_message(text, len, 400 + (int)cut, msg, sizeof(msg));
        fz_str(msg, sizeof(msg), 1);
        if (!msg[0])
            abort(); /* never empty: "HTTP <status>" at least */
        break;
    case 7:
        if (engine_json_progress_error(text, len, msg, sizeof(msg)) == 1)
            fz_str(msg, sizeof(msg), 1);
        break;
    case 8: {
        char *ref = malloc(len + 1);
        if (ref) {
            memcpy(ref, text, len);
            ref[len] = '\0';
            if (engine_image_ref_split(ref, name, sizeof(name), tag, sizeof(tag)) == 0) {
                fz_str(name, sizeof(name), 1);
                fz_str(tag, sizeof(tag), 1);
                if (!name[0] || !tag[0])
                    abort();
            }
            free(ref);
        }
        break;
    }
    case 9: {
        char *s = malloc(len + 1);
        if (s) {
            memcpy(s, text, len);
            s[len] = '\0';
            (void)engine_time_ms(s);
            free(s);
        }
        break;
    }
    case 10:
        fz_lines(text, len, cut);
        break;
    case 11:
        fz_demux(text, len, cut);
        break;
    }
    free(copy);
    return 0;
}
