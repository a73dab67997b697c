/*
 * Server dialback (XEP-0220) with keys per XEP-0185, in its three
 * roles: originating (our db:result on an outbound stream), receiving
 * (an inbound db:result checked with a db:verify on an outbound stream
 * to the originating domain) and authoritative (a db:verify about a key
 * of ours).
 */

#include <sys/types.h>
#include <sys/tree.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "monalpushd.h"
#include "s2s.h"

int
s2s_dialback_key(const uint8_t *secret, size_t secretlen, const char *recv,
    const char *orig, const char *sid, char *out, size_t outlen)
{
	uint8_t		 h[SHA256_DIGEST_LENGTH], mac[EVP_MAX_MD_SIZE];
	char		 hex[SHA256_DIGEST_LENGTH * 2 + 1], *msg;
	unsigned int	 maclen = 0;
	size_t		 i;
	int		 len;

	if (outlen < S2S_KEY_HEX + 1)
		return (-1);
	SHA256(secret, secretlen, h);
	for (i = 0; i < sizeof(h); i++)
		snprintf(hex + i * 2, 3, "%02x", h[i]);
	if ((len = asprintf(&msg, "%s %s %s", recv, orig, sid)) == -1)
		return (-1);
	if (HMAC(EVP_sha256(), hex, sizeof(hex) - 1, (u_char *)msg, len,
	    mac, &maclen) == NULL || maclen != SHA256_DIGEST_LENGTH) {
		free(msg);
		return (-1);
	}
	free(msg);
	for (i = 0; i < maclen; i++)
		snprintf(out + i * 2, 3, "%02x", mac[i]);
	explicit_bzero(hex, sizeof(hex));
	explicit_bzero(h, sizeof(h));
	return (0);
}

void
s2s_verify_free(struct s2s_verify *vf)
{
	if (vf->vf_key != NULL)
		freezero(vf->vf_key, strlen(vf->vf_key));
	free(vf);
}

void
s2s_out_verifies(struct s2s_conn *c)
{
	struct s2s_verify	*vf;
	struct xml_buf		 xb;

	if (!(c->sc_flags & SC_FEATS))
		return;
	TAILQ_FOREACH(vf, &c->sc_verifies, vf_entry) {
		if (vf->vf_sent)
			continue;
		vf->vf_sent = 1;
		xml_buf_init(&xb, S2S_XMLBUF_MAX + S2S_DBKEY_MAX);
		xml_buf_open(&xb, "db:verify", 0, "from", vf->vf_recv,
		    "to", vf->vf_orig, "id", vf->vf_sid, (char *)NULL);
		xml_buf_text(&xb, vf->vf_key);
		xml_buf_close(&xb, "db:verify");
		s2s_write_xb(c, &xb);
	}
}

void
s2s_out_dialback(struct s2s_conn *c)
{
	struct xml_buf		 xb;
	char			 key[S2S_KEY_HEX + 1];

	if (c->sc_sid[0] == '\0') {
		s2s_close(c, NULL, "no stream id for dialback");
		return;
	}
	if (s2s_dialback_key(s2s_secret, sizeof(s2s_secret), c->sc_remote,
	    c->sc_local, c->sc_sid, key, sizeof(key)) == -1) {
		s2s_close(c, NULL, "cannot make a dialback key");
		return;
	}
	xml_buf_init(&xb, S2S_XMLBUF_MAX);
	xml_buf_open(&xb, "db:result", 0, "from", c->sc_local,
	    "to", c->sc_remote, (char *)NULL);
	xml_buf_text(&xb, key);
	xml_buf_close(&xb, "db:result");
	explicit_bzero(key, sizeof(key));
	s2s_write_xb(c, &xb);
	c->sc_step = OUT_AUTH_DB;
}

/* Answer an inbound db:result: valid, invalid or an error. */
void
s2s_db_answer(uint64_t id, const char *orig, const char *recv,
    const char *type)
{
	struct s2s_conn	 key, *c;
	struct xml_buf	 xb;

	key.sc_id = id;
	if ((c = RB_FIND(s2s_tree, &s2s_byid, &key)) == NULL ||
	    (c->sc_flags & (SC_DEAD | SC_CLOSING)))
		return;
	if (c->sc_npending > 0)
		c->sc_npending--;
	xml_buf_init(&xb, S2S_XMLBUF_MAX);
	if (strcmp(type, "valid") == 0 &&
	    s2s_authdom_add(c, orig, recv, S2S_AUTH_DIALBACK) == -1)
		type = "invalid";
	if (strcmp(type, "error") == 0) {
		xml_buf_open(&xb, "db:result", 0, "from", recv, "to", orig,
		    "type", "error", (char *)NULL);
		xml_buf_raw(&xb, "<error type='cancel'>");
		xml_buf_open(&xb, "remote-server-not-found", 1, "xmlns",
		    NS_STANZAS, (char *)NULL);
		xml_buf_raw(&xb, "</error></db:result>");
		log_info("s2s in %s: dialback for %s: authoritative server "
		    "not reached", c->sc_addr, orig);
	} else {
		xml_buf_open(&xb, "db:result", 1, "from", recv, "to", orig,
		    "type", type, (char *)NULL);
		if (strcmp(type, "valid") != 0)
			log_info("s2s in %s: dialback for %s: %s", c->sc_addr,
			    orig, type);
	}
	s2s_write_xb(c, &xb);
	if (c->sc_ndoms > 0 && c->sc_npending == 0)
		s2s_timer(c, s2s_cf->c_idle_timeout);
}

static void
s2s_db_error(struct s2s_conn *c, const char *elem, const char *from,
    const char *to, const char *id, const char *etype, const char *cond)
{
	struct xml_buf	 xb;

	xml_buf_init(&xb, S2S_XMLBUF_MAX);
	xml_buf_open(&xb, elem, 0, "from", from, "to", to, "id", id,
	    "type", "error", (char *)NULL);
	xml_buf_open(&xb, "error", 0, "type", etype, (char *)NULL);
	xml_buf_open(&xb, cond, 1, "xmlns", NS_STANZAS, (char *)NULL);
	xml_buf_close(&xb, "error");
	xml_buf_close(&xb, elem);
	s2s_write_xb(c, &xb);
}

/* Receiving role: check an originating domain's key with its server. */
void
s2s_db_result_in(struct s2s_conn *c, struct xml_node *n)
{
	const char		*from = xml_node_attr(n, "from");
	const char		*to = xml_node_attr(n, "to");
	char			 orig[DOMAIN_MAX + 1], recv[DOMAIN_MAX + 1];
	struct s2s_domain	*sd;
	struct s2s_conn		*out;
	struct s2s_verify	*vf;

	if (from == NULL || to == NULL ||
	    s2s_jid_domain(from, orig, sizeof(orig)) == -1 ||
	    strchr(from, '@') != NULL || strchr(from, '/') != NULL ||
	    s2s_jid_domain(to, recv, sizeof(recv)) == -1) {
		s2s_db_error(c, "db:result", to, from, NULL, "modify",
		    "bad-request");
		return;
	}
	if ((sd = s2s_ours(recv)) == NULL) {
		s2s_db_error(c, "db:result", to, from, NULL, "cancel",
		    "item-not-found");
		return;
	}
	if (s2s_authed(c, orig, sd->sd_name)) {
		s2s_db_answer(c->sc_id, orig, sd->sd_name, "valid");
		return;
	}
	if (n->xn_textlen == 0 || n->xn_textlen > S2S_DBKEY_MAX ||
	    c->sc_sid[0] == '\0') {
		s2s_db_error(c, "db:result", sd->sd_name, orig, NULL,
		    "modify", "bad-request");
		return;
	}
	if (c->sc_npending >= S2S_VERIFY_MAX ||
	    c->sc_ndoms >= S2S_DOMAINS_MAX) {
		s2s_db_error(c, "db:result", sd->sd_name, orig, NULL, "wait",
		    "resource-constraint");
		return;
	}
	if ((out = s2s_out_get(sd->sd_name, orig)) == NULL ||
	    (out->sc_flags & SC_DEAD) || out->sc_nverify >= S2S_VERIFY_MAX ||
	    (vf = calloc(1, sizeof(*vf))) == NULL) {
		s2s_db_error(c, "db:result", sd->sd_name, orig, NULL,
		    "cancel", "remote-server-not-found");
		return;
	}
	if ((vf->vf_key = strdup(n->xn_text)) == NULL) {
		free(vf);
		s2s_db_error(c, "db:result", sd->sd_name, orig, NULL, "wait",
		    "resource-constraint");
		return;
	}
	vf->vf_in = c->sc_id;
	strlcpy(vf->vf_orig, orig, sizeof(vf->vf_orig));
	strlcpy(vf->vf_recv, sd->sd_name, sizeof(vf->vf_recv));
	strlcpy(vf->vf_sid, c->sc_sid, sizeof(vf->vf_sid));
	TAILQ_INSERT_TAIL(&out->sc_verifies, vf, vf_entry);
	out->sc_nverify++;
	c->sc_npending++;
	log_debug("s2s in %s: dialback for %s: asking its server",
	    c->sc_addr, orig);
	s2s_out_verifies(out);
}

/* Authoritative role: was this key ours? */
void
s2s_db_verify_req(struct s2s_conn *c, struct xml_node *n)
{
	const char		*from = xml_node_attr(n, "from");
	const char		*to = xml_node_attr(n, "to");
	const char		*id = xml_node_attr(n, "id");
	char			 recv[DOMAIN_MAX + 1], orig[DOMAIN_MAX + 1];
	char			 key[S2S_KEY_HEX + 1];
	struct s2s_domain	*sd;
	struct xml_buf		 xb;
	int			 valid;

	if (from == NULL || to == NULL || id == NULL ||
	    strlen(id) > S2S_SID_MAX ||
	    s2s_jid_domain(from, recv, sizeof(recv)) == -1 ||
	    s2s_jid_domain(to, orig, sizeof(orig)) == -1) {
		s2s_db_error(c, "db:verify", to, from, id, "modify",
		    "bad-request");
		return;
	}
	if ((sd = s2s_ours(orig)) == NULL) {
		s2s_db_error(c, "db:verify", to, from, id, "cancel",
		    "item-not-found");
		return;
	}
	if (s2s_dialback_key(s2s_secret, sizeof(s2s_secret), recv,
	    sd->sd_name, id, key, sizeof(key)) == -1) {
		s2s_db_error(c, "db:verify", to, from, id, "wait",
		    "internal-server-error");
		return;
	}
	valid = n->xn_textlen == S2S_KEY_HEX &&
	    CRYPTO_memcmp(key, n->xn_text, S2S_KEY_HEX) == 0;
	explicit_bzero(key, sizeof(key));
	log_info("s2s %s %s: dialback verify from %s for %s: %s",
	    s2s_dirname(c), c->sc_addr, recv, sd->sd_name,
	    valid ? "valid" : "invalid");
	xml_buf_init(&xb, S2S_XMLBUF_MAX);
	xml_buf_open(&xb, "db:verify", 1, "from", sd->sd_name, "to", recv,
	    "id", id, "type", valid ? "valid" : "invalid", (char *)NULL);
	s2s_write_xb(c, &xb);
}

/* The answer to one of our db:verify requests. */
void
s2s_db_verify_res(struct s2s_conn *c, struct xml_node *n, const char *type)
{
	const char		*from = xml_node_attr(n, "from");
	const char		*to = xml_node_attr(n, "to");
	const char		*id = xml_node_attr(n, "id");
	struct s2s_verify	*vf;

	if (from == NULL || to == NULL || id == NULL)
		return;
	TAILQ_FOREACH(vf, &c->sc_verifies, vf_entry)
		if (vf->vf_sent && strcasecmp(vf->vf_orig, from) == 0 &&
		    strcasecmp(vf->vf_recv, to) == 0 &&
		    strcmp(vf->vf_sid, id) == 0)
			break;
	if (vf == NULL) {
		log_debug("s2s out %s -> %s: unexpected db:verify answer",
		    c->sc_local, c->sc_remote);
		return;
	}
	TAILQ_REMOVE(&c->sc_verifies, vf, vf_entry);
	c->sc_nverify--;
	if (strcmp(type, "valid") != 0 && strcmp(type, "invalid") != 0)
		type = "error";
	s2s_db_answer(vf->vf_in, vf->vf_orig, vf->vf_recv, type);
	s2s_verify_free(vf);
}

/* The answer to our own db:result on an outbound stream. */
void
s2s_db_result_res(struct s2s_conn *c, struct xml_node *n, const char *type)
{
	if (c->sc_step != OUT_AUTH_DB)
		return;
	if (strcmp(type, "valid") == 0) {
		c->sc_auth = S2S_AUTH_DIALBACK;
		s2s_out_ready(c);
	} else
		s2s_close(c, NULL, strcmp(type, "invalid") == 0 ?
		    "dialback refused" : "dialback error");
}
