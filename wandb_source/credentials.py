"""Where the W&B base URL and API key come from: the same places, in the same order, as the wandb SDK."""

from __future__ import annotations

import netrc
import os
from urllib.parse import urlparse

from .exceptions import AuthenticationError


def default_base_url() -> str:
    """`WANDB_BASE_URL`, else the wandb SDK's own default (read from the SDK, not hard-coded)."""
    env = os.environ.get("WANDB_BASE_URL")
    if env:
        return env.rstrip("/")
    from wandb.sdk.wandb_settings import Settings

    return str(Settings.model_fields["base_url"].default).rstrip("/")


def resolve_api_key(explicit: str | None, base_url: str) -> str:
    """Explicit (`api_key` in secrets.toml or SOURCES__WANDB__API_KEY) > WANDB_API_KEY > netrc."""
    key = explicit or os.environ.get("WANDB_API_KEY") or _netrc_key(base_url)
    if not key:
        raise AuthenticationError(
            f"no W&B API key for {base_url}. Put `api_key = \"...\"` under [sources.wandb] in "
            ".dlt/secrets.toml, or set WANDB_API_KEY, or run `wandb login` (writes ~/.netrc)."
        )
    return key.strip()


def _netrc_key(base_url: str) -> str | None:
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    if not os.path.exists(path):
        return None
    try:
        parsed = netrc.netrc(path)
    except (netrc.NetrcParseError, OSError):
        return None
    host = urlparse(base_url).netloc
    for machine in (host, host.split(":")[0]):
        entry = parsed.authenticators(machine)
        if entry and entry[2]:
            return entry[2]
    return None
