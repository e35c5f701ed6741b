"""Freely licensed pictures inside Debian packages: fetch, unpack, list, and find each file's licence.

Why Debian packages: no standard denoising set (BSD, DIV2K, Waterloo, MVTec) can be installed from the
registries apir may use, but several Debian packages carry hundreds of photographs and photographic
material textures under free licences (``../shared/reference/field-notes.md``, "Training images").
apir fetches them itself with Debian's own tools, ``apt-get download`` (no root, no system install)
and ``dpkg -x`` (unpack into a folder), into a cache folder; once there, everything works offline.

The licence of every file comes from the package's ``/usr/share/doc/<pkg>/copyright``. For
machine-readable (DEP-5) files the last ``Files:`` stanza whose glob matches the file wins, as the
format specifies; the globs name paths of the *source* tree while we see installed paths, so a glob
matches when it matches any trailing part of the installed path. Free-form copyright files give the
package's one licence line instead (recorded as such).

Reserved for independent evaluation and never used here: opencv-doc, gimp-data, gimp-data-extras,
mate-backgrounds (:data:`RESERVED_PACKAGES`).
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from apir.errors import ApirError

#: Packages kept out of every apir training set so that apir can be evaluated on them independently.
RESERVED_PACKAGES = frozenset({"opencv-doc", "gimp-data", "gimp-data-extras", "mate-backgrounds"})

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tga")


@dataclass(frozen=True)
class DebianSource:
    """A package whose pictures apir may train on, and which of its files are candidate pictures.

    ``include``: globs over the installed path (or a path inside an ``archives`` zip such as Nexuiz's
    ``.pk3``); ``kind``: "photo" or "texture" (the unseen split keeps both kinds); the per-file filters
    in :mod:`apir.data.corpus` then drop maps, masks, renders and small or lossy files.
    """

    kind: str
    include: tuple[str, ...]
    archives: tuple[str, ...] = ()


DEBIAN_SOURCES: dict[str, DebianSource] = {
    "supertuxkart-data": DebianSource("texture", ("usr/share/games/supertuxkart/data/textures/*",)),
    "lomiri-wallpapers-16.04": DebianSource("photo", ("usr/share/backgrounds/*",)),
    "lomiri-wallpapers-20.04": DebianSource("photo", ("usr/share/backgrounds/*",)),
    "nexuiz-textures": DebianSource(
        "texture", ("textures/*",), archives=("usr/share/games/nexuiz/data/*.pk3",)
    ),
    "plasma-workspace-wallpapers": DebianSource("photo", ("usr/share/wallpapers/*/contents/images/*",)),
    "palapeli-data": DebianSource("photo", ("usr/share/palapeli/collection/*",)),
    "mypaint-data-extras": DebianSource("texture", ("usr/share/mypaint/backgrounds/*",)),
    # Red Eclipse is mostly rendered panels; its photo-derived wall/floor sets are these folders.
    "redeclipse-data": DebianSource(
        "texture",
        tuple(
            f"usr/share/games/redeclipse/data/{d}/*"
            for d in ("philipk/pk01", "philipk/pk02", "trak/trak4", "trak/trak5", "trak/trak6", "trak/trak7")
        ),
    ),
}

_DONE = ".apir-unpacked"


@dataclass(frozen=True)
class PackageFile:
    """One candidate picture: where it was found and how to read its bytes."""

    package: str
    version: str
    path: str  # installed path, or "<archive path>!<member>" for files inside a zip
    licence: str
    local: Path  # the file on disk (for zip members: the archive)
    member: str | None = None

    def read_bytes(self) -> bytes:
        if self.member is None:
            return self.local.read_bytes()
        with zipfile.ZipFile(self.local) as archive:
            return archive.read(self.member)


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise ApirError(f"{cmd[0]} not found (Debian's package tools are needed)") from None
    except subprocess.CalledProcessError as e:
        lines = [ln for ln in (e.stderr or e.stdout or "").strip().splitlines() if not ln.startswith("W:")]
        raise ApirError(f"{' '.join(cmd)} failed: {lines[-1] if lines else f'exit {e.returncode}'}") from None
    except subprocess.TimeoutExpired:
        raise ApirError(f"{' '.join(cmd)} timed out") from None


def unpack_package(name: str, cache: Path, offline: bool = False) -> tuple[Path, str]:
    """The unpacked package folder in ``cache`` and its version; downloads and unpacks if needed.

    A ``.deb`` already in ``cache/debs`` is used as it is (so a cache copied to an offline machine
    works); the unpacked tree is written to a temporary folder and renamed when complete, so an
    interrupted unpack is redone rather than half-used.
    """
    if name in RESERVED_PACKAGES:
        raise ApirError(f"{name} is reserved for independent evaluation of apir and never used for training")
    debs_dir = cache / "debs"
    debs = sorted(debs_dir.glob(f"{name}_*.deb"))
    if not debs:
        if offline:
            raise ApirError(f"debian package {name}: not in the cache {debs_dir} (and --offline was given)")
        debs_dir.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", "download", name], cwd=debs_dir)
        debs = sorted(debs_dir.glob(f"{name}_*.deb"))
        if not debs:
            raise ApirError(f"debian package {name}: apt-get download wrote no .deb")
    deb = debs[-1]
    version = deb.name.split("_")[1].replace("%3a", ":")
    target = cache / "unpacked" / f"{name}_{deb.name.split('_')[1]}"
    if not (target / _DONE).is_file():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(deb), str(partial)], cwd=cache)
        (partial / _DONE).write_text(version)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target, version


# --------------------------------------------------------------------------------------------------
# Licences (DEP-5 copyright files)
# --------------------------------------------------------------------------------------------------


def parse_copyright(text: str) -> list[tuple[list[str], str]]:
    """``[(globs, licence)]`` of a DEP-5 file in order; ``[(["*"], first line)]`` for a free-form one.

    The licence string carries the stanza's copyright holders after " by " (CC-BY needs attribution).
    """
    stanzas: list[tuple[list[str], str]] = []
    for block in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t]+.*)*)", block, re.M)
        licence = re.search(r"^License:[ \t]*(.*)", block, re.M)
        holders = re.search(r"^Copyright:(.*(?:\n[ \t]+.*)*)", block, re.M)
        if files and licence:
            who = (
                "; ".join(ln.strip() for ln in holders.group(1).splitlines() if ln.strip()) if holders else ""
            )
            text_ = licence.group(1).strip() + (f" by {who}" if who else "")
            stanzas.append((files.group(1).split(), text_))
    if stanzas:
        return stanzas
    if not text.startswith("Format:"):
        flat = " ".join(text.split())
        gpl = re.search(r"GNU General Public License.{0,80}?version (\d)(.{0,40}any later version)?", flat)
        if gpl:
            return [(["*"], f"GPL-{gpl.group(1)}{'+' if gpl.group(2) else ''}")]
        for line in text.splitlines():
            if re.search(r"licen[cs]e|Creative Commons|public domain", line, re.I):
                return [(["*"], line.strip())]
    header = re.search(r"^License:[ \t]*(.*)", text, re.M)
    return [(["*"], header.group(1).strip() if header else "unknown (see the package's copyright file)")]


def licence_for(path: str, stanzas: list[tuple[list[str], str]]) -> str:
    """Licence of an installed ``path``: the last stanza with a glob matching a trailing part of it.

    A glob naming one file (no wildcard) also matches by file name alone: wallpaper packages list
    ``16.04/photo.jpg`` for what they install as ``usr/share/backgrounds/photo.jpg``.
    """
    parts = PurePosixPath(path.replace("!", "/")).parts
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    found = "unknown (see the package's copyright file)"
    for globs, licence in stanzas:
        for g in globs:
            by_name = not any(c in g for c in "*?[") and PurePosixPath(g).name == parts[-1]
            if by_name or any(fnmatch.fnmatchcase(tail, g) for tail in tails):
                found = licence
    return found


def list_package_files(name: str, root: Path, version: str) -> list[PackageFile]:
    """Candidate pictures of an unpacked package, each with its licence, in a stable order."""
    source = DEBIAN_SOURCES[name]
    copyright_file = root / "usr" / "share" / "doc" / name / "copyright"
    stanzas = parse_copyright(copyright_file.read_text(errors="replace")) if copyright_file.is_file() else []
    found: list[PackageFile] = []

    def wanted(rel: str) -> bool:
        return rel.lower().endswith(IMAGE_SUFFIXES) and any(
            fnmatch.fnmatchcase(rel, g) for g in source.include
        )

    if source.archives:
        for archive in sorted(p for g in source.archives for p in root.glob(g)):
            rel_archive = archive.relative_to(root).as_posix()
            with zipfile.ZipFile(archive) as z:
                for member in sorted(z.namelist()):
                    if wanted(member):
                        path = f"{rel_archive}!{member}"
                        found.append(
                            PackageFile(name, version, path, licence_for(path, stanzas), archive, member)
                        )
        return found
    for file in sorted(root.rglob("*")):
        rel = file.relative_to(root).as_posix()
        # Never follow a link out of the package tree (a package may link to files elsewhere).
        if file.is_symlink() or not file.is_file() or not wanted(rel):
            continue
        found.append(PackageFile(name, version, rel, licence_for(rel, stanzas), file))
    return found
