/*
 * APNs provider tokens: ES256 JSON Web Tokens (RFC 7515, RFC 7518 3.4).
 * One token per app, shared by its connections.  Apple refuses tokens
 * older than an hour and answers TooManyProviderTokenUpdates when they
 * change more often than every 20 minutes, so renewal follows two clocks
 * passed in by the caller (tests inject their own).
 */

#include <sys/types.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "monalpushd.h"

struct jwt {
	EVP_PKEY	*j_key;
	char		 j_kid[KEYID_MAX];
	char		 j_team[KEYID_MAX];
	char		 j_token[JWT_MAX];
	time_t		 j_iat;		/* 0: no token yet */
};

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Base64url without padding; -1 when dst is too small. */
static int
jwt_b64url(char *dst, size_t dstlen, const uint8_t *src, size_t len)
{
	size_t		 i, o = 0;
	uint32_t	 v;

	if (dstlen < (len * 4 + 2) / 3 + 1)
		return (-1);
	for (i = 0; i + 2 < len; i += 3) {
		v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 |
		    src[i + 2];
		dst[o++] = b64url[v >> 18 & 63];
		dst[o++] = b64url[v >> 12 & 63];
		dst[o++] = b64url[v >> 6 & 63];
		dst[o++] = b64url[v & 63];
	}
	if (len - i == 1) {
		v = (uint32_t)src[i] << 16;
		dst[o++] = b64url[v >> 18 & 63];
		dst[o++] = b64url[v >> 12 & 63];
	} else if (len - i == 2) {
		v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
		dst[o++] = b64url[v >> 18 & 63];
		dst[o++] = b64url[v >> 12 & 63];
		dst[o++] = b64url[v >> 6 & 63];
	}
	dst[o] = '\0';
	return ((int)o);
}

/* Key ids and team ids are short [A-Z0-9]; refuse anything to escape. */
static int
jwt_idok(const char *s)
{
	size_t	 n;

	n = strlen(s);
	if (n == 0 || n >= KEYID_MAX)
		return (0);
	for (; *s != '\0'; s++)
		if (*s < 0x21 || *s > 0x7e || *s == '"' || *s == '\\')
			return (0);
	return (1);
}

struct jwt *
jwt_new(const uint8_t *pem, size_t pemlen, const char *kid, const char *team,
    char *err, size_t errlen)
{
	struct jwt	*j;
	BIO		*bio;
	EVP_PKEY	*key;
	char		 curve[32];
	size_t		 clen;

	if (!jwt_idok(kid) || !jwt_idok(team)) {
		snprintf(err, errlen, "%s: bad key id or team id", __func__);
		return (NULL);
	}
	if (pemlen > INT_MAX ||
	    (bio = BIO_new_mem_buf(pem, (int)pemlen)) == NULL) {
		snprintf(err, errlen, "%s: BIO_new_mem_buf failed", __func__);
		return (NULL);
	}
	key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (key == NULL) {
		snprintf(err, errlen, "%s: token key is not a PEM private key",
		    __func__);
		return (NULL);
	}
	if (EVP_PKEY_base_id(key) != EVP_PKEY_EC ||
	    EVP_PKEY_get_utf8_string_param(key, "group", curve, sizeof(curve),
	    &clen) != 1 || strcmp(curve, "prime256v1") != 0) {
		snprintf(err, errlen, "%s: token key is not a P-256 EC key",
		    __func__);
		EVP_PKEY_free(key);
		return (NULL);
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", __func__);
		EVP_PKEY_free(key);
		return (NULL);
	}
	j->j_key = key;
	strlcpy(j->j_kid, kid, sizeof(j->j_kid));
	strlcpy(j->j_team, team, sizeof(j->j_team));
	return (j);
}

void
jwt_free(struct jwt *j)
{
	if (j == NULL)
		return;
	EVP_PKEY_free(j->j_key);
	freezero(j, sizeof(*j));
}

/* ECDSA gives DER; JWS wants r and s as two 32-byte big-endian numbers. */
static int
jwt_der2raw(const uint8_t *der, size_t derlen, uint8_t raw[JWT_SIG_LEN])
{
	ECDSA_SIG	*sig;
	const BIGNUM	*r, *s;
	const uint8_t	*p = der;
	int		 ret = -1;

	if ((sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen)) == NULL)
		return (-1);
	ECDSA_SIG_get0(sig, &r, &s);
	if (BN_bn2binpad(r, raw, JWT_SIG_LEN / 2) == JWT_SIG_LEN / 2 &&
	    BN_bn2binpad(s, raw + JWT_SIG_LEN / 2, JWT_SIG_LEN / 2) ==
	    JWT_SIG_LEN / 2)
		ret = 0;
	ECDSA_SIG_free(sig);
	return (ret);
}

int
jwt_sign(struct jwt *j, time_t now)
{
	EVP_MD_CTX	*md;
	char		 json[128 + 2 * KEYID_MAX], tok[JWT_MAX];
	uint8_t		 der[128], raw[JWT_SIG_LEN];
	size_t		 derlen = sizeof(der), off;
	int		 n, ret = -1;

	n = snprintf(json, sizeof(json), "{\"alg\":\"ES256\",\"kid\":\"%s\"}",
	    j->j_kid);
	if (n < 0 || (size_t)n >= sizeof(json) ||
	    (n = jwt_b64url(tok, sizeof(tok), (uint8_t *)json, n)) == -1)
		return (-1);
	off = n;
	tok[off++] = '.';
	n = snprintf(json, sizeof(json), "{\"iss\":\"%s\",\"iat\":%lld}",
	    j->j_team, (long long)now);
	if (n < 0 || (size_t)n >= sizeof(json) || (n = jwt_b64url(tok + off,
	    sizeof(tok) - off, (uint8_t *)json, n)) == -1)
		return (-1);
	off += n;

	if ((md = EVP_MD_CTX_new()) == NULL)
		return (-1);
	if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, j->j_key) != 1 ||
	    EVP_DigestSign(md, der, &derlen, (uint8_t *)tok, off) != 1 ||
	    jwt_der2raw(der, derlen, raw) == -1)
		goto done;
	if (off + 1 >= sizeof(tok))
		goto done;
	tok[off++] = '.';
	if (jwt_b64url(tok + off, sizeof(tok) - off, raw, sizeof(raw)) == -1)
		goto done;
	strlcpy(j->j_token, tok, sizeof(j->j_token));
	j->j_iat = now;
	ret = 0;
 done:
	EVP_MD_CTX_free(md);
	return (ret);
}

/*
 * Renew when the token is renew seconds old, or when force is set (Apple
 * said ExpiredProviderToken) and it is at least min_interval old; never
 * more often than min_interval.  Returns 1 when a new token was made,
 * 0 when the old one stays, -1 when signing failed.
 */
int
jwt_refresh(struct jwt *j, time_t now, int renew, int min_interval, int force)
{
	time_t	 age;

	if (j->j_iat != 0) {
		age = now - j->j_iat;
		if (age < min_interval)
			return (0);
		if (age < renew && !force)
			return (0);
	}
	if (jwt_sign(j, now) == -1)
		return (-1);
	return (1);
}

const char *
jwt_token(const struct jwt *j)
{
	return (j->j_iat == 0 ? NULL : j->j_token);
}

time_t
jwt_issued(const struct jwt *j)
{
	return (j->j_iat);
}
