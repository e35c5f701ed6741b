"""Reading datasets in the MVTec AD layout.

MVTec AD is the standard layout of industrial anomaly detection, and anomalib, PatchCore and most
detectors read it unchanged, so apir reads (and writes) exactly that::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect_type>/*.png
    <root>/<category>/ground_truth/<defect_type>/<stem>_mask.png

``good`` means normal; any other folder under ``test`` is a defect type whose pixel masks sit under
``ground_truth`` with the same stem plus ``_mask``. apir adds one optional folder that MVTec lacks,
``<category>/original/<defect_type>/<stem>.png``: the same image *before* its defect was added. The
embedded demo dataset writes it, because measuring how much of a defect survives restoration needs
the defect-free original (see ``docs/data.md``).

``root`` may be a single category folder (it has ``train/`` or ``test/``) or a folder of categories.

Symbolic links are followed only while they stay inside ``root``: a link to a file or folder
elsewhere (``test/crack -> /etc``, ``train/good/x.png -> /home/me/private.png``) is left out with one
warning line on stderr, unless ``follow_symlinks=True`` (``--follow-symlinks``). A dataset is what is
under its root; a link must not pull in files the user never meant to hand over.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from apir.data.imageio import list_images
from apir.data.seeding import stable_fraction
from apir.errors import ApirError
from apir.fsutil import link_escapes, printable

GOOD = "good"
MASK_SUFFIX = "_mask"


@dataclass(frozen=True)
class Sample:
    """One image of a category, with where its mask and defect-free original live (if anywhere)."""

    image: Path
    category: str
    split: str  # "train" or "test"
    defect_type: str  # "good" or the defect folder's name
    mask: Path | None = None  # None for good images: their mask is all zero
    original: Path | None = None  # defect-free version of a defective image, if the dataset has one

    @property
    def is_good(self) -> bool:
        return self.defect_type == GOOD

    @property
    def key(self) -> str:
        """A stable identifier, e.g. ``bottle/test/crack/003``, used for seeding and reports."""
        return f"{self.category}/{self.split}/{self.defect_type}/{self.image.stem}"


@dataclass
class Category:
    """All samples of one category, as found on disk."""

    name: str
    root: Path
    train: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)

    @property
    def defect_types(self) -> list[str]:
        return sorted({s.defect_type for s in self.test if not s.is_good})


def mask_path_for(category_root: Path, defect_type: str, stem: str) -> Path:
    """Where MVTec keeps the mask of ``test/<defect_type>/<stem>.*``."""
    return category_root / "ground_truth" / defect_type / f"{stem}{MASK_SUFFIX}.png"


def original_path_for(category_root: Path, defect_type: str, stem: str) -> Path:
    """Where apir keeps the defect-free original of ``test/<defect_type>/<stem>.*``."""
    return category_root / "original" / defect_type / f"{stem}.png"


def is_category_dir(path: Path) -> bool:
    return (path / "train").is_dir() or (path / "test").is_dir()


def _inside(path: Path, root: Path, follow_symlinks: bool) -> bool:
    """False (after one warning line) for a link out of ``root`` that must not be followed."""
    if follow_symlinks or not link_escapes(path, root):
        return True
    print(
        f"warning: skipped {printable(path)}: symbolic link to {printable(os.path.realpath(path))}, "
        f"outside the dataset {printable(root)} (pass --follow-symlinks to follow it)",
        file=sys.stderr,
    )
    return False


def find_category_dirs(root: str | Path, follow_symlinks: bool = False) -> list[Path]:
    """The category folders under ``root`` (or ``root`` itself if it is one), sorted by name."""
    root = Path(root)
    if not root.exists():
        raise ApirError(f"{root}: dataset folder does not exist")
    if not root.is_dir():
        raise ApirError(f"{root}: not a folder (expected an MVTec-layout dataset root or category)")
    if is_category_dir(root):
        return [root]
    found = sorted(
        p for p in root.iterdir() if p.is_dir() and is_category_dir(p) and _inside(p, root, follow_symlinks)
    )
    if not found:
        raise ApirError(
            f"{root}: no MVTec-layout category found (expected <root>/<category>/train/good/*.png "
            "or <category>/train/good/*.png)"
        )
    return found


def load_category(
    path: str | Path, follow_symlinks: bool = False, dataset_root: str | Path | None = None
) -> Category:
    """Scan one category folder. Missing masks are kept as ``None`` here; ``data check`` reports them.

    Links out of ``dataset_root`` (default: the category folder) are left out unless
    ``follow_symlinks`` (see the module docstring).
    """
    path = Path(path)
    top = Path(dataset_root) if dataset_root is not None else path
    if not is_category_dir(path):
        raise ApirError(f"{path}: not an MVTec-layout category (no train/ or test/ folder)")

    def inside(p: Path) -> bool:
        return _inside(p, top, follow_symlinks)

    def images_in(folder: Path) -> list[Path]:
        if not folder.is_dir() or not inside(folder):
            return []
        return [p for p in list_images(folder, recursive=False) if inside(p)]

    def existing(candidate: Path) -> Path | None:
        return candidate if candidate.is_file() and inside(candidate) else None

    cat = Category(name=path.name, root=path)
    for image in images_in(path / "train" / GOOD):
        cat.train.append(Sample(image=image, category=cat.name, split="train", defect_type=GOOD))
    test_dir = path / "test"
    type_dirs = sorted(d for d in test_dir.iterdir() if d.is_dir()) if test_dir.is_dir() else []
    for type_dir in type_dirs:
        defect_type = type_dir.name
        for image in images_in(type_dir):
            mask = original = None
            if defect_type != GOOD:
                mask = existing(mask_path_for(path, defect_type, image.stem))
                original = existing(original_path_for(path, defect_type, image.stem))
            cat.test.append(Sample(image, cat.name, "test", defect_type, mask=mask, original=original))
    return cat


def load_dataset(
    root: str | Path, categories: Sequence[str] | None = None, follow_symlinks: bool = False
) -> list[Category]:
    """Scan a dataset root (or a single category). ``categories`` limits and checks the names.

    ``follow_symlinks`` also follows links out of ``root`` (see the module docstring).
    """
    dirs = find_category_dirs(root, follow_symlinks)
    if categories:
        by_name = {d.name: d for d in dirs}
        unknown = [c for c in categories if c not in by_name]
        if unknown:
            raise ApirError(
                f"{root}: unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)} "
                f"(found: {', '.join(sorted(by_name))})"
            )
        dirs = [by_name[c] for c in categories]
    return [load_category(d, follow_symlinks, dataset_root=root) for d in dirs]


def split_train_val(
    samples: Iterable[Sample], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Deterministic per-category train/val split.

    Each category's samples are ordered by a seeded hash of their key and the first
    ``round(n * val_fraction)`` (at least one when there are two or more) go to validation. The
    split depends only on the seed and the file names, not on listing order or on other categories,
    so adding a category never reshuffles another.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ApirError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_cat: dict[str, list[Sample]] = {}
    for s in samples:
        by_cat.setdefault(s.category, []).append(s)
    train: list[Sample] = []
    val: list[Sample] = []
    for cat in sorted(by_cat):
        ordered = sorted(by_cat[cat], key=lambda s: stable_fraction(seed, s.key))
        n_val = round(len(ordered) * val_fraction)
        if val_fraction > 0 and n_val == 0 and len(ordered) >= 2:
            n_val = 1
        val.extend(ordered[:n_val])
        train.extend(ordered[n_val:])
    return train, val


def round_robin_by_type(samples: Sequence[Sample]) -> list[Sample]:
    """Samples interleaved over their defect types (first of each type, then second, ...).

    Taking the first N of this list gives a subset that covers every defect type (and ``good``)
    evenly and depends only on the file names: how ``--max-per-category`` and saved examples choose.
    """
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.defect_type, []).append(s)
    ordered = [groups[t] for t in sorted(groups)]
    return [g[i] for i in range(max(map(len, ordered), default=0)) for g in ordered if i < len(g)]
