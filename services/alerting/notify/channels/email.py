"""Email channel: a multipart (text + HTML) message over SMTP with aiosmtplib, with
STARTTLS, implicit TLS or (for a local relay) none. The subject says state, severity and
rule; each alert says since when it fires, or when it resolved and how long it fired, and
`*_url` annotations (runbook_url) are links in the HTML part (http(s) only). SMTP
replies decide retries the way SMTP means them: 4xx transient, 5xx permanent.

The egress guard applies as to HTTP channels (a tenant's channel must not reach
Belfry's database, broker or cloud metadata): the relay's name is resolved, every
address checked, and the socket connected to a checked address before aiosmtplib speaks
SMTP over it, with the configured name kept for STARTTLS/TLS (SNI, certificate). An
operator's internal relay needs its network in ALERTING_EGRESS_ALLOW_CIDRS. Failures
before the server's SMTP greeting (refused, timed out, not an SMTP server) all read
"connection failed", so the delivery log cannot map what listens where.
"""

from __future__ import annotations

import asyncio
import html
import socket
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib
from aiohttp.resolver import DefaultResolver

from services.alerting.notify.channels import Outcome, SendContext, connection_failed
from services.alerting.notify.model import Alert, Notification, when
from services.alerting.notify.ssrf import EgressRefused, open_checked

DEFAULT_PORTS = {"starttls": 587, "implicit": 465, "none": 25}


def subject(n: Notification) -> str:
    count = f" ({len(n.alerts)} alerts)" if len(n.alerts) > 1 else ""
    return f"[{n.status.upper()}] {n.severity}: {n.rule_name}{count}"


def link(url: str) -> str | None:
    """An http(s) URL fit for an href, or None (javascript:, data: and the like)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()


def _alert_lines(n: Notification, alert: Alert) -> list[str]:
    lines = [f"- {alert.status.upper()} {when(alert)}"]
    for key, value in sorted(alert.annotations.items()):
        lines.append(f"  {key}: {value}")
    if alert.value is not None:
        lines.append(f"  value: {alert.value:g}")
    labels = ", ".join(f"{k}={v}" for k, v in sorted(n.labels_of(alert).items()))
    lines.append(f"  labels: {labels}")
    if alert.generator_url:
        lines.append(f"  source: {alert.generator_url}")
    return lines


def text_body(n: Notification, external_url: str) -> str:
    lines = [subject(n), ""]
    for alert in n.alerts:
        lines += _alert_lines(n, alert)
        lines.append("")
    lines.append(f"Belfry alerting: {external_url}")
    return "\n".join(lines) + "\n"


def _annotation(key: str, value: str) -> str:
    """One annotation as HTML; a `*_url` annotation holding an http(s) URL (runbook_url,
    dashboard_url) is a link."""
    e = html.escape
    href = link(value) if key.endswith("_url") else None
    shown = f'<a href="{e(href)}">{e(value)}</a>' if href else e(value)
    return f"<div><b>{e(key)}</b>: {shown}</div>"


def html_body(n: Notification, external_url: str) -> str:
    e = html.escape
    color = {"firing": "#c0392b", "resolved": "#27ae60"}[n.status]
    rows = []
    for alert in n.alerts:
        labels = ", ".join(
            f"<code>{e(k)}={e(v)}</code>" for k, v in sorted(n.labels_of(alert).items())
        )
        notes = "".join(_annotation(k, v) for k, v in sorted(alert.annotations.items()))
        value = f"{alert.value:g}" if alert.value is not None else ""
        source = link(alert.generator_url)
        anchor = f'<a href="{e(source)}">source</a>' if source else ""
        rows.append(
            f"<tr><td>{e(alert.status)}<div>{e(when(alert))}</div></td>"
            f"<td>{notes}<div>{labels}</div></td>"
            f"<td>{e(value)}</td><td>{anchor}</td></tr>"
        )
    return (
        f'<html><body><h2 style="color:{color}">{e(subject(n))}</h2>'
        '<table border="1" cellpadding="4" cellspacing="0">'
        "<tr><th>State</th><th>Alert</th><th>Value</th><th>Link</th></tr>"
        f"{''.join(rows)}</table>"
        f'<p><a href="{e(external_url)}">Belfry alerting</a></p></body></html>'
    )


def recipients(config: dict[str, Any]) -> list[str]:
    to = config["to"]
    return [to] if isinstance(to, str) else list(to)


def build_message(n: Notification, config: dict[str, Any], external_url: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject(n)
    msg["From"] = config["from"]
    msg["To"] = ", ".join(recipients(config))
    msg["Date"] = formatdate(time.time(), usegmt=True)
    sender_domain = str(config["from"]).rpartition("@")[2] or "belfry"
    msg["Message-ID"] = make_msgid(idstring=n.id, domain=sender_domain)
    # Receivers can drop duplicates of a retried message by this header.
    msg["X-Belfry-Notification-Id"] = n.id
    msg.set_content(text_body(n, external_url))
    msg.add_alternative(html_body(n, external_url), subtype="html")
    return msg


def _smtp_outcome(exc: Exception) -> Outcome:
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPConnectTimeoutError) or (
        isinstance(exc, aiosmtplib.SMTPResponseException) and not 200 <= exc.code < 600
    ):
        # A greeting other than 220, or lines that are no SMTP reply (code -1): whatever
        # listens there is no SMTP server, and the log must not say what it is.
        return Outcome(False, error=connection_failed(exc), retryable=True)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        transient = all(400 <= c < 500 for c in codes)
        error = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return Outcome(
            False, status_code=codes[0] if codes else None, error=error[:500], retryable=transient
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        transient = 400 <= exc.code < 500
        return Outcome(
            False,
            status_code=exc.code,
            error=f"SMTP {exc.code} {exc.message}"[:500],
            retryable=transient,
        )
    # Refused, timeouts, disconnects, TLS failures: try again later.
    return Outcome(False, error=connection_failed(exc), retryable=True)


async def _connect(config: dict[str, Any], ctx: SendContext, port: int) -> socket.socket:
    """A socket to the relay, through the egress guard, within the request timeout."""
    resolver = ctx.resolver or DefaultResolver()
    try:
        async with asyncio.timeout(ctx.settings.request_timeout):
            host = str(config["host"]).strip("[]")  # an IPv6 literal may come bracketed
            return await open_checked(ctx.egress, resolver, host, port)
    finally:
        if ctx.resolver is None:
            await resolver.close()


async def send(n: Notification, config: dict[str, Any], ctx: SendContext) -> Outcome:
    tls = config.get("tls", "starttls")
    message = build_message(n, config, ctx.settings.external_url)
    port = int(config.get("port") or DEFAULT_PORTS[tls])
    try:
        sock = await _connect(config, ctx, port)
    except EgressRefused as exc:
        return Outcome(False, error=str(exc.strerror), refused=True)
    except (OSError, TimeoutError) as exc:
        return _smtp_outcome(exc)
    # From here the socket is aiosmtplib's: its transport closes it (closing it here
    # too could close a descriptor number the loop has handed out again).
    try:
        await aiosmtplib.send(
            message,
            sender=config["from"],
            recipients=recipients(config),
            hostname=config["host"],  # TLS: SNI and the certificate's name
            sock=sock,  # connected to the checked address
            username=config.get("username"),
            password=config.get("password"),
            use_tls=tls == "implicit",
            start_tls=tls == "starttls",
            validate_certs=bool(config.get("verify_tls", True)),
            tls_context=ctx.ssl_context,
            timeout=ctx.settings.request_timeout,
        )
    except ValueError as exc:  # options refused before connecting: the socket is ours
        sock.close()
        return _smtp_outcome(exc)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return _smtp_outcome(exc)
    return Outcome(True, status_code=250)
