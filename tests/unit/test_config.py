"""Config: the example is valid and is the embedded default; mistakes are all reported
with their key paths; secrets are references only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings, parse_settings, resolve_secret

ROOT = Path(__file__).resolve().parents[2]


def hammer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_config_example_passes_check() -> None:
    r = hammer("config", "check", str(ROOT / "config.example.toml"))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_embedded_default_is_the_example() -> None:
    s = load_settings(None)
    assert (s.http.host, s.http.port) == ("127.0.0.1", 8080)
    assert s.store.backend == "sqlite" and s.db_path.name == "hammer.db"
    assert "web" in s.enabled("chat") and "docker" in s.enabled("cloud")
    assert s.artifacts.store == "local"


def test_three_mistakes_are_all_reported_with_key_paths(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[http]\nport = "eighty"\n[jobs]\nmax_runtime = "forever"\n[gateway]\nlog_levle = "info"\n')
    r = hammer("config", "check", str(bad))
    assert r.returncode == 2
    assert "3 problem(s)" in r.stderr
    assert "http.port:" in r.stderr
    assert "jobs.max_runtime: expected a duration" in r.stderr
    assert "gateway.log_levle: unknown key" in r.stderr
    assert "Traceback" not in r.stderr


def test_adapter_sections_are_validated_by_the_adapters_own_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[chat.web]\nhistroy = 10\n[chat.nosuch]\nenabled = true\n')
    r = hammer("config", "check", str(bad))
    assert r.returncode == 2
    assert "chat.web.histroy: unknown key" in r.stderr or "chat.nosuch" in r.stderr


def test_literal_secrets_are_refused() -> None:
    from gateway.app import adapter_validators
    from gateway.plugins import load_plugins
    with pytest.raises(ConfigError) as err:
        parse_settings('[chat.slack]\nbot_token = "xoxb-hunter2-literal"\n', "t", adapter_validators(load_plugins()))
    assert "chat.slack.bot_token" in err.value.render() and "env:NAME" in err.value.render()


def test_binding_beyond_loopback_needs_the_public_url_and_no_shared_token() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings('[http]\nhost = "0.0.0.0"\n')
    assert "gateway.public_url" in err.value.render()
    parse_settings('[gateway]\npublic_url = "https://hammer.example.com"\n[http]\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError) as err:
        parse_settings('[http]\ntoken = "env:HAMMER_WEB_TOKEN"\n')
    assert "hammer users add" in err.value.render()  # the shared token is gone: accounts instead


def test_not_toml_and_unreadable_files_are_explained(tmp_path: Path) -> None:
    (tmp_path / "x.toml").write_text("[http\nport=")
    r = hammer("config", "check", str(tmp_path / "x.toml"))
    assert r.returncode == 2 and "not valid TOML" in r.stderr
    r = hammer("config", "check", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "cannot read it" in r.stderr


def test_secret_references_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAMMER_TEST_SECRET", "s3cr3t-value")
    assert resolve_secret("env:HAMMER_TEST_SECRET") == "s3cr3t-value"
    f = tmp_path / "tok"
    f.write_text("file-secret-value\n")
    assert resolve_secret(f"file:{f}") == "file-secret-value"
    with pytest.raises(ValueError, match="is not set"):
        resolve_secret("env:HAMMER_NOT_SET_ANYWHERE")


def test_a_users_file_overlays_the_embedded_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "mine.toml"
    cfg.write_text(f'[gateway]\ndata_dir = "{tmp_path}"\n[http]\nport = 9123\n')
    s = load_settings(cfg)
    assert s.http.port == 9123 and s.http.host == "127.0.0.1"  # the rest of [http] kept its default
    assert list(s.enabled("chat")) == ["web"] and list(s.enabled("cloud")) == ["docker"]  # nothing vanished
    off = parse_settings("[chat.web]\nenabled = false\n[cloud.docker]\nenabled = false\n")
    assert off.enabled("chat") == {} and off.enabled("cloud") == {}
    merged = parse_settings('[cloud.docker]\nnetwork = "none"\n')
    assert merged.cloud["docker"]["network"] == "none" and merged.cloud["docker"]["pids"] == 1024


def test_config_show_prints_the_merged_result_and_where_each_value_came_from(tmp_path: Path) -> None:
    import tomllib
    cfg = tmp_path / "mine.toml"
    cfg.write_text('[http]\nport = 9123\n[cloud.docker]\nenabled = false\n')
    r = hammer("config", "show", str(cfg))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert f"port = 9123  # {cfg}" in lines
    assert 'host = "127.0.0.1"  # config.example.toml (embedded)' in lines
    assert tomllib.loads(r.stdout)["cloud"]["docker"]["enabled"] is False  # it is TOML itself
    bad = tmp_path / "bad.toml"
    bad.write_text("[http]\nport = -1\n")
    r = hammer("config", "show", str(bad))
    assert r.returncode == 2 and "http.port" in r.stderr
