"""The docs keep up with the code: every hook, Suite field and case property is documented."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
from pathlib import Path

import pytest

import robustprune
from robustprune.core.cases import Case, GroupCase, ShiftCase
from robustprune.plugin import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _text(name: str) -> str:
    path = DOCS / name
    assert path.is_file(), f"{path} is missing"
    return path.read_text(encoding="utf-8")


def _mentioned(name: str, text: str) -> bool:
    """``name`` appears as a whole word (so ``id`` is not found inside ``ideas``)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("robustprune_"))


def test_there_are_hooks_to_document():
    assert HOOKS, "no robustprune_* hooks found in robustprune/hookspecs.py"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_in_plugin_guide(hook):
    text = _text("plugin-guide.md")
    assert _mentioned(hook, text), f"hook {hook} is not documented in docs/plugin-guide.md"
    # with its signature, as plugin authors write it
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"def {hook}({params}" in text, f"docs/plugin-guide.md does not show `def {hook}({params}...)`"


SUITE_FIELDS = [f.name for f in dataclasses.fields(robustprune.Suite)]


def _user_docs() -> str:
    """The user-facing guides: the user guide, and beyond-accuracy.md for similarity, features, robust training."""
    return _text("user-guide.md") + "\n" + _text("beyond-accuracy.md")


@pytest.mark.parametrize("field", SUITE_FIELDS)
def test_suite_field_is_documented_in_user_guide(field):
    text = _user_docs()
    # as code: `field` in a table or field=... in an example
    assert f"`{field}`" in text or f"{field}=" in text, \
        f"Suite field {field!r} is not documented in docs/user-guide.md or docs/beyond-accuracy.md"


def _instance_attributes(cls: type) -> set[str]:
    """Attributes that ``cls.__init__`` assigns on ``self`` (``self.case, self.shift = ...`` included)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls.__init__)))
    names = set()
    for node in ast.walk(tree):
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        for target in targets:
            for t in target.elts if isinstance(target, ast.Tuple) else [target]:
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                    names.add(t.attr)
    return names


def _public_members(cls: type) -> list[str]:
    """Properties, methods and instance attributes not starting with ``_``."""
    return sorted(name for name in {*vars(cls), *_instance_attributes(cls)} if not name.startswith("_"))


CASE_MEMBERS = [(cls.__name__, name) for cls in (Case, ShiftCase, GroupCase) for name in _public_members(cls)]


def test_case_views_have_public_members():
    assert {cls for cls, _ in CASE_MEMBERS} == {"Case", "ShiftCase", "GroupCase"}


FIXTURE_OF = {"Case": "case", "ShiftCase": "shift_case", "GroupCase": "group_case"}


@pytest.mark.parametrize("cls, member", CASE_MEMBERS, ids=[f"{c}.{m}" for c, m in CASE_MEMBERS])
def test_case_member_is_documented_in_user_guide(cls, member):
    # documented as the suite author writes it: `case.prune_potential`, `group_case.worst`, ...
    usage = f"{FIXTURE_OF[cls]}.{member}"
    assert _mentioned(usage, _user_docs()), \
        f"{cls}.{member} is not documented in docs/user-guide.md or docs/beyond-accuracy.md as {usage}"


MODULES = sorted(p.relative_to(DOCS.parent / "robustprune").as_posix()
                 for p in (DOCS.parent / "robustprune").rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("module", MODULES)
def test_every_module_is_on_the_architecture_map(module):
    assert Path(module).name in _text("architecture.md"), f"robustprune/{module} is not in docs/architecture.md"
