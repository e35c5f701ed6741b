from __future__ import annotations

import json

import pytest

from apir.data.corpus import CORPUS_SOURCES, build_training_corpus
from apir.data.imageio import read_info
from apir.data.mvtec import load_dataset
from apir.errors import ApirError


def test_corpus_layout_and_licences(tmp_path):
    out = build_training_corpus(
        tmp_path / "c", tile=96, sources=["coins", "hopper"], show_progress=False, debian=[]
    )
    cats = load_dataset(out)
    assert [c.name for c in cats] == ["coins", "hopper"]
    for c in cats:
        assert c.train and not c.test
        assert all(read_info(s.image).height == 96 for s in c.train)
    info = json.loads((out / "corpus_info.json").read_text())
    assert "public domain" in info["sources"]["hopper"]["licence"]
    assert all(src.licence for src in CORPUS_SOURCES.values())
    with pytest.raises(ApirError, match="already exists"):
        build_training_corpus(out, sources=["coins"], show_progress=False, debian=[])
    with pytest.raises(ApirError, match="unknown corpus source"):
        build_training_corpus(tmp_path / "d", sources=["nope"], show_progress=False, debian=[])
