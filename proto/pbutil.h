/* pbutil: helpers for protobuf-c messages that skiff builds by hand.
 *
 * Rule: a message skiff owns is wholly malloc'd (strings, arrays and
 * submessages), with "" fields pointing at protobuf-c's shared empty string,
 * so that pb_free() (protobuf_c_message_free_unpacked) frees hand-built and
 * unpacked messages alike. Messages that only live on the stack for one send
 * (pointing at other memory) are not freed with it.
 */
#ifndef SKIFF_PBUTIL_H
#define SKIFF_PBUTIL_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "skiff_pb.h"

/* Frees a wholly malloc'd message (see above). NULL is fine. */
void pb_free(void *msg);

/* A deep copy made by packing and unpacking; NULL when out of memory. */
void *pb_dup(const void *msg);

/* 1 when both pack to the same bytes (protobuf-c packs in field order). */
int pb_equal(const void *a, const void *b);

/* Replaces *field with a malloc'd copy of s (NULL or "" gives the shared
 * empty string). Returns 0 or -ENOMEM (then *field is unchanged). */
int pb_set_str(char **field, const char *s);

/* Appends a copy of s to a repeated string field. Returns 0 or -ENOMEM. */
int pb_push_str(size_t *n, char ***arr, const char *s);

/* Appends msg (taking ownership) to a repeated message field. Returns 0 or
 * -ENOMEM (then msg is still the caller's). */
int pb_push_msg(size_t *n, void ***arr, void *msg);

/* A new message of this type with its defaults, malloc'd; NULL when out of
 * memory. */
void *pb_new(const ProtobufCMessageDescriptor *desc);

/* Moves from's tasks to the end of into's (both unpacked with the default
 * allocator, as wire_decode does): a TaskList's pages made one. Returns 0,
 * or -ENOMEM with both unchanged. */
int pb_tasks_append(TaskListReply *into, TaskListReply *from);

#define PB_NEW(type) ((type *)pb_new(&PB_DESC_##type))

#endif
