/*
 * monalpushd: XEP-0357 push service for Monal, from XMPP s2s to APNs.
 *
 * One header for the daemon, grouped by file as OpenBSD's httpd.h is.
 * Each group names the file that implements it.
 */

#ifndef MONALPUSHD_H
#define MONALPUSHD_H

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <limits.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <event.h>
#include <pwd.h>

#define MONALPUSHD_VERSION	"0.1"
#define CONF_FILE		"/etc/monalpush.conf"
#define MONALPUSHD_USER		"_monalpush"
#define MONALPUSHD_CHROOT	"/var/empty"
#define MONALPUSHD_DB		"/var/db/monalpush"
#define MONALPUSHD_LOGDIR	"/var/log/monalpush"
#define MONALPUSHD_SOCKET	"/var/run/monalpushd.sock"

/* Named bounds. */
#define NODE_MAX		128	/* registration node, [A-Za-z0-9-] */
#define TOKEN_MIN		64	/* APNs token, hex characters */
#define TOKEN_MAX		200
#define SECRET_LEN		32	/* random bytes per registration */
#define SECRET_HEX		(SECRET_LEN * 2)
#define DOMAIN_MAX		255	/* DNS name of an XMPP domain */
#define JID_MAX			3071	/* RFC 7622: 1023 + 1 + 1023 + 1 + 1023 */
#define APP_NAME_MAX		64
#define TOPIC_MAX		256
#define KEYID_MAX		32
#define COLLAPSE_MAX		64	/* apns-collapse-id */
#define ADDR_MAX		256	/* a listen or route address */
#define USER_MAX		32
#define DNS_ZONES_MAX		4	/* dns transparent zone */
#define CONF_PATH_MAX		1024	/* a path in the configuration: keeps
					   struct mp_conf within one imsg */
#define LOG_LINE_MAX		4096	/* one operational log line */
#define LOG_RETENTION_MAX	14	/* days: the privacy policy promises two weeks */
#define LOG_RETENTION_DEFAULT	14
#define LOG_PURGE_INTERVAL	3600	/* seconds between purges */
#define BLOB_CHUNK		8192	/* key material travels in chunks */
#define CONTROL_CLIENTS_MAX	64

#define STANZA_MAX_DEFAULT	(64 * 1024)
#define STANZA_MAX_LIMIT	(1024 * 1024)
#define XML_DEPTH_DEFAULT	32
#define XML_ATTRS_DEFAULT	32
#define CONN_MAX_DEFAULT	10000
#define CONN_PER_PEER_DEFAULT	100
#define HANDSHAKE_TIMEOUT_DEFAULT 30
#define IDLE_TIMEOUT_DEFAULT	600
#define APNS_TIMEOUT_DEFAULT	10
#define APNS_CONNS_DEFAULT	4
#define APNS_QUEUE_DEFAULT	10000
/* APNs responses counted by HTTP status, for show apns */
#define APNS_STATUSES		{ 200, 400, 403, 405, 410, 413, 429, 500, 503 }
#define APNS_NSTATUS		10	/* the list, then any other */
#define RATE_LIMIT_DEFAULT	5
#define EXPIRATION_DEFAULT	86400

/* imsg.c */

#define IMSG_HEADER_SIZE	sizeof(struct imsg_hdr)
#define MAX_IMSG_PAYLOAD	16384
#define IMSG_READ_BUF		(4 * (IMSG_HEADER_SIZE + MAX_IMSG_PAYLOAD))

struct imsg_hdr {
	uint32_t	 type;
	uint16_t	 len;		/* header included */
	uint16_t	 flags;		/* IMSGF_HASFD */
	uint32_t	 peerid;	/* request id */
	uint32_t	 pid;
};
#define IMSGF_HASFD	0x0001

struct imsg {
	struct imsg_hdr	 hdr;
	int		 fd;		/* -1 when none was passed */
	void		*data;		/* payload, NULL when empty */
};
#define IMSG_DATA_SIZE(imsg)	((size_t)(imsg)->hdr.len - IMSG_HEADER_SIZE)

struct ibuf {
	TAILQ_ENTRY(ibuf)	 entry;
	unsigned char		*buf;
	size_t			 size;
	size_t			 wpos;	/* bytes already written */
	int			 fd;	/* passed with the first byte, -1 none */
};

struct msgbuf {
	TAILQ_HEAD(, ibuf)	 bufs;
	uint32_t		 queued;
	size_t			 bytes;
};

struct imsg_fd {
	TAILQ_ENTRY(imsg_fd)	 entry;
	int			 fd;
};

struct imsgbuf {
	int			 fd;
	pid_t			 pid;
	struct msgbuf		 w;
	unsigned char		 r_buf[IMSG_READ_BUF];
	size_t			 r_wpos;
	size_t			 r_rpos;
	TAILQ_HEAD(, imsg_fd)	 fds;	/* received, not yet consumed */
};

struct imsgev {
	struct imsgbuf		 ibuf;
	void			(*handler)(int, short, void *);
	struct event		 ev;
	short			 events;
	void			*data;
};

/*
 * Every receiver checks the payload length before it reads a byte.
 * IMSG_SIZE_CHECK: the payload is exactly one *p.
 * IMSG_STR_CHECK: a char array of a checked struct is NUL terminated.
 */
#define IMSG_SIZE_CHECK(imsg, p) do {					\
	if (IMSG_DATA_SIZE(imsg) != sizeof(*(p)))			\
		fatalx("%s: type %u: bad length %zu, want %zu",	\
		    __func__, (imsg)->hdr.type, IMSG_DATA_SIZE(imsg),	\
		    sizeof(*(p)));					\
} while (0)
#define IMSG_STR_CHECK(s) do {						\
	if (memchr((s), '\0', sizeof(s)) == NULL)			\
		fatalx("%s: unterminated %s", __func__, #s);		\
} while (0)
/*
 * A struct whose last member is a string (a JID: up to 3 KiB, usually
 * a few dozen bytes) travels without the unused tail of that array.
 * IMSG_TAIL_LEN: the bytes to send.  IMSG_TAIL_GET: copy a received one
 * into *p, zeroing the rest, after checking its length and final NUL.
 */
#define IMSG_TAIL_LEN(p, field)						\
	(offsetof(__typeof__(*(p)), field) + strlen((p)->field) + 1)
#define IMSG_TAIL_GET(imsg, p, field) do {				\
	size_t	_tl = IMSG_DATA_SIZE(imsg);				\
	if (_tl <= offsetof(__typeof__(*(p)), field) ||			\
	    _tl > sizeof(*(p)) ||					\
	    ((const char *)(imsg)->data)[_tl - 1] != '\0')		\
		fatalx("%s: type %u: bad length %zu", __func__,	\
		    (imsg)->hdr.type, _tl);				\
	memset((p), 0, sizeof(*(p)));					\
	memcpy((p), (imsg)->data, _tl);					\
} while (0)

void	 imsgbuf_init(struct imsgbuf *, int);
void	 imsgbuf_clear(struct imsgbuf *);
ssize_t	 imsgbuf_read(struct imsgbuf *);	/* -1 error, 0 EOF */
int	 imsgbuf_write(struct imsgbuf *);	/* -1 error, 0 ok */
int	 imsgbuf_flush(struct imsgbuf *);	/* blocking until empty */
uint32_t imsgbuf_queuelen(struct imsgbuf *);
ssize_t	 imsg_get(struct imsgbuf *, struct imsg *); /* -1 bad, 0 none */
int	 imsg_compose(struct imsgbuf *, uint32_t, uint32_t, pid_t, int,
	    const void *, size_t);
int	 imsg_composev(struct imsgbuf *, uint32_t, uint32_t, pid_t, int,
	    const struct iovec *, int);
void	 imsg_free(struct imsg *);

void	 imsg_event_add(struct imsgev *);
int	 imsg_compose_event(struct imsgev *, uint32_t, uint32_t, pid_t,
	    int, const void *, size_t);
int	 imsg_composev_event(struct imsgev *, uint32_t, uint32_t, pid_t,
	    int, const struct iovec *, int);

/* Message types, shared by all processes and monalpushctl. */
enum imsg_type {
	IMSG_NONE,

	/* control socket <-> parent */
	IMSG_CTL_OK,			/* empty */
	IMSG_CTL_FAIL,			/* char[] message */
	IMSG_CTL_END,			/* empty: end of a listing */
	IMSG_CTL_SHOW_STATUS,		/* empty */
	IMSG_CTL_STATUS,		/* struct ctl_status, one per process */
	IMSG_CTL_RELOAD,		/* empty */
	IMSG_CTL_LOG_VERBOSE,		/* int verbosity */
	IMSG_CTL_SHOW_REGS,		/* struct ctl_req (verbose) */
	IMSG_CTL_REG_COUNT,		/* struct ctl_regcount */
	IMSG_CTL_REG,			/* struct ctl_reg */
	IMSG_CTL_SHOW_NODE,		/* struct ctl_req (arg = node) */
	IMSG_CTL_UNREGISTER,		/* struct ctl_req (arg = node) */
	IMSG_CTL_SHOW_APNS,		/* empty; parent -> apnse too */
	IMSG_CTL_APNS,			/* struct ctl_apns, one per app */
	IMSG_CTL_SHOW_PEERS,		/* empty; parent -> xmppe too */
	IMSG_CTL_PEER,			/* struct ctl_peer, one per stream */
	IMSG_CTL_SHOW_STATS,		/* empty */
	IMSG_CTL_STATS,			/* struct ctl_stats */

	/* parent -> children: configuration, reset/objects/done */
	IMSG_CONF_START,		/* struct mp_conf, lists empty */
	IMSG_CONF_LISTEN,		/* struct mp_listen, fd passed */
	IMSG_CONF_DOMAIN,		/* struct mp_domain */
	IMSG_CONF_APP,			/* struct mp_app */
	IMSG_CONF_ROUTE,		/* struct mp_route */
	IMSG_CONF_BLOB,			/* struct conf_blob + bytes */
	IMSG_CONF_END,			/* empty */

	/* logging: any process -> logd */
	IMSG_LOG,			/* struct log_msg */
	IMSG_LOG_EVENT,			/* struct log_event */
	IMSG_LOG_VERBOSE,		/* int, parent -> children */
	IMSG_LOG_STATS_REQ,		/* empty, parent -> logd */
	IMSG_LOG_STATS,			/* struct log_stats, logd -> parent */

	/* status of a child, for show status */
	IMSG_PROC_STATUS_REQ,		/* empty */
	IMSG_PROC_STATUS,		/* struct proc_status */

	/* the push path (later issues) */
	IMSG_REG_REQ,
	IMSG_REG_RES,
	IMSG_UNREG_REQ,
	IMSG_UNREG_RES,
	IMSG_PUSH_REQ,
	IMSG_PUSH_RES,
	IMSG_APNS_SEND,
	IMSG_APNS_RESULT,

	/* GDPR subject access (sar.c) */
	IMSG_CTL_SAR_REQUEST,		/* struct ctl_req (arg = JID) */
	IMSG_CTL_SAR_EXPORT,		/* struct ctl_req (arg = JID) */
	IMSG_CTL_SAR_ERASE,		/* struct ctl_req (arg = JID) */
	IMSG_CTL_SAR,			/* struct ctl_sar: the code */
	IMSG_CTL_SAR_LINE,		/* char[]: one log line */
	IMSG_CTL_SAR_ERASED,		/* struct ctl_sar_erased */
	IMSG_SAR_VERIFY,		/* struct sar_verify, xmppe -> parent */
	IMSG_SAR_SEARCH,		/* struct sar_search, parent -> logd */
	IMSG_SAR_LINE,			/* char[], logd -> parent */
	IMSG_SAR_END,			/* struct sar_end, logd -> parent */

	/* test builds only: ask a child to try a forbidden act */
	IMSG_TEST_FORBIDDEN,		/* int act */
	IMSG_TEST_RESULT,		/* struct test_result */

	IMSG_TYPE_MAX
};

/* proc.c, parent.c: the processes */

enum mp_proc {
	PROC_PARENT,
	PROC_XMPPE,
	PROC_APNSE,
	PROC_LOGD,
	PROC_MAX
};

struct proc_status {
	char		 ps_name[16];
	int32_t		 ps_pid;
	int64_t		 ps_started;
	uint64_t	 ps_imsg_in;
	uint64_t	 ps_imsg_out;
};

struct ctl_status {
	char		 cs_name[16];
	int32_t		 cs_pid;
	int64_t		 cs_started;		/* UNIX seconds */
	char		 cs_conffile[PATH_MAX];
	uint64_t	 cs_log_lines;		/* lines this process logged */
	uint64_t	 cs_log_dropped;	/* lines lost to write errors */
	int32_t		 cs_verbose;
};

struct ctl_req {
	int32_t		 cr_verbose;
	char		 cr_arg[JID_MAX + 1];
};

struct ctl_regcount {
	char		 rc_app[APP_NAME_MAX];
	uint64_t	 rc_count;
};

struct ctl_reg {
	char		 cg_node[NODE_MAX + 1];
	char		 cg_app[APP_NAME_MAX];
	char		 cg_type[8];
	char		 cg_token[TOKEN_MAX + 1];	/* shortened unless -v */
	char		 cg_domain[DOMAIN_MAX + 1];
	int64_t		 cg_registered;
	int64_t		 cg_renewed;
	int64_t		 cg_last_success;
	int64_t		 cg_last_error;
};

struct ctl_apns {
	char		 ca_app[APP_NAME_MAX];
	uint32_t	 ca_conns;
	uint32_t	 ca_streams;		/* requests in flight */
	uint32_t	 ca_queue;
	uint64_t	 ca_requests;
	uint64_t	 ca_retries;
	uint64_t	 ca_ok;
	uint64_t	 ca_dead;
	uint64_t	 ca_throttled;
	uint64_t	 ca_operator;
	uint64_t	 ca_transient;
	uint64_t	 ca_queue_full;
	uint64_t	 ca_status[APNS_NSTATUS];	/* APNS_STATUSES, other */
	char		 ca_lasterr[128];
};

/* The parent's push path counters, since start. */
struct ctl_stats {
	int64_t		 st_started;
	uint64_t	 st_registrations;	/* committed, new or renewed */
	uint64_t	 st_unregistrations;
	uint64_t	 st_reg_refused;	/* bad input, wrong domain */
	uint64_t	 st_publishes;		/* IMSG_PUSH_REQ received */
	uint64_t	 st_not_found;		/* unknown node, secret, domain */
	uint64_t	 st_coalesced;		/* into a later rate-limit slot */
	uint64_t	 st_sent;		/* requests given to apnse */
	uint64_t	 st_ok;
	uint64_t	 st_dead;		/* dead tokens */
	uint64_t	 st_deleted;		/* registrations deleted for it */
	uint64_t	 st_throttled;
	uint64_t	 st_operator;
	uint64_t	 st_transient;
	uint64_t	 st_queue_full;
	uint64_t	 st_inflight;		/* now */
	uint64_t	 st_rate_entries;	/* now */
	uint64_t	 st_blocked;		/* dead tokens, token mode, now */
};

struct ctl_peer {
	char		 cp_domain[DOMAIN_MAX + 1];	/* remote */
	char		 cp_local[DOMAIN_MAX + 1];
	char		 cp_addr[ADDR_MAX];
	int32_t		 cp_outbound;
	char		 cp_tls[16];			/* "TLSv1.3", "" none */
	char		 cp_auth[16];			/* external, dialback */
	int32_t		 cp_bidi;
	int64_t		 cp_started;
	uint64_t	 cp_in;				/* stanzas */
	uint64_t	 cp_out;
};

enum test_act {
	TEST_OPEN_OUTSIDE,		/* open a file outside the allowed paths */
	TEST_EXECVE,			/* execve /bin/sh */
	TEST_SOCKET_FAMILY,		/* socket(AF_PACKET / AF_NETLINK) */
	TEST_OPEN_ALLOWED		/* logd: open inside its directory */
};

struct test_result {
	int32_t		 tr_act;
	int32_t		 tr_ret;
	int32_t		 tr_errno;
};

struct log_stats;
struct registry;

struct privsep {
	enum mp_proc		 ps_proc;		/* who am I */
	struct imsgev		 ps_iev[PROC_MAX];	/* channel per peer */
	int			 ps_ievok[PROC_MAX];
	pid_t			 ps_pid[PROC_MAX];
	time_t			 ps_started[PROC_MAX];
	struct mp_conf		*ps_conf;
	struct passwd		*ps_pw;
	int			 ps_debug;
	int			 ps_verbose;
	int			 ps_exiting;
	const char		*ps_conffile;
	struct registry		*ps_reg;		/* parent only */
	void			*ps_data;		/* the process's own */
};

/* One dispatch function per peer, as each process file declares. */
struct proc_dispatch {
	enum mp_proc	 pd_peer;
	int		(*pd_fn)(struct privsep *, enum mp_proc, struct imsg *);
};

/* proc.c */
extern struct privsep	*mp_ps;
extern struct event_base *proc_evbase;
const char	*proc_name(enum mp_proc);
void		 proc_fork_children(struct privsep *);
void		 proc_child_setup(struct privsep *,
		    const struct proc_dispatch *, void (*)(struct privsep *));
void		 proc_listen(struct privsep *, const struct proc_dispatch *);
void		 proc_dispatch_cb(int, short, void *);
int		 proc_compose(struct privsep *, enum mp_proc, uint32_t,
		    uint32_t, int, const void *, size_t);
void		 proc_conf_send(struct privsep *, enum mp_proc);
int		 proc_conf_recv(struct privsep *, struct imsg *,
		    struct mp_conf **);
void		 proc_privdrop(struct privsep *, const char *);
int		 proc_dispatch_common(struct privsep *, struct imsg *,
		    void (*)(struct privsep *, struct mp_conf *));
void		 proc_test_forbidden(struct privsep *, int);

/* parent.c */
void		 parent_main(struct privsep *);
int		 parent_reload(struct privsep *);
void		 parent_shutdown(struct privsep *, int);
int		 parent_registry_open(struct privsep *);
void		 parent_registry_close(struct privsep *);
void		 parent_registry_kick(struct privsep *);
int		 parent_registry_dispatch(struct privsep *, enum mp_proc,
		    struct imsg *);
int		 parent_registry_ctl(struct privsep *, uint32_t, struct imsg *);

/* push.c */
int		 parent_push_dispatch(struct privsep *, enum mp_proc,
		    struct imsg *);
void		 parent_push_stats(struct ctl_stats *);

/* control.c */
int		 control_init(struct privsep *, const char *);
void		 control_listen(struct privsep *);
void		 control_cleanup(const char *);
void		 control_imsg_reply(struct privsep *, uint32_t, uint32_t,
		    const void *, size_t);
void		 control_log_stats(struct privsep *, uint32_t,
		    const struct log_stats *);

/* xmppe.c, apnse.c, logd.c */
void		 xmppe_main(struct privsep *);
void		 apnse_main(struct privsep *);
void		 logd_main(struct privsep *);
int		 logd_purge(int, time_t, int, uint64_t *);
int		 logd_filedate(const char *, time_t *);

/* The push path between xmppe, the parent and apnse; peerid = request id. */

struct reg_req {			/* IMSG_REG_REQ, IMSG_UNREG_REQ */
	char		 rq_jid[JID_MAX + 1];		/* for the log only */
	char		 rq_domain[DOMAIN_MAX + 1];	/* authenticated */
	char		 rq_type[8];
	char		 rq_app[APP_NAME_MAX];		/* "" = default */
	char		 rq_node[NODE_MAX + 1];
	char		 rq_token[TOKEN_MAX + 1];
};

struct reg_res {			/* IMSG_REG_RES, IMSG_UNREG_RES */
	int32_t		 rs_error;			/* enum reg_error */
	char		 rs_node[NODE_MAX + 1];
	uint8_t		 rs_secret[SECRET_LEN];
	char		 rs_text[128];			/* for bad-request */
};

struct push_req {			/* IMSG_PUSH_REQ, IMSG_TAIL_LEN */
	char		 pq_domain[DOMAIN_MAX + 1];	/* authenticated */
	char		 pq_node[TOKEN_MAX + 1];	/* node, or the token */
	char		 pq_app[APP_NAME_MAX];		/* pushModule, "" none */
	uint8_t		 pq_secret[SECRET_LEN];
	int32_t		 pq_has_secret;
	int32_t		 pq_pushtype;		/* PRIO_ALERT or _BACKGROUND */
	char		 pq_jid[JID_MAX + 1];		/* from: domain or JID */
};

enum push_outcome {
	PUSH_OK,			/* result */
	PUSH_NOT_FOUND,			/* cancel/item-not-found */
	PUSH_INTERNAL,			/* wait/internal-server-error */
	PUSH_TIMEOUT,			/* wait/remote-server-timeout */
	PUSH_RESOURCE			/* wait/resource-constraint */
};

struct push_res {			/* IMSG_PUSH_RES */
	int32_t		 ps_outcome;
};

struct apns_send {			/* IMSG_APNS_SEND */
	char		 an_app[APP_NAME_MAX];
	char		 an_token[TOKEN_MAX + 1];
	int32_t		 an_pushtype;
};

/* config.c, parse.y: the configuration */

enum app_env		{ APP_ENV_PRODUCTION, APP_ENV_SANDBOX };
enum app_auth		{ APP_AUTH_NONE, APP_AUTH_CERT, APP_AUTH_TOKEN };
enum app_priority	{ PRIO_AUTO, PRIO_ALERT, PRIO_BACKGROUND, PRIO_VOIP };
enum app_mode		{ APP_MODE_REGISTERED, APP_MODE_TOKEN };

#define CONF_LISTEN_PORT	5269	/* when no listen is configured */
#define CONF_APNS_HOST_PRODUCTION "api.push.apple.com"
#define CONF_APNS_HOST_SANDBOX	"api.sandbox.push.apple.com"
#define CONF_APNS_PORT		443
#define CONF_FILE_MAX		(4 * 1024 * 1024) /* certificate, key, CA */

struct mp_listen {
	struct sockaddr_storage	 l_ss;
	char			 l_addr[ADDR_MAX];
	uint16_t		 l_port;
	int			 l_tls;		/* XEP-0368 direct TLS */
	int			 l_fd;		/* parent only */
	TAILQ_ENTRY(mp_listen)	 l_entry;
};

struct mp_domain {
	char			 d_name[DOMAIN_MAX + 1];
	char			 d_cert[CONF_PATH_MAX];
	char			 d_key[CONF_PATH_MAX];
	uint8_t			*d_cert_mem;	/* not sent as part of */
	size_t			 d_cert_len;	/* the struct: BLOBs */
	uint8_t			*d_key_mem;
	size_t			 d_key_len;
	TAILQ_ENTRY(mp_domain)	 d_entry;
};

struct mp_app {
	char			 a_name[APP_NAME_MAX];
	char			 a_topic[TOPIC_MAX];
	int			 a_env;
	char			 a_host[DOMAIN_MAX + 1];  /* "" = by env */
	uint16_t		 a_port;		  /* 0 = 443 */
	int			 a_auth;
	char			 a_cert[CONF_PATH_MAX];
	char			 a_key[CONF_PATH_MAX];	/* cert key or .p8 */
	char			 a_keyid[KEYID_MAX];
	char			 a_teamid[KEYID_MAX];
	char			 a_cafile[CONF_PATH_MAX];	/* "" = system */
	uint8_t			*a_ca_mem;
	size_t			 a_ca_len;
	int			 a_priority;
	int			 a_mutable;
	char			 a_collapse[COLLAPSE_MAX + 1];
	int64_t			 a_expiration;	/* TTL in seconds */
	int64_t			 a_ratelimit;	/* seconds per device */
	int			 a_mode;
	int			 a_default;
	uint8_t			*a_cert_mem;
	size_t			 a_cert_len;
	uint8_t			*a_key_mem;
	size_t			 a_key_len;
	TAILQ_ENTRY(mp_app)	 a_entry;
};

struct mp_route {
	char			 r_domain[DOMAIN_MAX + 1];
	char			 r_addr[ADDR_MAX];
	uint16_t		 r_port;
	TAILQ_ENTRY(mp_route)	 r_entry;
};

struct mp_conf {
	char			 c_file[CONF_PATH_MAX];
	char			 c_logdir[CONF_PATH_MAX];
	int			 c_retention;		/* days, 1..14 */
	char			 c_database[CONF_PATH_MAX];
	char			 c_user[USER_MAX];
	char			 c_chroot[CONF_PATH_MAX];
	char			 c_socket[CONF_PATH_MAX];
	char			 c_cafile[CONF_PATH_MAX];	/* peers' CA bundle */
	uint8_t			*c_ca_mem;
	size_t			 c_ca_len;
	int			 c_starttls_required;
	char			 c_dns_zones[DNS_ZONES_MAX][DOMAIN_MAX + 1];
	size_t			 c_stanza_max;
	int			 c_xml_depth;
	int			 c_xml_attrs;
	int			 c_conn_max;
	int			 c_conn_per_peer;
	int			 c_handshake_timeout;
	int			 c_idle_timeout;
	int			 c_apns_timeout;
	int			 c_apns_conns;
	int			 c_apns_queue;
	TAILQ_HEAD(, mp_listen)	 c_listens;
	TAILQ_HEAD(, mp_domain)	 c_domains;
	TAILQ_HEAD(, mp_app)	 c_apps;
	TAILQ_HEAD(, mp_route)	 c_routes;
};

/* Key material crosses imsg in chunks. */
enum blob_kind { BLOB_DOMAIN_CERT, BLOB_DOMAIN_KEY, BLOB_APP_CERT,
	BLOB_APP_KEY, BLOB_APP_CA, BLOB_PEER_CA };
struct conf_blob {
	int32_t		 cb_kind;
	char		 cb_owner[DOMAIN_MAX + 1];	/* domain or app name */
	uint32_t	 cb_total;
	uint32_t	 cb_offset;
	uint32_t	 cb_len;			/* bytes that follow */
};

/* parse.y */
struct mp_conf	*parse_config(const char *, int);	/* NULL on errors */
int		 cmdline_symset(char *);
void		 parse_errors_to_log(int);	/* 0: stderr (default) */

/* config.c */
struct mp_conf	*config_new_empty(void);
void		 config_free(struct mp_conf *);
void		 config_print(FILE *, const struct mp_conf *);
struct mp_app	*config_app_find(const struct mp_conf *, const char *);
struct mp_app	*config_app_default(const struct mp_conf *);
struct mp_domain *config_domain_find(const struct mp_conf *, const char *);
int		 config_load_keys(struct mp_conf *);	/* parent: read files */

/* log.c */

enum log_level { LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

struct log_msg {
	int32_t		 lm_level;
	int64_t		 lm_time;
	char		 lm_proc[16];
	char		 lm_text[LOG_LINE_MAX];
};

enum log_event_type { EV_REGISTER, EV_UNREGISTER, EV_PUSH, EV_TOKEN_DEAD,
	EV_SAR_ERASE };

/* A privacy event: exactly the fields the policy names. */
struct log_event {			/* IMSG_LOG_EVENT, IMSG_TAIL_LEN */
	int32_t		 le_type;
	int64_t		 le_time;
	char		 le_node[NODE_MAX + 1];
	char		 le_token[TOKEN_MAX + 1];
	int32_t		 le_status;		/* APNs status, token-dead */
	char		 le_jid[JID_MAX + 1];	/* JID, or domain for pushes */
};

struct log_stats {
	uint64_t	 ls_lines[PROC_MAX];
	uint64_t	 ls_dropped[PROC_MAX];
	uint64_t	 ls_events;
	uint64_t	 ls_purged;
};

void	 log_init(int, int);		/* debug (stderr), verbose */
void	 log_procinit(const char *);
void	 log_setverbose(int);
int	 log_getverbose(void);
void	 log_setsink(struct imsgev *);	/* NULL: stderr only */
void	 log_setlocal(void (*)(const struct log_msg *),
	    void (*)(const struct log_event *));	/* logd itself */
void	 log_event(const struct log_event *);
const char *log_event_name(int);
const char *log_level_name(int);
const char *log_procname(void);
void	 log_sanitize(char *);
void	 log_msg_errno(int, const char *, int);
void	 logit(int, const char *, ...) __attribute__((format(printf, 2, 3)));
void	 log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	 fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

/* sandbox.c */
void	 sandbox_parent(void);
void	 sandbox_xmppe(void);
void	 sandbox_apnse(void);
void	 sandbox_logd(const char *);	/* the log directory, chroot-relative */
int	 sandbox_landlock_abi(void);	/* -1 when the kernel lacks it */

/* xml.c (owned by the XML work; keep to this group) */

/*
 * One incremental, namespace-aware expat parser per stream.  The stream
 * header (depth 1) is reported on its own; every depth-2 element is
 * built into a tree and handed over whole as a stanza.  DOCTYPE, entity
 * declarations, processing instructions and comments are refused
 * (restricted-xml); the named bounds are policy-violation.
 */
#define XML_NS_STREAM	"http://etherx.jabber.org/streams"
#define XML_NS_SERVER	"jabber:server"
#define XML_NS_DIALBACK	"jabber:server:dialback"
#define XML_NS_XML	"http://www.w3.org/XML/1998/namespace"	/* xml:lang */
#define XML_TREE_FACTOR	16	/* stanza tree memory per stanza byte */
#define XML_DEFER_MIN	1024	/* partial token that makes input wait */

enum xml_error {
	XMLE_NONE,
	XMLE_NOT_WELL_FORMED,	/* stream error not-well-formed */
	XMLE_RESTRICTED,	/* restricted-xml */
	XMLE_POLICY,		/* policy-violation: a bound was crossed */
	XMLE_INVALID_NS,	/* invalid-namespace (stream header) */
	XMLE_NOMEM
};

struct xml_limits {
	size_t		 xl_stanza_max;		/* bytes of one stanza */
	int		 xl_depth_max;		/* element depth */
	int		 xl_attrs_max;		/* attributes per element */
};

struct xml_attr {
	char		*xa_ns;			/* "" when none */
	char		*xa_name;
	char		*xa_value;
};

struct xml_node {
	char			*xn_ns;		/* namespace URI, "" none */
	char			*xn_name;	/* local name */
	struct xml_attr		*xn_attrs;
	int			 xn_nattrs;
	char			*xn_text;	/* concatenated text, or "" */
	size_t			 xn_textlen;
	TAILQ_HEAD(, xml_node)	 xn_children;
	TAILQ_ENTRY(xml_node)	 xn_entry;
	struct xml_node		*xn_parent;
};

struct xml_stream_cb {
	/* stream header: the root element's attributes, plus its namespace
	   declarations as attributes "xmlns" and "xmlns:prefix" */
	void	(*xc_open)(void *, const struct xml_node *);
	/* a complete stanza; the callee owns it (xml_node_free) */
	void	(*xc_stanza)(void *, struct xml_node *);
	/* </stream:stream> */
	void	(*xc_close)(void *);
	/* a fatal error: the stream error condition to send */
	void	(*xc_error)(void *, enum xml_error, const char *);
};

struct xml_stream;

struct xml_stream *xml_stream_new(const struct xml_limits *,
		    const struct xml_stream_cb *, void *);
void		 xml_stream_free(struct xml_stream *);
/* A new document on the same stream (after STARTTLS or SASL). */
int		 xml_stream_reset(struct xml_stream *);
/*
 * -1 after an error was reported through xc_error; no more feeding.
 * A callback may reset or free the stream: the rest of the buffer is
 * then dropped, and feed returns 0 after a reset, -1 after a free.
 */
int		 xml_stream_feed(struct xml_stream *, const char *, size_t);
/* Frees a whole tree; nodes below a root go with their root. */
void		 xml_node_free(struct xml_node *);
const char	*xml_node_attr(const struct xml_node *, const char *);
const char	*xml_node_attr_ns(const struct xml_node *, const char *,
		    const char *);	/* ns ("" none), name */
struct xml_node	*xml_node_child(const struct xml_node *, const char *,
		    const char *);	/* ns (NULL: any), name */
const char	*xml_error_condition(enum xml_error);	/* RFC 6120 name */

/* Writing: every attribute value and text is escaped here. */
struct xml_buf {
	char		*xb_buf;
	size_t		 xb_len;
	size_t		 xb_size;
	int		 xb_error;	/* out of memory or over xb_max */
	size_t		 xb_max;
};
void		 xml_buf_init(struct xml_buf *, size_t);
void		 xml_buf_free(struct xml_buf *);
void		 xml_buf_raw(struct xml_buf *, const char *);
void		 xml_buf_text(struct xml_buf *, const char *);	/* escaped */
/* <name a1='v1' ...: attrs are name, value pairs ending in NULL;
   NULL values are skipped; close: 0 leaves it open, 1 "/>" */
void		 xml_buf_open(struct xml_buf *, const char *, int, ...)
		    __attribute__((sentinel));
void		 xml_buf_close(struct xml_buf *, const char *);	/* </name> */
/* Re-serialise a parsed node (escaping everything). */
void		 xml_buf_node(struct xml_buf *, const struct xml_node *);

/* end xml.c */

/* s2s.c (owned by the stream work) */

/*
 * The s2s streams of xmppe on the event base: listeners, STARTTLS and
 * XEP-0368 direct TLS, SASL EXTERNAL (XEP-0178) and dialback
 * (XEP-0220, keys per XEP-0185), bidi (XEP-0288), outbound streams
 * resolved with libunbound.  Stanzas that pass the from/to checks go to
 * appserver_stanza(); appserver answers through s2s_send().
 */
#define S2S_PORT		5269
#define S2S_QUEUE_MAX		256	/* stanzas waiting per outbound stream */
#define S2S_WBUF_MAX		(2 * STANZA_MAX_LIMIT) /* unread output */
#define S2S_READ_CHUNK		16384
#define S2S_DOMAINS_MAX		64	/* authenticated domains per stream */
#define S2S_VERIFY_MAX		64	/* dialback checks pending per stream */
#define S2S_TARGETS_MAX		16	/* SRV targets tried per domain */
#define S2S_ADDRS_MAX		16	/* addresses tried per target */
#define S2S_LINGER		3	/* seconds to flush a closing stream */
#define S2S_ID_LEN		16	/* random bytes of a stream id */
#define S2S_KEY_HEX		64	/* dialback key: hex HMAC-SHA256 */
#define S2S_ALPN		"xmpp-server"

enum s2s_dir { S2S_IN, S2S_OUT };
enum s2s_auth { S2S_AUTH_NONE, S2S_AUTH_EXTERNAL, S2S_AUTH_DIALBACK };

struct s2s_peerinfo {
	uint64_t	 pi_id;
	int		 pi_dir;		/* enum s2s_dir */
	char		 pi_local[DOMAIN_MAX + 1];
	char		 pi_remote[DOMAIN_MAX + 1];	/* first authenticated */
	int		 pi_ndomains;		/* authenticated on the stream */
	char		 pi_addr[ADDR_MAX];	/* "ip port" */
	char		 pi_tls[16];		/* "" without TLS */
	int		 pi_auth;		/* enum s2s_auth */
	int		 pi_bidi;
	int64_t		 pi_age;		/* seconds */
	uint64_t	 pi_in;			/* stanzas */
	uint64_t	 pi_out;
};

struct s2s_stats {
	uint32_t	 ss_in;			/* streams open now */
	uint32_t	 ss_out;
	uint64_t	 ss_accepted;
	uint64_t	 ss_refused;		/* over a connection bound */
	uint64_t	 ss_connects;
	uint64_t	 ss_connfail;
	uint64_t	 ss_stanzas_in;
	uint64_t	 ss_stanzas_out;
	uint64_t	 ss_dropped;		/* queued stanzas lost */
};

/* before chroot: libunbound reads resolv.conf and hosts, TLS inits */
int		 s2s_init(struct event_base *);
/* on every IMSG_CONF_END; old is NULL the first time; streams stay */
int		 s2s_conf(struct mp_conf *, struct mp_conf *);
void		 s2s_shutdown(void);		/* system-shutdown to all */
int		 s2s_send(const char *, const char *, const char *, size_t);
int		 s2s_send_on(uint64_t, const char *, const char *,
		    const char *, size_t);
uint64_t	 s2s_current(void);
void		 s2s_peers(void (*)(const struct s2s_peerinfo *, void *),
		    void *);
void		 s2s_getstats(struct s2s_stats *);
const char	*s2s_auth_name(int);
/* for unit tests */
int		 s2s_dialback_key(const uint8_t *, size_t, const char *,
		    const char *, const char *, char *, size_t);
int		 s2s_cert_check(const uint8_t *, size_t, const char *,
		    size_t, const char *, char *, size_t);

/* dns.c: SRV and address lookups for s2s.c on the event base */
struct dns_srv {
	char		 dv_host[DOMAIN_MAX + 1];
	int		 dv_port;
	int		 dv_prio;
	int		 dv_weight;
	int		 dv_tls;		/* from _xmpps-server */
};
struct dns_req;
int		 dns_init(struct event_base *);	/* before chroot */
void		 dns_zones(const struct mp_conf *, int);
/* the callbacks come from the event loop; n -1: "." (no service) */
struct dns_req	*dns_lookup_srv(const char *,
		    void (*)(void *, struct dns_srv *, int), void *);
struct dns_req	*dns_lookup_addr(const char *, uint16_t,
		    void (*)(void *, struct sockaddr_storage *, int), void *);
void		 dns_cancel(struct dns_req *);

/* end s2s.c */

/* appserver.c */
struct appserver_stats {
	uint64_t	 as_stanzas;
	uint64_t	 as_publishes;
	uint64_t	 as_replies;
	uint64_t	 as_errors;
	uint64_t	 as_pending;
};
void		 appserver_stanza(const char *, const char *,
		    struct xml_node *);		/* local, remote, stanza */
void		 appserver_message(const char *, const char *,
		    const struct xml_node *);
int		 appserver_reply(struct imsg *);
void		 appserver_getstats(struct appserver_stats *);

/* sar.c */

/*
 * GDPR subject access (PROTOCOL.md section 6): the parent keeps the
 * one-time codes, in memory only; xmppe passes on what a message to
 * gdpr@DOMAIN carries; logd searches its files for a JID's event lines;
 * the parent adds the registrations those lines name.  Neither a code
 * nor a message body is ever logged.
 */
#define SAR_LOCALPART		"gdpr"	/* users write to gdpr@DOMAIN */
#define SAR_CODE_LEN		16	/* base32 characters: 80 bits */
#define SAR_CODE_MAX		64	/* a code as it travels, normalised */
#define SAR_CODE_SHOWN		(SAR_CODE_LEN + SAR_CODE_LEN / 4)
#define SAR_EXPIRY		(24 * 3600)	/* seconds a code, and then
						   a verification, is good */
#define SAR_PENDING_MAX		1024	/* JIDs with a code or verified */
#define SAR_TRIES_MAX		5	/* wrong codes before it is void */
#define SAR_SEARCH_MAX		8	/* log searches at a time */
#define SAR_LINE_MAX		8192	/* one log line, newline excluded */
#define SAR_FILES_MAX		64	/* log files one search reads */

struct ctl_sar {			/* IMSG_CTL_SAR */
	char		 sr_jid[JID_MAX + 1];
	char		 sr_to[JID_MAX + 1];		/* gdpr@DOMAIN */
	char		 sr_code[SAR_CODE_SHOWN + 1];	/* XXXX-XXXX-... */
	int64_t		 sr_expires;
};

struct ctl_sar_erased {			/* IMSG_CTL_SAR_ERASED */
	uint64_t	 se_lines;		/* log lines that named the JID */
	uint64_t	 se_erased;		/* registrations deleted */
};

struct sar_verify {			/* IMSG_SAR_VERIFY */
	char		 sv_jid[JID_MAX + 1];		/* bare sender */
	char		 sv_code[SAR_CODE_MAX + 1];	/* normalised body */
};

struct sar_search {			/* IMSG_SAR_SEARCH; peerid = search */
	char		 sh_jid[JID_MAX + 1];
};

struct sar_end {			/* IMSG_SAR_END */
	uint64_t	 sn_lines;		/* IMSG_SAR_LINE sent */
	uint32_t	 sn_files;		/* log files read */
	uint32_t	 sn_errors;		/* files that could not be read */
};

void		 sar_ctl(struct privsep *, uint32_t, struct imsg *);
int		 parent_sar_dispatch(struct privsep *, enum mp_proc,
		    struct imsg *);
/* the value of field name= of an event line, or -1 */
int		 sar_line_field(const char *, const char *, char *, size_t);

/* end sar.c */

/* registry.c (owned by the registry work; keep to this group) */

/*
 * The registration store: a transactional Berkeley DB environment in the
 * database directory, a B-tree keyed by node and a secondary index
 * token -> node kept by Berkeley DB itself.  Only the parent opens it.
 * Every function returns REG_OK or one of the codes below;
 * registry_strerror() names them and registry_errmsg() holds the detail
 * of the last database error.  Registrations, unregistrations, dead-token
 * deletions and erasures are on disk when the call returns; timestamp
 * marks wait in memory for registry_flush() (call it every loop turn or
 * from a short timer) and are written without a log flush.  An operator
 * may tune Berkeley DB with a DB_CONFIG file in the directory (e.g.
 * set_cachesize).
 */
#define REG_DB_NODES		"nodes.db"	/* primary: node -> record */
#define REG_DB_TOKENS		"tokens.db"	/* secondary: token -> node */
#define REG_LOCKFILE		"registry.lock"	/* one process at a time */
#define REG_LAYOUT_VERSION	1	/* first byte of every record */
#define REG_RECORD_MAX		512	/* largest encoded record */
#define REG_TYPE_APNS		"apns"
#define REG_TYPE_MAX		8	/* type string, NUL included */
#define REG_TOKEN_BYTES_MAX	(TOKEN_MAX / 2)
#define REG_PENDING_MAX		4096	/* buffered timestamp updates */
#define REG_NODESET_MAX		1024	/* nodes per export, erase, dead token */
#define REG_CACHE_DEFAULT	(512 * 1024 * 1024)	/* grows as used */
#define REG_PAGESIZE		8192	/* of new database files */
#define REG_LOG_BUFFER		(1024 * 1024)
#define REG_LOCKS_MAX		(8 * REG_PENDING_MAX)
#define REG_CHECKPOINT_INTERVAL	60	/* seconds between checkpoints */
#define REG_ERRMSG_MAX		512

enum reg_error {
	REG_OK,
	REG_ENODE_EMPTY,	/* node is empty */
	REG_ENODE_LONG,		/* node is longer than NODE_MAX */
	REG_ENODE_CHAR,		/* node has a byte outside [A-Za-z0-9-] */
	REG_ETOKEN_ODD,		/* token has an odd number of characters */
	REG_ETOKEN_SHORT,	/* token is shorter than TOKEN_MIN */
	REG_ETOKEN_LONG,	/* token is longer than TOKEN_MAX */
	REG_ETOKEN_HEX,		/* token has a non-hex character */
	REG_ETYPE,		/* type is not "apns" */
	REG_EAPP,		/* app is not configured */
	REG_EDOMAIN,		/* domain empty or longer than DOMAIN_MAX */
	REG_ETIME,		/* negative APNs timestamp */
	REG_ETOOMANY,		/* more than REG_NODESET_MAX nodes */
	REG_ENOTFOUND,		/* no such node (of that type) */
	REG_EWRONGDOMAIN,	/* node belongs to another domain */
	REG_EWRONGSECRET,	/* secret does not match */
	REG_EVERSION,		/* record of an unknown layout version */
	REG_ECORRUPT,		/* record does not decode */
	REG_ENOSPC,		/* disk full: nothing was changed */
	REG_ENOMEM,
	REG_EPANIC,		/* environment needs recovery: restart */
	REG_EDB,		/* other database error, see registry_errmsg */
	REG_ERR_MAX
};

struct reg_record {
	char		 rr_node[NODE_MAX + 1];
	char		 rr_app[APP_NAME_MAX];
	char		 rr_type[REG_TYPE_MAX];
	char		 rr_token[TOKEN_MAX + 1];	/* lowercase hex */
	uint8_t		 rr_secret[SECRET_LEN];
	char		 rr_domain[DOMAIN_MAX + 1];	/* registering domain */
	int64_t		 rr_registered;			/* UNIX seconds */
	int64_t		 rr_renewed;			/* 0: never */
	int64_t		 rr_last_success;		/* 0: never */
	int64_t		 rr_last_error;			/* 0: never */
};

struct registry;

/*
 * app_exists(name, arg) says whether an app is configured; the parent
 * passes a function that looks at its current configuration through arg,
 * so a reload needs no call here.  NULL accepts any name (tools, bench).
 */
struct registry	*registry_open(const char *, int (*)(const char *, void *),
		    void *, char *, size_t);
void		 registry_close(struct registry *);
int		 registry_register(struct registry *, const char *,
		    const char *, const char *, const char *, const char *,
		    int64_t, uint8_t *);	/* type app node token domain */
int		 registry_unregister(struct registry *, const char *,
		    const char *, const char *);	/* node type domain */
int		 registry_lookup(struct registry *, const char *, const char *,
		    const uint8_t *, struct reg_record *); /* node domain secret */
int		 registry_get(struct registry *, const char *,
		    struct reg_record *);
int		 registry_mark_success(struct registry *, const char *,
		    int64_t);
int		 registry_mark_error(struct registry *, const char *, int64_t);
int		 registry_flush(struct registry *);
size_t		 registry_pending(struct registry *);
int		 registry_delete_by_token(struct registry *, const char *,
		    int64_t, struct reg_record **, size_t *); /* APNs ms */
void		 registry_records_free(struct reg_record *, size_t);
int		 registry_count(struct registry *, const char *, uint64_t *);
int		 registry_list(struct registry *,
		    int (*)(const struct reg_record *, void *), void *);
int		 registry_export(struct registry *, const char **, size_t,
		    int (*)(const struct reg_record *, void *), void *);
int		 registry_erase(struct registry *, const char **, size_t,
		    size_t *);
int		 registry_checkpoint(struct registry *);
void		 registry_bulkload(struct registry *, int); /* no log flush */
int		 registry_check_node(const char *);
int		 registry_check_token(const char *);
const char	*registry_strerror(int);
const char	*registry_errmsg(struct registry *);

/* end registry.c */

/* apns.c, h2.c, apnsmsg.c, apnsdns.c, jwt.c: the APNs client */

/*
 * The APNs client of apnse: per app a pool of HTTP/2 connections over
 * libtls on the caller's event base.  Every apns_send() that returns 0
 * gets exactly one callback, also when the app is freed; never free an
 * app from inside its callback.  apns_app_new() copies what it needs
 * from the mp_app.  Call apns_dns_init() before chroot: it reads
 * resolv.conf and /etc/hosts for libunbound (hosts that are not IP
 * literals) and the system CA bundle (apps without a_ca_mem).  The
 * process must ignore SIGPIPE.
 */
#define APNS_HOST_PRODUCTION	"api.push.apple.com"
#define APNS_HOST_SANDBOX	"api.sandbox.push.apple.com"
#define APNS_PORT_DEFAULT	443
#define APNS_RETRIES_DEFAULT	2	/* extra tries on 500, 503, timeout */
#define APNS_CONNS_MAX		64	/* connections per app, hard bound */
#define APNS_PAYLOAD_MAX	4096
#define APNS_PAYLOAD_VOIP_MAX	5120
#define APNS_REASON_MAX		64
#define APNS_BODY_MAX		512	/* response body kept per stream */
#define APNS_STREAM_WINDOW	(1 << 20)
#define APNS_CONN_WINDOW	(16 << 20)
#define APNS_PING_IDLE		60	/* seconds quiet before a PING */
#define APNS_BACKOFF_MIN_MS	200	/* reconnect back-off, doubled */
#define APNS_BACKOFF_MAX_MS	60000
#define APNS_DNS_ADDRS_MAX	8
#define APNS_DNS_TTL_MIN	30	/* seconds an answer is kept, at least */
#define APNS_ERR_MAX		128
#define APNS_JWT_RENEW_DEFAULT	(50 * 60)
#define APNS_JWT_MIN_INTERVAL	(20 * 60)
#define JWT_MAX			512
#define JWT_SIG_LEN		64	/* ES256: r || s */

enum apns_kind {
	APNS_OK,
	APNS_DEAD_TOKEN,	/* 410, 400 BadDeviceToken/NotForTopic */
	APNS_THROTTLED,		/* 429 TooManyRequests */
	APNS_OPERATOR,		/* credentials, bad request, 413 ... */
	APNS_TRANSIENT,		/* 500, 503, timeout, lost: retries spent */
	APNS_QUEUE_FULL,
	APNS_KIND_MAX
};

struct apns_opts {
	int		 ao_timeout;		/* seconds per try */
	int		 ao_max_conns;
	int		 ao_queue_max;		/* requests waiting for a stream */
	int		 ao_retries;
	int		 ao_jwt_renew;		/* seconds */
	int		 ao_jwt_min_interval;	/* seconds */
};

struct apns_result {
	int		 ar_status;		/* HTTP status, 0 when none */
	char		 ar_reason[APNS_REASON_MAX];
	int64_t		 ar_timestamp;		/* ms, with 410; else 0 */
	int		 ar_kind;		/* enum apns_kind */
};

struct apns_stats {
	uint32_t	 as_conns;		/* open or opening */
	uint32_t	 as_streams;		/* requests in flight */
	uint32_t	 as_queue;		/* waiting for a stream */
	uint64_t	 as_requests;		/* accepted by apns_send */
	uint64_t	 as_sent;		/* streams opened, retries too */
	uint64_t	 as_retries;
	uint64_t	 as_kind[APNS_KIND_MAX];
	uint64_t	 as_status[APNS_NSTATUS];	/* every response */
	uint64_t	 as_connects;		/* connections made */
	uint64_t	 as_connfail;
	char		 as_lasterr[APNS_ERR_MAX];
};

struct apns_app;

void		 apns_opts_default(struct apns_opts *);
int		 apns_dns_init(struct event_base *);
struct apns_app	*apns_app_new(struct event_base *, const struct mp_app *,
		    const struct apns_opts *,
		    void (*)(uint32_t, const struct apns_result *, void *),
		    void *);
int		 apns_send(struct apns_app *, uint32_t, const char *, int);
void		 apns_app_free(struct apns_app *);
void		 apns_app_stats(struct apns_app *, struct apns_stats *);
const char	*apns_kind_name(int);
int		 apns_classify(int, const char *);
int		 apns_parse_reason(const char *, size_t, char *, size_t,
		    int64_t *);
int		 apns_payload(int, int, char *, size_t);

/* jwt.c */
struct jwt;
struct jwt	*jwt_new(const uint8_t *, size_t, const char *, const char *,
		    char *, size_t);
void		 jwt_free(struct jwt *);
int		 jwt_sign(struct jwt *, time_t);
int		 jwt_refresh(struct jwt *, time_t, int, int, int);
const char	*jwt_token(const struct jwt *);
time_t		 jwt_issued(const struct jwt *);

/* end apns.c, jwt.c */

#endif /* MONALPUSHD_H */
