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


# Each process on the way from `workbench run --detach` to a run's first step imports only what it uses: every module
# it loads is paid for again on each launch, in series (CLI, then supervisor, then worker; benchmarks/bench_overhead.py
# --measure first-step). The task's own modules (torch, numpy, pandas) are the worker's to import, inside the task.
_NOT_ON_THE_LAUNCH_PATH = {"torch", "pandas", "numpy", "streamlit", "alembic", "optuna", "ray", "plotly", "pyarrow"}
_PROCESS_IMPORTS = {
    # the CLI: validate the config, insert the run, a housekeeping pass that starts the supervisor
    "workbench.cli": _NOT_ON_THE_LAUNCH_PATH,
    # the supervisor: claim the run, start the worker, beat the heartbeat, record the exit, housekeeping
    "workbench.runner.supervisor": _NOT_ON_THE_LAUNCH_PATH | {"typer", "yaml"},
    # the worker before its task runs: read the run, build the context (the task imports torch and its data stack)
    "workbench.runner.worker": _NOT_ON_THE_LAUNCH_PATH | {"typer"},
}


def _loaded_by(code: str, env: dict[str, str] | None = None) -> set[str]:
    import json
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        check=True, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})},
    )  # fmt: skip
    return {name.split(".")[0] for name in json.loads(out.stdout.splitlines()[-1])}


def test_launch_path_processes_import_only_what_they_use():
    bad = {module: sorted(_loaded_by(f"import {module}") & forbidden) for module, forbidden in _PROCESS_IMPORTS.items()}
    assert not any(bad.values()), f"imported on the way to a run's first step: {bad}"


def test_opening_an_up_to_date_store_does_not_load_alembic(tmp_path):
    """The schema check on every open compares the stored revision string with HEAD (store/schema.py); alembic is
    loaded only to create, upgrade or refuse a store."""
    env = {"WORKBENCH_HOME": str(tmp_path / "home")}
    opened = "from workbench.settings import get_settings\nfrom workbench.store import get_engine\nget_engine(get_settings().database_url)"
    assert "alembic" in _loaded_by(opened, env)  # the first open creates the store at HEAD
    assert "alembic" not in _loaded_by(opened, env)
