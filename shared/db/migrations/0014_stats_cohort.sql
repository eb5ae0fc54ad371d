-- Stats at scale, part 2: what a year's stats answer still read row by row.
--
-- * stats_day: stats_hour summed per day (the counts and series of whole days; a year is
--   365 x kinds x reasons rows instead of 8,760 x ...). Kept by triggers on stats_hour.
-- * stats_cohort: the first-open cohort of whole registration days. Per tenant,
--   registration day, kind ('o' first human open, 'c' first human click), the day of that
--   first hit and, for opens, the delay's bucket (belfry_delay_bucket, ~10% wide on a log
--   scale): how many emails and the sum of their delays (seconds, exact). Kept by triggers
--   on stats_email. The median is then found exactly: bucket counts say which bucket
--   holds it, and only that bucket's delays are read (stats_email_delay).
--   Emails with a human hit before their registration are left out of it: their first
--   hit in a range may not be their first ever, so the stats read them one by one
--   (stats_email_early, a handful).
-- * stats_link_hour: stats_link_day per hour, for the whole hours of a range's partial
--   days (which read `events` before).
-- * stats_activity_day gets tenant_id in its INCLUDE: with every column the head / tail
--   query names in the index, that query is an index-only scan.
-- Every figure stays exact.

CREATE FUNCTION belfry_delay_bucket(created timestamptz, first_open timestamptz)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT floor(10 * ln(1 + extract(epoch FROM first_open - created)::float8))::integer
$$;

CREATE TABLE stats_day (
    tenant_id text NOT NULL,
    day       date NOT NULL,
    kind      text NOT NULL,
    reason    text NOT NULL,
    n         bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, kind, reason)
);

CREATE TABLE stats_cohort (
    tenant_id text NOT NULL,
    reg_day   date NOT NULL,
    kind      text NOT NULL,
    hit_day   date NOT NULL,
    bucket    integer NOT NULL,  -- 0 for clicks
    n         bigint NOT NULL,
    delay     numeric NOT NULL,  -- sum of the delays in seconds (0 for clicks)
    PRIMARY KEY (tenant_id, reg_day, kind, hit_day, bucket)
);

CREATE TABLE stats_link_hour (
    tenant_id    text NOT NULL,
    hour         timestamptz NOT NULL,
    url_key      uuid NOT NULL,
    url          text NOT NULL,
    clicks       bigint NOT NULL,
    human_clicks bigint NOT NULL,
    PRIMARY KEY (tenant_id, hour, url_key)
);
INSERT INTO stats_link_hour (tenant_id, hour, url_key, url, clicks, human_clicks)
SELECT tenant_id, date_trunc('hour', occurred_at, 'UTC'), md5(url)::uuid, min(url), count(*),
       count(*) FILTER (WHERE verdict IS DISTINCT FROM 'machine')
FROM events WHERE kind = 'click' AND url IS NOT NULL GROUP BY 1, 2, 3;

DROP INDEX stats_activity_day;
CREATE INDEX stats_activity_day ON stats_activity ((tenant_id || ' ' || key), day)
    INCLUDE (tenant_id, key, first_at, last_at, next_day, prev_last_at);

-- Whole-day registrations first opened / clicked in a range's partial last day.
CREATE FUNCTION belfry_stats_email_indexes() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    CREATE INDEX stats_email_first_open ON stats_email (tenant_id, first_human_open)
        INCLUDE (created_at, first_human_click) WHERE created_at IS NOT NULL;
    CREATE INDEX stats_email_first_click ON stats_email (tenant_id, first_human_click)
        INCLUDE (created_at, first_human_open) WHERE created_at IS NOT NULL;
    -- The delays of one bucket (the median's), of the emails stats_cohort counts.
    CREATE INDEX stats_email_delay ON stats_email
        (tenant_id, belfry_delay_bucket(created_at, first_human_open), created_at)
        INCLUDE (first_human_open)
        WHERE created_at IS NOT NULL AND first_human_open >= created_at
          AND (first_human_click IS NULL OR first_human_click >= created_at);
    -- Emails with a human hit before their registration.
    CREATE INDEX stats_email_early ON stats_email (tenant_id, created_at)
        WHERE first_human_open < created_at OR first_human_click < created_at;
END $$;
SELECT belfry_stats_email_indexes();

-- stats_hour's changes (new n less old n) added to stats_day.
CREATE FUNCTION belfry_stats_day_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO stats_day AS s (tenant_id, day, kind, reason, n)
        SELECT tenant_id, (hour AT TIME ZONE 'UTC')::date, kind, reason, sum(n)
        FROM new_rows GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (tenant_id, day, kind, reason) DO UPDATE SET n = s.n + excluded.n;
    ELSE
        INSERT INTO stats_day AS s (tenant_id, day, kind, reason, n)
        SELECT tenant_id, (hour AT TIME ZONE 'UTC')::date, kind, reason, sum(n) FROM (
            SELECT tenant_id, hour, kind, reason, -n AS n FROM old_rows
            UNION ALL
            SELECT tenant_id, hour, kind, reason, n FROM new_rows
        ) c GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0 ORDER BY 1, 2, 3, 4
        ON CONFLICT (tenant_id, day, kind, reason) DO UPDATE SET n = s.n + excluded.n;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION belfry_stats_day_delete_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_day AS s (tenant_id, day, kind, reason, n)
    SELECT tenant_id, (hour AT TIME ZONE 'UTC')::date, kind, reason, -sum(n)
    FROM old_rows GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0 ORDER BY 1, 2, 3, 4
    ON CONFLICT (tenant_id, day, kind, reason) DO UPDATE SET n = s.n + excluded.n;
    RETURN NULL;
END $$;

CREATE TRIGGER stats_hour_day_insert AFTER INSERT ON stats_hour
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION belfry_stats_day_trigger();
CREATE TRIGGER stats_hour_day_update AFTER UPDATE ON stats_hour
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION belfry_stats_day_trigger();
CREATE TRIGGER stats_hour_day_delete AFTER DELETE ON stats_hour
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION belfry_stats_day_delete_trigger();

-- One stats_email row's part in stats_cohort, signed.
CREATE TYPE belfry_stats_email_row AS (
    tenant_id text, created_at timestamptz, first_open timestamptz, first_click timestamptz,
    sign integer
);

CREATE FUNCTION belfry_stats_cohort_apply(r belfry_stats_email_row[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO stats_cohort AS s (tenant_id, reg_day, kind, hit_day, bucket, n, delay)
    SELECT x.tenant_id, (x.created_at AT TIME ZONE 'UTC')::date, k.kind,
           (k.at AT TIME ZONE 'UTC')::date, k.bucket, sum(x.sign), sum(x.sign * k.delay)
    FROM unnest(r) x CROSS JOIN LATERAL (VALUES
        ('o', x.first_open, belfry_delay_bucket(x.created_at, x.first_open),
         extract(epoch FROM x.first_open - x.created_at)),
        ('c', x.first_click, 0, 0)
    ) k(kind, at, bucket, delay)
    WHERE k.at IS NOT NULL AND x.created_at IS NOT NULL
      AND NOT coalesce(x.first_open < x.created_at OR x.first_click < x.created_at, false)
    -- An email whose first open moved within a bucket changes the sum only.
    GROUP BY 1, 2, 3, 4, 5 HAVING sum(x.sign) <> 0 OR sum(x.sign * k.delay) <> 0
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (tenant_id, reg_day, kind, hit_day, bucket) DO UPDATE
        SET n = s.n + excluded.n, delay = s.delay + excluded.delay
$$;

CREATE FUNCTION belfry_stats_cohort_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM belfry_stats_cohort_apply(array(
            SELECT ROW(tenant_id, created_at, first_human_open, first_human_click, 1)
                   ::belfry_stats_email_row FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM belfry_stats_cohort_apply(array(
            SELECT ROW(tenant_id, created_at, first_human_open, first_human_click, -1)
                   ::belfry_stats_email_row FROM old_rows));
    ELSE
        -- Rows whose counted fields did not change cancel out.
        PERFORM belfry_stats_cohort_apply(array(
            SELECT ROW(c.*)::belfry_stats_email_row FROM (
                SELECT tenant_id, created_at, first_human_open, first_human_click, -1
                FROM old_rows
                UNION ALL
                SELECT tenant_id, created_at, first_human_open, first_human_click, 1
                FROM new_rows
            ) c));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER stats_email_cohort_insert AFTER INSERT ON stats_email
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION belfry_stats_cohort_trigger();
CREATE TRIGGER stats_email_cohort_update AFTER UPDATE ON stats_email
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION belfry_stats_cohort_trigger();
CREATE TRIGGER stats_email_cohort_delete AFTER DELETE ON stats_email
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION belfry_stats_cohort_trigger();

-- As in 0013, and stats_link_hour too.
CREATE OR REPLACE FUNCTION belfry_stats_apply(r belfry_stats_row[], gone regclass DEFAULT NULL)
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

    INSERT INTO stats_link_hour AS s (tenant_id, hour, url_key, url, clicks, human_clicks)
    SELECT x.tenant_id, date_trunc('hour', x.occurred_at, 'UTC'), md5(x.url)::uuid,
           min(x.url), sum(x.sign), coalesce(sum(x.sign) FILTER (WHERE x.human), 0)
    FROM unnest(r) x WHERE x.kind = 'click' AND x.url IS NOT NULL
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, hour, url_key) DO UPDATE
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

-- First human hits: a hit that does not make them earlier no longer rewrites the row
-- (nor its indexes, nor stats_cohort's trigger input). Otherwise as in 0013.
CREATE OR REPLACE FUNCTION belfry_stats_first_hits(r belfry_stats_row[], gone regclass)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO stats_email AS s (tenant_id, email_id, first_human_open, first_human_click)
    SELECT x.tenant_id, x.email_id,
           min(x.occurred_at) FILTER (WHERE x.kind = 'open'),
           min(x.occurred_at) FILTER (WHERE x.kind = 'click')
    FROM unnest(r) x WHERE x.sign > 0 AND x.human GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (tenant_id, email_id) DO UPDATE
        SET first_human_open = least(s.first_human_open, excluded.first_human_open),
            first_human_click = least(s.first_human_click, excluded.first_human_click)
        WHERE excluded.first_human_open < s.first_human_open
           OR excluded.first_human_click < s.first_human_click
           OR (s.first_human_open IS NULL AND excluded.first_human_open IS NOT NULL)
           OR (s.first_human_click IS NULL AND excluded.first_human_click IS NOT NULL);

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

-- stats_day and stats_cohort from stats_hour and stats_email as they stand; stats_email a
-- tenant's month of registrations at a time (bounded memory).
CREATE FUNCTION belfry_stats_derived() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    m timestamp;
BEGIN
    TRUNCATE stats_day, stats_cohort;
    INSERT INTO stats_day (tenant_id, day, kind, reason, n)
    SELECT tenant_id, (hour AT TIME ZONE 'UTC')::date, kind, reason, sum(n)
    FROM stats_hour GROUP BY 1, 2, 3, 4;
    FOR t, m IN SELECT DISTINCT tenant_id, date_trunc('month', created_at AT TIME ZONE 'UTC')
                FROM stats_email WHERE created_at IS NOT NULL LOOP
        PERFORM belfry_stats_cohort_apply(array(
            SELECT ROW(tenant_id, created_at, first_human_open, first_human_click, 1)
                   ::belfry_stats_email_row
            FROM stats_email WHERE tenant_id = t AND created_at >= m AT TIME ZONE 'UTC'
              AND created_at < (m + interval '1 month') AT TIME ZONE 'UTC'));
    END LOOP;
END $$;

-- Every rollup rebuilt from `events` and `emails` (a bulk load that ran with triggers
-- off; the tests' reference). As in 0013, with 0014's tables and indexes.
CREATE OR REPLACE FUNCTION belfry_stats_backfill() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE events, emails IN SHARE MODE;
    TRUNCATE stats_hour, stats_link_day, stats_link_hour, stats_activity, stats_uniq,
        stats_email, stats_day, stats_cohort;
    -- stats_day and stats_cohort are built from what this builds, after it.
    ALTER TABLE stats_hour DISABLE TRIGGER stats_hour_day_insert;
    ALTER TABLE stats_email DISABLE TRIGGER stats_email_cohort_insert;
    -- The two big tables get their indexes built once, after the rows (much faster).
    ALTER TABLE stats_activity DROP CONSTRAINT stats_activity_pkey;
    DROP INDEX stats_activity_day;
    ALTER TABLE stats_email DROP CONSTRAINT stats_email_pkey;
    DROP INDEX stats_email_cohort, stats_email_first_open, stats_email_first_click,
        stats_email_delay, stats_email_early;
    INSERT INTO stats_hour (tenant_id, hour, kind, reason, n)
    SELECT tenant_id, date_trunc('hour', occurred_at, 'UTC'), kind,
           CASE WHEN verdict IS DISTINCT FROM 'machine' THEN ''
                ELSE coalesce(verdict_reason, 'unknown') END, count(*)
    FROM events GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT tenant_id, date_trunc('hour', created_at, 'UTC'), 'email', '', count(*)
    FROM emails GROUP BY 1, 2;
    INSERT INTO stats_link_hour (tenant_id, hour, url_key, url, clicks, human_clicks)
    SELECT tenant_id, date_trunc('hour', occurred_at, 'UTC'), md5(url)::uuid, min(url),
           count(*), count(*) FILTER (WHERE verdict IS DISTINCT FROM 'machine')
    FROM events WHERE kind = 'click' AND url IS NOT NULL GROUP BY 1, 2, 3;
    INSERT INTO stats_link_day (tenant_id, day, url_key, url, clicks, human_clicks)
    SELECT tenant_id, (hour AT TIME ZONE 'UTC')::date, url_key, min(url), sum(clicks),
           sum(human_clicks)
    FROM stats_link_hour GROUP BY 1, 2, 3;
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
        INCLUDE (tenant_id, key, first_at, last_at, next_day, prev_last_at);
    ALTER TABLE stats_email ADD PRIMARY KEY (tenant_id, email_id);
    CREATE INDEX stats_email_cohort ON stats_email (tenant_id, created_at)
        INCLUDE (first_human_open, first_human_click) WHERE created_at IS NOT NULL;
    ALTER TABLE stats_hour ENABLE TRIGGER stats_hour_day_insert;
    ALTER TABLE stats_email ENABLE TRIGGER stats_email_cohort_insert;
    PERFORM belfry_stats_derived();
    PERFORM belfry_stats_email_indexes();
END $$;

SELECT belfry_stats_derived();
