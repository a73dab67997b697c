/*
 * Private to the s2s streams (s2s*.c, dialback.c): the connection and
 * its parts, the state shared between the files and their internal
 * prototypes.  The public API is the s2s.c group of monalpushd.h.
 */

#ifndef S2S_H
#define S2S_H

#include <sys/tree.h>

#include <netinet/in.h>

#include <openssl/x509.h>

#define NS_TLS		"urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL		"urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_STREAMS	"urn:ietf:params:xml:ns:xmpp-streams"
#define NS_STANZAS	"urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_BIDI		"urn:xmpp:bidi"
#define NS_BIDI_FEAT	"urn:xmpp:features:bidi"
#define NS_DB_FEAT	"urn:xmpp:features:dialback"

#define S2S_SECRET_LEN	32
#define S2S_DBKEY_MAX	1024	/* a dialback key a peer may send */
#define S2S_SID_MAX	128	/* a stream id a peer may send */
#define S2S_XMLBUF_MAX	4096	/* our own stream-level elements */
#define S2S_READS	8	/* reads per event, then let others run */
#define S2S_ERR_MAX	(ADDR_MAX + 512)
#define S2S_ACCEPT_PAUSE 1	/* seconds a listener rests after EMFILE */

enum s2s_step {			/* outbound */
	OUT_RESOLVE,
	OUT_ADDRS,		/* looking up a target's addresses */
	OUT_CONNECT,
	OUT_TLS,		/* handshake (direct or after STARTTLS) */
	OUT_STREAM,		/* header sent, waiting for features */
	OUT_STARTTLS,		/* waiting for proceed */
	OUT_AUTH_EXT,		/* SASL EXTERNAL sent */
	OUT_AUTH_DB,		/* db:result sent */
	OUT_READY
};

struct s2s_domain {
	TAILQ_ENTRY(s2s_domain)	 sd_entry;
	char			 sd_name[DOMAIN_MAX + 1];
	struct tls_config	*sd_cli;	/* STARTTLS */
	struct tls_config	*sd_cli_alpn;	/* direct TLS */
	int			 sd_fits;	/* cert names the domain */
};
TAILQ_HEAD(s2s_domains, s2s_domain);

/* A TLS server context lives as long as a connection made from it. */
struct s2s_server {
	struct tls		*sv_tls;
	struct tls_config	*sv_cfg;
	int			 sv_refs;
	int			 sv_current;
};

struct s2s_listener {
	TAILQ_ENTRY(s2s_listener) sl_entry;
	int			 sl_fd;
	int			 sl_tls;
	char			 sl_name[ADDR_MAX + 16];
	struct event		 sl_ev;
	struct event		 sl_pause;
};

struct s2s_authdom {
	TAILQ_ENTRY(s2s_authdom) ad_entry;
	char			 ad_remote[DOMAIN_MAX + 1];
	char			 ad_local[DOMAIN_MAX + 1];
	int			 ad_method;
};

/* A dialback check on an outbound stream for an inbound db:result. */
struct s2s_verify {
	TAILQ_ENTRY(s2s_verify)	 vf_entry;
	uint64_t		 vf_in;		/* inbound connection */
	char			 vf_orig[DOMAIN_MAX + 1];
	char			 vf_recv[DOMAIN_MAX + 1];
	char			 vf_sid[S2S_SID_MAX + 1];
	char			*vf_key;
	int			 vf_sent;
};

struct s2s_qent {
	TAILQ_ENTRY(s2s_qent)	 qe_entry;
	size_t			 qe_len;
	char			 qe_buf[];
};

struct s2s_conn {
	RB_ENTRY(s2s_conn)	 sc_node;
	TAILQ_ENTRY(s2s_conn)	 sc_entry;
	uint64_t		 sc_id;
	int			 sc_dir;
	int			 sc_fd;
	int			 sc_flags;
#define SC_DEAD		0x0001
#define SC_CLOSING	0x0002
#define SC_HDR_SENT	0x0004	/* our header of this document */
#define SC_HDR_RECV	0x0008
#define SC_TLS		0x0010	/* TLS is up */
#define SC_HANDSHAKE	0x0020
#define SC_TLS_START	0x0040	/* start TLS once the output is out */
#define SC_WANTW	0x0080
#define SC_EXT_FAILED	0x0100
#define SC_VERIFIED	0x0200	/* peer certificate valid for sc_remote */
#define SC_WEV		0x0400	/* write event added */
#define SC_DIRECT	0x0800	/* XEP-0368 */
#define SC_SASLED	0x1000	/* SASL done: no more mechanisms */
#define SC_FEATS	0x2000	/* outbound: features after TLS came */
	struct tls		*sc_tls;
	struct s2s_server	*sc_srv;
	struct event		 sc_ev_r;
	struct event		 sc_ev_w;
	struct event		 sc_ev_t;
	struct event		 sc_ev_reap;
	struct xml_stream	*sc_xml;
	char			*sc_wbuf;
	size_t			 sc_woff;
	size_t			 sc_wlen;
	size_t			 sc_wsize;
	char			 sc_local[DOMAIN_MAX + 1];
	char			 sc_remote[DOMAIN_MAX + 1];
	char			 sc_sid[S2S_SID_MAX + 1];
	char			 sc_addr[ADDR_MAX];
	char			 sc_ip[INET6_ADDRSTRLEN];
	char			 sc_tlsver[16];
	int			 sc_auth;
	int			 sc_bidi;
	TAILQ_HEAD(, s2s_authdom) sc_doms;
	int			 sc_ndoms;
	int			 sc_npending;	/* inbound db:results out */
	time_t			 sc_started;
	uint64_t		 sc_nin;
	uint64_t		 sc_nout;

	/* outbound */
	int			 sc_step;
	struct dns_req		*sc_dns;
	struct dns_srv		 sc_targets[S2S_TARGETS_MAX];
	int			 sc_ntargets;
	int			 sc_target;
	struct sockaddr_storage	 sc_addrs[S2S_ADDRS_MAX];
	int			 sc_naddrs;
	int			 sc_addri;
	char			 sc_err[S2S_ERR_MAX];
	TAILQ_HEAD(, s2s_qent)	 sc_queue;
	int			 sc_nqueue;
	TAILQ_HEAD(, s2s_verify) sc_verifies;
	int			 sc_nverify;
};

RB_HEAD(s2s_tree, s2s_conn);
RB_PROTOTYPE(s2s_tree, s2s_conn, sc_node, s2s_conn_cmp)
TAILQ_HEAD(s2s_conns, s2s_conn);

/* s2s.c */
extern struct s2s_tree		 s2s_byid;
extern struct s2s_conns		 s2s_conns;
extern struct s2s_domains	 s2s_domains;
extern struct mp_conf		*s2s_cf;
extern struct s2s_server	*s2s_srv;
extern X509_STORE		*s2s_store;
extern int			 s2s_nconns;
extern struct s2s_stats		 s2s_st;
extern uint8_t			 s2s_secret[S2S_SECRET_LEN];

const char	*s2s_dirname(const struct s2s_conn *);
void		 s2s_lower(char *);
int		 s2s_jid_domain(const char *, char *, size_t);
struct s2s_domain *s2s_ours(const char *);
int		 s2s_authed(struct s2s_conn *, const char *, const char *);
void		 s2s_timer(struct s2s_conn *, int);
struct s2s_conn	*s2s_conn_new(int, int);
void		 s2s_server_retire(struct s2s_server *);
void		 s2s_kill(struct s2s_conn *, const char *);
int		 s2s_write(struct s2s_conn *, const char *, size_t);
void		 s2s_write_xb(struct s2s_conn *, struct xml_buf *);
void		 s2s_write_str(struct s2s_conn *, const char *);
void		 s2s_close(struct s2s_conn *, const char *, const char *);
void		 s2s_send_header(struct s2s_conn *);
void		 s2s_addr_str(const struct sockaddr_storage *, char *, size_t,
		    char *, size_t);
int		 s2s_is(const struct xml_node *, const char *, const char *);

/* s2s_io.c */
void		 s2s_do(struct s2s_conn *);
void		 s2s_io_cb(int, short, void *);
int		 s2s_flush(struct s2s_conn *);

/* s2s_in.c */
void		 s2s_listener_resume(int, short, void *);
void		 s2s_accept_cb(int, short, void *);
void		 s2s_open_in(struct s2s_conn *, const struct xml_node *);
int		 s2s_authdom_add(struct s2s_conn *, const char *, const char *,
		    int);
void		 s2s_xml_in(struct s2s_conn *, struct xml_node *);

/* s2s_out.c */
struct s2s_conn	*s2s_out_get(const char *, const char *);
void		 s2s_out_next(struct s2s_conn *);
void		 s2s_out_fail(struct s2s_conn *, const char *);
void		 s2s_out_ready(struct s2s_conn *);
void		 s2s_xml_out(struct s2s_conn *, struct xml_node *);

/* dialback.c */
void		 s2s_verify_free(struct s2s_verify *);
void		 s2s_out_verifies(struct s2s_conn *);
void		 s2s_out_dialback(struct s2s_conn *);
void		 s2s_db_answer(uint64_t, const char *, const char *,
		    const char *);
void		 s2s_db_result_in(struct s2s_conn *, struct xml_node *);
void		 s2s_db_verify_req(struct s2s_conn *, struct xml_node *);
void		 s2s_db_verify_res(struct s2s_conn *, struct xml_node *,
		    const char *);
void		 s2s_db_result_res(struct s2s_conn *, struct xml_node *,
		    const char *);

/* s2s_cert.c */
X509_STORE	*s2s_store_new(const uint8_t *, size_t);
int		 s2s_cert_fits(const uint8_t *, size_t, const char *);
int		 s2s_peer_verified(struct s2s_conn *, const char *);

#endif /* S2S_H */
