"""Where the operator's logins are kept, and which server and token a command uses.

One TOML file per user (``$XDG_CONFIG_HOME/otaguard/credentials.toml``, or ``$OTAGUARD_CONFIG``)
holds named contexts, kubectl-style: each a server URL, its CA file and, while logged in, an API
token. The file is written whole, atomically, with mode 0600 in a 0700 directory, and refused
when others may read it (as ssh refuses a loose private key). Tokens reach the client from this
file or from ``OTAGUARD_TOKEN``, never from the command line.

``resolve`` is pure (file contents, environment and options in; a ``Target`` out); ``load``
and ``save`` are the file I/O around it.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w

from otaguard.errors import ConfigError

TOKEN_ENV = "OTAGUARD_TOKEN"
SERVER_ENV = "OTAGUARD_SERVER"
CA_ENV = "OTAGUARD_CA"
CONTEXT_ENV = "OTAGUARD_CONTEXT"
CONFIG_ENV = "OTAGUARD_CONFIG"


@dataclass(frozen=True)
class Target:
    """The server a command talks to, and how."""

    context: str | None  # None: from the environment only
    server: str
    ca: Path | None
    token: str

    def __repr__(self) -> str:  # never show the token, even in a traceback
        return f"Target(context={self.context!r}, server={self.server!r}, ca={self.ca!r})"


def config_path(env: Mapping[str, str]) -> Path:
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "otaguard" / "credentials.toml"


def context_name(config: Mapping[str, Any], env: Mapping[str, str], wanted: str | None) -> str:
    """The context a command uses: ``--context``, ``$OTAGUARD_CONTEXT``, or the current one."""
    name = wanted or env.get(CONTEXT_ENV) or config.get("current")
    if not name:
        raise ConfigError("not logged in: run `otaguard login --server URL` first")
    return str(name)


def resolve(
    config: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    context: str | None = None,
    server: str | None = None,
    now: dt.datetime | None = None,
) -> Target:
    """Server, CA and token, each from (first found) the option, the environment, the context.

    Raises:
        ConfigError: no server or no token can be found, the context named does not exist, or
            its login expired before ``now``.
    """
    contexts: Mapping[str, Any] = config.get("contexts", {})
    env_token = env.get(TOKEN_ENV)
    env_server = server or env.get(SERVER_ENV)
    if env_token and env_server and not (context or env.get(CONTEXT_ENV)):
        ca = env.get(CA_ENV)
        return Target(None, check_server(env_server), Path(ca) if ca else None, env_token)
    name = context_name(config, env, context)
    entry = contexts.get(name)
    if entry is None:
        known = ", ".join(sorted(contexts)) or "none"
        raise ConfigError(f"no context {name!r} (known: {known}); run `otaguard login`")
    token = env_token or entry.get("token")
    if not token:
        raise ConfigError(f"not logged in to {name!r}: run `otaguard login --context {name}`")
    if not env_token and _expired(entry.get("expires_at"), now):
        raise ConfigError(
            f"the login to {name!r} expired at {entry['expires_at']}: "
            f"run `otaguard login --context {name}`"
        )
    ca = env.get(CA_ENV) or entry.get("ca")
    url = check_server(env_server or str(entry["server"]))
    return Target(name, url, Path(ca) if ca else None, str(token))


def _expired(expires_at: Any, now: dt.datetime | None) -> bool:
    if now is None or not isinstance(expires_at, str):
        return False
    try:
        when = dt.datetime.fromisoformat(expires_at)
    except ValueError:
        return False  # unreadable: let the server decide
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)) <= now


def check_server(server: str) -> str:
    """``server`` if it is an https:// URL with a host (a token never travels in clear)."""
    parts = urlsplit(server)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(
            f"server must be an https:// URL such as https://host:8443, not {server!r}"
        )
    return server


def default_context_name(server: str) -> str:
    """A context named after the server's host and port (``https://h:8443`` -> ``h:8443``)."""
    return urlsplit(check_server(server)).netloc.rsplit("@", 1)[-1]


def with_login(
    config: Mapping[str, Any], name: str, server: str, ca: Path | None, **fields: Any
) -> dict[str, Any]:
    """``config`` with context ``name`` logged in (``fields``: token, token_id, user,
    expires_at; None values are left out) and made current."""
    entry: dict[str, Any] = {"server": server}
    if ca is not None:
        entry["ca"] = str(ca.resolve())
    entry.update({k: v for k, v in fields.items() if v is not None})
    contexts = {**config.get("contexts", {}), name: entry}
    return {**config, "current": name, "contexts": contexts}


def without_token(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``config`` with context ``name`` logged out: server and CA kept, token dropped."""
    contexts = dict(config.get("contexts", {}))
    if name not in contexts:
        raise ConfigError(f"no context {name!r}")
    keep = ("server", "ca", "user")
    contexts[name] = {k: v for k, v in contexts[name].items() if k in keep}
    return {**config, "contexts": contexts}


# -- file I/O ---------------------------------------------------------------------------------
def load(path: Path) -> dict[str, Any]:
    """The credentials file's contents ({} when there is none yet).

    Raises:
        ConfigError: others may read or write the file, or it is not valid TOML.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(st.st_mode)
        raise ConfigError(f"{path} may be read by others (mode {mode:04o}): run `chmod 600 {path}`")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def save(path: Path, config: Mapping[str, Any]) -> None:
    """Write ``config`` whole: a 0600 temporary file beside it, then an atomic rename."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover could have any mode: create afresh
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(dict(config), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
