-- wrk script for `scripts/bench.py --emails N`: each request opens the pixel of one of N
-- emails, drawn at random (as a campaign's opens come: mostly an email's first), instead
-- of every request to the same email. wrk's -H headers (the user agent) still apply.
local emails = tonumber(os.getenv("BELFRY_BENCH_EMAILS") or "1")
local tenant = os.getenv("BELFRY_BENCH_TENANT") or "acme"

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  return wrk.format("GET", "/" .. tenant .. "/pixel/e" .. math.random(emails) .. ".gif")
end
