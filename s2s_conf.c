/*
 * Set-up of the s2s streams: initialisation before the chroot, the
 * domains, TLS contexts, CA store and listeners of each configuration
 * (a reload leaves the streams made before it alone), and the shutdown.
 */

#include <sys/types.h>
#include <sys/tree.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tls.h>

#include "monalpushd.h"
#include "s2s.h"

static TAILQ_HEAD(, s2s_listener)	 s2s_listeners =
				    TAILQ_HEAD_INITIALIZER(s2s_listeners);
static struct event_base		*s2s_base;

int
s2s_init(struct event_base *base)
{
	s2s_base = base;
	if (tls_init() == -1) {
		log_warnx("%s: tls_init failed", __func__);
		return (-1);
	}
	arc4random_buf(s2s_secret, sizeof(s2s_secret));
	return (dns_init(base));
}

static struct tls_config *
s2s_tls_config(const struct mp_domain *d, const char *alpn)
{
	struct tls_config	*cfg;

	if ((cfg = tls_config_new()) == NULL)
		return (NULL);
	if (tls_config_set_protocols(cfg, TLS_PROTOCOL_TLSv1_2 |
	    TLS_PROTOCOL_TLSv1_3) == -1 ||
	    (alpn != NULL && tls_config_set_alpn(cfg, alpn) == -1) ||
	    (d != NULL && tls_config_set_keypair_mem(cfg, d->d_cert_mem,
	    d->d_cert_len, d->d_key_mem, d->d_key_len) == -1)) {
		log_warnx("%s: %s", __func__, tls_config_error(cfg));
		tls_config_free(cfg);
		return (NULL);
	}
	return (cfg);
}

static void
s2s_domains_free(struct s2s_domains *head)
{
	struct s2s_domain	*sd;

	while ((sd = TAILQ_FIRST(head)) != NULL) {
		TAILQ_REMOVE(head, sd, sd_entry);
		tls_config_free(sd->sd_cli);
		tls_config_free(sd->sd_cli_alpn);
		free(sd);
	}
}

static struct s2s_server *
s2s_server_new(struct mp_conf *conf)
{
	struct s2s_server	*sv;
	struct mp_domain	*d;

	if ((d = TAILQ_FIRST(&conf->c_domains)) == NULL)
		return (NULL);
	if ((sv = calloc(1, sizeof(*sv))) == NULL)
		return (NULL);
	if ((sv->sv_cfg = s2s_tls_config(d, S2S_ALPN)) == NULL)
		goto fail;
	while ((d = TAILQ_NEXT(d, d_entry)) != NULL)
		if (tls_config_add_keypair_mem(sv->sv_cfg, d->d_cert_mem,
		    d->d_cert_len, d->d_key_mem, d->d_key_len) == -1) {
			log_warnx("%s: %s: %s", __func__, d->d_name,
			    tls_config_error(sv->sv_cfg));
			goto fail;
		}
	/* We check the peer's chain ourselves: see s2s_chain_check. */
	if (conf->c_ca_len > 0) {
		tls_config_verify_client_optional(sv->sv_cfg);
		tls_config_insecure_noverifycert(sv->sv_cfg);
	}
	if ((sv->sv_tls = tls_server()) == NULL ||
	    tls_configure(sv->sv_tls, sv->sv_cfg) == -1) {
		log_warnx("%s: %s", __func__, sv->sv_tls ?
		    tls_error(sv->sv_tls) : "tls_server");
		goto fail;
	}
	sv->sv_current = 1;
	return (sv);
 fail:
	tls_free(sv->sv_tls);
	tls_config_free(sv->sv_cfg);
	free(sv);
	return (NULL);
}

int
s2s_conf(struct mp_conf *old, struct mp_conf *conf)
{
	struct s2s_domains	 doms = TAILQ_HEAD_INITIALIZER(doms);
	struct s2s_domain	*sd;
	struct s2s_listener	*sl;
	struct s2s_server	*sv = NULL;
	struct mp_domain	*d;
	struct mp_listen	*l;
	X509_STORE		*st = NULL;
	int			 rv = -1;

	if (old == NULL || memcmp(old->c_dns_zones, conf->c_dns_zones,
	    sizeof(conf->c_dns_zones)) != 0)
		dns_zones(conf, old == NULL);
	TAILQ_FOREACH(d, &conf->c_domains, d_entry) {
		if ((sd = calloc(1, sizeof(*sd))) == NULL)
			goto fail;
		TAILQ_INSERT_TAIL(&doms, sd, sd_entry);
		strlcpy(sd->sd_name, d->d_name, sizeof(sd->sd_name));
		s2s_lower(sd->sd_name);
		if ((sd->sd_cli = s2s_tls_config(d, NULL)) == NULL ||
		    (sd->sd_cli_alpn = s2s_tls_config(d, S2S_ALPN)) == NULL)
			goto fail;
		tls_config_insecure_noverifycert(sd->sd_cli);
		tls_config_insecure_noverifyname(sd->sd_cli);
		tls_config_insecure_noverifycert(sd->sd_cli_alpn);
		tls_config_insecure_noverifyname(sd->sd_cli_alpn);
		sd->sd_fits = s2s_cert_fits(d->d_cert_mem, d->d_cert_len,
		    d->d_name);
		if (!sd->sd_fits)
			log_warnx("%s: the certificate of %s does not name "
			    "it: no SASL EXTERNAL", __func__, d->d_name);
	}
	if (!TAILQ_EMPTY(&conf->c_domains) &&
	    (sv = s2s_server_new(conf)) == NULL)
		goto fail;
	if (conf->c_ca_len > 0 &&
	    (st = s2s_store_new(conf->c_ca_mem, conf->c_ca_len)) == NULL) {
		log_warnx("%s: no certificate in the CA bundle", __func__);
		goto fail;
	}

	/* Commit: old streams keep what they were made with. */
	s2s_domains_free(&s2s_domains);
	TAILQ_CONCAT(&s2s_domains, &doms, sd_entry);
	s2s_server_retire(s2s_srv);
	s2s_srv = sv;
	X509_STORE_free(s2s_store);
	s2s_store = st;
	rv = 0;
 adopt:
	/* The limits, routes and listeners of the new one in any case. */
	s2s_cf = conf;

	while ((sl = TAILQ_FIRST(&s2s_listeners)) != NULL) {
		TAILQ_REMOVE(&s2s_listeners, sl, sl_entry);
		event_del(&sl->sl_ev);
		evtimer_del(&sl->sl_pause);
		free(sl);
	}
	TAILQ_FOREACH(l, &conf->c_listens, l_entry) {
		if (l->l_fd == -1)
			continue;
		if ((sl = calloc(1, sizeof(*sl))) == NULL)
			fatal("%s", __func__);
		sl->sl_fd = l->l_fd;
		sl->sl_tls = l->l_tls;
		snprintf(sl->sl_name, sizeof(sl->sl_name), "%s port %u",
		    l->l_addr, l->l_port);
		event_set(&sl->sl_ev, l->l_fd, EV_READ | EV_PERSIST,
		    s2s_accept_cb, sl);
		evtimer_set(&sl->sl_pause, s2s_listener_resume, sl);
		event_add(&sl->sl_ev, NULL);
		TAILQ_INSERT_TAIL(&s2s_listeners, sl, sl_entry);
		log_debug("s2s: listening on %s%s", sl->sl_name,
		    sl->sl_tls ? " (direct TLS)" : "");
	}
	(void)old;
	return (rv);
 fail:
	s2s_domains_free(&doms);
	s2s_server_retire(sv);
	X509_STORE_free(st);
	if (s2s_cf == NULL) {
		log_warnx("%s: configuration not applied", __func__);
		return (-1);
	}
	log_warnx("%s: TLS material not applied: the previous stays",
	    __func__);
	goto adopt;
}

void
s2s_shutdown(void)
{
	struct s2s_conn		*c;
	struct s2s_listener	*sl;

	TAILQ_FOREACH(sl, &s2s_listeners, sl_entry)
		event_del(&sl->sl_ev);
	TAILQ_FOREACH(c, &s2s_conns, sc_entry) {
		if ((c->sc_flags & (SC_DEAD | SC_CLOSING)) || c->sc_fd == -1 ||
		    (c->sc_flags & SC_HANDSHAKE) ||
		    (c->sc_tls == NULL && (c->sc_flags & SC_DIRECT)) ||
		    (c->sc_dir == S2S_OUT && !(c->sc_flags & SC_HDR_SENT)))
			continue;
		s2s_close(c, "system-shutdown", "shutting down");
		(void)s2s_flush(c);
		if (c->sc_tls != NULL && !(c->sc_flags & SC_DEAD))
			(void)tls_close(c->sc_tls);
	}
}
