/*
 * usage_days.c — the ledger's cost per UTC day and service
 * (upload_pipeline.usage_days), kept by a statement trigger on the ledger
 * in the statement that writes it.  In C because every request the worker
 * makes writes the ledger twice (before it goes, and with its answer): a
 * statement whose cost does not change, such as the row written before a
 * request, costs a pass over its transition rows and nothing else.
 */
#include "tvdb.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(tvdb_usage_days_kept);

#define MAX_KEYS 64				/* distinct (day, service) in one statement, before a flush */
#define SLOTS 8					/* rows per day and service, by backend */

typedef struct DayCost
{
	DateADT		day;
	char		service[NAMEDATALEN];
	Datum		cost;			/* numeric */
} DayCost;

typedef struct Changes
{
	int			n;
	DayCost		keys[MAX_KEYS];
	AttrNumber	ts,
				service,
				cost;
} Changes;

static void
flush(Changes *c)
{
	static const Oid types[4] = {DATEOID, TEXTOID, INT2OID, NUMERICOID};
	Datum		zero = DirectFunctionCall1(int4_numeric, Int32GetDatum(0));

	if (c->n == 0)
		return;
	tvdb_spi_connect();
	/* the same key order in every backend: no deadlock between two slots' writers */
	for (int i = 0; i < c->n; i++)
		for (int j = i + 1; j < c->n; j++)
			if (c->keys[j].day < c->keys[i].day ||
				(c->keys[j].day == c->keys[i].day && strcmp(c->keys[j].service, c->keys[i].service) < 0))
			{
				DayCost		t = c->keys[i];

				c->keys[i] = c->keys[j];
				c->keys[j] = t;
			}
	for (int i = 0; i < c->n; i++)
	{
		Datum		values[4];

		if (DatumGetBool(DirectFunctionCall2(numeric_eq, c->keys[i].cost, zero)))
			continue;
		values[0] = DateADTGetDatum(c->keys[i].day);
		values[1] = CStringGetTextDatum(c->keys[i].service);
		values[2] = Int16GetDatum(MyProcPid % SLOTS);
		values[3] = c->keys[i].cost;
		tvdb_spi_run("INSERT INTO upload_pipeline.usage_days AS d (day, service, slot, cost_usd) "
					 "VALUES ($1, $2, $3, $4) ON CONFLICT (day, service, slot) "
					 "DO UPDATE SET cost_usd = d.cost_usd + excluded.cost_usd",
					 4, types, values, NULL, SPI_OK_INSERT);
	}
	tvdb_spi_finish();
	c->n = 0;
}

/* Add each row's cost (negated for old rows) to its day and service. */
static void
add_rows(Changes *c, Tuplestorestate *rows, TupleDesc desc, bool negate)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	Datum		zero = DirectFunctionCall1(int4_numeric, Int32GetDatum(0));

	tuplestore_rescan(rows);
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		bool		null_ts,
					null_service,
					null_cost;
		Datum		cost = slot_getattr(slot, c->cost, &null_cost);
		TimestampTz ts = DatumGetTimestampTz(slot_getattr(slot, c->ts, &null_ts));
		Datum		service = slot_getattr(slot, c->service, &null_service);
		DateADT		day;
		char	   *name;
		int			k;

		if (null_cost || null_ts || null_service)
			continue;
		if (DatumGetBool(DirectFunctionCall2(numeric_eq, cost, zero)))
			continue;
		/* TimestampTz and DateADT both count from 2000-01-01 UTC */
		day = (DateADT) (ts / USECS_PER_DAY - (ts < 0 && ts % USECS_PER_DAY != 0 ? 1 : 0));
		name = TextDatumGetCString(service);
		for (k = 0; k < c->n; k++)
			if (c->keys[k].day == day && strcmp(c->keys[k].service, name) == 0)
				break;
		if (k == c->n)
		{
			if (c->n == MAX_KEYS)
			{
				flush(c);
				k = 0;
			}
			c->keys[k].day = day;
			strlcpy(c->keys[k].service, name, NAMEDATALEN);
			c->keys[k].cost = zero;
			c->n = k + 1;
		}
		c->keys[k].cost = DirectFunctionCall2(negate ? numeric_sub : numeric_add, c->keys[k].cost, cost);
	}
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * tvdb._usage_days_kept() — AFTER INSERT, UPDATE, DELETE (with transition
 * tables) and TRUNCATE on upload_pipeline.usage, FOR EACH STATEMENT.
 */
Datum
tvdb_usage_days_kept(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	Changes    *c;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tvdb._usage_days_kept() must be a statement trigger on upload_pipeline.usage"),
				 errhint("It is created with the extension; do not call it.")));
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		tvdb_spi_connect();
		tvdb_spi_run("DELETE FROM upload_pipeline.usage_days", 0, NULL, NULL, NULL, SPI_OK_DELETE);
		tvdb_spi_finish();
		return PointerGetDatum(NULL);
	}
	desc = RelationGetDescr(td->tg_relation);
	c = palloc0(sizeof(Changes));
	c->ts = SPI_fnumber(desc, "ts");
	c->service = SPI_fnumber(desc, "service");
	c->cost = SPI_fnumber(desc, "cost_usd");
	if (c->ts <= 0 || c->service <= 0 || c->cost <= 0)
		elog(ERROR, "tvdb: upload_pipeline.usage lacks ts, service or cost_usd");
	if (td->tg_newtable != NULL)
		add_rows(c, td->tg_newtable, desc, false);
	if (td->tg_oldtable != NULL)
		add_rows(c, td->tg_oldtable, desc, true);
	flush(c);
	pfree(c);
	return PointerGetDatum(NULL);
}
