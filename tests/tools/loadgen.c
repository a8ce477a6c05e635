/*
 * skiff-loadgen: an HTTP load generator for the e2e tests.
 *
 * It sends GET requests from N worker threads (one libcurl easy handle each)
 * to one or more URLs, round-robin, until a duration has passed or a file
 * exists, and counts every request precisely: a request fails if the
 * connection fails, the request times out or the status is not 2xx. Tests use
 * it to check "0 failed requests" through skiff's load balancer during rolling
 * updates and container kills, and to see which version and which replica
 * answered (the first and second words of the body of the test web image).
 *
 * A request in flight when the run ends is completed, never aborted, so the
 * end of a run adds no failures. SIGINT and SIGTERM end a run the same way.
 *
 * This is a test tool, not part of skiff: blocking threads are fine here.
 *
 * The summary is one JSON object, printed on stdout and written to --out:
 *   {"requests":N, "failures":N, "duration_ms":N,
 *    "errors":{"HTTP 502":n, "Couldn't connect to server":n, ...},
 *    "bodies":{"v1":n, ...}, "hosts":{"<hostname>":n, ...},
 *    "latency_ms":{"avg":x, "max":x}, "failure_samples":[{"t_ms":..,...}]}
 * bodies and hosts count successful requests only. The exit status is 0 when
 * no request failed, 1 when some did (or none was sent), 2 on a usage error.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BODY_MAX 4096        /* bytes of a body kept to find its words */
#define WORD_MAX 256
#define SAMPLES_MAX 20       /* failures kept with their time, per run */

typedef struct {
	char **urls;
	size_t nurls;
	int concurrency;
	int64_t duration_ms;     /* 0: no limit (then until_file is set) */
	const char *until_file;
	bool keepalive;
	int64_t timeout_ms;
	int64_t interval_ms;
	const char *out;
	bool quiet;
} loadgen_opts_t;

typedef struct {
	char data[BODY_MAX];
	size_t len;
} body_t;

/* Counts of one worker; merged into the summary when the run ends. */
typedef struct {
	pthread_t thread;
	uint64_t requests;
	uint64_t failures;
	double latency_sum_ms;
	double latency_max_ms;
	json_t *errors;
	json_t *bodies;
	json_t *hosts;
	int rc;
} worker_t;

static loadgen_opts_t opts = {
	.concurrency = 1,
	.timeout_ms = 5000,
};
static atomic_bool stopping;
static atomic_uint_fast64_t next_url;
static volatile sig_atomic_t got_signal;
static struct timespec start_time;

static pthread_mutex_t samples_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *samples;

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)(ts.tv_sec - start_time.tv_sec) * 1000.0 +
	       (double)(ts.tv_nsec - start_time.tv_nsec) / 1e6;
}

static void
sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !got_signal)
		;
}

/*
 * Parses a duration the way Docker writes them: "500ms", "30s", "1m30s",
 * "2h"; a bare number is seconds. Returns milliseconds, or -1 if invalid.
 */
static int64_t
parse_duration_ms(const char *s)
{
	int64_t total = 0;
	const char *p = s;

	if (*p == '\0')
		return -1;
	while (*p != '\0') {
		char *end;
		double v;
		double unit;

		errno = 0;
		v = strtod(p, &end);
		if (end == p || errno != 0 || v < 0)
			return -1;
		p = end;
		if (strncmp(p, "ms", 2) == 0) {
			unit = 1;
			p += 2;
		} else if (*p == 's') {
			unit = 1000;
			p++;
		} else if (*p == 'm') {
			unit = 60000;
			p++;
		} else if (*p == 'h') {
			unit = 3600000;
			p++;
		} else if (*p == '\0' && p - s == (ptrdiff_t)strlen(s) && total == 0) {
			unit = 1000;
		} else {
			return -1;
		}
		total += (int64_t)(v * unit);
	}
	return total;
}

static size_t
body_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	body_t *body = userdata;
	size_t n = size * nmemb;
	size_t room = sizeof(body->data) - 1 - body->len;
	size_t take = n < room ? n : room;

	memcpy(body->data + body->len, ptr, take);
	body->len += take;
	body->data[body->len] = '\0';
	return n;                /* the rest of a long body is read and dropped */
}

/* Copies the index-th (0-based) whitespace-separated word of s into word. */
static void
nth_word(const char *s, int index, char *word, size_t size)
{
	const char *p = s;
	size_t len;

	for (int i = 0;; i++) {
		p += strspn(p, " \t\r\n");
		len = strcspn(p, " \t\r\n");
		if (len == 0 || i == index)
			break;
		p += len;
	}
	if (len == 0) {
		snprintf(word, size, "(none)");
		return;
	}
	if (len >= size)
		len = size - 1;
	memcpy(word, p, len);
	word[len] = '\0';
}

static int
count(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	json_int_t n = v != NULL ? json_integer_value(v) : 0;

	return json_object_set_new(obj, key, json_integer(n + 1));
}

static void
record_failure_sample(double t, const char *url, const char *error)
{
	pthread_mutex_lock(&samples_lock);
	if (json_array_size(samples) < SAMPLES_MAX) {
		json_array_append_new(samples, json_pack("{s:I, s:s, s:s}",
		    "t_ms", (json_int_t)t, "url", url, "error", error));
	}
	pthread_mutex_unlock(&samples_lock);
}

static void *
worker_run(void *arg)
{
	worker_t *w = arg;
	CURL *curl;
	body_t *body;
	char errbuf[CURL_ERROR_SIZE];

	body = malloc(sizeof(*body));
	curl = curl_easy_init();
	if (body == NULL || curl == NULL) {
		w->rc = -1;
		goto out;
	}
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)opts.timeout_ms);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)opts.timeout_ms);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_PROXY, "");   /* ignore http_proxy */
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "skiff-loadgen");
	if (!opts.keepalive) {
		curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);
	}

	while (!atomic_load(&stopping)) {
		uint64_t i = atomic_fetch_add(&next_url, 1);
		const char *url = opts.urls[i % opts.nurls];
		char word[WORD_MAX];
		char error[CURL_ERROR_SIZE + 64];
		CURLcode res;
		long status = 0;
		double t0, t1;

		body->len = 0;
		body->data[0] = '\0';
		errbuf[0] = '\0';
		curl_easy_setopt(curl, CURLOPT_URL, url);
		t0 = now_ms();
		res = curl_easy_perform(curl);
		t1 = now_ms();
		w->requests++;
		w->latency_sum_ms += t1 - t0;
		if (t1 - t0 > w->latency_max_ms)
			w->latency_max_ms = t1 - t0;

		if (res == CURLE_OK)
			curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
		if (res != CURLE_OK) {
			snprintf(error, sizeof(error), "%s", curl_easy_strerror(res));
		} else if (status < 200 || status > 299) {
			snprintf(error, sizeof(error), "HTTP %ld", status);
		} else {
			nth_word(body->data, 0, word, sizeof(word));
			count(w->bodies, word);
			nth_word(body->data, 1, word, sizeof(word));
			count(w->hosts, word);
			goto next;
		}
		w->failures++;
		count(w->errors, error);
		record_failure_sample(t0, url, errbuf[0] != '\0' ? errbuf : error);
next:
		if (opts.interval_ms > 0 && !atomic_load(&stopping))
			sleep_ms(opts.interval_ms);
	}

out:
	if (curl != NULL)
		curl_easy_cleanup(curl);
	free(body);
	return NULL;
}

static void
on_signal(int sig)
{
	got_signal = sig;
}

static void
merge_counts(json_t *into, json_t *from)
{
	const char *key;
	json_t *v;

	json_object_foreach(from, key, v) {
		json_t *have = json_object_get(into, key);
		json_int_t n = have != NULL ? json_integer_value(have) : 0;

		json_object_set_new(into, key, json_integer(n + json_integer_value(v)));
	}
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: skiff-loadgen --url URL [--url URL...] [options]\n"
	    "  -u, --url URL          request URL (repeat for round-robin over several)\n"
	    "  -c, --concurrency N    worker threads (default 1)\n"
	    "  -d, --duration D       run for D (30s, 500ms, 1m30s)\n"
	    "  -f, --until-file PATH  run until PATH exists (with --duration: whichever first)\n"
	    "  -k, --keepalive        reuse connections\n"
	    "  -n, --new-connection   a new connection per request (default)\n"
	    "  -t, --timeout D        per request, connect included (default 5s)\n"
	    "  -i, --interval D       pause between a worker's requests (default 0ms)\n"
	    "  -o, --out FILE         write the JSON summary to FILE too\n"
	    "  -q, --quiet            no one-line summary on stderr\n"
	    "Exit status: 0 no failed request, 1 some failed (or none sent), 2 usage.\n");
}

static int
parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "duration", required_argument, NULL, 'd' },
		{ "until-file", required_argument, NULL, 'f' },
		{ "keepalive", no_argument, NULL, 'k' },
		{ "new-connection", no_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "interval", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	char *end;
	long n;

	opts.urls = calloc((size_t)argc, sizeof(*opts.urls));
	if (opts.urls == NULL)
		return -1;
	while ((c = getopt_long(argc, argv, "u:c:d:f:knt:i:o:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'u':
			opts.urls[opts.nurls++] = optarg;
			break;
		case 'c':
			errno = 0;
			n = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || n < 1 || n > 1024) {
				fprintf(stderr, "skiff-loadgen: --concurrency: '%s' is not 1..1024\n", optarg);
				return -1;
			}
			opts.concurrency = (int)n;
			break;
		case 'd':
		case 't':
		case 'i': {
			int64_t ms = parse_duration_ms(optarg);
			const char *name = c == 'd' ? "duration" : c == 't' ? "timeout" : "interval";

			if (ms < 0 || (c != 'i' && ms == 0)) {
				fprintf(stderr, "skiff-loadgen: --%s: '%s' is not a duration (e.g. 500ms, 30s, 1m30s)\n",
				    name, optarg);
				return -1;
			}
			if (c == 'd')
				opts.duration_ms = ms;
			else if (c == 't')
				opts.timeout_ms = ms;
			else
				opts.interval_ms = ms;
			break;
		}
		case 'f':
			opts.until_file = optarg;
			break;
		case 'k':
			opts.keepalive = true;
			break;
		case 'n':
			opts.keepalive = false;
			break;
		case 'o':
			opts.out = optarg;
			break;
		case 'q':
			opts.quiet = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "skiff-loadgen: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (opts.nurls == 0) {
		fprintf(stderr, "skiff-loadgen: --url is required\n");
		return -1;
	}
	if (opts.duration_ms == 0 && opts.until_file == NULL) {
		fprintf(stderr, "skiff-loadgen: give --duration or --until-file\n");
		return -1;
	}
	return 0;
}

/* Waits, in the main thread, until the run should end. */
static void
wait_for_end(void)
{
	for (;;) {
		struct stat st;

		if (got_signal)
			return;
		if (opts.duration_ms > 0 && now_ms() >= (double)opts.duration_ms)
			return;
		if (opts.until_file != NULL && stat(opts.until_file, &st) == 0)
			return;
		sleep_ms(20);
	}
}

int
main(int argc, char **argv)
{
	worker_t *workers = NULL;
	json_t *summary = NULL;
	json_t *errors, *bodies, *hosts;
	uint64_t requests = 0, failures = 0;
	double latency_sum = 0, latency_max = 0, elapsed;
	struct sigaction sa = { .sa_handler = on_signal };
	sigset_t block, old;
	char *text = NULL;
	int started = 0;
	int rc = 2;

	if (parse_args(argc, argv) < 0)
		goto out;

	rc = 1;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "skiff-loadgen: curl_global_init failed\n");
		goto out;
	}
	json_object_seed(0);     /* once, before threads make objects */
	samples = json_array();
	workers = calloc((size_t)opts.concurrency, sizeof(*workers));
	if (samples == NULL || workers == NULL)
		goto out_curl;

	/* Workers block the signals; the main thread takes them. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &block, &old);

	clock_gettime(CLOCK_MONOTONIC, &start_time);
	for (int i = 0; i < opts.concurrency; i++) {
		worker_t *w = &workers[i];

		w->errors = json_object();
		w->bodies = json_object();
		w->hosts = json_object();
		if (w->errors == NULL || w->bodies == NULL || w->hosts == NULL)
			break;
		if (pthread_create(&w->thread, NULL, worker_run, w) != 0) {
			fprintf(stderr, "skiff-loadgen: cannot start worker %d\n", i);
			break;
		}
		started++;
	}

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigdelset(&block, SIGPIPE);
	pthread_sigmask(SIG_UNBLOCK, &block, NULL);

	if (started == opts.concurrency)
		wait_for_end();
	atomic_store(&stopping, true);

	errors = json_object();
	bodies = json_object();
	hosts = json_object();
	for (int i = 0; i < started; i++) {
		worker_t *w = &workers[i];

		pthread_join(w->thread, NULL);
		if (w->rc < 0)
			fprintf(stderr, "skiff-loadgen: worker %d could not start curl\n", i);
		requests += w->requests;
		failures += w->failures;
		latency_sum += w->latency_sum_ms;
		if (w->latency_max_ms > latency_max)
			latency_max = w->latency_max_ms;
		merge_counts(errors, w->errors);
		merge_counts(bodies, w->bodies);
		merge_counts(hosts, w->hosts);
	}
	elapsed = now_ms();
	if (started < opts.concurrency)
		goto out_counts;

	summary = json_pack("{s:I, s:I, s:I, s:o, s:o, s:o, s:{s:f, s:f}, s:O}",
	    "requests", (json_int_t)requests,
	    "failures", (json_int_t)failures,
	    "duration_ms", (json_int_t)elapsed,
	    "errors", errors,
	    "bodies", bodies,
	    "hosts", hosts,
	    "latency_ms",
	        "avg", requests > 0 ? latency_sum / (double)requests : 0.0,
	        "max", latency_max,
	    "failure_samples", samples);
	errors = bodies = hosts = NULL;      /* "o" stole them, even on failure */
	if (summary == NULL)
		goto out_counts;
	text = json_dumps(summary, JSON_COMPACT | JSON_SORT_KEYS);
	if (text == NULL)
		goto out_counts;
	printf("%s\n", text);
	fflush(stdout);
	if (opts.out != NULL) {
		FILE *f = fopen(opts.out, "w");

		if (f == NULL || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0) {
			fprintf(stderr, "skiff-loadgen: cannot write %s: %s\n", opts.out, strerror(errno));
			goto out_counts;
		}
	}
	if (!opts.quiet)
		fprintf(stderr, "skiff-loadgen: %ju requests, %ju failed requests in %.1fs\n",
		    (uintmax_t)requests, (uintmax_t)failures, elapsed / 1000.0);
	rc = (failures == 0 && requests > 0) ? 0 : 1;

out_counts:
	json_decref(errors);
	json_decref(bodies);
	json_decref(hosts);
	for (int i = 0; i < opts.concurrency; i++) {
		json_decref(workers[i].errors);
		json_decref(workers[i].bodies);
		json_decref(workers[i].hosts);
	}
out_curl:
	free(text);
	json_decref(summary);
	json_decref(samples);
	free(workers);
	curl_global_cleanup();
out:
	free(opts.urls);
	return rc;
}
