"""The paper's equation (1) and its variants, checked against numbers worked out by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from apir.errors import ApirError
from apir.losses import AnomalyWeightedLoss, anomaly_weighted_mse, charbonnier


def _t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)[None, None]  # 1×1×2×2


# pred − target = [[0.4, 0.0], [-0.3, 0.4]]  →  squared [[0.16, 0], [0.09, 0.16]], sum 0.41, N = 4
PRED = _t([[0.5, 0.2], [0.1, 0.9]])
TARGET = _t([[0.1, 0.2], [0.4, 0.5]])
MASK = _t([[1.0, 0.0], [0.0, 1.0]])  # masked squared errors: 0.16 + 0.16 = 0.32


def test_equation_1_by_hand():
    # MSE = 0.41 / 4 = 0.1025; masked term = 0.32 / N = 0.08;  0.3·0.1025 + 0.7·0.08 = 0.08675
    loss = anomaly_weighted_mse(PRED, TARGET, MASK)
    assert loss.item() == pytest.approx(0.08675, abs=1e-12)
    half = anomaly_weighted_mse(PRED, TARGET, MASK, alpha=0.5)
    assert half.item() == pytest.approx(0.5 * 0.1025 + 0.5 * 0.08)


def test_normalize_mask_by_hand():
    # masked term = 0.32 / 2 masked pixels = 0.16;  0.3·0.1025 + 0.7·0.16 = 0.14275
    loss = anomaly_weighted_mse(PRED, TARGET, MASK, normalize="mask")
    assert loss.item() == pytest.approx(0.14275, abs=1e-12)


def test_limits():
    torch.manual_seed(0)
    pred, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.7).float()
    mse = F.mse_loss(pred, target)
    zeros, ones = torch.zeros_like(mask), torch.ones_like(mask)
    torch.testing.assert_close(anomaly_weighted_mse(pred, target, mask, alpha=1.0), mse)
    torch.testing.assert_close(anomaly_weighted_mse(pred, target, zeros, alpha=0.3), 0.3 * mse)
    torch.testing.assert_close(anomaly_weighted_mse(pred, target, ones, alpha=0.3), mse)
    torch.testing.assert_close(
        anomaly_weighted_mse(pred, target, torch.ones_like(mask), normalize="mask"), mse
    )


def test_empty_mask_guard_gives_alpha_mse_and_finite_gradients():
    pred = torch.rand(2, 3, 5, 5, requires_grad=True)
    target = torch.rand(2, 3, 5, 5)
    loss = anomaly_weighted_mse(pred, target, torch.zeros(2, 1, 5, 5), normalize="mask")
    torch.testing.assert_close(loss, 0.3 * F.mse_loss(pred, target))
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_single_channel_mask_broadcasts_over_channels():
    torch.manual_seed(1)
    pred, target = torch.rand(2, 3, 6, 7), torch.rand(2, 3, 6, 7)
    mask = (torch.rand(2, 1, 6, 7) > 0.5).float()
    full = mask.expand(-1, 3, -1, -1).contiguous()
    for normalize in ("all", "mask"):
        torch.testing.assert_close(
            anomaly_weighted_mse(pred, target, mask, normalize=normalize),
            anomaly_weighted_mse(pred, target, full, normalize=normalize),
        )
    # By hand: one masked pixel of a 3-channel 1×1 image, errors 0.1, 0.2, 0.3 → squares .01, .04, .09
    p = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64).view(1, 3, 1, 1)
    one = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    mse = (0.01 + 0.04 + 0.09) / 3
    assert anomaly_weighted_mse(p, torch.zeros_like(p), one, normalize="mask").item() == pytest.approx(mse)
    assert anomaly_weighted_mse(p, torch.zeros_like(p), one).item() == pytest.approx(mse)


def test_charbonnier():
    x = torch.rand(1, 3, 4, 4)
    assert charbonnier(x, x, eps=1e-3).item() == pytest.approx(1e-3)
    # errors 0.4, 0, -0.3, 0.4 → mean of sqrt(e² + eps²)
    expected = (2 * (0.16 + 1e-6) ** 0.5 + 1e-3 + (0.09 + 1e-6) ** 0.5) / 4
    assert charbonnier(PRED, TARGET).item() == pytest.approx(expected, abs=1e-12)


def test_module_matches_functions():
    torch.manual_seed(2)
    pred, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.6).float()
    for normalize in ("all", "mask"):
        torch.testing.assert_close(
            AnomalyWeightedLoss(0.3, normalize)(pred, target, mask),
            anomaly_weighted_mse(pred, target, mask, 0.3, normalize),
        )
    torch.testing.assert_close(
        AnomalyWeightedLoss(1.0, base="charbonnier")(pred, target, mask), charbonnier(pred, target)
    )
    # Charbonnier with equation (1)'s weighting, by hand from the 2×2 example.
    errs = torch.sqrt((PRED - TARGET) ** 2 + 1e-6)
    expected = 0.3 * errs.mean() + 0.7 * (errs * MASK).sum() / 4
    torch.testing.assert_close(AnomalyWeightedLoss(base="charbonnier")(PRED, TARGET, MASK), expected)
    assert "alpha=0.3" in repr(AnomalyWeightedLoss())


def test_half_precision_inputs_are_computed_in_float32():
    pred = torch.full((1, 1, 2, 2), 300.0, dtype=torch.float16)
    target = torch.zeros(1, 1, 2, 2, dtype=torch.float16)
    loss = anomaly_weighted_mse(pred, target, torch.ones(1, 1, 2, 2))  # 300² overflows float16
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(90000.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"alpha": 1.5}, {"alpha": -0.1}, {"alpha": "0.3"}, {"normalize": "pixels"}, {"base": "l2"}, {"eps": 0}],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ApirError):
        AnomalyWeightedLoss(**kwargs)


def test_invalid_shapes():
    pred = torch.rand(2, 3, 4, 4)
    with pytest.raises(ApirError, match="mask"):
        anomaly_weighted_mse(pred, pred, torch.ones(2, 2, 4, 4))
    with pytest.raises(ApirError, match="mask"):
        anomaly_weighted_mse(pred, pred, torch.ones(1, 1, 4, 4))
    with pytest.raises(ApirError, match="shape"):
        anomaly_weighted_mse(pred, pred[:, :1], torch.ones(2, 1, 4, 4))
    with pytest.raises(ApirError, match="normalize"):
        anomaly_weighted_mse(pred, pred, torch.ones(2, 1, 4, 4), normalize="none")
