#!/usr/bin/env python3
"""PyTorch parity for recforge's optimizers: runs tests/optim/optim_trajectory_dump for each
configuration, replays the dumped gradients and lrs through torch.optim (fp32, single-tensor path)
and compares the weights after every one of the 20 steps and the final optimizer state.

    test_optim_parity.py PATH/TO/optim_trajectory_dump WORKDIR

Exit 0 on success, 1 on a mismatch, 77 (ctest SKIP_RETURN_CODE) when torch/h5py/numpy are missing.
Row-wise Adagrad has no torch.optim counterpart; it is replayed with FBGEMM's EXACT_ROWWISE_ADAGRAD
formula in torch fp32 ops. Sparse SGD is replayed by torch.optim.SGD on the densified gradient.
"""
import os
import subprocess
import sys

try:
    import h5py
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover
    print(f"SKIP: {e}")
    sys.exit(77)

# Both sides compute in fp32 and may differ in FMA contraction and summation order; over 20 steps the
# drift stays a few ulps, so 1e-6 absolute + 1e-5 relative leaves a wide margin without hiding a
# wrong formula (a misplaced eps or bias correction moves values by >1e-3).
ATOL, RTOL = 1e-6, 1e-5

# name, kind, lr, wd, eps, beta1, beta2, initial_accumulator, lr_decay
CASES = [
    ("sgd", "sgd", 0.05, 0.0, 0.0, 0.9, 0.999, 0.0, 0.0),
    ("sgd_wd", "sgd", 0.05, 0.01, 0.0, 0.9, 0.999, 0.0, 0.0),
    ("adagrad", "adagrad", 0.05, 0.0, 1e-10, 0.9, 0.999, 0.0, 0.0),
    ("adagrad_all", "adagrad", 0.05, 0.01, 1e-6, 0.9, 0.999, 0.1, 0.01),
    ("adam", "adam", 0.01, 0.0, 1e-8, 0.9, 0.999, 0.0, 0.0),
    ("adam_l2", "adam", 0.01, 0.05, 1e-8, 0.8, 0.99, 0.0, 0.0),
    ("adamw", "adamw", 0.01, 0.0, 1e-8, 0.9, 0.999, 0.0, 0.0),
    ("adamw_wd", "adamw", 0.01, 0.05, 1e-7, 0.9, 0.98, 0.0, 0.0),
    ("sparse_sgd", "sparse_sgd", 0.05, 0.0, 0.0, 0.9, 0.999, 0.0, 0.0),
    ("rowwise_adagrad", "rowwise_adagrad", 0.05, 0.0, 1e-8, 0.9, 0.999, 0.0, 0.0),
    ("rowwise_adagrad_wd", "rowwise_adagrad", 0.05, 0.01, 1e-8, 0.9, 0.999, 0.1, 0.0),
]


def torch_optimizer(kind, params, wd, eps, b1, b2, init_acc, lr_decay):
    if kind in ("sgd", "sparse_sgd"):
        return torch.optim.SGD(params, lr=1.0, weight_decay=wd, foreach=False)
    if kind == "adagrad":
        return torch.optim.Adagrad(params, lr=1.0, lr_decay=lr_decay, weight_decay=wd,
                                   initial_accumulator_value=init_acc, eps=eps, foreach=False)
    if kind == "adam":
        return torch.optim.Adam(params, lr=1.0, betas=(b1, b2), eps=eps, weight_decay=wd, foreach=False)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=1.0, betas=(b1, b2), eps=eps, weight_decay=wd, foreach=False)
    raise ValueError(kind)


def rowwise_adagrad(w, acc, g, touched, lr, wd, eps):
    """FBGEMM EXACT_ROWWISE_ADAGRAD (weight_decay_mode L2) on the touched rows, fp32."""
    rows = touched.nonzero().flatten()
    gr = g[rows]
    wr = w[rows]
    gx = gr + wd * wr if wd != 0 else gr
    acc[rows] += (gx * gx).sum(dim=1) / gr.shape[1]
    mult = lr / (acc[rows].sqrt() + eps)
    corr = 1.0 - mult * wd if wd != 0 else torch.ones_like(mult)
    w[rows] = corr[:, None] * wr - mult[:, None] * gr


def compare(case, what, got, ref):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    err = np.abs(got - ref)
    bad = err > ATOL + RTOL * np.abs(ref)
    if bad.any():
        i = np.unravel_index(np.argmax(err - RTOL * np.abs(ref)), err.shape)
        print(f"FAIL {case}: {what}: {bad.sum()} elements off, worst at {i}: recforge {got[i]!r} torch {ref[i]!r}")
        return False
    return True


def run_case(dump, workdir, case):
    name, kind, lr, wd, eps, b1, b2, init_acc, lr_decay = case
    path = os.path.join(workdir, f"{name}.h5")
    args = [dump, path, kind] + [repr(float(x)) for x in (lr, wd, eps, b1, b2, init_acc, lr_decay)] + ["7"]
    subprocess.run(args, check=True)
    ok = True
    stats = []
    with h5py.File(path, "r") as f:
        assert f.attrs["optimizer"] == kind, f.attrs["optimizer"]
        lrs = f["lrs"][()]
        names = sorted(k for k in f.keys() if k.startswith("p"))
        params = [torch.nn.Parameter(torch.from_numpy(f[n]["init"][()])) for n in names]
        grads = [torch.from_numpy(f[n]["grads"][()]) for n in names]
        trajs = [f[n]["traj"][()] for n in names]
        state = {(k, p): f["state"][k][p][()] for k in f.get("state", {}) for p in f["state"][k]}
        sparse = kind in ("sparse_sgd", "rowwise_adagrad")
        if kind == "rowwise_adagrad":
            mask = torch.from_numpy(f["p0"]["mask"][()])
            acc = torch.full((params[0].shape[0],), float(init_acc), dtype=torch.float32)
        else:
            opt = torch_optimizer(kind, params, wd, eps, b1, b2, init_acc, lr_decay)
        for s in range(len(lrs)):
            step_lr = float(lrs[s])  # the fp32 lr the C++ side used, exactly
            if kind == "rowwise_adagrad":
                with torch.no_grad():
                    rowwise_adagrad(params[0].data, acc, grads[0][s], mask[s], np.float32(step_lr).item(), wd, eps)
            else:
                for g in opt.param_groups:
                    g["lr"] = step_lr
                for p, g in zip(params, grads):
                    p.grad = g[s].clone()
                opt.step()
            for p, t, n in zip(params, trajs, names):
                ok &= compare(name, f"{n} after step {s}", t[s], p.detach().numpy())
                if s == len(lrs) - 1:
                    exact = int((t[s] == p.detach().numpy()).sum())
                    stats.append(f"{n}: {exact}/{t[s].size} bit-exact")
        # Final optimizer state against torch's.
        torch_names = {"sum": "sum", "exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}
        for key, value in state.items():
            kind_name, pname = key
            if kind == "rowwise_adagrad":
                ref = acc.numpy()
            else:
                ref = opt.state[params[names.index(pname)]][torch_names[kind_name]].numpy()
            ok &= compare(name, f"state {kind_name}/{pname}", value, ref)
        if not sparse and kind not in ("sgd",):
            assert state, f"{name}: no optimizer state dumped"
    print(f"{'ok  ' if ok else 'FAIL'} {name}: 20 steps, {'; '.join(stats)}")
    return ok


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    dump, workdir = sys.argv[1], sys.argv[2]
    os.makedirs(workdir, exist_ok=True)
    torch.set_num_threads(1)
    ok = True
    for case in CASES:
        ok &= run_case(dump, workdir, case)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
