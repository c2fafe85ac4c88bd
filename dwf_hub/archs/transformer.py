"""Transformers as real ``transformers`` models: ViT image classifiers and BERT regressors.

Permutation symmetries (all exact, checked by functional-equivalence tests):

- per attention layer, a ``HeadGroup``: heads may be reordered (Q, K, V rows and the output projection's
  columns move together) and dimensions permuted inside a head — one permutation for Q/K, one for V/O;
- per feed-forward block, its hidden units (``fc1`` rows, ``fc2`` columns);
- the residual stream ``P_res``: one permutation of the hidden dimension through embeddings, every block,
  every LayerNorm (which only averages over it) and the head. Canonicalization may leave it fixed.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import DWFError, WeightFormatError
from ..permutations import Axes, HeadGroup, PermutationSpec, dense
from .base import ArchSpec
from .registry import register

RESIDUAL = "P_res"


def _norm(name: str) -> dict[str, Axes]:
    return {f"{name}.weight": (RESIDUAL,), f"{name}.bias": (RESIDUAL,)}


def attention_axes(
    q: str, k: str, v: str, o: str, layer: int, num_heads: int
) -> tuple[dict[str, Axes], HeadGroup]:
    """Axes of one attention layer with ``nn.Linear`` projections named ``q, k, v, o``, and its head group."""
    qk, vo = f"P_qk{layer}", f"P_vo{layer}"
    axes = {
        **dense(q, RESIDUAL, qk),
        **dense(k, RESIDUAL, qk),
        **dense(v, RESIDUAL, vo),
        **dense(o, vo, RESIDUAL),
    }
    return axes, HeadGroup(qk, vo, num_heads, (f"{q}.weight", f"{k}.weight", f"{v}.weight"))


def _check_heads(name: str, hidden: int, heads: int) -> None:
    if heads < 1 or hidden % heads:
        raise DWFError(
            f"{name}: num_attention_heads={heads} does not divide hidden_size={hidden} "
            f"(each head needs hidden_size / num_heads dimensions)"
        )


class _TransformerSpec(ArchSpec):
    """Shared by the ``transformers`` architectures: config kwargs -> ``hf_config``."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int

    def _store(self, values: dict[str, Any]) -> None:
        """Keep the constructor arguments (``values``: its ``locals()``) as attributes."""
        for k in self.param_names():
            setattr(self, k, values[k])

    def _layers(self, build_layer) -> tuple[dict[str, Axes], list[HeadGroup]]:
        axes, groups = {}, []
        for i in range(self.num_hidden_layers):
            layer_axes, group = build_layer(i)
            axes.update(layer_axes)
            groups.append(group)
        return axes, groups

    def build(self) -> nn.Module:
        return self.model_class()(self.hf_config())

    def model_class(self) -> type[nn.Module]:
        raise NotImplementedError

    def hf_config(self, attn_implementation: str | None = None):
        raise NotImplementedError

    def pretrained_state(self, path: str, strict: bool = False) -> dict[str, Tensor]:
        """Weights of a saved checkpoint folder (safetensors only; ``hub.download`` fetches a Hub repo into
        one) loaded by ``transformers`` into this
        architecture (key renames, encoder prefixes and extra heads handled by ``from_pretrained``);
        weights it lacks are drawn from the current random state, or with ``strict`` an error names them.
        The checkpoint is read once for all the members that start from it."""
        state, missing = _load_pretrained(self, path)
        if strict and missing:
            raise WeightFormatError(f"{path}: checkpoint lacks {sorted(missing)[:5]}")
        if missing:
            fresh = self.build().state_dict()
            state = {**state, **{k: fresh[k] for k in missing}}
        return {k: v.clone() for k, v in state.items()}

    def functional_model(self, train: bool = False) -> nn.Module:
        # Eager attention: plain matmuls batch under vmap (SDPA falls back to a slow per-network loop).
        from accelerate import init_empty_weights

        with init_empty_weights(include_buffers=False):
            model = self.model_class()(self.hf_config(attn_implementation="eager"))
        return model.train(train)


@lru_cache(maxsize=1)
def _load_pretrained(arch: _TransformerSpec, path: str) -> tuple[dict[str, Tensor], frozenset[str]]:
    """``(state dict, keys the checkpoint lacks)`` of checkpoint folder ``path`` loaded into ``arch``."""
    folder = Path(path)
    if not folder.is_dir():
        raise DWFError(f"{path}: no such checkpoint folder")
    try:
        with torch.random.fork_rng(devices=[]):  # cached or not, loading leaves the caller's random state
            model, info = arch.model_class().from_pretrained(
                folder, config=arch.hf_config(), use_safetensors=True, output_loading_info=True
            )
    except (OSError, ValueError, RuntimeError) as e:
        raise DWFError(f"cannot load {arch!r} from checkpoint {path!r}: {e}") from e
    state = {k: v.detach() for k, v in model.state_dict().items()}
    arch.validate(state, source=f"checkpoint {path!r}")
    return state, frozenset(info["missing_keys"])


@register
class ViTSpec(_TransformerSpec):
    """``ViTForImageClassification``; defaults are the paper's ViT-Small-192 (2.8M parameters)."""

    name = "vit"
    # LayerNorm re-normalizes every token, and resetting the fc1 units after it did not move the digits ViT's
    # accuracy-novelty frontier (benchmarks/HISTORY.md, bench_families.py --flow unit_recalibration=on): opt-in
    units_recalibrated_by_default = False

    def __init__(
        self,
        hidden_size: int = 192,
        num_hidden_layers: int = 6,
        num_attention_heads: int = 3,
        intermediate_size: int = 768,
        patch_size: int = 4,
        image_size: int = 32,
        num_channels: int = 3,
        num_labels: int = 10,
        dropout: float = 0.0,
    ) -> None:
        _check_heads(self.name, hidden_size, num_attention_heads)
        if image_size % patch_size:
            raise DWFError(f"{self.name}: patch_size={patch_size} does not divide image_size={image_size}")
        if min(num_hidden_layers, intermediate_size, num_channels, num_labels) < 1:
            raise DWFError(f"{self.name}: layer count, sizes and num_labels must be >= 1")
        self._store(locals())

    def model_class(self) -> type[nn.Module]:
        from transformers import ViTForImageClassification

        return ViTForImageClassification

    def hf_config(self, attn_implementation: str | None = None):
        from transformers import ViTConfig

        kw = {k: v for k, v in self.kwargs.items() if k != "dropout"}
        return ViTConfig(
            **kw,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
            attn_implementation=attn_implementation,
        )

    def call(self, model: nn.Module, x: Tensor) -> Tensor:
        return model(pixel_values=x).logits

    def for_export(self, net: nn.Module) -> tuple[ViTSpec, nn.Module]:
        """A 1-channel ViT as the same function of RGB images: ``transformers.pipeline`` converts every image to RGB,
        so the exported model takes 3 channels, each patch filter split equally over them (a gray image, R = G = B,
        gives exactly the 1-channel outputs). Other ViTs as they are."""
        if self.num_channels != 1:
            return self, net
        rgb = type(self)(**{**self.kwargs, "num_channels": 3})
        state = {k: v.clone() for k, v in net.state_dict().items()}
        key = "vit.embeddings.patch_embeddings.projection.weight"
        state[key] = state[key].repeat(1, 3, 1, 1) / 3
        model = rgb.build()
        model.load_state_dict(state)
        model.config.update({k: v for k, v in net.config.to_dict().items() if k in ("id2label", "label2id")})
        return rgb, model.eval()

    def input_processor(self, task: Any = None) -> Any:
        """A ``ViTImageProcessor`` equivalent to the zoo's preprocessing: resize to the input size, rescale a
        0–255 pixel to the data's raw scale, standardise with the training split's statistics."""
        from transformers import ViTImageProcessor

        mean = task.input_mean if task is not None and task.input_mean else (0.0,)
        std = task.input_std if task is not None and task.input_std else (1.0,)
        expand = lambda v: list(v) * self.num_channels if len(v) == 1 else list(v)  # noqa: E731
        return ViTImageProcessor(
            do_resize=True,
            size={"height": self.image_size, "width": self.image_size},
            do_rescale=True,
            rescale_factor=(task.pixel_max if task is not None else 1.0) / 255.0,
            do_normalize=True,
            image_mean=expand(mean),
            image_std=expand(std),
        )

    @property
    def unit_layers(self) -> tuple[str, ...]:
        return tuple(f"vit.layers.{i}.mlp.fc1" for i in range(self.num_hidden_layers))

    def permutation_spec(self) -> PermutationSpec:
        axes: dict[str, Axes] = {
            "vit.embeddings.cls_token": (None, None, RESIDUAL),
            "vit.embeddings.position_embeddings": (None, None, RESIDUAL),
            "vit.embeddings.patch_embeddings.projection.weight": (RESIDUAL, None, None, None),
            "vit.embeddings.patch_embeddings.projection.bias": (RESIDUAL,),
        }

        def layer(i: int):
            p, a = f"vit.layers.{i}", f"vit.layers.{i}.attention"
            names = (f"{a}.q_proj", f"{a}.k_proj", f"{a}.v_proj", f"{a}.o_proj")
            att, group = attention_axes(*names, i, self.num_attention_heads)
            return {
                **att,
                **_norm(f"{p}.layernorm_before"),
                **_norm(f"{p}.layernorm_after"),
                **dense(f"{p}.mlp.fc1", RESIDUAL, f"P_ffn{i}"),
                **dense(f"{p}.mlp.fc2", f"P_ffn{i}", RESIDUAL),
            }, group

        layer_axes, groups = self._layers(layer)
        axes.update(layer_axes)
        axes.update(_norm("vit.layernorm"))
        axes.update(dense("classifier", RESIDUAL, None))
        return PermutationSpec(axes, tuple(groups), residual=RESIDUAL)

    @classmethod
    def tiny(cls) -> ViTSpec:
        return cls(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                   patch_size=4, image_size=8, num_channels=1, num_labels=3)  # fmt: skip

    def example_input(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        shape = (batch_size, self.num_channels, self.image_size, self.image_size)
        return torch.randn(shape, generator=generator)


@register
class ViTSmallSpec(ViTSpec):
    """The paper's ViT-Small-192: hidden 192, 6 layers, 3 heads, patch 4, 32x32 images, 10 classes."""

    name = "vit_small"


@register
class BertSpec(_TransformerSpec):
    """``BertForSequenceClassification``; ``num_labels=1`` is regression (the paper's Yelp stars, Spearman).

    Defaults are BERT-Base. Inputs are ``[B, 2, seq_len]`` int64: token ids and attention mask.
    """

    name = "bert"

    def __init__(
        self,
        vocab_size: int = 30522,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        num_labels: int = 1,
        seq_len: int = 128,
        dropout: float = 0.1,
    ) -> None:
        _check_heads(self.name, hidden_size, num_attention_heads)
        if seq_len > max_position_embeddings:
            raise DWFError(
                f"{self.name}: seq_len={seq_len} exceeds max_position_embeddings={max_position_embeddings}"
            )
        if min(vocab_size, num_hidden_layers, intermediate_size, type_vocab_size, num_labels, seq_len) < 1:
            raise DWFError(f"{self.name}: sizes, layer count and num_labels must be >= 1")
        self._store(locals())

    @property
    def task(self) -> str:
        return "regression" if self.num_labels == 1 else "classification"

    def model_class(self) -> type[nn.Module]:
        from transformers import BertForSequenceClassification

        return BertForSequenceClassification

    def hf_config(self, attn_implementation: str | None = None):
        from transformers import BertConfig

        kw = {k: v for k, v in self.kwargs.items() if k not in ("dropout", "seq_len")}
        return BertConfig(
            **kw,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
            attn_implementation=attn_implementation,
        )

    def call(self, model: nn.Module, x: Tensor) -> Tensor:
        # A ready 4-D additive mask: transformers then skips its data-dependent mask checks (vmap-safe).
        mask = (1.0 - x[:, 1, None, None, :].float()) * torch.finfo(torch.float32).min
        return model(input_ids=x[:, 0], attention_mask=mask).logits

    def permutation_spec(self) -> PermutationSpec:
        e = "bert.embeddings"
        axes: dict[str, Axes] = {
            f"{e}.word_embeddings.weight": (None, RESIDUAL),
            f"{e}.position_embeddings.weight": (None, RESIDUAL),
            f"{e}.token_type_embeddings.weight": (None, RESIDUAL),
            **_norm(f"{e}.LayerNorm"),
        }

        def layer(i: int):
            p, a = f"bert.encoder.layer.{i}", f"bert.encoder.layer.{i}.attention"
            names = (f"{a}.self.query", f"{a}.self.key", f"{a}.self.value", f"{a}.output.dense")
            att, group = attention_axes(*names, i, self.num_attention_heads)
            return {
                **att,
                **_norm(f"{p}.attention.output.LayerNorm"),
                **dense(f"{p}.intermediate.dense", RESIDUAL, f"P_ffn{i}"),
                **dense(f"{p}.output.dense", f"P_ffn{i}", RESIDUAL),
                **_norm(f"{p}.output.LayerNorm"),
            }, group

        layer_axes, groups = self._layers(layer)
        axes.update(layer_axes)
        axes.update(dense("bert.pooler.dense", RESIDUAL, "P_pool"))
        axes.update(dense("classifier", "P_pool", None))
        return PermutationSpec(axes, tuple(groups), residual=RESIDUAL)

    @classmethod
    def tiny(cls) -> BertSpec:
        return cls(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=24, max_position_embeddings=16, seq_len=12, dropout=0.0)  # fmt: skip

    def example_input(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        ids = torch.randint(0, self.vocab_size, (batch_size, self.seq_len), generator=generator)
        lengths = torch.randint(1, self.seq_len + 1, (batch_size, 1), generator=generator)
        mask = (torch.arange(self.seq_len) < lengths).long()
        return torch.stack([ids * mask, mask], 1)


def spec_from_hf_config(config: dict[str, Any], source: str = "config.json") -> _TransformerSpec:
    """The architecture of a saved ``transformers`` model (its ``config.json`` as a dict)."""
    model_type = config.get("model_type")
    cls = {"vit": ViTSpec, "bert": BertSpec}.get(model_type)
    if cls is None:
        raise DWFError(f"{source}: model_type {model_type!r} is not supported (supported: vit, bert)")
    num_labels = len(config["id2label"]) if "id2label" in config else config.get("num_labels", 2)
    fields = {k: config[k] for k in cls().kwargs if k in config}
    if "hidden_dropout_prob" in config:
        fields["dropout"] = config["hidden_dropout_prob"]
    if cls is BertSpec:  # the sequence length is ours, not the model's: 128 tokens where positions allow
        fields["seq_len"] = min(128, config.get("max_position_embeddings", 512))
    try:
        return cls(**{**fields, "num_labels": num_labels})
    except TypeError as e:
        raise DWFError(f"{source}: {e}") from e
