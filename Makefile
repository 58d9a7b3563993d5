# tvdb — PGXS build. The version is read from tvdb.control (its one home) and
# handed to the C code, so the library and the SQL always agree.
EXTENSION  = tvdb
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" tvdb.control)

MODULE_big = tvdb
OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c))
SHLIB_LINK += -lcurl -lcmark-gfm -lcmark-gfm-extensions

# The install script is assembled from the files in sql/install, in name order.
INSTALL_SQL = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA_built  = $(INSTALL_SQL)
DATA        = $(wildcard sql/*--*--*.sql)

# pg_regress: every sql/*.sql except the extension scripts.
REGRESS = $(sort $(filter-out $(EXTENSION)--%,$(basename $(notdir $(wildcard sql/*.sql)))))
REGRESS_OPTS = --inputdir=. --load-extension=pgcrypto --load-extension=tvdb
ISOLATION = $(basename $(notdir $(wildcard specs/*.spec)))
ISOLATION_OPTS = --load-extension=pgcrypto --load-extension=tvdb

PG_CPPFLAGS = -DTVDB_VERSION='"$(EXTVERSION)"' -Wall -Wextra -Werror \
              -Wno-unused-parameter -Wno-missing-field-initializers
EXTRA_CLEAN = $(INSTALL_SQL) results output_iso regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(INSTALL_SQL): $(sort $(wildcard sql/install/*.sql))
	cat $^ > $@
include mk/webhookd.mk
