"""``apir data check``: find everything wrong with an MVTec-layout dataset before training on it.

The most frequent question about restoration and anomaly-detection tools is "how do I use my own
folders?". This check answers it by naming every file that does not fit the layout and why, so a
user fixes the dataset once instead of discovering problems one traceback at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from apir.data.imageio import IMAGE_EXTENSIONS, mask_is_binary, read_image, read_info
from apir.data.mvtec import GOOD, Category, load_dataset, mask_path_for
from apir.errors import ApirError
from apir.fsutil import link_escapes, printable


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class CategoryReport:
    name: str
    train_good: int = 0
    test_good: int = 0
    test_defect: int = 0
    defect_types: list[str] = field(default_factory=list)
    masks: int = 0
    originals: int = 0
    problems: list[Problem] = field(default_factory=list)


def _stray_files(folder: Path) -> Iterator[Path]:
    """Files in an image folder that are not images (hidden files are ignored, as everywhere)."""
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if (
                p.is_file()
                and not p.name.startswith(".")
                and p.suffix.lower() not in IMAGE_EXTENSIONS
                and not link_escapes(p, folder)
            ):
                yield p


def check_category(cat: Category, progress: tqdm | None = None) -> CategoryReport:
    """Check one category: counts, masks, sizes and whether every file decodes."""
    rep = CategoryReport(name=cat.name, defect_types=cat.defect_types)
    rep.train_good = len(cat.train)
    rep.test_good = sum(s.is_good for s in cat.test)
    rep.test_defect = sum(not s.is_good for s in cat.test)
    add = rep.problems.append
    if not (cat.root / "train" / GOOD).is_dir():
        add(Problem(cat.root / "train" / GOOD, "missing folder (training needs good images here)"))
    elif not cat.train:
        add(Problem(cat.root / "train" / GOOD, "no images"))
    for folder in [cat.root / "train" / GOOD, *sorted((cat.root / "test").glob("*/"))]:
        for stray in _stray_files(folder):
            add(Problem(stray, f"not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)})"))

    expected_masks: set[Path] = set()
    for sample in [*cat.train, *cat.test]:
        if progress is not None:
            progress.update(1)
        try:
            image_shape = read_image(sample.image).rgb.shape[:2]
        except ApirError as err:
            add(Problem(sample.image, f"unreadable image ({_reason(err, sample.image)})"))
            image_shape = None
        if sample.is_good:
            continue
        mask_path = mask_path_for(cat.root, sample.defect_type, sample.image.stem)
        expected_masks.add(mask_path)
        if sample.mask is None:
            add(Problem(sample.image, f"missing mask (expected {mask_path})"))
        else:
            rep.masks += 1
            _check_mask(sample.mask, image_shape, add)
        if sample.original is not None:
            rep.originals += 1
            _check_same_size(sample.original, image_shape, "original", add)

    gt_root = cat.root / "ground_truth"
    if gt_root.is_dir():
        for mask in sorted(gt_root.rglob("*")):
            if (
                mask.is_file()
                and not mask.name.startswith(".")
                and mask not in expected_masks
                and not link_escapes(mask, cat.root)  # not part of the dataset (see apir.data.mvtec)
            ):
                add(Problem(mask, "extra mask with no matching test image"))
    return rep


def _reason(err: ApirError, path: Path) -> str:
    """The reason part of an imageio error ``<path>: cannot read image (<reason>)``."""
    text = str(err)
    text = text.removeprefix(f"{path}: ")
    for prefix in ("cannot read image (", "cannot read mask ("):
        if text.startswith(prefix) and text.endswith(")"):
            return text[len(prefix) : -1]
    return text


def _check_mask(mask: Path, image_shape: tuple[int, int] | None, add) -> None:
    try:
        info = read_info(mask)
        binary = mask_is_binary(mask)
    except ApirError as err:
        add(Problem(mask, f"unreadable mask ({_reason(err, mask)})"))
        return
    if image_shape is not None and (info.height, info.width) != tuple(image_shape):
        add(
            Problem(
                mask,
                f"mask size {info.width}x{info.height} differs from image size "
                f"{image_shape[1]}x{image_shape[0]}",
            )
        )
    if not binary:
        add(Problem(mask, "mask is not binary (expected only 0 and one foreground value, e.g. 255)"))


def _check_same_size(path: Path, image_shape: tuple[int, int] | None, what: str, add) -> None:
    try:
        info = read_info(path)
    except ApirError as err:
        add(Problem(path, f"unreadable {what} ({_reason(err, path)})"))
        return
    if image_shape is not None and (info.height, info.width) != tuple(image_shape):
        add(Problem(path, f"{what} size {info.width}x{info.height} differs from image size"))


def check_dataset(
    root: str | Path, show_progress: bool = True, follow_symlinks: bool = False
) -> list[CategoryReport]:
    """Check every category under ``root``; missing or empty roots raise :class:`ApirError`.

    Links out of ``root`` are skipped with a warning unless ``follow_symlinks``.
    """
    cats = load_dataset(root, follow_symlinks=follow_symlinks)
    total = sum(len(c.train) + len(c.test) for c in cats)
    with tqdm(total=total, desc="checking", unit="img", disable=not show_progress, leave=False) as bar:
        return [check_category(c, bar) for c in cats]


def format_report(reports: list[CategoryReport]) -> str:
    """A per-category table followed by every problem, one per line."""
    header = (
        f"{'category':<20} {'train/good':>10} {'test/good':>9} {'defective':>9} {'masks':>6} {'types':>5}"
    )
    lines = [header, "-" * len(header)]
    for r in reports:
        lines.append(
            f"{printable(r.name):<20} {r.train_good:>10} {r.test_good:>9} {r.test_defect:>9} {r.masks:>6} "
            f"{len(r.defect_types):>5}"
        )
    problems = [p for r in reports for p in r.problems]
    lines.append("")
    if problems:
        lines.append(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found:")
        lines.extend(f"  {printable(p)}" for p in problems)
    else:
        lines.append("no problems found")
    return "\n".join(lines)
