"""Imports point one way: pages, app.py, the CLI and workbench/ui talk to workbench.api only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"torch", "sqlmodel", "sqlalchemy", "subprocess"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from workbench import store` names the module workbench.store: count both
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _ui_files() -> list[Path]:
    return [ROOT / "app.py", *sorted((ROOT / "workbench").glob("cli*.py")), *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "workbench" / "ui").glob("*.py"))]


def test_ui_and_cli_never_import_lower_layers():
    """Also `from workbench import store` and `from workbench.runner import launch`, not only dotted imports."""
    bad = []
    for path in _ui_files():
        for name in _imports(path):
            top = name.split(".")[0]
            if top in FORBIDDEN or name.startswith(("workbench.store", "workbench.runner", "workbench.tasks")):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_tasks_never_import_the_store_or_streamlit():
    bad = []
    for path in sorted((ROOT / "workbench" / "tasks").rglob("*.py")):
        for name in _imports(path):
            if name.split(".")[0] == "streamlit" or name.startswith(("workbench.store", "sqlmodel", "sqlalchemy")):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_config_modules_do_not_import_torch():
    """The CLI validates configs and lists runs without paying torch's ~4 s import."""
    bad = []
    for path in [*sorted((ROOT / "workbench" / "tasks").glob("*/config.py")), *sorted((ROOT / "workbench" / "tasks").glob("*/__init__.py"))]:
        if "torch" in {n.split(".")[0] for n in _imports(path)}:
            bad.append(str(path.relative_to(ROOT)))
    assert not bad, bad


def test_the_api_package_has_no_import_cycle():
    """workbench/api/ modules import each other in one direction only (base -> configs -> runs -> metrics ->
    checkpoints -> compare, lineage -> downloads), so any of them can be imported on its own."""
    import subprocess
    import sys

    order = ["base", "configs", "runs", "metrics", "checkpoints", "compare", "lineage", "downloads", "studies"]
    for i, name in enumerate(order):
        later = {f"workbench.api.{m}" for m in order[i + 1 :]}
        found = {n for n in _imports(ROOT / "workbench" / "api" / f"{name}.py") if n in later}
        assert not found, f"workbench/api/{name}.py imports {sorted(found)}, which come after it"
        subprocess.run([sys.executable, "-c", f"import workbench.api.{name}"], check=True, cwd=ROOT)
