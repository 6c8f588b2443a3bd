"""What `pip install jukinet` and `pip install 'jukinet[ops]'` give (pyproject.toml): the Lambda
runtime keeps its own dependencies only, the `ops` extra brings everything the operator command
imports, and without it every command says to install it instead of failing on an import.
The wheel itself is installed and run by scripts/wheel-smoke (called by .ci/run)."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infra.bundling import runtime_requirements
from jukinet_ops import cli

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
OWN = {"jukinet", "jukinet_ops", "embedded_aws", "infra"}


def _closure(requirements: list[str]) -> set[str]:
    """The distributions these requirements install, with their dependencies (as installed here)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen or key[0] == "jukinet":
            continue
        seen.add(key)
        try:
            requires = importlib.metadata.requires(req.name) or []
        except importlib.metadata.PackageNotFoundError:  # not installed here (another platform's dependency)
            continue
        for text in requires:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                todo.append(sub)
    return {name for name, _ in seen}


def _third_party_imports(*roots: str) -> dict[str, set[str]]:
    """Top-level module → the files importing it, for every import that is neither the standard
    library nor this project."""
    found: dict[str, set[str]] = {}
    for root in roots:
        for path in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top not in sys.stdlib_module_names and top not in OWN:
                        found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def _unprovided(imports: dict[str, set[str]], distributions: set[str]) -> dict[str, set[str]]:
    provides = importlib.metadata.packages_distributions()
    return {module: files for module, files in imports.items()
            if not {canonicalize_name(d) for d in provides.get(module, [])} & distributions}


def test_the_ops_extra_holds_the_operator_tools_and_dev_holds_ops():
    extras = PROJECT["optional-dependencies"]
    ops = {canonicalize_name(Requirement(r).name) for r in extras["ops"]}
    assert {"aws-cdk-lib", "cdk-nag", "constructs", "moto", "rich"} <= ops
    assert "jukinet[ops]" in extras["dev"]  # the development environment is the operator's, plus test tools


def test_every_package_the_operator_command_imports_comes_with_jukinet_ops():
    installed = _closure([*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["ops"]])
    missing = _unprovided(_third_party_imports("jukinet_ops", "embedded_aws", "infra"), installed)
    assert missing == {}, f"imported by the jukinet command but in neither the dependencies nor the ops extra: {missing}"


def test_the_lambda_runtime_imports_only_its_own_dependencies():
    installed = _closure(PROJECT["dependencies"])
    missing = _unprovided(_third_party_imports("lambdas/jukinet"), installed)
    assert missing == {}, f"imported by the Lambda code but not a runtime dependency: {missing}"


def test_the_lambda_bundle_gets_no_operator_tool():
    bundled = {canonicalize_name(Requirement(r).name) for r in runtime_requirements()}
    ops = {canonicalize_name(Requirement(r).name) for r in PROJECT["optional-dependencies"]["ops"]}
    assert bundled and not bundled & ops
    assert not bundled & {"aws-cdk-lib", "cdk-nag", "moto", "rich", "jsii"}


def test_without_the_extra_every_command_says_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(cli.OPS_MODULES, "jukinet_no_such_module", "no-such-package")
    for argv in (["--help"], ["reconcile"], ["status"], ["synth"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "install jukinet[ops]" in err and "no-such-package" in err and "pip install 'jukinet[ops]'" in err


def test_a_module_of_the_extra_missing_inside_a_command_is_named_not_raised(monkeypatch, capsys):
    def needs_moto(args):
        raise ModuleNotFoundError("No module named 'moto.server'", name="moto.server")

    monkeypatch.setattr(cli, "cmd_status", needs_moto)
    assert cli.main(["status"]) == 2
    assert "install jukinet[ops]: the operator commands need moto[server]" in capsys.readouterr().err


def test_any_other_missing_module_is_a_bug_and_raises(monkeypatch):
    def broken(args):
        raise ModuleNotFoundError("No module named 'jukinet.nowhere'", name="jukinet.nowhere")

    monkeypatch.setattr(cli, "cmd_status", broken)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["status"])


def test_synthesis_outside_a_checkout_says_what_it_needs(monkeypatch, tmp_path, capsys):
    import jukinet_ops.synth

    monkeypatch.setattr(jukinet_ops.synth, "REPO_ROOT", tmp_path)  # as installed: site-packages, no app.py
    assert cli.main(["synth", "--out", str(tmp_path / "cdk.out")]) == 2
    assert "needs a checkout of the jukinet repository" in capsys.readouterr().err
    assert not (tmp_path / "cdk.out").exists()
