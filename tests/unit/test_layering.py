"""The rules of the house, as a test: handlers in functions/ talk no SQL; the engine
(layers/) knows nothing of Chalice, HTTP servers or the local runtime; the local runtime
knows nothing of orders, nor of PostgreSQL.

An AST walk rather than import-linter: functions/ is a folder of top-level Lambda modules,
not a package an import graph can be rooted at, and "no SQL" is about the text of string
literals, not about imports. The walk sees every `import` and `from ... import` at any
depth (inside functions too), and every string literal.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A statement keyword followed by what makes it a statement; upper case, as the project
# writes its SQL, so that prose ("select a venue") is not taken for a query.
SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM"
    r"|CREATE\s+(TABLE|INDEX)|ALTER\s+TABLE|DROP\s+TABLE)\b",
    re.DOTALL,
)


@dataclass(frozen=True)
class Rule:
    name: str
    folder: str  # relative to the repository
    forbidden: frozenset[str]  # top-level modules, or dotted prefixes
    no_sql: bool = False


RULES = [
    Rule("functions/ talk no SQL", "functions", frozenset({"psycopg", "psycopg_pool"}), True),
    Rule(
        "the engine knows no Chalice, HTTP server or local runtime",
        "layers",
        frozenset(
            {
                "chalice",
                "local_runtime",
                "order_engine_cli",
                "uvicorn",
                "starlette",
                "websockets",
                "http.server",
                "socketserver",
                "wsgiref",
                "aiohttp",
            }
        ),
    ),
    Rule(
        "the local runtime knows no orders and no PostgreSQL",
        "infra/local_runtime",
        frozenset({"order_engine", "order_engine_cli", "psycopg", "psycopg_pool", "pgserver"}),
    ),
]


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in `tree`; `from a import b` yields a.b too,
    so a rule can forbid a submodule (http.server) as well as a package."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def is_forbidden(module: str, forbidden: frozenset[str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in forbidden)


def violations(rule: Rule, root: Path) -> list[str]:
    """Every import the rule forbids, and every SQL statement if it forbids SQL, in the
    Python files under `root / rule.folder`, as "path:line: what"."""
    found: list[str] = []
    for path in sorted((root / rule.folder).rglob("*.py")):
        if ".venv" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = path.relative_to(root)
        for line, module in imported_modules(tree):
            if is_forbidden(module, rule.forbidden):
                found.append(f"{where}:{line}: imports {module}")
        if rule.no_sql:
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and (match := SQL.search(node.value))
                ):
                    found.append(f"{where}:{node.lineno}: SQL {match.group(0)[:40]!r}")
    return sorted(set(found))


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_no_layer_reaches_into_another(rule: Rule) -> None:
    assert violations(rule, ROOT) == []


# --- the checker itself: a planted violation is found ---------------------------------

PLANTED = {
    "functions/ talk no SQL": [
        "import psycopg\n",
        "from psycopg_pool import ConnectionPool\n",
        'QUERY = """\n    SELECT id\n      FROM orders\n"""\n',
        "def f():\n    return 'UPDATE orders SET status = 1'\n",
    ],
    "the engine knows no Chalice, HTTP server or local runtime": [
        "from chalice import Chalice\n",
        "def lazy():\n    import local_runtime.runtime\n",
        "from http import server\n",
        "import uvicorn\n",
    ],
    "the local runtime knows no orders and no PostgreSQL": [
        "from order_engine.service import OrderService\n",
        "import order_engine\n",
        "import pgserver\n",
    ],
}


@pytest.mark.parametrize(
    ("rule", "source"),
    [(rule, source) for rule in RULES for source in PLANTED[rule.name]],
    ids=[f"{rule.name}: {source.strip()[:30]}" for rule in RULES for source in PLANTED[rule.name]],
)
def test_a_planted_violation_is_found(rule: Rule, source: str, tmp_path: Path) -> None:
    planted = tmp_path / rule.folder / "sub" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text(source)
    assert violations(rule, tmp_path) != []


def test_prose_and_allowed_imports_are_not_violations(tmp_path: Path) -> None:
    folder = tmp_path / "functions"
    folder.mkdir()
    (folder / "fine.py").write_text(
        "import http.client\nfrom order_engine.service import OrderService\n"
        "HELP = 'select a venue, then update the order'\n"
    )
    assert violations(RULES[0], tmp_path) == []
