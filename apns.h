/*
 * Private to the APNs client (apns.c, h2.c, apnsdns.c): the app, its
 * connections and requests, and the calls between the files.  The
 * public API is the apns.c group of monalpushd.h.  Include it after
 * <sys/tree.h>, <netinet/in.h>, <nghttp2/nghttp2.h>, <tls.h> and
 * "monalpushd.h".
 */

#ifndef APNS_H
#define APNS_H

enum conn_state { CONN_CONNECTING, CONN_HANDSHAKE, CONN_UP };
enum req_end { END_RESPONSE, END_REFUSED, END_LOST };

struct apns_conn;

struct apns_req {
	RB_ENTRY(apns_req)	 r_node;		/* in c_streams */
	TAILQ_ENTRY(apns_req)	 r_entry;		/* in a_queue */
	struct apns_app		*r_app;
	struct apns_conn	*r_conn;		/* NULL while queued */
	const void		*r_avoid;	/* conn that failed it */
	struct event		 r_timer;
	uint32_t		 r_id;
	int32_t			 r_stream;
	int			 r_type;
	int			 r_tries;
	int			 r_orphan;
	int			 r_status;
	int			 r_laststatus;
	size_t			 r_sent;	/* payload bytes sent */
	size_t			 r_bodylen;
	char			 r_token[TOKEN_MAX + 1];
	char			 r_body[APNS_BODY_MAX];
};

RB_HEAD(stream_tree, apns_req);

struct apns_conn {
	TAILQ_ENTRY(apns_conn)	 c_entry;
	struct apns_app		*c_app;
	int			 c_state;
	int			 c_fd;
	struct tls		*c_tls;
	nghttp2_session		*c_h2;
	struct event		 c_rev;
	struct event		 c_wev;
	struct event		 c_flushev;
	struct event		 c_tick;
	struct stream_tree	 c_streams;
	struct apns_req		*c_last;	/* lookup cache */
	uint32_t		 c_nstreams;	/* orphans included */
	uint32_t		 c_nlive;
	int			 c_settings;
	int			 c_goaway;
	int			 c_authok;
	int			 c_pinged;
	int64_t			 c_started;	/* ms, monotonic */
	int64_t			 c_lastrecv;
	int64_t			 c_pingsent;
	uint8_t			*c_wbuf;
	size_t			 c_wlen;
	size_t			 c_woff;
	const uint8_t		*c_pend;	/* nghttp2's, unsent */
	size_t			 c_pendlen;
	char			 c_addr[INET6_ADDRSTRLEN + 8];
};

/* Outlives its app when that is freed mid-query: libunbound calls back. */
struct apns_dnsq {
	struct apns_app		*q_app;
	int			 q_pending;
};

struct apns_app {
	struct event_base	*a_base;
	struct apns_opts	 a_opts;
	void			(*a_cb)(uint32_t,
				    const struct apns_result *, void *);
	void			*a_cbarg;
	char			 a_name[APP_NAME_MAX];
	char			 a_host[DOMAIN_MAX + 1];
	char			 a_authority[DOMAIN_MAX + 10];
	uint16_t		 a_port;
	int			 a_auth;
	char			 a_topic[TOPIC_MAX];
	char			 a_topic_voip[TOPIC_MAX + 5];
	char			 a_collapse[COLLAPSE_MAX + 1];
	int64_t			 a_ttl;
	struct tls_config	*a_tls;
	struct jwt		*a_jwt;
	char			 a_bearer[JWT_MAX + 8];
	char			*a_payload[PRIO_VOIP + 1];
	size_t			 a_paylen[PRIO_VOIP + 1];
	TAILQ_HEAD(, apns_req)	 a_queue;
	uint32_t		 a_nqueue;
	TAILQ_HEAD(, apns_conn)	 a_conns;
	int			 a_nconns;		/* not draining */
	struct event		 a_dispatchev;
	struct event		 a_retryev;
	int			 a_fails;
	int64_t			 a_nextconn;	/* ms, back-off */
	const struct timeval	*a_timeout;	/* common timeout */
	struct sockaddr_storage	 a_addrs[APNS_DNS_ADDRS_MAX];
	int			 a_naddrs;
	int			 a_addri;
	int			 a_literal;
	int64_t			 a_dnsexpire;		/* ms */
	struct apns_dnsq	*a_dnsq;		/* NULL when idle */
	int64_t			 a_dnsttl;
	int			 a_freeing;
	struct apns_stats	 a_stats;
};
RB_PROTOTYPE(stream_tree, apns_req, r_node, stream_cmp)

/* apns.c */
int64_t		 apns_mono_ms(void);
void		 apns_kick(struct apns_app *);
void		 apns_req_retry(struct apns_req *, int, const char *);
void		 apns_req_end(struct apns_conn *, struct apns_req *, int);

/* h2.c */
int		 h2_callbacks(void);
void		 h2_open(struct apns_app *);
void		 h2_close(struct apns_conn *, const char *);
void		 h2_kick(struct apns_conn *);
void		 h2_cancel(struct apns_conn *, int32_t);
uint32_t	 h2_limit(struct apns_conn *);
int		 h2_usable(struct apns_conn *);
void		 h2_stream_remove(struct apns_conn *, struct apns_req *);
ssize_t		 h2_read_payload(nghttp2_session *, int32_t, uint8_t *, size_t,
		    uint32_t *, nghttp2_data_source *, void *);
void		 h2_connfail(struct apns_app *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
void		 h2_retry_later(struct apns_app *);

/* apnsdns.c */
extern uint8_t	*apns_sysca;		/* read early */
extern size_t	 apns_syscalen;

void		 apns_dns_start(struct apns_app *);
int		 apns_dns_literal(struct apns_app *);

#endif /* APNS_H */
