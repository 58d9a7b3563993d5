-- Everything CREATE EXTENSION tvdb made, as text, one object a line (or a
-- few), in a stable order: two databases describe the same schema exactly
-- when their outputs are equal. Names, not oids.
WITH ext AS (
    SELECT oid, extconfig, extcondition, extversion FROM pg_extension WHERE extname = 'tvdb'
), member AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
), rel AS (
    SELECT c.* FROM pg_class c JOIN member m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
), lines AS (
    SELECT 'version ' || extversion AS line FROM ext
    UNION ALL
    SELECT 'config ' || c::regclass::text || ' ' || coalesce(ext.extcondition[i], '')
    FROM ext, generate_subscripts(ext.extconfig, 1) i, LATERAL (SELECT ext.extconfig[i] AS c) x
    UNION ALL
    SELECT 'member ' || pg_describe_object(m.classid, m.objid, 0) FROM member m
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure::text || E'\n' || pg_get_functiondef(p.oid)
           || E'\nacl ' || coalesce(p.proacl::text, '-')
           || E'\ncomment ' || coalesce(obj_description(p.oid, 'pg_proc'), '-')
    FROM pg_proc p JOIN member m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
    WHERE p.prokind <> 'a'
    UNION ALL
    SELECT 'relation ' || c.oid::regclass::text || ' kind ' || c.relkind::text::text
           || ' acl ' || coalesce(c.relacl::text, '-') || ' options ' || coalesce(c.reloptions::text, '-')
           || ' rls ' || c.relrowsecurity || '/' || c.relforcerowsecurity
           || ' comment ' || coalesce(obj_description(c.oid, 'pg_class'), '-')
           || CASE WHEN c.relkind = 'v' THEN E'\n' || pg_get_viewdef(c.oid) ELSE '' END
    FROM rel c
    UNION ALL
    SELECT 'column ' || c.oid::regclass::text || ' ' || a.attnum_rank || ' ' || a.attname || ' '
           || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || ' identity ' || a.attidentity::text || ' generated ' || a.attgenerated::text
           || ' default ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-')
           || ' acl ' || coalesce(a.attacl::text, '-')
           || ' comment ' || coalesce(col_description(c.oid, a.attnum), '-')
    FROM rel c
    JOIN (SELECT *, rank() OVER (PARTITION BY attrelid ORDER BY attnum) AS attnum_rank
          FROM pg_attribute WHERE attnum > 0 AND NOT attisdropped) a ON a.attrelid = c.oid
    LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
    UNION ALL
    SELECT 'constraint ' || c.oid::regclass::text || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
    FROM rel c JOIN pg_constraint k ON k.conrelid = c.oid
    UNION ALL
    SELECT 'index ' || c.oid::regclass::text || ' ' || pg_get_indexdef(i.indexrelid)
    FROM rel c JOIN pg_index i ON i.indrelid = c.oid
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
    FROM rel c JOIN pg_trigger t ON t.tgrelid = c.oid WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'policy ' || c.oid::regclass::text || ' ' || p.polname || ' ' || p.polcmd::text || ' '
           || p.polroles::regrole[]::text || ' ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '-')
           || ' ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '-')
    FROM rel c JOIN pg_policy p ON p.polrelid = c.oid
    UNION ALL
    SELECT 'sequence ' || s.seqrelid::regclass::text || ' ' || format_type(s.seqtypid, NULL) || ' '
           || s.seqstart || ' ' || s.seqincrement || ' ' || s.seqmin || ' ' || s.seqmax || ' ' || s.seqcache
    FROM rel c JOIN pg_sequence s ON s.seqrelid = c.oid
    UNION ALL
    SELECT 'event trigger ' || e.evtname || ' ' || e.evtevent || ' ' || coalesce(e.evttags::text, '-')
           || ' ' || e.evtfoid::regproc::text || ' enabled ' || e.evtenabled::text
    FROM pg_event_trigger e JOIN member m ON m.classid = 'pg_event_trigger'::regclass AND m.objid = e.oid
    UNION ALL
    SELECT 'schema ' || n.nspname || ' acl ' || coalesce(n.nspacl::text, '-')
           || ' comment ' || coalesce(obj_description(n.oid, 'pg_namespace'), '-')
    FROM pg_namespace n JOIN member m ON m.classid = 'pg_namespace'::regclass AND m.objid = n.oid
    UNION ALL
    SELECT 'type ' || t.oid::regtype::text || ' ' || t.typtype::text
    FROM pg_type t JOIN member m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
    UNION ALL
    SELECT 'init privs ' || pg_describe_object(i.classoid, i.objoid, i.objsubid) || ' ' || i.privtype::text
           || ' ' || i.initprivs::text
    FROM pg_init_privs i JOIN member m ON m.objid = i.objoid AND m.classid = i.classoid
)
SELECT line FROM lines ORDER BY line;
