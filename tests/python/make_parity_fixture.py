"""Writes a parity.h5 in the layout of recforge's parity dump, computed by PyTorch itself.

Lets test_parity.py be tested without the C++ side: the reference is computed in fp64 (and stored
as fp32), so the fp32 checker meets the same kind of rounding differences a C++ dump would show.
--perturb writes a deliberately wrong fixture that the checker must reject.

  /usr/bin/python3 tests/python/make_parity_fixture.py out.h5 --model dlrm|dcnv2 [--perturb WHAT]
"""
import argparse
import sys
import os

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recforge_ref as ref  # noqa: E402

PERTURBATIONS = ("none", "loss0", "grad", "emb_grad_row", "loss_step", "final")


def make_config(model, rank):
    cfg = {
        "model_type": model,
        "embedding_dim": 8,
        "bottom_mlp": [16, 8],
        "top_mlp": [16, 8, 1],
        "table_sizes": [50, 30, 70],
        "num_dense": 5,
        "self_interaction": 0,
        "pooling": "sum",
        "cross_layers": 2 if model == "dcnv2" else 0,
        "cross_rank": rank if model == "dcnv2" else 0,
    }
    return cfg


def random_batch(rng, cfg, batch):
    """Bags of 0..3 indices (empty bags included) so multi-hot pooling and empty bags are exercised."""
    labels = (rng.random(batch) < 0.4).astype(np.float32)
    dense = rng.standard_normal((batch, cfg["num_dense"])).astype(np.float32)
    out = {"labels": labels, "dense": dense}
    for t, rows in enumerate(cfg["table_sizes"]):
        counts = rng.integers(0, 4, size=batch)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # Draw from the first half of the table so that some rows stay untouched all run long.
        out[f"indices_{t}"] = rng.integers(0, rows // 2, size=int(offsets[-1])).astype(np.int64)
        out[f"offsets_{t}"] = offsets
    return out


def batch_tensors(b, cfg, dtype):
    T = len(cfg["table_sizes"])
    return (torch.from_numpy(b["labels"]).to(dtype), torch.from_numpy(b["dense"]).to(dtype),
            [torch.from_numpy(b[f"indices_{t}"]) for t in range(T)],
            [torch.from_numpy(b[f"offsets_{t}"]) for t in range(T)])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--model", choices=("dlrm", "dcnv2"), default="dlrm")
    ap.add_argument("--cross-rank", type=int, default=0, help="DCNv2: 0 = full-rank cross layers")
    ap.add_argument("--pooling", choices=("sum", "mean"), default="sum")
    ap.add_argument("--self-interaction", type=int, default=0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                    help="precision the reference is computed in (stored as fp32 either way)")
    ap.add_argument("--perturb", choices=PERTURBATIONS, default="none")
    args = ap.parse_args()

    dtype = getattr(torch, args.dtype)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = make_config(args.model, args.cross_rank)
    cfg["pooling"] = args.pooling
    cfg["self_interaction"] = args.self_interaction

    model = ref.RecModel(cfg, sparse=False)
    with torch.no_grad():
        for bag in model.embeddings:  # DLRM reference init: U(-1/sqrt(rows), 1/sqrt(rows))
            bound = 1.0 / bag.weight.shape[0] ** 0.5
            bag.weight.uniform_(-bound, bound)
        # The stored fp32 weights are the initial weights of both sides, so round them first.
        for p in model.parameters():
            p.copy_(p.float())
    model = model.to(dtype)
    params0 = {n: p.detach().float().numpy().copy() for n, p in model.named_parameters()}
    batches = [random_batch(rng, cfg, args.batch) for _ in range(args.steps)]

    # loss0 and the gradient of every parameter on batch 0
    labels, dense, idx, off = batch_tensors(batches[0], cfg, dtype)
    model.zero_grad()
    loss0 = ref.bce_loss(model(dense, idx, off), labels)
    loss0.backward()
    grads = {n: p.grad.detach().float().numpy().copy() for n, p in model.named_parameters()}

    # the SGD trajectory: loss of step k on batch k, before step k's update
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    losses = []
    for b in batches:
        labels, dense, idx, off = batch_tensors(b, cfg, dtype)
        opt.zero_grad()
        loss = ref.bce_loss(model(dense, idx, off), labels)
        loss.backward()
        losses.append(float(loss))
        opt.step()
    final = {n: p.detach().float().numpy().copy() for n, p in model.named_parameters()}
    losses = np.asarray(losses, dtype=np.float32)
    loss0 = np.asarray([float(loss0)], dtype=np.float32)

    # Perturbations sized well above the tolerances of test_parity.py, but small enough to look real.
    if args.perturb == "loss0":
        loss0 *= 1 + 1e-4
    elif args.perturb == "grad":  # a 0.1% error in one dense gradient
        grads["top_mlp.0.bias"] *= 1 + 1e-3
    elif args.perturb == "emb_grad_row":  # one row of one embedding table gradient gets lost
        g = grads["embeddings.1.weight"]
        g[np.flatnonzero(np.abs(g).sum(1))[0]] = 0
    elif args.perturb == "loss_step":
        losses[10] *= 1 + 1e-3
    elif args.perturb == "final":  # the last step of one layer's update applied twice
        name = "bottom_mlp.0.weight"
        final[name] += (final[name] - params0[name]) / args.steps

    with h5py.File(args.out, "w") as f:
        ref.config_to_attrs(cfg, f.attrs)
        f.attrs["lr"] = np.float32(args.lr)
        f.attrs["steps"] = np.int64(args.steps)
        f.attrs["dense_optimizer"] = "sgd"
        f.attrs["sparse_optimizer"] = "sgd"
        for n, a in params0.items():
            f.create_dataset(f"params/{n}", data=a)
        for k, b in enumerate(batches):
            for key, a in b.items():
                f.create_dataset(f"batches/{k}/{key}", data=a)
        f.create_dataset("loss0", data=loss0)
        for n, a in grads.items():
            f.create_dataset(f"grads/{n}", data=a)
        f.create_dataset("losses", data=losses)
        for n, a in final.items():
            f.create_dataset(f"final_params/{n}", data=a)
    print(f"wrote {args.out}: {args.model} (cross_rank {cfg['cross_rank']}), {args.steps} steps, "
          f"batch {args.batch}, reference in {args.dtype}, perturb={args.perturb}")


if __name__ == "__main__":
    main()
