"""Training throughput of the generated MobileViTs against a straightforward reference, and data-load times.

    python benchmarks/bench_train.py [--steps 6] [--rounds 3] [--clock wall|process] [--threads N]
                                     [--batch 64] [--resolution 160] [--skip-data] [--profile]

One training step is forward + backward + gradient clipping + AdamW step, on random input, at batch 64 and
160 px, for ``preset('mobilevitv2_050')`` and ``preset('mobilevit_xxs')`` (10 classes). Variants, each in a
fresh subprocess because the allocator setting is process-wide and cannot be undone:

* ``reference``: the same modules and weights, but the MobileViT blocks patch with ``F.unfold``/``F.fold``
  and attend without fusion (v1: explicit ``softmax(QK^T/sqrt(d))V``; v2: ml-cvnets' ``sum(k * softmax(q))``),
  NCHW, default allocator -- a straightforward implementation. Its outputs are checked equal to ours, so a
  change of ``archsearch.model`` that the reference does not mirror stops the benchmark.
* ``generated``: ``archsearch.model`` as it is (reshape/permute patches, fused SDPA), NCHW.
* ``+channels_last``: and channels_last weights and input.
* ``+allocator``: and ``training.tune_cpu_allocator()`` -- exactly what ``training.evaluate`` runs on a CPU.

Throughput is the median over ``--rounds`` x ``--steps`` timed steps, each run after two warm-up steps; the
best step is shown too, since on a shared machine the median moves with other load (``--clock process
--threads 1`` measures CPU time instead, which that load hardly moves). Data: the first load of Imagenette
at the same resolution into an empty cache (decode + store) and a second, cached load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from archsearch.model import generator as M
from archsearch.model.config import preset
from archsearch.train.data import load_dataset
from archsearch.train.loop import tune_cpu_allocator

MODELS = ("mobilevitv2_050", "mobilevit_xxs")
VARIANTS = ("reference", "generated", "+channels_last", "+allocator")


# ---- the straightforward reference: F.unfold/F.fold patches, unfused attention ---------------------
def _ref_mha(self: M.MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    b, n, d = x.shape
    q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
    attn = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
    return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


def _ref_separable(self: M.SeparableAttention, x: torch.Tensor) -> torch.Tensor:
    q, k, v = self.qkv(x).split((1, self.dim, self.dim), dim=1)
    context = (k * torch.softmax(q, dim=-1)).sum(dim=-1, keepdim=True)
    return self.proj(F.relu(v) * context.expand_as(v))


def _unfold(fm: torch.Tensor) -> torch.Tensor:
    b, d = fm.shape[:2]
    return F.unfold(fm, kernel_size=2, stride=2).reshape(b, d, 4, -1)  # [B, d, P, N]


def _fold(patches: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, d = patches.shape[:2]
    return F.fold(patches.reshape(b, d * 4, -1), output_size=(h, w), kernel_size=2, stride=2)


def _ref_v1_block(self: M.MobileViTBlock, x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    fm = M._to_even(self.conv_1x1(self.conv_kxk(x)))
    he, we = fm.shape[-2:]
    patches = _unfold(fm)
    b, d, p, n = patches.shape
    tokens = self.norm(self.transformer(patches.permute(0, 2, 3, 1).reshape(b * p, n, d)))
    fm = _fold(tokens.reshape(b, p, n, d).permute(0, 3, 1, 2), he, we)
    if (he, we) != (h, w):
        fm = F.interpolate(fm, size=(h, w), mode="bilinear", align_corners=False)
    return self.conv_fusion(torch.cat((x, self.conv_proj(fm)), dim=1))


def _ref_v2_block(self: M.MobileViTV2Block, x: torch.Tensor) -> torch.Tensor:
    x = M._to_even(x, align_corners=True)
    h, w = x.shape[-2:]
    fm = self.conv_1x1(self.conv_kxk(x))
    return self.conv_proj(_fold(self.norm(self.transformer(_unfold(fm))), h, w))


REFERENCE_FORWARDS = {M.MultiHeadAttention: _ref_mha, M.SeparableAttention: _ref_separable,
                      M.MobileViTBlock: _ref_v1_block, M.MobileViTV2Block: _ref_v2_block}


def use_reference_forwards() -> None:
    for cls, forward in REFERENCE_FORWARDS.items():
        cls.forward = forward


# ---- one variant, in this process ------------------------------------------------------------------
def measure(name: str, variant: str, batch: int, resolution: int, steps: int, profile: bool, clock: str) -> dict:
    torch.manual_seed(0)
    model = M.build_model(preset(name).replace(num_classes=10))
    x = torch.randn(batch, 3, resolution, resolution)
    y = torch.randint(0, 10, (batch,))
    if variant == "reference":
        model.eval()
        with torch.no_grad():
            ours = model(x[:4])
            use_reference_forwards()
            torch.testing.assert_close(model(x[:4]), ours, rtol=1e-4, atol=1e-4)  # same weights, same function
        model.train()
    if variant in ("+channels_last", "+allocator"):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if variant == "+allocator":
        tune_cpu_allocator()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

    def step() -> None:
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()

    for _ in range(2):
        step()
    timer = time.perf_counter if clock == "wall" else time.process_time
    times = []
    for _ in range(steps):
        start = timer()
        step()
        times.append(timer() - start)
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        print(f"--- {name} {variant}", file=sys.stderr)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12), file=sys.stderr)
    return {"model": name, "variant": variant, "step_s": times, "threads": torch.get_num_threads()}


def data_load_times(resolution: int) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        ds = load_dataset(resolution=resolution, cache_dir=cache, progress=True)
        first = time.perf_counter() - start
        start = time.perf_counter()
        load_dataset(resolution=resolution, cache_dir=cache, progress=False)
        cached = time.perf_counter() - start
    return {"root": str(ds.root), "images": len(ds.train) + len(ds.val), "skipped": len(ds.train.skipped) +
            len(ds.val.skipped), "first_s": first, "cached_s": cached}


# ---- driver ----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per run (after 2 warm-up steps)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every variant, interleaved")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=160)
    parser.add_argument("--clock", choices=("wall", "process"), default="wall",
                        help="process: CPU time of this process, which other load on a shared machine hardly "
                        "moves (use with --threads 1, where it equals the step's work)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--skip-data", action="store_true", help="no data-load timing")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top ops for each run")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)  # a child run
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(*args.one, args.batch, args.resolution, args.steps, args.profile, args.clock)))
        return

    print(f"# {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"batch {args.batch}, {args.resolution} px, {args.clock} clock, load average {os.getloadavg()[0]:.2f}")
    times: dict[tuple[str, str], list[float]] = {(name, variant): [] for name in MODELS for variant in VARIANTS}
    for _ in range(args.rounds):  # rounds interleave the variants, so that other load hits them alike
        for name, variant in times:
            cmd = [sys.executable, __file__, "--one", name, variant, "--steps", str(args.steps), "--batch",
                   str(args.batch), "--resolution", str(args.resolution), "--clock", args.clock,
                   "--threads", str(torch.get_num_threads())]
            out = subprocess.run(cmd + (["--profile"] if args.profile else []), check=True, capture_output=True,
                                 text=True)
            sys.stderr.write(out.stderr)
            times[name, variant] += json.loads(out.stdout)["step_s"]
    print("\n| model | variant | img/s (median) | img/s (best) | vs reference (median) | vs reference (best) |")
    print("|---|---|---:|---:|---:|---:|")
    for (name, variant), steps in times.items():
        ref = times[name, "reference"]
        median, best = args.batch / statistics.median(steps), args.batch / min(steps)
        ratio_median, ratio_best = statistics.median(ref) / statistics.median(steps), min(ref) / min(steps)
        print(f"| {name} | {variant} | {median:.1f} | {best:.1f} | {ratio_median:.2f}x | {ratio_best:.2f}x |")
    if not args.skip_data:
        d = data_load_times(args.resolution)
        print(f"\ndata: {d['root']} at {args.resolution} px, {d['images']:,} images ({d['skipped']} skipped): "
              f"first load (decode + store) {d['first_s']:.1f} s, cached load {d['cached_s']:.3f} s")
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
