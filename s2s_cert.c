/*
 * Certificates of the s2s streams (XEP-0178): the peers' CA bundle as
 * a store, a peer's chain checked against it for a domain, and whether
 * our own certificate names a domain of ours.
 */

#include <sys/types.h>
#include <sys/tree.h>

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <tls.h>

#include "monalpushd.h"
#include "s2s.h"

X509_STORE *
s2s_store_new(const uint8_t *ca, size_t calen)
{
	X509_STORE		*st;
	STACK_OF(X509_INFO)	*infos;
	X509_INFO		*xi;
	BIO			*bio;
	int			 i, n = 0;

	if (ca == NULL || calen == 0)
		return (NULL);
	if ((bio = BIO_new_mem_buf(ca, calen)) == NULL)
		return (NULL);
	infos = PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (infos == NULL)
		return (NULL);
	if ((st = X509_STORE_new()) == NULL) {
		sk_X509_INFO_pop_free(infos, X509_INFO_free);
		return (NULL);
	}
	for (i = 0; i < sk_X509_INFO_num(infos); i++) {
		xi = sk_X509_INFO_value(infos, i);
		if (xi->x509 != NULL && X509_STORE_add_cert(st, xi->x509) == 1)
			n++;
	}
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	if (n == 0) {
		X509_STORE_free(st);
		return (NULL);
	}
	return (st);
}

/*
 * XEP-0178: the chain verifies against the peers' CA bundle and the
 * leaf names the domain (RFC 6125: DNS-IDs, the CN only without them,
 * a wildcard only as the whole leftmost label).  Any purpose: Let's
 * Encrypt certificates carry only serverAuth, and an OpenSSL client
 * check would refuse them.
 */
static int
s2s_chain_check(X509_STORE *st, const uint8_t *pem, size_t len,
    const char *name, char *err, size_t errlen)
{
	STACK_OF(X509)	*chain = NULL;
	X509_STORE_CTX	*ctx = NULL;
	X509		*leaf = NULL, *x;
	BIO		*bio;
	uint32_t	 xku;
	int		 ok = 0;

	snprintf(err, errlen, "no certificate");
	if (st == NULL || pem == NULL || len == 0)
		return (0);
	if ((bio = BIO_new_mem_buf(pem, len)) == NULL ||
	    (chain = sk_X509_new_null()) == NULL)
		goto done;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (leaf == NULL)
			leaf = x;
		else if (sk_X509_push(chain, x) == 0) {
			X509_free(x);
			goto done;
		}
	}
	ERR_clear_error();
	if (leaf == NULL)
		goto done;
	if ((ctx = X509_STORE_CTX_new()) == NULL ||
	    X509_STORE_CTX_init(ctx, st, leaf, chain) != 1)
		goto done;
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY);
	if (X509_verify_cert(ctx) != 1) {
		snprintf(err, errlen, "%s", X509_verify_cert_error_string(
		    X509_STORE_CTX_get_error(ctx)));
		goto done;
	}
	xku = X509_get_extended_key_usage(leaf);
	if ((xku & (XKU_SSL_SERVER | XKU_SSL_CLIENT)) == 0) {
		snprintf(err, errlen, "neither serverAuth nor clientAuth");
		goto done;
	}
	if (X509_check_host(leaf, name, strlen(name),
	    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) != 1) {
		snprintf(err, errlen, "certificate does not name %s", name);
		goto done;
	}
	ok = 1;
 done:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	BIO_free(bio);
	return (ok);
}

int
s2s_cert_check(const uint8_t *pem, size_t len, const char *ca, size_t calen,
    const char *name, char *err, size_t errlen)
{
	X509_STORE	*st;
	int		 ok;

	if ((st = s2s_store_new((const uint8_t *)ca, calen)) == NULL) {
		snprintf(err, errlen, "no CA");
		return (0);
	}
	ok = s2s_chain_check(st, pem, len, name, err, errlen);
	X509_STORE_free(st);
	return (ok);
}

/* Our own certificate for a domain: does it name the domain? */
int
s2s_cert_fits(const uint8_t *pem, size_t len, const char *name)
{
	X509	*x;
	BIO	*bio;
	int	 ok = 0;

	if ((bio = BIO_new_mem_buf(pem, len)) == NULL)
		return (0);
	if ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		ok = X509_check_host(x, name, strlen(name),
		    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
		X509_free(x);
	}
	BIO_free(bio);
	ERR_clear_error();
	return (ok);
}

int
s2s_peer_verified(struct s2s_conn *c, const char *name)
{
	const uint8_t	*pem;
	size_t		 len;
	char		 err[S2S_ERR_MAX];

	if (c->sc_tls == NULL || s2s_store == NULL)
		return (0);
	if ((pem = tls_peer_cert_chain_pem(c->sc_tls, &len)) == NULL)
		return (0);
	if (s2s_chain_check(s2s_store, pem, len, name, err, sizeof(err)))
		return (1);
	log_info("s2s %s %s: certificate not valid for %s: %s",
	    s2s_dirname(c), c->sc_addr, name, err);
	return (0);
}
