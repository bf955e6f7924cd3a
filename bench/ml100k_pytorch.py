"""Trains the PyTorch reference on a recforge-encoded data.h5 and reports test AUC and log loss.

The baseline recforge's own ML-100k run is compared with: same initial weights, same batches in
file order (no shuffling, last batch smaller), same optimizers and hyper-parameters from the file.

  /usr/bin/python3 bench/ml100k_pytorch.py data.h5 [--threads 2]
"""
import argparse
import json
import os
import sys
import time

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import recforge_ref as ref  # noqa: E402


def attr(attrs, key, default, kind=float):
    if key not in attrs:
        return default
    v = attrs[key]
    if kind is str:
        return v.decode() if isinstance(v, bytes) else str(v)
    return kind(np.asarray(v).reshape(-1)[0])


def evaluate(model, split, batch_size):
    n = len(split["labels"])
    logits = []
    with torch.no_grad():
        for begin in range(0, n, batch_size):
            _, dense, idx, off = ref.slice_split(split, begin, min(begin + batch_size, n))
            logits.append(model(dense, idx, off).numpy())
    logits = np.concatenate(logits) if logits else np.zeros(0, np.float32)
    return ref.roc_auc(split["labels"], logits), ref.log_loss_from_logits(split["labels"], logits)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="data.h5 written by recforge (train/, test/, params/, attributes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with h5py.File(args.data, "r") as f:
        cfg = ref.config_from_attrs(f.attrs)
        a = f.attrs
        lr = attr(a, "lr", None)
        if lr is None:
            sys.exit(f"{args.data}: missing attribute lr")
        hp = {
            "batch_size": attr(a, "batch_size", None, int),
            "epochs": attr(a, "epochs", 1, int),
            "lr": lr,
            "sparse_lr": attr(a, "sparse_lr", lr),
            "dense_optimizer": attr(a, "dense_optimizer", "sgd", str).lower(),
            "sparse_optimizer": attr(a, "sparse_optimizer", "sgd", str).lower(),
            "adagrad_eps": attr(a, "adagrad_eps", 1e-8),
            "adagrad_init": attr(a, "adagrad_init", 0.0),
            "eps": attr(a, "eps", 1e-8),
            "beta1": attr(a, "beta1", 0.9),
            "beta2": attr(a, "beta2", 0.999),
            "weight_decay": attr(a, "weight_decay", 0.0),
            "sparse_weight_decay": attr(a, "sparse_weight_decay", 0.0),
        }
        if not hp["batch_size"] or hp["batch_size"] <= 0:
            sys.exit(f"{args.data}: batch_size attribute missing or not positive")
        T = len(cfg["table_sizes"])
        train = ref.load_split(f["train"], T)
        test = ref.load_split(f["test"], T)
        model = ref.RecModel(cfg, sparse=True)
        model.load_params(f["params"])

    dense_opt = ref.make_dense_optimizer(hp["dense_optimizer"], model.dense_parameters(), hp["lr"], hp)
    sparse_opt = ref.make_sparse_optimizer(hp["sparse_optimizer"], model.sparse_parameters(), hp["sparse_lr"], hp)
    n_train, bs = len(train["labels"]), hp["batch_size"]
    print(f"{args.data}: {cfg['model_type']} tables {cfg['table_sizes']} dim {cfg['embedding_dim']} | "
          f"train {n_train} test {len(test['labels'])} rows, batch {bs}, {hp['epochs']} epochs, "
          f"dense {hp['dense_optimizer']} lr {hp['lr']:g}, sparse {hp['sparse_optimizer']} lr {hp['sparse_lr']:g}, "
          f"{args.threads} threads")

    t0 = time.perf_counter()
    for epoch in range(hp["epochs"]):
        loss_sum, rows = 0.0, 0
        for begin in range(0, n_train, bs):
            end = min(begin + bs, n_train)
            labels, dense, idx, off = ref.slice_split(train, begin, end)
            dense_opt.zero_grad(set_to_none=True)
            sparse_opt.zero_grad(set_to_none=True)
            loss = ref.bce_loss(model(dense, idx, off), labels)
            loss.backward()
            dense_opt.step()
            sparse_opt.step()
            loss_sum += float(loss) * (end - begin)
            rows += end - begin
        if not args.quiet:
            print(f"epoch {epoch + 1}/{hp['epochs']}: train logloss {loss_sum / max(rows, 1):.5f} "
                  f"({time.perf_counter() - t0:.1f} s)")

    auc, logloss = evaluate(model, test, bs)
    print(f"pytorch test auc={auc:.5f} logloss={logloss:.5f}")
    print(json.dumps({"pytorch_auc": auc, "pytorch_logloss": logloss}))


if __name__ == "__main__":
    main()
