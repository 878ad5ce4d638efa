"""The artifact store on file:// (the gs:// path runs against gcp-storage-emulator in
tests/integration/trainer2)."""

from __future__ import annotations

import pytest

from forecastguard.storage import ArtifactNotFound, StorageError, open_store


def test_roundtrip_bytes_text_json(tmp_path):
    store = open_store((tmp_path / "art").as_uri())
    store.write_bytes("runs/a/model.bin", b"\x00\x01")
    store.write_text("runs/a/report.md", "héllo")
    store.write_json("runs/a/metrics.json", {"b": 1, "a": [1.5]})
    assert store.read_bytes("runs/a/model.bin") == b"\x00\x01"
    assert store.read_text("runs/a/report.md") == "héllo"
    assert store.read_json("runs/a/metrics.json") == {"a": [1.5], "b": 1}
    assert store.list("runs") == ["runs/a/metrics.json", "runs/a/model.bin", "runs/a/report.md"]
    assert store.list() == store.list("runs")
    assert store.exists("runs/a/model.bin") and not store.exists("runs/a/nope")


def test_write_replaces_whole_and_leaves_no_temp_files(tmp_path):
    store = open_store(tmp_path.as_uri())
    store.write_text("x.txt", "a much longer first version")
    store.write_text("x.txt", "short")
    assert store.read_text("x.txt") == "short"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_child_store_and_prefix_boundaries(tmp_path):
    store = open_store(tmp_path.as_uri())
    store.write_text("runs/ab/f.txt", "1")
    store.write_text("runs/abc/g.txt", "2")
    child = store.child("runs/ab")
    assert child.list() == ["f.txt"]
    assert child.read_text("f.txt") == "1"
    assert child.uri.endswith("/runs/ab")
    assert child.key_uri("f.txt") == (tmp_path / "runs" / "ab" / "f.txt").as_uri()


def test_missing_and_bad_keys(tmp_path):
    store = open_store(tmp_path.as_uri())
    with pytest.raises(ArtifactNotFound, match="no artifact"):
        store.read_bytes("missing.json")
    for bad in ("", "/abs", "../escape", "a/../../b"):
        with pytest.raises(StorageError):
            store.write_text(bad, "x")
    store.write_text("bad.json", "{not json")
    with pytest.raises(StorageError, match=r"bad\.json is not valid JSON"):
        store.read_json("bad.json")
    with pytest.raises(ValueError):
        store.write_json("nan.json", {"x": float("nan")})


def test_upload_and_download_dir(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.txt").write_text("B")
    store = open_store((tmp_path / "store").as_uri())
    assert store.upload_dir("runs/r1/model", src) == [
        "runs/r1/model/a.txt",
        "runs/r1/model/sub/b.txt",
    ]
    out = tmp_path / "out"
    store.download_dir("runs/r1/model", out)
    assert (out / "sub" / "b.txt").read_text() == "B"
    with pytest.raises(ArtifactNotFound):
        store.download_dir("runs/none", tmp_path / "o2")


@pytest.mark.parametrize(
    "uri, message",
    [
        ("", "ARTIFACT_URI is empty"),
        ("s3://bucket/x", "unsupported artifact URI scheme"),
        ("file://host/path", "file:///absolute/path"),
        ("gs:///prefix", "needs a bucket"),
    ],
)
def test_bad_uris_are_named(uri, message):
    with pytest.raises(StorageError, match=message):
        open_store(uri)
