/* pbutil: see pbutil.h. */
#include "pbutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void pb_free(void *msg)
{
    if (msg)
        protobuf_c_message_free_unpacked(msg, NULL);
}

void *pb_dup(const void *msg)
{
    const ProtobufCMessage *m = msg;
    uint8_t stackbuf[4096], *p = stackbuf;
    size_t len;
    void *copy;

    if (!m)
        return NULL;
    len = protobuf_c_message_get_packed_size(m);
    if (len > sizeof(stackbuf) && !(p = malloc(len)))
        return NULL;
    protobuf_c_message_pack(m, p);
    copy = protobuf_c_message_unpack(m->descriptor, NULL, len, p);
    if (p != stackbuf)
        free(p);
    return copy;
}

int pb_equal(const void *a, const void *b)
{
    size_t la, lb;
    uint8_t *pa, *pb;
    int same;

    if (!a || !b)
        return a == b;
    la = protobuf_c_message_get_packed_size(a);
    lb = protobuf_c_message_get_packed_size(b);
    if (la != lb)
        return 0;
    pa = malloc(la ? la : 1);
    pb = malloc(lb ? lb : 1);
    if (!pa || !pb) {
        free(pa);
        free(pb);
        return 0;
    }
    protobuf_c_message_pack(a, pa);
    protobuf_c_message_pack(b, pb);
    same = memcmp(pa, pb, la) == 0;
    free(pa);
    free(pb);
    return same;
}

int pb_set_str(char **field, const char *s)
{
    char *copy = (char *)protobuf_c_empty_string;

    if (s && *s && !(copy = strdup(s)))
        return -ENOMEM;
    if (*field && *field != protobuf_c_empty_string)
        free(*field);
    *field = copy;
    return 0;
}

int pb_push_str(size_t *n, char ***arr, const char *s)
{
    char **grown = realloc(*arr, (*n + 1) * sizeof(**arr));
    char *copy;

    if (!grown)
        return -ENOMEM;
    *arr = grown;
    copy = strdup(s ? s : "");
    if (!copy)
        return -ENOMEM;
    grown[(*n)++] = copy;
    return 0;
}

int pb_push_msg(size_t *n, void ***arr, void *msg)
{
    void **grown = realloc(*arr, (*n + 1) * sizeof(**arr));

    if (!grown)
        return -ENOMEM;
    *arr = grown;
    grown[(*n)++] = msg;
    return 0;
}

void *pb_new(const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = malloc(desc->sizeof_message);

    if (m)
        protobuf_c_message_init(desc, m);
    return m;
}

int pb_tasks_append(TaskListReply *into, TaskListReply *from)
{
    Task **v;

    if (from->n_tasks == 0)
        return 0;
    v = realloc(into->tasks, (into->n_tasks + from->n_tasks) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    memcpy(v + into->n_tasks, from->tasks, from->n_tasks * sizeof(*v));
    into->tasks = v;
    into->n_tasks += from->n_tasks;
    from->n_tasks = 0; /* its tasks are into's now */
    return 0;
}
