-- Stats rollups at the writer's pace: most rows of a batch are an email's first open or
-- click, and each of those started a chain (stats_activity's days of one email and key)
-- that belfry_stats_chains and belfry_stats_links looked up and sorted twice each, to
-- find the pair (day, -infinity) and nothing to link. belfry_stats_apply now settles
-- those chains itself and hands only the rest to the general upkeep. Same results (the
-- rollups still equal belfry_stats_backfill()); otherwise as in 0014.

CREATE OR REPLACE FUNCTION belfry_stats_apply(r belfry_stats_row[], gone regclass DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d belfry_stats_act[];
    fresh belfry_stats_act[];  -- a chain's first day: no activity before, one day in d
    other belfry_stats_act[];  -- the rest, for the general chain and link upkeep
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
        -- Chains are independent of each other. One that starts here (no activity row
        -- yet, one new day) gains the pair (day, -infinity) and has no neighbours to
        -- link: what belfry_stats_chains and belfry_stats_links would find, without
        -- their lookups and sorts. Run before the rows go in, under the tenant's lock.
        SELECT array_agg(ROW(s.tenant_id, s.email_id, s.key, s.day, s.n, s.first_at,
                             s.last_at)::belfry_stats_act) FILTER (WHERE s.starts),
               array_agg(ROW(s.tenant_id, s.email_id, s.key, s.day, s.n, s.first_at,
                             s.last_at)::belfry_stats_act) FILTER (WHERE NOT s.starts)
        INTO fresh, other FROM (
            SELECT x.*, x.n > 0
                   AND count(*) OVER (PARTITION BY x.tenant_id, x.email_id, x.key) = 1
                   AND NOT EXISTS (
                       SELECT FROM stats_activity a WHERE a.tenant_id = x.tenant_id
                         AND a.email_id = x.email_id AND a.key = x.key) AS starts
            FROM unnest(d) x
        ) s;
        IF fresh IS NOT NULL THEN
            INSERT INTO stats_uniq AS u (tenant_id, key, day, prev_day, n)
            SELECT x.tenant_id, x.key, x.day, '-infinity', count(*) FROM unnest(fresh) x
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (tenant_id, key, day, prev_day) DO UPDATE SET n = u.n + excluded.n;
        END IF;
        IF other IS NOT NULL THEN
            PERFORM belfry_stats_chains(other);
        END IF;
        INSERT INTO stats_activity AS a (tenant_id, email_id, key, day, n, first_at, last_at)
        SELECT * FROM unnest(d) ORDER BY 1, 2, 3, 4
        ON CONFLICT (tenant_id, email_id, key, day) DO UPDATE
            SET n = a.n + excluded.n, first_at = least(a.first_at, excluded.first_at),
                last_at = greatest(a.last_at, excluded.last_at);
        IF other IS NOT NULL THEN
            DELETE FROM stats_activity a USING unnest(other) x
            WHERE x.n < 0 AND a.tenant_id = x.tenant_id AND a.email_id = x.email_id
              AND a.key = x.key AND a.day = x.day AND a.n <= 0;
            PERFORM belfry_stats_bounds(other, gone);
            PERFORM belfry_stats_links(other);
        END IF;
    END IF;
    PERFORM belfry_stats_first_hits(r, gone);
END $$;
