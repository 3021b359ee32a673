"""Docs that cannot go stale: every setting is in the README, and the README's commands are CI's."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings

ROOT = Path(__file__).parent.parent


def test_every_setting_is_documented() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [f"TIPBOX_{name.upper()}" for name in Settings.model_fields if f"`TIPBOX_{name.upper()}`" not in readme]
    assert missing == []


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_dockerfile_serves_with_a_healthcheck_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    assert "USER tipbox" in dockerfile
    assert '"tipbox", "serve", "--host", "0.0.0.0"' in dockerfile
