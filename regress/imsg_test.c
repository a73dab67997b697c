/*
 * imsg framing: round trips of every message type, descriptor passing,
 * split and batched reads, bounds, forged headers, EOF, partial writes,
 * descriptor exhaustion, and the libevent imsgev layer.
 */

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monalpushd.h"
#include "regress.h"

#define RECV_TIMEOUT_MS		5000	/* one message must arrive by then */
#define FD_SCAN_MAX		1024	/* descriptors counted for leaks */
#define MANY_MSGS		500
#define PARTIAL_MSGS		1000
#define PARTIAL_FD_EVERY	100
#define PARTIAL_SNDBUF		4096
#define PARTIAL_ROUNDS_MAX	100000
#define FLUSH_MSGS		2000
#define FLUSH_MSG_SIZE		1000
#define EV_MSGS			10000
#define EV_CHUNK		100	/* composed per handler call */
#define EV_TIMEOUT_SEC		30

static struct imsgbuf *
newbuf(int fd)
{
	struct imsgbuf	*ib;

	/* malloc, not calloc: valgrind flags reads of unreceived bytes. */
	if ((ib = malloc(sizeof(*ib))) == NULL)
		abort();
	imsgbuf_init(ib, fd);
	return (ib);
}

static void
freebuf(struct imsgbuf *ib)
{
	imsgbuf_clear(ib);
	free(ib);
}

static void
mkpair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		abort();
}

static int
count_fds(void)
{
	int	 fd, n = 0;

	for (fd = 0; fd < FD_SCAN_MAX; fd++)
		if (fcntl(fd, F_GETFD) != -1)
			n++;
	return (n);
}

static void
fill(unsigned char *p, size_t len, unsigned int seed)
{
	size_t	 i;

	for (i = 0; i < len; i++)
		p[i] = (unsigned char)(seed * 31 + i * 7);
}

/* Wait for one whole message: 1, or -1 on EOF, error or timeout. */
static int
recv_one(struct imsgbuf *ib, struct imsg *imsg)
{
	struct pollfd	 pfd;
	ssize_t		 n;

	for (;;) {
		if ((n = imsg_get(ib, imsg)) == -1)
			return (-1);
		if (n > 0)
			return (1);
		pfd.fd = ib->fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, RECV_TIMEOUT_MS) <= 0)
			return (-1);
		n = imsgbuf_read(ib);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
			return (-1);
	}
}

static size_t
type_size(int t)
{
	switch (t) {
	case IMSG_NONE:
	case IMSG_CTL_OK:
	case IMSG_CTL_END:
	case IMSG_CTL_SHOW_STATUS:
	case IMSG_CTL_RELOAD:
	case IMSG_CONF_END:
	case IMSG_LOG_STATS_REQ:
	case IMSG_PROC_STATUS_REQ:
		return (0);
	case IMSG_CTL_STATUS:
		return (sizeof(struct ctl_status));
	case IMSG_CTL_LOG_VERBOSE:
	case IMSG_LOG_VERBOSE:
	case IMSG_TEST_FORBIDDEN:
		return (sizeof(int));
	case IMSG_CTL_SHOW_REGS:
	case IMSG_CTL_SHOW_NODE:
	case IMSG_CTL_UNREGISTER:
		return (sizeof(struct ctl_req));
	case IMSG_CTL_REG_COUNT:
		return (sizeof(struct ctl_regcount));
	case IMSG_CTL_REG:
		return (sizeof(struct ctl_reg));
	case IMSG_CONF_START:
		return (sizeof(struct mp_conf));
	case IMSG_CONF_LISTEN:
		return (sizeof(struct mp_listen));
	case IMSG_CONF_DOMAIN:
		return (sizeof(struct mp_domain));
	case IMSG_CONF_APP:
		return (sizeof(struct mp_app));
	case IMSG_CONF_ROUTE:
		return (sizeof(struct mp_route));
	case IMSG_CONF_BLOB:
		return (sizeof(struct conf_blob) + BLOB_CHUNK);
	case IMSG_LOG:
		return (sizeof(struct log_msg));
	case IMSG_LOG_EVENT:
		return (sizeof(struct log_event));
	case IMSG_LOG_STATS:
		return (sizeof(struct log_stats));
	case IMSG_PROC_STATUS:
		return (sizeof(struct proc_status));
	case IMSG_TEST_RESULT:
		return (sizeof(struct test_result));
	default:
		/* char[] messages and the later push path: a few bytes */
		return (3 + t % 11);
	}
}

static void
test_types(void)
{
	struct imsgbuf	*wb, *rb;
	struct imsg	 imsg;
	unsigned char	*p;
	size_t		 len;
	int		 sv[2], t, ok;

	CHECK(sizeof(struct imsg_hdr) == 16, "imsg header is 16 bytes");
	mkpair(sv);
	wb = newbuf(sv[0]);
	rb = newbuf(sv[1]);
	for (t = IMSG_NONE; t < IMSG_TYPE_MAX; t++) {
		len = type_size(t);
		CHECK(len <= MAX_IMSG_PAYLOAD,
		    "type %d: payload %zu fits in one imsg", t, len);
		if (len > MAX_IMSG_PAYLOAD)
			continue;
		if ((p = malloc(len + 1)) == NULL)
			abort();
		fill(p, len, t);
		ok = imsg_compose(wb, t, 1000 + t, 4000 + t, -1, p, len) == 1 &&
		    imsgbuf_write(wb) == 0 && imsgbuf_queuelen(wb) == 0 &&
		    recv_one(rb, &imsg) == 1;
		if (ok) {
			ok = imsg.hdr.type == (uint32_t)t &&
			    imsg.hdr.peerid == (uint32_t)(1000 + t) &&
			    imsg.hdr.pid == (uint32_t)(4000 + t) &&
			    IMSG_DATA_SIZE(&imsg) == len && imsg.fd == -1 &&
			    (len == 0 ? imsg.data == NULL :
			    memcmp(imsg.data, p, len) == 0);
			imsg_free(&imsg);
		}
		CHECK(ok, "type %d round-trips with %zu bytes", t, len);
		free(p);
	}

	ok = imsg_compose(wb, IMSG_CTL_OK, 7, 0, -1, NULL, 0) == 1 &&
	    imsgbuf_write(wb) == 0 && recv_one(rb, &imsg) == 1;
	CHECK(ok && imsg.hdr.pid == (uint32_t)getpid() && imsg.data == NULL,
	    "pid 0 is sent as our pid, empty payload is NULL");
	if (ok)
		imsg_free(&imsg);
	freebuf(wb);
	freebuf(rb);
	close(sv[0]);
	close(sv[1]);
}

static int
fd_says(int wfd, int rfd, const char *word)
{
	char	 buf[32];
	ssize_t	 n;

	if (write(wfd, word, strlen(word)) != (ssize_t)strlen(word))
		return (0);
	n = read(rfd, buf, sizeof(buf));
	return (n == (ssize_t)strlen(word) && memcmp(buf, word, n) == 0);
}

static void
test_fdpass(void)
{
	struct imsgbuf	*wb, *rb;
	struct imsg	 m1, m2, m3;
	int		 sv[2], p1[2], p2[2], ok, before;

	before = count_fds();
	mkpair(sv);
	if (pipe(p1) == -1 || pipe(p2) == -1)
		abort();
	wb = newbuf(sv[0]);
	rb = newbuf(sv[1]);
	ok = imsg_compose(wb, IMSG_CONF_LISTEN, 1, 0, p1[1], "a", 1) == 1 &&
	    imsg_compose(wb, IMSG_CTL_OK, 2, 0, -1, NULL, 0) == 1 &&
	    imsg_compose(wb, IMSG_CONF_LISTEN, 3, 0, p2[1], "c", 1) == 1 &&
	    imsgbuf_write(wb) == 0 && imsgbuf_queuelen(wb) == 0;
	CHECK(ok, "three messages, two with descriptors, written");
	CHECK(fcntl(p1[1], F_GETFD) == -1 && fcntl(p2[1], F_GETFD) == -1,
	    "sent descriptors are closed by the sender");

	ok = recv_one(rb, &m1) == 1 && recv_one(rb, &m2) == 1 &&
	    recv_one(rb, &m3) == 1;
	CHECK(ok, "three messages received");
	if (!ok)
		return;
	CHECK((m1.hdr.flags & IMSGF_HASFD) && m1.fd != -1 &&
	    fd_says(m1.fd, p1[0], "first"),
	    "first descriptor writes into the first pipe");
	CHECK(m2.fd == -1 && !(m2.hdr.flags & IMSGF_HASFD),
	    "message without descriptor has fd -1");
	CHECK(m3.fd != -1 && fd_says(m3.fd, p2[0], "third"),
	    "second descriptor writes into the second pipe");
	CHECK(m1.fd != -1 && (fcntl(m1.fd, F_GETFD) & FD_CLOEXEC),
	    "received descriptor is close-on-exec");
	close(m1.fd);
	close(m3.fd);
	imsg_free(&m1);
	imsg_free(&m2);
	imsg_free(&m3);
	freebuf(wb);
	freebuf(rb);
	close(p1[0]);
	close(p2[0]);
	close(sv[0]);
	close(sv[1]);
	CHECK(count_fds() == before, "no descriptor leaked");
}

static void
test_split(void)
{
	struct imsgbuf	*wb, *rb;
	struct imsg	 imsg;
	struct imsg_hdr	 hdr;
	unsigned char	 raw[IMSG_HEADER_SIZE + 100], payload[100];
	ssize_t		 n, got;
	size_t		 i;
	int		 a[2], b[2], early = 0, ok;

	mkpair(a);
	mkpair(b);
	wb = newbuf(a[0]);
	rb = newbuf(b[1]);
	fill(payload, sizeof(payload), 5);
	imsg_compose(wb, IMSG_LOG_EVENT, 0xdeadbeef, 77, -1, payload,
	    sizeof(payload));
	imsgbuf_write(wb);
	n = read(a[1], raw, sizeof(raw));
	CHECK(n == (ssize_t)sizeof(raw), "raw message is header + payload");
	memcpy(&hdr, raw, sizeof(hdr));
	CHECK(hdr.type == IMSG_LOG_EVENT && hdr.len == sizeof(raw) &&
	    hdr.flags == 0 && hdr.peerid == 0xdeadbeef && hdr.pid == 77 &&
	    memcmp(raw + IMSG_HEADER_SIZE, payload, sizeof(payload)) == 0,
	    "wire layout: type, len, flags, peerid, pid, payload");

	got = 0;
	for (i = 0; i < sizeof(raw); i++) {
		if (write(b[0], raw + i, 1) != 1 || imsgbuf_read(rb) != 1)
			break;
		got = imsg_get(rb, &imsg);
		if (i + 1 < sizeof(raw) && got != 0)
			early = 1;
	}
	CHECK(i == sizeof(raw) && !early,
	    "imsg_get returns 0 until the last of %zu bytes", sizeof(raw));
	ok = got == (ssize_t)sizeof(raw);
	CHECK(ok && imsg.hdr.peerid == 0xdeadbeef &&
	    memcmp(imsg.data, payload, sizeof(payload)) == 0,
	    "message complete after the last byte");
	if (ok)
		imsg_free(&imsg);
	CHECK(imsg_get(rb, &imsg) == 0, "nothing more");
	freebuf(wb);
	freebuf(rb);
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
}

static void
test_many(void)
{
	struct imsgbuf	*wb, *rb;
	struct imsg	 imsg;
	unsigned char	 p[64];
	size_t		 total = 0;
	ssize_t		 n;
	int		 sv[2], i, bad = 0;

	mkpair(sv);
	wb = newbuf(sv[0]);
	rb = newbuf(sv[1]);
	for (i = 0; i < MANY_MSGS; i++) {
		fill(p, i % sizeof(p), i);
		imsg_compose(wb, IMSG_LOG, i, 0, -1, p, i % sizeof(p));
		total += IMSG_HEADER_SIZE + i % sizeof(p);
	}
	CHECK(imsgbuf_queuelen(wb) == MANY_MSGS, "%d queued", MANY_MSGS);
	CHECK(imsgbuf_write(wb) == 0 && imsgbuf_queuelen(wb) == 0,
	    "all written");
	n = imsgbuf_read(rb);
	CHECK(n == (ssize_t)total, "one read got all %zu bytes", total);
	for (i = 0; i < MANY_MSGS; i++) {
		if (imsg_get(rb, &imsg) <= 0) {
			bad = 1;
			break;
		}
		fill(p, i % sizeof(p), i);
		if (imsg.hdr.peerid != (uint32_t)i ||
		    IMSG_DATA_SIZE(&imsg) != i % sizeof(p) ||
		    (i % sizeof(p) > 0 &&
		    memcmp(imsg.data, p, i % sizeof(p)) != 0))
			bad = 1;
		imsg_free(&imsg);
	}
	CHECK(!bad, "%d messages out of one read, in order", MANY_MSGS);
	CHECK(imsg_get(rb, &imsg) == 0, "then none");
	freebuf(wb);
	freebuf(rb);
	close(sv[0]);
	close(sv[1]);
}

static void
test_bounds(void)
{
	struct imsgbuf	*wb, *rb;
	struct imsg	 imsg;
	struct iovec	 iov[2];
	unsigned char	*p;
	int		 sv[2], pp[2], ok;

	mkpair(sv);
	wb = newbuf(sv[0]);
	rb = newbuf(sv[1]);
	if ((p = malloc(MAX_IMSG_PAYLOAD + 1)) == NULL)
		abort();
	fill(p, MAX_IMSG_PAYLOAD + 1, 9);
	ok = imsg_compose(wb, IMSG_CONF_BLOB, 1, 0, -1, p,
	    MAX_IMSG_PAYLOAD) == 1 && imsgbuf_write(wb) == 0 &&
	    recv_one(rb, &imsg) == 1;
	CHECK(ok && IMSG_DATA_SIZE(&imsg) == MAX_IMSG_PAYLOAD &&
	    memcmp(imsg.data, p, MAX_IMSG_PAYLOAD) == 0,
	    "maximal payload of %d bytes round-trips", MAX_IMSG_PAYLOAD);
	if (ok)
		imsg_free(&imsg);

	errno = 0;
	CHECK(imsg_compose(wb, IMSG_CONF_BLOB, 2, 0, -1, p,
	    MAX_IMSG_PAYLOAD + 1) == -1 && errno == ERANGE,
	    "compose of %d bytes refused with ERANGE", MAX_IMSG_PAYLOAD + 1);
	iov[0].iov_base = p;
	iov[0].iov_len = MAX_IMSG_PAYLOAD / 2;
	iov[1].iov_base = p;
	iov[1].iov_len = MAX_IMSG_PAYLOAD / 2 + 1;
	errno = 0;
	CHECK(imsg_composev(wb, IMSG_CONF_BLOB, 3, 0, -1, iov, 2) == -1 &&
	    errno == ERANGE, "composev over the bound refused with ERANGE");
	if (pipe(pp) == -1)
		abort();
	CHECK(imsg_compose(wb, IMSG_CONF_BLOB, 4, 0, pp[1], p,
	    MAX_IMSG_PAYLOAD + 1) == -1 && fcntl(pp[1], F_GETFD) == -1,
	    "refused compose closes its descriptor");
	close(pp[0]);
	CHECK(imsgbuf_queuelen(wb) == 0, "nothing queued by refusals");

	iov[1].iov_len = MAX_IMSG_PAYLOAD / 2;
	ok = imsg_composev(wb, IMSG_CONF_BLOB, 5, 0, -1, iov, 2) == 1 &&
	    imsgbuf_write(wb) == 0 && recv_one(rb, &imsg) == 1;
	CHECK(ok && IMSG_DATA_SIZE(&imsg) == MAX_IMSG_PAYLOAD &&
	    memcmp(imsg.data, p, MAX_IMSG_PAYLOAD / 2) == 0 &&
	    memcmp((char *)imsg.data + MAX_IMSG_PAYLOAD / 2, p,
	    MAX_IMSG_PAYLOAD / 2) == 0, "composev joins its iovecs");
	if (ok)
		imsg_free(&imsg);
	free(p);
	freebuf(wb);
	freebuf(rb);
	close(sv[0]);
	close(sv[1]);
}

/* Send a raw header (and nothing else); what does imsg_get say? */
static ssize_t
forged(uint16_t len, uint16_t flags, size_t sendlen, int *err)
{
	struct imsgbuf	*rb;
	struct imsg	 imsg;
	struct imsg_hdr	 hdr;
	ssize_t		 n;
	int		 sv[2];

	mkpair(sv);
	rb = newbuf(sv[1]);
	memset(&hdr, 0, sizeof(hdr));
	hdr.type = IMSG_CTL_OK;
	hdr.len = len;
	hdr.flags = flags;
	if (write(sv[0], &hdr, sendlen) != (ssize_t)sendlen ||
	    imsgbuf_read(rb) != (ssize_t)sendlen)
		abort();
	errno = 0;
	if ((n = imsg_get(rb, &imsg)) > 0)
		imsg_free(&imsg);
	*err = errno;
	freebuf(rb);
	close(sv[0]);
	close(sv[1]);
	return (n);
}

static void
test_forged(void)
{
	int	 err;

	CHECK(forged(0xffff, 0, IMSG_HEADER_SIZE, &err) == -1 &&
	    err == EBADMSG, "len 65535 > header + max rejected");
	CHECK(forged(IMSG_HEADER_SIZE + MAX_IMSG_PAYLOAD + 1, 0,
	    IMSG_HEADER_SIZE, &err) == -1 && err == EBADMSG,
	    "len header + max + 1 rejected");
	CHECK(forged(IMSG_HEADER_SIZE - 1, 0, IMSG_HEADER_SIZE, &err) == -1 &&
	    err == EBADMSG, "len < header size rejected");
	CHECK(forged(0, 0, IMSG_HEADER_SIZE, &err) == -1 && err == EBADMSG,
	    "len 0 rejected");
	CHECK(forged(IMSG_HEADER_SIZE, 0x8000, IMSG_HEADER_SIZE, &err) == -1,
	    "unknown flags rejected");
	CHECK(forged(IMSG_HEADER_SIZE, IMSGF_HASFD, IMSG_HEADER_SIZE,
	    &err) == -1, "HASFD without a descriptor rejected");
	CHECK(forged(IMSG_HEADER_SIZE + MAX_IMSG_PAYLOAD, 0, IMSG_HEADER_SIZE,
	    &err) == 0, "maximal len with only the header: wait for more");
	CHECK(forged(0xffff, 0, IMSG_HEADER_SIZE - 1, &err) == 0,
	    "partial header: wait for more");
	CHECK(forged(IMSG_HEADER_SIZE, 0, IMSG_HEADER_SIZE, &err) ==
	    IMSG_HEADER_SIZE, "empty message accepted");
}

static void
test_eof(void)
{
	struct imsgbuf	*rb;
	struct imsg	 imsg;
	struct imsg_hdr	 hdr;
	unsigned char	 raw[IMSG_HEADER_SIZE + 50];
	int		 sv[2];

	mkpair(sv);
	rb = newbuf(sv[1]);
	memset(&hdr, 0, sizeof(hdr));
	hdr.type = IMSG_LOG;
	hdr.len = IMSG_HEADER_SIZE + 100;
	memcpy(raw, &hdr, sizeof(hdr));
	fill(raw + IMSG_HEADER_SIZE, 50, 1);
	if (write(sv[0], raw, sizeof(raw)) != sizeof(raw))
		abort();
	close(sv[0]);
	CHECK(imsgbuf_read(rb) == (ssize_t)sizeof(raw),
	    "truncated message read");
	CHECK(imsgbuf_read(rb) == 0, "then EOF");
	CHECK(imsg_get(rb, &imsg) == 0, "truncated message not delivered");
	freebuf(rb);
	close(sv[1]);
}

static size_t
partial_size(int i)
{
	return ((size_t)(i * 37) % 3000);
}

static void
test_partial(void)
{
	struct imsgbuf	*wb, *rb;
	struct imsg	 imsg;
	unsigned char	 p[3000];
	uint32_t	 seq;
	size_t		 len;
	ssize_t		 n;
	int		 sv[2], pp[2], i, rounds, next = 0, bad = 0;
	int		 sndbuf = PARTIAL_SNDBUF, saw_partial = 0;
	int		 fds_sent = 0, fds_ok = 0;

	mkpair(sv);
	if (pipe(pp) == -1)
		abort();
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf));
	wb = newbuf(sv[0]);
	rb = newbuf(sv[1]);
	for (i = 0; i < PARTIAL_MSGS; i++) {
		len = partial_size(i);
		fill(p, len, i);
		if (i % PARTIAL_FD_EVERY == 0) {
			imsg_compose(wb, IMSG_LOG, i, 0, dup(pp[1]), p, len);
			fds_sent++;
		} else
			imsg_compose(wb, IMSG_LOG, i, 0, -1, p, len);
	}
	close(pp[1]);
	CHECK(imsgbuf_write(wb) == 0 && imsgbuf_queuelen(wb) > 0,
	    "small send buffer: write leaves %u of %d queued",
	    imsgbuf_queuelen(wb), PARTIAL_MSGS);

	for (rounds = 0; next < PARTIAL_MSGS && !bad &&
	    rounds < PARTIAL_ROUNDS_MAX; rounds++) {
		if (TAILQ_FIRST(&wb->w.bufs) != NULL &&
		    TAILQ_FIRST(&wb->w.bufs)->wpos > 0)
			saw_partial = 1;
		n = imsgbuf_read(rb);
		if (n == 0 || (n == -1 && errno != EAGAIN)) {
			bad = 1;
			break;
		}
		while (imsg_get(rb, &imsg) > 0) {
			len = partial_size(next);
			fill(p, len, next);
			if (imsg.hdr.peerid != (uint32_t)next ||
			    IMSG_DATA_SIZE(&imsg) != len ||
			    (len > 0 && memcmp(imsg.data, p, len) != 0))
				bad = 1;
			if (imsg.fd != -1) {
				seq = next;
				if (next % PARTIAL_FD_EVERY == 0 &&
				    write(imsg.fd, &seq, sizeof(seq)) ==
				    sizeof(seq))
					fds_ok++;
				close(imsg.fd);
			} else if (next % PARTIAL_FD_EVERY == 0)
				bad = 1;
			imsg_free(&imsg);
			next++;
		}
		if (imsgbuf_write(wb) == -1)
			bad = 1;
	}
	CHECK(saw_partial, "a message was left half written");
	CHECK(!bad && next == PARTIAL_MSGS,
	    "all %d messages arrived intact and in order", PARTIAL_MSGS);
	for (i = 0; i < fds_sent; i++) {
		if (read(pp[0], &seq, sizeof(seq)) != sizeof(seq) ||
		    seq != (uint32_t)(i * PARTIAL_FD_EVERY))
			break;
	}
	CHECK(fds_ok == fds_sent && i == fds_sent,
	    "%d descriptors came with their own messages", fds_sent);
	close(pp[0]);
	freebuf(wb);
	freebuf(rb);
	close(sv[0]);
	close(sv[1]);
}

/* Two descriptors in one control message: both closed, read fails. */
static void
test_multifd(void)
{
	struct imsgbuf	*rb;
	struct imsg_hdr	 hdr;
	struct msghdr	 msg;
	struct cmsghdr	*cmsg;
	struct iovec	 iov;
	union {
		struct cmsghdr	 hdr;
		char		 buf[CMSG_SPACE(2 * sizeof(int))];
	} cmsgbuf;
	int		 sv[2], pp[2], before, fds[2];
	ssize_t		 n;

	before = count_fds();
	mkpair(sv);
	if (pipe(pp) == -1)
		abort();
	rb = newbuf(sv[1]);
	memset(&hdr, 0, sizeof(hdr));
	hdr.type = IMSG_CONF_LISTEN;
	hdr.len = sizeof(hdr);
	hdr.flags = IMSGF_HASFD;
	iov.iov_base = &hdr;
	iov.iov_len = sizeof(hdr);
	memset(&msg, 0, sizeof(msg));
	memset(&cmsgbuf, 0, sizeof(cmsgbuf));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cmsgbuf.buf;
	msg.msg_controllen = sizeof(cmsgbuf.buf);
	cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_len = CMSG_LEN(2 * sizeof(int));
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	fds[0] = pp[0];
	fds[1] = pp[1];
	memcpy(CMSG_DATA(cmsg), fds, sizeof(fds));
	if (sendmsg(sv[0], &msg, 0) != sizeof(hdr))
		abort();
	close(pp[0]);
	close(pp[1]);
	errno = 0;
	n = imsgbuf_read(rb);
	CHECK(n == -1 && errno == EBADMSG,
	    "two descriptors in one message: read fails");
	freebuf(rb);
	close(sv[0]);
	close(sv[1]);
	CHECK(count_fds() == before, "both received descriptors closed");
}

/* With no descriptor slot free, nothing is read, so nothing is lost. */
static void
test_emfile(void)
{
	struct imsgbuf	*wb, *rb;
	struct imsg	 imsg;
	struct rlimit	 rl, orl;
	int		 sv[2], pp[2], fill_fds[FD_SCAN_MAX], nfill = 0;
	int		 top, fd, ok;
	ssize_t		 n;

	mkpair(sv);
	if (pipe(pp) == -1)
		abort();
	wb = newbuf(sv[0]);
	rb = newbuf(sv[1]);
	imsg_compose(wb, IMSG_CONF_LISTEN, 1, 0, pp[1], "x", 1);
	imsgbuf_write(wb);

	if (getrlimit(RLIMIT_NOFILE, &orl) == -1)
		abort();
	for (top = FD_SCAN_MAX - 1; top > 0 && fcntl(top, F_GETFD) == -1;
	    top--)
		;
	rl = orl;
	rl.rlim_cur = top + 8;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
		printf("SKIP: setrlimit: %s\n", strerror(errno));
		goto out;
	}
	while (nfill < FD_SCAN_MAX && (fd = dup(sv[0])) != -1)
		fill_fds[nfill++] = fd;
	errno = 0;
	n = imsgbuf_read(rb);
	CHECK(n == -1 && errno == EAGAIN,
	    "descriptor table full: read says EAGAIN");
	if (nfill > 0)
		close(fill_fds[--nfill]);
	ok = recv_one(rb, &imsg) == 1;
	CHECK(ok && imsg.fd != -1 && fd_says(imsg.fd, pp[0], "late"),
	    "with one slot free the message and its descriptor arrive");
	if (ok) {
		if (imsg.fd != -1)
			close(imsg.fd);
		imsg_free(&imsg);
	}
	while (nfill > 0)
		close(fill_fds[--nfill]);
	setrlimit(RLIMIT_NOFILE, &orl);
 out:
	close(pp[0]);
	freebuf(wb);
	freebuf(rb);
	close(sv[0]);
	close(sv[1]);
}

/* imsgbuf_clear closes queued and received, unconsumed descriptors. */
static void
test_clear(void)
{
	struct imsgbuf	*wb, *rb, *qb;
	int		 sv[2], pp[2], before;

	before = count_fds();
	mkpair(sv);
	if (pipe(pp) == -1)
		abort();
	wb = newbuf(sv[0]);
	rb = newbuf(sv[1]);
	qb = newbuf(sv[0]);
	imsg_compose(wb, IMSG_CONF_LISTEN, 1, 0, dup(pp[0]), NULL, 0);
	imsgbuf_write(wb);
	imsgbuf_read(rb);
	imsg_compose(qb, IMSG_CONF_LISTEN, 1, 0, dup(pp[1]), NULL, 0);
	imsg_compose(qb, IMSG_CTL_OK, 1, 0, -1, NULL, 0);
	CHECK(imsgbuf_queuelen(qb) == 2, "two queued");
	imsgbuf_clear(qb);
	CHECK(imsgbuf_queuelen(qb) == 0, "none queued after clear");
	freebuf(qb);
	freebuf(wb);
	freebuf(rb);
	close(pp[0]);
	close(pp[1]);
	close(sv[0]);
	close(sv[1]);
	CHECK(count_fds() == before, "clear closed queued and received fds");
}

/* imsgbuf_flush blocks until a reading child has taken everything. */
static void
test_flush(void)
{
	struct imsgbuf	*wb, *rb;
	struct imsg	 imsg;
	unsigned char	 p[FLUSH_MSG_SIZE];
	int		 sv[2], i, status, next;
	pid_t		 pid;

	mkpair(sv);
	if ((pid = fork()) == -1)
		abort();
	if (pid == 0) {
		close(sv[0]);
		rb = newbuf(sv[1]);
		for (next = 0; next < FLUSH_MSGS; next++) {
			if (recv_one(rb, &imsg) != 1 ||
			    imsg.hdr.peerid != (uint32_t)next ||
			    IMSG_DATA_SIZE(&imsg) != FLUSH_MSG_SIZE)
				_exit(1);
			imsg_free(&imsg);
		}
		freebuf(rb);
		_exit(0);
	}
	close(sv[1]);
	wb = newbuf(sv[0]);
	fill(p, sizeof(p), 3);
	for (i = 0; i < FLUSH_MSGS; i++)
		imsg_compose(wb, IMSG_LOG, i, 0, -1, p, sizeof(p));
	CHECK(imsgbuf_flush(wb) == 0 && imsgbuf_queuelen(wb) == 0,
	    "flush of %d x %d bytes returns with an empty queue",
	    FLUSH_MSGS, FLUSH_MSG_SIZE);
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0, "reader got them all in order");
	freebuf(wb);
	close(sv[0]);
}

struct evside {
	struct imsgev	 es_iev;
	uint32_t	 es_tx;
	uint32_t	 es_rx;
	int		 es_bad;
};

static struct evside	 evsides[2];
static struct event	 ev_timeout;
static int		 ev_timedout;

static void
ev_stop(void)
{
	event_del(&evsides[0].es_iev.ev);
	event_del(&evsides[1].es_iev.ev);
	evtimer_del(&ev_timeout);
}

static void
ev_timeout_cb(int fd, short event, void *arg)
{
	ev_timedout = 1;
	ev_stop();
}

static void
ev_send_some(struct evside *es)
{
	unsigned char	 p[4 + 97];
	size_t		 len;

	while (es->es_tx < EV_MSGS &&
	    imsgbuf_queuelen(&es->es_iev.ibuf) < EV_CHUNK) {
		len = 4 + es->es_tx % 97;
		memcpy(p, &es->es_tx, 4);
		fill(p + 4, len - 4, es->es_tx);
		if (imsg_compose_event(&es->es_iev, IMSG_LOG, es->es_tx, 0,
		    -1, p, len) != 1)
			es->es_bad = 1;
		es->es_tx++;
	}
}

static void
ev_handler(int fd, short event, void *arg)
{
	struct imsgev	*iev = arg;
	struct evside	*es = iev->data;
	struct imsg	 imsg;
	unsigned char	 p[4 + 97];
	size_t		 len;
	ssize_t		 n;

	if (event & EV_READ) {
		n = imsgbuf_read(&iev->ibuf);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
			es->es_bad = 1;
	}
	if ((event & EV_WRITE) && imsgbuf_write(&iev->ibuf) == -1)
		es->es_bad = 1;
	while (!es->es_bad && (n = imsg_get(&iev->ibuf, &imsg)) != 0) {
		if (n == -1) {
			es->es_bad = 1;
			break;
		}
		len = 4 + es->es_rx % 97;
		memcpy(p, &es->es_rx, 4);
		fill(p + 4, len - 4, es->es_rx);
		if (imsg.hdr.peerid != es->es_rx ||
		    IMSG_DATA_SIZE(&imsg) != len ||
		    memcmp(imsg.data, p, len) != 0)
			es->es_bad = 1;
		es->es_rx++;
		imsg_free(&imsg);
	}
	if (evsides[0].es_bad || evsides[1].es_bad) {
		ev_stop();
		return;
	}
	ev_send_some(es);
	if (evsides[0].es_rx == EV_MSGS && evsides[1].es_rx == EV_MSGS &&
	    imsgbuf_queuelen(&evsides[0].es_iev.ibuf) == 0 &&
	    imsgbuf_queuelen(&evsides[1].es_iev.ibuf) == 0) {
		ev_stop();
		return;
	}
	imsg_event_add(iev);
}

static void
test_event(void)
{
	struct timeval	 tv = { EV_TIMEOUT_SEC, 0 };
	int		 sv[2], i;

	mkpair(sv);
	event_init();
	memset(evsides, 0, sizeof(evsides));
	for (i = 0; i < 2; i++) {
		imsgbuf_init(&evsides[i].es_iev.ibuf, sv[i]);
		evsides[i].es_iev.handler = ev_handler;
		evsides[i].es_iev.data = &evsides[i];
		imsg_event_add(&evsides[i].es_iev);
	}
	for (i = 0; i < 2; i++)
		ev_send_some(&evsides[i]);
	evtimer_set(&ev_timeout, ev_timeout_cb, NULL);
	evtimer_add(&ev_timeout, &tv);
	event_dispatch();
	CHECK(!ev_timedout, "event loop finished before the timeout");
	for (i = 0; i < 2; i++)
		CHECK(!evsides[i].es_bad && evsides[i].es_rx == EV_MSGS &&
		    evsides[i].es_tx == EV_MSGS,
		    "imsgev %d: sent and received %d messages in order",
		    i, EV_MSGS);
	for (i = 0; i < 2; i++)
		imsgbuf_clear(&evsides[i].es_iev.ibuf);
	close(sv[0]);
	close(sv[1]);
}

int
main(void)
{
	log_init(1, 0);
	log_procinit("imsg_test");
	test_types();
	test_fdpass();
	test_split();
	test_many();
	test_bounds();
	test_forged();
	test_eof();
	test_partial();
	test_multifd();
	test_emfile();
	test_clear();
	test_flush();
	test_event();
	REGRESS_EXIT();
}
