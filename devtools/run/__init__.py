"""`make run`: the whole Belfry system on this machine, in one terminal.

1. Reads the same environment the services read (AMQP_URL, DATABASE_URL, BELFRY_PREFIX,
   <SERVICE>_HOST/_PORT, CLICK_SIGNING_KEYS), with the same defaults (`config`).
2. Makes sure Postgres and RabbitMQ answer a real login; a local Debian-installed server
   that is stopped is started, anything else ends with one line saying what to do (`deps`).
3. Creates the database, applies migrations and declares the broker topology; makes
   sure the dev tenants exist, and Belfry's own channel `belfry-ops` (a `log` channel
   unless someone pointed it elsewhere) (`prepare`).
4. Starts every service in SERVICES as a child process, prefixes its output with its
   name, waits for each `/readyz` (`supervisor`), and prints URLs that work (`banner`).
5. Ctrl-C or SIGTERM stops them all (SIGTERM, then SIGKILL after 30 s); if one dies on
   its own the others are stopped and the exit status is non-zero.

`main` runs these steps; scripts/run.py is the entry point."""
