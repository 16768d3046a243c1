"""Built-in models: shapes, batchnorm flag, default names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samtune.errors import ConfigError
from samtune.models import build_model, default_model_name, list_models

K = 5


def _out(model: nn.Module, shape: tuple[int, ...], n: int = 4) -> torch.Size:
    model.train()
    return model(torch.randn(n, *shape)).shape


def _n_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_list_models() -> None:
    assert list_models() == ["cnn", "mlp", "resnet18"]


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((20,), "mlp"),
        ((1, 8, 8), "cnn"),
        ((3, 32, 32), "cnn"),
        ((3, 32, 64), "cnn"),
        ((3, 33, 40), "resnet18"),
        ((3, 64, 64), "resnet18"),
    ],
)
def test_default_model_name(shape: tuple[int, ...], expected: str) -> None:
    assert default_model_name(shape) == expected


@pytest.mark.parametrize("shape", [(20,), (1, 8, 8), (3, 32, 32), (3, 64, 64)])
def test_mlp_builds_for_any_shape(shape: tuple[int, ...]) -> None:
    assert _out(build_model("mlp", shape, K), shape) == (4, K)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_cnn_builds_for_small_and_larger_images(shape: tuple[int, ...]) -> None:
    assert _out(build_model("cnn", shape, K), shape) == (4, K)


def test_resnet18_builds_for_32px_and_adapts_stem() -> None:
    model = build_model("ResNet18", (1, 32, 32), K)
    assert _out(model, (1, 32, 32), n=2) == (2, K)
    assert model.conv1.in_channels == 1
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert model.fc.out_features == K


@pytest.mark.parametrize("side, kernel, stride, maxpool, stage_side", [
    (33, 3, 2, False, 17), (64, 3, 2, False, 32), (65, 7, 2, True, 17), (128, 7, 2, True, 32),
])
def test_resnet18_stem_keeps_the_first_stage_small(side, kernel, stride, maxpool, stage_side) -> None:
    model = build_model("resnet18", (3, side, side), K)
    assert model.conv1.kernel_size == (kernel, kernel) and model.conv1.stride == (stride, stride)
    assert isinstance(model.maxpool, nn.MaxPool2d) is maxpool
    seen = {}
    model.layer1.register_forward_hook(lambda mod, args, out: seen.update(shape=out.shape))
    assert _out(model, (3, side, side), n=2) == (2, K)
    assert seen["shape"][-1] == stage_side


def test_none_uses_the_default_model() -> None:
    assert isinstance(build_model(None, (20,), K)[1], nn.Linear)
    cnn = build_model(None, (1, 8, 8), K)
    assert any(isinstance(m, nn.Conv2d) for m in cnn.modules())
    assert _out(cnn, (1, 8, 8)) == (4, K)


def test_batchnorm_flag_and_defaults() -> None:
    assert _n_bn(build_model("mlp", (20,), K)) == 0
    assert _n_bn(build_model("mlp", (20,), K, batchnorm=True)) == 2
    assert _n_bn(build_model("cnn", (1, 8, 8), K)) == 3
    assert _n_bn(build_model("cnn", (1, 8, 8), K, batchnorm=True)) == 3
    assert _n_bn(build_model("cnn", (1, 8, 8), K, batchnorm=False)) == 0
    assert _n_bn(build_model("resnet18", (3, 32, 32), K)) > 0


def test_resnet18_without_batchnorm_is_refused() -> None:
    with pytest.raises(ConfigError, match="resnet18") as info:
        build_model("resnet18", (3, 32, 32), K, batchnorm=False)
    assert "\n" not in str(info.value)


def test_unknown_name_lists_the_available_models() -> None:
    with pytest.raises(ConfigError) as info:
        build_model("vgg", (20,), K)
    msg = str(info.value)
    assert "\n" not in msg and "'vgg'" in msg
    assert all(name in msg for name in list_models())


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_image_models_refuse_flat_inputs(name: str) -> None:
    with pytest.raises(ConfigError, match="mlp"):
        build_model(name, (20,), K)


@pytest.mark.parametrize(
    ("shape", "k"), [((), K), ((0, 8, 8), K), ((20,), 1), ((20,), 2.5), ((20,), True)]
)
def test_bad_shape_or_class_count(shape: tuple[int, ...], k: object) -> None:
    with pytest.raises(ConfigError):
        build_model("mlp", shape, k)  # type: ignore[arg-type]


def test_cnn_is_fast_enough_to_train_on_cpu() -> None:
    model = build_model("cnn", (1, 8, 8), 10)
    x, y = torch.randn(128, 1, 8, 8), torch.randint(0, 10, (128,))
    nn.functional.cross_entropy(model(x), y).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
