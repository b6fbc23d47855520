"""Tests of soundharvest.models: architectures from config, the critic, seeded initialisation."""

from __future__ import annotations

import pytest
import torch

from soundharvest.io import SoundharvestError
from soundharvest.models import (
    ACAI,
    FIRST_ARCH,
    MODEL_TYPES,
    THESIS_ARCH,
    Autoencoder,
    build_model,
    register_model,
    resolve_arch,
)


def _widths(mlp) -> list[tuple[int, int]]:
    return [(layer.in_features, layer.out_features) for layer in mlp.layers]


def test_thesis_arch_shapes() -> None:
    ae = build_model("ae", 513, THESIS_ARCH)
    assert _widths(ae.encoder) == [(513, 500), (500, 500), (500, 2000), (2000, 10)]
    assert _widths(ae.decoder) == [(10, 2000), (2000, 500), (500, 500), (500, 513)]
    x = torch.rand(32, 513)
    with torch.no_grad():
        z, x_hat = ae(x)
    assert z.shape == (32, 10) and x_hat.shape == (32, 513)
    # Sigmoid output: reconstructions live where the inputs do, in [0, 1].
    assert float(x_hat.min()) >= 0 and float(x_hat.max()) <= 1
    # Linear latent: codes are not squashed into [0, 1].
    assert float(z.min()) < 0 or float(z.max()) > 1


def test_first_arch_has_sigmoid_latent_and_any_input_width() -> None:
    ae = build_model("ae", 512, "first")
    assert _widths(ae.encoder) == [(512, 256), (256, 128), (128, 64), (64, 32), (32, 16)]
    z = ae.encode(torch.randn(64, 512) * 10).detach()
    assert z.shape == (64, 16)
    assert float(z.min()) >= 0 and float(z.max()) <= 1
    assert resolve_arch("first") == resolve_arch(FIRST_ARCH)


def test_acai_critic_predicts_one_alpha_per_frame() -> None:
    model = build_model("acai", 40, {"hidden": [32, 16], "latent": 6}, seed=1)
    assert isinstance(model, ACAI)
    assert _widths(model.critic.net) == _widths(model.autoencoder.encoder)
    x = torch.rand(9, 40)
    alpha_hat = model.critic(x)
    assert alpha_hat.shape == (9,)
    # The critic's output is the mean of its encoder-shaped network.
    assert torch.allclose(alpha_hat, model.critic.net(x).mean(dim=1))
    # detach_params: same values, but no gradient reaches the critic's weights.
    x.requires_grad_(True)
    model.critic(x, detach_params=True).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.critic.parameters())


def test_random_weights_depend_only_on_seed() -> None:
    arch = {"hidden": [20, 10], "latent": 3}
    torch.manual_seed(123)
    a = build_model("random", 30, arch, seed=7)
    torch.rand(1000)  # disturb the global RNG: must not matter
    b = build_model("random", 30, arch, seed=7)
    c = build_model("random", 30, arch, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    # Building does not consume the caller's random numbers.
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    build_model("random", 30, arch, seed=7)
    assert torch.equal(torch.rand(3), expected)
    # ACAI, AE and random start from the same autoencoder for one seed (a fair comparison).
    acai = build_model("acai", 30, arch, seed=7)
    sacai = acai.autoencoder.state_dict()
    assert all(torch.equal(sa[k], sacai[k]) for k in sa)


@pytest.mark.parametrize(
    "arch, field",
    [
        ({"hidden": [], "latent": 3}, "hidden"),
        ({"hidden": [4, -1], "latent": 3}, "hidden"),
        ({"hidden": [4], "latent": 0}, "latent"),
        ({"hidden": [4], "latent": 3, "activation": "swish9"}, "activation"),
        ({"hidden": [4], "latent": 3, "latent_activation": "nope"}, "latent_activation"),
        ({"hidden": [4], "latent": 3, "widths": [1]}, "unknown"),
        ("huge", "preset"),
    ],
)
def test_bad_arch_names_the_field(arch, field: str) -> None:
    with pytest.raises(SoundharvestError, match=field):
        resolve_arch(arch)


def test_unknown_model_type_and_registration() -> None:
    with pytest.raises(SoundharvestError, match="model type"):
        build_model("vae", 10, THESIS_ARCH)

    @register_model("tiny_test_ae")
    def _tiny(in_dim, arch):
        return Autoencoder(in_dim, {**arch, "hidden": [4]})

    try:
        m = build_model("tiny_test_ae", 10, THESIS_ARCH)
        assert _widths(m.encoder) == [(10, 4), (4, 10)]
    finally:
        MODEL_TYPES.pop("tiny_test_ae")
