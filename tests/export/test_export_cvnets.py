"""The ml-cvnets export's model module against what its YAML asks for (issue 14, item 9).

ml-cvnets cannot be installed here, so the module runs against stand-ins for the parts of ml-cvnets' API it
uses (registry, builder, layers, MobileViT blocks, ``BaseImageEncoder``). The stand-in blocks are
archsearch's own, changed as ml-cvnets would change them for the options they receive: dropout modules
where ml-cvnets puts them (``dropout`` after attention and after the FFN, ``ffn_dropout`` inside the FFN,
``attn_dropout`` on the attention weights), the heads, the local conv's kernel, the fusion conv, the norm
and activation layers named in ``opts``. ``opts`` is built from the generated YAML as ml-cvnets flattens it,
and records which options were read. So a YAML that asks for something archsearch's generator does not
build (``mit.dropout: 0.1``, say) gives a network that differs from ``build_model``'s, and the test fails.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
import textwrap
from collections import Counter

import pytest
import torch
import yaml
from torch import nn

from archsearch.export.cvnets import recipe, to_yaml
from archsearch.export.cvnets_module import model_module
from archsearch.model import generator as M
from archsearch.model.config import ArchConfig
from archsearch.model.cost import count

NAME = "archsearch_test_model"
# Weight-initialisation settings (read by ml-cvnets' reset_parameters): they shape no layer.
INIT_OPTIONS = {"model.layer.conv_init", "model.layer.conv_init_std_dev", "model.layer.linear_init",
                "model.layer.linear_init_std_dev"}

CVNETS_STUB = {
    "cvnets/__init__.py": "",
    "cvnets/layers.py": '''
        from torch import nn

        ACTIVATIONS = {"swish": nn.SiLU, "relu": nn.ReLU, "hard_swish": nn.Hardswish, "gelu": nn.GELU}

        def activation(opts):
            return ACTIVATIONS[getattr(opts, "model.activation.name", "relu")]()

        def batch_norm(opts, channels):
            name = getattr(opts, "model.normalization.name", "batch_norm")
            if name not in ("batch_norm", "batch_norm_2d"):
                raise NotImplementedError(f"stand-in: normalization {name}")
            return nn.BatchNorm2d(channels, momentum=getattr(opts, "model.normalization.momentum", 0.1))

        class ConvLayer2d(nn.Sequential):
            def __init__(self, opts, in_channels, out_channels, kernel_size, stride=1, dilation=1, groups=1,
                         bias=False, padding_mode="zeros", use_norm=True, use_act=True, act_name=None):
                super().__init__()
                self.add_module("conv", nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                                                  kernel_size // 2, groups=groups, bias=bias))
                if use_norm:
                    self.add_module("norm", batch_norm(opts, out_channels))
                if use_act:
                    self.add_module("act", activation(opts))

        class GlobalPool(nn.Module):
            def __init__(self, pool_type="mean", keep_dim=False):
                super().__init__()
                if pool_type != "mean":
                    raise NotImplementedError(f"stand-in: pool {pool_type}")
            def forward(self, x):
                return x.mean(dim=(-2, -1))

        def LinearLayer(in_features, out_features, bias=True):
            return nn.Linear(in_features, out_features, bias=bias)

        Identity = nn.Identity

        def Dropout(p=0.0, inplace=False):
            return nn.Dropout(p, inplace)
    ''',
    "cvnets/models/__init__.py": '''
        class Registry:
            def __init__(self):
                self.models = {}
            def register(self, name, type):
                def wrap(cls):
                    self.models[name, type] = cls
                    return cls
                return wrap

        MODEL_REGISTRY = Registry()

        def build_classification_model(opts):
            """As ml-cvnets' builder: the classification activation overrides the general one."""
            act = getattr(opts, "model.classification.activation.name", None)
            if act is not None:
                setattr(opts, "model.activation.name", act)
            return MODEL_REGISTRY.models[getattr(opts, "model.classification.name"), "classification"](opts)
    ''',
    "cvnets/models/classification/__init__.py": "",
    "cvnets/models/classification/base_image_encoder.py": '''
        from torch import nn

        class BaseImageEncoder(nn.Module):
            def __init__(self, opts, *args, **kwargs):
                super().__init__()
                self.conv_1 = self.layer_1 = self.layer_2 = self.layer_3 = None
                self.layer_4 = self.layer_5 = self.conv_1x1_exp = self.classifier = None
                self.dilation, self.dilate_l4, self.dilate_l5 = 1, False, False
                self.model_conf_dict = dict()
            def check_model(self):
                assert self.model_conf_dict and self.classifier is not None and self.conv_1x1_exp is not None
            def reset_parameters(self, opts):
                pass
            def forward(self, x):
                for name in ("conv_1", "layer_1", "layer_2", "layer_3", "layer_4", "layer_5", "conv_1x1_exp",
                             "classifier"):
                    x = getattr(self, name)(x)
                return x
    ''',
    # ml-cvnets' blocks with ml-cvnets' signatures: archsearch's blocks, changed as the options ask
    "cvnets/modules.py": '''
        from torch import nn

        from archsearch.model import generator as m
        from cvnets.layers import ACTIVATIONS, activation, batch_norm

        def _from_opts(block, opts):
            """ml-cvnets builds every norm and activation from opts: replace archsearch's accordingly."""
            for parent in list(block.modules()):
                for name, child in list(parent.named_children()):
                    if isinstance(child, nn.SiLU):
                        setattr(parent, name, activation(opts))
                    elif isinstance(child, nn.BatchNorm2d):
                        setattr(parent, name, batch_norm(opts, child.num_features))
            return block

        def _dropouts(layer, attn_dropout, dropout, ffn_dropout):
            """ml-cvnets' transformer layer: attention (dropout on its weights) + Dropout(dropout);
            FFN = linear, act, Dropout(ffn_dropout), linear, Dropout(dropout)."""
            layer.attn.attn_dropout = nn.Dropout(attn_dropout)
            layer.attn = nn.Sequential(layer.attn, nn.Dropout(dropout))
            first, act, second = layer.mlp
            layer.mlp = nn.Sequential(first, act, nn.Dropout(ffn_dropout), second, nn.Dropout(dropout))

        def InvertedResidual(opts, in_channels, out_channels, stride, expand_ratio, dilation=1,
                             skip_connection=True):
            return _from_opts(m.InvertedResidual(in_channels, out_channels, stride, expand_ratio), opts)

        def MobileViTBlock(opts, in_channels, transformer_dim, ffn_dim, n_transformer_blocks=2, head_dim=32,
                           attn_dropout=0.0, dropout=0.0, ffn_dropout=0.0, patch_h=8, patch_w=8,
                           transformer_norm_layer="layer_norm", conv_ksize=3, dilation=1, no_fusion=False):
            assert (patch_h, patch_w, transformer_norm_layer) == (2, 2, "layer_norm")
            block = m.MobileViTBlock(in_channels, transformer_dim, ffn_dim, n_transformer_blocks)
            block.conv_kxk = m.ConvNormAct(in_channels, in_channels, conv_ksize)
            block.conv_fusion = None if no_fusion else m.ConvNormAct(2 * in_channels, in_channels, conv_ksize)
            for layer in block.transformer:
                layer.attn.heads = transformer_dim // head_dim
                _dropouts(layer, attn_dropout, dropout, ffn_dropout)
            return _from_opts(block, opts)

        NORMS = {"layer_norm_2d": lambda d: nn.GroupNorm(1, d), "batch_norm_2d": nn.BatchNorm2d}

        def MobileViTBlockv2(opts, in_channels, attn_unit_dim, ffn_multiplier=2.0, n_attn_blocks=2,
                             attn_dropout=0.0, dropout=0.0, ffn_dropout=0.0, patch_h=8, patch_w=8, conv_ksize=3,
                             dilation=1, attn_norm_layer="layer_norm_2d"):
            assert (patch_h, patch_w) == (2, 2)
            ffn = int((ffn_multiplier * attn_unit_dim) // 16 * 16)  # ml-cvnets' rule
            block = m.MobileViTV2Block(in_channels, attn_unit_dim, ffn, n_attn_blocks)
            block.conv_kxk = m.ConvNormAct(in_channels, in_channels, conv_ksize, groups=in_channels)
            block.norm = NORMS[attn_norm_layer](attn_unit_dim)
            for layer in block.transformer:
                layer.norm1, layer.norm2 = NORMS[attn_norm_layer](attn_unit_dim), NORMS[attn_norm_layer](attn_unit_dim)
                _dropouts(layer, attn_dropout, dropout, ffn_dropout)
            return _from_opts(block, opts)
    ''',
}


@pytest.fixture
def cvnets_stub(tmp_path, monkeypatch):
    """An importable stand-in for ml-cvnets' public API."""
    root = tmp_path / "stub"
    for name, text in CVNETS_STUB.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [n for n in sys.modules if n == "cvnets" or n.startswith("cvnets.")]:
        del sys.modules[name]


class RecordingOpts(argparse.Namespace):
    """ml-cvnets' ``opts``: one attribute per dotted option name; remembers which ones were read."""

    def __getattribute__(self, name):
        if "." in name:
            object.__getattribute__(self, "__dict__").setdefault("_read", set()).add(name)
        return object.__getattribute__(self, name)

    def read(self) -> set[str]:
        return self.__dict__.get("_read", set())


def flatten(tree: dict, prefix: str) -> dict:
    """The YAML's nested keys as ml-cvnets names its options: {layer: {global_pool: x}} -> model.layer.global_pool."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}"
        flat |= flatten(value, name) if isinstance(value, dict) else {name: value}
    return flat


def module_constants(source: str) -> dict:
    tree = ast.parse(source)
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper()}


def load_module(source: str, folder):
    path = folder / "generated_model.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("generated_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def signature(model: nn.Module) -> Counter:
    """What a network is built of, layer by layer: any layer that an option changed shows as a difference."""
    parts: Counter = Counter()
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            parts["conv", mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.groups,
                  mod.bias is not None] += 1
        elif isinstance(mod, nn.BatchNorm2d):
            parts["batchnorm", mod.num_features, mod.momentum, mod.eps] += 1
        elif isinstance(mod, (nn.GroupNorm, nn.LayerNorm, nn.Linear)):
            parts[repr(mod)] += 1
        elif isinstance(mod, nn.Dropout) and mod.p > 0:
            parts["dropout", mod.p] += 1
        elif isinstance(mod, M.MultiHeadAttention):
            parts["heads", mod.heads] += 1
        elif isinstance(mod, (nn.SiLU, nn.ReLU, nn.Hardswish, nn.GELU)):
            parts[type(mod).__name__] += 1
    return parts


CONFIGS = [
    ArchConfig("v2", resolution=128, width=0.625, mv2_depth=1.75, vit_depth=0.5, num_classes=100),
    ArchConfig("v1", variant="xs", resolution=128, width=0.75, mv2_depth=2.0, vit_depth=1.5),
    ArchConfig("v1", variant="xxs", resolution=96, width=1.25, mv2_depth=0.5, vit_depth=0.25, num_classes=10),
]


def exported(config: ArchConfig, folder) -> tuple[dict, dict, object]:
    """(the YAML's model options as ml-cvnets names them, the module's constants, the module)."""
    doc = yaml.safe_load(to_yaml(recipe(config, NAME)))
    options = flatten(doc["model"], "model")
    options["model.classification.n_classes"] = config.num_classes  # the searched head, for the comparison
    source = model_module(config, NAME, params=count(config, "closed_form").params, macs=0)
    return options, module_constants(source), load_module(source, folder)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.id)
def test_the_yaml_builds_the_searched_network(config, cvnets_stub):
    """Every model option the YAML sets is read, and together they build exactly archsearch's network."""
    from cvnets.models import build_classification_model

    options, constants, _ = exported(config, cvnets_stub)
    opts = RecordingOpts(**options)
    model = build_classification_model(opts).eval()
    unread = set(options) - opts.read() - INIT_OPTIONS
    assert not unread, f"the YAML sets options that nothing reads: {sorted(unread)}"
    reference = M.build_model(config)
    assert sum(p.numel() for p in model.parameters()) == constants["PARAM_COUNT"] == sum(
        p.numel() for p in reference.parameters())
    assert signature(model) == signature(reference)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, config.resolution, config.resolution)).shape == (1, config.num_classes)
    if config.family == "v2":
        assert options["model.classification.mitv2.width_multiplier"] == config.width


def _other(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1 if isinstance(value, int) else value + 0.1
    return "batch_norm_2d"


@pytest.mark.parametrize("config", CONFIGS[:2], ids=lambda c: c.id)
def test_the_module_refuses_options_that_contradict_it(config, cvnets_stub):
    """Each option the module fixes, set otherwise (in the YAML, on the command line, or left to ml-cvnets'
    default), stops the build with a message naming it."""
    from cvnets.models import build_classification_model

    options, constants, _ = exported(config, cvnets_stub)
    fixed = constants["OPTIONS"]
    classification = {k for k in options if k.startswith("model.classification.")}
    assert set(fixed) == classification - {"model.classification.name", "model.classification.n_classes",
                                           "model.classification.activation.name"}
    assert all(options[k] == v for k, v in fixed.items())
    for name, value in fixed.items():
        opts = RecordingOpts(**{**options, name: _other(value)})
        with pytest.raises(ValueError, match=f"{name} = .* would not build {config.id}"):
            build_classification_model(opts)


@pytest.mark.parametrize("config", CONFIGS[:2], ids=lambda c: c.id)
def test_module_describes_the_stage_plan(config, cvnets_stub):
    """ARCHITECTURE is archsearch's stage plan in ml-cvnets' vocabulary."""
    _, constants, _ = exported(config, cvnets_stub)
    arch = constants["ARCHITECTURE"]
    stem, *layers = config.stages()
    assert constants["MODEL_NAME"] == NAME and arch["layer0"]["out_channels"] == stem.out_channels
    for spec in layers:
        layer = arch[spec.name]
        assert (layer["out_channels"], layer["num_blocks"], layer["stride"], layer["expand_ratio"]) == (
            spec.out_channels, spec.mv2_blocks, spec.stride, spec.mv2_expansion)
        if spec.attn_layers:
            assert (layer["attn_unit_dim"], layer["ffn_dim"], layer["attn_blocks"]) == (
                spec.attn_dim, spec.ffn_dim, spec.attn_layers)
        else:
            assert layer["block_type"] == "mv2"
    assert arch["head"]["exp_channels"] == config.head_channels()
