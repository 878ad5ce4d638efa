"""Run folders, the manifest written last, and the champion pointer."""

from __future__ import annotations

import hashlib

import pytest

from forecastguard.storage import open_store
from trainer.serve.artifacts import (
    ChampionPointer,
    IncompleteRun,
    RunWriter,
    check_run_id,
    download_run,
    read_champion,
    read_manifest,
    verify_run,
    write_champion,
)


def _pointer(run_id: str) -> ChampionPointer:
    return ChampionPointer(run_id, run_id, f"file:///x/runs/{run_id}", "2026-01-01T00:00:00")


def test_manifest_lists_every_file_with_its_sha256(tmp_path):
    store = open_store(tmp_path.as_uri())
    run = RunWriter(store, "r1")
    run.put_bytes("model/model.keras", b"weights")
    run.put_json("metrics.json", {"model": {"rmse": 1.0}})
    run.put_text("report.md", "# report")
    assert read_manifest(store, "r1") is None  # not sealed: incomplete
    manifest = run.seal(model_version="r1")
    assert manifest["files"]["model/model.keras"] == {
        "sha256": hashlib.sha256(b"weights").hexdigest(),
        "bytes": 7,
    }
    assert set(manifest["files"]) == {"model/model.keras", "metrics.json", "report.md"}
    assert read_manifest(store, "r1")["model_version"] == "r1"
    assert verify_run(store, "r1") == manifest
    with pytest.raises(IncompleteRun, match="sealed"):
        run.put_text("late.txt", "x")
    with pytest.raises(IncompleteRun, match="already sealed"):
        RunWriter(store, "r1")


def test_verify_detects_tampering_and_download_checks_hashes(tmp_path):
    store = open_store(tmp_path.as_uri())
    run = RunWriter(store, "r2")
    run.put_bytes("model/a.bin", b"a")
    run.put_bytes("params.json", b"{}")
    run.seal()
    out = download_run(store, "r2", tmp_path / "dl", names=["model"])
    assert (tmp_path / "dl" / "model" / "a.bin").read_bytes() == b"a"
    assert not (tmp_path / "dl" / "params.json").exists()
    assert out["run_id"] == "r2"
    store.write_bytes("runs/r2/model/a.bin", b"evil")
    with pytest.raises(IncompleteRun, match="does not match its sha256"):
        verify_run(store, "r2")
    with pytest.raises(IncompleteRun, match="does not match"):
        download_run(store, "r2", tmp_path / "dl2")


def test_champion_pointer_only_for_sealed_runs(tmp_path):
    store = open_store(tmp_path.as_uri())
    assert read_champion(store) is None
    half = RunWriter(store, "half")
    half.put_bytes("model/a.bin", b"a")
    with pytest.raises(IncompleteRun, match=r"no manifest\.json"):
        write_champion(store, _pointer("half"))
    assert read_champion(store) is None
    half.seal()
    write_champion(store, _pointer("half"))
    assert read_champion(store) == _pointer("half")


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "x" * 65, "-lead"])
def test_bad_run_ids_are_refused(bad):
    with pytest.raises(ValueError, match="run id"):
        check_run_id(bad)
