/* secrets: the cluster's secrets and configs (secrets.c says how they are
 * kept and how they reach the nodes). */
#ifndef SKIFF_SECRETS_H
#define SKIFF_SECRETS_H

#include <stddef.h>

#include "skiff_pb.h"

struct ctl;
struct peer;

#define SECRETS_TABLE_SECRETS "secrets"
#define SECRETS_TABLE_CONFIGS "configs"

enum secrets_key_state { SECRETS_KEY_NONE, SECRETS_KEY_READY, SECRETS_KEY_LOCKED };

/* SQLite, before the loop runs: reads <data-dir>/secret-key, or makes it
 * (0600; with --autolock wrapped, the unlock key printed once). Locked when
 * it is wrapped. Returns 0, or a negative code with why in err. */
int secrets_key_init(struct ctl *ctl, char *err, size_t len);
/* A shared store, when this controller starts to lead: the same with the
 * store's row keys/secret (made in the next commit when there is none). */
void secrets_lead(struct ctl *ctl);

/* The requests SecretCreate, SecretList, SecretGet, SecretRemove and
 * ControllerUnlock. */
int secrets_api(struct ctl *ctl, struct peer *p, uint64_t id, const Envelope *env);

/* Sets the id of each of spec's secrets and configs from its name. Returns
 * 0, or nonzero with the reply's code and one line in err (an unknown name,
 * secrets while locked). */
int secrets_resolve(struct ctl *ctl, ServiceSpec *spec, ErrorCode *code, char *err,
                    size_t len);

/* Before a node's Assignments go to peer: sends the values its set uses
 * that the connection has not carried. Returns 0; 1 when the set needs a
 * secret while locked (hold the set back); -ENOMEM. */
int secrets_push(struct ctl *ctl, struct peer *peer, Assignment *const *set, size_t n);

/* Frees what a peer remembers of the values it carried. */
void secrets_peer_free(struct peer *p);

#endif
