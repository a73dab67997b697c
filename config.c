/*
 * The configuration: defaults, lookups, printing it back in the file's
 * own syntax (monalpushd -nv), and loading the key material, which only
 * the parent does, at start and on reload.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <tls.h>
#include <unistd.h>

#include "monalpushd.h"

struct mp_conf *
config_new_empty(void)
{
	struct mp_conf	*conf;

	if ((conf = calloc(1, sizeof(*conf))) == NULL)
		return (NULL);
	TAILQ_INIT(&conf->c_listens);
	TAILQ_INIT(&conf->c_domains);
	TAILQ_INIT(&conf->c_apps);
	TAILQ_INIT(&conf->c_routes);
	strlcpy(conf->c_logdir, MONALPUSHD_LOGDIR, sizeof(conf->c_logdir));
	conf->c_retention = LOG_RETENTION_DEFAULT;
	strlcpy(conf->c_database, MONALPUSHD_DB, sizeof(conf->c_database));
	strlcpy(conf->c_user, MONALPUSHD_USER, sizeof(conf->c_user));
	strlcpy(conf->c_chroot, MONALPUSHD_CHROOT, sizeof(conf->c_chroot));
	strlcpy(conf->c_socket, MONALPUSHD_SOCKET, sizeof(conf->c_socket));
	strlcpy(conf->c_cafile, tls_default_ca_cert_file(),
	    sizeof(conf->c_cafile));
	conf->c_starttls_required = 1;
	conf->c_stanza_max = STANZA_MAX_DEFAULT;
	conf->c_xml_depth = XML_DEPTH_DEFAULT;
	conf->c_xml_attrs = XML_ATTRS_DEFAULT;
	conf->c_conn_max = CONN_MAX_DEFAULT;
	conf->c_conn_per_peer = CONN_PER_PEER_DEFAULT;
	conf->c_handshake_timeout = HANDSHAKE_TIMEOUT_DEFAULT;
	conf->c_idle_timeout = IDLE_TIMEOUT_DEFAULT;
	conf->c_apns_timeout = APNS_TIMEOUT_DEFAULT;
	conf->c_apns_conns = APNS_CONNS_DEFAULT;
	conf->c_apns_queue = APNS_QUEUE_DEFAULT;
	return (conf);
}

static void
blob_free(uint8_t **mem, size_t *len, int secret)
{
	if (*mem != NULL) {
		if (secret)
			freezero(*mem, *len);
		else
			free(*mem);
	}
	*mem = NULL;
	*len = 0;
}

/* Frees memory only: the parent closes its listening sockets itself. */
void
config_free(struct mp_conf *conf)
{
	struct mp_listen	*l;
	struct mp_domain	*d;
	struct mp_app		*a;
	struct mp_route		*r;

	if (conf == NULL)
		return;
	while ((l = TAILQ_FIRST(&conf->c_listens)) != NULL) {
		TAILQ_REMOVE(&conf->c_listens, l, l_entry);
		free(l);
	}
	while ((d = TAILQ_FIRST(&conf->c_domains)) != NULL) {
		TAILQ_REMOVE(&conf->c_domains, d, d_entry);
		blob_free(&d->d_cert_mem, &d->d_cert_len, 0);
		blob_free(&d->d_key_mem, &d->d_key_len, 1);
		free(d);
	}
	while ((a = TAILQ_FIRST(&conf->c_apps)) != NULL) {
		TAILQ_REMOVE(&conf->c_apps, a, a_entry);
		blob_free(&a->a_cert_mem, &a->a_cert_len, 0);
		blob_free(&a->a_key_mem, &a->a_key_len, 1);
		blob_free(&a->a_ca_mem, &a->a_ca_len, 0);
		free(a);
	}
	while ((r = TAILQ_FIRST(&conf->c_routes)) != NULL) {
		TAILQ_REMOVE(&conf->c_routes, r, r_entry);
		free(r);
	}
	blob_free(&conf->c_ca_mem, &conf->c_ca_len, 0);
	free(conf);
}

struct mp_app *
config_app_find(const struct mp_conf *conf, const char *name)
{
	struct mp_app	*a;

	TAILQ_FOREACH(a, &conf->c_apps, a_entry)
		if (strcmp(a->a_name, name) == 0)
			return (a);
	return (NULL);
}

/* The app marked default; a single app is the default by itself. */
struct mp_app *
config_app_default(const struct mp_conf *conf)
{
	struct mp_app	*a;

	TAILQ_FOREACH(a, &conf->c_apps, a_entry)
		if (a->a_default)
			return (a);
	a = TAILQ_FIRST(&conf->c_apps);
	if (a != NULL && TAILQ_NEXT(a, a_entry) == NULL)
		return (a);
	return (NULL);
}

struct mp_domain *
config_domain_find(const struct mp_conf *conf, const char *name)
{
	struct mp_domain	*d;

	TAILQ_FOREACH(d, &conf->c_domains, d_entry)
		if (strcasecmp(d->d_name, name) == 0)
			return (d);
	return (NULL);
}

/* A quoted string as the lexer reads it back. */
static void
print_str(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', fp);
		fputc(*s, fp);
	}
	fputc('"', fp);
}

static void
print_kv(FILE *fp, const char *indent, const char *key, const char *val)
{
	fprintf(fp, "%s%s ", indent, key);
	print_str(fp, val);
	fputc('\n', fp);
}

static const char *
prio_name(int prio)
{
	switch (prio) {
	case PRIO_ALERT:
		return ("alert");
	case PRIO_BACKGROUND:
		return ("background");
	case PRIO_VOIP:
		return ("voip");
	default:
		return ("auto");
	}
}

static void
print_app(FILE *fp, const struct mp_app *a)
{
	fprintf(fp, "\napp ");
	print_str(fp, a->a_name);
	fprintf(fp, " {\n");
	print_kv(fp, "\t", "topic", a->a_topic);
	fprintf(fp, "\tenvironment %s\n",
	    a->a_env == APP_ENV_SANDBOX ? "sandbox" : "production");
	print_kv(fp, "\t", "host", a->a_host);
	fprintf(fp, "\tport %u\n", a->a_port);
	if (a->a_auth == APP_AUTH_TOKEN) {
		fprintf(fp, "\ttoken key ");
		print_str(fp, a->a_key);
		fprintf(fp, " key-id ");
		print_str(fp, a->a_keyid);
		fprintf(fp, " team-id ");
		print_str(fp, a->a_teamid);
		fputc('\n', fp);
	} else {
		fprintf(fp, "\tcertificate ");
		print_str(fp, a->a_cert);
		fprintf(fp, " key ");
		print_str(fp, a->a_key);
		fputc('\n', fp);
	}
	print_kv(fp, "\t", "ca", a->a_cafile);
	fprintf(fp, "\tpriority %s\n", prio_name(a->a_priority));
	fprintf(fp, "\tmutable-content %s\n", a->a_mutable ? "yes" : "no");
	if (a->a_collapse[0] != '\0')
		print_kv(fp, "\t", "collapse", a->a_collapse);
	fprintf(fp, "\texpiration %lld\n", (long long)a->a_expiration);
	fprintf(fp, "\trate limit %lld\n", (long long)a->a_ratelimit);
	fprintf(fp, "\tmode %s\n",
	    a->a_mode == APP_MODE_TOKEN ? "token" : "registered");
	if (a->a_default)
		fprintf(fp, "\tdefault\n");
	fprintf(fp, "}\n");
}

/* Every setting explicit, in a fixed order: parsing it gives it back. */
void
config_print(FILE *fp, const struct mp_conf *conf)
{
	const struct mp_listen	*l;
	const struct mp_domain	*d;
	const struct mp_app	*a;
	const struct mp_route	*r;
	int			 i;

	print_kv(fp, "", "user", conf->c_user);
	print_kv(fp, "", "chroot", conf->c_chroot);
	print_kv(fp, "", "database", conf->c_database);
	print_kv(fp, "", "control socket", conf->c_socket);
	print_kv(fp, "", "log directory", conf->c_logdir);
	fprintf(fp, "log retention %d\n", conf->c_retention);
	print_kv(fp, "", "ca file", conf->c_cafile);
	fprintf(fp, "starttls %s\n",
	    conf->c_starttls_required ? "required" : "optional");
	for (i = 0; i < DNS_ZONES_MAX && conf->c_dns_zones[i][0] != '\0'; i++)
		fprintf(fp, "dns transparent zone \"%s\"\n",
		    conf->c_dns_zones[i]);
	fputc('\n', fp);
	fprintf(fp, "max stanza size %zu\n", conf->c_stanza_max);
	fprintf(fp, "max xml depth %d\n", conf->c_xml_depth);
	fprintf(fp, "max xml attributes %d\n", conf->c_xml_attrs);
	fprintf(fp, "max connections %d\n", conf->c_conn_max);
	fprintf(fp, "max connections per peer %d\n", conf->c_conn_per_peer);
	fprintf(fp, "handshake timeout %d\n", conf->c_handshake_timeout);
	fprintf(fp, "idle timeout %d\n", conf->c_idle_timeout);
	fprintf(fp, "apns timeout %d\n", conf->c_apns_timeout);
	fprintf(fp, "apns connections %d\n", conf->c_apns_conns);
	fprintf(fp, "apns queue %d\n", conf->c_apns_queue);

	fputc('\n', fp);
	TAILQ_FOREACH(l, &conf->c_listens, l_entry) {
		fprintf(fp, "listen on ");
		print_str(fp, l->l_addr);
		fprintf(fp, " port %u%s\n", l->l_port, l->l_tls ? " tls" : "");
	}

	TAILQ_FOREACH(d, &conf->c_domains, d_entry) {
		fputc('\n', fp);
		fprintf(fp, "domain ");
		print_str(fp, d->d_name);
		fprintf(fp, " {\n");
		print_kv(fp, "\t", "certificate", d->d_cert);
		print_kv(fp, "\t", "key", d->d_key);
		fprintf(fp, "}\n");
	}

	TAILQ_FOREACH(a, &conf->c_apps, a_entry)
		print_app(fp, a);

	if (!TAILQ_EMPTY(&conf->c_routes))
		fputc('\n', fp);
	TAILQ_FOREACH(r, &conf->c_routes, r_entry) {
		fprintf(fp, "route ");
		print_str(fp, r->r_domain);
		fprintf(fp, " to ");
		print_str(fp, r->r_addr);
		fprintf(fp, " port %u\n", r->r_port);
	}
}

/*
 * Read one file into memory, NUL terminated (PEM readers like that),
 * the length without the NUL.  A file holding a secret must not be
 * accessible by group or others.
 */
static int
load_file(const char *path, int secret, uint8_t **mem, size_t *len)
{
	struct stat	 st;
	uint8_t		*buf;
	size_t		 off = 0;
	ssize_t		 n = 0;
	int		 fd;

	blob_free(mem, len, secret);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		log_warn("%s: %s", __func__, path);
		return (-1);
	}
	if (fstat(fd, &st) == -1) {
		log_warn("%s: fstat %s", __func__, path);
		close(fd);
		return (-1);
	}
	if (!S_ISREG(st.st_mode)) {
		log_warnx("%s: %s: not a regular file", __func__, path);
		close(fd);
		return (-1);
	}
	if (secret && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		log_warnx("%s: %s: key file is accessible by group or others "
		    "(mode %04o), refused: chmod 600 it", __func__, path,
		    (unsigned int)(st.st_mode & 07777));
		close(fd);
		return (-1);
	}
	if (st.st_size == 0 || st.st_size > CONF_FILE_MAX) {
		log_warnx("%s: %s: size %lld is not between 1 and %d bytes",
		    __func__, path, (long long)st.st_size, CONF_FILE_MAX);
		close(fd);
		return (-1);
	}
	if ((buf = malloc(st.st_size + 1)) == NULL) {
		log_warn("%s: %s", __func__, path);
		close(fd);
		return (-1);
	}
	while (off < (size_t)st.st_size) {
		if ((n = read(fd, buf + off, st.st_size - off)) == -1) {
			if (errno == EINTR)
				continue;
			log_warn("%s: read %s", __func__, path);
			break;
		}
		if (n == 0)
			break;
		off += n;
	}
	close(fd);
	if (off != (size_t)st.st_size) {
		if (n == 0)
			log_warnx("%s: %s: file shrank while read", __func__,
			    path);
		freezero(buf, st.st_size + 1);
		return (-1);
	}
	buf[off] = '\0';
	*mem = buf;
	*len = off;
	return (0);
}

/* Parent only, at start and on reload; says every problem at once. */
int
config_load_keys(struct mp_conf *conf)
{
	struct mp_domain	*d;
	struct mp_app		*a;
	int			 bad = 0;

	TAILQ_FOREACH(d, &conf->c_domains, d_entry) {
		bad |= load_file(d->d_cert, 0, &d->d_cert_mem,
		    &d->d_cert_len);
		bad |= load_file(d->d_key, 1, &d->d_key_mem, &d->d_key_len);
	}
	TAILQ_FOREACH(a, &conf->c_apps, a_entry) {
		if (a->a_auth == APP_AUTH_CERT)
			bad |= load_file(a->a_cert, 0, &a->a_cert_mem,
			    &a->a_cert_len);
		bad |= load_file(a->a_key, 1, &a->a_key_mem, &a->a_key_len);
		bad |= load_file(a->a_cafile, 0, &a->a_ca_mem, &a->a_ca_len);
	}
	bad |= load_file(conf->c_cafile, 0, &conf->c_ca_mem,
	    &conf->c_ca_len);
	return (bad ? -1 : 0);
}
