"""Registry API, and the contract every registered model keeps (any size in, same size out)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from apir.errors import ApirError
from apir.models import create_model, list_models, model_config, register_model
from apir.models.nafnet import NAFNet
from apir.models.rcan import RCAN
from apir.models.unet import UNet

ALL = list_models()


def test_names_and_classes():
    assert {"unet", "rcan", "nafnet", "nafnet_w16", "nafnet_w32", "nafnet_deep"} <= set(ALL)
    assert sorted(ALL) == ALL
    assert isinstance(create_model("unet"), UNet)
    assert isinstance(create_model("rcan"), RCAN)
    assert isinstance(create_model("nafnet"), NAFNet)


def test_variants_are_kwarg_defaults_and_can_be_overridden():
    default = model_config(create_model("nafnet"))
    assert model_config(create_model("nafnet_w16")) == {**default, "name": "nafnet_w16"}
    assert create_model("nafnet_w32").config["width"] == 32
    deep = create_model("nafnet_deep").config
    assert (deep["width"], deep["enc_blocks"], deep["middle_blocks"], deep["dec_blocks"]) == (
        16,
        [1, 1, 2, 4],
        2,
        [1, 1, 1, 1],
    )
    assert create_model("nafnet_w32", width=8).config["width"] == 8
    # Defaults are copied: changing one model's config never leaks into the next.
    create_model("nafnet_deep").config["enc_blocks"].append(9)
    assert create_model("nafnet_deep").config["enc_blocks"] == [1, 1, 2, 4]


def test_unknown_name_is_one_line_error_listing_names():
    with pytest.raises(ApirError) as err:
        create_model("resnet")
    msg = str(err.value)
    assert "\n" not in msg and "resnet" in msg and all(name in msg for name in ALL)


def test_unknown_kwarg_is_one_line_error_listing_accepted():
    with pytest.raises(ApirError) as err:
        create_model("rcan", n_feat=32)
    msg = str(err.value)
    assert "\n" not in msg and "n_feat" in msg and "n_feats" in msg and "n_blocks" in msg
    with pytest.raises(ApirError, match="width"):
        create_model("unet", width=3)


def test_bad_values_are_apir_errors():
    bad = [("unet", {"in_channels": 0}), ("rcan", {"n_feats": "64"}), ("nafnet", {"width": True})]
    for name, kwargs in bad:
        with pytest.raises(ApirError):
            create_model(name, **kwargs)


@pytest.mark.parametrize("name", ALL)
def test_model_config_round_trips(name):
    model = create_model(name)
    config = model_config(model)
    assert config["name"] == name
    config = json.loads(json.dumps(config))  # what a checkpoint header does to it
    rebuilt = create_model(**config)
    assert model_config(rebuilt) == model_config(model)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


def test_model_config_of_directly_built_and_wrapped_models():
    assert model_config(RCAN(n_blocks=2))["name"] == "rcan"
    assert model_config(NAFNet(width=8)) == {**NAFNet(width=8).config, "name": "nafnet"}
    assert model_config(nn.DataParallel(create_model("unet")))["name"] == "unet"
    with pytest.raises(ApirError):
        model_config(nn.Conv2d(1, 1, 1))


def test_register_model_rejects_duplicates_and_bad_defaults():
    with pytest.raises(ValueError):
        register_model("unet")(UNet)
    with pytest.raises(ValueError):
        register_model("unet_typo", widht=3)(UNet)
    assert "unet_typo" not in list_models()


# --- the contract of every registered model -------------------------------------------------------


def _activate(model: nn.Module) -> nn.Module:
    """Give NAFNet's zero-initialised branch scales values, so every parameter is on a gradient path."""
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith(("beta", "gamma")):
                p.fill_(0.1)
    return model


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", [(1, 3, 17, 23), (2, 3, 33, 20)])
def test_any_size_in_same_size_out(name, shape):
    model = create_model(name).eval()
    assert isinstance(model.size_multiple, int) and model.in_channels == 3
    with torch.no_grad():
        out = model(torch.rand(shape))
    assert out.shape == shape and out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter_without_custom_functions(name):
    torch.manual_seed(0)
    model = _activate(create_model(name)).train()
    x = torch.rand(2, 3, 19, 18, requires_grad=True)
    out = model(x)
    # No custom autograd Function anywhere in the graph (they break ONNX export).
    seen, todo = set(), [out.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        assert not isinstance(fn, torch.autograd.function.BackwardCFunction), type(fn).__name__
        todo.extend(next_fn for next_fn, _ in fn.next_functions)
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert sum(bool(p.grad.abs().sum() > 0) for p in model.parameters()) == len(list(model.parameters()))


@pytest.mark.parametrize("name", ALL)
def test_deterministic_in_eval_mode(name):
    model = create_model(name).eval()
    x = torch.rand(1, 3, 21, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", ALL)
def test_set_local_pool_is_available_on_every_model(name):
    model = create_model(name).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        model.set_local_pool(32)
        torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)
        model.set_local_pool(None)
