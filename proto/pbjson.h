/* pbjson: any protobuf-c message as a jansson object, driven by its
 * descriptor: the JSON of the CLI's `inspect` and `--format json`, and of
 * the controller's HTTP API (one definition of the field names).
 *
 * Every field is present, under its proto name, in field order: scalars as
 * JSON numbers and booleans, strings as strings, bytes as a string when they
 * are UTF-8 (base64 otherwise), repeated fields as arrays, an absent message
 * as null; of a oneof, only the member that is set. Enum values are their
 * names, lowercase and without the prefix that all values of the enum share
 * (TASK_RUNNING is "running", UPDATE_ROLLBACK_STARTED "rollback_started");
 * the enums the CLI takes as flag values are spelled as the flags spell them
 * ("on-failure", "stop-first"). A field NAME_ms also gets a readable twin,
 * NAME: a duration ("1m30s") or, for the fields that hold times, an RFC 3339
 * time in UTC ("2026-11-27T21:44:47.123Z"; omitted while the time is 0).
 */
#ifndef SKIFF_PBJSON_H
#define SKIFF_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

/* A new JSON object for msg (NULL gives JSON null). NULL when out of
 * memory. */
json_t *pbjson_from_message(const ProtobufCMessage *msg);

/* The readable name of an enum value as above, or NULL when value is not
 * one of the enum's. */
const char *pbjson_enum_name(const ProtobufCEnumDescriptor *d, int value, char *out,
                             size_t len);

/* 1 when the field NAME_ms holds a time (since the Unix epoch), not a
 * duration. */
int pbjson_is_time_field(const char *name);

#endif
