"""Shift names as users write them (``name@param``) and the shifted test sets they make.

One way to name things, everywhere: ``contrast@3`` is one shift;
``corruptions@3`` is a group (each member at 3); ``uniform_noise@0.1,0.2``
lists parameters; ``nominal`` is the identity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..plugin.api import NOMINAL, PixelShift, PublishedShift, ShiftGroup
from ..plugin.registry import PluginConflictError, Registered, Registry


class ShiftSpecError(ValueError):
    """A malformed shift name; the message says what is valid."""


@dataclass(frozen=True)
class Shift:
    """One concrete shift: a registered shift at one parameter (or nominal).

    ``unavailable`` says why it cannot be evaluated (several plugins registered
    its name): the checks that need it fail with that message, the rest run.
    """

    name: str
    param: Any = None
    registered: Registered[Any] | None = None
    unavailable: str | None = None

    @property
    def label(self) -> str:
        """How the shift is written everywhere: ``contrast@3``, ``uniform_noise@0.2``, ``nominal``."""
        return NOMINAL if self.name == NOMINAL else f"{self.name}@{format_param(self.param)}"

    @property
    def is_nominal(self) -> bool:
        return self.name == NOMINAL

    @property
    def kind(self) -> str:
        """``"pixel"``, ``"tensor"``, ``"published"`` (a test set only a dataset can supply) or ``"nominal"``."""
        if self.registered is None:
            return NOMINAL
        if isinstance(self.registered.item, PublishedShift):
            return "published"
        return "pixel" if isinstance(self.registered.item, PixelShift) else "tensor"

    def identity(self) -> dict[str, Any]:
        """What identifies the shift in store keys: its label and the registering plugin's identity."""
        base = {"label": self.label}
        if self.registered is not None:
            base.update(self.registered.identity())
        return base


NOMINAL_SHIFT = Shift(NOMINAL)

GENERATED = "generated"
"""A shifted set's source when robustprune made it (the report's ``shift sources``)."""
GENERATED_WITH = "generated: "
"""The prefix of a generated set's source made with a named parameter family: ``generated: cifar10-c``."""


def generated_source(family: str | None) -> str:
    """How the report records a set robustprune generated, with the parameter family that made it."""
    return GENERATED if family is None else GENERATED_WITH + family


@dataclass(frozen=True)
class ShiftEntry:
    """What one string in a suite's ``shifts`` expands to; a column group of the report."""

    label: str
    members: tuple[Shift, ...]

    @property
    def is_group(self) -> bool:
        return len(self.members) > 1


def check_requested_family(shifts: Iterable[Shift], requested: Iterable[str]) -> bool:
    """Raise ``ValueError`` (naming its families) if a shift with parameter families lacks a ``requested`` family;
    return whether any of ``shifts`` has families (a family asked of none is the caller's error to word)."""
    with_families = [s.registered.item for s in shifts if s.registered is not None
                     and isinstance(s.registered.item, PixelShift) and s.registered.item.families]
    for item in with_families:
        for family in sorted(set(requested)):
            item.check_family(family)
    return bool(with_families)


def format_param(value: Any) -> str:
    """A parameter as labels write it: ``3``, ``0.2`` (never ``3.0``)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_shift(text: str, registry: Registry) -> ShiftEntry:
    """Parse ``name@p1[,p2...]`` into concrete shifts, validating names and parameters."""
    text = text.strip()
    if text == NOMINAL:
        return ShiftEntry(NOMINAL, (NOMINAL_SHIFT,))
    if "@" not in text:
        if text in registry.names("shift") or text in registry.names("group"):
            first = registry.get("group", text).item.members[0] if text in registry.names("group") else text
            param = registry.get("shift", first).item.param
            example = int(param.minimum) + 2 if param.kind is int else 0.1
            raise ShiftSpecError(
                f"shift {text!r} needs a parameter: write it as name@{param.name}, e.g. '{text}@{example}' "
                f"({param.name} must be {param.describe()})"
            )
        registry.get("shift", text)  # unknown: raises with the available names and a suggestion
    name, _, params_text = text.partition("@")
    if name in registry.names("group"):
        member_names = registry.get("group", name).item.members
    else:
        _registered(registry, name)  # raises UnknownNameError with suggestions
        member_names = (name,)
    params_texts = [p.strip() for p in params_text.split(",")]
    if not params_texts or any(not p for p in params_texts):
        raise ShiftSpecError(f"shift {text!r} has an empty parameter; write e.g. '{name}@3'")
    first = _registered(registry, member_names[0])[0].item.param
    try:
        parsed = [first.parse(p) for p in params_texts]
    except ValueError as exc:
        raise ShiftSpecError(f"bad shift {text!r}: {exc}") from None
    if len(set(parsed)) != len(parsed):
        raise ShiftSpecError(f"shift {text!r} lists a parameter twice; each value may appear once")
    members: list[Shift] = []
    for param_text in params_texts:
        for member in member_names:
            registered, unavailable = _registered(registry, member)
            try:
                param = registered.item.param.parse(param_text)
            except ValueError as exc:
                raise ShiftSpecError(f"bad shift {text!r}: {exc}") from None
            members.append(Shift(member, param, registered, unavailable))
    # the label is rebuilt from parsed values: one way to write each shift (contrast@3, never contrast@3.0)
    label = f"{name}@{','.join(format_param(registered.item.param.parse(p)) for p in params_texts)}"
    return ShiftEntry(label, tuple(members))


def _registered(registry: Registry, name: str) -> tuple[Registered[Any], str | None]:
    """The shift registered as ``name``; for a name several plugins registered, the first of them (its parameter
    is parsed as usual) with why it cannot be used."""
    try:
        return registry.get("shift", name), None
    except PluginConflictError as exc:
        clashing = [r for kind in ("shift", "group") for r in registry.clashing(kind, name)]
        if not clashing or any(isinstance(r.item, ShiftGroup) for r in clashing):
            raise  # a group among them: which shifts the name stands for cannot be known
        return clashing[0], str(exc)


def parse_shifts(texts: Sequence[str], registry: Registry) -> list[ShiftEntry]:
    """Parse a suite's shift list; duplicate entries are an error."""
    entries = [parse_shift(t, registry) for t in texts]
    labels = [e.label for e in entries]
    dupes = sorted({label for label in labels if labels.count(label) > 1})
    if dupes:
        raise ShiftSpecError(f"shift {dupes[0]!r} is listed twice in the suite")
    return entries


def image_seeds(base_seed: int, dataset_key: str, shift: Shift, count: int, draw: int = 0) -> list[int]:
    """One 63-bit seed per image, from the dataset, the shift, the draw and the image's index.

    Derived by hashing so that a shifted set never depends on batch sizes,
    worker counts or which other shifts ran before it. ``draw`` numbers the
    independent draws of a noise shift (``Suite.noise_draws``); draw 0 is the
    set every suite evaluates.
    """
    salt = f"draw{draw}|" if draw else ""
    prefix = f"{base_seed}|{dataset_key}|{shift.label}|{salt}".encode()
    seeds = []
    for i in range(count):
        digest = hashlib.blake2b(prefix + str(i).encode(), digest_size=8).digest()
        seeds.append(int.from_bytes(digest, "little") >> 1)
    return seeds


def split_label(label: str) -> tuple[str, str]:
    """``uniform_noise@0.2`` -> (``uniform_noise``, ``0.2``); ``nominal`` -> (``nominal``, ``""``)."""
    name, _, param = label.partition("@")
    return name, param


def all_members(entries: list[ShiftEntry]) -> list[Shift]:
    """Every distinct concrete shift of a suite, nominal first, in order of appearance."""
    seen: dict[str, Shift] = {NOMINAL: NOMINAL_SHIFT}
    for entry in entries:
        for member in entry.members:
            seen.setdefault(member.label, member)
    return list(seen.values())


__all__ = [
    "NOMINAL",
    "NOMINAL_SHIFT",
    "Shift",
    "ShiftEntry",
    "ShiftSpecError",
    "all_members",
    "format_param",
    "image_seeds",
    "parse_shift",
    "parse_shifts",
    "split_label",
]
