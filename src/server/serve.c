/*
 * "shivneri serve": wires the subsystems together on one event loop and
 * runs it.  Start-up failures (configuration, store, listeners) are
 * reported with what failed and exit 2 (configuration) or 1 (run time).
 *
 * SIGTERM/SIGINT drain: stop accepting (HTTP and new agents), stop handing
 * out jobs, wait for every pending commit and reply, give in-flight jobs
 * a moment to report, stop the supervised agents, exit 0.  A second signal
 * skips the waiting.  SIGHUP reopens the log file and rereads API keys,
 * the SMTP certificate, key and users (a storm of SIGHUPs is coalesced
 * into at most one reload every RELOAD_MIN_GAP_MS).
 * SMTP sessions stop with the HTTP front: idle ones get 421, one in the
 * middle of a message finishes it, and the drain waits for its commit.
 */
#include "server/serve.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "dispatch/dispatcher.h"
#include "dispatch/registry.h"
#include "intake/message.h"
#include "intake/submit.h"
#include "server/agent_port.h"
#include "server/http_front.h"
#include "server/supervisor.h"
#include "common/cidr.h"
#include "intake/smtp_auth.h"
#include "intake/smtp_session.h"
#include "intake/smtp_tls.h"
#include "store/store.h"
#include "dispatch/events.h"
#include "server/webhook.h"

#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <unistd.h>

/* The configuration's default is the hub's (common/ cannot include it). */
_Static_assert(CONFIG_EVENTS_HISTORY_DEFAULT == EVENTS_HISTORY_DEFAULT,
	       "events_history default");

#define DRAIN_TICK_MS 20
#define DRAIN_IN_FLIGHT_MS 3000
#define DRAIN_MAX_MS 10000
#define AGENT_STOP_GRACE_MS 3000

struct server {
	struct config *cfg;
	struct event_base *base;
	struct store *st;
	struct registry *reg;
	struct dispatcher *d;
	struct events *events; /* the live views' and webhooks' hub */
	struct webhook *wh;    /* NULL: no webhook_url */
	struct agent_port *ap;
	struct supervisor *sv;
	struct submit *sub;
	struct http_front *api;
	struct smtp_server *smtp;  /* NULL: no SMTP listener */
	struct smtp_tls *smtp_tls; /* NULL: no STARTTLS, no smtps_listen */
	struct event *sigterm, *sigint, *sighup, *drain_timer;
	struct event *reload_timer; /* the coalesced SIGHUP (on_hup) */
	int64_t last_reload;        /* mono_ms() of the last reload, or 0 */
	int64_t drain_start;
	bool draining;
	bool stopping;
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: shivneri serve [-c FILE] [-v]\n"
		   "  -c FILE  configuration (default: the embedded one)\n"
		   "  -v       verbose (debug) logging\n");
}

static void
stopped_cb(void *arg)
{
	struct server *s = arg;

	log_info("- server agents stopped; exiting");
	event_base_loopexit(s->base, NULL);
}

static void
drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	struct timeval tv = {0, DRAIN_TICK_MS * 1000};
	int64_t waited = mono_ms() - s->drain_start;
	bool quiet = (s->api == NULL || http_front_pending(s->api) == 0) &&
		     (s->smtp == NULL || smtp_server_pending(s->smtp) == 0) &&
		     submit_pending(s->sub) == 0 && store_pending(s->st) == 0;

	if (!s->stopping && ((quiet && (dispatcher_in_flight(s->d) == 0 ||
					waited >= DRAIN_IN_FLIGHT_MS)) ||
			     waited >= DRAIN_MAX_MS)) {
		s->stopping = true;
		log_info("- server drained waited_ms=%lld in_flight=%u",
			 (long long)waited, dispatcher_in_flight(s->d));
		agent_port_stop_listening(s->ap);
		supervisor_stop(s->sv, AGENT_STOP_GRACE_MS, stopped_cb, s);
		return;
	}
	if (!s->stopping)
		evtimer_add(s->drain_timer, &tv);
}

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *s = arg;
	struct timeval tv = {0, 0};

	if (s->draining) {
		log_info("- server second signal: stopping now");
		s->drain_start = mono_ms() - DRAIN_MAX_MS;
		evtimer_add(s->drain_timer, &tv);
		return;
	}
	s->draining = true;
	s->drain_start = mono_ms();
	log_info("- server signal %d: draining", (int)sig);
	if (s->api != NULL)
		http_front_stop_accepting(s->api);
	if (s->smtp != NULL)
		smtp_server_stop_accepting(s->smtp);
	dispatcher_pause(s->d);
	evtimer_add(s->drain_timer, &tv);
}

/*
 * smtp_users_file again (SIGHUP): a table that loads replaces the old one
 * for later AUTH exchanges; one that does not leaves the old in place.
 */
static void
smtp_reload_users(struct server *s)
{
	struct smtp_users *u = NULL;
	char err[512];
	int rc;

	if (s->smtp == NULL || s->cfg->smtp_users_file == NULL)
		return;
	rc = smtp_users_load(s->cfg->smtp_users_file, &u, err, sizeof(err));
	if (rc != 0) {
		log_warnx("- server smtp users_reload_failed (the old users "
			  "stay) error=\"%s\"",
			  err);
		return;
	}
	log_info("- server smtp users loaded count=%zu", smtp_users_count(u));
	smtp_server_set_users(s->smtp, u);
}

/*
 * A SIGHUP that comes while the server starts (the store's recovery, the
 * listeners, the agents), before the loop watches it, must not kill the
 * server (its default action), as a logrotate run at that moment would:
 * it is noted here and the reload runs once the loop does (server_run).
 * A caught signal goes back to its default across exec, so the agents are
 * as before.
 */
static volatile sig_atomic_t early_hup;

static void
on_early_hup(int sig)
{
	(void)sig;
	early_hup = 1;
}

/* on_early_hup() from now until server_run(); 0, or 1 after saying why. */
static int
catch_early_hup(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_early_hup;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGHUP, &sa, NULL) != 0) {
		fprintf(stderr, "shivneri: cannot catch SIGHUP: %s\n",
			strerror(errno));
		return 1;
	}
	return 0;
}

/* The reloads of a SIGHUP storm run at most this often. */
#define RELOAD_MIN_GAP_MS 250

/* What a SIGHUP rereads, all on the loop thread (reload_timer). */
static void
reload_tick(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	char err[512];
	int rc = log_reopen();

	(void)fd;
	(void)what;
	s->last_reload = mono_ms();
	if (rc != 0)
		log_warnx("- server cannot reopen log: %s", strerror(-rc));
	if (s->api != NULL)
		(void)http_front_reload_keys(s->api);
	/* A FIFO would block this loop inside OpenSSL's read. */
	if (s->smtp_tls != NULL &&
	    (config_regular_file_check(s->cfg->smtp_tls_cert_file, err,
				       sizeof(err)) != 0 ||
	     config_regular_file_check(s->cfg->smtp_tls_key_file, err,
				       sizeof(err)) != 0 ||
	     smtp_tls_reload(s->smtp_tls, err, sizeof(err)) != 0))
		log_warnx(
		    "- server smtp tls_reload_failed (the old certificate "
		    "stays) error=\"%s\"",
		    err);
	smtp_reload_users(s);
	supervisor_retry_held(s->sv);
	log_info("- server reloaded (SIGHUP): log reopened");
}

/*
 * A SIGHUP only arms reload_tick: at once after a quiet spell, else when
 * RELOAD_MIN_GAP_MS have passed since the last reload.  Signals that come
 * while it is armed join that reload, so a storm of them (a script in a
 * loop) costs a few reloads and log lines a second, not one per signal,
 * and the last file written before the storm ends is the one in force.
 */
static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct server *s = arg;
	int64_t wait = s->last_reload + RELOAD_MIN_GAP_MS - mono_ms();
	struct timeval tv = {0, 0};

	(void)sig;
	(void)what;
	if (evtimer_pending(s->reload_timer, NULL))
		return;
	if (s->last_reload != 0 && wait > 0)
		tv.tv_usec = (suseconds_t)(wait * 1000);
	if (evtimer_add(s->reload_timer, &tv) != 0)
		log_warnx("- server cannot schedule the SIGHUP reload");
}

/* supervisor_watch(): the last heartbeat of name's agent, 0 if none. */
static int64_t
agent_beat_ms(const char *name, void *arg)
{
	struct server *s = arg;
	const struct provider *p = registry_find(s->reg, name);

	return p != NULL ? p->last_heartbeat_mono : 0;
}

/*
 * A spawned agent silent this long is hung and killed (then restarted):
 * five heartbeat timeouts, so an agent only slow to (re)connect is left
 * alone, and at least 5 s.
 */
static int
agent_hang_ms(const struct config *cfg)
{
	int64_t ms = (int64_t)cfg->heartbeat_timeout_ms * 5;

	if (ms < 5000)
		ms = 5000;
	return ms > 600000 ? 600000 : (int)ms;
}

static char *
self_exe(void)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);

	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	return xstrdup(buf);
}

/*
 * The epoll changelist folds the add/delete pairs the HTTP server makes
 * around every request (reads off while the front holds it) into one
 * epoll_ctl per descriptor and loop turn.  Safe
 * here: no descriptor is ever dup()ed while it is watched.
 */
static struct event_base *
server_base_new(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *base;

	if (ec == NULL)
		fatalx("event_config_new failed");
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (base == NULL)
		fatalx("event_base_new failed");
	return base;
}

/* Starts the agents of the spawn = yes providers. */
static void
spawn_agents(struct server *s)
{
	size_t i;
	int rc;

	for (i = 0; i < s->cfg->nproviders; i++) {
		if (!s->cfg->providers[i].spawn)
			continue;
		rc = supervisor_spawn(s->sv, s->cfg->providers[i].name);
		if (rc != 0)
			log_error("- server cannot spawn agent %s: %s",
				  s->cfg->providers[i].name, strerror(-rc));
	}
}

/* The submit path hands every durable message to the dispatcher. */
static void
durable_cb(void *arg, struct store_message *m)
{
	struct server *s = arg;

	dispatcher_enqueue(s->d, m);
}

/* The dispatcher's fast path around the submit path's insert. */
static void *
claim_cb(void *arg, struct store_message *m)
{
	struct server *s = arg;

	return dispatcher_claim(s->d, m);
}

static void
claimed_cb(void *arg, void *token, struct store_message *m)
{
	struct server *s = arg;

	dispatcher_claim_durable(s->d, token, m);
}

static void
unclaim_cb(void *arg, void *token)
{
	struct server *s = arg;

	dispatcher_claim_cancel(s->d, token);
}

static bool
set(const char *v)
{
	return v != NULL && *v != '\0';
}

/* The SMTP intake on smtp_listen and smtps_listen; 0 or -1 (logged). */
static int
server_start_smtp(struct server *s)
{
	const struct config *cfg = s->cfg;
	struct smtp_options o = {
	    .max_message_bytes = (size_t)cfg->max_message_bytes,
	    .max_recipients = (size_t)cfg->smtp_max_recipients,
	    .timeout_s = cfg->smtp_timeout_s,
	    .max_session_s = cfg->smtp_max_session_s,
	    .max_connections = cfg->smtp_max_connections,
	    .max_client_connections = cfg->smtp_max_client_connections,
	    .max_bad_commands = cfg->smtp_max_bad_commands,
	    .data_budget = (size_t)cfg->smtp_data_budget_bytes,
	    .allow_plain_auth = cfg->smtp_allow_plain_auth,
	};
	struct cidr_list *trusted = NULL;
	char err[256];

	if (!set(cfg->smtp_listen) && !set(cfg->smtps_listen))
		return 0;
	if (cidr_list_parse(cfg->smtp_trusted_networks, &trusted, err,
			    sizeof(err)) != 0)
		fatalx("smtp_trusted_networks checked by config yet "
		       "unparsable");
	s->smtp = smtp_server_new(s->base, &o, s->sub, trusted);
	if (cfg->smtp_tls_cert_file != NULL) {
		if (smtp_tls_new(cfg->smtp_tls_cert_file,
				 cfg->smtp_tls_key_file, &s->smtp_tls, err,
				 sizeof(err)) != 0) {
			log_error("- server smtp_tls %s", err);
			return -1;
		}
		smtp_server_set_tls(s->smtp, s->smtp_tls);
	}
	if (cfg->smtp_users_file != NULL) {
		struct smtp_users *u = NULL;
		if (smtp_users_load(cfg->smtp_users_file, &u, err,
				    sizeof(err)) != 0) {
			log_error("- server smtp_users_file %s", err);
			return -1;
		}
		smtp_server_set_users(s->smtp, u);
	}
	if (set(cfg->smtp_listen) &&
	    smtp_server_listen(s->smtp, cfg->smtp_listen, false, err,
			       sizeof(err)) != 0) {
		log_error("- server smtp_listen %s", err);
		return -1;
	}
	if (set(cfg->smtps_listen) &&
	    smtp_server_listen(s->smtp, cfg->smtps_listen, true, err,
			       sizeof(err)) != 0) {
		log_error("- server smtps_listen %s", err);
		return -1;
	}
	log_info("- server smtp listening port=%d smtps_port=%d tls=%s "
		 "auth=%s trusted_networks=%zu",
		 smtp_server_port(s->smtp, false),
		 smtp_server_port(s->smtp, true),
		 s->smtp_tls != NULL ? "yes" : "no",
		 cfg->smtp_users_file != NULL ? "yes" : "no",
		 cidr_list_count(trusted));
	return 0;
}

/* The submit path, then the fronts that feed it; 0 or -1 (logged). */
static int
server_start_intake(struct server *s)
{
	struct message_limits lim = {
	    .max_message_bytes = (size_t)s->cfg->max_message_bytes,
	    .max_recipients = MESSAGE_MAX_RECIPIENTS,
	};
	char err[256];

	s->sub = submit_new(s->base, s->st, &lim, durable_cb, s);
	if (s->sub == NULL) {
		log_error("- server cannot start the builder threads");
		return -1;
	}
	submit_set_claim(s->sub, &(struct submit_claim){claim_cb, claimed_cb,
							unclaim_cb, s});
	if (server_start_smtp(s) != 0)
		return -1;
	if (s->cfg->http_listen == NULL || *s->cfg->http_listen == '\0')
		return 0;
	s->api = http_front_new(s->base, s->cfg, s->st, s->reg, s->d, s->sv,
				s->sub, err, sizeof(err));
	if (s->api == NULL) {
		log_error("- server %s", err);
		return -1;
	}
	return 0;
}

/*
 * With webhook_url: the secret (made at first start, like the agent's),
 * the sender, and final outcomes written with their webhook.  0 or -1.
 */
static int
server_start_webhooks(struct server *s)
{
	char err[256], *secret = NULL;
	size_t len = 0;
	int rc;

	if (s->cfg->webhook_url == NULL)
		return 0;
	rc = config_webhook_secret(s->cfg, true, &secret, &len);
	if (rc != 0) {
		log_error("- server webhook secret %s: %s",
			  s->cfg->webhook_secret_file, strerror(-rc));
		return -1;
	}
	s->wh = webhook_new(s->base, s->cfg, s->st, s->events, secret, len, err,
			    sizeof(err));
	explicit_bzero(secret, len);
	free(secret);
	if (s->wh == NULL) {
		log_error("- server %s", err);
		return -1;
	}
	dispatcher_set_webhooks(s->d, true);
	return 0;
}

static int
server_start(struct server *s, const char *config_path)
{
	char err[256], *secret = NULL, *exe = NULL, *host = NULL, *addr = NULL;
	size_t secret_len = 0;
	int rc, port;

	rc = mkdir_p(s->cfg->data_dir, 0700);
	if (rc != 0) {
		log_error("- server data_dir %s: %s", s->cfg->data_dir,
			  strerror(-rc));
		return 1;
	}
	rc = config_agent_secret(s->cfg, true, &secret, &secret_len);
	if (rc != 0) {
		log_error("- server agent secret %s: %s",
			  s->cfg->agent_secret_file, strerror(-rc));
		return 1;
	}
	s->base = server_base_new();
	rc = store_open(
	    s->cfg->data_dir,
	    &(struct store_options){s->cfg->store, s->cfg->max_message_bytes},
	    s->base, &s->st);
	if (rc != 0) {
		log_error("- server store %s: %s", s->cfg->data_dir,
			  store_strerror(rc));
		rc = 1;
		goto out;
	}
	s->reg = registry_new(s->base, s->cfg);
	s->d = dispatcher_new(s->base, s->cfg, s->st, s->reg);
	s->events = events_new((size_t)s->cfg->events_history);
	dispatcher_set_events(s->d, s->events);
	if (dispatcher_load(s->d) != 0) {
		log_error("- server cannot load the queue");
		rc = 1;
		goto out;
	}
	if (server_start_webhooks(s) != 0) {
		rc = 1;
		goto out;
	}
	s->ap = agent_port_new(s->base, s->cfg, secret, secret_len, s->reg,
			       s->d, err, sizeof(err));
	if (s->ap == NULL) {
		log_error("- server %s", err);
		rc = 1;
		goto out;
	}
	if (hostport_parse(s->cfg->agent_listen, &host, &port) != 0)
		fatalx("agent_listen checked by config yet unparsable");
	addr = xasprintf(strchr(host, ':') ? "[%s]:%d" : "%s:%d", host,
			 agent_port_port(s->ap));
	exe = self_exe();
	s->sv =
	    supervisor_new(s->base, exe ? exe : "shivneri", config_path, addr);
	supervisor_watch(s->sv, agent_beat_ms, s, agent_hang_ms(s->cfg));
	if (server_start_intake(s) != 0) {
		rc = 1;
		goto out;
	}
	if (s->api != NULL)
		http_front_set_webhook(s->api, s->wh);
	spawn_agents(s);
	log_info("- server listening http=%s:%d agents=%s data=%s "
		 "scheduler=%s providers=%zu http_max_body=%zu",
		 s->api ? "127.0.0.1" : "none",
		 s->api ? http_front_port(s->api) : 0, addr, s->cfg->data_dir,
		 s->cfg->scheduler, s->cfg->nproviders,
		 s->api ? http_front_max_body(s->api) : 0);
	rc = 0;
out:
	if (secret != NULL) {
		explicit_bzero(secret, secret_len);
		free(secret);
	}
	free(exe);
	free(host);
	free(addr);
	return rc;
}

/* Signals and the drain timer, then the loop until it is told to stop. */
static int
server_run(struct server *s)
{
	s->sigterm = evsignal_new(s->base, SIGTERM, on_stop_signal, s);
	s->sigint = evsignal_new(s->base, SIGINT, on_stop_signal, s);
	s->sighup = evsignal_new(s->base, SIGHUP, on_hup, s);
	s->drain_timer = evtimer_new(s->base, drain_tick, s);
	s->reload_timer = evtimer_new(s->base, reload_tick, s);
	if (s->sigterm == NULL || s->sigint == NULL || s->sighup == NULL ||
	    s->drain_timer == NULL || s->reload_timer == NULL ||
	    event_add(s->sigterm, NULL) != 0 ||
	    event_add(s->sigint, NULL) != 0 ||
	    event_add(s->sighup, NULL) != 0) {
		log_error("- server cannot watch signals");
		return 1;
	}
	/* The loop's handler is in place: one that came before is done now. */
	if (early_hup)
		on_hup(SIGHUP, EV_SIGNAL, s);
	if (event_base_dispatch(s->base) < 0) {
		log_error("- server event loop failed");
		return 1;
	}
	return 0;
}

static void
server_cleanup(struct server *s)
{
	if (s->drain_timer)
		event_free(s->drain_timer);
	if (s->reload_timer)
		event_free(s->reload_timer);
	if (s->sigterm)
		event_free(s->sigterm);
	if (s->sigint)
		event_free(s->sigint);
	if (s->sighup)
		event_free(s->sighup);
	if (s->api != NULL)
		http_front_stop_accepting(s->api);
	if (s->smtp != NULL)
		smtp_server_stop_accepting(s->smtp);
	submit_stop(s->sub);
	agent_port_free(s->ap);
	/* Its store callbacks then do nothing; its rows wait on disk. */
	webhook_stop(s->wh);
	/* Its last callbacks reply through the submit path and the front. */
	if (s->st != NULL)
		store_close(s->st);
	webhook_free(s->wh);
	http_front_free(s->api);
	smtp_server_free(s->smtp);
	smtp_tls_free(s->smtp_tls);
	submit_free(s->sub);
	supervisor_free(s->sv);
	dispatcher_free(s->d);
	events_free(s->events);
	registry_free(s->reg);
	if (s->base != NULL)
		event_base_free(s->base);
}

/*
 * Every connection is a descriptor: take all the kernel allows this
 * process (the soft limit up to the hard one), so that the connection
 * caps, not a low default soft limit, decide when clients are refused.
 */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		log_warn("- server getrlimit RLIMIT_NOFILE");
		return;
	}
	if (rl.rlim_cur == rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		log_warn("- server cannot raise the descriptor limit");
}

int
serve_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct config_errors errs = {0};
	struct server s;
	const char *path = NULL;
	int c, verbose = 0, rc;
	size_t i;

	/* Before anything is made: the store, logs, secrets are ours alone. */
	umask(077);
	if (catch_early_hup() != 0)
		return 1;
	memset(&s, 0, sizeof(s));
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	log_init("shivneri", verbose);
	rc = path ? config_load(path, &s.cfg, &errs)
		  : config_load_default(&s.cfg);
	if (rc != 0) {
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		if (errs.n == 0)
			fprintf(stderr, "shivneri: %s: %s\n",
				path ? path : "(default)", strerror(-rc));
		config_errors_cleanup(&errs);
		return 2;
	}
	/* The checks check-config runs too: one verdict on one file. */
	if (config_check_runtime(s.cfg, NULL, &errs) != 0) {
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		config_errors_cleanup(&errs);
		config_free(s.cfg);
		return 2;
	}
	rc = log_open_file(s.cfg->log_file);
	if (rc != 0) {
		fprintf(stderr, "shivneri: cannot open log_file %s: %s\n",
			s.cfg->log_file,
			rc == -EINVAL ? "not a regular file" : strerror(-rc));
		config_free(s.cfg);
		return 2;
	}
	if (log_set_format(s.cfg->log_format) != 0)
		log_warnx("- server unknown log_format, using text");
	signal(SIGPIPE, SIG_IGN);
	/* A file size limit must fail a write (the store says why), not kill.
	 */
	signal(SIGXFSZ, SIG_IGN);
	raise_fd_limit();
	message_init();
	rc = server_start(&s, path);
	if (rc == 0) {
		log_set_started();
		rc = server_run(&s);
	}
	server_cleanup(&s);
	message_shutdown();
	config_free(s.cfg);
	if (rc == 0)
		log_info("- server stopped");
	return rc;
}
