# tvdb-webhookd — the HTTP receiver for parser callbacks, a plain program
# built next to the extension (it runs outside the postmaster on purpose).
# Included at the end of the top Makefile, after PGXS, whose all / install /
# clean / uninstall targets get extra prerequisites here.  It is compiled and
# linked in one step with its own flags, not PGXS's (which are for the
# server module), against libpq and libmicrohttpd.

WEBHOOKD      = src/webhookd/tvdb-webhookd
WEBHOOKD_SRCS = $(sort $(wildcard src/webhookd/*.c))
WEBHOOKD_HDRS = $(filter-out $(WEBHOOKD_ASSETS),$(wildcard src/webhookd/*.h))
# the dashboard's page and script, compiled in: nothing to find at run time
WEBHOOKD_PAGES  = src/webhookd/page/dashboard.html src/webhookd/page/dashboard.js
WEBHOOKD_ASSETS = src/webhookd/page_assets.h

WEBHOOKD_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Werror -pthread \
	-DTVDB_VERSION='"$(EXTVERSION)"' \
	-I$(shell $(PG_CONFIG) --includedir) \
	$(shell pkg-config --cflags libmicrohttpd 2>/dev/null)
WEBHOOKD_LIBS := -L$(shell $(PG_CONFIG) --libdir) -lpq \
	$(or $(shell pkg-config --libs libmicrohttpd 2>/dev/null),-lmicrohttpd) -pthread

.PHONY: tvdb-webhookd-build install-webhookd uninstall-webhookd clean-webhookd

all: tvdb-webhookd-build
install: install-webhookd
uninstall: uninstall-webhookd
clean: clean-webhookd

tvdb-webhookd-build: $(WEBHOOKD)

$(WEBHOOKD_ASSETS): $(WEBHOOKD_PAGES) mk/embed.sh
	sh mk/embed.sh $(WEBHOOKD_PAGES) > $@ || { rm -f $@; exit 1; }

$(WEBHOOKD): $(WEBHOOKD_SRCS) $(WEBHOOKD_HDRS) $(WEBHOOKD_ASSETS)
	$(CC) $(WEBHOOKD_CFLAGS) -o $@ $(WEBHOOKD_SRCS) $(WEBHOOKD_LIBS)

install-webhookd: $(WEBHOOKD)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(WEBHOOKD) '$(DESTDIR)$(bindir)/tvdb-webhookd'

uninstall-webhookd:
	rm -f '$(DESTDIR)$(bindir)/tvdb-webhookd'

clean-webhookd:
	rm -f $(WEBHOOKD) $(WEBHOOKD_ASSETS)
