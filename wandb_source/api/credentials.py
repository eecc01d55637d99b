"""Which W&B server, which API key, which app URL: resolved as the wandb SDK 0.31 resolves them, without
importing it (tests compare every answer with the installed SDK's own).

- Server: `base_url` > `WANDB_BASE_URL` > `base_url` in the SDK's settings files (what `wandb login --host`
  writes: `./wandb/settings` over `$WANDB_CONFIG_DIR/settings`, default `~/.config/wandb/settings`) > the
  SDK's default. A Forge proxy URL (`https://forge.coreweave.com/api/wandb`) becomes its API host, as
  the SDK's `normalize_forge_base_url` does.
- Key: `api_key` > `WANDB_API_KEY` > the netrc entry (`$NETRC`, `~/.netrc`, `~/_netrc`) for the server's
  host, falling back, for a Forge host, to the entry of the W&B host behind it (`api.wandb.ai`), as the
  SDK's `read_netrc_auth` does.
- App URL (`runs.url`): the SDK's `util.api_to_app_url`.
"""

from __future__ import annotations

import configparser
import netrc
import os
from pathlib import Path
from urllib.parse import urlsplit

from ..exceptions import AuthenticationError, ConfigurationError

DEFAULT_BASE_URL = "https://api.forge.coreweave.com"  # wandb.sdk.lib.urls.DEFAULT_BASE_URL in 0.31
FORGE_API_PATH, FORGE_APP_PATH = "/api/wandb", "/wandb"
FORGE_HOSTS = {"forge.coreweave.com": "api.wandb.ai", "qa.forge.coreweave.com": "api.qa.wandb.ai"}


def default_base_url() -> str:
    """`WANDB_BASE_URL`, else `base_url` from the SDK's settings files, else the SDK's default."""
    url = os.environ.get("WANDB_BASE_URL") or settings_file_base_url() or DEFAULT_BASE_URL
    return normalize_base_url(url)


def normalize_base_url(url: str) -> str:
    """Trailing slashes off; a Forge proxy URL → its API host (`https://api.forge.coreweave.com`)."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.hostname in FORGE_HOSTS:
        if parts.scheme == "https" and parts.port is None and parts.path.rstrip("/") == FORGE_API_PATH:
            return f"https://api.{parts.hostname}"
        raise ConfigurationError(f"base_url {url!r} is a Forge address but not its API: use "
                                 f"https://api.{parts.hostname} in [sources.wandb] or WANDB_BASE_URL.")
    return url


def settings_file_base_url() -> str | None:
    """`base_url` of the SDK's settings files (`wandb login --host` writes the global one); the
    workspace file `./wandb/settings` (or `./.wandb/settings`) wins over the global one."""
    config_dir = os.environ.get("WANDB_CONFIG_DIR")
    global_file = Path(config_dir).expanduser() / "settings" if config_dir else \
        Path("~", ".config", "wandb", "settings").expanduser()
    workspace = Path(".wandb" if Path(".wandb").exists() else "wandb", "settings")
    found = None
    for path in (global_file, workspace):
        value = _read_setting(path, "base_url")
        found = value or found
    return found


def _read_setting(path: Path, key: str) -> str | None:
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None  # the SDK too treats an unreadable settings file as empty
    value = parser.get("default", key, fallback=None)
    return value.strip() or None if value else None


def app_url(api_url: str) -> str:
    """The W&B app (UI) URL for an API URL: the SDK's `api_to_app_url`."""
    if host := forge_host(api_url):
        return f"https://{host}{FORGE_APP_PATH}"
    if "://api.wandb.test" in api_url:
        return api_url.replace("://api.", "://app.").strip("/")
    if "://api.wandb." in api_url:
        return api_url.replace("://api.", "://").strip("/")
    if "://api." in api_url:
        return api_url.replace("://api.", "://app.").strip("/")
    return api_url


def forge_host(url: str) -> str | None:
    """The CoreWeave Forge host serving the W&B deployment at `url`, if any (the SDK's `forge_host`)."""
    hostname = urlsplit(url).hostname
    for forge, api in FORGE_HOSTS.items():
        if hostname in (forge, f"api.{forge}", api):
            return forge
    return None


def resolve_api_key(explicit: str | None, base_url: str) -> str:
    """Explicit (`api_key` in secrets.toml or SOURCES__WANDB__API_KEY) > WANDB_API_KEY > netrc."""
    key = explicit or os.environ.get("WANDB_API_KEY") or netrc_key(base_url)
    if not key or not str(key).strip():
        raise AuthenticationError(
            f"no W&B API key for {base_url}. Put `api_key = \"...\"` under [sources.wandb] in "
            ".dlt/secrets.toml, or set WANDB_API_KEY, or run `wandb login` (writes ~/.netrc)."
        )
    return str(key).strip()


def netrc_key(base_url: str) -> str | None:
    """The netrc password for the server's host[:port], else (a Forge host) for the W&B host behind it."""
    path = _netrc_path()
    if path is None:
        return None
    try:
        parsed = netrc.netrc(str(path))
    except (netrc.NetrcParseError, OSError):
        return None
    machines = [urlsplit(base_url).netloc]
    if host := forge_host(base_url):
        machines.append(FORGE_HOSTS[host])
    for machine in machines:
        entry = parsed.authenticators(machine)
        if entry and entry[2]:
            return entry[2]
    return None


def _netrc_path() -> Path | None:
    if env := os.environ.get("NETRC"):
        path = Path(env).expanduser()
        return path if path.exists() else None
    for name in ("~/.netrc", "~/_netrc"):
        path = Path(name).expanduser()
        if path.exists():
            return path
    return None


def default_entity() -> str | None:
    """`WANDB_ENTITY`, as the SDK reads it."""
    return os.environ.get("WANDB_ENTITY") or None


def default_projects() -> list[str] | None:
    """`WANDB_PROJECT`, as the SDK reads it."""
    project = os.environ.get("WANDB_PROJECT")
    return [project] if project else None
