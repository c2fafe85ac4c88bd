from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from dwf_hub.codec import WeightCodec
from dwf_hub.errors import DWFError, PipelineFormatError
from dwf_hub.permutations import apply_permutation, random_permutation
from dwf_hub.pipeline import DeepWeightFlowPipeline
from dwf_hub.zoo.weight_zoo import WeightZoo


def _gen(pipe, n=4, seed=0, **kw):
    return pipe(num_networks=n, generator=torch.Generator().manual_seed(seed), **kw)


def test_generates_ready_models(tiny_fit, tiny_zoo):
    out = _gen(tiny_fit.pipeline, 5)
    assert out.weights.shape == (5, tiny_zoo.arch.num_params)
    assert len(out.networks) == len(out.state_dicts) == 5
    x = tiny_zoo.arch.example_input(3)
    for net, sd in zip(out.networks, out.state_dicts):
        assert isinstance(net, nn.Module) and not net.training
        assert net(x).shape == (3, 3)
        assert torch.isfinite(net(x)).all()
        assert set(sd) == {p.key for p in tiny_zoo.arch.layout}
    assert _gen(tiny_fit.pipeline, 2, output_type="state_dict").networks is None
    pt = _gen(tiny_fit.pipeline, 2, output_type="pt")
    assert pt.state_dicts is None and pt.weights.shape[0] == 2


def test_generation_is_seeded(tiny_fit):
    a, b = _gen(tiny_fit.pipeline, seed=1).weights, _gen(tiny_fit.pipeline, seed=1).weights
    c = _gen(tiny_fit.pipeline, seed=2).weights
    assert torch.equal(a, b) and not torch.equal(a, c)
    euler = _gen(tiny_fit.pipeline, seed=1, solver="euler", num_inference_steps=3).weights
    assert not torch.equal(a, euler)


def test_sampling_temperature_scales_the_source(tiny_zoo, tmp_path):
    from dwf_hub.configs import FlowConfig
    from dwf_hub.flow.fitting import fit_pipeline

    cfg = FlowConfig.from_flat({"iterations": 30, "hidden_dim": 32, "temperature": 0.5})
    pipe = fit_pipeline(tiny_zoo, cfg, progress=False).pipeline
    assert pipe.scheduler.config.temperature == 0.5
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = DeepWeightFlowPipeline.from_pretrained(tmp_path / "pipe")
    default = _gen(loaded, 8, output_type="pt").weights
    assert torch.equal(default, _gen(pipe, 8, output_type="pt", temperature=0.5).weights)
    assert not torch.equal(default, _gen(pipe, 8, output_type="pt", temperature=1.0).weights)
    # the ODE is continuous: a near-zero source sends every sample to nearly one network
    spread = {t: _gen(pipe, 8, output_type="pt", temperature=t).weights.std(0).mean() for t in (1e-4, 1.0)}
    assert spread[1e-4] < 0.01 * spread[1.0]
    with pytest.raises(DWFError, match="pipeline call: temperature must be > 0, got 0.0"):
        _gen(pipe, temperature=0.0)


def test_save_and_load_round_trip(tiny_fit, tmp_path):
    tiny_fit.pipeline.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["_class_name"] == "DeepWeightFlowPipeline"
    assert index["codec"] == ["dwf_hub.codec", "WeightCodec"]  # import paths users' repos depend on
    assert index["velocity"] == ["dwf_hub.flow.velocity", "VelocityModel"]
    assert index["scheduler"] == ["dwf_hub.flow.scheduler", "FlowODEScheduler"]
    loaded = DeepWeightFlowPipeline.from_pretrained(tmp_path / "pipe")
    for name in ("velocity", "codec"):
        a, b = getattr(tiny_fit.pipeline, name).state_dict(), getattr(loaded, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    public = lambda cfg: {k: v for k, v in cfg.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.scheduler.config) == public(tiny_fit.pipeline.scheduler.config)
    assert torch.equal(_gen(loaded, seed=3).weights, _gen(tiny_fit.pipeline, seed=3).weights)
    assert not list((tmp_path / "pipe").rglob("*.bin")) and not list((tmp_path / "pipe").rglob("*.pkl"))


def test_missing_or_foreign_component(tiny_fit, tmp_path):
    root = tmp_path / "pipe"
    tiny_fit.pipeline.save_pretrained(root)
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    shutil.rmtree(broken / "codec")
    with pytest.raises(PipelineFormatError, match="codec/config.json: missing"):
        DeepWeightFlowPipeline.from_pretrained(broken)
    with pytest.raises(PipelineFormatError, match="missing model_index.json"):
        DeepWeightFlowPipeline.from_pretrained(tmp_path)
    index = json.loads((root / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionPipeline"
    (root / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(PipelineFormatError, match="StableDiffusionPipeline"):
        DeepWeightFlowPipeline.from_pretrained(root)


def test_bad_arguments(tiny_fit):
    for bad in (0, -3, 2.5, True):
        with pytest.raises(DWFError, match="pipeline call: num_networks"):
            tiny_fit.pipeline(num_networks=bad)
    with pytest.raises(DWFError, match="output_type"):
        tiny_fit.pipeline(num_networks=1, output_type="numpy")
    with pytest.raises(DWFError, match="solver='dopri5' is not one of rk4, heun, euler"):
        tiny_fit.pipeline(num_networks=1, solver="dopri5")


def test_canonicalize_recovers_reference(tiny_fit, tiny_zoo):
    pipe = tiny_fit.pipeline
    ref = pipe.codec.reference_state_dict()
    spec = tiny_zoo.arch.permutation_spec()
    shuffled = apply_permutation(spec, random_permutation(spec, ref, torch.Generator().manual_seed(0)), ref)
    aligned = pipe.canonicalize(shuffled)
    assert all(torch.equal(aligned[k], ref[k]) for k in ref)
    model = tiny_zoo.arch.instantiate(shuffled)
    aligned_model = pipe.canonicalize(model)
    x = tiny_zoo.arch.example_input(4)
    with torch.no_grad():
        torch.testing.assert_close(aligned_model(x), model(x))


def test_generate_zoo_uses_zoo_format(tiny_fit, tmp_path):
    zoo = tiny_fit.pipeline.generate_zoo(6, seed=4)
    zoo.save(tmp_path / "gen")
    loaded = WeightZoo.load(tmp_path / "gen")
    assert len(loaded) == 6 and loaded.recipe == tiny_fit.pipeline.recipe
    assert all(r["source"] == "generated" for r in loaded.records)
    assert torch.equal(
        loaded.to_matrix(), _gen(tiny_fit.pipeline, 6, seed=4, output_type="state_dict").weights
    )


@pytest.mark.parametrize("normalization", ["none", "center", "standardize", "pca", "whiten"])
def test_codec_round_trip(tiny_zoo, normalization, tmp_path):
    w = tiny_zoo.to_matrix()
    codec = WeightCodec.fit(tiny_zoo.arch, w, normalization)
    z = codec.encode(w)
    torch.testing.assert_close(codec.decode(z), w, atol=1e-5, rtol=1e-5)
    if normalization in ("pca", "whiten"):
        assert z.shape == (len(w), codec.latent_dim) and codec.latent_dim <= len(w) - 1
    if normalization == "whiten":
        torch.testing.assert_close(z.std(0), torch.ones(codec.latent_dim), atol=1e-4, rtol=1e-4)
        assert codec.config.explained_variance == pytest.approx(1.0)
        small = WeightCodec.fit(tiny_zoo.arch, w, normalization, n_components=2)
        assert 0 < small.config.explained_variance < 1
        with pytest.raises(DWFError, match="n_components"):
            WeightCodec.fit(tiny_zoo.arch, w, normalization, n_components=len(w) + 5)
    codec.save_pretrained(tmp_path / "c")
    loaded = WeightCodec.from_pretrained(tmp_path / "c")
    torch.testing.assert_close(loaded.decode(z), w, atol=1e-5, rtol=1e-5)


def test_sharded_basis_saves_loads_memory_mapped_and_decodes_the_same(tiny_zoo, tmp_path):
    """A basis above the shard size leaves the weights file: column shards, memory-mapped on load."""
    from dwf_hub.codec import BASIS_FILE
    from dwf_hub.compression.pca import fit_pca_dual

    w = tiny_zoo.to_matrix()
    d = w.shape[1]
    pca = fit_pca_dual(lambda s, e: w[:, s:e], len(w), d, 5, components_path=tmp_path / "basis.safetensors")
    codec = WeightCodec.fit(tiny_zoo.arch, None, "whiten", reference=w[0], pca=pca, shard_bytes=4 * 5 * 30)
    assert codec.config.basis_shard_columns == 30 and "components" not in codec.state_dict()
    dense = WeightCodec.fit(tiny_zoo.arch, w, "whiten", 5)
    z = codec.encode(w)
    torch.testing.assert_close(z.abs(), dense.encode(w).abs(), atol=1e-3, rtol=1e-3)  # signs are arbitrary
    torch.testing.assert_close(
        codec.encode_columns(lambda s, e: w[:, s:e], len(w), 7), z, atol=1e-5, rtol=1e-5
    )
    fit = DeepWeightFlowPipeline(velocity=_velocity(5), codec=codec, scheduler=_scheduler())
    fit.save_pretrained(tmp_path / "pipe")
    shards = sorted(p.name for p in (tmp_path / "pipe" / "codec").glob("basis-*"))
    assert shards == [BASIS_FILE.format(i, 3) for i in (1, 2, 3)]  # 83 weights in columns of 30
    loaded = DeepWeightFlowPipeline.from_pretrained(tmp_path / "pipe").codec
    maps = Path("/proc/self/maps").read_text()  # the shards are mapped files, not read into memory
    assert len(loaded.basis()) == 3 and all(
        str((tmp_path / "pipe" / "codec" / n).resolve()) in maps for n in shards
    )
    torch.testing.assert_close(loaded.decode(z), codec.decode(z), atol=1e-6, rtol=0)
    out = torch.empty(len(z), d)
    assert loaded.decode(z, out=out) is out
    (tmp_path / "pipe" / "codec" / shards[1]).write_bytes(b"\0" * 8)
    with pytest.raises(DWFError):
        DeepWeightFlowPipeline.from_pretrained(tmp_path / "pipe")


def _velocity(k):
    from dwf_hub.flow.velocity import VelocityModel

    return VelocityModel(k, hidden_dim=8, time_embed_dim=4)


def _scheduler():
    from dwf_hub.flow.scheduler import FlowODEScheduler

    return FlowODEScheduler()


def test_fit_without_canonicalization(tiny_zoo):
    from dwf_hub.flow.fitting import default_flow_config, fit_pipeline

    result = fit_pipeline(
        tiny_zoo, default_flow_config(tiny_zoo, canonicalize=False, iterations=5), progress=False
    )
    assert result.pipeline.config.canonicalization is None and result.pipeline.canonical is None
    assert torch.equal(result.training_zoo.to_matrix(), tiny_zoo.to_matrix())
    assert _gen(result.pipeline, 2).weights.shape == (2, tiny_zoo.arch.num_params)


@pytest.mark.slow
def test_generated_resnet18s_are_torchvision_models_to_fine_tune_and_save(tmp_path):
    import torchvision
    from safetensors.torch import load_file, save_file

    from dwf_hub.archs import get_arch_class
    from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
    from dwf_hub.zoo.training import init_member
    from dwf_hub.zoo.weight_zoo import WeightZoo

    arch = get_arch_class("resnet18").tiny()
    zoo = WeightZoo(arch, [init_member(arch, "default", s) for s in range(4)])
    pipe = fit_pipeline(zoo, default_flow_config(zoo, iterations=3, hidden_dim=8), progress=False).pipeline
    x = arch.example_input(16, torch.Generator().manual_seed(0))
    net = pipe(num_networks=1, generator=torch.Generator().manual_seed(0), calibration_data=x).networks[0]
    assert isinstance(net, torchvision.models.ResNet) and not net.training
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = net.fc.weight.detach().clone()
    torch.nn.functional.cross_entropy(net(x), torch.zeros(16, dtype=torch.long)).backward()
    opt.step()
    assert not torch.equal(before, net.fc.weight)  # parameters are trainable leaves
    save_file(net.state_dict(), tmp_path / "net.safetensors")
    fresh = arch.build()
    fresh.load_state_dict(load_file(tmp_path / "net.safetensors"))
    assert torch.equal(fresh.fc.weight, net.fc.weight)


def test_diffusers_call_conventions(tiny_fit, tmp_path):
    """Lists of generators (network i from generator i), ``torch_dtype=`` and ``.to(dtype)`` as in diffusers."""
    pipe = tiny_fit.pipeline
    one = pipe(num_networks=3, generator=torch.Generator().manual_seed(0), output_type="pt").weights
    per = pipe(
        num_networks=3, generator=[torch.Generator().manual_seed(s) for s in (5, 6, 7)], output_type="pt"
    )
    alone = pipe(num_networks=1, generator=torch.Generator().manual_seed(6), output_type="pt").weights
    torch.testing.assert_close(per.weights[1], alone[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(DWFError, match="2 generators for 3 networks"):
        pipe(num_networks=3, generator=[torch.Generator(), torch.Generator()])
    pipe.save_pretrained(tmp_path / "p")
    bf16 = DeepWeightFlowPipeline.from_pretrained(tmp_path / "p", torch_dtype=torch.bfloat16)
    assert bf16.velocity.dtype == torch.bfloat16
    low = bf16(num_networks=3, generator=torch.Generator().manual_seed(0), output_type="pt").weights
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert float((low - one).abs().max()) < 0.1 * float(one.abs().max())  # the same networks, coarser
    f64 = DeepWeightFlowPipeline.from_pretrained(tmp_path / "p").to(torch.float64)
    high = f64(num_networks=3, generator=torch.Generator().manual_seed(0), output_type="pt").weights
    torch.testing.assert_close(high, one, atol=1e-4, rtol=1e-4)


def test_diffusers_generic_entry_point_loads_a_saved_flow(tiny_fit, tmp_path):
    from diffusers import DiffusionPipeline

    tiny_fit.pipeline.save_pretrained(tmp_path / "p")
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "p")
    assert isinstance(pipe, DeepWeightFlowPipeline)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    expected = tiny_fit.pipeline(num_networks=2, generator=gen(), output_type="pt").weights
    torch.testing.assert_close(pipe(num_networks=2, generator=gen(), output_type="pt").weights, expected)


def test_generate_to_disk_packs_shards_streams_and_reloads(tiny_fit, tmp_path):
    """Chunked generation: K networks per packed shard, one row per network, the same networks as the
    pipeline called chunk by chunk with the same generator; the packed zoo reads, re-saves and scores."""
    pipe = tiny_fit.pipeline
    pipe.generate_to_disk(tmp_path / "gen", 10, seed=3, networks_per_shard=4, progress=False)
    shards = sorted(p.name for p in (tmp_path / "gen" / "checkpoints").iterdir())
    assert shards == ["shard_00000.safetensors", "shard_00001.safetensors", "shard_00002.safetensors"]
    zoo = WeightZoo.load(tmp_path / "gen")
    assert len(zoo) == 10 and [r["shard_row"] for r in zoo.records] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    gen = torch.Generator().manual_seed(3)
    expected = torch.cat(
        [pipe(num_networks=n, generator=gen, output_type="state_dict").weights for n in (4, 4, 2)]
    )
    assert torch.equal(zoo.to_matrix(), expected)
    assert torch.equal(zoo.read_columns(5, 20), expected[:, 5:20])
    assert torch.equal(zoo.flat(6), expected[6]) and zoo.model(6) is not None
    assert zoo.info["source"] == "generated" and zoo.recipe == pipe.recipe
    sub = WeightZoo.load(tmp_path / "gen", members=[9, 0])
    assert torch.equal(sub.to_matrix(), expected[[9, 0]])
    zoo.save(tmp_path / "flat")  # back to one file per network
    assert torch.equal(WeightZoo.load(tmp_path / "flat").to_matrix(), expected)
    WeightZoo.load(tmp_path / "flat").save(tmp_path / "repacked", networks_per_shard=3)
    assert torch.equal(WeightZoo.load(tmp_path / "repacked").to_matrix(), expected)
    pipe.generate_to_disk(tmp_path / "again", 10, seed=3, networks_per_shard=4, progress=False)
    for name in shards:  # deterministic
        assert (tmp_path / "gen/checkpoints" / name).read_bytes() == (
            tmp_path / "again/checkpoints" / name
        ).read_bytes()


def test_generate_to_disk_resumes_after_an_interruption(tiny_fit, tmp_path, monkeypatch):
    """Killed after two of four shards, the same call again generates only the other two, and the zoo is the
    one an uninterrupted run writes; other settings are refused while the job waits, unless overwrite."""
    pipe, calls = tiny_fit.pipeline, []
    real = pipe.sample_latents

    def interrupted(n, gen, **kw):  # stands in for the process dying during the third shard
        calls.append(n)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(n, gen, **kw)

    monkeypatch.setattr(pipe, "sample_latents", interrupted)
    args = dict(seed=5, networks_per_shard=3, progress=False, temperature=0.9, quality_check=False)
    with pytest.raises(KeyboardInterrupt):
        pipe.generate_to_disk(tmp_path / "gen", 10, **args)
    job = tmp_path / ".gen.job"
    assert sorted(p.name for p in job.glob("shard_*")) == [
        "shard_00000.safetensors",
        "shard_00001.safetensors",
    ]
    assert not (tmp_path / "gen").exists()  # nothing half-written where the zoo goes
    with pytest.raises(DWFError, match="an interrupted job with other settings is waiting to resume"):
        pipe.generate_to_disk(tmp_path / "gen", 10, **{**args, "seed": 6})
    with pytest.raises(DWFError, match="other settings"):
        pipe.generate_to_disk(tmp_path / "gen", 10, **{**args, "temperature": 1.0})
    calls.clear()
    pipe.generate_to_disk(tmp_path / "gen", 10, **args)
    assert calls == [3, 1] and not job.exists()  # only the missing shards
    monkeypatch.undo()
    pipe.generate_to_disk(tmp_path / "whole", 10, **args)
    assert torch.equal(
        WeightZoo.load(tmp_path / "gen").to_matrix(), WeightZoo.load(tmp_path / "whole").to_matrix()
    )
    monkeypatch.setattr(pipe, "sample_latents", interrupted)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        pipe.generate_to_disk(tmp_path / "gen", 10, **args)  # over the finished zoo: it stays until the end
    assert len(WeightZoo.load(tmp_path / "gen")) == 10
    monkeypatch.undo()
    pipe.generate_to_disk(tmp_path / "gen", 4, **{**args, "seed": 6}, overwrite=True)  # starts over
    assert len(WeightZoo.load(tmp_path / "gen")) == 4 and not job.exists()
    job.mkdir()  # someone else's folder where the job would go: never used, never removed
    (job / "notes.txt").write_text("mine")
    with pytest.raises(DWFError, match="is not a job folder of ours"):
        pipe.generate_to_disk(tmp_path / "gen", 4, **args, overwrite=True)
    assert (job / "notes.txt").read_text() == "mine"


def test_packed_zoo_refuses_inconsistent_rows(tiny_fit, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dwf_hub.artifacts import write_manifest
    from dwf_hub.errors import ZooFormatError

    tiny_fit.pipeline.generate_to_disk(tmp_path / "gen", 5, networks_per_shard=4, progress=False)
    table = tmp_path / "gen" / "metadata.parquet"
    rows = pq.read_table(table).to_pylist()
    for bad, match in (({"shard_row": 7}, "does not match the shard"), ({"shard_row": -1}, "not an index"),
                       ({"shard_row": 1}, "repeats checkpoint")):  # fmt: skip
        edited = [dict(r) for r in rows]
        edited[0].update(bad)
        pq.write_table(pa.Table.from_pylist(edited), table)
        write_manifest(tmp_path / "gen")  # consistent files, inconsistent rows
        with pytest.raises(ZooFormatError, match=match):
            WeightZoo.load(tmp_path / "gen")
    with pytest.raises(DWFError, match="networks_per_shard"):
        tiny_fit.pipeline.generate_to_disk(tmp_path / "x", 5, networks_per_shard=0, progress=False)


def test_saved_configs_are_checked_by_building_them():
    from dwf_hub.codec import WeightCodec
    from dwf_hub.flow.scheduler import FlowODEScheduler

    arch = {"name": "mlp", "layer_sizes": [4, 6, 5, 3]}  # 83 weights
    for kwargs, message in (
        ({"normalization": "whiten"}, "codec config: normalization 'whiten' needs latent_dim"),
        ({"normalization": "pca", "latent_dim": 84}, "latent_dim=84 exceeds the architecture's 83 weights"),
        (
            {"normalization": "pca", "latent_dim": 3, "basis_shard_columns": 0},
            "basis_shard_columns must be >= 1",
        ),
        ({"unit_statistics": True}, "unit_statistics=True has type bool"),
        ({"normalization": "zca"}, "normalization='zca' is not one of"),
    ):
        with pytest.raises(DWFError, match=message):
            WeightCodec(arch, **kwargs)
    for kwargs, message in (
        ({"t_start": 0.5, "t_end": 0.5}, "need t_start < t_end"),
        ({"source_std": 0.0}, "source_std must be > 0"),
        ({"solver": "dopri"}, "solver='dopri' is not one of"),
        ({"num_inference_steps": 2.0}, "num_inference_steps=2.0 has type float"),
    ):
        with pytest.raises(DWFError, match=f"scheduler config: {message}"):
            FlowODEScheduler(**kwargs)


def test_diffusers_conventions_callback_dtype_and_scheduler_swap(tiny_fit, tmp_path, caplog):
    from diffusers import FlowMatchEulerDiscreteScheduler

    pipe = tiny_fit.pipeline
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    seen = []

    def hook(p, i, t, tensors):
        seen.append((i, float(t), tuple(tensors["latents"].shape)))
        return {"latents": tensors["latents"] * 0} if i == len(p.scheduler.timesteps) - 1 else tensors

    zeroed = pipe(num_networks=3, generator=gen(), output_type="pt", callback_on_step_end=hook).weights
    assert len(seen) == len(pipe.scheduler.timesteps) and seen[0][0] == 0  # once per solver step, in order
    assert torch.allclose(
        zeroed, pipe.codec.decode(torch.zeros(3, pipe.codec.latent_dim))
    )  # its latents used
    with pytest.raises(DWFError, match=r"only \['latents'\] is available"):
        pipe(num_networks=1, callback_on_step_end=hook, callback_on_step_end_tensor_inputs=["prompt_embeds"])
    pipe.save_pretrained(tmp_path / "p")
    for kw in ("dtype", "torch_dtype"):  # diffusers 0.42's name and the older one
        assert DeepWeightFlowPipeline.from_pretrained(
            tmp_path / "p", **{kw: torch.bfloat16}
        ).velocity.dtype == (torch.bfloat16)
    caplog.clear()
    loaded = DeepWeightFlowPipeline.from_pretrained(tmp_path / "p").to(torch.bfloat16)
    assert "kept in float32" not in caplog.text and loaded.velocity.dtype == torch.bfloat16
    loaded.scheduler = FlowMatchEulerDiscreteScheduler()
    with pytest.raises(DWFError, match="FlowMatchEulerDiscreteScheduler cannot integrate this flow"):
        loaded(num_networks=1)


@pytest.mark.parametrize("order", ["dwf_hub first", "diffusers first"])
def test_import_dwf_hub_is_enough_for_diffusers_generic_loader(tiny_fit, tmp_path, order):
    import subprocess
    import sys

    tiny_fit.pipeline.save_pretrained(tmp_path / "p")
    tampered = tmp_path / "t"
    tiny_fit.pipeline.save_pretrained(tampered)
    (tampered / "velocity" / "diffusion_pytorch_model.bin").write_bytes(b"not a pickle we would ever open")
    imports = "import dwf_hub, sys; light = 'torch' not in sys.modules; import diffusers"
    if order == "diffusers first":
        imports = "import diffusers; import dwf_hub; light = True"
    code = f"""{imports}
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained({str(tmp_path / "p")!r})
print(type(pipe).__name__, light, tuple(pipe(num_networks=2, output_type="pt").weights.shape))
try:
    DiffusionPipeline.from_pretrained({str(tampered)!r})
except Exception as e:
    print(type(e).__name__, e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    first, second = out.stdout.strip().splitlines()[-2:]
    assert first == f"DeepWeightFlowPipeline True (2, {tiny_fit.pipeline.arch.num_params})"
    assert "diffusion_pytorch_model.bin: pipeline folders hold safetensors only" in second  # our checks ran


def test_a_pca_codec_stores_no_unused_scale_and_older_saves_still_load(tiny_fit, tmp_path):
    from dwf_hub.io import read_header

    pipe = tiny_fit.pipeline
    assert pipe.codec.normalization.pca and "scale" not in pipe.codec.state_dict()
    pipe.save_pretrained(tmp_path / "p")
    (weights,) = (tmp_path / "p" / "codec").glob("diffusion_pytorch_model*.safetensors")
    assert "scale" not in read_header(weights).shapes  # [D] of ones it never used
    old = Path(__file__).resolve().parents[1] / "spaces_demo" / "flows" / "iris_mlp" / "pipeline"
    (saved,) = (old / "codec").glob("diffusion_pytorch_model*.safetensors")
    assert "scale" in read_header(saved).shapes  # saved before: still loads, and generates
    loaded = DeepWeightFlowPipeline.from_pretrained(old)
    assert (
        "scale" not in loaded.codec.state_dict()
        and loaded(num_networks=2, output_type="pt").weights.isfinite().all()
    )
    from dwf_hub.codec import WeightCodec

    assert "scale" in WeightCodec(pipe.codec.config.arch, "standardize").state_dict()  # where it is used
