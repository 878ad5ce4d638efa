"""A run's artifacts: `<ARTIFACT_URI>/runs/<run_id>/`, sealed by `manifest.json`.

Every file of a run goes through `RunWriter`, which records its sha256; `seal()` writes
`manifest.json` last. A run without a manifest is incomplete: it is never promoted and
never loaded as a champion. The champion pointer `<ARTIFACT_URI>/champion.json` is
written only for a sealed run (`write_champion` checks the manifest first).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from forecastguard.storage import ArtifactNotFound, ArtifactStore

MANIFEST = "manifest.json"
CHAMPION = "champion.json"
RUNS = "runs"
MANIFEST_VERSION = 1
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class IncompleteRun(RuntimeError):
    """A run has no manifest, or its files do not match the manifest."""


def check_run_id(run_id: str) -> str:
    """Return `run_id` if it is a safe object-name segment, else raise ValueError."""
    if not _RUN_ID.match(run_id or ""):
        raise ValueError(
            f"run id {run_id!r} is invalid: 1-64 characters of letters, digits, '.', '_', '-'"
        )
    return run_id


def run_key(run_id: str, name: str = "") -> str:
    """The key of `name` inside the run's folder (relative to the artifact root)."""
    base = f"{RUNS}/{check_run_id(run_id)}"
    return f"{base}/{name}" if name else base


def sha256_hex(data: bytes) -> str:
    """The sha256 of `data` as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class RunWriter:
    """Writes the files of one run and seals it with a manifest.

    Refuses to start on a run that is already sealed: a complete run is immutable.
    """

    store: ArtifactStore
    run_id: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    sealed: bool = False

    def __post_init__(self) -> None:
        check_run_id(self.run_id)
        if self.store.exists(run_key(self.run_id, MANIFEST)):
            raise IncompleteRun(
                f"run {self.run_id} is already sealed at {self.uri}; choose another run id"
            )

    @property
    def uri(self) -> str:
        """The run folder's URI."""
        return self.store.child(run_key(self.run_id)).uri

    def put_bytes(self, name: str, data: bytes) -> str:
        """Write one file of the run; returns its URI."""
        if self.sealed:
            raise IncompleteRun(f"run {self.run_id} is sealed; cannot add {name}")
        if name == MANIFEST:
            raise ValueError("manifest.json is written by seal()")
        uri = self.store.write_bytes(run_key(self.run_id, name), data)
        self.files[name] = {"sha256": sha256_hex(data), "bytes": len(data)}
        return uri

    def put_text(self, name: str, text: str) -> str:
        """Write a UTF-8 text file."""
        return self.put_bytes(name, text.encode("utf-8"))

    def put_json(self, name: str, obj: Any) -> str:
        """Write a JSON file (indented, sorted keys, no NaN)."""
        text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=str)
        return self.put_text(name, text + "\n")

    def put_file(self, name: str, path: str | Path) -> str:
        """Upload a local file."""
        return self.put_bytes(name, Path(path).read_bytes())

    def put_dir(self, prefix: str, local_dir: str | Path) -> list[str]:
        """Upload every file below `local_dir` as `<prefix>/<relative path>`."""
        names = []
        for path in sorted(Path(local_dir).rglob("*")):
            if path.is_file():
                name = f"{prefix}/{path.relative_to(local_dir).as_posix()}"
                self.put_file(name, path)
                names.append(name)
        return names

    def seal(self, **meta: Any) -> dict[str, Any]:
        """Write `manifest.json` (every file's sha256 and size, plus `meta`), last."""
        if not self.files:
            raise IncompleteRun(f"run {self.run_id} has no files to seal")
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "run_id": self.run_id,
            "sealed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": dict(sorted(self.files.items())),
            **meta,
        }
        self.store.write_json(run_key(self.run_id, MANIFEST), manifest)
        self.sealed = True
        return manifest


def read_manifest(store: ArtifactStore, run_id: str) -> dict[str, Any] | None:
    """The run's manifest, or None when the run is incomplete (no manifest)."""
    try:
        return store.read_json(run_key(run_id, MANIFEST))
    except ArtifactNotFound:
        return None


def verify_run(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    """Check that the run is sealed and every listed file matches its sha256."""
    manifest = read_manifest(store, run_id)
    if manifest is None:
        raise IncompleteRun(f"run {run_id} has no {MANIFEST}: it is incomplete")
    for name, entry in manifest["files"].items():
        try:
            data = store.read_bytes(run_key(run_id, name))
        except ArtifactNotFound as exc:
            raise IncompleteRun(f"run {run_id}: {name} is listed but missing") from exc
        if sha256_hex(data) != entry["sha256"]:
            raise IncompleteRun(f"run {run_id}: {name} does not match its sha256")
    return manifest


def download_run(
    store: ArtifactStore, run_id: str, local_dir: str | Path, names: list[str] | None = None
) -> dict[str, Any]:
    """Copy the sealed run's files (or just `names`/prefixes of them) into `local_dir`,
    checking each file's sha256; returns the manifest."""
    manifest = read_manifest(store, run_id)
    if manifest is None:
        raise IncompleteRun(f"run {run_id} has no {MANIFEST}: it is incomplete")
    for name, entry in manifest["files"].items():
        if names is not None and not any(name == n or name.startswith(f"{n}/") for n in names):
            continue
        data = store.read_bytes(run_key(run_id, name))
        if sha256_hex(data) != entry["sha256"]:
            raise IncompleteRun(f"run {run_id}: {name} does not match its sha256")
        target = Path(local_dir).joinpath(*name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return manifest


@dataclass(frozen=True)
class ChampionPointer:
    """What `champion.json` says: which forecaster serves, from which sealed run.

    `kind` is the forecaster's kind (`trainer.serve.forecast.KINDS`: "lstm", or a baseline
    such as "baseline:moving_average" computed from the sales history with the run's
    settings); pointers written before kinds existed read as "lstm". `rmsse` is the
    mean per-product RMSSE the promotion judged.
    """

    model_version: str
    run_id: str
    run_uri: str
    promoted_at: str
    rmse: float | None = None
    disparity: float | None = None
    kind: str = "lstm"
    rmsse: float | None = None

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> ChampionPointer:
        """A partition's serving entry (`partitions.json`, issue 26) as a pointer: keys
        that are not fields are ignored, a missing `promoted_at` reads as ""."""
        fields = cls.__dataclass_fields__
        return cls(**({"promoted_at": ""} | {k: v for k, v in entry.items() if k in fields}))


def read_champion(store: ArtifactStore) -> ChampionPointer | None:
    """The current champion pointer, or None before the first promotion."""
    try:
        data = store.read_json(CHAMPION)
    except ArtifactNotFound:
        return None
    fields = ChampionPointer.__dataclass_fields__
    return ChampionPointer(**{k: v for k, v in data.items() if k in fields})


def write_champion(store: ArtifactStore, pointer: ChampionPointer) -> str:
    """Point `champion.json` at a sealed run (refused for a run without a manifest)."""
    if read_manifest(store, pointer.run_id) is None:
        raise IncompleteRun(f"refusing to promote run {pointer.run_id}: it has no {MANIFEST}")
    return store.write_json(CHAMPION, asdict(pointer))


MODEL_DIR = "model"
PARAMS = "params.json"


@dataclass
class ModelBundle:
    """What serving a run needs: the Keras model, the fitted feature pipeline, the
    configuration and parameters it was trained with, and its bias correction."""

    model: Any
    pipeline: Any  # trainer.data.features.FeaturePipeline
    cfg: Any  # trainer.config.TrainConfig
    params: Any  # trainer.config.ModelParams
    correction: Any  # trainer.models.bias.BiasCorrection
    model_version: str
    run_id: str


def save_model_bundle(writer: RunWriter, bundle: ModelBundle, workdir: str | Path) -> list[str]:
    """Write the model, scalers/encoders and bias correction under `model/`, and params.json."""
    local = Path(workdir) / MODEL_DIR
    local.mkdir(parents=True, exist_ok=True)
    bundle.model.save(local / "model.keras")
    bundle.pipeline.save(local)
    names = writer.put_dir(MODEL_DIR, local)
    names.append(writer.put_json(f"{MODEL_DIR}/bias_correction.json", bundle.correction.to_dict()))
    writer.put_json(
        PARAMS,
        {
            "model_version": bundle.model_version,
            "run_id": bundle.run_id,
            "model_params": bundle.params.to_dict(),
            "train_config": bundle.cfg.to_dict(),
        },
    )
    return names


def load_model_bundle(store: ArtifactStore, run_id: str, workdir: str | Path) -> ModelBundle:
    """Download a sealed run's model (hashes checked) and load it."""
    import keras

    from trainer.config import ModelParams, TrainConfig
    from trainer.data.features import FeaturePipeline
    from trainer.models.bias import BiasCorrection

    manifest = download_run(store, run_id, workdir, names=[MODEL_DIR, PARAMS])
    local = Path(workdir)
    params = json.loads((local / PARAMS).read_text())
    correction = json.loads((local / MODEL_DIR / "bias_correction.json").read_text())
    return ModelBundle(
        model=keras.saving.load_model(local / MODEL_DIR / "model.keras", compile=False),
        pipeline=FeaturePipeline.load(local / MODEL_DIR),
        cfg=TrainConfig.from_dict(params["train_config"]),
        params=ModelParams.from_dict(params["model_params"]),
        correction=BiasCorrection.from_dict(correction),
        model_version=str(manifest.get("model_version") or params["model_version"]),
        run_id=run_id,
    )
