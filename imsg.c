/*
 * The imsg framing between the processes: a 16-byte header, at most
 * MAX_IMSG_PAYLOAD bytes of payload and at most one descriptor per
 * message, over a non-blocking AF_UNIX stream socket.  Modelled on
 * OpenBSD's imsg(3); written for monalpushd.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monalpushd.h"

/*
 * Room for more descriptors than we accept, so that a peer sending
 * several is caught (and they are closed) instead of silently cut.
 */
#define IMSG_RECV_FDS_MAX	4
#define IMSG_IOV_MAX		64	/* queued buffers per sendmsg */

#ifndef MSG_CMSG_CLOEXEC
#define MSG_CMSG_CLOEXEC	0
#endif

static void	 msgbuf_drain(struct msgbuf *, size_t);
static void	 ibuf_free(struct ibuf *);
static int	 imsg_fd_available(int);
static int	 imsg_recv_fds(struct msghdr *, int *);

void
imsgbuf_init(struct imsgbuf *ibuf, int fd)
{
	int	 flags;

	if ((flags = fcntl(fd, F_GETFL)) == -1)
		fatal("%s: fcntl F_GETFL", __func__);
	if ((flags & O_NONBLOCK) == 0 &&
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1)
		fatal("%s: fcntl F_SETFL", __func__);
	ibuf->fd = fd;
	ibuf->pid = getpid();
	TAILQ_INIT(&ibuf->w.bufs);
	ibuf->w.queued = 0;
	ibuf->w.bytes = 0;
	ibuf->r_wpos = ibuf->r_rpos = 0;
	TAILQ_INIT(&ibuf->fds);
}

void
imsgbuf_clear(struct imsgbuf *ibuf)
{
	struct ibuf	*b;
	struct imsg_fd	*ifd;

	while ((b = TAILQ_FIRST(&ibuf->w.bufs)) != NULL) {
		TAILQ_REMOVE(&ibuf->w.bufs, b, entry);
		ibuf_free(b);
	}
	ibuf->w.queued = 0;
	ibuf->w.bytes = 0;
	while ((ifd = TAILQ_FIRST(&ibuf->fds)) != NULL) {
		TAILQ_REMOVE(&ibuf->fds, ifd, entry);
		close(ifd->fd);
		free(ifd);
	}
	ibuf->r_wpos = ibuf->r_rpos = 0;
}

/*
 * A descriptor that arrives while the table is full is dropped by the
 * kernel after its bytes were consumed, and the stream would be out
 * of step with its descriptors.  So only read when one slot is free.
 */
static int
imsg_fd_available(int fd)
{
	int	 probe;

	if ((probe = fcntl(fd, F_DUPFD_CLOEXEC, 0)) == -1) {
		if (errno == EMFILE || errno == ENFILE)
			errno = EAGAIN;
		return (-1);
	}
	close(probe);
	return (0);
}

/* Returns the one descriptor of the message in *fdp, -1 on errors. */
static int
imsg_recv_fds(struct msghdr *msg, int *fdp)
{
	struct cmsghdr	*cmsg;
	int		*fds, bad = 0;
	size_t		 i, n;

	*fdp = -1;
	for (cmsg = CMSG_FIRSTHDR(msg); cmsg != NULL;
	    cmsg = CMSG_NXTHDR(msg, cmsg)) {
		if (cmsg->cmsg_level != SOL_SOCKET ||
		    cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		fds = (int *)CMSG_DATA(cmsg);
		n = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			if (*fdp == -1 && !bad)
				*fdp = fds[i];
			else {
				close(fds[i]);
				bad = 1;
			}
		}
	}
	if (msg->msg_flags & MSG_CTRUNC)
		bad = 1;
	if (bad) {
		if (*fdp != -1)
			close(*fdp);
		*fdp = -1;
		return (-1);
	}
	return (0);
}

ssize_t
imsgbuf_read(struct imsgbuf *ibuf)
{
	struct msghdr	 msg;
	struct iovec	 iov;
	struct imsg_fd	*ifd;
	union {
		struct cmsghdr	 hdr;
		char		 buf[CMSG_SPACE(sizeof(int) *
				    IMSG_RECV_FDS_MAX)];
	} cmsgbuf;
	ssize_t		 n;
	int		 fd;

	if (ibuf->r_rpos > 0) {
		memmove(ibuf->r_buf, ibuf->r_buf + ibuf->r_rpos,
		    ibuf->r_wpos - ibuf->r_rpos);
		ibuf->r_wpos -= ibuf->r_rpos;
		ibuf->r_rpos = 0;
	}
	if (ibuf->r_wpos == sizeof(ibuf->r_buf)) {
		errno = ENOBUFS;
		return (-1);
	}
	if (imsg_fd_available(ibuf->fd) == -1)
		return (-1);
	/* Allocated first: a received descriptor must not be lost. */
	if ((ifd = calloc(1, sizeof(*ifd))) == NULL)
		return (-1);

	memset(&msg, 0, sizeof(msg));
	memset(&cmsgbuf, 0, sizeof(cmsgbuf));
	iov.iov_base = ibuf->r_buf + ibuf->r_wpos;
	iov.iov_len = sizeof(ibuf->r_buf) - ibuf->r_wpos;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cmsgbuf.buf;
	msg.msg_controllen = sizeof(cmsgbuf.buf);

	do {
		n = recvmsg(ibuf->fd, &msg, MSG_CMSG_CLOEXEC);
	} while (n == -1 && errno == EINTR);
	if (n == -1) {
		free(ifd);
		return (-1);
	}
	if (imsg_recv_fds(&msg, &fd) == -1) {
		free(ifd);
		errno = EBADMSG;
		return (-1);
	}
	if (fd != -1) {
		ifd->fd = fd;
		TAILQ_INSERT_TAIL(&ibuf->fds, ifd, entry);
	} else
		free(ifd);
	ibuf->r_wpos += n;
	return (n);
}

ssize_t
imsg_get(struct imsgbuf *ibuf, struct imsg *imsg)
{
	struct imsg_hdr	 hdr;
	struct imsg_fd	*ifd;
	size_t		 avail, datalen;

	avail = ibuf->r_wpos - ibuf->r_rpos;
	if (avail < IMSG_HEADER_SIZE)
		return (0);
	memcpy(&hdr, ibuf->r_buf + ibuf->r_rpos, sizeof(hdr));
	if (hdr.len < IMSG_HEADER_SIZE ||
	    hdr.len > IMSG_HEADER_SIZE + MAX_IMSG_PAYLOAD ||
	    (hdr.flags & ~IMSGF_HASFD) != 0) {
		errno = EBADMSG;
		return (-1);
	}
	if (avail < hdr.len)
		return (0);

	ifd = NULL;
	if (hdr.flags & IMSGF_HASFD) {
		/* Its descriptor came with its first byte, or it is lost. */
		if ((ifd = TAILQ_FIRST(&ibuf->fds)) == NULL) {
			errno = EBADMSG;
			return (-1);
		}
	}
	datalen = hdr.len - IMSG_HEADER_SIZE;
	imsg->data = NULL;
	if (datalen > 0) {
		if ((imsg->data = malloc(datalen)) == NULL)
			return (-1);
		memcpy(imsg->data, ibuf->r_buf + ibuf->r_rpos +
		    IMSG_HEADER_SIZE, datalen);
	}
	imsg->hdr = hdr;
	imsg->fd = -1;
	if (ifd != NULL) {
		imsg->fd = ifd->fd;
		TAILQ_REMOVE(&ibuf->fds, ifd, entry);
		free(ifd);
	}
	ibuf->r_rpos += hdr.len;
	if (ibuf->r_rpos == ibuf->r_wpos)
		ibuf->r_rpos = ibuf->r_wpos = 0;
	return (hdr.len);
}

void
imsg_free(struct imsg *imsg)
{
	free(imsg->data);
	imsg->data = NULL;
}

/*
 * The descriptor belongs to the queue from the call on: it is closed
 * once sent, or here when the message cannot be queued.
 */
int
imsg_composev(struct imsgbuf *ibuf, uint32_t type, uint32_t peerid,
    pid_t pid, int fd, const struct iovec *iov, int iovcnt)
{
	struct imsg_hdr	 hdr;
	struct ibuf	*b;
	size_t		 datalen = 0, off;
	int		 i, saved_errno;

	if (iovcnt < 0 || (iovcnt > 0 && iov == NULL)) {
		errno = EINVAL;
		goto fail;
	}
	for (i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > 0 && iov[i].iov_base == NULL) {
			errno = EINVAL;
			goto fail;
		}
		if (iov[i].iov_len > MAX_IMSG_PAYLOAD - datalen) {
			errno = ERANGE;
			goto fail;
		}
		datalen += iov[i].iov_len;
	}

	memset(&hdr, 0, sizeof(hdr));
	hdr.type = type;
	hdr.len = IMSG_HEADER_SIZE + datalen;
	hdr.flags = fd != -1 ? IMSGF_HASFD : 0;
	hdr.peerid = peerid;
	hdr.pid = pid != 0 ? pid : ibuf->pid;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		goto fail;
	if ((b->buf = malloc(hdr.len)) == NULL) {
		free(b);
		goto fail;
	}
	b->size = hdr.len;
	b->fd = fd;
	memcpy(b->buf, &hdr, sizeof(hdr));
	off = sizeof(hdr);
	for (i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len == 0)
			continue;
		memcpy(b->buf + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	TAILQ_INSERT_TAIL(&ibuf->w.bufs, b, entry);
	ibuf->w.queued++;
	ibuf->w.bytes += b->size;
	return (1);

 fail:
	if (fd != -1) {
		saved_errno = errno;
		close(fd);
		errno = saved_errno;
	}
	return (-1);
}

int
imsg_compose(struct imsgbuf *ibuf, uint32_t type, uint32_t peerid,
    pid_t pid, int fd, const void *data, size_t datalen)
{
	struct iovec	 iov;

	if (datalen > MAX_IMSG_PAYLOAD) {
		if (fd != -1)
			close(fd);
		errno = ERANGE;
		return (-1);
	}
	iov.iov_base = (void *)data;
	iov.iov_len = datalen;
	return (imsg_composev(ibuf, type, peerid, pid, fd, &iov,
	    datalen > 0 ? 1 : 0));
}

static void
ibuf_free(struct ibuf *b)
{
	if (b->fd != -1)
		close(b->fd);
	free(b->buf);
	free(b);
}

static void
msgbuf_drain(struct msgbuf *w, size_t n)
{
	struct ibuf	*b;
	size_t		 left;

	while (n > 0 && (b = TAILQ_FIRST(&w->bufs)) != NULL) {
		left = b->size - b->wpos;
		if (n < left) {
			b->wpos += n;
			w->bytes -= n;
			return;
		}
		n -= left;
		w->bytes -= left;
		w->queued--;
		TAILQ_REMOVE(&w->bufs, b, entry);
		ibuf_free(b);
	}
}

/*
 * One sendmsg carries at most one descriptor, attached to the first
 * byte of its message: the receiver then pairs them in order.
 */
int
imsgbuf_write(struct imsgbuf *ibuf)
{
	struct msghdr	 msg;
	struct iovec	 iov[IMSG_IOV_MAX];
	struct ibuf	*b, *first;
	struct cmsghdr	*cmsg;
	union {
		struct cmsghdr	 hdr;
		char		 buf[CMSG_SPACE(sizeof(int))];
	} cmsgbuf;
	ssize_t		 n;
	int		 i;

	while ((first = TAILQ_FIRST(&ibuf->w.bufs)) != NULL) {
		i = 0;
		TAILQ_FOREACH(b, &ibuf->w.bufs, entry) {
			if (i == IMSG_IOV_MAX || (b != first && b->fd != -1))
				break;
			iov[i].iov_base = b->buf + b->wpos;
			iov[i].iov_len = b->size - b->wpos;
			i++;
		}
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		msg.msg_iovlen = i;
		if (first->fd != -1) {
			memset(&cmsgbuf, 0, sizeof(cmsgbuf));
			msg.msg_control = cmsgbuf.buf;
			msg.msg_controllen = sizeof(cmsgbuf.buf);
			cmsg = CMSG_FIRSTHDR(&msg);
			cmsg->cmsg_len = CMSG_LEN(sizeof(int));
			cmsg->cmsg_level = SOL_SOCKET;
			cmsg->cmsg_type = SCM_RIGHTS;
			memcpy(CMSG_DATA(cmsg), &first->fd, sizeof(int));
		}
		if ((n = sendmsg(ibuf->fd, &msg, MSG_NOSIGNAL)) == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == ENOBUFS)
				return (0);
			return (-1);
		}
		if (first->fd != -1) {
			close(first->fd);
			first->fd = -1;
		}
		msgbuf_drain(&ibuf->w, n);
	}
	return (0);
}

int
imsgbuf_flush(struct imsgbuf *ibuf)
{
	struct pollfd	 pfd;

	while (ibuf->w.queued > 0) {
		if (imsgbuf_write(ibuf) == -1)
			return (-1);
		if (ibuf->w.queued == 0)
			break;
		pfd.fd = ibuf->fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, -1) == -1 && errno != EINTR)
			return (-1);
	}
	return (0);
}

uint32_t
imsgbuf_queuelen(struct imsgbuf *ibuf)
{
	return (ibuf->w.queued);
}

void
imsg_event_add(struct imsgev *iev)
{
	short	 want;

	if (iev->handler == NULL) {
		imsgbuf_flush(&iev->ibuf);
		return;
	}
	/*
	 * Persistent, and changed only when write interest changes: a
	 * channel busy with small messages would otherwise cost two
	 * epoll_ctl calls per callback.
	 */
	want = EV_READ | EV_PERSIST;
	if (imsgbuf_queuelen(&iev->ibuf) > 0)
		want |= EV_WRITE;
	if (event_initialized(&iev->ev)) {
		if (iev->events == want &&
		    event_pending(&iev->ev, EV_READ, NULL))
			return;
		event_del(&iev->ev);
	}
	iev->events = want;
	event_set(&iev->ev, iev->ibuf.fd, iev->events, iev->handler, iev);
	event_add(&iev->ev, NULL);
}

int
imsg_compose_event(struct imsgev *iev, uint32_t type, uint32_t peerid,
    pid_t pid, int fd, const void *data, size_t datalen)
{
	int	 ret;

	if ((ret = imsg_compose(&iev->ibuf, type, peerid, pid, fd, data,
	    datalen)) != -1)
		imsg_event_add(iev);
	return (ret);
}

int
imsg_composev_event(struct imsgev *iev, uint32_t type, uint32_t peerid,
    pid_t pid, int fd, const struct iovec *iov, int iovcnt)
{
	int	 ret;

	if ((ret = imsg_composev(&iev->ibuf, type, peerid, pid, fd, iov,
	    iovcnt)) != -1)
		imsg_event_add(iev);
	return (ret);
}
