/* migrate: the commands that write into an etcd store from outside a
 * controller, and run to their end on a loop of their own.
 *
 * `skiff-controller migrate --from sqlite:DIR --to etcd://...` copies a
 * cluster's state from SQLite into an empty prefix: every row of every
 * table (store_scan), the events excepted, and the tokens of DIR. The first
 * txn claims the empty prefix with a mark, meta/migrating, that makes every
 * controller on it wait; every later one is guarded by the mark; once the
 * number of keys of every table in etcd is what was copied, the mark goes
 * and controllers start on the prefix. A failed migration leaves the mark:
 * remove the prefix and run it again.
 *
 * `skiff-controller --rotate-token join|admin --store etcd://...` puts a new
 * token into the store (every controller takes it from its watch) and into
 * the data dir given.
 */
#ifndef SKIFF_MIGRATE_H
#define SKIFF_MIGRATE_H

typedef struct migrate_store {
    const char *endpoints;   /* "HOST:PORT[,HOST:PORT...]" */
    const char *prefix;
    const char *ca, *cert, *key;
} migrate_store_t;

/* `skiff-controller migrate ARGS` (argv[0] is "migrate"). Returns the exit
 * status: 0 copied and counted; 1 failed (one line why); 2 bad usage. */
int migrate_main(int argc, char **argv);

/* Returns the exit status, as above. */
int migrate_rotate_token(const migrate_store_t *to, const char *data_dir, const char *which);

#endif
