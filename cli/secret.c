/* secret: skiff secret create | ls | inspect | rm, and skiff config with the
 * same verbs (one set of functions; the kind is the command's group). See
 * secret.h.
 *
 * Everything the user gives is checked before anything is sent: the name,
 * the labels, the value (read in full, not empty, within
 * SPEC_SECRET_MAX_SIZE). A secret's value goes to the controller once, in
 * SecretCreate, and is never shown again; inspect shows a config's data
 * (base64 in JSON, as Docker's Spec.Data; as text with --pretty).
 */
#include "cli.h"
#include "errors.h"
#include "parse.h"
#include "pbutil.h"
#include "secret.h"
#include "spec.h"
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_READ_CHUNK 65536

static SecretKind secret_kind(const cli_args_t *a)
{
    return a->cmd && strcmp(a->cmd->group, "config") == 0 ? SECRET_KIND_CONFIG
                                                           : SECRET_KIND_SECRET;
}

int secret_check_name(SecretKind kind, const char *name, char *err, size_t errlen)
{
    if (spec_secret_name_valid(name))
        return 0;
    snprintf(err, errlen, "invalid %s name \"%.100s\" (1 to 64 letters, digits, '-', '_' or "
             "'.', starting and ending with a letter or digit)", spec_secret_kind_name(kind),
             name);
    parse_one_line(err);
    return SKIFF_EINVAL;
}

int secret_read_file(SecretKind kind, const char *name, const char *path, uint8_t **data,
                     size_t *len, char *err, size_t errlen)
{
    const char *what = spec_secret_kind_name(kind);
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    uint8_t *buf = NULL, chunk[SECRET_READ_CHUNK];
    size_t total = 0, got;
    int rc = 0;

    *data = NULL;
    *len = 0;
    if (!f) {
        snprintf(err, errlen, "%s %s: cannot read %s: %s", what, name, path, strerror(errno));
        parse_one_line(err);
        return SKIFF_EINVAL;
    }
    if (!(buf = malloc(SPEC_SECRET_MAX_SIZE))) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out_close;
    }
    /* read it all, keeping what fits: the message says how big it was */
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (total < SPEC_SECRET_MAX_SIZE)
            memcpy(buf + total, chunk,
                   got < SPEC_SECRET_MAX_SIZE - total ? got : SPEC_SECRET_MAX_SIZE - total);
        total += got;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s %s: cannot read %s: %s", what, name,
                 is_stdin ? "the standard input" : path, strerror(errno));
        rc = SKIFF_EINVAL;
    } else if (total > SPEC_SECRET_MAX_SIZE) {
        snprintf(err, errlen, "%s %s: %zu bytes is more than the limit of %u", what, name, total,
                 (unsigned)SPEC_SECRET_MAX_SIZE);
        rc = SKIFF_EINVAL;
    } else if (total == 0) {
        snprintf(err, errlen, "%s %s: %s is empty", what, name,
                 is_stdin ? "the standard input" : path);
        rc = SKIFF_EINVAL;
    }
    if (rc)
        parse_one_line(err);
out_close:
    if (!is_stdin)
        fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    *data = buf;
    *len = total;
    return 0;
}

int secret_get(client_t *c, SecretKind kind, const char *ref, Envelope **reply, char *err,
               size_t errlen)
{
    Envelope req = PB_ENVELOPE_INIT;
    SecretGet get = PB_SECRET_GET_INIT;

    get.kind = kind;
    get.ref = (char *)ref;
    req.msg_case = MSG_SECRET_GET;
    req.secret_get = &get;
    return client_call(c, &req, MSG_SECRET_REPLY, reply, err, errlen);
}

int secret_create(cli_args_t *a)
{
    SecretKind kind = secret_kind(a);
    Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
    SecretCreate create = PB_SECRET_CREATE_INIT;
    Secret secret = PB_SECRET_INIT;
    Label *labels = NULL, **lp = NULL;
    uint8_t *data = NULL;
    client_t *c = NULL;
    char err[512];
    size_t len;
    int status, rc;

    if (secret_check_name(kind, a->argv[0], err, sizeof(err)))
        return cli_error(CLI_USAGE, "%s", err);
    rc = secret_read_file(kind, a->argv[0], a->argv[1], &data, &len, err, sizeof(err));
    if (rc) /* a file's problem: 1, as cli.h says */
        return cli_error(CLI_ERROR, "%s", err);
    labels = calloc(a->n_labels ? a->n_labels : 1, sizeof(*labels));
    lp = calloc(a->n_labels ? a->n_labels : 1, sizeof(*lp));
    if (!labels || !lp) {
        status = cli_error(CLI_ERROR, "out of memory");
        goto out_free;
    }
    /* the labels point into argv's copies: --label k=v is split at '=' */
    for (size_t i = 0; i < a->n_labels; i++) {
        char *eq = strchr(a->labels[i], '=');
        labels[i] = (Label)PB_LABEL_INIT;
        labels[i].key = a->labels[i];
        labels[i].value = "";
        if (eq) {
            *eq = '\0';
            labels[i].value = eq + 1;
        }
        lp[i] = &labels[i];
    }
    secret.kind = kind;
    secret.name = a->argv[0];
    secret.labels = lp;
    secret.n_labels = a->n_labels;
    secret.data.data = data;
    secret.data.len = len;
    create.secret = &secret;
    req.msg_case = MSG_SECRET_CREATE;
    req.secret_create = &create;
    if (!(c = cli_connect(a))) {
        status = CLI_ERROR;
        goto out_free;
    }
    status = cli_request(c, &req, MSG_SECRET_REPLY, &reply);
    if (status == 0)
        printf("%s\n", reply->secret_reply->secret ? reply->secret_reply->secret->id : "");
out_free:
    if (data)
        memset(data, 0, len);
    free(data);
    free(labels);
    free(lp);
    wire_free(reply);
    client_close(c);
    return status;
}

int secret_ls(cli_args_t *a)
{
    Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
    SecretList list = PB_SECRET_LIST_INIT;
    fmt_opts_t o = cli_fmt_opts(a);
    client_t *c = cli_connect(a);
    int status;

    if (!c)
        return CLI_ERROR;
    list.kind = secret_kind(a);
    req.msg_case = MSG_SECRET_LIST;
    req.secret_list = &list;
    status = cli_request(c, &req, MSG_SECRET_LIST_REPLY, &reply);
    if (status == 0 && fmt_secrets(stdout, reply->secret_list_reply->secrets,
                                   reply->secret_list_reply->n_secrets, &o))
        status = cli_error(CLI_ERROR, "out of memory");
    wire_free(reply);
    client_close(c);
    return status;
}

int secret_inspect(cli_args_t *a)
{
    SecretKind kind = secret_kind(a);
    Envelope **replies = calloc((size_t)a->argc, sizeof(*replies));
    Secret **secrets = calloc((size_t)a->argc, sizeof(*secrets));
    client_t *c = NULL;
    int status = CLI_OK;
    char err[512];
    size_t n = 0;

    if (!replies || !secrets) {
        status = cli_error(CLI_ERROR, "out of memory");
        goto out_free;
    }
    if (!(c = cli_connect(a))) {
        status = CLI_ERROR;
        goto out_free;
    }
    for (int i = 0; i < a->argc && status != CLI_INTERRUPTED; i++) {
        int rc = secret_get(c, kind, a->argv[i], &replies[i], err, sizeof(err));
        if (rc)
            status = cli_error(cli_status(rc), "%s", err);
        else if (replies[i]->secret_reply->secret)
            secrets[n++] = replies[i]->secret_reply->secret;
    }
    if (fmt_secrets_inspect(stdout, secrets, n, a->pretty))
        status = cli_error(CLI_ERROR, "out of memory");
out_free:
    for (int i = 0; replies && i < a->argc; i++)
        wire_free(replies[i]);
    free(replies);
    free(secrets);
    client_close(c);
    return status;
}

int secret_rm(cli_args_t *a)
{
    SecretKind kind = secret_kind(a);
    client_t *c = cli_connect(a);
    int status = CLI_OK;

    if (!c)
        return CLI_ERROR;
    for (int i = 0; i < a->argc && status != CLI_INTERRUPTED; i++) {
        Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
        SecretRemove rm = PB_SECRET_REMOVE_INIT;
        int rc;
        rm.kind = kind;
        rm.ref = a->argv[i];
        req.msg_case = MSG_SECRET_REMOVE;
        req.secret_remove = &rm;
        rc = cli_request(c, &req, MSG_OK, &reply);
        if (rc)
            status = rc;
        else
            printf("%s\n", a->argv[i]);
        wire_free(reply);
    }
    client_close(c);
    return status;
}
