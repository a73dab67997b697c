/*
 * Landlock names newer than the kernel headers a system may ship:
 * Debian 12's linux-libc-dev is 6.1 (Landlock ABI 2), while the kernel
 * it runs on may speak a later ABI.  sandbox.c probes the ABI at run
 * time and only uses what the kernel reports; this header only names it.
 */

#ifndef COMPAT_LANDLOCK_H
#define COMPAT_LANDLOCK_H

#include <linux/types.h>
#include <sys/syscall.h>

#if defined(__has_include)
#if __has_include(<linux/landlock.h>)
#include <linux/landlock.h>
#endif
#endif

/* The same numbers on every architecture (added in 5.13). */
#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset		444
#define __NR_landlock_add_rule			445
#define __NR_landlock_restrict_self		446
#endif

#ifndef LANDLOCK_CREATE_RULESET_VERSION
#define LANDLOCK_CREATE_RULESET_VERSION		(1U << 0)
#endif

/* Headers older than 5.13 have no <linux/landlock.h> at all. */
#ifndef _LINUX_LANDLOCK_H
#define LANDLOCK_RULE_PATH_BENEATH		1
struct landlock_path_beneath_attr {
	__u64	allowed_access;
	__s32	parent_fd;
} __attribute__((packed));
#endif

/* ABI 1 */
#ifndef LANDLOCK_ACCESS_FS_EXECUTE
#define LANDLOCK_ACCESS_FS_EXECUTE		(1ULL << 0)
#define LANDLOCK_ACCESS_FS_WRITE_FILE		(1ULL << 1)
#define LANDLOCK_ACCESS_FS_READ_FILE		(1ULL << 2)
#define LANDLOCK_ACCESS_FS_READ_DIR		(1ULL << 3)
#define LANDLOCK_ACCESS_FS_REMOVE_DIR		(1ULL << 4)
#define LANDLOCK_ACCESS_FS_REMOVE_FILE		(1ULL << 5)
#define LANDLOCK_ACCESS_FS_MAKE_CHAR		(1ULL << 6)
#define LANDLOCK_ACCESS_FS_MAKE_DIR		(1ULL << 7)
#define LANDLOCK_ACCESS_FS_MAKE_REG		(1ULL << 8)
#define LANDLOCK_ACCESS_FS_MAKE_SOCK		(1ULL << 9)
#define LANDLOCK_ACCESS_FS_MAKE_FIFO		(1ULL << 10)
#define LANDLOCK_ACCESS_FS_MAKE_BLOCK		(1ULL << 11)
#define LANDLOCK_ACCESS_FS_MAKE_SYM		(1ULL << 12)
#endif
/* ABI 2 (5.19) */
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER		(1ULL << 13)
#endif
/* ABI 3 (6.2) */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE		(1ULL << 14)
#endif
/* ABI 4 (6.7): TCP bind and connect */
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP		(1ULL << 0)
#define LANDLOCK_ACCESS_NET_CONNECT_TCP		(1ULL << 1)
#endif
/* ABI 5 (6.10) */
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV		(1ULL << 15)
#endif
/* ABI 6 (6.12): IPC scoping */
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET	(1ULL << 0)
#define LANDLOCK_SCOPE_SIGNAL			(1ULL << 1)
#endif

/*
 * struct landlock_ruleset_attr as of ABI 6.  Older headers declare only
 * the first member under the kernel's name, so this one has its own; a
 * kernel takes the size it is given and wants the unknown tail zero.
 */
struct compat_landlock_ruleset_attr {
	__u64	handled_access_fs;
	__u64	handled_access_net;	/* ABI 4 */
	__u64	scoped;			/* ABI 6 */
};
#define COMPAT_LANDLOCK_ATTR_SIZE_FS	sizeof(__u64)
#define COMPAT_LANDLOCK_ATTR_SIZE_NET	(2 * sizeof(__u64))
#define COMPAT_LANDLOCK_ATTR_SIZE_SCOPE	(3 * sizeof(__u64))

#endif /* COMPAT_LANDLOCK_H */
