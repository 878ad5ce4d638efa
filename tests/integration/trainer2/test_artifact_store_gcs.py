"""The artifact store's gs:// path through the real client against gcp-storage-emulator."""

from __future__ import annotations

import pytest

from forecastguard.storage import ArtifactNotFound, open_store


def test_gcs_roundtrip_list_and_child(gcs_client, tmp_path):
    store = open_store("gs://fg-artifacts/prod", client=gcs_client)
    store.write_json("runs/r1/metrics.json", {"rmse": 1.25})
    store.write_bytes("runs/r1/plot.png", b"\x89PNG")
    store.write_text("runs/r10/other.txt", "not r1")
    assert store.read_json("runs/r1/metrics.json") == {"rmse": 1.25}
    assert store.list("runs/r1") == ["runs/r1/metrics.json", "runs/r1/plot.png"]
    run = store.child("runs/r1")
    assert run.list() == ["metrics.json", "plot.png"]
    assert run.key_uri("plot.png") == "gs://fg-artifacts/prod/runs/r1/plot.png"
    assert store.exists("runs/r1/plot.png") and not store.exists("runs/r1/none")
    with pytest.raises(ArtifactNotFound, match="gs://fg-artifacts/prod/runs/r1/none"):
        run.read_bytes("none")
    blob = gcs_client.bucket("fg-artifacts").get_blob("prod/runs/r1/metrics.json")
    assert blob.content_type == "application/json"

    src = tmp_path / "m"
    (src / "d").mkdir(parents=True)
    (src / "d" / "w.bin").write_bytes(b"w" * 1000)
    run.upload_dir("model", src)
    run.download_dir("model", tmp_path / "back")
    assert (tmp_path / "back" / "d" / "w.bin").read_bytes() == b"w" * 1000
