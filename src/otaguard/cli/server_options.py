"""The options of ``otaguard server``, one annotated type each.

Kept apart from the command so that the command reads as what it does (check the TLS
files, open the context, serve) rather than as sixty lines of declarations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Host = Annotated[str, typer.Option(help="Listen address.")]
Port = Annotated[int, typer.Option(help="Listen port.")]
DatabaseURL = Annotated[
    str | None, typer.Option("--database", help="SQLAlchemy URL (default: SQLite in data dir).")
]
ProxyHeaders = Annotated[
    bool,
    typer.Option(
        "--proxy-headers",
        help="Behind a reverse proxy: take the client address and scheme from "
        "X-Forwarded-For/-Proto (only from --forwarded-allow-ips).",
    ),
]
ForwardedAllowIPs = Annotated[
    str | None,
    typer.Option(
        "--forwarded-allow-ips",
        help="Comma-separated proxy addresses (or networks) whose forwarded headers are "
        "trusted (default 127.0.0.1).",
    ),
]
BearerFallback = Annotated[
    bool,
    typer.Option(help="Accept bearer device credentials from devices without a certificate."),
]
ClientCertHeader = Annotated[
    str | None,
    typer.Option(help="Header carrying the device certificate (URL-encoded PEM) from a proxy."),
]
ClientCertProxies = Annotated[
    str, typer.Option(help="Comma-separated proxy addresses trusted for that header.")
]
AccessLog = Annotated[
    bool, typer.Option(help="Log every request (a fleet's check-ins are many lines).")
]
LeanCheckin = Annotated[
    bool,
    typer.Option(help="Answer check-ins in the lean layer ahead of the framework (same answers)."),
]
RevocationRefresh = Annotated[
    float,
    typer.Option(
        min=0.0,
        help="Re-read device certificate revocations from the database at most this often "
        "(0: on every request); revocations made through this server apply at once.",
    ),
]
TLSHostnames = Annotated[
    list[str] | None,
    typer.Option(
        help="Host name or address devices use for this server (repeat): put in the "
        "generated certificate, re-issued by the same local CA when a name is new.",
    ),
]
TLSCert = Annotated[
    Path | None,
    typer.Option(
        help="Operator-supplied certificate chain (PEM), instead of the local CA's; "
        "reloaded when the file changes or on SIGHUP, without a restart."
    ),
]
TLSKey = Annotated[Path | None, typer.Option(help="Its private key (PEM).")]
MqttConfig = Annotated[
    Path | None,
    typer.Option(
        help="Push wake-ups to devices over MQTT: a TOML file with an [mqtt] table "
        "(host, port, tls/ca_file, username, password_file, topic_prefix; docs/DESIGN.md)."
    ),
]
AuthBurstThreshold = Annotated[
    int,
    typer.Option(help="Alert on this many failed authentications from one address in 5 min."),
]
DownloadVolumeFactor = Annotated[
    float,
    typer.Option(
        help="Alert on a device downloading more than this many times its assigned size "
        "(or the fleet's median, or the floor)."
    ),
]
DownloadVolumeFloor = Annotated[
    int, typer.Option(help="Bytes any device may download per window without an alert.")
]
WebhookURLs = Annotated[
    list[str] | None,
    typer.Option(help="Push new alerts to this URL (repeat), signed with the secret below."),
]
WebhookSecretFile = Annotated[
    Path | None, typer.Option(help="File holding the webhooks' HMAC secret.")
]
