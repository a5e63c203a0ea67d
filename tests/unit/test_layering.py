"""The rooms of STYLE.md, checked on every file's imports (an import-linter equivalent):
Home.py/pages → backend → models; supervisor → backend, models; supervisor and backend never
import streamlit; pages never touch docker, SQL sessions, git or the supervisor directly.

And the shape inside the rooms (backend/, models/, supervisor/): supervisor's proxy and API
reach data only through backend/ (no database session of their own); no import circles
between modules (every import counts: module-level, TYPE_CHECKING and inside functions);
no module uses another module's leading-underscore names; the reconciler is the one writer
of the route table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from backend.platform.settings import PROJECT_ROOT

FORBIDDEN = {
    "ui": {"models", "sqlmodel", "sqlalchemy", "docker", "github", "supervisor", "subprocess",
           "alembic", "aiohttp"},
    "backend": {"streamlit", "streamlit_authenticator", "supervisor", "docker"},
    "models": {"streamlit", "backend", "supervisor", "docker", "github"},
    "supervisor": {"streamlit", "streamlit_authenticator"},
}


def room_files() -> list[tuple[str, Path]]:
    files = [("ui", PROJECT_ROOT / "Home.py")] if (PROJECT_ROOT / "Home.py").exists() else []
    files += [("ui", p) for p in (PROJECT_ROOT / "pages").rglob("*.py")]
    for room in ("backend", "models", "supervisor"):
        files += [(room, p) for p in (PROJECT_ROOT / room).rglob("*.py")]
    return files


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("room,path", room_files(),
                         ids=[str(p.relative_to(PROJECT_ROOT)) for _, p in room_files()])
def test_room_imports(room: str, path: Path) -> None:
    bad = imported_roots(path) & FORBIDDEN[room]
    assert not bad, f"{path.relative_to(PROJECT_ROOT)} ({room}) imports {sorted(bad)}"


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import streamlit as st\nfrom sqlmodel import Session\n")
    assert imported_roots(sample) & FORBIDDEN["backend"] == {"streamlit"}
    assert imported_roots(sample) & FORBIDDEN["ui"] == {"sqlmodel"}


# The shape of the code: data access, import circles, private names ----------------------------
# Each check takes the project root so that it can be run against any checkout.

PRODUCT_ROOMS = ("backend", "models", "supervisor")
# supervisor's proxy and API reach data through backend services (functions in backend/, or
# backend/read_model.py), never with database sessions of their own.
BACKEND_ONLY = ("supervisor/proxy", "supervisor/api")
SESSION_LIBRARIES = {"sqlmodel", "sqlalchemy"}
SESSION_NAMES = {"session_scope", "make_engine", "migrate", "Session"}

# Found by the checks below in other rooms, each left to its owner (a rule is not weakened
# for new code: an entry names one circle or one use, without line numbers).
ALLOWED_CIRCLES: list[list[str]] = []
ALLOWED_PRIVATE: set[str] = set()


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for backend/, models/ and supervisor/ under `root`."""
    found = {}
    for room in PRODUCT_ROOMS:
        for path in sorted((root / room).rglob("*.py")):
            found[module_name(root, path)] = path
    return found


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(module, imported name or "", line) of every import in the file, module-level or not,
    TYPE_CHECKING ones included, relative ones resolved. `from a import b` with a module
    `a.b` counts as an import of `a.b`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full, "", node.lineno) if full in modules else
                           (base, alias.name, node.lineno))
    return out


def session_imports(root: Path) -> list[str]:
    """Imports of database sessions in supervisor's proxy and API."""
    modules = product_modules(root)
    bad = []
    for name, path in modules.items():
        rel = str(path.relative_to(root))
        if not rel.startswith(BACKEND_ONLY):
            continue
        for module, imported, line in imports_of(path, name, modules):
            if module.split(".")[0] in SESSION_LIBRARIES or (
                    module.split(".")[0] == "models" and imported in SESSION_NAMES):
                bad.append(f"{rel}:{line} imports {module}{'.' + imported if imported else ''}")
    return bad


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = product_modules(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, _, _ in imports_of(path, name, modules):
            if module in modules and module != name:
                graph[name].add(module)
    return graph


def import_circles(root: Path) -> list[list[str]]:
    """The import circles among modules of backend/, models/ and supervisor/: each strongly
    connected component of the import graph with more than one module (Tarjan)."""
    graph = import_graph(root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(circles)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_definitions(tree: ast.AST) -> set[str]:
    """Leading-underscore names a module defines: functions, classes, assigned names and
    attributes (`self._x = ...`, class bodies)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if is_private(n)}


def private_uses(root: Path) -> list[str]:
    """Cross-module uses of leading-underscore names: `from m import _x` of a product module,
    and `obj._x` (not on self or cls) where `_x` is a private name of another product
    module and not one of this module's own."""
    modules = product_modules(root)
    trees = {name: ast.parse(path.read_text(), str(path)) for name, path in modules.items()}
    defined = {name: private_definitions(tree) for name, tree in trees.items()}
    everywhere = set().union(*defined.values())
    bad = []
    for name, tree in trees.items():
        rel = str(modules[name].relative_to(root))
        for module, imported, line in imports_of(modules[name], name, modules):
            if module in modules and is_private(imported):
                bad.append(f"{rel}:{line} imports {module}.{imported}")
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and is_private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr in everywhere and node.attr not in defined[name]:
                bad.append(f"{rel}:{node.lineno} uses {ast.unparse(node)}")
    return bad


def test_proxy_and_api_open_no_database_sessions() -> None:
    bad = session_imports(PROJECT_ROOT)
    assert not bad, "reach data through backend/ instead:\n" + "\n".join(bad)


def test_no_import_circles() -> None:
    circles = [c for c in import_circles(PROJECT_ROOT) if c not in ALLOWED_CIRCLES]
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_no_cross_module_private_names() -> None:
    bad = [b for b in private_uses(PROJECT_ROOT)
           if re.sub(r":\d+ ", " ", b, count=1) not in ALLOWED_PRIVATE]
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


def test_allow_lists_name_only_what_is_still_there() -> None:
    """An entry whose circle or use is gone must go too (so the rule is whole again)."""
    circles = import_circles(PROJECT_ROOT)
    uses = {re.sub(r":\d+ ", " ", b, count=1) for b in private_uses(PROJECT_ROOT)}
    stale = [" <-> ".join(c) for c in ALLOWED_CIRCLES if c not in circles]
    stale += sorted(ALLOWED_PRIVATE - uses)
    assert not stale, "remove from the allow-lists in this file:\n" + "\n".join(stale)


def test_the_shape_checks_catch_violations(tmp_path: Path) -> None:
    (tmp_path / "supervisor" / "proxy").mkdir(parents=True)
    (tmp_path / "backend").mkdir()
    (tmp_path / "models").mkdir()
    for package in ("supervisor", "supervisor/proxy", "backend", "models"):
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "models" / "engine.py").write_text("def session_scope(): ...\n")
    (tmp_path / "backend" / "a.py").write_text(
        "from backend import b\ndef _helper(): ...\n")
    (tmp_path / "backend" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from backend.a import x\n"
        "def f(): from backend.a import _helper\n")
    (tmp_path / "supervisor" / "proxy" / "p.py").write_text(
        "from models.engine import session_scope\nfrom . import q\nq.thing._poke()\n"
        "self._mine = 1\n")
    (tmp_path / "supervisor" / "proxy" / "q.py").write_text(
        "class T:\n    def _poke(self): ...\n")
    assert session_imports(tmp_path) == [
        "supervisor/proxy/p.py:1 imports models.engine.session_scope"]
    assert import_circles(tmp_path) == [["backend.a", "backend.b"]]
    assert private_uses(tmp_path) == ["backend/b.py:4 imports backend.a._helper",
                                      "supervisor/proxy/p.py:3 uses q.thing._poke"]


# The route table has one writer, the reconciler; a standalone proxy's replica is refreshed
# by RoutePoller in the table's own module. Everyone else reads.
ROUTE_WRITERS = {"supervisor/control/reconciler.py", "supervisor/routes.py"}
ROUTE_MUTATORS = {"set", "replace_all", "remove"}
ROUTE_ADDRESSES = {"dashboard_address", "panel_address"}


def names_route_table(node: ast.expr) -> bool:
    """Is `node` an expression for a route table (`routes`, `self.routes`, `x.routes`)?"""
    return (isinstance(node, ast.Name) and node.id == "routes") or (
        isinstance(node, ast.Attribute) and node.attr == "routes")


def route_table_writes(root: Path) -> list[str]:
    bad = []
    for path in product_modules(root).values():
        rel = str(path.relative_to(root))
        if rel in ROUTE_WRITERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ROUTE_MUTATORS and names_route_table(node.func.value):
                bad.append(f"{rel}:{node.lineno} calls {ast.unparse(node.func)}")
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                for t in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if isinstance(t, ast.Attribute) and t.attr in ROUTE_ADDRESSES and \
                            names_route_table(t.value):
                        bad.append(f"{rel}:{node.lineno} assigns {ast.unparse(t)}")
    return bad


def test_the_reconciler_is_the_one_writer_of_the_route_table() -> None:
    bad = route_table_writes(PROJECT_ROOT)
    assert not bad, "only the reconciler writes the route table:\n" + "\n".join(bad)


def test_the_route_writer_check_catches_a_writer(tmp_path: Path) -> None:
    (tmp_path / "supervisor").mkdir()
    (tmp_path / "supervisor" / "dash.py").write_text(
        "def f(self, routes, r):\n    routes.panel_address = None\n"
        "    self.proxy.routes.set(r)\n    self.routes.get('x')\n    row.panel_address = 1\n")
    (tmp_path / "supervisor" / "control").mkdir()
    (tmp_path / "supervisor" / "control" / "reconciler.py").write_text(
        "def f(self, r):\n    self.routes.set(r)\n")
    assert route_table_writes(tmp_path) == [
        "supervisor/dash.py:2 assigns routes.panel_address",
        "supervisor/dash.py:3 calls self.proxy.routes.set"]
