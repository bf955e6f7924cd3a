"""Writes a small data.h5 in the layout recforge encodes datasets in (ML-100k-like, synthetic).

Users and items with hidden factors, a few dense features, and labels drawn from a logistic model
of them, so a trained model reaches an AUC well above 0.5. Used to test bench/ml100k_pytorch.py.

  /usr/bin/python3 tests/python/make_data_fixture.py data.h5 [--model dlrm|dcnv2] [--rows 20000]
"""
import argparse
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recforge_ref as ref  # noqa: E402


def make_split(rng, n, users, items, u_f, i_f, w_dense, genres):
    u = rng.integers(0, users, size=n)
    i = rng.integers(0, items, size=n)
    dense = rng.standard_normal((n, w_dense.size)).astype(np.float32)
    z = (u_f[u] * i_f[i]).sum(1) + dense @ w_dense
    labels = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.float32)
    split = {"labels": labels, "dense": dense}
    # tables 0, 1: one-hot user and item; table 2: multi-hot item genres (0..3 per row, empty allowed)
    for t, idx in enumerate((u, i)):
        split[f"indices_{t}"] = idx.astype(np.int64)
        split[f"offsets_{t}"] = np.arange(n + 1, dtype=np.int64)
    counts = np.array([len(genres[k]) for k in i])
    split["indices_2"] = np.concatenate([genres[k] for k in i]).astype(np.int64)
    split["offsets_2"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return split


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--model", choices=("dlrm", "dcnv2"), default="dlrm")
    ap.add_argument("--rows", type=int, default=20000, help="train rows; test gets a quarter of that")
    ap.add_argument("--dense-optimizer", default="adam")
    ap.add_argument("--sparse-optimizer", default="rowwise_adagrad")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    users, items, n_genres, nd, dim = 943, 1682, 19, 3, 16
    cfg = {"model_type": args.model, "embedding_dim": dim, "bottom_mlp": [32, dim], "top_mlp": [64, 32, 1],
           "table_sizes": [users, items, n_genres], "num_dense": nd, "self_interaction": 0, "pooling": "sum",
           "cross_layers": 2 if args.model == "dcnv2" else 0, "cross_rank": 8 if args.model == "dcnv2" else 0}
    u_f = rng.standard_normal((users, 4))
    i_f = rng.standard_normal((items, 4))
    w_dense = rng.standard_normal(nd) * 0.5
    genres = [rng.choice(n_genres, size=rng.integers(0, 4), replace=False) for _ in range(items)]
    train = make_split(rng, args.rows, users, items, u_f, i_f, w_dense, genres)
    test = make_split(rng, args.rows // 4, users, items, u_f, i_f, w_dense, genres)

    model = ref.RecModel(cfg)
    with torch.no_grad():
        for bag in model.embeddings:
            bound = 1.0 / bag.weight.shape[0] ** 0.5
            bag.weight.uniform_(-bound, bound)

    with h5py.File(args.out, "w") as f:
        ref.config_to_attrs(cfg, f.attrs)
        for k, v in (("batch_size", 256), ("epochs", args.epochs)):
            f.attrs[k] = np.int64(v)
        for k, v in (("lr", 1e-3 if args.dense_optimizer.startswith("adam") else 0.05), ("sparse_lr", 0.05),
                     ("adagrad_eps", 1e-8), ("adagrad_init", 0.0), ("eps", 1e-8), ("beta1", 0.9),
                     ("beta2", 0.999), ("weight_decay", 0.0)):
            f.attrs[k] = np.float32(v)
        f.attrs["dense_optimizer"] = args.dense_optimizer
        f.attrs["sparse_optimizer"] = args.sparse_optimizer
        for name, split in (("train", train), ("test", test)):
            for k, a in split.items():
                f.create_dataset(f"{name}/{k}", data=a)
        for n, p in model.named_parameters():
            f.create_dataset(f"params/{n}", data=p.detach().numpy())
    print(f"wrote {args.out}: {args.model}, {args.rows} train rows, positives "
          f"{train['labels'].mean():.3f}, {args.dense_optimizer} + {args.sparse_optimizer}")


if __name__ == "__main__":
    main()
