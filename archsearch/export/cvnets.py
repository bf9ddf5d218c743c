"""The ``cvnets`` export: an ml-cvnets ImageNet training YAML, a model module that registers the searched
architecture in ml-cvnets' model registry, and a README.

The model module is written by ``export_cvnets_module``.

Recipes (reference: ml-cvnets' ``config/classification/imagenet/mobilevit*.yaml`` and the MobileViT papers):

* v2: AdamW (0.9, 0.999), no decay on norms and biases, cosine schedule with 20k warm-up iterations from
  1e-6, 300 epochs, batch 1024 (128 per GPU x 8), label smoothing 0.1, EMA 0.0005, RandAugment, random erase
  0.25, mixup 0.2, cutmix 1.0, grad clip 10, mixed precision, channels_last. Max LR and weight decay follow
  the per-width table ``V2_LR_WD`` interpolated linearly in width between its points (clamped outside
  0.5..2.0); min LR = max LR / 10 (as in ml-cvnets' released v2 config).
* v1: AdamW (0.9, 0.999), weight decay 0.01, cosine 0.002 -> 0.0002 with 20k warm-up iterations from 0.0002,
  300 epochs, batch 1024, label smoothing 0.1, RandomResizedCrop + flip, EMA 0.0005, multi-scale
  variable-batch sampler (160..320 px around 256, scaled to the searched resolution).

Training crop = the searched resolution (256 in the papers); evaluation resizes the short side to
``round(1.125 * r)`` (288 for 256) and centre-crops ``r``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml  # PyYAML: a hard dependency of fvcore, hence always installed with archsearch

from ..model.config import V1_CLASSIFIER_DROPOUT, ArchConfig
from ..model.cost import count
from .cvnets_module import model_module, model_options

# (width, max LR, weight decay) for MobileViT v2 on ImageNet-1k, ml-cvnets recipes
V2_LR_WD = ((0.5, 0.0090, 0.004), (0.75, 0.0090, 0.008), (1.0, 0.0075, 0.013), (1.5, 0.0035, 0.029),
            (2.0, 0.0020, 0.050))
V1_LR = (0.002, 0.0002)
V1_WEIGHT_DECAY = 0.01
EPOCHS = 300
WARMUP_ITERATIONS = 20_000
GPUS = 8
BATCH_PER_GPU = 128  # x 8 GPUs = 1024
EVAL_RESIZE_RATIO = 288 / 256
IMAGENET_CLASSES = 1000


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    """Piecewise-linear interpolation through (xs, ys), clamped to the end values outside xs."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    raise AssertionError("unreachable")  # pragma: no cover


def v2_lr_wd(width: float) -> tuple[float, float]:
    """Max LR and weight decay for v2 at ``width``: linear in width between the table's points, clamped."""
    xs = [w for w, _, _ in V2_LR_WD]
    lr = _interp(width, xs, [lr for _, lr, _ in V2_LR_WD])
    wd = _interp(width, xs, [wd for _, _, wd in V2_LR_WD])
    return round(lr, 8), round(wd, 8)


def _multiple_of_32(x: float) -> int:
    return max(32, int(x / 32 + 0.5) * 32)


def model_name(slug: str) -> str:
    return "archsearch_" + re.sub(r"[^a-z0-9_]+", "_", slug.lower()).strip("_")


def recipe(config: ArchConfig, name: str, title: str = "") -> dict[str, Any]:
    """The ml-cvnets YAML as nested dicts, for ImageNet-1k at the searched resolution."""
    r = config.resolution
    v2 = config.family == "v2"
    augment: dict[str, Any] = {
        "random_resized_crop": {"enable": True, "interpolation": "bicubic" if v2 else "bilinear"},
        "random_horizontal_flip": {"enable": True},
    }
    if v2:
        augment |= {
            "rand_augment": {"enable": True},
            "random_erase": {"enable": True, "p": 0.25},
            "mixup": {"enable": True, "alpha": 0.2},
            "cutmix": {"enable": True, "alpha": 1.0},
        }
    augment |= {
        "resize": {"enable": True, "size": round(EVAL_RESIZE_RATIO * r), "interpolation": "bicubic" if v2 else "bilinear"},
        "center_crop": {"enable": True, "size": r},
    }
    if v2:
        sampler = {"name": "batch_sampler", "bs": {"crop_size_width": r, "crop_size_height": r}}
        max_lr, weight_decay = v2_lr_wd(config.width)
        min_lr, warmup_init_lr = round(max_lr / 10, 8), 1.0e-6
    else:
        low, high = _multiple_of_32(r * 160 / 256), _multiple_of_32(r * 320 / 256)
        sampler = {"name": "variable_batch_sampler", "vbs": {
            "crop_size_width": r, "crop_size_height": r, "max_n_scales": 5,
            "min_crop_size_width": low, "max_crop_size_width": high,
            "min_crop_size_height": low, "max_crop_size_height": high, "check_scale": 32}}
        (max_lr, min_lr), weight_decay, warmup_init_lr = V1_LR, V1_WEIGHT_DECAY, V1_LR[1]
    classification = {"name": name, "n_classes": IMAGENET_CLASSES, **model_options(config),
                      "activation": {"name": "swish"}}
    common: dict[str, Any] = {"run_label": "train", "log_freq": 500, "auto_resume": True, "mixed_precision": True}
    if v2:
        common |= {"channels_last": True, "tensorboard_logging": False, "grad_clip": 10.0}
    return {
        "taskname": title or f"+ archsearch {config.id}",
        "common": common,
        "dataset": {
            "root_train": "/mnt/imagenet/training",
            "root_val": "/mnt/imagenet/validation",
            "name": "imagenet",
            "category": "classification",
            "train_batch_size0": BATCH_PER_GPU,  # per GPU: 128 x 8 GPUs = 1024
            "val_batch_size0": 100,
            "eval_batch_size0": 100,
            "workers": 8,
            "prefetch_factor": 2,
            "persistent_workers": False,
            "pin_memory": True,
        },
        "image_augmentation": augment,
        "sampler": sampler,
        "loss": {"category": "classification",
                 "classification": {"name": "cross_entropy", "cross_entropy": {"label_smoothing": 0.1}}},
        "optim": {"name": "adamw", "weight_decay": weight_decay, "no_decay_bn_filter_bias": v2,
                  "adamw": {"beta1": 0.9, "beta2": 0.999}},
        "scheduler": {"name": "cosine", "is_iteration_based": False, "max_epochs": EPOCHS,
                      "warmup_iterations": WARMUP_ITERATIONS, "warmup_init_lr": warmup_init_lr,
                      "cosine": {"max_lr": max_lr, "min_lr": min_lr}},
        "model": {
            "classification": classification,
            "normalization": {"name": "batch_norm", "momentum": 0.1},
            "activation": {"name": "swish"},
            "layer": {"global_pool": "mean", "conv_init": "kaiming_normal", "conv_init_std_dev": 0.02,
                      "linear_init": "trunc_normal", "linear_init_std_dev": 0.02},
        },
        "ema": {"enable": True, "momentum": 0.0005},
        "stats": {"val": ["loss", "top1", "top5"], "train": ["loss"], "checkpoint_metric": "top1",
                  "checkpoint_metric_max": True},
    }


def to_yaml(doc: dict[str, Any], header: str = "") -> str:
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comment + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100)


# ---- README ----------------------------------------------------------------------------------------
def readme(config: ArchConfig, name: str, yaml_name: str, module_name: str, doc: dict[str, Any], *,
           params: int, macs: int, study: str, found: str) -> str:
    """The steps to train ``name`` with ml-cvnets, its architecture and recipe; ``found``: "trial 12", say."""
    r = config.resolution
    rows = "\n".join(
        f"| {s.name} | {s.out_channels} | {s.stride} | {s.mv2_blocks or '-'} | {s.attn_dim or '-'} | "
        f"{s.ffn_dim or '-'} | {s.attn_layers or '-'} |"
        for s in config.stages()
    )
    sched, optim = doc["scheduler"], doc["optim"]
    notes = []
    if config.num_classes != IMAGENET_CLASSES:
        notes.append(f"- The search used {config.num_classes} classes; this config trains ImageNet-1k "
                     f"(`model.classification.n_classes: {IMAGENET_CLASSES}`), so the classifier has "
                     f"{IMAGENET_CLASSES} outputs and the parameter count differs from PARAM_COUNT by the FC layer.")
    if config.family == "v1" and config.stages()[0].out_channels != 16:
        notes.append(f"- The stem has {config.stages()[0].out_channels} channels (stock ml-cvnets v1 fixes 16): "
                     "the width factor scales it too.")
    dropout = (f"its only dropout is {V1_CLASSIFIER_DROPOUT}, before the FC" if config.family == "v1"
               else "it has no dropout")
    notes.append(f"- The registered model is the searched architecture as archsearch builds it ({dropout}). "
                 f"The `model.classification` options of `{yaml_name}` are the ones `{module_name}` reads (its "
                 "`OPTIONS`); it refuses other values, from the YAML or the command line, since they would build "
                 "another network.")
    notes_text = "\n".join(notes)
    head = ", ".join(([f"1x1 conv to {config.head_channels()} channels"] if config.head_channels() else [])
                     + ["global average pool"] + ([f"dropout {V1_CLASSIFIER_DROPOUT}"] if config.family == "v1" else [])
                     + ["FC"])
    return f"""# {config.id} for ml-cvnets

Exported by archsearch from study `{study}`, {found}. Files:

- `{yaml_name}`: ImageNet-1k training config (ml-cvnets YAML) with the MobileViT {config.family} recipe.
- `{module_name}`: registers the model `{name}` in ml-cvnets' model registry.

Stock ml-cvnets scales v2 by one width multiplier only, so the searched per-stage widths and depths
live in `{module_name}`'s `ARCHITECTURE`; the YAML selects it with `model.classification.name: {name}`.

## Steps

1. Install ml-cvnets (https://github.com/apple/ml-cvnets): clone it and `pip install -e .` in it.
2. Copy `{module_name}` into `cvnets/models/classification/` of that checkout; ml-cvnets' model registry
   imports every module under `cvnets/models/`, so `{name}` is then registered.
3. Point `dataset.root_train` / `dataset.root_val` in `{yaml_name}` at your ImageNet folders.
   `dataset.train_batch_size0` is per GPU: {BATCH_PER_GPU} x {GPUS} GPUs = {BATCH_PER_GPU * GPUS}. On fewer GPUs raise it or
   scale the learning rate.
4. Train: `cvnets-train --common.config-file {yaml_name} --common.results-loc results_{name}`
5. Evaluate: `cvnets-eval --common.config-file {yaml_name} --model.classification.pretrained results_{name}/train/checkpoint_ema_best.pt`

## Architecture ({config.family}, {r}x{r} input)

| stage | channels | stride | MV2 blocks | attention dim | FFN | attention layers |
|---|---|---|---|---|---|---|
{rows}

Head: {head}.
Expected: {params:,} parameters ({config.num_classes} classes), {macs:,} MACs at {r}x{r}, batch 1 (archsearch count).

## Recipe

{EPOCHS} epochs, AdamW, weight decay {optim['weight_decay']}, cosine LR {sched['cosine']['max_lr']} -> {sched['cosine']['min_lr']}
after {sched['warmup_iterations']} warm-up iterations, label smoothing 0.1, EMA 0.0005, train crop {r}, eval resize
{doc['image_augmentation']['resize']['size']} -> centre crop {r}.{" v2 per-width rule: max LR and weight decay interpolated linearly in width between the published points (0.5, 0.75, 1.0, 1.5, 2.0), clamped outside." if config.family == "v2" else ""}

## Notes

{notes_text}
"""


def write_cvnets(config: ArchConfig, out: Path, *, name: str, stem: str, params: int, macs: int, study: str,
                 trial: int | str, found: str, readme_name: str = "README.md") -> list[Path]:
    """Write ``stem``.yaml, the module ``name``.py registering ``name``, and ``readme_name`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    yaml_name, module_name = f"{stem}.yaml", f"{name}.py"
    doc = recipe(config, name)
    header = (f"ml-cvnets ImageNet-1k config for {config.id}, exported by archsearch "
              f"(study {study!r}, {found}).\n"
              f"Needs {module_name} copied into cvnets/models/classification/ (it registers {name}); "
              f"see {readme_name}.")
    paths = [out / yaml_name, out / module_name, out / readme_name]
    paths[0].write_text(to_yaml(doc, header))
    paths[1].write_text(model_module(config, name, params=params, macs=macs, study=study, trial=trial,
                                     yaml_name=yaml_name))
    paths[2].write_text(readme(config, name, yaml_name, module_name, doc, params=params, macs=macs, study=study,
                               found=found))
    return paths


def export_cvnets(source, out: Path, cost: dict[str, Any] | None = None) -> list[Path]:
    """Write the YAML, the model module and README.md into ``out`` for an ``export.ExportSource``."""
    config = source.config
    if cost is None:
        closed = count(config, "closed_form")
        cost = {"params": closed.params, "macs": closed.macs}
    trial = source.trial["trial"]
    return write_cvnets(config, out, name=model_name(source.slug), stem=source.slug, params=cost["params"],
                        macs=cost["macs"], study=source.study, trial=trial, found=f"trial {trial}")
