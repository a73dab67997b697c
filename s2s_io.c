/*
 * Socket and TLS I/O of the s2s streams: STARTTLS and direct TLS
 * handshakes in both directions, reading into the XML parser, flushing
 * the write buffer, and the event callback that drives it all.
 */

#include <sys/types.h>
#include <sys/tree.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <tls.h>

#include "monalpushd.h"
#include "s2s.h"

static void
s2s_tls_done(struct s2s_conn *c)
{
	const char	*v;

	c->sc_flags &= ~SC_HANDSHAKE;
	c->sc_flags |= SC_TLS;
	if ((v = tls_conn_version(c->sc_tls)) != NULL)
		strlcpy(c->sc_tlsver, v, sizeof(c->sc_tlsver));
	if (c->sc_dir == S2S_IN) {
		log_debug("s2s in %s: %s%s%s", c->sc_addr, c->sc_tlsver,
		    tls_conn_servername(c->sc_tls) ? ", SNI " : "",
		    tls_conn_servername(c->sc_tls) ?
		    tls_conn_servername(c->sc_tls) : "");
		return;
	}
	if (s2s_peer_verified(c, c->sc_remote))
		c->sc_flags |= SC_VERIFIED;
	log_debug("s2s out %s -> %s: %s, certificate %s", c->sc_local,
	    c->sc_remote, c->sc_tlsver,
	    (c->sc_flags & SC_VERIFIED) ? "verified" : "not verified");
	c->sc_step = OUT_STREAM;
	s2s_send_header(c);
}

static int
s2s_tls_start(struct s2s_conn *c)
{
	struct s2s_domain	*sd;
	struct tls		*ctx;

	c->sc_flags &= ~SC_TLS_START;
	if (c->sc_dir == S2S_IN) {
		if (s2s_srv == NULL ||
		    tls_accept_socket(s2s_srv->sv_tls, &c->sc_tls,
		    c->sc_fd) == -1) {
			s2s_kill(c, "TLS accept failed");
			return (-1);
		}
		c->sc_srv = s2s_srv;
		s2s_srv->sv_refs++;
	} else {
		if ((sd = s2s_ours(c->sc_local)) == NULL ||
		    (ctx = tls_client()) == NULL) {
			s2s_out_fail(c, "no TLS client");
			return (-1);
		}
		if (tls_configure(ctx, (c->sc_flags & SC_DIRECT) ?
		    sd->sd_cli_alpn : sd->sd_cli) == -1 ||
		    tls_connect_socket(ctx, c->sc_fd, c->sc_remote) == -1) {
			snprintf(c->sc_err, sizeof(c->sc_err), "TLS: %s",
			    tls_error(ctx));
			tls_free(ctx);
			s2s_out_fail(c, c->sc_err);
			return (-1);
		}
		c->sc_tls = ctx;
	}
	c->sc_flags |= SC_HANDSHAKE;
	return (0);
}

/* Returns -1 when the connection is gone or waits for the socket. */
static int
s2s_handshake(struct s2s_conn *c)
{
	int	 r;

	if ((r = tls_handshake(c->sc_tls)) == TLS_WANT_POLLOUT) {
		c->sc_flags |= SC_WANTW;
		return (-1);
	}
	if (r == TLS_WANT_POLLIN)
		return (-1);
	if (r == -1) {
		if (c->sc_dir == S2S_OUT && c->sc_step != OUT_READY) {
			snprintf(c->sc_err, sizeof(c->sc_err),
			    "%s: TLS handshake: %s", c->sc_addr,
			    tls_error(c->sc_tls));
			s2s_out_next(c);
		} else {
			log_info("s2s in %s: TLS handshake: %s", c->sc_addr,
			    tls_error(c->sc_tls));
			s2s_kill(c, NULL);
		}
		return (-1);
	}
	s2s_tls_done(c);
	return (0);
}

static void
s2s_read(struct s2s_conn *c)
{
	char	 buf[S2S_READ_CHUNK];
	ssize_t	 n;
	int	 i;

	for (i = 0; i < S2S_READS; i++) {
		if (c->sc_flags & (SC_DEAD | SC_TLS_START | SC_HANDSHAKE))
			return;
		if (c->sc_tls != NULL) {
			n = tls_read(c->sc_tls, buf, sizeof(buf));
			if (n == TLS_WANT_POLLIN)
				return;
			if (n == TLS_WANT_POLLOUT) {
				c->sc_flags |= SC_WANTW;
				return;
			}
			if (n == -1) {
				log_info("s2s %s %s: TLS read: %s",
				    s2s_dirname(c), c->sc_addr,
				    tls_error(c->sc_tls));
				s2s_kill(c, NULL);
				return;
			}
		} else if ((n = read(c->sc_fd, buf, sizeof(buf))) == -1) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			s2s_kill(c, strerror(errno));
			return;
		}
		if (n == 0) {
			s2s_kill(c, (c->sc_flags & SC_CLOSING) ? NULL :
			    "connection closed by the peer");
			return;
		}
		if (c->sc_flags & SC_CLOSING)
			continue;
		(void)xml_stream_feed(c->sc_xml, buf, n);
	}
	/* libtls may hold decrypted data the socket no longer shows */
	if (!(c->sc_flags & SC_DEAD))
		event_active(&c->sc_ev_r, EV_READ, 1);
}

int
s2s_flush(struct s2s_conn *c)
{
	ssize_t	 n;

	while (c->sc_woff < c->sc_wlen) {
		if (c->sc_tls != NULL) {
			n = tls_write(c->sc_tls, c->sc_wbuf + c->sc_woff,
			    c->sc_wlen - c->sc_woff);
			if (n == TLS_WANT_POLLOUT) {
				c->sc_flags |= SC_WANTW;
				return (0);
			}
			if (n == TLS_WANT_POLLIN)
				return (0);
			if (n == -1) {
				log_info("s2s %s %s: TLS write: %s",
				    s2s_dirname(c), c->sc_addr,
				    tls_error(c->sc_tls));
				s2s_kill(c, NULL);
				return (-1);
			}
		} else if ((n = write(c->sc_fd, c->sc_wbuf + c->sc_woff,
		    c->sc_wlen - c->sc_woff)) == -1) {
			if (errno == EAGAIN || errno == EINTR) {
				c->sc_flags |= SC_WANTW;
				return (0);
			}
			s2s_kill(c, strerror(errno));
			return (-1);
		}
		c->sc_woff += n;
	}
	c->sc_woff = c->sc_wlen = 0;
	return (0);
}

void
s2s_do(struct s2s_conn *c)
{
	int	 r;

	c->sc_flags &= ~SC_WANTW;
	for (;;) {
		if (c->sc_flags & SC_DEAD)
			return;
		if ((c->sc_flags & SC_TLS_START) && c->sc_woff == c->sc_wlen) {
			if (s2s_tls_start(c) == -1)
				return;
		}
		if (c->sc_flags & SC_HANDSHAKE) {
			if (s2s_handshake(c) == -1)
				break;
			continue;
		}
		if (c->sc_tls == NULL && (c->sc_flags & SC_TLS_START) == 0 &&
		    (c->sc_flags & SC_DIRECT) && c->sc_dir == S2S_IN)
			break;
		s2s_read(c);
		if (c->sc_flags & SC_DEAD)
			return;
		if (s2s_flush(c) == -1)
			return;
		if ((c->sc_flags & SC_TLS_START) && c->sc_woff == c->sc_wlen)
			continue;
		break;
	}
	if ((c->sc_flags & SC_CLOSING) && c->sc_woff == c->sc_wlen &&
	    !(c->sc_flags & SC_HANDSHAKE)) {
		if (c->sc_tls != NULL) {
			r = tls_close(c->sc_tls);
			if (r == TLS_WANT_POLLOUT)
				c->sc_flags |= SC_WANTW;
			if (r == TLS_WANT_POLLIN || r == TLS_WANT_POLLOUT)
				goto events;
		}
		s2s_kill(c, NULL);
		return;
	}
 events:
	if ((c->sc_flags & SC_WANTW) && !(c->sc_flags & SC_WEV)) {
		c->sc_flags |= SC_WEV;
		event_add(&c->sc_ev_w, NULL);
	}
}

void
s2s_io_cb(int fd, short ev, void *arg)
{
	struct s2s_conn	*c = arg;

	if (ev & EV_WRITE)
		c->sc_flags &= ~SC_WEV;
	if (c->sc_flags & SC_DEAD)
		return;
	s2s_do(c);
}
