"""robustprune.core.shifts: parsing ``name@param`` specs against the real registry, and per-image seeds."""

from __future__ import annotations

import pytest

from robustprune.core.shifts import (
    NOMINAL,
    NOMINAL_SHIFT,
    Shift,
    ShiftSpecError,
    all_members,
    image_seeds,
    parse_shift,
    parse_shifts,
)
from robustprune.plugin.registry import UnknownNameError

# --------------------------------------------------------------------------- valid specs


def test_single_shift(registry):
    entry = parse_shift("contrast@3", registry)
    assert entry.label == "contrast@3"
    assert not entry.is_group
    assert [m.label for m in entry.members] == ["contrast@3"]
    (member,) = entry.members
    assert member.name == "contrast" and member.param == 3 and isinstance(member.param, int)
    assert member.kind == "pixel"
    assert member.identity()["label"] == "contrast@3"
    assert member.identity()["plugin"] == "robustprune"


def test_corruptions_group_has_19_members(registry):
    entry = parse_shift("corruptions@3", registry)
    assert entry.is_group
    labels = [m.label for m in entry.members]
    assert len(labels) == 19 == len(set(labels))
    assert all(label.endswith("@3") for label in labels)
    for name in ("gaussian_noise", "contrast", "speckle_noise", "gaussian_blur", "spatter", "saturate"):
        assert f"{name}@3" in labels


def test_noise_group(registry):
    entry = parse_shift("noise@2", registry)
    assert [m.label for m in entry.members] == ["gaussian_noise@2", "shot_noise@2", "impulse_noise@2"]


def test_several_float_params(registry):
    entry = parse_shift("uniform_noise@0.1,0.2", registry)
    assert entry.label == "uniform_noise@0.1,0.2"
    assert [m.param for m in entry.members] == [0.1, 0.2]
    assert all(isinstance(m.param, float) for m in entry.members)
    assert [m.label for m in entry.members] == ["uniform_noise@0.1", "uniform_noise@0.2"]
    assert {m.kind for m in entry.members} == {"tensor"}


def test_uniform_noise_zero_is_allowed(registry):
    assert parse_shift("uniform_noise@0", registry).members[0].param == 0.0


def test_nominal(registry):
    entry = parse_shift("nominal", registry)
    assert entry.label == NOMINAL
    assert entry.members == (NOMINAL_SHIFT,)
    assert entry.members[0].kind == NOMINAL


def test_surrounding_whitespace_is_ignored(registry):
    assert parse_shift("  contrast@3 ", registry).label == "contrast@3"


def test_integer_written_as_float_severity(registry):
    assert parse_shift("contrast@3.0", registry).members[0].param == 3


def test_all_members_nominal_first_and_deduplicated(registry):
    entries = parse_shifts(["noise@3", "gaussian_noise@3", "contrast@1"], registry)
    labels = [s.label for s in all_members(entries)]
    assert labels == ["nominal", "gaussian_noise@3", "shot_noise@3", "impulse_noise@3", "contrast@1"]


# --------------------------------------------------------------------------- errors


def test_severity_out_of_range(registry):
    with pytest.raises(ShiftSpecError) as info:
        parse_shift("contrast@9", registry)
    msg = str(info.value)
    assert "severity must be an integer from 1 to 5" in msg
    assert "'contrast@9'" in msg


def test_fractional_severity(registry):
    with pytest.raises(ShiftSpecError, match=r"'contrast@2\.5'.*severity must be an integer from 1 to 5"):
        parse_shift("contrast@2.5", registry)


def test_severity_zero_and_text(registry):
    with pytest.raises(ShiftSpecError, match="from 1 to 5"):
        parse_shift("contrast@0", registry)
    with pytest.raises(ShiftSpecError, match="from 1 to 5"):
        parse_shift("contrast@high", registry)


def test_group_param_validated_for_members(registry):
    with pytest.raises(ShiftSpecError, match="severity must be an integer from 1 to 5"):
        parse_shift("corruptions@6", registry)


def test_negative_eps(registry):
    with pytest.raises(ShiftSpecError, match=r"'uniform_noise@-1'.*eps must be a number >= 0"):
        parse_shift("uniform_noise@-1", registry)


def test_nan_eps(registry):
    with pytest.raises(ShiftSpecError, match="eps must be"):
        parse_shift("uniform_noise@nan", registry)


def test_missing_parameter_suggests_one(registry):
    with pytest.raises(ShiftSpecError) as info:
        parse_shift("contrast", registry)
    assert "needs a parameter" in str(info.value)
    assert "'contrast@3'" in str(info.value)


def test_group_without_parameter(registry):
    with pytest.raises(ShiftSpecError, match="'corruptions@3'"):
        parse_shift("corruptions", registry)


def test_unknown_shift_suggests_and_lists(registry):
    with pytest.raises(UnknownNameError) as info:
        parse_shift("contrst@3", registry)
    msg = str(info.value)
    assert "unknown shift 'contrst'" in msg
    assert "did you mean 'contrast'?" in msg
    assert "Available shifts:" in msg
    for name in ("contrast", "uniform_noise", "corruptions", "nominal"):
        assert name in msg


def test_unknown_shift_without_parameter(registry):
    with pytest.raises(UnknownNameError, match="did you mean 'contrast'"):
        parse_shift("contrst", registry)


@pytest.mark.parametrize("text", ["contrast@", "uniform_noise@0.1,,0.2", "uniform_noise@0.1,"])
def test_empty_parameter(registry, text):
    with pytest.raises(ShiftSpecError, match="empty parameter"):
        parse_shift(text, registry)


def test_duplicate_entries_rejected(registry):
    with pytest.raises(ShiftSpecError, match=r"'contrast@3' is listed twice"):
        parse_shifts(["contrast@3", "noise@3", "contrast@3"], registry)


def test_overlapping_but_distinct_entries_allowed(registry):
    entries = parse_shifts(["noise@3", "gaussian_noise@3", "nominal"], registry)
    assert [e.label for e in entries] == ["noise@3", "gaussian_noise@3", "nominal"]


def test_duplicate_written_differently_rejected(registry):
    with pytest.raises(ShiftSpecError, match="listed twice"):
        parse_shifts(["contrast@3", "contrast@3.0"], registry)


# --------------------------------------------------------------------------- image seeds


CONTRAST = Shift("contrast", 3)


def test_image_seeds_deterministic_and_63_bit():
    a = image_seeds(0, "digits", CONTRAST, 50)
    assert a == image_seeds(0, "digits", CONTRAST, 50)
    assert len(a) == 50
    assert all(0 <= s < 2**63 for s in a)


def test_image_seeds_differ_per_image():
    seeds = image_seeds(0, "digits", CONTRAST, 200)
    assert len(set(seeds)) == 200


def test_image_seeds_do_not_depend_on_count():
    assert image_seeds(0, "digits", CONTRAST, 10)[:4] == image_seeds(0, "digits", CONTRAST, 4)


@pytest.mark.parametrize(
    "args",
    [
        (1, "digits", CONTRAST),  # base seed
        (0, "cifar10", CONTRAST),  # dataset key
        (0, "digits", Shift("contrast", 4)),  # shift parameter
        (0, "digits", Shift("fog", 3)),  # shift name
        (0, "digits", NOMINAL_SHIFT),
    ],
)
def test_image_seeds_differ_per_seed_dataset_and_shift(args):
    base = image_seeds(0, "digits", CONTRAST, 20)
    other = image_seeds(*args, 20)
    assert not set(base) & set(other)


def test_missing_noise_level_suggests_a_noise_level(registry):
    with pytest.raises(ShiftSpecError) as info:
        parse_shift("uniform_noise", registry)
    assert "'uniform_noise@0.1'" in str(info.value) and "eps must be a number >= 0" in str(info.value)
    assert "@3" not in str(info.value)


def test_a_parameter_listed_twice_is_refused(registry):
    with pytest.raises(ShiftSpecError, match="lists a parameter twice"):
        parse_shift("uniform_noise@0.1,0.10", registry)
