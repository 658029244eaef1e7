"""robustprune.compute.store: round trips, stable keys, detection of damaged entries, atomic writes."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

from robustprune.compute import store as store_mod
from robustprune.compute.store import (
    KEY_ENV,
    STORE_ENV,
    NotStored,
    Store,
    StoreReadOnlyError,
    StoreWarning,
    StoreWriteError,
    default_store_root,
    make_key,
)

KEY = make_key({"kind": "test", "n": 1})


def sample_value() -> dict[str, torch.Tensor]:
    return {
        "conv.weight": torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2),
        "mask": torch.tensor([True, False, True]),
        "count": torch.tensor(7, dtype=torch.int64),
    }


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def st(tmp_path) -> Store:
    return Store(tmp_path / "store")


# --------------------------------------------------------------------------- round trip and keys


def test_round_trip_dict_of_tensors(st):
    value = sample_value()
    path = st.save("nets", KEY, value, spec={"seed": 0})
    assert path == st.path("nets", KEY)
    assert path.is_file() and st.contains("nets", KEY)
    loaded = st.load("nets", KEY)
    assert set(loaded) == set(value)
    for name, tensor in value.items():
        assert loaded[name].dtype == tensor.dtype
        assert torch.equal(loaded[name], tensor)


def test_round_trip_plain_values(st):
    st.save("results", KEY, {"accuracy": [0.9, 0.85], "label": "contrast@3"})
    assert st.load("results", KEY) == {"accuracy": [0.9, 0.85], "label": "contrast@3"}


def test_layout_is_kind_prefix_key(st):
    assert st.path("nets", KEY) == st.root / "nets" / KEY[:2] / f"{KEY}.pt"


def test_missing_entry_loads_none_without_warning(st):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert st.load("nets", KEY) is None
    assert not st.contains("nets", KEY)


def test_save_overwrites(st):
    st.save("results", KEY, {"v": 1})
    st.save("results", KEY, {"v": 2})
    assert st.load("results", KEY) == {"v": 2}


def test_make_key_stable_under_dict_ordering():
    a = {"method": "wt", "ratio": 0.5, "nested": {"x": 1, "y": [1, 2]}}
    b = {"nested": {"y": [1, 2], "x": 1}, "ratio": 0.5, "method": "wt"}
    assert make_key(a) == make_key(b)
    assert re.fullmatch(r"[0-9a-f]{64}", make_key(a))


@pytest.mark.parametrize(
    "other",
    [
        {"method": "wt", "ratio": 0.6},
        {"method": "ft", "ratio": 0.5},
        {"method": "wt", "ratio": 0.5, "seed": 1},
        {"method": "wt", "ratio": 0.5000001},
        {"method": "wt"},
    ],
)
def test_make_key_differs_for_different_specs(other):
    assert make_key(other) != make_key({"method": "wt", "ratio": 0.5})


# --------------------------------------------------------------------------- damaged entries


def _expect_damage(st: Store, path: Path, reason: str) -> None:
    with pytest.warns(StoreWarning) as record:
        assert st.load("nets", KEY) is None
    messages = [str(w.message) for w in record if issubclass(w.category, StoreWarning)]
    assert len(messages) == 1
    assert str(path) in messages[0]
    assert reason in messages[0]
    assert not path.exists()
    assert not st.contains("nets", KEY)


def test_truncated_file_is_detected_and_removed(st):
    path = st.save("nets", KEY, sample_value())
    raw = path.read_bytes()
    path.write_bytes(raw[:-20])
    _expect_damage(st, path, "checksum mismatch")


def test_file_truncated_inside_header_is_detected(st):
    path = st.save("nets", KEY, sample_value())
    path.write_bytes(path.read_bytes()[:12])  # magic (8 bytes) + part of the digest
    _expect_damage(st, path, "truncated")


def test_flipped_payload_bytes_are_detected(st):
    path = st.save("nets", KEY, sample_value())
    raw = bytearray(path.read_bytes())
    raw[-30] ^= 0xFF
    raw[60] ^= 0x01
    path.write_bytes(bytes(raw))
    _expect_damage(st, path, "checksum mismatch")


def test_flipped_digest_byte_is_detected(st):
    path = st.save("nets", KEY, sample_value())
    raw = bytearray(path.read_bytes())
    raw[10] ^= 0x01  # inside the stored SHA-256
    path.write_bytes(bytes(raw))
    _expect_damage(st, path, "checksum mismatch")


def test_non_store_file_is_detected(st):
    path = st.path("nets", KEY)
    path.parent.mkdir(parents=True)
    torch.save({"value": 1}, path)  # a valid torch file, but not written by the store
    _expect_damage(st, path, "not a robustprune store file")


def test_empty_file_is_detected(st):
    path = st.path("nets", KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    _expect_damage(st, path, "not a robustprune store file")


def test_damaged_entry_can_be_rewritten(st):
    path = st.save("nets", KEY, {"v": torch.tensor(1)})
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.warns(StoreWarning):
        assert st.load("nets", KEY) is None
    st.save("nets", KEY, {"v": torch.tensor(2)})
    assert int(st.load("nets", KEY)["v"]) == 2


# --------------------------------------------------------------------------- atomic writes


def test_no_temporary_files_left_after_save(st):
    st.save("nets", KEY, sample_value())
    other = make_key({"other": True})
    st.save("nets", other, sample_value())
    names = sorted(p.name for p in files_under(st.root))
    assert names == sorted([f"{KEY}.pt", f"{other}.pt"])


def test_failing_serialisation_leaves_nothing(st, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        st.save("nets", KEY, sample_value())
    assert not st.contains("nets", KEY)
    assert not st.root.exists() or files_under(st.root) == []


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_failure_mid_write_leaves_no_file_and_no_temp_file(st, monkeypatch, step):
    def boom(*args, **kwargs):
        raise OSError(f"{step} failed")

    monkeypatch.setattr(store_mod.os, step, boom)
    with pytest.raises(StoreWriteError, match=f"cannot write to the store {re.escape(str(st.root))}: {step} failed"):
        st.save("nets", KEY, sample_value())
    monkeypatch.undo()
    assert files_under(st.root) == []
    assert st.load("nets", KEY) is None


def test_failed_overwrite_keeps_the_old_entry(st, monkeypatch):
    st.save("results", KEY, {"v": 1})

    def boom(*args, **kwargs):
        raise OSError("replace failed")

    monkeypatch.setattr(store_mod.os, "replace", boom)
    with pytest.raises(StoreWriteError):
        st.save("results", KEY, {"v": 2})
    monkeypatch.undo()
    assert [p.name for p in files_under(st.root)] == [f"{KEY}.pt"]
    assert st.load("results", KEY) == {"v": 1}


# --------------------------------------------------------------------------- store root


def test_default_store_root_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "elsewhere"))
    assert default_store_root() == (tmp_path / "elsewhere").resolve()
    assert Store().root == (tmp_path / "elsewhere").resolve()


def test_default_store_root_without_env(monkeypatch, tmp_path):
    monkeypatch.delenv(STORE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_store_root() == (tmp_path / ".robustprune").resolve()
    monkeypatch.setenv(STORE_ENV, "")  # empty means unset
    assert default_store_root() == (tmp_path / ".robustprune").resolve()


def test_relative_env_root_is_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(STORE_ENV, "rel/store")
    root = default_store_root()
    assert root.is_absolute()
    assert root == (tmp_path / "rel" / "store").resolve()


def test_lookup_only_reads_what_is_stored_and_computes_nothing(st):
    st.load_or_compute("network", "a" * 64, lambda: {"w": 1}, {"k": "a"}, "first")
    computed = []
    with st.lookup_only():
        assert st.looking_up
        # stored: read as usual
        assert st.load_or_compute("network", "a" * 64, lambda: computed.append("a"), {}, "again") == {"w": 1}
        # missing: NotStored instead of a computation, and no claim file, no work-log line
        with pytest.raises(NotStored, match="network bbbbbbbbbbbb is not in the store") as caught:
            st.load_or_compute("network", "b" * 64, lambda: computed.append("b"), {}, "never")
        assert (caught.value.kind, caught.value.key) == ("network", "b" * 64)
    assert not st.looking_up and computed == []
    assert (st.root / "work.log").read_text().count("\n") == 1
    assert not st.contains("network", "b" * 64)
    # outside the lookup, the same call computes
    assert st.load_or_compute("network", "b" * 64, lambda: {"w": 2}, {}, "now") == {"w": 2}


# --------------------------------------------------------------------------- authentication and hygiene


def _forge(store: Store, kind: str, key: str, value: object) -> None:
    """What someone who can write the store (but has no key) can do: write any content under any key, with the
    digest recomputed, as the store itself would without a key."""
    Store(store.root, auth_key=None).save(kind, key, value)


def test_with_a_key_entries_are_authenticated_and_forgeries_are_not_used(tmp_path):
    signed = Store(tmp_path / "s", auth_key=b"ci-secret")
    signed.save("eval", KEY, {"acc": 0.5})
    assert signed.load("eval", KEY) == {"acc": 0.5} and signed.check("eval", KEY).authenticated
    _forge(signed, "eval", KEY, {"acc": 0.99})  # the forged verdict
    with pytest.warns(StoreWarning, match=r"failed authentication with \$ROBUSTPRUNE_STORE_KEY; it is not used"):
        assert signed.load("eval", KEY) is None  # recomputed, never served
    assert signed.rejected == [f"eval/{KEY}"] and signed.contains("eval", KEY)  # left for the recomputation
    signed.save("eval", KEY, {"acc": 0.5})
    assert signed.load("eval", KEY) == {"acc": 0.5}
    other_key = Store(signed.root, auth_key=b"another")
    with pytest.warns(StoreWarning):
        assert other_key.load("eval", KEY) is None


def test_without_a_key_the_digest_still_binds_content_to_its_entry(tmp_path):
    store = Store(tmp_path / "s", auth_key=None)
    other = make_key({"kind": "test", "n": 2})
    store.save("eval", KEY, {"acc": 0.5})
    store.save("eval", other, {"acc": 0.9})
    # a plain copy of one entry's file over another's is detected: the digest covers kind and key
    store.path("eval", other).write_bytes(store.path("eval", KEY).read_bytes())
    with pytest.warns(StoreWarning, match="checksum mismatch: truncated, modified, or another entry's content"):
        assert store.load("eval", other) is None
    assert not store.authenticated and store.check("eval", KEY).problem is None


def test_entries_of_robustprune_01_are_read_without_a_key_and_refused_with_one(tmp_path):
    import hashlib
    import io

    store = Store(tmp_path / "s", auth_key=None)
    buffer = io.BytesIO()
    torch.save({"spec": {}, "value": {"acc": 0.5}}, buffer)
    payload = buffer.getvalue()
    store.path("eval", KEY).parent.mkdir(parents=True)
    store.path("eval", KEY).write_bytes(b"RPSTORE1" + hashlib.sha256(payload).digest() + payload)
    assert store.load("eval", KEY) == {"acc": 0.5}
    with pytest.warns(StoreWarning, match=r"failed authentication \(written without a key\)"):
        assert Store(store.root, auth_key=b"k").load("eval", KEY) is None


def test_the_key_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "from-ci")
    assert Store(tmp_path).auth_key == b"from-ci" and Store(tmp_path).authenticated
    monkeypatch.setenv(KEY_ENV, "")
    assert not Store(tmp_path).authenticated


def test_files_respect_the_umask_so_a_team_can_share_a_store(tmp_path):
    store = Store(tmp_path / "s", auth_key=None)
    path = store.save("eval", KEY, {"acc": 0.5})
    plain = tmp_path / "plain"
    plain.write_bytes(b"")  # what any program's new file gets under this umask (mkstemp alone would give 0600)
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_a_read_only_store_serves_what_it_has_and_says_what_it_lacks(tmp_path, monkeypatch):
    store = Store(tmp_path / "s", auth_key=None)
    store.save("eval", KEY, {"acc": 0.5})
    monkeypatch.setattr(store_mod, "can_write", lambda folder: False)
    read_only = Store(store.root, auth_key=None)
    assert read_only.read_only
    assert read_only.load_or_compute("eval", KEY, lambda: {"acc": 0.0}, {}, "never") == {"acc": 0.5}
    with pytest.raises(StoreReadOnlyError, match=rf"the store {re.escape(str(store.root))} is read-only and lacks"):
        read_only.load_or_compute("eval", make_key({"n": 3}), lambda: {"acc": 0.0}, {}, "needed")


def test_a_full_disk_names_the_store_and_the_fix(tmp_path, monkeypatch):
    import errno

    store = Store(tmp_path / "s", auth_key=None)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod.os, "fsync", full)
    with pytest.raises(StoreWriteError) as caught:
        store.save("eval", KEY, {"acc": 0.5})
    message = str(caught.value)
    assert str(store.root) in message and "No space left on device" in message
    assert "free space on that disk, or run with --store on another disk" in message


def test_an_entry_that_cannot_be_read_stops_with_the_store_named(tmp_path):
    store = Store(tmp_path / "s", auth_key=None)
    store.path("eval", KEY).mkdir(parents=True)  # a folder where the entry's file should be
    with pytest.raises(store_mod.StoreReadError, match=r"cannot read the store entry .*: Is a directory; check the "
                                                       r"permissions of the store"):
        store.load("eval", KEY)


def test_an_empty_key_is_no_key(tmp_path):
    assert not Store(tmp_path / "s", auth_key=b"").authenticated
