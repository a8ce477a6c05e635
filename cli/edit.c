/* edit: see edit.h. */
#include "edit.h"
#include "pbutil.h"
#include "spec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static size_t edit_key_len(const char *kv)
{
    const char *eq = strchr(kv, '=');

    return eq ? (size_t)(eq - kv) : strlen(kv);
}

int edit_env_set(ServiceSpec *s, const char *kv)
{
    size_t klen = edit_key_len(kv);
    char *copy;

    if (!strchr(kv, '=')) {
        copy = malloc(klen + 2);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, kv, klen);
        strcpy(copy + klen, "=");
    } else if (!(copy = strdup(kv))) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->n_env; i++) {
        if (edit_key_len(s->env[i]) == klen && strncmp(s->env[i], kv, klen) == 0) {
            free(s->env[i]);
            s->env[i] = copy;
            return 0;
        }
    }
    char **grown = realloc(s->env, (s->n_env + 1) * sizeof(*grown));
    if (!grown) {
        free(copy);
        return -ENOMEM;
    }
    s->env = grown;
    s->env[s->n_env++] = copy;
    return 0;
}

void edit_env_unset(ServiceSpec *s, const char *key)
{
    size_t klen = strlen(key), j = 0;

    for (size_t i = 0; i < s->n_env; i++) {
        if (edit_key_len(s->env[i]) == klen && strncmp(s->env[i], key, klen) == 0)
            free(s->env[i]);
        else
            s->env[j++] = s->env[i];
    }
    s->n_env = j;
}

int edit_label_set(ServiceSpec *s, const char *key, const char *value)
{
    Label *l;

    for (size_t i = 0; i < s->n_labels; i++)
        if (strcmp(s->labels[i]->key, key) == 0)
            return pb_set_str(&s->labels[i]->value, value);
    l = PB_NEW(Label);
    if (!l || pb_set_str(&l->key, key) || pb_set_str(&l->value, value) ||
        pb_push_msg(&s->n_labels, (void ***)&s->labels, l)) {
        pb_free(l);
        return -ENOMEM;
    }
    return 0;
}

void edit_label_unset(ServiceSpec *s, const char *key)
{
    size_t j = 0;

    for (size_t i = 0; i < s->n_labels; i++) {
        if (strcmp(s->labels[i]->key, key) == 0)
            pb_free(s->labels[i]);
        else
            s->labels[j++] = s->labels[i];
    }
    s->n_labels = j;
}

static int edit_constraint_same(const char *a, const char *b)
{
    constraint_t ca, cb;

    if (constraint_parse(a, &ca) || constraint_parse(b, &cb))
        return strcmp(a, b) == 0;
    return ca.kind == cb.kind && ca.equal == cb.equal && strcmp(ca.key, cb.key) == 0 &&
           strcmp(ca.value, cb.value) == 0;
}

int edit_constraint_add(ServiceSpec *s, const char *expr)
{
    for (size_t i = 0; i < s->n_constraints; i++)
        if (edit_constraint_same(s->constraints[i], expr))
            return 0;
    return pb_push_str(&s->n_constraints, &s->constraints, expr);
}

void edit_constraint_rm(ServiceSpec *s, const char *expr)
{
    size_t j = 0;

    for (size_t i = 0; i < s->n_constraints; i++) {
        if (edit_constraint_same(s->constraints[i], expr))
            free(s->constraints[i]);
        else
            s->constraints[j++] = s->constraints[i];
    }
    s->n_constraints = j;
}

int edit_mount_add(ServiceSpec *s, Mount *m)
{
    for (size_t i = 0; i < s->n_mounts; i++) {
        if (strcmp(s->mounts[i]->target, m->target) == 0) {
            pb_free(s->mounts[i]);
            s->mounts[i] = m;
            return 0;
        }
    }
    if (pb_push_msg(&s->n_mounts, (void ***)&s->mounts, m)) {
        pb_free(m);
        return -ENOMEM;
    }
    return 0;
}

void edit_mount_rm(ServiceSpec *s, const char *target)
{
    size_t j = 0;

    for (size_t i = 0; i < s->n_mounts; i++) {
        if (strcmp(s->mounts[i]->target, target) == 0)
            pb_free(s->mounts[i]);
        else
            s->mounts[j++] = s->mounts[i];
    }
    s->n_mounts = j;
}

int edit_secret_add(size_t *n, SecretRef ***refs, SecretRef *r)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*refs)[i]->target, r->target) == 0) {
            pb_free((*refs)[i]);
            (*refs)[i] = r;
            return 0;
        }
    }
    if (pb_push_msg(n, (void ***)refs, r)) {
        pb_free(r);
        return -ENOMEM;
    }
    return 0;
}

size_t edit_secret_rm(size_t *n, SecretRef ***refs, const char *name)
{
    size_t j = 0, removed = 0;

    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*refs)[i]->name, name) == 0 || strcmp((*refs)[i]->target, name) == 0) {
            pb_free((*refs)[i]);
            removed++;
        } else {
            (*refs)[j++] = (*refs)[i];
        }
    }
    *n = j;
    return removed;
}

int edit_port_add(ServiceSpec *s, PortConfig *p)
{
    for (size_t i = 0; i < s->n_ports; i++) {
        if (s->ports[i]->published == p->published) {
            pb_free(s->ports[i]);
            s->ports[i] = p;
            return 0;
        }
    }
    if (pb_push_msg(&s->n_ports, (void ***)&s->ports, p)) {
        pb_free(p);
        return -ENOMEM;
    }
    return 0;
}

void edit_port_rm(ServiceSpec *s, uint32_t published, uint32_t target)
{
    size_t j = 0;

    for (size_t i = 0; i < s->n_ports; i++) {
        const PortConfig *p = s->ports[i];
        if (p->target == target && (!published || p->published == published))
            pb_free(s->ports[i]);
        else
            s->ports[j++] = s->ports[i];
    }
    s->n_ports = j;
}

int edit_expose_add(ServiceSpec *s, uint32_t port)
{
    uint32_t *grown;

    for (size_t i = 0; i < s->n_expose; i++)
        if (s->expose[i] == port)
            return 0;
    grown = realloc(s->expose, (s->n_expose + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    s->expose = grown;
    s->expose[s->n_expose++] = port;
    return 0;
}

void edit_expose_rm(ServiceSpec *s, uint32_t port)
{
    size_t j = 0;

    for (size_t i = 0; i < s->n_expose; i++)
        if (s->expose[i] != port)
            s->expose[j++] = s->expose[i];
    s->n_expose = j;
}

int edit_strv_set(size_t *n, char ***arr, char *const *words, size_t nwords)
{
    size_t nn = 0;
    char **fresh = NULL;

    for (size_t i = 0; i < nwords; i++) {
        if (pb_push_str(&nn, &fresh, words[i])) {
            for (size_t j = 0; j < nn; j++)
                free(fresh[j]);
            free(fresh);
            return -ENOMEM;
        }
    }
    for (size_t i = 0; i < *n; i++)
        free((*arr)[i]);
    free(*arr);
    *arr = fresh;
    *n = nn;
    return 0;
}
