"""The one settings object: every ``PIXELQUERY_*`` variable parsed in one place, round-tripped to uvicorn
workers through the environment, and bad values reported as one line naming the option and its variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pixelquery_tiler.settings import Settings, SettingsError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``PIXELQUERY_*`` variable from the caller's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("PIXELQUERY_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_environment_variables_parse_into_fields(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {
        "PIXELQUERY_API_KEYS": " a, b ,,",  # comma-separated, blanks dropped
        "PIXELQUERY_IMPORT_ROOTS": os.pathsep.join([str(tmp_path), "", "/srv/x"]),
        "PIXELQUERY_READ_AUTH": "1",
        "PIXELQUERY_JOB_LEASE": "2.5",
        "PIXELQUERY_RATE_LIMIT": "",  # empty = unset
        "PIXELQUERY_CATALOG_URI": "postgresql+psycopg2://u@h/db",
        "PIXELQUERY_HEADER_TIMEOUT": "3",
    }
    for name, value in values.items():
        clean_env.setenv(name, value)
    s = Settings()
    assert s.api_keys == ["a", "b"]
    assert s.import_roots == [str(tmp_path), "/srv/x"]
    assert s.read_auth is True and s.job_lease == 2.5 and s.rate_limit is None
    assert s.catalog_uri == "postgresql+psycopg2://u@h/db" and s.header_timeout == 3.0
    assert (s.job_workers, s.job_attempts, s.max_upload_mb) == (1, 3, 2048)  # untouched defaults
    # keyword arguments (the CLI) beat the environment
    assert Settings(job_lease=9).job_lease == 9 and Settings(job_lease=9).api_keys == ["a", "b"]


def test_to_env_round_trips_through_a_worker_environment(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What ``serve`` exports is exactly what each uvicorn worker's ``Settings()`` reads back."""
    original = Settings(
        warehouse=str(tmp_path),
        api_keys=["k1", "k2"],
        read_auth=True,
        import_roots=[str(tmp_path)],
        rate_limit="5/s",
        job_workers=0,
        job_lease=7.5,
        access_log_json=True,
        cors_origins="https://a.example,https://b.example",
        catalog_props="s3.endpoint=http://127.0.0.1:9000",
    )
    env = original.to_env()
    assert env["PIXELQUERY_API_KEYS"] == "k1,k2" and env["PIXELQUERY_CATALOG_URI"] == ""
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert Settings() == original
    assert Settings().cors_origin_list == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("PIXELQUERY_JOB_LEASE", "soon", "--job-lease / PIXELQUERY_JOB_LEASE: Input should be a valid number"),
        ("PIXELQUERY_JOB_WORKERS", "-2", "--job-workers >= 0 required (PIXELQUERY_JOB_WORKERS, got '-2')"),
        ("PIXELQUERY_PNG_ZLEVEL", "99", "PIXELQUERY_PNG_ZLEVEL <= 12 required (got '99')"),
        ("PIXELQUERY_RATE_LIMIT", "lots", "invalid rate limit 'lots'"),
        ("PIXELQUERY_READ_AUTH", "1", "--read-auth needs at least one --api-key (PIXELQUERY_API_KEYS)"),
    ],
)
def test_a_bad_value_is_one_line_naming_option_and_variable(
    clean_env: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        Settings()
    text = str(raised.value)
    assert text.startswith("invalid setting: ") and message in text and "\n" not in text, text


def test_two_bad_values_are_both_named_on_one_line(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings(job_attempts=0, max_upload_mb=0)
    text = str(raised.value)
    assert "--job-attempts >= 1 required" in text and "--max-upload-mb >= 1 required" in text
    assert "\n" not in text


def test_cli_reports_a_bad_environment_value_in_one_line(tmp_path: Path) -> None:
    """A bad variable stops ``serve`` before it binds a port: exit 2, one line, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PIXELQUERY_JOB_ATTEMPTS": "many"}
    done = subprocess.run(
        [sys.executable, "-m", "pixelquery_tiler", "serve", str(tmp_path), "--create", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "--job-attempts / PIXELQUERY_JOB_ATTEMPTS" in lines[0]


def test_serve_options_extend_or_override_the_environment(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keys and roots add to the environment's, switches turn on, values replace; the result goes to workers."""
    from pixelquery_tiler.cli import _serve_settings, build_parser

    other = tmp_path / "imports"
    other.mkdir()
    clean_env.setenv("PIXELQUERY_API_KEYS", "env-key")
    clean_env.setenv("PIXELQUERY_IMPORT_ROOTS", str(tmp_path))
    clean_env.setenv("PIXELQUERY_READ_AUTH", "1")  # satisfied by the environment's key
    clean_env.setenv("PIXELQUERY_RATE_LIMIT", "10/s")
    clean_env.setenv("PIXELQUERY_JOB_LEASE", "99")  # the option's default replaces it, as before
    args = build_parser().parse_args(
        ["serve", str(tmp_path), "--api-key", "cli-key", "--import-root", str(other), "--job-workers", "0"]
    )
    s = _serve_settings(args, str(tmp_path))
    assert s.api_keys == ["env-key", "cli-key"] and s.import_roots == [str(tmp_path), str(other)]
    assert s.read_auth is True and s.rate_limit == "10/s" and s.job_workers == 0 and s.job_lease == 60.0
    assert s.warehouse == str(tmp_path)

    # read auth switched on in the environment, its only key given on the command line: consistent together
    clean_env.delenv("PIXELQUERY_API_KEYS")
    args = build_parser().parse_args(["serve", str(tmp_path), "--api-key", "cli-key", "--rate-limit", "5/s"])
    s = _serve_settings(args, str(tmp_path))
    assert s.read_auth is True and s.api_keys == ["cli-key"] and s.rate_limit == "5/s"
    with pytest.raises(SettingsError, match="--read-auth needs at least one --api-key"):
        _serve_settings(build_parser().parse_args(["serve", str(tmp_path)]), str(tmp_path))
