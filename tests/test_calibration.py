"""BatchNorm networks: vectorized training with per-member running statistics, and recalibration."""

from __future__ import annotations

import pytest
import torch

from dwf_hub.archs import get_arch_class
from dwf_hub.configs import TrainingConfig
from dwf_hub.errors import DWFError
from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
from dwf_hub.generation.calibration import check_calibration_data, has_batchnorm, recalibrate_batchnorm
from dwf_hub.zoo.data import TaskData
from dwf_hub.zoo.training import init_member, train_members
from dwf_hub.zoo.weight_zoo import WeightZoo


@pytest.fixture(scope="module")
def arch():
    return get_arch_class("resnet20").tiny()  # 1x8x8 inputs, 3 classes


def _task(arch, n=48):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *arch.example_input(1).shape[1:], generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + (x[:, 0, 0, 0] > 1).long()
    return TaskData(x, y, x[:16], y[:16], x[:16], y[:16], 3)


def test_batched_bn_training_tracks_statistics_per_member(arch):
    task = _task(arch)
    cfg = TrainingConfig(batch_size=16, epochs=2, lr=1e-2)
    (a, _), (b, _) = train_members(arch, task, cfg, [0, 1], ["kaiming", "kaiming"], progress=False)
    init = init_member(arch, "kaiming", 0)
    assert not torch.equal(a["bn1.running_mean"], init["bn1.running_mean"])  # updated by training
    assert not torch.equal(a["bn1.running_mean"], b["bn1.running_mean"])  # one set per member
    assert int(a["bn1.num_batches_tracked"]) == 2 * 3
    ((alone, _),) = train_members(arch, task, cfg, [1], ["kaiming"], progress=False)
    torch.testing.assert_close(alone["bn1.running_var"], b["bn1.running_var"], atol=1e-4, rtol=1e-4)


def test_recalibration_is_a_cumulative_average_over_the_data(arch):
    model = arch.instantiate(init_member(arch, "kaiming", 0))
    assert has_batchnorm(model)
    x = arch.example_input(64, torch.Generator().manual_seed(1)) * 3 + 1
    recalibrate_batchnorm(model, x, batch_size=16)
    assert not model.training
    expected_mean = model.conv1(x).mean(dim=(0, 2, 3))  # the stem BN sees conv1's output directly
    torch.testing.assert_close(model.bn1.running_mean, expected_mean, atol=1e-4, rtol=1e-4)
    assert model.bn1.momentum == 0.1  # restored


def test_calibration_data_shape_is_checked(arch):
    with pytest.raises(
        DWFError, match=r"calibration_data is \(4, 3, 8, 8\) torch.float32; expected .*\(B, 1, 8, 8\)"
    ):
        check_calibration_data(arch, torch.zeros(4, 3, 8, 8))
    with pytest.raises(DWFError, match="1 sample.*at least 2"):
        check_calibration_data(arch, torch.zeros(1, 1, 8, 8))


def test_pipeline_never_returns_uncalibrated_bn_networks_silently(arch):
    zoo = WeightZoo(arch, [init_member(arch, "kaiming", s) for s in range(6)])  # no recipe: no bundled data
    cfg = default_flow_config(zoo, iterations=5, hidden_dim=16, num_inference_steps=2)
    pipe = fit_pipeline(zoo, cfg, progress=False).pipeline
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    with pytest.raises(DWFError, match="need recalibration.*calibration_data.*calibrate=False"):
        pipe(num_networks=2, generator=gen())
    with pytest.raises(DWFError, match="calibration_data is .* expected a float torch tensor"):
        pipe(num_networks=2, generator=gen(), calibration_data=torch.zeros(8, 64))
    raw = pipe(num_networks=2, generator=gen(), calibrate=False)
    x = arch.example_input(32, torch.Generator().manual_seed(2))
    cal = pipe(num_networks=2, generator=gen(), calibration_data=x)
    assert not torch.equal(raw.weights, cal.weights)
    assert torch.equal(pipe(num_networks=2, generator=gen(), output_type="pt").weights, raw.weights)
    manual = recalibrate_batchnorm(arch.instantiate({k: v.clone() for k, v in raw.state_dicts[0].items()}), x)
    torch.testing.assert_close(cal.networks[0].bn1.running_var, manual.bn1.running_var)
    assert torch.equal(cal.state_dicts[1]["bn1.running_mean"], cal.networks[1].bn1.running_mean)


def test_pipeline_calibrates_as_its_recipe_says(arch):
    from dwf_hub.zoo.data import load_task
    from dwf_hub.zoo.recipes import Recipe

    recipe = Recipe.from_dict(
        {
            "name": "tiny_digits_resnet",
            "arch": arch.config,
            "data": {"name": "digits", "shape": [1, 8, 8], "standardize": "global"},
            "calibration": {"num_batches": 2, "batch_size": 8},
        }
    )
    members = [init_member(arch, "kaiming", s) for s in range(6)]
    zoo = WeightZoo(arch, members, recipe=recipe.to_dict())
    pipe = fit_pipeline(zoo, default_flow_config(zoo, iterations=5, hidden_dim=16), progress=False).pipeline
    assert pipe.calibration_config.num_batches == 2
    bundled = pipe.bundled_calibration_data()
    x_train = load_task(recipe.data).x_train
    assert torch.equal(bundled, x_train[:16])  # num_batches * batch_size inputs of the training split
    out = pipe(num_networks=2, generator=torch.Generator().manual_seed(0))
    raw = pipe(num_networks=2, generator=torch.Generator().manual_seed(0), calibrate=False)
    manual = arch.instantiate({k: v.clone() for k, v in raw.state_dicts[0].items()})
    recalibrate_batchnorm(manual, x_train[:16], batch_size=8)
    torch.testing.assert_close(out.networks[0].bn1.running_var, manual.bn1.running_var)


def test_calibration_config_refuses_the_test_split():
    from dwf_hub.zoo.recipes import Recipe

    with pytest.raises(DWFError, match="split must be 'train'"):
        Recipe.from_dict(
            {"name": "x", "arch": {"name": "smallcnn"}, "data": {}, "calibration": {"split": "test"}}
        )
    with pytest.raises(DWFError, match=r"\[calibration\]: unknown key"):
        Recipe.from_dict(
            {"name": "x", "arch": {"name": "smallcnn"}, "data": {}, "calibration": {"batches": 2}}
        )
