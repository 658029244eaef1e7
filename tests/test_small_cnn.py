"""The small CNNs: small_cnn reads its input as it comes, small_cnn_std (the quickstart's) standardises each
image first, so a global change of brightness or contrast leaves its output alone."""

from __future__ import annotations

import torch

from robustprune.testing import check_model


def _build(registry, name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return registry.get("model", name).item.build(10, (3, 32, 32)).eval()


def test_both_pass_the_model_contract(registry):
    check_model(registry.get("model", "small_cnn").item)
    check_model(registry.get("model", "small_cnn_std").item)


def test_small_cnn_std_ignores_global_brightness_and_contrast(registry):
    network, plain = _build(registry, "small_cnn_std"), _build(registry, "small_cnn")
    x = torch.rand(4, 3, 32, 32)
    shifted = 0.4 * x + 0.3  # contrast 0.4 around a brighter mean: what contrast@3 does to an image, roughly
    with torch.no_grad():
        assert torch.allclose(network(x), network(shifted), atol=1e-4)
        assert not torch.allclose(plain(x), plain(shifted), atol=1e-2)  # the plain one does see it


def test_a_flat_image_gives_finite_outputs(registry):
    with torch.no_grad():
        out = _build(registry, "small_cnn_std")(torch.full((2, 3, 32, 32), 0.7))
    assert torch.isfinite(out).all()
