/* dockerjson: the Docker Engine API's Swarm objects (ServiceSpec, Service,
 * Task, Node, as JSON) translated to and from skiff's messages, for the
 * Docker API listener (dockerapi.c). Pure: no I/O, no model; every
 * function works on what it is given.
 *
 * Docker's specs carry many fields skiff has no use for. A field is taken
 * when skiff does the same thing with it (docs/dockerapi.md has the table);
 * a field skiff does not do is refused, naming it ("Spec.TaskTemplate.
 * ContainerSpec.Hostname: not supported by skiff"), unless it holds its
 * zero value (false, 0, "", [], {}, null: what the docker CLI sends when the
 * user did not ask for it). Nothing is dropped silently.
 */
#ifndef SKIFF_DOCKERJSON_H
#define SKIFF_DOCKERJSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "skiff_pb.h"

/* The label `docker stack deploy` puts on a stack's objects. */
#define DOCKERJSON_STACK_LABEL "com.docker.stack.namespace"

/* A Docker ServiceSpec (the body of POST /services/create or /update) as a
 * new skiff spec (free with pb_free). base: the service's current spec for
 * an update, whose skiff-only settings (HTTP probe, expose, drain delay,
 * autoscale, rebalance, stack) the new spec keeps; NULL for a create.
 * Returns NULL with one line in err naming the field, or "out of memory". */
ServiceSpec *dockerjson_spec_from(const json_t *j, const ServiceSpec *base, char *err,
                                  size_t errlen);

/* A skiff spec as a Docker ServiceSpec. */
json_t *dockerjson_spec(const ServiceSpec *spec);

/* A Service as Docker's Service object (ID, Version, CreatedAt, UpdatedAt,
 * Spec, PreviousSpec, Endpoint, UpdateStatus, ServiceStatus). */
json_t *dockerjson_service(const Service *svc);

/* A Task as Docker's Task. */
json_t *dockerjson_task(const Task *t);

/* A Node as Docker's Node (a worker): Spec.Labels are the labels set on the
 * controller (spec_labels), Description.Engine.Labels the agent's --label,
 * as Docker shows a node's and its engine's labels. */
json_t *dockerjson_node(const Node *n);

/* A node's Version.Index: a checksum of what its Spec shows (availability,
 * spec labels), so that an update with a version read before a change is
 * seen. */
uint64_t dockerjson_node_version(const Node *n);

/* The label changes that make n's spec labels the object labels (a NodeSpec's
 * Labels, which the docker CLI sends whole): up->label_add gets the keys new
 * or with another value, up->label_rm the keys that are gone. labels NULL or
 * null: no change. Returns 0, SKIFF_EINVAL with one line in err ("Spec.Labels:
 * not an object", "Spec.Labels.zone: not a string"), or -ENOMEM; what it added
 * to up is freed by dockerjson_node_labels_free() in every case. */
int dockerjson_node_labels(const json_t *labels, const Node *n, NodeUpdate *up, char *err,
                           size_t errlen);
void dockerjson_node_labels_free(NodeUpdate *up);

/* Docker's name of a task state ("running", "preparing", "remove"...). */
const char *dockerjson_task_state(TaskState s);
const char *dockerjson_desired_state(DesiredState s);

/* Unix ms as RFC 3339 with nanoseconds, in UTC ("0001-01-01T00:00:00Z" for 0). */
void dockerjson_time(int64_t ms, char *buf, size_t len);

/* A Secret (kind secret or config) as Docker's Secret or Config object:
 * ID, Version, CreatedAt, UpdatedAt, Spec {Name, Labels} and, for a config
 * only, Spec.Data (base64). A stack's shows its com.docker.stack.namespace
 * label. */
json_t *dockerjson_secret(const Secret *s);
/* The body of POST /secrets/create or /configs/create ({Name, Labels,
 * Data}: base64) into out (a PB_NEW Secret whose kind the caller set); a
 * com.docker.stack.namespace label sets its stack. Returns 0, or -1 with
 * one line in err naming the field. */
int dockerjson_secret_from(const json_t *j, Secret *out, char *err, size_t errlen);

/* Docker's list filters (?filters=): {"name": {"web": true}} or the old
 * {"name": ["web"]}. Returns 0 with *out an object of key -> array of
 * strings (NULL when s is NULL or empty), or -1 with err. */
int dockerjson_filters(const char *s, json_t **out, char *err, size_t errlen);
/* 1 when filters has no key, or value is one of the key's values. prefix:
 * values may be a prefix of value. */
int dockerjson_filter_match(const json_t *filters, const char *key, const char *value,
                            int prefix);
/* Refuses a filter key not in allowed (NULL-terminated): 0, or -1 with err. */
int dockerjson_filters_allowed(const json_t *filters, const char *const *allowed, char *err,
                               size_t errlen);

#endif
