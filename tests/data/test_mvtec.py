from __future__ import annotations

import pytest

from apir.data.mvtec import find_category_dirs, load_category, load_dataset, split_train_val
from apir.errors import ApirError


def test_reads_root_and_single_category(tiny_demo):
    cats = load_dataset(tiny_demo)
    assert [c.name for c in cats] == ["brick", "coffee"]
    brick = cats[0]
    assert len(brick.train) == 6
    assert sum(s.is_good for s in brick.test) == 2
    assert brick.defect_types == ["crack", "hole", "spot"]
    for s in brick.test:
        if s.is_good:
            assert s.mask is None and s.original is None
        else:
            assert s.mask is not None and s.mask.name == f"{s.image.stem}_mask.png"
            assert s.mask.parent.name == s.defect_type and s.original is not None
    single = load_category(tiny_demo / "brick")
    assert [s.image for s in single.test] == [s.image for s in brick.test]
    assert find_category_dirs(tiny_demo / "brick") == [tiny_demo / "brick"]


def test_category_filter_and_errors(tiny_demo, tmp_path):
    assert [c.name for c in load_dataset(tiny_demo, ["coffee"])] == ["coffee"]
    with pytest.raises(ApirError, match="unknown category nope"):
        load_dataset(tiny_demo, ["nope"])
    with pytest.raises(ApirError, match="does not exist"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ApirError, match="no MVTec-layout category"):
        load_dataset(tmp_path / "empty")


def test_split_is_deterministic_disjoint_and_per_category(tiny_demo):
    samples = [s for c in load_dataset(tiny_demo) for s in c.train]
    train, val = split_train_val(samples, 0.34, seed=1)
    train2, val2 = split_train_val(list(reversed(samples)), 0.34, seed=1)
    assert [s.key for s in val] == [s.key for s in val2]
    assert {s.key for s in train} == {s.key for s in train2}
    assert not {s.key for s in train} & {s.key for s in val}
    assert len(train) + len(val) == len(samples)
    for cat in ("brick", "coffee"):
        assert sum(s.category == cat for s in val) == 2  # round(6 * 0.34)
    _, val_other_seed = split_train_val(samples, 0.34, seed=2)
    assert {s.key for s in val_other_seed} != {s.key for s in val}
    # One category's split does not depend on the other's presence.
    only_brick = [s for s in samples if s.category == "brick"]
    assert [s.key for s in split_train_val(only_brick, 0.34, seed=1)[1]] == [
        s.key for s in val if s.category == "brick"
    ]
    with pytest.raises(ApirError):
        split_train_val(samples, 1.0)
