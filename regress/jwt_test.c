/*
 * jwt.c: tokens verify with libcrypto against the public key, the
 * header and claims are exactly what Apple documents, the signature is
 * raw r||s, and renewal follows the two clocks.
 */

#include <sys/types.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "monalpushd.h"
#include "regress.h"

#define KID	"ABC123DEFG"
#define TEAM	"DEF123GHIJ"
#define T0	1700000000

static EVP_PKEY *
keygen(const char *curve, char **pem, size_t *pemlen)
{
	EVP_PKEY	*k;
	BIO		*b;
	char		*p;
	long		 n;

	if (curve != NULL)
		k = EVP_EC_gen(curve);
	else
		k = EVP_RSA_gen(2048);
	if (k == NULL || (b = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1)
		return (NULL);
	n = BIO_get_mem_data(b, &p);
	*pem = malloc(n);
	memcpy(*pem, p, n);
	*pemlen = n;
	BIO_free(b);
	return (k);
}

/* base64url without padding; -1 on a character outside the alphabet. */
static int
b64url_dec(const char *s, size_t len, uint8_t *out, size_t outlen)
{
	static const char	 a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	const char		*p;
	uint32_t		 v = 0;
	size_t			 i, o = 0;
	int			 bits = 0;

	for (i = 0; i < len; i++) {
		if ((p = memchr(a, s[i], 64)) == NULL || s[i] == '\0')
			return (-1);
		v = v << 6 | (uint32_t)(p - a);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outlen)
				return (-1);
			out[o++] = v >> bits & 0xff;
		}
	}
	return ((int)o);
}

static int
verify(EVP_PKEY *k, const char *tok, char *hdr, char *claims, int *siglen)
{
	const char	*d1, *d2;
	uint8_t		 sig[128], *der = NULL;
	ECDSA_SIG	*es;
	EVP_MD_CTX	*md;
	int		 n, derlen, ok;

	if ((d1 = strchr(tok, '.')) == NULL ||
	    (d2 = strchr(d1 + 1, '.')) == NULL || strchr(d2 + 1, '.') != NULL)
		return (-1);
	if ((n = b64url_dec(tok, d1 - tok, (uint8_t *)hdr, 255)) == -1)
		return (-1);
	hdr[n] = '\0';
	if ((n = b64url_dec(d1 + 1, d2 - d1 - 1, (uint8_t *)claims, 255)) == -1)
		return (-1);
	claims[n] = '\0';
	if ((n = b64url_dec(d2 + 1, strlen(d2 + 1), sig, sizeof(sig))) == -1)
		return (-1);
	*siglen = n;
	if (n != 64)
		return (-1);
	es = ECDSA_SIG_new();
	ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32,
	    NULL));
	derlen = i2d_ECDSA_SIG(es, &der);
	ECDSA_SIG_free(es);
	md = EVP_MD_CTX_new();
	ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
	    EVP_DigestVerify(md, der, derlen, (const uint8_t *)tok,
	    d2 - tok) == 1;
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	return (ok ? 0 : 1);
}

int
main(void)
{
	EVP_PKEY	*k, *k2;
	struct jwt	*j;
	char		*pem, *pem2, err[256], hdr[256], claims[256];
	char		 tok[JWT_MAX], bad[JWT_MAX];
	size_t		 pemlen, pem2len;
	int		 siglen, i, allok;

	if ((k = keygen("P-256", &pem, &pemlen)) == NULL) {
		CHECK(0, "make a P-256 key");
		REGRESS_EXIT();
	}
	j = jwt_new((uint8_t *)pem, pemlen, KID, TEAM, err, sizeof(err));
	CHECK(j != NULL, "jwt_new takes a PKCS#8 P-256 key (%s)",
	    j ? "ok" : err);
	if (j == NULL)
		REGRESS_EXIT();
	CHECK(jwt_token(j) == NULL, "no token before the first signing");
	CHECK(jwt_refresh(j, T0, 3000, 1200, 0) == 1, "first refresh signs");
	strlcpy(tok, jwt_token(j), sizeof(tok));
	CHECK(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789-_.") == strlen(tok), "base64url alphabet, no padding");
	CHECK(verify(k, tok, hdr, claims, &siglen) == 0,
	    "r||s rebuilt as DER verifies with libcrypto");
	CHECK(siglen == 64, "signature is 64 bytes r||s (got %d)", siglen);
	CHECK(strcmp(hdr, "{\"alg\":\"ES256\",\"kid\":\"" KID "\"}") == 0,
	    "header exact: %s", hdr);
	CHECK(strcmp(claims, "{\"iss\":\"" TEAM "\",\"iat\":1700000000}") == 0,
	    "claims exact: %s", claims);

	/* A changed claim must not verify. */
	strlcpy(bad, tok, sizeof(bad));
	bad[strchr(bad, '.') - bad + 3] ^= 1;
	CHECK(verify(k, bad, hdr, claims, &siglen) != 0,
	    "a tampered token does not verify");

	/* Signatures are random: sign often, every one verifies, 64 bytes. */
	allok = 1;
	for (i = 0; i < 200; i++) {
		if (jwt_sign(j, T0 + i) == -1 ||
		    verify(k, jwt_token(j), hdr, claims, &siglen) != 0 ||
		    siglen != 64)
			allok = 0;
	}
	CHECK(allok, "200 signatures verify (short r or s left-padded)");

	/* A different key does not verify it. */
	k2 = keygen("P-256", &pem2, &pem2len);
	CHECK(verify(k2, tok, hdr, claims, &siglen) == 1,
	    "another key does not verify the token");
	EVP_PKEY_free(k2);
	free(pem2);

	/* Renewal: renew after 3000 s, never twice within 1200 s. */
	jwt_free(j);
	j = jwt_new((uint8_t *)pem, pemlen, KID, TEAM, err, sizeof(err));
	CHECK(jwt_refresh(j, T0, 3000, 1200, 0) == 1, "signs at T0");
	strlcpy(tok, jwt_token(j), sizeof(tok));
	CHECK(jwt_refresh(j, T0 + 100, 3000, 1200, 0) == 0 &&
	    strcmp(tok, jwt_token(j)) == 0, "kept at T0+100");
	CHECK(jwt_refresh(j, T0 + 2999, 3000, 1200, 0) == 0, "kept at T0+2999");
	CHECK(jwt_refresh(j, T0 + 100, 3000, 1200, 1) == 0,
	    "forced renewal refused within the minimum interval");
	CHECK(jwt_refresh(j, T0 + 3000, 3000, 1200, 0) == 1 &&
	    jwt_issued(j) == T0 + 3000, "renewed at T0+3000");
	CHECK(strcmp(tok, jwt_token(j)) != 0, "the renewed token differs");
	CHECK(jwt_refresh(j, T0 + 3000 + 1199, 3000, 1200, 1) == 0,
	    "ExpiredProviderToken: no second renewal within 1200 s");
	CHECK(jwt_refresh(j, T0 + 3000 + 1200, 3000, 1200, 1) == 1,
	    "ExpiredProviderToken: renewal after 1200 s");
	CHECK(jwt_refresh(j, T0 + 3000 + 1200 + 1, 3000, 1200, 1) == 0,
	    "and not again at once");
	CHECK(jwt_refresh(j, T0, 3000, 1200, 1) == 0,
	    "a clock going back keeps the token");
	jwt_free(j);

	/* Keys and ids that are refused. */
	CHECK(jwt_new((uint8_t *)pem, pemlen, "A\"B", TEAM, err,
	    sizeof(err)) == NULL, "key id with a quote refused");
	CHECK(jwt_new((uint8_t *)pem, pemlen, KID, "", err,
	    sizeof(err)) == NULL, "empty team id refused");
	CHECK(jwt_new((uint8_t *)"garbage", 7, KID, TEAM, err,
	    sizeof(err)) == NULL, "garbage key refused");
	k2 = keygen("P-384", &pem2, &pem2len);
	CHECK(jwt_new((uint8_t *)pem2, pem2len, KID, TEAM, err,
	    sizeof(err)) == NULL, "P-384 key refused: %s", err);
	EVP_PKEY_free(k2);
	free(pem2);
	k2 = keygen(NULL, &pem2, &pem2len);
	CHECK(jwt_new((uint8_t *)pem2, pem2len, KID, TEAM, err,
	    sizeof(err)) == NULL, "RSA key refused: %s", err);
	EVP_PKEY_free(k2);
	free(pem2);

	EVP_PKEY_free(k);
	free(pem);
	REGRESS_EXIT();
}
