"""Docs that cannot go stale: every setting in the README's table, CI running the README's command, the Dockerfile,
and docs/architecture.md naming every module in an order the imports keep."""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path

from app.settings import Settings

ROOT = Path(__file__).parent.parent
APP = ROOT / "app"


def _settings_table() -> dict[str, tuple[str, str]]:
    """The README's settings table: `TIPBOX_X` → (default, meaning), one row each."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows: dict[str, tuple[str, str]] = {}
    for line in readme.splitlines():
        match = re.fullmatch(r"\| `(TIPBOX_[A-Z0-9_]+)` \| (.*?) \| (.*) \|", line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} has two rows"
            rows[match.group(1)] = (match.group(2).strip(), match.group(3).strip())
    return rows


def test_every_setting_has_a_row_in_the_readme_settings_table() -> None:
    rows = _settings_table()
    fields = {f"TIPBOX_{name.upper()}" for name in Settings.model_fields}
    assert sorted(fields - set(rows)) == []  # documented
    assert sorted(set(rows) - fields) == []  # and nothing documented that does not exist
    assert all(default and len(meaning) > 10 for default, meaning in rows.values())


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", quick_start, re.DOTALL)
    assert block is not None
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    assert "make run" in commands and "make test" in commands
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert [line for line in ci if line and not line.startswith(("#", "set ", "cd ", "export "))] == ["make test"]


def test_dockerfile_serves_with_a_healthcheck_as_non_root() -> None:
    instructions: dict[str, list[str]] = {}
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            instructions.setdefault(word.upper(), []).append(rest.strip())
    assert instructions["USER"][-1] == "tipbox"
    assert "/healthz" in instructions["HEALTHCHECK"][-1]
    command = json.loads(instructions["CMD"][-1])
    assert command[:2] == ["tipbox", "serve"] and command[command.index("--host") + 1] == "0.0.0.0"
    assert "--proxy-headers" not in shlex.join(command)


# -- docs/architecture.md: every module, in an order its imports keep --------------------------------------------


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> set[str]:
    return {_module(path) for path in APP.rglob("*.py")} - {"app"}


def _listed() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    return [_module(ROOT / path) for path in re.findall(r"^- `(app/[\w/]+\.py)` — \S", text, re.MULTILINE)]


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The app modules `path` imports (`from app.x import y` counts y when y is a module, else x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "app":
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules
            found |= submodules
            if len(submodules) < len(node.names) and node.module != "app":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
    return found - {_module(path)}


def test_the_architecture_names_every_module_once() -> None:
    listed = _listed()
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert sorted(_modules() - set(listed)) == [], "modules missing from docs/architecture.md"
    assert sorted(set(listed) - _modules()) == [], "docs/architecture.md lists modules that do not exist"


def test_no_module_imports_one_earlier_in_the_flow() -> None:
    modules = _modules()
    position = {name: index for index, name in enumerate(_listed())}
    backwards = [
        f"{_module(path)} imports {target}"
        for path in sorted(APP.rglob("*.py"))
        if _module(path) in position
        for target in sorted(_imports(path, modules))
        if target in position and position[target] < position[_module(path)]
    ]
    assert backwards == []


def test_the_readmes_poster_example_works_after_make_run(tmp_path: Path) -> None:
    """The command the README gives runs as written on a fresh set-up (no settings: the demo post)."""
    import os
    import subprocess

    from tests.helpers import require

    require("pdftoppm", "poppler-utils")  # --png
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"after `make run`, for the demo post:\n`(\.venv/bin/tipbox poster [^`]+)`", readme)
    assert command is not None
    args = shlex.split(command.group(1))
    env = {name: value for name, value in os.environ.items() if not name.startswith("TIPBOX_")}
    done = subprocess.run([str(ROOT / args[0]), *args[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = Path(args[args.index("--out") + 1])
    assert (tmp_path / out).read_bytes().startswith(b"%PDF") and (tmp_path / out.with_suffix(".png")).is_file()
