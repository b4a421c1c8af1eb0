"""Settings: sources and precedence, validation messages that name the setting and the fix, secrets kept out."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from connector.errors import SettingsError
from connector.settings import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("M365SYNC_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults() -> None:
    s = Settings.load()
    assert s.store_url == "sqlite:///m365sync.db" and s.resources == ["mail", "calendar", "contacts", "tasks"]
    assert (s.calendar_past_days, s.calendar_future_days, s.mailbox_concurrency) == (90, 365, 4)


def test_yaml_then_dotenv_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"page_size": 10, "mailboxes": ["a@contoso.com", {"address": "b@contoso.com", "folders": ["inbox/X"]}],
                                   "store_url": "sqlite:///from-yaml.db", "resources": ["mail"]}))
    s = Settings.load(cfg)
    assert s.page_size == 10 and [m.address for m in s.mailboxes] == ["a@contoso.com", "b@contoso.com"]  # type: ignore[union-attr]
    assert s.mailbox("B@contoso.com").folders == ["inbox/X"]
    (tmp_path / ".env").write_text("M365SYNC_PAGE_SIZE=20\nM365SYNC_STORE_URL=sqlite:///from-dotenv.db\n")
    s = Settings.load(cfg)
    assert s.page_size == 20 and s.store_url == "sqlite:///from-dotenv.db"
    monkeypatch.setenv("M365SYNC_PAGE_SIZE", "30")
    monkeypatch.setenv("M365SYNC_MAILBOXES", "all")
    s = Settings.load(cfg)
    assert s.page_size == 30 and s.mailboxes == "all" and s.resources == ["mail"]


def test_config_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("page_size: 42\n")
    monkeypatch.setenv("M365SYNC_CONFIG", str(cfg))
    assert Settings.load().page_size == 42


@pytest.mark.parametrize(("env", "setting", "fix"), [
    ({"M365SYNC_PAGE_SIZE": "0"}, "page_size", "1 to 1000"),
    ({"M365SYNC_MAILBOX_CONCURRENCY": "9"}, "mailbox_concurrency", "Outlook allows 4"),
    ({"M365SYNC_GRAPH_URL": "http://graph.example/v1.0"}, "graph_url", "https"),
    ({"M365SYNC_RESOURCES": "mail,fax"}, "resources", "mail, calendar, contacts, tasks"),
    ({"M365SYNC_STORE_URL": "postgres://x"}, "store_url", "sqlite:///"),
    ({"M365SYNC_MAILBOXES": "not-an-address"}, "mailboxes", "addresses"),
])
def test_bad_values_name_the_setting_and_the_fix(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], setting: str, fix: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as err:
        Settings.load()
    text = str(err.value)
    assert setting in text and f"M365SYNC_{setting.upper()}" in text and fix in text


def test_secrets_stay_out_of_reprs_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M365SYNC_CLIENT_SECRET", "hunter2-very-secret")
    s = Settings.load()
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    monkeypatch.setenv("M365SYNC_CLIENT_CERTIFICATE_PATH", "/x.pem")
    with pytest.raises(SettingsError) as err:
        Settings.load()
    assert "hunter2" not in str(err.value) and "not both" in str(err.value)


def test_missing_credentials_are_named() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.load().require_credentials()
    text = str(err.value)
    assert "M365SYNC_TENANT_ID" in text and "M365SYNC_CLIENT_ID" in text and "M365SYNC_CLIENT_SECRET" in text


def test_missing_config_file() -> None:
    with pytest.raises(SettingsError, match="config file not found"):
        Settings.load("nope.yaml")
