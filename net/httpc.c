/* httpc: see httpc.h.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to
 * call it back (CURLMOPT_TIMERFUNCTION); we watch with one uv_poll per
 * socket and one uv_timer, and hand events back with
 * curl_multi_socket_action. A transfer may not be removed from the multi
 * handle while curl is inside one of its callbacks, so a cancel made there
 * only marks the transfer dead; it is removed once curl returns.
 */
#include "httpc.h"
#include "errors.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct httpc_xfer {
    httpc_t *h;
    CURL *easy;
    struct curl_slist *headers;
    const httpc_ops_t *ops;
    void *arg;
    int dead;  /* cancelled inside a curl call: remove it when curl returns */
    int added; /* in the multi handle (not waiting to be added) */
    httpc_xfer_t *prev, *next;
    char err[CURL_ERROR_SIZE];
};

typedef struct httpc_sock {
    uv_poll_t poll;
    httpc_t *h;
    curl_socket_t fd;
    struct httpc_sock *prev, *next;
} httpc_sock_t;

struct httpc {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    httpc_xfer_t *xfers;
    httpc_sock_t *socks;
    int in_curl;     /* depth of calls into curl that may run our callbacks */
    int has_dead;
    int has_pending; /* transfers added inside a curl call, not yet in curl */
    int closing;
    int handles;     /* uv handles not yet closed (timer and polls) */
    int active;
    void (*close_done)(void *arg);
    void *close_arg;
};

static void httpc_maybe_free(httpc_t *h)
{
    void (*done)(void *) = h->close_done;
    void *arg = h->close_arg;

    if (!h->closing || h->handles > 0)
        return;
    free(h);
    if (done)
        done(arg);
}

static void httpc_on_handle_closed(uv_handle_t *handle)
{
    httpc_t *h = handle->data;

    h->handles--;
    httpc_maybe_free(h);
}

static void httpc_on_sock_closed(uv_handle_t *handle)
{
    httpc_sock_t *s = (httpc_sock_t *)handle;
    httpc_t *h = s->h;

    free(s);
    h->handles--;
    httpc_maybe_free(h);
}

static void httpc_sock_close(httpc_sock_t *s)
{
    httpc_t *h = s->h;

    if (s->prev)
        s->prev->next = s->next;
    else
        h->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, httpc_on_sock_closed);
}

/* ------------------------------------------------------------ transfers */

static void httpc_xfer_unlink(httpc_xfer_t *x)
{
    httpc_t *h = x->h;

    if (x->prev)
        x->prev->next = x->next;
    else
        h->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
}

/* Takes x out of curl and frees it; curl must not be running. */
static void httpc_xfer_free(httpc_xfer_t *x)
{
    httpc_t *h = x->h;

    httpc_xfer_unlink(x);
    h->active--;
    if (x->added) {
        h->in_curl++;
        curl_multi_remove_handle(h->multi, x->easy);
        h->in_curl--;
    }
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x);
}

static void httpc_reap_dead(httpc_t *h)
{
    httpc_xfer_t *x, *next;

    if (h->in_curl || !h->has_dead)
        return;
    h->has_dead = 0;
    for (x = h->xfers; x; x = next) {
        next = x->next;
        if (x->dead)
            httpc_xfer_free(x);
    }
}

/* Adds the transfers that were started while curl was running: curl
 * refuses curl_multi_add_handle from inside its callbacks. */
static void httpc_add_pending(httpc_t *h)
{
    httpc_xfer_t *x, *next;

    if (h->in_curl || !h->has_pending)
        return;
    h->has_pending = 0;
    for (x = h->xfers; x; x = next) {
        CURLMcode mc;

        next = x->next;
        if (x->added || x->dead)
            continue;
        h->in_curl++;
        mc = curl_multi_add_handle(h->multi, x->easy);
        h->in_curl--;
        if (mc == CURLM_OK) {
            x->added = 1;
            continue;
        }
        {
            const httpc_ops_t *ops = x->ops;
            void *arg = x->arg;
            httpc_xfer_free(x);
            if (ops->on_done)
                ops->on_done(arg, CURLE_OUT_OF_MEMORY, 0, "cannot start the transfer");
        }
        if (h->closing)
            return;
        next = h->xfers; /* the callback may have changed the list */
    }
}

static void httpc_check_done(httpc_t *h)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(h->multi, &left))) {
        httpc_xfer_t *x = NULL;
        CURLcode result;
        long status = 0;
        char err[CURL_ERROR_SIZE];

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (!x)
            continue;
        result = msg->data.result;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        if (result == CURLE_OK)
            err[0] = '\0';
        else
            snprintf(err, sizeof(err), "%s", x->err[0] ? x->err : curl_easy_strerror(result));
        if (x->dead) {
            httpc_xfer_free(x);
            continue;
        }
        /* Out of curl first: on_done may add transfers or cancel others. */
        {
            const httpc_ops_t *ops = x->ops;
            void *arg = x->arg;

            httpc_xfer_free(x);
            if (ops->on_done)
                ops->on_done(arg, result, status, err);
        }
        if (h->closing)
            return;
    }
}

static void httpc_action(httpc_t *h, curl_socket_t fd, int flags)
{
    int running;

    h->in_curl++;
    curl_multi_socket_action(h->multi, fd, flags, &running);
    h->in_curl--;
    httpc_reap_dead(h);
    httpc_add_pending(h);
    httpc_check_done(h);
}

/* ------------------------------------------------------------ curl's callbacks */

static void httpc_on_poll(uv_poll_t *p, int status, int events)
{
    httpc_sock_t *s = (httpc_sock_t *)p;
    int flags = 0;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    httpc_action(s->h, s->fd, flags);
}

static void httpc_on_timer(uv_timer_t *t)
{
    httpc_action(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int httpc_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    httpc_t *h = userp;
    httpc_sock_t *s = socketp;
    int events = 0;

    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(h->multi, fd, NULL);
            httpc_sock_close(s);
        }
        return 0;
    }
    if (h->closing)
        return -1;
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->h = h;
        s->fd = fd;
        s->poll.data = s;
        s->next = h->socks;
        if (h->socks)
            h->socks->prev = s;
        h->socks = s;
        h->handles++;
        curl_multi_assign(h->multi, fd, s);
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, httpc_on_poll);
    return 0;
}

static int httpc_on_timeout(CURLM *multi, long ms, void *userp)
{
    httpc_t *h = userp;

    if (h->closing)
        return 0;
    if (ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, httpc_on_timer, ms > 0 ? (uint64_t)ms : 1, 0);
    return 0;
}

static size_t httpc_on_write(char *data, size_t size, size_t n, void *userp)
{
    httpc_xfer_t *x = userp;
    size_t len = size * n;

    if (x->dead)
        return 0; /* aborts; the transfer is reaped when curl returns */
    if (x->ops->on_body && x->ops->on_body(x->arg, data, len) != 0)
        return 0;
    return len;
}

static size_t httpc_on_header_line(char *data, size_t size, size_t n, void *userp)
{
    httpc_xfer_t *x = userp;
    size_t len = size * n;

    if (x->dead)
        return 0;
    if (x->ops->on_header && x->ops->on_header(x->arg, data, len) != 0)
        return 0;
    return len;
}

/* ------------------------------------------------------------ interface */

httpc_t *httpc_create(uv_loop_t *loop)
{
    static int curl_ready;
    httpc_t *h;

    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return NULL;
        curl_ready = 1;
    }
    h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h);
        return NULL;
    }
    h->loop = loop;
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    h->handles = 1;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, httpc_on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, httpc_on_timeout);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return h;
}

int httpc_add(httpc_t *h, CURL *easy, struct curl_slist *headers, const httpc_ops_t *ops,
              void *arg, httpc_xfer_t **out)
{
    httpc_xfer_t *x;
    CURLMcode mc;

    if (out)
        *out = NULL;
    if (h->closing) {
        curl_easy_cleanup(easy);
        curl_slist_free_all(headers);
        return SKIFF_ECLOSED;
    }
    x = calloc(1, sizeof(*x));
    if (!x) {
        curl_easy_cleanup(easy);
        curl_slist_free_all(headers);
        return -ENOMEM;
    }
    x->h = h;
    x->easy = easy;
    x->headers = headers;
    x->ops = ops;
    x->arg = arg;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, x->err);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, httpc_on_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, httpc_on_header_line);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    if (headers)
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    if (h->in_curl) {
        /* Inside a curl callback: added when curl returns. */
        h->has_pending = 1;
    } else {
        h->in_curl++;
        mc = curl_multi_add_handle(h->multi, easy);
        h->in_curl--;
        if (mc != CURLM_OK) {
            curl_easy_cleanup(easy);
            curl_slist_free_all(headers);
            free(x);
            return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : SKIFF_EINVAL;
        }
        x->added = 1;
    }
    x->next = h->xfers;
    if (h->xfers)
        h->xfers->prev = x;
    h->xfers = x;
    h->active++;
    if (out)
        *out = x;
    return 0;
}

void httpc_cancel(httpc_t *h, httpc_xfer_t *x)
{
    if (!x || x->dead)
        return;
    if (h->in_curl) {
        x->dead = 1;
        h->has_dead = 1;
        return;
    }
    httpc_xfer_free(x);
}

int httpc_active(const httpc_t *h)
{
    return h->active;
}

void httpc_close(httpc_t *h, void (*done)(void *arg), void *arg)
{
    if (h->closing)
        return;
    h->closing = 1;
    h->close_done = done;
    h->close_arg = arg;
    while (h->xfers)
        httpc_xfer_free(h->xfers);
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    while (h->socks)
        httpc_sock_close(h->socks);
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, httpc_on_handle_closed);
}
