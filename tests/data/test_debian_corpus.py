"""The Debian part of the training corpus, offline: a tiny fake package in a temporary cache is
extracted, filtered, de-duplicated, split by picture and its licences recorded."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from apir.data import corpus as corpus_mod
from apir.data import debian
from apir.data.corpus import build_training_corpus
from apir.data.mvtec import load_dataset
from apir.data.picture_filter import family, jpeg_quality, judge
from apir.errors import ApirError

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs Debian's dpkg-deb")

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fake

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: pics/coffee.png pics/coffee_copy.png
Copyright: 2019 Rachel Michetti
License: CC0-1.0

Files: pics/astronaut*
Copyright: NASA
License: public-domain
"""

PICTURES = {
    "astronaut.png": skdata.astronaut,
    "coffee.png": skdata.coffee,
    "chelsea.png": skdata.chelsea,
    "ihc.png": skdata.immunohistochemistry,
    "hubble.png": skdata.hubble_deep_field,
}


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def make_fake_deb(cache: Path, name: str = "fake-pictures") -> Path:
    """A real .deb (dpkg-deb --build) holding photos, a duplicate, a normal map, an icon, a bad JPEG."""
    tree = cache / "build" / name
    pics = tree / "usr/share/fake/pics"
    pics.mkdir(parents=True)
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: 1.2-3\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        "Description: test pictures\n"
    )
    doc = tree / f"usr/share/doc/{name}"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    for fname, loader in PICTURES.items():
        (pics / fname).write_bytes(_png(loader()))
    (pics / "coffee_copy.png").write_bytes(_png(skdata.coffee()))  # a duplicate under another name
    normal = np.zeros((256, 256, 3), np.uint8) + np.array([128, 128, 255], np.uint8)
    normal[..., :2] += np.random.default_rng(0).integers(0, 20, (256, 256, 2), dtype=np.uint8)
    (pics / "wall_nm.png").write_bytes(_png(normal))  # a normal map, by name and by colour
    (pics / "badge.png").write_bytes(_png(np.full((300, 300, 3), 200, np.uint8)))  # flat: a render
    (pics / "small.png").write_bytes(_png(skdata.astronaut()[:100, :100]))  # too small
    (pics / "lossy.jpg").write_bytes(_jpeg(skdata.chelsea(), 60))  # JPEG quality 60
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    deb = debs / f"{name}_1.2-3_all.deb"
    subprocess.run(
        ["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)], check=True, capture_output=True
    )
    shutil.rmtree(cache / "build")
    return deb


@pytest.fixture()
def fake_source(monkeypatch):
    src = debian.DebianSource("photo", ("usr/share/fake/pics/*",))
    monkeypatch.setitem(debian.DEBIAN_SOURCES, "fake-pictures", src)
    monkeypatch.setitem(corpus_mod.DEBIAN_SOURCES, "fake-pictures", src)
    monkeypatch.setattr(corpus_mod, "MIN_UNSEEN_PICTURES", 1)
    return src


def test_fake_package_is_extracted_filtered_deduplicated_and_licensed(tmp_path, fake_source):
    cache = tmp_path / "cache"
    make_fake_deb(cache)
    warnings: list[str] = []
    out = build_training_corpus(
        tmp_path / "corpus",
        sources=[],
        debian=["fake-pictures"],
        cache=cache,
        offline=True,
        holdout=0.3,
        show_progress=False,
        warn=warnings.append,
    )
    info = json.loads((out / "corpus_info.json").read_text())["debian"]
    assert info["packages"]["fake-pictures"]["version"] == "1.2-3"
    rejected = info["packages"]["fake-pictures"]["rejected"]
    assert rejected.get("name says map, mask, icon, sky or effect") == 1  # wall_nm.png
    assert rejected.get("JPEG quality 60 < 90") == 1
    assert rejected.get("short side 100 px < 256") == 1
    assert sum(rejected.values()) == 4  # + the flat badge
    pictures = {Path(p["path"]).name: p for p in info["pictures"]}
    assert set(pictures) == {*PICTURES, "coffee_copy.png"}
    # licences from the DEP-5 file: the last matching stanza wins, holders kept for attribution
    assert pictures["coffee.png"]["licence"] == "CC0-1.0 by 2019 Rachel Michetti"
    assert pictures["astronaut.png"]["licence"].startswith("public-domain")
    assert pictures["ihc.png"]["licence"].startswith("GPL-2+")
    assert pictures["coffee_copy.png"]["split"] == "duplicate"
    assert pictures["coffee_copy.png"]["duplicate_of"] == pictures["coffee.png"]["id"]
    # downscaled by 2 and recorded
    assert pictures["coffee.png"]["shape"][:2] == [200, 300]
    # split by picture: every picture on exactly one side; unseen pictures never in training tiles
    held = {p["id"] for p in pictures.values() if p["split"] == "unseen"}
    trained = {p["id"] for p in pictures.values() if p["split"] == "train"}
    assert len(held) == 3 and len(trained) == 2
    tiles = [s.image.name for c in load_dataset(out) for s in c.train]
    assert tiles and all(any(t.startswith(i) for i in trained) for t in tiles)
    unseen = load_dataset(tmp_path / "corpus_unseen")
    used = {
        s.image.stem.rsplit("_", 1)[0] if s.split == "train" else s.image.stem
        for c in unseen
        for s in c.train + c.test
    }
    assert used == held
    for c in unseen:
        defective = [s for s in c.test if s.defect_type != "good"]
        assert defective and all(s.mask is not None and s.original is not None for s in defective)
    assert not warnings


def test_unavailable_package_is_one_warning_and_the_rest_is_built(tmp_path, fake_source):
    warnings: list[str] = []
    out = build_training_corpus(
        tmp_path / "corpus",
        tile=96,
        sources=["coins"],
        debian=["fake-pictures"],
        cache=tmp_path / "empty-cache",
        offline=True,
        show_progress=False,
        warn=warnings.append,
    )
    assert len(warnings) == 1 and "fake-pictures" in warnings[0] and "\n" not in warnings[0]
    assert [c.name for c in load_dataset(out)] == ["coins"]


def test_reserved_packages_are_refused(tmp_path):
    with pytest.raises(ApirError, match="reserved for independent evaluation"):
        build_training_corpus(tmp_path / "c", sources=[], debian=["gimp-data"], show_progress=False)
    with pytest.raises(ApirError, match="reserved"):
        debian.unpack_package("opencv-doc", tmp_path)


def test_jpeg_quality_estimate_and_families():
    img = skdata.chelsea()
    for q in (60, 85, 95):
        assert abs(jpeg_quality(Image.open(io.BytesIO(_jpeg(img, q)))) - q) <= 2
    assert judge("x/chelsea.jpg", _jpeg(img, 95)).usable
    assert family("textures/rock_a.png") == family("textures/rock02.jpg") == "rock"
    assert family("stk_karstRock_diffuse.png") == "stk_karstrock"
    assert family("brick.png") != family("bark.png")


def test_licence_matching_of_dep5_and_free_form():
    stanzas = debian.parse_copyright(COPYRIGHT)
    assert debian.licence_for("usr/share/fake/pics/astronaut.png", stanzas).startswith("public-domain")
    assert debian.licence_for("usr/share/fake/pics/other.png", stanzas).startswith("GPL-2+")
    free = (
        "This program is free software under the GNU General Public License, version 2, or\n"
        "(at your option) any later version."
    )
    assert debian.licence_for("a.png", debian.parse_copyright(free)) == "GPL-2+"
