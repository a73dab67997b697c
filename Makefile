# monalpushd: plain Makefile for GNU make (Linux) and BSD make users
# who call gmake.  Libraries come through pkg-config.

PROG=		monalpushd
CTL=		monalpushctl/monalpushctl
PREFIX?=	/usr/local
BINDIR?=	$(PREFIX)/sbin
MANDIR?=	$(PREFIX)/share/man
EXAMPLEDIR?=	$(PREFIX)/share/examples/monalpushd
DESTDIR?=

CC?=		cc
YACC=		byacc
PKG_CONFIG?=	pkg-config

PKGS=		libevent libtls libnghttp2 expat libunbound libbsd-overlay \
		libcrypto
PKG_CFLAGS:=	$(shell $(PKG_CONFIG) --cflags $(PKGS))
PKG_LIBS:=	$(shell $(PKG_CONFIG) --libs $(PKGS))
# Debian's libdb5.3-dev ships no .pc file; use one when there is one.
DB_LIBS:=	$(shell $(PKG_CONFIG) --libs libdb-5.3 2>/dev/null || echo -ldb-5.3)
DB_CFLAGS:=	$(shell $(PKG_CONFIG) --cflags libdb-5.3 2>/dev/null)

CFLAGS?=	-O2 -g
CFLAGS+=	-Wall -Wextra -Werror -Wno-unused-parameter
CPPFLAGS+=	-I. -Icompat $(PKG_CFLAGS) $(DB_CFLAGS) -D_GNU_SOURCE
LDLIBS+=	$(PKG_LIBS) $(DB_LIBS) -lm

# Objects of the daemon; each process and each concern its own file.
LIBOBJS=	imsg.o log.o config.o parse.o sandbox.o registry.o apns.o \
		apnsmsg.o apnsdns.o h2.o jwt.o xml.o
PROCOBJS=	parent.o push.o control.o logd.o xmppe.o apnse.o proc.o \
		appserver.o s2s.o s2s_conf.o s2s_io.o s2s_in.o s2s_out.o \
		dialback.o s2s_cert.o dns.o sar.o
MAINOBJ=	monalpushd.o

# The test build: same sources, plus the forbidden-act handler.
TESTDIR=	regress/obj
TESTPROCOBJS=	$(addprefix $(TESTDIR)/,$(PROCOBJS) $(MAINOBJ))

all: $(PROG) $(CTL)

parse.c: parse.y
	$(YACC) -o $@ parse.y

libmonalpushd.a: $(LIBOBJS)
	rm -f $@
	$(AR) rcs $@ $(LIBOBJS)

$(PROG): $(MAINOBJ) $(PROCOBJS) libmonalpushd.a
	$(CC) $(LDFLAGS) -o $@ $(MAINOBJ) $(PROCOBJS) libmonalpushd.a $(LDLIBS)

$(TESTDIR)/%.o: %.c monalpushd.h
	@mkdir -p $(TESTDIR)
	$(CC) $(CPPFLAGS) -DMONALPUSHD_TEST $(CFLAGS) -c -o $@ $<

regress/monalpushd-test: $(TESTPROCOBJS) libmonalpushd.a
	$(CC) $(LDFLAGS) -o $@ $(TESTPROCOBJS) libmonalpushd.a $(LDLIBS)

%.o: %.c monalpushd.h
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

CTLOBJS=	monalpushctl/monalpushctl.o monalpushctl/parser.o
monalpushctl/%.o: monalpushctl/%.c monalpushctl/parser.h monalpushd.h
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<
$(CTL): $(CTLOBJS) libmonalpushd.a
	$(CC) $(LDFLAGS) -o $@ $(CTLOBJS) libmonalpushd.a $(LDLIBS)

# Private headers of the files split by concern.
S2SOBJS=	s2s.o s2s_conf.o s2s_io.o s2s_in.o s2s_out.o dialback.o s2s_cert.o
$(S2SOBJS) $(addprefix $(TESTDIR)/,$(S2SOBJS)): s2s.h
apns.o h2.o apnsdns.o: apns.h

include regress/Makefile.inc
include bench/Makefile.inc

# Set-up first (packages, user), then a fresh make that sees the
# libraries pkg-config now finds, then every test.
test:
	@sh scripts/setup.sh
	@$(MAKE) --no-print-directory all regress
	@sh regress/run.sh

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(EXAMPLEDIR)
	install -m 0555 $(PROG) $(CTL) $(DESTDIR)$(BINDIR)/
	install -m 0444 monalpushd.8 monalpushctl/monalpushctl.8 \
	    $(DESTDIR)$(MANDIR)/man8/
	install -m 0444 monalpush.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0444 monalpush.conf $(DESTDIR)$(EXAMPLEDIR)/
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
		sh scripts/adduser.sh; \
	else \
		echo "install: create the user $(MONALPUSHD_USER) yourself (scripts/adduser.sh)"; \
	fi

lint:
	mandoc -Tlint -Wwarning monalpushd.8 monalpush.conf.5 \
	    monalpushctl/monalpushctl.8

clean: regress-clean bench-clean
	rm -f $(PROG) $(CTL) *.o monalpushctl/*.o parse.c libmonalpushd.a
	rm -rf $(TESTDIR) regress/fuzz/out

.PHONY: all test install lint clean regress demo fuzz

demo:
	@sh scripts/demo.sh

# libFuzzer targets (clang): FUZZ_SECONDS each, default 60.
fuzz:
	@sh regress/fuzz/run.sh
MONALPUSHD_USER=_monalpush
