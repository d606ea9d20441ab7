"""Model store: versions round-trip, and a damaged or incomplete version is refused."""

import pytest

from stream.model_store import ModelStore, SnapshotError


def test_versions_are_listed_in_order_and_load_what_was_saved(tmp_path):
    store = ModelStore(str(tmp_path))
    first = store.save({"a.bin": b"one"}, metrics={"events": 1})
    second = store.save({"a.bin": b"two"})
    assert store.versions() == [first.version, second.version]
    assert store.load(first.version) == {"a.bin": b"one"}
    assert store.manifest(first.version).metrics == {"events": 1}


def test_a_changed_artefact_is_refused(tmp_path):
    store = ModelStore(str(tmp_path))
    version = store.save({"a.bin": b"payload"}).version
    (tmp_path / version / "a.bin").write_bytes(b"pAyload")
    with pytest.raises(SnapshotError) as err:
        store.load(version)
    assert err.value.reason == "corrupt"


def test_a_version_without_manifest_is_missing_and_not_listed(tmp_path):
    store = ModelStore(str(tmp_path))
    version = store.save({"a.bin": b"x"}).version
    (tmp_path / version / "manifest.json").unlink()
    assert store.versions() == []
    with pytest.raises(SnapshotError) as err:
        store.load(version)
    assert err.value.reason == "missing"


def test_prune_keeps_the_newest_versions(tmp_path):
    store = ModelStore(str(tmp_path))
    versions = [store.save({"a.bin": bytes([i])}).version for i in range(4)]
    assert store.prune(keep=2) == versions[:2]
    assert store.versions() == versions[2:]
