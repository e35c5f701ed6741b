"""What a restore wrote, with checksums: ``manifest.json``, the journal, and "is this output done?".

``apir restore`` (in OUT_DIR) and ``apir restore-dataset`` (in OUT_ROOT) write ``manifest.json``:
every output file with its SHA-256 and size, the source file it came from (with its SHA-256), and
the run that made it (:class:`RunInfo`: apir version, model name and checksum, degradation, seed,
settings). ``apir data check`` verifies a folder against it (:func:`verify`), so a restored dataset
handed to someone else can be proven complete and unmodified.

While a run works it appends to a hidden *journal* (``.apir-journal.jsonl``, one JSON line per event,
fsync'd): the run's settings first, then ``begin`` before each output and ``done`` (with the
output's :class:`Entry`) after it is in place. After a crash or ``kill -9`` the journal says what was
finished; ``--resume`` skips outputs that :func:`is_complete` verifies, redoes the rest, and a torn
last line is ignored. The journal is replaced by ``manifest.json`` when the run ends.

The pieces are small functions (:func:`entry_for`, :func:`is_complete`, :func:`read_journal`,
:func:`merge`) so other executors (e.g. a Ray pool) can reuse them: only the loop differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from apir.errors import ApirError
from apir.fsutil import atomic_write_bytes, os_error_reason, printable

__all__ = [
    "JOURNAL_FILE",
    "MANIFEST_FILE",
    "SCHEMA",
    "Entry",
    "Journal",
    "Manifest",
    "ModelRecord",
    "RunInfo",
    "entry_for",
    "is_complete",
    "load_manifest",
    "merge",
    "model_record",
    "read_journal",
    "run_id",
    "sha256_file",
    "verify",
    "write_manifest",
]

SCHEMA = "apir.manifest/1"
MANIFEST_FILE = "manifest.json"
JOURNAL_FILE = ".apir-journal.jsonl"
_CHUNK = 1 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRecord(_Strict):
    """The model that restored: registry name, the checkpoint file and its SHA-256."""

    name: str | None = None
    source: str | None = None
    sha256: str | None = None


class RunInfo(_Strict):
    """Everything that determines an output's bytes besides its source file."""

    generator: str  # "apir restore" or "apir restore-dataset"
    apir_version: str
    model: ModelRecord | None = None  # None: degraded only, or a restore function without a model
    label: str | None = None
    degradation: str | None = None  # None for apir restore (files are restored as they are)
    degradation_description: str | None = None
    seed: int | None = None
    settings: dict[str, Any] = Field(default_factory=dict)  # tile, overlap, keep_input, ...


class Entry(_Strict):
    """One output file: where it is (relative to the manifest's folder), its checksum and origin."""

    output: str  # POSIX path relative to the manifest's folder
    sha256: str
    size: int
    source: str  # the input file it was made from (absolute)
    source_sha256: str | None = None
    kind: Literal["restored", "degraded", "copied"]
    run: str  # key into Manifest.runs


class Manifest(_Strict):
    schema_: Literal["apir.manifest/1"] = Field(SCHEMA, alias="schema")
    runs: dict[str, RunInfo]
    entries: list[Entry]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ------------------------------------------------------------------------------------------ checksums


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def run_id(run: RunInfo) -> str:
    """A short stable key for a run's settings: equal settings give equal keys (resume, merging)."""
    text = json.dumps(run.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def model_record(header: Mapping[str, Any] | None = None, model: Any = None) -> ModelRecord | None:
    """The :class:`ModelRecord` of a resolved model: the checkpoint's SHA-256, or of its weights.

    ``header`` is what :func:`apir.restore.loading.resolve_model` returns (``source`` = the file);
    for a model given as an ``nn.Module`` only, the checksum is over its state dict instead.
    """
    name = source = digest = None
    if header:
        name = (header.get("model") or {}).get("name") if isinstance(header.get("model"), dict) else None
        source = header.get("source")
        if source and Path(source).is_file():
            digest = sha256_file(source)
    if model is not None:
        name = name or getattr(model, "registry_name", None) or type(model).__name__
        if digest is None:
            h = hashlib.sha256()
            for key, tensor in sorted(model.state_dict().items()):
                h.update(key.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            digest = h.hexdigest()
    if name is None and source is None and digest is None:
        return None
    return ModelRecord(name=name, source=str(source) if source else None, sha256=digest)


def entry_for(
    output: str | os.PathLike[str],
    root: str | os.PathLike[str],
    source: str | os.PathLike[str],
    kind: str,
    run: str,
    source_sha256: str | None = None,
) -> Entry:
    """The manifest entry of ``output`` (which must be complete and in place) under ``root``."""
    out = Path(output)
    return Entry(
        output=out.relative_to(root).as_posix(),
        sha256=sha256_file(out),
        size=out.stat().st_size,
        source=str(Path(source).absolute()),
        source_sha256=source_sha256,
        kind=kind,  # type: ignore[arg-type]
        run=run,
    )


def is_complete(output: str | os.PathLike[str], entry: Entry, source_sha256: str | None = None) -> bool:
    """True if ``output`` is the very file ``entry`` records (a regular file, same size and SHA-256).

    With ``source_sha256``, also that it was made from a source with that checksum (a source edited
    since makes the output stale). Never raises: anything unreadable is simply not complete.
    """
    p = Path(output)
    try:
        if p.is_symlink() or not p.is_file() or p.stat().st_size != entry.size:
            return False
        if source_sha256 is not None and entry.source_sha256 not in (None, source_sha256):
            return False
        return sha256_file(p) == entry.sha256
    except OSError:
        return False


# ------------------------------------------------------------------------------------------ manifest


def write_manifest(root: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write ``root/manifest.json`` atomically (entries sorted by path, so equal runs give equal bytes)."""
    path = Path(root) / MANIFEST_FILE
    data = manifest.model_dump(mode="json", by_alias=True)
    data["entries"] = sorted(data["entries"], key=lambda e: e["output"])
    used = {e["run"] for e in data["entries"]}
    data["runs"] = {k: v for k, v in sorted(data["runs"].items()) if k in used}
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    try:
        atomic_write_bytes(path, text.encode("utf-8"))
    except OSError as err:
        raise ApirError(f"{printable(path)}: cannot write the manifest ({os_error_reason(err)})") from None
    return path


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read a ``manifest.json`` (or the folder holding one); anything wrong is a one-line ApirError."""
    p = Path(path)
    file = p / MANIFEST_FILE if p.is_dir() else p
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ApirError(f"{printable(file)}: no manifest here") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ApirError(f"{printable(file)}: cannot read the manifest ({os_error_reason(err)})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ApirError(f"{printable(file)}: not an apir manifest (schema {got!r}, expected {SCHEMA!r})")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ApirError(f"{printable(file)}: invalid manifest ({where}: {first['msg']})") from None
    for e in manifest.entries:
        if e.run not in manifest.runs:
            raise ApirError(f"{printable(file)}: invalid manifest ({e.output} names unknown run {e.run})")
        if Path(e.output).is_absolute() or ".." in Path(e.output).parts:
            raise ApirError(f"{printable(file)}: invalid manifest (entry path {printable(e.output)})")
    return manifest


def merge(old: Manifest | None, runs: Mapping[str, RunInfo], entries: Iterable[Entry]) -> Manifest:
    """``old`` with ``entries`` added; a new entry replaces an old one for the same output."""
    by_output: dict[str, Entry] = {e.output: e for e in old.entries} if old else {}
    all_runs: dict[str, RunInfo] = dict(old.runs) if old else {}
    all_runs.update(runs)
    for e in entries:
        by_output[e.output] = e
    return Manifest(runs=all_runs, entries=list(by_output.values()))


def verify(root: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """Check a folder against its manifest: (path, problem) for every missing, changed or extra file.

    Extra files are non-hidden files the manifest does not list (the manifest itself excepted).
    """
    root = Path(root)
    manifest = load_manifest(root)
    problems: list[tuple[Path, str]] = []
    listed = set()
    for e in manifest.entries:
        p = root / e.output
        listed.add(e.output)
        if not p.is_file():
            problems.append((p, "listed in the manifest but missing"))
        elif p.stat().st_size != e.size or sha256_file(p) != e.sha256:
            problems.append((p, "differs from the manifest (changed after it was written)"))
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if not name.startswith(".") and rel != MANIFEST_FILE and rel not in listed:
                problems.append((root / rel, "not listed in the manifest"))
    return problems


# ------------------------------------------------------------------------------------------ journal


class Journal:
    """Append-only record of a run in progress (see the module docstring); one writer (hold the lock)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._f: Any = None

    def start(self, runs: Mapping[str, RunInfo], fresh: bool) -> None:
        """Open for appending (``fresh``: start a new journal), recording the runs' settings."""
        try:
            self._f = open(self.path, "w" if fresh else "a", encoding="utf-8")  # noqa: SIM115
        except OSError as err:
            raise ApirError(
                f"{printable(self.path)}: cannot write the journal ({os_error_reason(err)})"
            ) from None
        for key, run in runs.items():
            self._append({"op": "run", "run": key, "info": run.model_dump(mode="json")})

    def _append(self, record: dict[str, Any]) -> None:
        try:
            # One write call per line, then fsync: a crash leaves at most one torn last line.
            self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as err:
            raise ApirError(
                f"{printable(self.path)}: cannot write the journal ({os_error_reason(err)})"
            ) from None

    def begin(self, output: str) -> None:
        self._append({"op": "begin", "output": output})

    def done(self, entry: Entry) -> None:
        self._append({"op": "done", "entry": entry.model_dump(mode="json")})

    def close(self, remove: bool = False) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        if remove:
            self.path.unlink(missing_ok=True)


def read_journal(path: str | os.PathLike[str]) -> tuple[dict[str, RunInfo], dict[str, Entry], set[str]]:
    """(runs, finished entries by output, outputs begun but not finished) from a journal.

    A missing journal is empty; unreadable or torn lines (a crash mid-write) are skipped.
    """
    runs: dict[str, RunInfo] = {}
    done: dict[str, Entry] = {}
    begun: set[str] = set()
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return runs, done, begun
    except OSError as err:
        raise ApirError(f"{printable(path)}: cannot read the journal ({os_error_reason(err)})") from None
    for line in lines:
        try:
            rec = json.loads(line)
            if rec["op"] == "run":
                runs[rec["run"]] = RunInfo.model_validate(rec["info"])
            elif rec["op"] == "begin":
                begun.add(rec["output"])
                done.pop(rec["output"], None)
            elif rec["op"] == "done":
                entry = Entry.model_validate(rec["entry"])
                done[entry.output] = entry
                begun.discard(entry.output)
        except (ValueError, KeyError, TypeError, ValidationError):
            continue
    return runs, done, begun
