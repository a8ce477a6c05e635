/* unlock: see unlock.h. */
#include "unlock.h"
#include "client.h"
#include "errors.h"
#include "seal.h"
#include "wire.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <openssl/crypto.h>

static const char unlock_usage[] =
    "Usage: skiff-controller unlock [OPTIONS] < KEY\n"
    "\n"
    "Gives a controller started with --autolock its unlock key (SKIFF-UNLOCK-...), read\n"
    "from standard input (asked for on a terminal), so that it serves secrets again.\n"
    "\n"
    "Options:\n"
    "  --host ADDR:PORT[,...]   the controller (default 127.0.0.1:7400)\n"
    "  --data-dir DIR           where its admin-token and ca.pem are (default /var/lib/skiff)\n"
    "  --token-file FILE        the admin token (default DIR/admin-token)\n"
    "  -h, --help               print this help and exit\n";

/* The first line of path, without blanks around it. */
static int unlock_read_line(FILE *f, char *out, size_t len)
{
    char *s, *e;

    if (!fgets(out, (int)len, f))
        return -1;
    for (s = out; isspace((unsigned char)*s); s++)
        ;
    for (e = s + strlen(s); e > s && isspace((unsigned char)e[-1]); e--)
        ;
    *e = '\0';
    memmove(out, s, (size_t)(e - s) + 1);
    return *out ? 0 : -1;
}

/* The key from standard input; on a terminal, asked for without echo. */
static int unlock_read_key(char *out, size_t len)
{
    struct termios old, quiet;
    int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    int rc;

    if (tty) {
        fprintf(stderr, "Unlock key: ");
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    rc = unlock_read_line(stdin, out, len);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    return rc;
}

int unlock_main(int argc, char **argv)
{
    static const struct option options[] = {
        { "host", required_argument, NULL, 'H' },
        { "data-dir", required_argument, NULL, 'd' },
        { "token-file", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *host = "127.0.0.1:7400", *dir = "/var/lib/skiff", *token_file = NULL;
    char path[PATH_MAX + 16], ca[PATH_MAX + 16], token[512], key[256], err[512];
    uint8_t raw[SEAL_KEY_LEN];
    Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
    ControllerUnlock msg = PB_CONTROLLER_UNLOCK_INIT;
    client_t *c = NULL;
    FILE *f;
    int opt, rc = 1;

    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'd': dir = optarg; break;
        case 't': token_file = optarg; break;
        case 'h': fputs(unlock_usage, stdout); return 0;
        default: fputs(unlock_usage, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "skiff-controller unlock: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    snprintf(path, sizeof(path), "%s", token_file ? token_file : "");
    if (!token_file)
        snprintf(path, sizeof(path), "%s/admin-token", dir);
    if (!(f = fopen(path, "re")) || unlock_read_line(f, token, sizeof(token))) {
        fprintf(stderr, "skiff-controller unlock: cannot read the admin token %s: %s\n", path,
                f ? "empty" : strerror(errno));
        if (f)
            fclose(f);
        return 1;
    }
    fclose(f);
    if (unlock_read_key(key, sizeof(key)) || seal_unlock_parse(key, raw)) {
        fprintf(stderr, "skiff-controller unlock: not an unlock key (SKIFF-UNLOCK-<64 hex>)\n");
        goto out;
    }
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    if (!(c = client_connect(host, token, access(ca, R_OK) == 0 ? ca : NULL, err,
                             sizeof(err)))) {
        fprintf(stderr, "skiff-controller unlock: %s\n", err);
        goto out;
    }
    msg.key = key;
    req.msg_case = MSG_CONTROLLER_UNLOCK;
    req.controller_unlock = &msg;
    if (client_call(c, &req, MSG_OK, &reply, err, sizeof(err))) {
        fprintf(stderr, "skiff-controller unlock: %s\n", err);
        goto out;
    }
    printf("unlocked\n");
    rc = 0;
out:
    wire_free(reply);
    client_close(c);
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(token, sizeof(token));
    return rc;
}
