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
            names.add(node.module)
    return names


def _ui_files() -> list[Path]:
    return [ROOT / "app.py", ROOT / "workbench" / "cli.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "workbench" / "ui").glob("*.py"))]


def test_ui_and_cli_never_import_lower_layers():
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


def test_the_api_imports_no_store_torch_or_pandas_until_used():
    """`workbench validate`, `config` and the start of `run` skip SQLAlchemy (~0.4 s), pandas and torch."""
    import subprocess
    import sys

    code = "import sys, workbench.api; print(' '.join(m for m in ('sqlalchemy', 'sqlmodel', 'torch', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""
