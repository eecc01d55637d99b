"""Server, app URL, netrc and settings-file resolution: every answer compared with the installed wandb SDK's.

The W&B host names below are strings given to pure functions: nothing here connects to them (tests/conftest.py
refuses any non-loopback connection, and the subprocess below installs the same guard)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wandb_source import ConfigurationError
from wandb_source.api.credentials import DEFAULT_BASE_URL, app_url, default_base_url, netrc_key, normalize_base_url
from wandb_source.api.transport import parse_retry_after

ROOT = Path(__file__).resolve().parents[1]
# Strings only: these tests compare how URLs are *resolved* (base URL, app URL, netrc host) with the installed
# SDK's answer; nothing connects to them, and tests/no_network.py refuses any non-loopback connection anyway.
URLS = ["https://api.wandb.ai", "https://api.wandb.ai/", "https://api.forge.coreweave.com",
        "https://forge.coreweave.com", "https://api.qa.wandb.ai", "https://api.wandb.test",
        "https://api.mycompany.example", "https://wandb.mycompany.example", "http://127.0.0.1:8080",
        "https://wandb.mycompany.example:8443/"]


def test_the_default_server_is_the_sdks():
    from wandb.sdk.lib import urls
    from wandb.sdk.wandb_settings import Settings

    assert DEFAULT_BASE_URL == urls.DEFAULT_BASE_URL == Settings().base_url.rstrip("/")


@pytest.mark.parametrize("url", URLS)
def test_app_url_is_the_sdks(url):
    from wandb import util

    assert app_url(url.rstrip("/")) == util.api_to_app_url(url.rstrip("/"))


@pytest.mark.parametrize("url", ["https://forge.coreweave.com/api/wandb", "https://qa.forge.coreweave.com/api/wandb/",
                                 "https://api.wandb.ai", "https://wandb.mycompany.example"])
def test_forge_proxy_urls_are_normalized_as_the_sdk_does(url):
    from wandb.sdk.lib import urls

    assert normalize_base_url(url) == urls.normalize_forge_base_url(url.rstrip("/"))


def test_a_forge_url_that_is_not_its_api_is_refused():
    with pytest.raises(ConfigurationError, match="https://api.forge.coreweave.com"):
        normalize_base_url("https://forge.coreweave.com/somewhere")


@pytest.mark.parametrize("url", ["https://api.forge.coreweave.com", "https://api.wandb.ai",
                                 "https://wandb.mycompany.example:8443", "https://other.example"])
def test_netrc_lookup_falls_back_as_the_sdk_does(url, tmp_path, monkeypatch):
    """`wandb login` against api.wandb.ai wrote the only entry: the Forge default host finds it too."""
    from wandb.sdk.lib.wbauth import wbnetrc

    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n"
                     "machine wandb.mycompany.example:8443\n  login user\n  password " + "s" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert netrc_key(url) == wbnetrc.read_netrc_auth(host=url)


def test_base_url_from_the_sdks_settings_file_as_wandb_login_host_writes_it(tmp_path):
    """`wandb login --host` stores `base_url` in the SDK's global settings file; the workspace file wins."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "settings").write_text("[default]\nbase_url = https://wandb.mycompany.example\n")
    work = tmp_path / "work"
    (work / "wandb").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "WANDB_BASE_URL"} | {"WANDB_CONFIG_DIR": str(config)}
    probe = ("import tests.no_network; tests.no_network.install()\n"  # as in conftest: loopback only
             "import json, wandb\nfrom wandb_source.api.credentials import default_base_url\n"
             "print(json.dumps([default_base_url(), wandb.setup().settings.base_url]))")
    for workspace in (None, "https://workspace.example"):
        if workspace:
            (work / "wandb" / "settings").write_text(f"[default]\nbase_url = {workspace}\n")
        env["PYTHONPATH"] = str(ROOT)
        done = subprocess.run([sys.executable, "-c", probe], cwd=work, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        ours, sdk = json.loads(done.stdout.strip().splitlines()[-1])
        assert ours == sdk.rstrip("/") == (workspace or "https://wandb.mycompany.example")


def test_wandb_base_url_wins_over_the_settings_file(tmp_path, monkeypatch):
    (tmp_path / "settings").write_text("[default]\nbase_url = https://wandb.mycompany.example\n")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9/")
    assert default_base_url() == "http://127.0.0.1:9"
    monkeypatch.delenv("WANDB_BASE_URL")
    assert default_base_url() == "https://wandb.mycompany.example"


@pytest.mark.parametrize("value, low, high", [
    ("3", 3, 3), ("0.5", 0.5, 0.5), ("-4", 0, 0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0, 0), ("soon", None, None),
])
def test_retry_after_in_seconds_or_as_an_http_date(value, low, high):
    got = parse_retry_after(value)
    assert got == low if low is None else low <= got <= high


def test_retry_after_date_in_the_future():
    import email.utils
    import time

    assert 8 <= parse_retry_after(email.utils.formatdate(time.time() + 10, usegmt=True)) <= 10
