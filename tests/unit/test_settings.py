"""Settings read from the environment: typed reads, per-service `from_env`, and that every
bad value stops start-up with a `SettingsError` naming the variable."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from services.ingest.settings import IngestSettings, parse_unsigned_domains
from services.writer.settings import WriterSettings
from shared.settings import (
    DEFAULT_AMQP_URL,
    DEFAULT_DATABASE_URL,
    CommonSettings,
    Env,
    SettingsError,
    redact_url,
)

KEYS = "k2:new-secret-0123456789,k1:old-secret-0123456789"

# --- Env: typed reads ----------------------------------------------------------------


def test_text_returns_default_when_missing_or_empty() -> None:
    env = Env({"EMPTY": "", "SET": "value"})
    assert env.text("MISSING", "dflt") == "dflt"
    assert env.text("EMPTY", "dflt") == "dflt"
    assert env.text("SET", "dflt") == "value"


def test_integer_parses_and_defaults() -> None:
    env = Env({"N": "42", "EMPTY": ""})
    assert env.integer("N", 1) == 42
    assert env.integer("EMPTY", 7) == 7
    assert env.integer("MISSING", 9) == 9


def test_integer_rejects_non_integer_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^MY_PORT must be an integer, got '8o80'$"):
        Env({"MY_PORT": "8o80"}).integer("MY_PORT", 1)


@pytest.mark.parametrize(("raw", "message"), [("0", "N must be >= 1"), ("11", "N must be <= 10")])
def test_integer_rejects_values_outside_bounds(raw: str, message: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{message}, got {raw}$"):
        Env({"N": raw}).integer("N", 5, lo=1, hi=10)


def test_integer_accepts_the_bounds_themselves() -> None:
    assert Env({"N": "1"}).integer("N", 5, lo=1, hi=10) == 1
    assert Env({"N": "10"}).integer("N", 5, lo=1, hi=10) == 10


def test_number_parses_floats_and_defaults() -> None:
    env = Env({"X": "2.5"})
    assert env.number("X", 1.0) == 2.5
    assert env.number("MISSING", 1.5) == 1.5


def test_number_rejects_text_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^GRACE must be a number, got 'soon'$"):
        Env({"GRACE": "soon"}).number("GRACE", 0.0)


def test_number_rejects_values_below_lower_bound() -> None:
    with pytest.raises(SettingsError, match=r"^GRACE must be a finite number >= 0.0, got '-1'$"):
        Env({"GRACE": "-1"}).number("GRACE", 0.0)


def test_number_rejects_nan() -> None:
    with pytest.raises(SettingsError, match="GRACE"):
        Env({"GRACE": "nan"}).number("GRACE", 0.0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        (" YES ", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("off", False),
    ],
)
def test_flag_parses_common_spellings(raw: str, expected: bool) -> None:
    assert Env({"F": raw}).flag("F", not expected) is expected


def test_flag_defaults_when_missing() -> None:
    assert Env({}).flag("F", True) is True
    assert Env({"F": ""}).flag("F", False) is False


def test_flag_rejects_other_words_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^WRITER_MIGRATE must be true or false, got 'maybe'$"):
        Env({"WRITER_MIGRATE": "maybe"}).flag("WRITER_MIGRATE", True)


def test_url_accepts_listed_scheme_with_host() -> None:
    env = Env({"U": "amqps://user:pw@broker.example:5671/vhost"})
    assert (
        env.url("U", "amqp://x/", ("amqp", "amqps")) == "amqps://user:pw@broker.example:5671/vhost"
    )


def test_url_rejects_other_scheme_and_hides_password() -> None:
    with pytest.raises(SettingsError) as info:
        Env({"U": "http://user:hunter2@host/"}).url("U", "amqp://x/", ("amqp", "amqps"))
    message = str(info.value)
    assert message.startswith("U must be a amqp/amqps URL with a host")
    assert "hunter2" not in message
    assert "http://user:***@host/" in message


def test_url_rejects_missing_host() -> None:
    with pytest.raises(SettingsError, match=r"^U must be a amqp URL with a host"):
        Env({"U": "amqp:///vhost"}).url("U", "amqp://x/", ("amqp",))


def test_networks_parses_comma_separated_cidrs_non_strict() -> None:
    nets = Env({"P": " 10.0.0.0/8, 192.168.1.7/24 ,,2001:db8::/32"}).networks("P")
    assert nets == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
    )


def test_networks_empty_is_empty_tuple() -> None:
    assert Env({}).networks("P") == ()


def test_networks_rejects_bad_item_naming_variable_and_item() -> None:
    with pytest.raises(
        SettingsError, match=r"^PROXIES must be a comma-separated CIDR list.*'10\.0\.0\.300'"
    ):
        Env({"PROXIES": "10.0.0.0/8,10.0.0.300"}).networks("PROXIES")


# --- redact_url ------------------------------------------------------------------------


def test_redact_url_hides_password_and_keeps_the_rest() -> None:
    assert redact_url("amqp://guest:s3cret@host:5672/vh") == "amqp://guest:***@host:5672/vh"


def test_redact_url_leaves_url_without_password_unchanged() -> None:
    assert redact_url("postgresql://postgres@127.0.0.1/belfry") == (
        "postgresql://postgres@127.0.0.1/belfry"
    )


# --- CommonSettings ------------------------------------------------------------------


def test_common_from_empty_env_uses_defaults() -> None:
    s = CommonSettings.from_env("ingest", {})
    assert s.service == "ingest"
    assert s.amqp_url == DEFAULT_AMQP_URL
    assert s.database_url == DEFAULT_DATABASE_URL
    assert s.prefix == "belfry"
    assert s.log_level == "INFO"
    assert s.environment == "dev"
    assert s.shutdown_grace == 0.0


def test_common_from_env_reads_every_field() -> None:
    s = CommonSettings.from_env(
        "writer",
        {
            "AMQP_URL": "amqps://u:p@mq.internal/",
            "DATABASE_URL": "postgres://db.internal/belfry",
            "BELFRY_PREFIX": "t-1_a",
            "LOG_LEVEL": "debug",
            "BELFRY_ENVIRONMENT": "prod",
            "SHUTDOWN_GRACE_SECONDS": "2.5",
        },
    )
    assert s.amqp_url == "amqps://u:p@mq.internal/"
    assert s.database_url == "postgres://db.internal/belfry"
    assert s.prefix == "t-1_a"
    assert s.log_level == "DEBUG"
    assert s.environment == "prod"
    assert s.shutdown_grace == 2.5


@pytest.mark.parametrize("prefix", ["Belfry", "1abc", "a" * 33, "be lfry", "bel.fry"])
def test_common_rejects_bad_prefix(prefix: str) -> None:
    with pytest.raises(SettingsError, match=r"^BELFRY_PREFIX must match"):
        CommonSettings.from_env("x", {"BELFRY_PREFIX": prefix})


def test_common_rejects_prefix_with_trailing_newline() -> None:
    with pytest.raises(SettingsError, match="BELFRY_PREFIX"):
        CommonSettings.from_env("x", {"BELFRY_PREFIX": "belfry\n"})


def test_common_rejects_bad_log_level() -> None:
    with pytest.raises(SettingsError, match=r"^LOG_LEVEL must be one of .*got 'CHATTY'$"):
        CommonSettings.from_env("x", {"LOG_LEVEL": "chatty"})


def test_common_rejects_amqp_url_with_wrong_scheme_without_leaking_password() -> None:
    with pytest.raises(SettingsError) as info:
        CommonSettings.from_env("x", {"AMQP_URL": "http://guest:topsecret@mq/"})
    assert str(info.value).startswith("AMQP_URL must be a amqp/amqps URL")
    assert "topsecret" not in str(info.value)


def test_common_rejects_database_url_with_wrong_scheme() -> None:
    with pytest.raises(SettingsError, match=r"^DATABASE_URL must be a postgresql/postgres URL"):
        CommonSettings.from_env("x", {"DATABASE_URL": "mysql://db/belfry"})


def test_common_rejects_negative_shutdown_grace() -> None:
    with pytest.raises(SettingsError, match=r"^SHUTDOWN_GRACE_SECONDS must be a finite"):
        CommonSettings.from_env("x", {"SHUTDOWN_GRACE_SECONDS": "-3"})


def test_common_http_limits_default_and_read() -> None:
    default = CommonSettings.from_env("x", {})
    assert (default.http_header_timeout, default.http_max_connections) == (10.0, 4096)
    assert default.http_keepalive_timeout == 75.0
    s = CommonSettings.from_env(
        "x",
        {
            "HTTP_HEADER_TIMEOUT_SECONDS": "2.5",
            "HTTP_MAX_CONNECTIONS": "100",
            "HTTP_KEEPALIVE_TIMEOUT_SECONDS": "650",
        },
    )
    assert (s.http_header_timeout, s.http_max_connections, s.http_keepalive_timeout) == (
        2.5,
        100,
        650.0,
    )


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("HTTP_HEADER_TIMEOUT_SECONDS", "0", "must be a number of seconds > 0, got 0.0"),
        ("HTTP_HEADER_TIMEOUT_SECONDS", "-1", "must be a finite number >= 0.0"),
        ("HTTP_HEADER_TIMEOUT_SECONDS", "soon", "must be a number"),
        ("HTTP_HEADER_TIMEOUT_SECONDS", "inf", "must be a finite number"),
        ("HTTP_KEEPALIVE_TIMEOUT_SECONDS", "0", "must be a number of seconds > 0"),
        ("HTTP_MAX_CONNECTIONS", "0", "must be >= 1, got 0"),
        ("HTTP_MAX_CONNECTIONS", "1000001", "must be <= 1000000"),
        ("HTTP_MAX_CONNECTIONS", "lots", "must be an integer"),
    ],
)
def test_common_rejects_bad_http_limits_naming_the_variable(
    name: str, raw: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=rf"^{name} {message}"):
        CommonSettings.from_env("x", {name: raw})


def test_common_unparseable_amqp_url_is_settings_error_naming_variable() -> None:
    with pytest.raises(SettingsError, match="AMQP_URL"):
        CommonSettings.from_env("x", {"AMQP_URL": "amqp://guest:guest@[::1/"})


# --- IngestSettings ------------------------------------------------------------------


def test_ingest_requires_click_signing_keys() -> None:
    with pytest.raises(SettingsError, match=r"^CLICK_SIGNING_KEYS must hold at least one"):
        IngestSettings.from_env({})


def test_ingest_from_env_reads_and_converts_fields() -> None:
    s = IngestSettings.from_env(
        {
            "CLICK_SIGNING_KEYS": KEYS,
            "INGEST_PORT": "9000",
            "INGEST_SPOOL_DIR": "/tmp/sp",
            "INGEST_BATCH_DELAY_MS": "10",
            "INGEST_CONFIRM_TIMEOUT_MS": "1500",
            "INGEST_EAGER_IN_FLIGHT": "2",
            "INGEST_PIXEL_FAST_PATH": "false",
            "INGEST_TRUSTED_PROXIES": "10.0.0.0/8",
            "INGEST_UNSIGNED_CLICK_DOMAINS": '{"acme": ["Example.COM."]}',
        }
    )
    assert s.common.service == "ingest"
    assert s.signing.active == "k2"
    assert s.port == 9000
    assert s.spool_dir == Path("/tmp/sp")
    assert s.batch_delay == pytest.approx(0.010)
    assert s.confirm_timeout == pytest.approx(1.5)
    assert (s.eager_in_flight, s.pixel_fast_path) == (2, False)
    assert IngestSettings.from_env({"CLICK_SIGNING_KEYS": KEYS}).pixel_fast_path is True
    assert s.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),)
    assert s.unsigned_click_domains == {"acme": frozenset({"example.com"})}


def test_ingest_rejects_port_out_of_range() -> None:
    with pytest.raises(SettingsError, match=r"^INGEST_PORT must be <= 65535"):
        IngestSettings.from_env({"CLICK_SIGNING_KEYS": KEYS, "INGEST_PORT": "70000"})


def test_ingest_rejects_bad_trusted_proxies() -> None:
    with pytest.raises(SettingsError, match=r"^INGEST_TRUSTED_PROXIES"):
        IngestSettings.from_env({"CLICK_SIGNING_KEYS": KEYS, "INGEST_TRUSTED_PROXIES": "proxy"})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{acme: [example.com]}", r"must be JSON like"),
        ('["example.com"]', r"must be a JSON object of tenant -> list of domains"),
        ('{"Bad Tenant": ["example.com"]}', r"'Bad Tenant' is not a valid tenant id"),
        ('{"acme": "example.com"}', r"domains of 'acme' must be a list of strings"),
        ('{"acme": ["example.com", 3]}', r"domains of 'acme' must be a list of strings"),
    ],
)
def test_unsigned_click_domains_errors_name_the_variable(raw: str, message: str) -> None:
    with pytest.raises(SettingsError, match=rf"^INGEST_UNSIGNED_CLICK_DOMAINS.*{message}"):
        IngestSettings.from_env({"CLICK_SIGNING_KEYS": KEYS, "INGEST_UNSIGNED_CLICK_DOMAINS": raw})


def test_unsigned_click_domains_lowercases_and_strips_dots() -> None:
    parsed = parse_unsigned_domains('{"acme": ["Mail.Example.com.", ".shop.io"], "b2": []}')
    assert parsed == {
        "acme": frozenset({"mail.example.com", "shop.io"}),
        "b2": frozenset(),
    }


def test_unsigned_click_domains_empty_is_empty_mapping() -> None:
    assert parse_unsigned_domains("") == {}


# --- WriterSettings ------------------------------------------------------------------


def test_writer_defaults() -> None:
    s = WriterSettings.from_env({})
    assert s.common.service == "writer"
    assert (s.port, s.prefetch, s.batch_rows) == (8081, 100, 5000)
    assert s.batch_delay == pytest.approx(0.15)
    assert s.backoff_max == 10.0
    assert s.migrate_on_start is True


def test_writer_from_env_reads_fields() -> None:
    s = WriterSettings.from_env(
        {
            "WRITER_PORT": "9001",
            "WRITER_PREFETCH": "7",
            "WRITER_BATCH_ROWS": "300",
            "WRITER_BATCH_DELAY_MS": "75",
            "WRITER_BACKOFF_MAX_SECONDS": "3",
            "WRITER_MIGRATE": "off",
        }
    )
    assert (s.port, s.prefetch, s.batch_rows) == (9001, 7, 300)
    assert s.batch_delay == pytest.approx(0.075)
    assert s.backoff_max == 3.0
    assert s.migrate_on_start is False


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"WRITER_PREFETCH": "0"}, "WRITER_PREFETCH"),
        ({"WRITER_BATCH_ROWS": "many"}, "WRITER_BATCH_ROWS"),
        ({"WRITER_BACKOFF_MAX_SECONDS": "0.01"}, "WRITER_BACKOFF_MAX_SECONDS"),
        ({"WRITER_MIGRATE": "sometimes"}, "WRITER_MIGRATE"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ],
)
def test_writer_rejects_bad_values_naming_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{name} "):
        WriterSettings.from_env(env)
