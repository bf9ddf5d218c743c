"""The model module of the ``cvnets`` export: a Python file that registers the searched architecture in
ml-cvnets' model registry.

Stock ml-cvnets scales MobileViT v2 by one width multiplier and cannot express per-stage depths (its
MobileViT stages even hold exactly one MV2 block), so the module defines ``MODEL_NAME`` as a subclass of
``BaseImageEncoder`` built from ml-cvnets' own layers (``ConvLayer2d``, ``InvertedResidual``,
``MobileViTBlock`` / ``MobileViTBlockv2``, ``GlobalPool``, ``LinearLayer``) with every stage spelled out in
``ARCHITECTURE``, registered with ``@MODEL_REGISTRY.register(name=MODEL_NAME, type="classification")``.
ml-cvnets imports every module under ``cvnets/models/`` lazily, so copying the file there registers it.

The export's YAML sets only the ``model.classification`` options that the module reads (``model_options``),
each with the one value that builds the searched network as archsearch's generator has it: no dropout in any
transformer layer, v1's classifier dropout 0.1 (v2: none), 4 heads, 3x3 local convs, fusion on. The module
refuses any other value (ml-cvnets' own defaults differ: ``mit.dropout`` is 0.1 in some releases).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import __version__
from ..model.blocks import (
    AttentionSpec,
    HeadSpec,
    MV2Spec,
    StemSpec,
    block_plan,
    repeats,
    stage_groups,
)
from ..model.config import V1_CLASSIFIER_DROPOUT, V1_HEADS, ArchConfig


def model_options(config: ArchConfig) -> dict[str, Any]:
    """The ``model.classification`` options the exported module reads (nested as in the YAML), each with the
    value that builds ``config`` as archsearch's generator does; the module refuses any other value."""
    no_dropout = {"dropout": 0.0, "attn_dropout": 0.0, "ffn_dropout": 0.0}
    if config.family == "v1":
        return {"classifier_dropout": V1_CLASSIFIER_DROPOUT,
                "mit": {**no_dropout, "number_heads": V1_HEADS, "conv_kernel_size": 3,
                        "no_fuse_local_global_features": False}}
    # width_multiplier: the channels come from ARCHITECTURE; the option is checked to be the searched width
    return {"classifier_dropout": 0.0,
            "mitv2": {**no_dropout, "width_multiplier": config.width, "attn_norm_layer": "layer_norm_2d"}}


def flat_options(options: dict[str, Any], prefix: str = "model.classification") -> dict[str, Any]:
    """Nested YAML options as ml-cvnets' ``opts`` attribute names: ``{"mit": {"dropout": 0}}`` ->
    ``{"model.classification.mit.dropout": 0}``."""
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat |= flat_options(value, f"{prefix}.{key}")
        else:
            flat[f"{prefix}.{key}"] = value
    return flat


def _stem(b: StemSpec, n: int) -> dict[str, Any]:
    return {"img_channels": b.c_in, "out_channels": b.c_out}


def _mv2(b: MV2Spec, n: int) -> dict[str, Any]:
    return {"out_channels": b.c_out, "num_blocks": n, "expand_ratio": b.expansion, "stride": b.stride,
            "block_type": "mv2"}


def _attention(b: AttentionSpec, block_type: str) -> dict[str, Any]:
    return {"block_type": block_type, "attn_unit_dim": b.dim, "ffn_dim": b.ffn_dim, "attn_blocks": b.depth,
            "patch_h": b.patch, "patch_w": b.patch}


def _mobilevit_v2(b: AttentionSpec, n: int) -> dict[str, Any]:
    """v2 adds its FFN multiplier (MobileViTBlockv2 builds ``int(mult * dim // 16 * 16)`` FFN channels);
    v1 adds nothing, its heads are an option (OPTIONS)."""
    mult = b.ffn_dim / b.dim
    assert int(mult * b.dim // 16 * 16) == b.ffn_dim, b
    return _attention(b, "mobilevit_v2") | {"ffn_multiplier": mult}


def _head(b: HeadSpec, n: int) -> dict[str, Any]:
    return {"exp_channels": b.features}


# plan kind -> its entries in the layer's dict (a run of ``n`` blocks); later entries update earlier ones
CVNETS_ENTRIES: dict[str, Callable[[Any, int], dict[str, Any]]] = {
    "stem": _stem,
    "mv2": _mv2,
    "mobilevit_v1": lambda b, n: _attention(b, "mobilevit"),
    "mobilevit_v2": _mobilevit_v2,
    "head": _head,
}
LAYER_NAMES = {"stem": "layer0"}  # ml-cvnets' names where they differ from the plan's stage names


def architecture(config: ArchConfig) -> dict[str, Any]:
    """The block plan in ml-cvnets' ``get_configuration`` vocabulary (one dict per layer)."""
    arch: dict[str, Any] = {}
    for stage, blocks in stage_groups(block_plan(config)):
        layer: dict[str, Any] = {}
        for b, n in repeats(blocks):
            layer |= CVNETS_ENTRIES[b.kind](b, n)
        arch[LAYER_NAMES.get(stage, stage)] = layer
    return arch


MODULE_TEMPLATE = '''"""{config_id}, found by archsearch {version} (study {study!r}, trial {trial}), as an ml-cvnets model.

Registers ``{name}`` in ml-cvnets' model registry (classification). Copy this file into ml-cvnets'
``cvnets/models/classification/`` (the registry imports every module there), then train with
``model.classification.name: {name}`` (see {yaml_name} and README.md beside this file).

Every stage is spelled out in ARCHITECTURE (from archsearch's stage plan): unlike the stock
mobilevit / mobilevit_v2 models, a MobileViT stage may hold several MV2 blocks, and channels, attention
dims and attention-layer counts are per stage rather than derived from one width multiplier.
Expected parameters with {num_classes} classes: {params:,}; MACs at {resolution}x{resolution}: {macs:,} (archsearch count).
"""

from typing import Dict, Tuple

from torch import nn

from cvnets.layers import ConvLayer2d, Dropout, GlobalPool, Identity, LinearLayer
from cvnets.models import MODEL_REGISTRY
from cvnets.models.classification.base_image_encoder import BaseImageEncoder
from cvnets.modules import InvertedResidual, MobileViTBlock, MobileViTBlockv2

MODEL_NAME = {name!r}
CONFIG_ID = {config_id!r}
FAMILY = {family!r}
RESOLUTION = {resolution}
PARAM_COUNT = {params}  # with {num_classes} classes (model.classification.n_classes)
ARCHITECTURE = {architecture}
# The model options this module reads, each with the value that builds the searched network (archsearch's
# generator has no dropout in its transformer layers{v1_dropout_text}). Any other value is refused.
OPTIONS = {options}


def _option(opts, name: str):
    """OPTIONS[name], after checking that opts (the YAML, the command line, ml-cvnets' defaults) agrees."""
    needed = OPTIONS[name]
    given = getattr(opts, name, None)
    if given is not None and given != needed:
        raise ValueError(
            "%s: %s = %r would not build %s, the searched network; it needs %r"
            % (MODEL_NAME, name, given, CONFIG_ID, needed)
        )
    return needed


@MODEL_REGISTRY.register(name=MODEL_NAME, type="classification")
class {class_name}(BaseImageEncoder):
    """{config_id}: stem, layer1..layer5 as in ARCHITECTURE, then {head_text}."""

    def __init__(self, opts, *args, **kwargs) -> None:
        for name in OPTIONS:  # fail before building anything
            _option(opts, name)
        num_classes = getattr(opts, "model.classification.n_classes", 1000)
        classifier_dropout = _option(opts, "model.classification.classifier_dropout")
        pool_type = getattr(opts, "model.layer.global_pool", "mean")
        super().__init__(opts, *args, **kwargs)

        cfg = ARCHITECTURE
        self.model_conf_dict = dict()
        image_channels = cfg["layer0"]["img_channels"]
        out_channels = cfg["layer0"]["out_channels"]
        self.conv_1 = ConvLayer2d(
            opts=opts,
            in_channels=image_channels,
            out_channels=out_channels,
            kernel_size=3,
            stride=2,
            use_norm=True,
            use_act=True,
        )
        self.model_conf_dict["conv1"] = {{"in": image_channels, "out": out_channels}}

        in_channels = out_channels
        for index, dilate in ((1, False), (2, False), (3, False), (4, self.dilate_l4), (5, self.dilate_l5)):
            layer, out_channels = self._make_layer(opts, in_channels, cfg["layer%d" % index], dilate)
            setattr(self, "layer_%d" % index, layer)
            self.model_conf_dict["layer%d" % index] = {{"in": in_channels, "out": out_channels}}
            in_channels = out_channels

        exp_channels = cfg["head"]["exp_channels"]
        if exp_channels:
            self.conv_1x1_exp = ConvLayer2d(
                opts=opts,
                in_channels=in_channels,
                out_channels=exp_channels,
                kernel_size=1,
                stride=1,
                use_norm=True,
                use_act=True,
            )
        else:
            self.conv_1x1_exp = Identity()
            exp_channels = in_channels
        self.model_conf_dict["exp_before_cls"] = {{"in": in_channels, "out": exp_channels}}

        self.classifier = nn.Sequential()
        self.classifier.add_module(name="global_pool", module=GlobalPool(pool_type=pool_type, keep_dim=False))
        if 0.0 < classifier_dropout < 1.0:
            self.classifier.add_module(name="dropout", module=Dropout(p=classifier_dropout, inplace=True))
        self.classifier.add_module(
            name="fc", module=LinearLayer(in_features=exp_channels, out_features=num_classes, bias=True)
        )

        self.check_model()
        self.reset_parameters(opts=opts)

    def _make_layer(self, opts, input_channel: int, cfg: Dict, dilate: bool = False) -> Tuple[nn.Sequential, int]:
        """num_blocks MV2 blocks (the first with the stage's stride), then the MobileViT block if any."""
        prev_dilation = self.dilation
        blocks = []
        for i in range(cfg["num_blocks"]):
            stride = cfg["stride"] if i == 0 else 1
            dilation = prev_dilation if i == 0 else self.dilation
            if stride == 2 and dilate:
                self.dilation *= 2
                stride = 1
            blocks.append(
                InvertedResidual(
                    opts=opts,
                    in_channels=input_channel,
                    out_channels=cfg["out_channels"],
                    stride=stride,
                    expand_ratio=cfg["expand_ratio"],
                    dilation=dilation,
                )
            )
            input_channel = cfg["out_channels"]

        if cfg["block_type"] == "mobilevit":
            dim = cfg["attn_unit_dim"]
            blocks.append(
                MobileViTBlock(
                    opts=opts,
                    in_channels=input_channel,
                    transformer_dim=dim,
                    ffn_dim=cfg["ffn_dim"],
                    n_transformer_blocks=cfg["attn_blocks"],
                    head_dim=dim // _option(opts, "model.classification.mit.number_heads"),
                    attn_dropout=_option(opts, "model.classification.mit.attn_dropout"),
                    dropout=_option(opts, "model.classification.mit.dropout"),
                    ffn_dropout=_option(opts, "model.classification.mit.ffn_dropout"),
                    patch_h=cfg["patch_h"],
                    patch_w=cfg["patch_w"],
                    conv_ksize=_option(opts, "model.classification.mit.conv_kernel_size"),
                    dilation=self.dilation,
                    no_fusion=_option(opts, "model.classification.mit.no_fuse_local_global_features"),
                )
            )
        elif cfg["block_type"] == "mobilevit_v2":
            blocks.append(
                MobileViTBlockv2(
                    opts=opts,
                    in_channels=input_channel,
                    attn_unit_dim=cfg["attn_unit_dim"],
                    ffn_multiplier=cfg["ffn_multiplier"],
                    n_attn_blocks=cfg["attn_blocks"],
                    attn_dropout=_option(opts, "model.classification.mitv2.attn_dropout"),
                    dropout=_option(opts, "model.classification.mitv2.dropout"),
                    ffn_dropout=_option(opts, "model.classification.mitv2.ffn_dropout"),
                    patch_h=cfg["patch_h"],
                    patch_w=cfg["patch_w"],
                    conv_ksize=3,
                    dilation=self.dilation,
                    attn_norm_layer=_option(opts, "model.classification.mitv2.attn_norm_layer"),
                )
            )
        return nn.Sequential(*blocks), input_channel
'''


def _pretty(obj: Any, indent: int = 0) -> str:
    """A Python literal of nested dicts, one layer per line (JSON scalars read as Python: True/False)."""
    if isinstance(obj, dict) and indent == 0:
        inner = "".join(f"    {k!r}: {_pretty(v, 1)},\n" for k, v in obj.items())
        return "{\n" + inner + "}"
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{k!r}: {_pretty(v, 1)}" for k, v in obj.items()) + "}"
    return repr(obj)


def model_module(config: ArchConfig, name: str, *, params: int, macs: int, study: str = "",
                 trial: int | str = "", yaml_name: str = "the YAML") -> str:
    class_name = "".join(part.capitalize() for part in name.split("_"))
    head_text = ("a 1x1 conv to %d channels, global pool, dropout, FC" % config.head_channels()
                 if config.head_channels() else "global pool and FC")
    v1_dropout_text = f"; v1's classifier has dropout {V1_CLASSIFIER_DROPOUT}" if config.family == "v1" else ""
    return MODULE_TEMPLATE.format(
        config_id=config.id, version=__version__, study=study, trial=trial, name=name, yaml_name=yaml_name,
        num_classes=config.num_classes, params=params, macs=macs, resolution=config.resolution,
        family=config.family, architecture=_pretty(architecture(config)), class_name=class_name,
        head_text=head_text, options=_pretty(flat_options(model_options(config))), v1_dropout_text=v1_dropout_text,
    )
