"""No import cycle among the configuration (``infra/config/``) and ``infra.naming``; and the embedded
AWS (``embedded_aws/``) imports nothing from the operator commands (``jukinet_ops/``).

``infra.naming`` imports ``infra.config``; the configuration once imported ``infra.naming`` back
(inside ``Deployment.tiers``) for the tier names, which now live in ``infra/tier_names.py``.
Two checks: the import graph of ``infra/`` read from the source (every ``import``, also one
inside a function) has no cycle through these modules; and each module imports first in a
fresh interpreter, before and after each other one.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in INFRA.rglob("*.py")}


MODULES = _modules()
CHECKED = sorted(m for m in MODULES if m.startswith("infra.config") or m in {"infra.naming", "infra.tier_names"})


def _imports(name: str, path: Path) -> set[str]:
    """The ``infra`` modules ``name`` imports (absolute or relative, at any depth of the file)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


def _graph() -> dict[str, set[str]]:
    return {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle_through(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path start -> ... -> start, if any."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_the_modules_are_found():
    assert {"infra.config", "infra.config.deployment", "infra.config.people", "infra.naming",
            "infra.tier_names"} <= set(CHECKED)


@pytest.mark.parametrize("module", CHECKED)
def test_no_import_cycle_through(module):
    graph = _graph()
    assert _cycle_through(module, graph) is None, f"import cycle: {' -> '.join(_cycle_through(module, graph))}"


def test_the_cycle_check_finds_a_cycle():
    """The check can fail: the old ``Deployment.tiers`` imported ``infra.naming`` in its body."""
    graph = _graph()
    graph["infra.config.deployment"] = graph["infra.config.deployment"] | {"infra.naming"}
    assert _cycle_through("infra.naming", graph) == ["infra.naming", "infra.config", "infra.config.deployment",
                                                     "infra.naming"]


def test_each_module_imports_first_in_a_fresh_interpreter_in_both_orders():
    pairs = [f"import importlib; importlib.import_module({a!r}); importlib.import_module({b!r})"
             for a, b in itertools.permutations(CHECKED, 2)]
    # One interpreter per pair would take minutes; a clean sys.modules per pair does the same.
    script = "\n".join([
        "import importlib, sys",
        "base = set(sys.modules)",
        "for code in " + repr(pairs) + ":",
        "    for m in [m for m in sys.modules if m not in base and m.split('.')[0] == 'infra']:",
        "        del sys.modules[m]",
        "    exec(code)",
        "print('ok', len(" + repr(pairs) + "))",
    ])
    result = subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")


# -- the embedded AWS imports nothing from the operator commands (decision 0052) ---------------

EMBEDDED_AWS = REPO_ROOT / "embedded_aws"


def _imported_modules(package: str, source: str) -> set[str]:
    """Every module a file of ``package`` imports (absolute, or relative resolved against the
    package), at any depth of the file: an import inside a function counts as one at the top."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return found


def _embedded_aws_graph() -> dict[str, set[str]]:
    graph = {}
    for path in EMBEDDED_AWS.rglob("*.py"):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = _imported_modules(package, path.read_text(encoding="utf-8"))
    return graph


def _operator_imports(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The embedded AWS's modules that import the operator command's package, with those imports."""
    found = {module: {i for i in imports if i == "jukinet_ops" or i.startswith("jukinet_ops.")}
             for module, imports in graph.items()}
    return {module: imports for module, imports in found.items() if imports}


def test_the_embedded_aws_modules_are_found():
    graph = _embedded_aws_graph()
    assert {"embedded_aws", "embedded_aws.runner", "embedded_aws.api", "embedded_aws.iam_policy"} <= set(graph)


def test_the_embedded_aws_imports_nothing_from_the_operator_commands():
    """``embedded_aws`` is a package of its own: the operator commands (``jukinet_ops``) use it,
    never the other way round (the runner once imported ``jukinet_ops.emergency.ISOLATION_TAG``)."""
    assert _operator_imports(_embedded_aws_graph()) == {}


def test_the_dependency_check_finds_an_operator_import():
    """The check can fail: the runner's old import of the isolation tag from the emergency command,
    inside a function, and a relative import climbing out of the package."""
    graph = _embedded_aws_graph()
    graph["embedded_aws.runner"] |= _imported_modules(
        "embedded_aws", "def f():\n    from jukinet_ops.emergency import ISOLATION_TAG\n")
    graph["embedded_aws.api"] |= _imported_modules("embedded_aws.api", "from ...jukinet_ops import cli\n")
    assert _operator_imports(graph) == {
        "embedded_aws.runner": {"jukinet_ops.emergency", "jukinet_ops.emergency.ISOLATION_TAG"},
        "embedded_aws.api": {"jukinet_ops", "jukinet_ops.cli"}}
