"""Tests of the PyTorch reference pieces that the parity checker does not reach: exact AUC, row-wise
Adagrad, and bench/ml100k_pytorch.py end to end on a generated data.h5. Plain script, exits 1 on failure.

  /usr/bin/python3 tests/python/test_reference.py
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import recforge_ref as ref  # noqa: E402

failures = []


def check(cond, what):
    print(f"{'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        failures.append(what)


def auc_pairs(labels, scores):
    """O(P*N) definition: P(score_pos > score_neg) + 0.5 P(tie)."""
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def test_auc():
    rng = np.random.default_rng(0)
    for n, levels in ((50, 5), (400, 30), (1000, 10**9)):  # heavy ties, some ties, (almost) none
        labels = (rng.random(n) < 0.3).astype(np.float32)
        scores = rng.integers(0, levels, size=n).astype(np.float64)
        a, b = ref.roc_auc(labels, scores), auc_pairs(labels, scores)
        # both are exact rationals with denominator P*N < 2^53, computed in fp64: agree to rounding
        check(abs(a - b) < 1e-12, f"auc n={n} levels={levels}: ranks {a:.12f} pairs {b:.12f}")
    check(ref.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75, "auc textbook example = 0.75")
    check(ref.roc_auc([0, 1, 0, 1], [1, 1, 1, 1]) == 0.5, "auc all tied = 0.5")
    z, y = np.array([-800.0, 0.0, 800.0]), np.array([1.0, 1.0, 0.0])
    check(abs(ref.log_loss_from_logits(y, z) - (800 + np.log(2) + 800) / 3) < 1e-9, "logloss stays finite at |z|=800")


def test_rowwise_adagrad(wd, init):
    torch.manual_seed(0)
    rows, dim, lr, eps = 10, 4, 0.1, 1e-8
    bag = torch.nn.EmbeddingBag(rows, dim, mode="sum", sparse=True)
    w0 = bag.weight.detach().clone()
    opt = ref.RowwiseAdagrad([bag.weight], lr=lr, eps=eps, initial_accumulator_value=init, weight_decay=wd)
    acc = torch.full((rows,), init, dtype=torch.float64)
    w = w0.double()
    batches = [([1, 3, 3, 7], [0, 2, 3, 4]), ([3, 5], [0, 0, 1, 2])]  # row 3 looked up twice; an empty bag
    for indices, offsets in batches:
        idx, off = torch.tensor(indices), torch.tensor(offsets)
        target = torch.randn(len(offsets) - 1, dim)
        opt.zero_grad()
        ((bag(idx, off[:-1]) - target) ** 2).sum().backward()
        g = bag.weight.grad.to_dense().double()  # g_r summed over all lookups of r
        for r in sorted(set(indices)):
            gx = g[r] + wd * w[r]  # FBGEMM L2 weight decay, touched rows only
            acc[r] += (gx ** 2).mean()
            w[r] -= lr * gx / (acc[r].sqrt() + eps)
        opt.step()
    touched = sorted({r for b in batches for r in b[0]})
    err = float((bag.weight.detach().double() - w).abs().max())
    # weights are O(1) and the steps O(lr): fp32 rounding of each update, a few 1e-8 absolute
    check(err < 1e-6, f"rowwise adagrad wd={wd} init={init} matches the formula (fp64 reference), max abs err {err:.2e}")
    # fp32 state against an fp64 recomputation from the same fp32 gradients: a few roundings of 6e-8
    acc_err = float(((opt.state[bag.weight]["acc"].double() - acc).abs() / (1e-12 + acc.abs())).max())
    check(acc_err < 1e-6, f"rowwise adagrad accumulator matches, max rel err {acc_err:.2e}")
    untouched = [r for r in range(rows) if r not in touched]
    check(torch.equal(bag.weight.detach()[untouched], w0[untouched]), f"untouched rows {untouched} bit-identical")


def test_ml100k_bench():
    bench = os.path.join(HERE, "..", "..", "bench", "ml100k_pytorch.py")
    maker = os.path.join(HERE, "make_data_fixture.py")
    with tempfile.TemporaryDirectory() as tmp:
        for model, dense_opt, sparse_opt in (("dlrm", "adam", "rowwise_adagrad"), ("dcnv2", "adagrad", "sgd")):
            path = os.path.join(tmp, f"data_{model}.h5")
            subprocess.run([sys.executable, maker, path, "--model", model, "--rows", "8000", "--epochs", "2",
                            "--dense-optimizer", dense_opt, "--sparse-optimizer", sparse_opt],
                           check=True, stdout=subprocess.DEVNULL)
            out = subprocess.run([sys.executable, bench, path, "--quiet"], check=True, capture_output=True,
                                 text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            auc, ll = result["pytorch_auc"], result["pytorch_logloss"]
            # the labels follow the dense features, so any working training beats chance clearly
            check(0.55 < auc < 1 and 0 < ll < 1.0, f"ml100k_pytorch {model} {dense_opt}+{sparse_opt}: "
                                                   f"auc {auc:.4f} logloss {ll:.4f}")
            check(f"pytorch test auc={auc:.5f}" in out, f"ml100k_pytorch {model}: text line present")


if __name__ == "__main__":
    torch.set_num_threads(1)
    test_auc()
    test_rowwise_adagrad(wd=0.0, init=0.0)
    test_rowwise_adagrad(wd=0.1, init=0.5)
    test_ml100k_bench()
    print(f"{'FAILED: ' + str(len(failures)) if failures else 'all passed'}")
    sys.exit(1 if failures else 0)
