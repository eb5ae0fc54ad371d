-- Stats rollups: what GET /{tenant}/stats reads instead of scanning `events`.
--
-- Maintained by statement-level triggers on `events` and a row trigger on `emails`, in
-- the transaction that changes the rows. A trigger's transition table holds only the rows
-- the statement really inserted, updated or deleted: a redelivered batch (ON CONFLICT DO
-- NOTHING) adds nothing, a verdict relabel moves a count from human to machine, and
-- retention or erasure (DELETE) takes its rows out. Partitions dropped whole fire no
-- trigger: retention calls belfry_stats_forget_partition() first.
--
-- Every figure is exact; days and hours are UTC.
-- * stats_hour: events per tenant, hour, kind and reason ('' = human, i.e. a verdict
--   other than machine; else the machine reason, 'unknown' when none), and emails
--   registered per hour (kind 'email').
-- * stats_link_day: clicks and human clicks per tenant, day and URL.
-- * stats_activity: per tenant, email, key and day, how many events: key 'o' any open,
--   'ho' human open, 'c' any click, 'hc' human click, 'u<md5 of url>' a click on that URL;
--   the first and last of them, the email's next active day and the last event of its
--   previous active day: whether an email active in a partial day at either end of a
--   range was active elsewhere in the range is then read from that day's rows alone.
-- * stats_uniq: per tenant, key and day, how many emails were active that day, split by
--   the email's previous active day (prev_day, '-infinity' for none). The emails active in
--   days [A, B) are the (email, day) pairs in [A, B) whose previous day is before A: a
--   sum over at most days x days cells, however many emails there are.
-- * stats_email: per email, its registration and first human open and click.

CREATE TABLE stats_hour (
    tenant_id text NOT NULL,
    hour      timestamptz NOT NULL,
    kind      text NOT NULL,
    reason    text NOT NULL,
    n         bigint NOT NULL,
    PRIMARY KEY (tenant_id, hour, kind, reason)
);

CREATE TABLE stats_link_day (
    tenant_id    text NOT NULL,
    day          date NOT NULL,
    url_key      uuid NOT NULL,  -- md5(url): URLs up to 2 KiB do not fit a btree key
    url          text NOT NULL,
    clicks       bigint NOT NULL,
    human_clicks bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, url_key)
);

CREATE TABLE stats_activity (
    tenant_id text NOT NULL,
    email_id  text NOT NULL,
    key       text NOT NULL,
    day       date NOT NULL,
    n         integer NOT NULL,
    first_at  timestamptz,
    last_at   timestamptz,
    next_day  date,
    prev_last_at timestamptz,
    PRIMARY KEY (tenant_id, email_id, key, day)
);
-- The stats' partial days read one day of one key. Indexed on an expression that only
-- that query names: the triggers' lookups by email must never be planned on this index.
CREATE INDEX stats_activity_day ON stats_activity ((tenant_id || ' ' || key), day)
    INCLUDE (key, first_at, last_at, next_day, prev_last_at);

CREATE TABLE stats_uniq (
    tenant_id text NOT NULL,
    key       text NOT NULL,
    day       date NOT NULL,
    prev_day  date NOT NULL,
    n         bigint NOT NULL,
    PRIMARY KEY (tenant_id, key, day, prev_day)
);

CREATE TABLE stats_email (
    tenant_id         text NOT NULL,
    email_id          text NOT NULL,
    created_at        timestamptz,
    first_human_open  timestamptz,
    first_human_click timestamptz,
    PRIMARY KEY (tenant_id, email_id)
);
CREATE INDEX stats_email_cohort ON stats_email (tenant_id, created_at)
    INCLUDE (first_human_open, first_human_click) WHERE created_at IS NOT NULL;

-- One changed event row: +1 inserted, -1 removed (an update is both).
CREATE TYPE belfry_stats_row AS (
    tenant_id text, email_id text, occurred_at timestamptz, kind text, human boolean,
    reason text, url text, sign integer
);
CREATE TYPE belfry_stats_act AS (
    tenant_id text, email_id text, key text, day date, n integer,
    first_at timestamptz, last_at timestamptz
);

-- Rollup maintenance of one tenant runs under that tenant's lock, taken before any
-- rollup row: concurrent writers never deadlock on the rollups, and a chain (an email's
-- active days) is read and rewritten by one transaction at a time.
CREATE FUNCTION belfry_stats_lock(tenants text[]) RETURNS void
LANGUAGE sql AS $$
    SELECT count(pg_advisory_xact_lock(hashtextextended('belfry_stats/' || t, 0)))
    FROM (SELECT DISTINCT t FROM unnest(tenants) t ORDER BY 1) s
$$;

-- The chains of the given (tenant, email, key) after adding `d` to stats_activity, as
-- stats_uniq deltas: -1 for each pair (day, prev_day) before, +1 for each after.
CREATE FUNCTION belfry_stats_chains(d belfry_stats_act[]) RETURNS void
LANGUAGE sql AS $$
    WITH delta AS (SELECT * FROM unnest(d)),
    -- Only a day that becomes active or inactive changes a chain (a second open on a
    -- day that had one, the common case, changes none).
    affected AS (
        SELECT DISTINCT x.tenant_id, x.email_id, x.key
        FROM delta x LEFT JOIN stats_activity a USING (tenant_id, email_id, key, day)
        WHERE a.n IS NULL OR a.n + x.n <= 0
    ),
    before AS (
        SELECT a.tenant_id, a.email_id, a.key, a.day, a.n
        FROM stats_activity a JOIN affected f USING (tenant_id, email_id, key)
    ),
    after AS (
        SELECT tenant_id, email_id, key, day FROM (
            SELECT * FROM before
            UNION ALL
            SELECT x.tenant_id, x.email_id, x.key, x.day, x.n
            FROM delta x JOIN affected f USING (tenant_id, email_id, key)
        ) x GROUP BY 1, 2, 3, 4 HAVING sum(n) > 0
    ),
    pairs AS (
        SELECT tenant_id, key, day, -1 AS s,
               coalesce(lag(day) OVER (PARTITION BY tenant_id, email_id, key ORDER BY day),
                        '-infinity') AS prev_day
        FROM before
        UNION ALL
        SELECT tenant_id, key, day, 1,
               coalesce(lag(day) OVER (PARTITION BY tenant_id, email_id, key ORDER BY day),
                        '-infinity')
        FROM after
    )
    INSERT INTO stats_uniq AS u (tenant_id, key, day, prev_day, n)
    SELECT tenant_id, key, day, prev_day, sum(s) FROM pairs
    GROUP BY 1, 2, 3, 4 HAVING sum(s) <> 0 ORDER BY 1, 2, 3, 4
    ON CONFLICT (tenant_id, key, day, prev_day) DO UPDATE SET n = u.n + excluded.n
$$;

-- Rows of `events` an activity key stands for (see stats_activity).
CREATE FUNCTION belfry_stats_key_matches(key text, kind text, verdict text, url text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE key
        WHEN 'o' THEN kind = 'open'
        WHEN 'ho' THEN kind = 'open' AND verdict IS DISTINCT FROM 'machine'
        WHEN 'c' THEN kind = 'click'
        WHEN 'hc' THEN kind = 'click' AND verdict IS DISTINCT FROM 'machine'
        ELSE kind = 'click' AND url IS NOT NULL AND 'u' || md5(url) = key
    END
$$;

-- A day that lost rows may have lost its first or last: read them again from `events`.
CREATE FUNCTION belfry_stats_bounds(d belfry_stats_act[], gone regclass) RETURNS void
LANGUAGE sql AS $$
    UPDATE stats_activity a SET (first_at, last_at) = (
        SELECT min(e.occurred_at), max(e.occurred_at) FROM events e
        WHERE e.tenant_id = a.tenant_id AND e.email_id = a.email_id
          AND e.occurred_at >= a.day::timestamp AT TIME ZONE 'UTC'
          AND e.occurred_at < (a.day + 1)::timestamp AT TIME ZONE 'UTC'
          AND e.tableoid IS DISTINCT FROM gone
          AND belfry_stats_key_matches(a.key, e.kind, e.verdict, e.url))
    FROM unnest(d) x
    WHERE x.n < 0 AND a.tenant_id = x.tenant_id AND a.email_id = x.email_id
      AND a.key = x.key AND a.day = x.day
$$;

-- Each day's next active day and its previous day's last event, for the chains that
-- gained or lost a day, or whose changed day has a next one.
CREATE FUNCTION belfry_stats_links(d belfry_stats_act[]) RETURNS void
LANGUAGE sql AS $$
    WITH affected AS (
        SELECT DISTINCT x.tenant_id, x.email_id, x.key
        FROM unnest(d) x LEFT JOIN stats_activity a USING (tenant_id, email_id, key, day)
        WHERE a.n IS NULL OR a.n = x.n OR a.next_day IS NOT NULL
    ),
    w AS (
        SELECT s.tenant_id, s.email_id, s.key, s.day,
               lead(s.day) OVER c AS next_day, lag(s.last_at) OVER c AS prev_last_at
        FROM stats_activity s JOIN affected f USING (tenant_id, email_id, key)
        WINDOW c AS (PARTITION BY s.tenant_id, s.email_id, s.key ORDER BY s.day)
    )
    UPDATE stats_activity a SET next_day = w.next_day, prev_last_at = w.prev_last_at
    FROM w
    WHERE a.tenant_id = w.tenant_id AND a.email_id = w.email_id AND a.key = w.key
      AND a.day = w.day
      AND (a.next_day, a.prev_last_at) IS DISTINCT FROM (w.next_day, w.prev_last_at)
$$;

-- Apply changed event rows to every rollup. `gone`: a partition about to be dropped,
-- whose rows must not count when first opens and clicks are recomputed.
CREATE FUNCTION belfry_stats_apply(r belfry_stats_row[], gone regclass DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d belfry_stats_act[];
BEGIN
    IF coalesce(cardinality(r), 0) = 0 THEN
        RETURN;
    END IF;
    PERFORM belfry_stats_lock(array(SELECT DISTINCT x.tenant_id FROM unnest(r) x));

    INSERT INTO stats_hour AS s (tenant_id, hour, kind, reason, n)
    SELECT x.tenant_id, date_trunc('hour', x.occurred_at, 'UTC'), x.kind,
           CASE WHEN x.human THEN '' ELSE coalesce(x.reason, 'unknown') END, sum(x.sign)
    FROM unnest(r) x GROUP BY 1, 2, 3, 4 HAVING sum(x.sign) <> 0 ORDER BY 1, 2, 3, 4
    ON CONFLICT (tenant_id, hour, kind, reason) DO UPDATE SET n = s.n + excluded.n;

    INSERT INTO stats_link_day AS s (tenant_id, day, url_key, url, clicks, human_clicks)
    SELECT x.tenant_id, (x.occurred_at AT TIME ZONE 'UTC')::date, md5(x.url)::uuid,
           min(x.url), sum(x.sign), coalesce(sum(x.sign) FILTER (WHERE x.human), 0)
    FROM unnest(r) x WHERE x.kind = 'click' AND x.url IS NOT NULL
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, day, url_key) DO UPDATE
        SET clicks = s.clicks + excluded.clicks,
            human_clicks = s.human_clicks + excluded.human_clicks;

    SELECT array_agg(ROW(tenant_id, email_id, key, day, n, first_at, last_at)::belfry_stats_act)
    INTO d FROM (
        SELECT x.tenant_id, x.email_id, k.key, (x.occurred_at AT TIME ZONE 'UTC')::date AS day,
               sum(x.sign)::integer AS n,
               min(x.occurred_at) FILTER (WHERE x.sign > 0) AS first_at,
               max(x.occurred_at) FILTER (WHERE x.sign > 0) AS last_at
        FROM unnest(r) x CROSS JOIN LATERAL (VALUES
            (CASE x.kind WHEN 'open' THEN 'o' ELSE 'c' END),
            (CASE WHEN x.human THEN CASE x.kind WHEN 'open' THEN 'ho' ELSE 'hc' END END),
            (CASE WHEN x.kind = 'click' AND x.url IS NOT NULL THEN 'u' || md5(x.url) END)
        ) k(key)
        WHERE k.key IS NOT NULL GROUP BY 1, 2, 3, 4 HAVING sum(x.sign) <> 0
    ) g;
    IF d IS NOT NULL THEN
        PERFORM belfry_stats_chains(d);
        INSERT INTO stats_activity AS a (tenant_id, email_id, key, day, n, first_at, last_at)
        SELECT * FROM unnest(d) ORDER BY 1, 2, 3, 4
        ON CONFLICT (tenant_id, email_id, key, day) DO UPDATE
            SET n = a.n + excluded.n, first_at = least(a.first_at, excluded.first_at),
                last_at = greatest(a.last_at, excluded.last_at);
        DELETE FROM stats_activity a USING unnest(d) x
        WHERE x.n < 0 AND a.tenant_id = x.tenant_id AND a.email_id = x.email_id
          AND a.key = x.key AND a.day = x.day AND a.n <= 0;
        PERFORM belfry_stats_bounds(d, gone);
        PERFORM belfry_stats_links(d);
    END IF;
    PERFORM belfry_stats_first_hits(r, gone);
END $$;

-- First human open and click per email: new rows can only make them earlier; a removed
-- human row may have been the first, so those emails are recomputed from `events`.
CREATE FUNCTION belfry_stats_first_hits(r belfry_stats_row[], gone regclass)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO stats_email AS s (tenant_id, email_id, first_human_open, first_human_click)
    SELECT x.tenant_id, x.email_id,
           min(x.occurred_at) FILTER (WHERE x.kind = 'open'),
           min(x.occurred_at) FILTER (WHERE x.kind = 'click')
    FROM unnest(r) x WHERE x.sign > 0 AND x.human GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (tenant_id, email_id) DO UPDATE
        SET first_human_open = least(s.first_human_open, excluded.first_human_open),
            first_human_click = least(s.first_human_click, excluded.first_human_click);

    UPDATE stats_email s SET
        first_human_open = (
            SELECT min(e.occurred_at) FROM events e
            WHERE e.tenant_id = s.tenant_id AND e.email_id = s.email_id AND e.kind = 'open'
              AND e.verdict IS DISTINCT FROM 'machine' AND e.tableoid IS DISTINCT FROM gone),
        first_human_click = (
            SELECT min(e.occurred_at) FROM events e
            WHERE e.tenant_id = s.tenant_id AND e.email_id = s.email_id AND e.kind = 'click'
              AND e.verdict IS DISTINCT FROM 'machine' AND e.tableoid IS DISTINCT FROM gone)
    FROM (SELECT DISTINCT x.tenant_id, x.email_id FROM unnest(r) x
          WHERE x.sign < 0 AND x.human) g
    WHERE s.tenant_id = g.tenant_id AND s.email_id = g.email_id;

    DELETE FROM stats_email s USING unnest(r) x
    WHERE x.sign < 0 AND s.tenant_id = x.tenant_id AND s.email_id = x.email_id
      AND s.created_at IS NULL AND s.first_human_open IS NULL AND s.first_human_click IS NULL
$$;

CREATE FUNCTION belfry_stats_events_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM belfry_stats_apply(array(
            SELECT ROW(tenant_id, email_id, occurred_at, kind, verdict IS DISTINCT FROM 'machine',
                       verdict_reason, url, 1)::belfry_stats_row FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM belfry_stats_apply(array(
            SELECT ROW(tenant_id, email_id, occurred_at, kind, verdict IS DISTINCT FROM 'machine',
                       verdict_reason, url, -1)::belfry_stats_row FROM old_rows));
    ELSE
        -- Only what changed in the counted fields (a verdict relabel, in practice): the
        -- old rows less the new ones go out, the new less the old come in.
        PERFORM belfry_stats_apply(array(
            SELECT ROW(c.*, -1)::belfry_stats_row FROM (
                SELECT tenant_id, email_id, occurred_at, kind,
                       verdict IS DISTINCT FROM 'machine', verdict_reason, url FROM old_rows
                EXCEPT ALL
                SELECT tenant_id, email_id, occurred_at, kind,
                       verdict IS DISTINCT FROM 'machine', verdict_reason, url FROM new_rows
            ) c
            UNION ALL
            SELECT ROW(c.*, 1)::belfry_stats_row FROM (
                SELECT tenant_id, email_id, occurred_at, kind,
                       verdict IS DISTINCT FROM 'machine', verdict_reason, url FROM new_rows
                EXCEPT ALL
                SELECT tenant_id, email_id, occurred_at, kind,
                       verdict IS DISTINCT FROM 'machine', verdict_reason, url FROM old_rows
            ) c));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER events_stats_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION belfry_stats_events_trigger();
CREATE TRIGGER events_stats_delete AFTER DELETE ON events
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION belfry_stats_events_trigger();
CREATE TRIGGER events_stats_update AFTER UPDATE ON events
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION belfry_stats_events_trigger();

-- Registrations: stats_hour kind 'email', and stats_email.created_at for cohorts.
CREATE FUNCTION belfry_stats_emails_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        PERFORM belfry_stats_lock(ARRAY[OLD.tenant_id]);
        INSERT INTO stats_hour AS s (tenant_id, hour, kind, reason, n)
        VALUES (OLD.tenant_id, date_trunc('hour', OLD.created_at, 'UTC'), 'email', '', -1)
        ON CONFLICT (tenant_id, hour, kind, reason) DO UPDATE SET n = s.n - 1;
        UPDATE stats_email SET created_at = NULL
        WHERE tenant_id = OLD.tenant_id AND email_id = OLD.id;
        DELETE FROM stats_email WHERE tenant_id = OLD.tenant_id AND email_id = OLD.id
            AND first_human_open IS NULL AND first_human_click IS NULL;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM belfry_stats_lock(ARRAY[NEW.tenant_id]);
        INSERT INTO stats_hour AS s (tenant_id, hour, kind, reason, n)
        VALUES (NEW.tenant_id, date_trunc('hour', NEW.created_at, 'UTC'), 'email', '', 1)
        ON CONFLICT (tenant_id, hour, kind, reason) DO UPDATE SET n = s.n + 1;
        INSERT INTO stats_email AS s (tenant_id, email_id, created_at)
        VALUES (NEW.tenant_id, NEW.id, NEW.created_at)
        ON CONFLICT (tenant_id, email_id) DO UPDATE SET created_at = excluded.created_at;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER emails_stats AFTER INSERT OR DELETE OR UPDATE OF tenant_id, id, created_at
    ON emails FOR EACH ROW EXECUTE FUNCTION belfry_stats_emails_trigger();

-- Retention drops whole partitions, which fires no trigger: it takes the partition's
-- rows out of the rollups first, a day at a time (bounded memory), in the transaction
-- that drops it.
CREATE FUNCTION belfry_stats_forget(part regclass, day_start timestamptz, day_end timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    r belfry_stats_row[];
BEGIN
    EXECUTE format(
        'SELECT array(SELECT ROW(tenant_id, email_id, occurred_at, kind,'
        ' verdict IS DISTINCT FROM ''machine'', verdict_reason, url, -1)::belfry_stats_row'
        ' FROM %s WHERE occurred_at >= $1 AND occurred_at < $2)', part)
        INTO r USING day_start, day_end;
    PERFORM belfry_stats_apply(r, part);
    RETURN coalesce(cardinality(r), 0);
END $$;

-- Every rollup rebuilt from `events` and `emails` (this migration, for existing rows; a
-- bulk load that ran with triggers off). Takes every tenant's lock: writers wait.
CREATE FUNCTION belfry_stats_backfill() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE events, emails IN SHARE MODE;
    TRUNCATE stats_hour, stats_link_day, stats_activity, stats_uniq, stats_email;
    -- The two big tables get their indexes built once, after the rows (much faster).
    ALTER TABLE stats_activity DROP CONSTRAINT stats_activity_pkey;
    DROP INDEX stats_activity_day;
    ALTER TABLE stats_email DROP CONSTRAINT stats_email_pkey;
    DROP INDEX stats_email_cohort;
    INSERT INTO stats_hour (tenant_id, hour, kind, reason, n)
    SELECT tenant_id, date_trunc('hour', occurred_at, 'UTC'), kind,
           CASE WHEN verdict IS DISTINCT FROM 'machine' THEN ''
                ELSE coalesce(verdict_reason, 'unknown') END, count(*)
    FROM events GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT tenant_id, date_trunc('hour', created_at, 'UTC'), 'email', '', count(*)
    FROM emails GROUP BY 1, 2;
    INSERT INTO stats_link_day (tenant_id, day, url_key, url, clicks, human_clicks)
    SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date, md5(url)::uuid, min(url),
           count(*), count(*) FILTER (WHERE verdict IS DISTINCT FROM 'machine')
    FROM events WHERE kind = 'click' AND url IS NOT NULL GROUP BY 1, 2, 3;
    INSERT INTO stats_activity (tenant_id, email_id, key, day, n, first_at, last_at, next_day,
                                prev_last_at)
    SELECT *, lead(day) OVER c, lag(last_at) OVER c FROM (
    SELECT e.tenant_id, e.email_id, k.key, (e.occurred_at AT TIME ZONE 'UTC')::date AS day,
           count(*)::integer AS n, min(e.occurred_at) AS first_at, max(e.occurred_at) AS last_at
    FROM events e CROSS JOIN LATERAL (VALUES
        (CASE e.kind WHEN 'open' THEN 'o' ELSE 'c' END),
        (CASE WHEN e.verdict IS DISTINCT FROM 'machine'
              THEN CASE e.kind WHEN 'open' THEN 'ho' ELSE 'hc' END END),
        (CASE WHEN e.kind = 'click' AND e.url IS NOT NULL THEN 'u' || md5(e.url) END)
    ) k(key)
    WHERE k.key IS NOT NULL GROUP BY 1, 2, 3, 4
    ) g WINDOW c AS (PARTITION BY tenant_id, email_id, key ORDER BY day);
    INSERT INTO stats_uniq (tenant_id, key, day, prev_day, n)
    SELECT tenant_id, key, day, prev_day, count(*) FROM (
        SELECT tenant_id, key, day,
               coalesce(lag(day) OVER (PARTITION BY tenant_id, email_id, key ORDER BY day),
                        '-infinity') AS prev_day
        FROM stats_activity
    ) c GROUP BY 1, 2, 3, 4;
    INSERT INTO stats_email (tenant_id, email_id, created_at, first_human_open,
                             first_human_click)
    SELECT coalesce(m.tenant_id, f.tenant_id), coalesce(m.id, f.email_id), m.created_at,
           f.first_open, f.first_click
    FROM emails m FULL JOIN (
        SELECT tenant_id, email_id,
               min(occurred_at) FILTER (WHERE kind = 'open') AS first_open,
               min(occurred_at) FILTER (WHERE kind = 'click') AS first_click
        FROM events WHERE verdict IS DISTINCT FROM 'machine' GROUP BY 1, 2
    ) f ON f.tenant_id = m.tenant_id AND f.email_id = m.id;
    ALTER TABLE stats_activity ADD PRIMARY KEY (tenant_id, email_id, key, day);
    CREATE INDEX stats_activity_day ON stats_activity ((tenant_id || ' ' || key), day)
        INCLUDE (key, first_at, last_at, next_day, prev_last_at);
    ALTER TABLE stats_email ADD PRIMARY KEY (tenant_id, email_id);
    CREATE INDEX stats_email_cohort ON stats_email (tenant_id, created_at)
        INCLUDE (first_human_open, first_human_click) WHERE created_at IS NOT NULL;
END $$;

SELECT belfry_stats_backfill();
