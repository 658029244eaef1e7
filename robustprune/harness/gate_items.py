"""The generated ``deploy_gate[<case id>]`` checks of a suite that declares ``Suite(gate=DeployGate(...))``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..core.suite import Suite
from .session import CaseParam, mark_case_item, run_state

__all__ = ["GATE_CHECK", "DeployGateFailed", "DeployGateItem", "gate_items"]

GATE_CHECK = "deploy_gate"


class DeployGateFailed(AssertionError):
    """A case's network failed the suite's deploy gate; the message is the gate's sentence."""


class DeployGateItem(pytest.Item):
    """The check a ``Suite(gate=DeployGate(...))`` generates for each case: ``deploy_gate[<case id>]``.

    It passes or fails with the gate, and its failure message is the gate's
    sentence (worst shift and its numbers), without a traceback.
    """

    def __init__(self, *, param: CaseParam, **kwargs: Any):
        super().__init__(**kwargs)
        self.param = param
        mark_case_item(self, param)  # like every other check of the case

    def runtest(self) -> None:
        gate = run_state(self.config).case_view(self.param).deploy_gate()
        if not gate.passed:
            raise DeployGateFailed(gate.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, DeployGateFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.name} (Suite(gate=DeployGate(...)))"


def gate_items(collector: pytest.Module, suite: Suite) -> list[DeployGateItem]:
    """One :class:`DeployGateItem` per case of the suite (collection errors are the suite's, as for its checks)."""
    module_file = str(collector.obj.__file__)
    engine = run_state(collector.config).engine_for_collection(module_file, suite)
    return [
        DeployGateItem.from_parent(collector, name=f"{GATE_CHECK}[{key.id}]", param=CaseParam(module_file, key))
        for key in engine.cases()
    ]
