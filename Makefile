# tvdb — PGXS build. The version is read from tvdb.control (its one home) and
# handed to the C code, so the library and the SQL always agree.
EXTENSION  = tvdb
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" tvdb.control)

# src/ holds what every process of the module uses; src/backend/ what runs in
# application backends (no libcurl there); src/worker/ the background worker's
# loop and mechanics; src/stages/ the pipeline stages; src/chunker/ plain C.
MODULE_big = tvdb
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c src/backend/*.c src/worker/*.c \
                                            src/stages/*.c src/chunker/*.c)))
SHLIB_LINK += -lcurl -lcmark-gfm -lcmark-gfm-extensions

# The install script of the current version is assembled from the files in
# extension/install, in name order. Released versions are frozen as they
# shipped (extension/frozen), and each upgrade script is assembled from
# extension/upgrade/A--B/, in name order (mk/upgrade.sh): a .sql part as it
# is (or a symbolic link to an install file that only creates new objects),
# a .list part naming install statements to copy, so that an object the new
# version changes is written once.
INSTALL_SQL  = extension/$(EXTENSION)--$(EXTVERSION).sql
UPGRADE_DIRS = $(wildcard extension/upgrade/*--*)
UPGRADE_SQL  = $(patsubst extension/upgrade/%,extension/$(EXTENSION)--%.sql,$(UPGRADE_DIRS))
DATA_built   = $(INSTALL_SQL) $(UPGRADE_SQL)
DATA         = $(wildcard extension/frozen/$(EXTENSION)--*.sql)

# pg_regress: every sql/*.sql (sql/ holds tests only).
REGRESS = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --inputdir=. --load-extension=pgcrypto --load-extension=tvdb
ISOLATION = $(basename $(notdir $(wildcard specs/*.spec)))
ISOLATION_OPTS = --load-extension=pgcrypto --load-extension=tvdb

PG_CPPFLAGS = -Isrc -DTVDB_VERSION='"$(EXTVERSION)"' -Wall -Wextra -Werror \
              -Wno-unused-parameter -Wno-missing-field-initializers
EXTRA_CLEAN = $(INSTALL_SQL) $(UPGRADE_SQL) results output_iso regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Every object is rebuilt when any header changes (PGXS tracks no header
# dependencies of its own): a struct laid out two ways is a crash.
$(OBJS): $(wildcard src/*.h src/*/*.h)

# The directories are prerequisites too, so that removing a piece rebuilds.
$(INSTALL_SQL): $(sort $(wildcard extension/install/*.sql)) extension/install
	cat $(filter %.sql,$^) > $@

.SECONDEXPANSION:
$(UPGRADE_SQL): extension/$(EXTENSION)--%.sql: $$(sort $$(wildcard extension/upgrade/%/*.sql extension/upgrade/%/*.list)) \
                                           extension/upgrade/% $(INSTALL_SQL) mk/upgrade.sh
	sh mk/upgrade.sh $(filter extension/upgrade/%.sql extension/upgrade/%.list,$^) > $@ || { rm -f $@; exit 1; }
include mk/webhookd.mk
