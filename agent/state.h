/* state: the agent's state dir (--state-dir): its private key (key.pem),
 * its node certificate with its chain (cert.pem) and the CA roots it
 * trusts the controller by (ca.pem). The dir is 0700 and the files 0600,
 * each written through a temporary file and a rename; a new key and its
 * certificate are written as key.pem.new and cert.pem.new first and
 * renamed in that order, so that a crash between the two renames is
 * finished at the next start (state_prepare) instead of leaving a key
 * without its certificate. Blocking file I/O: state_prepare and
 * state_load are for start-up, before the loop runs; state_save runs in
 * the thread pool.
 */
#ifndef SKIFF_AGENT_STATE_H
#define SKIFF_AGENT_STATE_H

#include <stddef.h>

typedef struct agent_state {
    char *key_pem;   /* malloc'd, NUL-terminated; NULL: none (or unchanged, to save) */
    char *cert_pem;
    char *ca_pem;
} agent_state_t;

/* Makes dir (0700) if missing, tightens looser modes with a warning,
 * refuses another owner, and finishes a renewal that a crash cut short.
 * Returns 0, or a negative code with err set. */
int state_prepare(const char *dir, char *err, size_t len);

/* Reads the three files into s. Returns 0; SKIFF_ENOTFOUND when there is
 * no certificate yet (the agent must join); another code with err set when
 * the files are there but unreadable or incomplete. */
int state_load(const char *dir, agent_state_t *s, char *err, size_t len);

/* Writes what s holds (key and certificate together, ca alone). Returns 0
 * or a negative code with err set. */
int state_save(const char *dir, const agent_state_t *s, char *err, size_t len);

/* Wipes the key and frees everything. */
void state_clear(agent_state_t *s);

#endif
