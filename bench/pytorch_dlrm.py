"""Training throughput of PyTorch eager on the DLRM Criteo-Kaggle shape (or DCNv2 on the same
inputs), on the CPU or a CUDA GPU: the figure recforge's trainer is compared with.

SGD on everything, embedding bags with sparse=True gradients as the facebookresearch DLRM reference
trains; batches are generated up front and cycled so that timing sees training only.

  /usr/bin/python3 bench/pytorch_dlrm.py [--model dlrm|dcnv2] [--rows 1000000] [--batch 2048] [--threads 2]
      [--device cpu|cuda] [--dtype fp32|bf16|fp16]

--dtype bf16/fp16 runs the forward under torch.autocast (16-bit GEMM operands, fp32 master weights and
embedding tables), fp16 with torch.cuda.amp.GradScaler as recforge's dynamic loss scaling. On CUDA the
timed windows end with torch.cuda.synchronize(); TF32 stays off (PyTorch's default for matmuls).
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import recforge_ref as ref  # noqa: E402


def ints(s):
    return [int(x) for x in s.split(",") if x]


def make_batches(rng, args, count):
    """count batches: dense [B, 13] normal, labels Bernoulli(0.5), one index per table per row."""
    batches = []
    for _ in range(count):
        labels = torch.from_numpy((rng.random(args.batch) < 0.5).astype(np.float32))
        dense = torch.from_numpy(rng.standard_normal((args.batch, args.num_dense)).astype(np.float32))
        indices = []
        for _ in range(args.tables):
            if args.dist == "zipf":
                # Zipf ranks scattered over the table by a multiplicative hash, so the hot rows do
                # not sit in a few adjacent cache lines (real hashed categorical ids do not either).
                ranks = rng.zipf(args.zipf_a, size=args.batch).astype(np.uint64) - np.uint64(1)
                idx = (ranks * np.uint64(2654435761)) % np.uint64(args.rows)
            else:
                idx = rng.integers(0, args.rows, size=args.batch)
            indices.append(torch.from_numpy(idx.astype(np.int64)))
        offsets = [torch.arange(args.batch + 1, dtype=torch.int64)] * args.tables
        batches.append((labels, dense, indices, offsets))
    return batches


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("dlrm", "dcnv2"), default="dlrm")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of each table")
    ap.add_argument("--tables", type=int, default=26)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--num-dense", type=int, default=13)
    ap.add_argument("--bottom", type=ints, default=None, help="bottom MLP widths (default 512,256,64,DIM)")
    ap.add_argument("--top", type=ints, default=[512, 256, 1], help="top MLP widths, last 1")
    ap.add_argument("--cross-layers", type=int, default=3, help="DCNv2 cross layers")
    ap.add_argument("--cross-rank", type=int, default=0, help="DCNv2: 0 = full-rank [D0, D0] cross weights")
    ap.add_argument("--self-interaction", type=int, default=0)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--dist", choices=("uniform", "zipf"), default="uniform")
    ap.add_argument("--zipf-a", type=float, default=1.05)
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--steps", type=int, default=10, help="steps per timed window")
    ap.add_argument("--windows", type=int, default=5, help="timed windows; the median is reported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                    help="autocast compute dtype (fp16 with a GradScaler)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch.cuda.is_available() is False")
    if args.device == "cpu" and args.dtype == "fp16":
        sys.exit("--dtype fp16 needs --device cuda (CPU autocast runs bf16)")
    device = torch.device(args.device)
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    cfg = {"model_type": args.model, "embedding_dim": args.dim,
           "bottom_mlp": args.bottom or [512, 256, 64, args.dim], "top_mlp": args.top,
           "table_sizes": [args.rows] * args.tables, "num_dense": args.num_dense,
           "self_interaction": args.self_interaction, "pooling": "sum",
           "cross_layers": args.cross_layers if args.model == "dcnv2" else 0,
           "cross_rank": args.cross_rank if args.model == "dcnv2" else 0}
    t0 = time.perf_counter()
    model = ref.RecModel(cfg, sparse=True)
    with torch.no_grad():
        for bag in model.embeddings:  # DLRM reference init
            bound = 1.0 / args.rows ** 0.5
            bag.weight.uniform_(-bound, bound)
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    scaler = torch.cuda.amp.GradScaler() if args.dtype == "fp16" else None
    batches = [(lab.to(device), den.to(device), [t.to(device) for t in idx], [t.to(device) for t in off])
               for lab, den, idx, off in make_batches(rng, args, 8)]
    n_params = sum(p.numel() for p in model.parameters())
    emb_params = sum(p.numel() for p in model.sparse_parameters())
    top_in = model.top_mlp[0].in_features
    print(f"pytorch {torch.__version__} eager, {args.model}: {args.tables} tables x {args.rows} rows x dim {args.dim} "
          f"({emb_params * 4 / 2**30:.2f} GiB), bottom {args.num_dense}-{'-'.join(map(str, cfg['bottom_mlp']))}, "
          f"top {top_in}-{'-'.join(map(str, cfg['top_mlp']))}"
          + (f", {args.cross_layers} cross layers rank {args.cross_rank or 'full'}" if args.model == "dcnv2" else "")
          + f" | {n_params / 1e6:.1f} M params, batch {args.batch}, {args.device} {args.dtype}, "
          f"{args.threads} threads, {args.dist} indices, "
          f"sgd lr {args.lr:g} (setup {time.perf_counter() - t0:.1f} s)")

    def step(k):
        labels, dense, idx, off = batches[k % len(batches)]
        opt.zero_grad(set_to_none=True)
        if amp_dtype is None:
            loss = ref.bce_loss(model(dense, idx, off), labels)
        else:
            with torch.autocast(device_type=args.device, dtype=amp_dtype):
                logits = model(dense, idx, off)
            loss = ref.bce_loss(logits.float(), labels)  # the loss in fp32, as recforge
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return loss

    # Validate before timing: the warm-up steps must train on finite losses.
    for k in range(args.warmup):
        loss = float(step(k))
        if not np.isfinite(loss):
            sys.exit(f"warm-up step {k}: loss {loss} is not finite")
    print(f"warm-up: {args.warmup} steps, last loss {loss:.5f}")

    rates = []
    k = args.warmup
    print(f"{'window':>6} {'steps':>6} {'seconds':>9} {'samples/s':>11}")
    for w in range(args.windows):
        t = time.perf_counter()
        for _ in range(args.steps):
            loss = step(k)
            k += 1
        float(loss)  # waits for the last step's loss (eager CPU is synchronous already)
        if device.type == "cuda":
            torch.cuda.synchronize()  # and for its optimizer kernels
        dt = time.perf_counter() - t
        rates.append(args.batch * args.steps / dt)
        print(f"{w:>6} {args.steps:>6} {dt:>9.3f} {rates[-1]:>11.0f}")
    med = statistics.median(rates)
    # Other processes on the machine only ever slow a window down, so the best window is the
    # uncontended figure; the load average says whether the median was measured on a quiet machine.
    load = os.getloadavg()[0]
    print(f"pytorch {args.model} samples/s: median {med:.0f}, best {max(rates):.0f} of {args.windows} windows "
          f"(1-min load average {load:.2f} on {os.cpu_count()} cpus)")
    print(json.dumps({"pytorch_samples_per_s": med, "pytorch_samples_per_s_best": max(rates),
                      "load_avg_1m": load, "threads": args.threads, "batch": args.batch,
                      "model": args.model, "rows": args.rows, "tables": args.tables, "dim": args.dim,
                      "dist": args.dist, "device": args.device, "dtype": args.dtype, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
