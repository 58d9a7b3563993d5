/*
 * main.c — tvdb-webhookd: configuration, signals, start and stop.
 *
 * Each setting is a flag with an environment fallback (flag > environment >
 * default), checked before anything starts: a bad value is a usage error
 * (exit 2), not a surprise later.  SIGTERM and SIGINT are blocked in every
 * thread and taken synchronously by the main thread with sigwait(), which
 * then stops accepting, lets the requests under way finish (up to
 * --timeout), and stops the HTTP daemon (closing its connections) and pool.
 */
#include "webhookd.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <microhttpd.h>

/* bytea values are limited to 1 GB; a larger --max-body could never be stored */
#define MAX_BODY_LIMIT ((size_t) 1024 * 1024 * 1024 - 1)

static const char *progname = "tvdb-webhookd";

/* One log line on stderr, written with a single write() so threads don't interleave. */
void
wlog(const char *fmt,...)
{
	char		line[1024];
	struct timespec ts;
	struct tm	tm;
	size_t		n;
	va_list		ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ tvdb-webhookd: ", &tm);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	n = strlen(line);
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0)
	{
		/* nowhere left to report it */
	}
}

static void
usage(FILE *out)
{
	fprintf(out,
			"%s %s — tvdb's HTTP front door: callbacks, uploads, health, metrics, dashboard\n"
			"\n"
			"Usage: %s [OPTION]...\n"
			"\n"
			"  --listen ADDR      address to bind        (TVDB_WEBHOOKD_LISTEN, default 127.0.0.1)\n"
			"  --port N           TCP port               (TVDB_WEBHOOKD_PORT, default 8787)\n"
			"  --dsn CONNSTR      libpq connection string (TVDB_WEBHOOKD_DSN, default \"\": PG* variables)\n"
			"  --max-body BYTES   largest webhook body   (TVDB_WEBHOOKD_MAX_BODY, default 10485760)\n"
			"  --max-upload BYTES largest uploaded file  (TVDB_WEBHOOKD_MAX_UPLOAD, default 52428800)\n"
			"  --timeout SECONDS  connection/request/database timeout (TVDB_WEBHOOKD_TIMEOUT, default 30)\n"
			"  --pool N           database connections   (TVDB_WEBHOOKD_POOL, default 4)\n"
			"  --help             show this help and exit\n"
			"\n"
			"Endpoints: POST /api/v1/webhooks/llamaparse, POST /api/v1/upload,\n"
			"           GET /health, GET /api/v1/webhooks/health, GET /metrics,\n"
			"           GET / and /documents/{id} (the dashboard), GET /api/v1/status,\n"
			"           GET /api/v1/documents?q=, GET /api/v1/documents/{id}\n",
			progname, TVDB_VERSION, progname);
}

static void bad_value(const char *flag, const char *env, const char *value,
					  const char *why) __attribute__((noreturn));

static void
bad_value(const char *flag, const char *env, const char *value, const char *why)
{
	if (env != NULL)
		fprintf(stderr, "%s: invalid %s value \"%s\" (from %s): %s\n",
				progname, flag, value, env, why);
	else
		fprintf(stderr, "%s: invalid %s value \"%s\": %s\n",
				progname, flag, value, why);
	exit(2);
}

/* A decimal integer in [min, max], or exit 2 naming the flag. */
static unsigned long long
parse_number(const char *flag, const char *env, const char *value,
			 unsigned long long min, unsigned long long max)
{
	char		why[96];
	char	   *end;
	unsigned long long n;

	errno = 0;
	n = strtoull(value, &end, 10);
	snprintf(why, sizeof(why), "must be an integer from %llu to %llu", min, max);
	if (value[0] == '\0' || value[0] == '-' || value[0] == '+' || *end != '\0' ||
		errno != 0 || n < min || n > max)
		bad_value(flag, env, value, why);
	return n;
}

typedef struct Setting
{
	const char *flag;
	const char *env;
	const char *value;			/* NULL: default */
	const char *from_env;		/* the variable the value came from, if any */
} Setting;

enum
{
	S_LISTEN, S_PORT, S_DSN, S_MAX_BODY, S_MAX_UPLOAD, S_TIMEOUT, S_POOL, S_COUNT
};

static void
parse_config(int argc, char **argv, Config *cfg)
{
	Setting		s[S_COUNT] = {
		[S_LISTEN] = {"--listen", "TVDB_WEBHOOKD_LISTEN"},
		[S_PORT] = {"--port", "TVDB_WEBHOOKD_PORT"},
		[S_DSN] = {"--dsn", "TVDB_WEBHOOKD_DSN"},
		[S_MAX_BODY] = {"--max-body", "TVDB_WEBHOOKD_MAX_BODY"},
		[S_MAX_UPLOAD] = {"--max-upload", "TVDB_WEBHOOKD_MAX_UPLOAD"},
		[S_TIMEOUT] = {"--timeout", "TVDB_WEBHOOKD_TIMEOUT"},
		[S_POOL] = {"--pool", "TVDB_WEBHOOKD_POOL"},
	};
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, S_LISTEN},
		{"port", required_argument, NULL, S_PORT},
		{"dsn", required_argument, NULL, S_DSN},
		{"max-body", required_argument, NULL, S_MAX_BODY},
		{"max-upload", required_argument, NULL, S_MAX_UPLOAD},
		{"timeout", required_argument, NULL, S_TIMEOUT},
		{"pool", required_argument, NULL, S_POOL},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	int			c;

	for (int i = 0; i < S_COUNT; i++)
	{
		s[i].value = getenv(s[i].env);
		s[i].from_env = s[i].value ? s[i].env : NULL;
	}

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
	{
		if (c == 'h')
		{
			usage(stdout);
			exit(0);
		}
		if (c < 0 || c >= S_COUNT)
		{
			fprintf(stderr, "Try \"%s --help\" for more information.\n", progname);
			exit(2);
		}
		s[c].value = optarg;
		s[c].from_env = NULL;
	}
	if (optind < argc)
	{
		fprintf(stderr, "%s: unexpected argument \"%s\"\n"
				"Try \"%s --help\" for more information.\n",
				progname, argv[optind], progname);
		exit(2);
	}

#define NUM(i, def, min, max) \
	(s[i].value ? parse_number(s[i].flag, s[i].from_env, s[i].value, min, max) : (def))

	cfg->listen = s[S_LISTEN].value ? s[S_LISTEN].value : "127.0.0.1";
	cfg->port = (unsigned) NUM(S_PORT, 8787, 1, 65535);
	cfg->dsn = s[S_DSN].value ? s[S_DSN].value : "";
	cfg->max_body = (size_t) NUM(S_MAX_BODY, 10485760, 1, MAX_BODY_LIMIT);
	cfg->max_upload = (size_t) NUM(S_MAX_UPLOAD, 52428800, 1, MAX_BODY_LIMIT);
	cfg->timeout = (unsigned) NUM(S_TIMEOUT, 30, 1, 3600);
	cfg->pool = (int) NUM(S_POOL, 4, 1, 100);
#undef NUM

	if (cfg->listen[0] == '\0')
		bad_value("--listen", s[S_LISTEN].from_env, cfg->listen, "must not be empty");

	/* Catch a malformed connection string now rather than on every request. */
	if (cfg->dsn[0] != '\0' && (strchr(cfg->dsn, '=') || strstr(cfg->dsn, "://")))
	{
		char	   *err = NULL;
		PQconninfoOption *opts = PQconninfoParse(cfg->dsn, &err);

		if (opts == NULL)
		{
			char		why[256];

			snprintf(why, sizeof(why), "%s", err ? err : "out of memory");
			why[strcspn(why, "\n")] = '\0';
			/* not echoed: a connection string may hold a password */
			bad_value("--dsn", s[S_DSN].from_env, "...", why);
		}
		PQconninfoFree(opts);
	}
}

/* Resolve --listen to one socket address (numeric or a host name). */
static struct addrinfo *
resolve_listen(const Config *cfg)
{
	struct addrinfo hints = {0};
	struct addrinfo *ai = NULL;
	char		port[8];
	int			rc;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", cfg->port);
	rc = getaddrinfo(cfg->listen, port, &hints, &ai);
	if (rc != 0)
	{
		fprintf(stderr, "%s: invalid --listen value \"%s\": %s\n",
				progname, cfg->listen, gai_strerror(rc));
		exit(2);
	}
	return ai;
}

int
main(int argc, char **argv)
{
	Config		cfg;
	struct addrinfo *ai;
	struct MHD_Daemon *daemon;
	sigset_t	stop_signals;
	int			sig;

	parse_config(argc, argv, &cfg);
	ai = resolve_listen(&cfg);

	/*
	 * Block the stop signals before any thread exists, so every thread
	 * inherits the mask and only sigwait() below ever sees them.  SIGPIPE
	 * is ignored: a client or server that went away is an error return.
	 */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!pool_init(&cfg))
	{
		wlog("out of memory");
		return 1;
	}
	daemon = http_start(&cfg, ai->ai_addr, ai->ai_family == AF_INET6);
	if (daemon == NULL)
	{
		wlog("could not start the HTTP server on %s port %u", cfg.listen, cfg.port);
		pool_destroy();
		freeaddrinfo(ai);
		return 1;
	}
	freeaddrinfo(ai);
	wlog("listening on %s port %u (pool %d, max body %zu bytes, max upload %zu bytes, timeout %u s)",
		 cfg.listen, cfg.port, cfg.pool, cfg.max_body, cfg.max_upload, cfg.timeout);

	while (sigwait(&stop_signals, &sig) != 0)
		;
	wlog("received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");

	if (http_quiesce(daemon, cfg.timeout) > 0)
		wlog("requests still running after %u s are cut off", cfg.timeout);
	pool_shutdown();			/* requests waiting for a connection give up */
	MHD_stop_daemon(daemon);	/* closes connections, joins their threads */
	pool_destroy();
	wlog("stopped");
	return 0;
}
