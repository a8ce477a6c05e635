/* secrets: the values of secrets and configs on this node, and their files.
 *
 * The controller pushes a SecretData (id, kind, value) for every secret and
 * config that a task of the node's next Assignments uses, before those
 * Assignments, on every connection. The store keeps the values in memory,
 * keyed by kind and id, bounded (SECRETS_VALUE_MAX a value,
 * SECRETS_TOTAL_MAX in all), and drops those that no assignment of the
 * latest set references (secrets_retain).
 *
 * Files are written only to a tmpfs that the store mounts at its dir
 * (<state-dir>/secrets) the first time one is needed, or reuses when one is
 * mounted there already (an agent restarted): one dir per task,
 * <dir>/<task id>/, holding secret-N and config-N (N: the ref's index, never
 * the user's names), each with its ref's mode (default 0444), uid and gid.
 * If the tmpfs cannot be mounted the task cannot have its files: nothing is
 * ever written on disk instead. The container gets them as read-only bind
 * mounts (engine_file_t), so only their paths appear in `docker inspect`.
 *
 * The tmpfs stays mounted when the agent exits: running containers keep
 * their bind mounts, and a restarted agent reuses it and rewrites the files
 * of the tasks it adopts once the values come again.
 *
 * Values never appear in logs: messages name the id or the ref's name.
 * The file I/O is blocking but on a tmpfs (memory), so it runs on the loop.
 */
#ifndef SKIFF_SECRETS_H
#define SKIFF_SECRETS_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "skiff_pb.h"

#define SECRETS_VALUE_MAX ((size_t)500 * 1024)  /* one value */
#define SECRETS_TOTAL_MAX ((size_t)64 << 20)    /* every value kept */
#define SECRETS_TMPFS_SIZE "256m"               /* several tasks may share a value */
#define SECRETS_MAX_REFS 100                    /* secrets, and configs, of one spec */
#define SECRETS_ID_MAX 64
#define SECRETS_DEFAULT_MODE 0444

typedef struct secrets secrets_t;

/* A store whose files go under dir (copied; NULL: no files can be
 * written). NULL when out of memory. */
secrets_t *secrets_create(const char *dir);
/* Wipes the values and frees the store. The tmpfs stays mounted. */
void secrets_free(secrets_t *s);

/* Keeps a pushed value (a copy; one of the same kind and id is replaced).
 * Returns 0, or SKIFF_EINVAL for an id that is not one or an unknown
 * kind, SKIFF_ELIMIT for a value or a total over the bounds, -ENOMEM; every
 * refusal is logged in one line naming the id. */
int secrets_put(secrets_t *s, const SecretData *d);
int secrets_has(const secrets_t *s, SecretKind kind, const char *id);
size_t secrets_count(const secrets_t *s);
size_t secrets_bytes(const secrets_t *s);

/* Drops every value that no assignment of set references. */
void secrets_retain(secrets_t *s, const Assignments *set);

/* Checks the spec's secret and config refs at the edge (an id, a target
 * that is a file name for a secret and an absolute path for a config, a
 * mode of permission bits). Returns 0, or SKIFF_EINVAL with why. */
int secrets_check_refs(const ServiceSpec *spec, char *why, size_t len);
/* The spec's number of refs (secrets and configs). */
size_t secrets_n_refs(const ServiceSpec *spec);
/* 1 when the value of one of the spec's refs is not here, with why naming
 * the first ("secret NAME not received from the controller", or "config
 * NAME ..."); 0 when all are. s may be NULL (nothing is here). */
int secrets_missing(const secrets_t *s, const ServiceSpec *spec, char *why, size_t len);

/* Writes the files of task_id's refs (again, in place: a running
 * container sees the new contents), mounting the tmpfs first if needed.
 * When files is not NULL, *files gets the bind mounts (*n of them) for the
 * container: free them with secrets_files_free. Returns 0, or a negative
 * code with why ("secret NAME not received from the controller", "cannot
 * mount a tmpfs on DIR: ...", ...). */
int secrets_write_task(secrets_t *s, const char *task_id, const ServiceSpec *spec,
                       engine_file_t **files, size_t *n, char *why, size_t len);
void secrets_files_free(engine_file_t *files, size_t n);

/* Removes task_id's dir and its files, if there is one. */
void secrets_remove_task(secrets_t *s, const char *task_id);
/* Removes the dirs of tasks for which keep(arg, task id) is 0 (left by a
 * previous run of the agent). Does nothing when the tmpfs is not there. */
void secrets_prune(secrets_t *s, int (*keep)(void *arg, const char *task_id), void *arg);

/* 1 when the tmpfs is mounted (or was found mounted) at the store's dir. */
int secrets_mounted(const secrets_t *s);

#endif
