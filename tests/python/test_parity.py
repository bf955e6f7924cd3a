"""Checks a recforge parity dump (parity.h5) against PyTorch fp32 on the same weights and batches.

Compares loss0, the gradient of every parameter on batch 0, the losses of the SGD trajectory and the
final weights; prints one row per quantity and exits 1 on any failure (2 on a malformed file).

  /usr/bin/python3 tests/python/test_parity.py parity.h5
  /usr/bin/python3 tests/python/test_parity.py --self-check   # fixtures from make_parity_fixture.py
"""
import argparse
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import recforge_ref as ref  # noqa: E402

# Tolerances read ||a - b|| <= ATOL + RTOL * ||b|| (norms over the whole tensor).
# loss0 and gradients: fp32 with a different summation order accumulates ~1e-7 relative per op
# (unit roundoff 6e-8); a few dozen ops deep and with reductions of a few hundred terms stays < 1e-5.
RTOL_GRAD = 1e-5
# A gradient that is exactly zero in the reference (dead ReLU unit) must be zero here too.
ATOL_GRAD = 0.0
# Trajectory losses: each SGD step feeds the previous step's rounding differences forward and the
# training map amplifies them mildly; over 20 steps they grow to ~1e-6..1e-5, so 1e-4 relative.
RTOL_TRAJ = 1e-4
# Final weights: ||a - b|| <= RTOL_FINAL_DISP * ||b - p0|| + RTOL_FINAL * ||b||. The update term
# allows the gradients' ~1e-5 agreement drifting over the run; the weight term allows fp32 rounding
# of every weight at every step (~6e-8 each, 20 steps) with margin. Measuring against the update
# (not only the weight) catches a missed or doubled step that a weight-relative check would dilute.
RTOL_FINAL_DISP = 1e-3
RTOL_FINAL = 1e-5


def rel(a, b):
    nb = float(np.linalg.norm(b))
    d = float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
    return d / nb if nb > 0 else (0.0 if d == 0 else float("inf")), d, nb


class Report:
    def __init__(self):
        self.rows = []
        self.failed = 0

    def add(self, what, name, err, tol, ok, extra=""):
        self.rows.append((what, name, err, tol, ok, extra))
        self.failed += 0 if ok else 1

    def print(self):
        w = max(len(r[1]) for r in self.rows)
        print(f"{'check':<8} {'name':<{w}} {'rel err':>10} {'tol':>8}  result  note")
        for what, name, err, tol, ok, extra in self.rows:
            print(f"{what:<8} {name:<{w}} {err:>10.3e} {tol:>8.1e}  {'ok' if ok else 'FAIL':<6}  {extra}")
        print(f"{len(self.rows) - self.failed}/{len(self.rows)} checks passed")


def as_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def run_parity(path):
    rep = Report()
    with h5py.File(path, "r") as f:
        cfg = ref.config_from_attrs(f.attrs)
        lr = float(np.asarray(f.attrs["lr"]).reshape(-1)[0])
        steps = int(np.asarray(f.attrs["steps"]).reshape(-1)[0])
        for key in ("dense_optimizer", "sparse_optimizer"):
            if key in f.attrs and as_str(f.attrs[key]) != "sgd":
                raise ValueError(f"{path}: {key}={as_str(f.attrs[key])!r}; the parity dump trains with sgd")
        T = len(cfg["table_sizes"])
        batches = [ref.read_batch(f[f"batches/{k}"], T) for k in range(steps)]
        # sparse=True: the same path the benchmarks train with; gradients are densified to compare.
        model = ref.RecModel(cfg, sparse=True)
        model.load_params(f["params"])
        names = [n for n, _ in model.named_parameters()]
        missing = [n for n in names if n not in f["grads"] or n not in f["final_params"]]
        if missing:
            raise KeyError(f"{path}: grads/ or final_params/ lacks {missing}")
        extra = sorted(set(f["params"].keys()) - set(names))
        if extra:
            raise KeyError(f"{path}: params/ holds names the model does not have: {extra}")
        loss0_ref = np.asarray(f["loss0"], np.float32).reshape(-1)
        grads_ref = {n: np.asarray(f[f"grads/{n}"]) for n in names}
        losses_ref = np.asarray(f["losses"], np.float32).reshape(-1)
        final_ref = {n: np.asarray(f[f"final_params/{n}"]) for n in names}
        params0 = {n: np.asarray(f[f"params/{n}"]) for n in names}
    if losses_ref.shape != (steps,):
        raise ValueError(f"{path}: losses has shape {losses_ref.shape}, expected ({steps},)")

    print(f"{path}: {cfg['model_type']} tables {cfg['table_sizes']} dim {cfg['embedding_dim']} "
          f"bottom {cfg['bottom_mlp']} top {cfg['top_mlp']} pooling {cfg['pooling']} "
          f"self_interaction {cfg['self_interaction']} cross {cfg['cross_layers']}x rank {cfg['cross_rank']} "
          f"| batch {batches[0][0].shape[0]}, {steps} steps, sgd lr {lr:g}")

    # Batch 0: loss and gradients
    labels, dense, idx, off = batches[0]
    model.zero_grad()
    loss0 = ref.bce_loss(model(dense, idx, off), labels)
    loss0.backward()
    e, _, _ = rel([float(loss0)], loss0_ref)
    rep.add("loss0", "loss0", e, RTOL_GRAD, e <= RTOL_GRAD, f"pytorch {float(loss0):.7f} dump {loss0_ref[0]:.7f}")
    for n, p in model.named_parameters():
        g = p.grad.to_dense() if p.grad.is_sparse else p.grad
        g = g.numpy()
        if g.shape != grads_ref[n].shape:
            raise ValueError(f"{path}: grads/{n} shape {grads_ref[n].shape}, expected {g.shape}")
        e, d, nb = rel(g, grads_ref[n])
        note = ""
        if n.startswith("embeddings."):
            # Rows the batch never touched must be exactly zero in the dump.
            untouched = np.abs(g).sum(1) == 0
            stray = int(np.count_nonzero(grads_ref[n][untouched]))
            note = f"{int((~untouched).sum())} rows touched" + (f", {stray} nonzeros off them" if stray else "")
            ok = d <= ATOL_GRAD + RTOL_GRAD * nb and stray == 0
        else:
            ok = d <= ATOL_GRAD + RTOL_GRAD * nb
        rep.add("grad", n, e, RTOL_GRAD, ok, note)

    # Trajectory from the initial weights
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(torch.from_numpy(params0[n]))
    dense_opt = ref.make_dense_optimizer("sgd", model.dense_parameters(), lr, {})
    sparse_opt = ref.make_sparse_optimizer("sgd", model.sparse_parameters(), lr, {})
    losses = []
    for labels, dense, idx, off in batches:
        dense_opt.zero_grad()
        sparse_opt.zero_grad()
        loss = ref.bce_loss(model(dense, idx, off), labels)
        loss.backward()
        losses.append(float(loss))
        dense_opt.step()
        sparse_opt.step()
    losses = np.asarray(losses, np.float32)
    step_err = np.abs(losses.astype(np.float64) - losses_ref) / np.abs(losses_ref)
    worst = int(np.argmax(step_err))
    rep.add("losses", f"steps 0..{steps - 1}", float(step_err[worst]), RTOL_TRAJ, bool(step_err.max() <= RTOL_TRAJ),
            f"worst step {worst}; loss {losses_ref[0]:.5f} -> {losses_ref[-1]:.5f}")
    if abs(float(losses_ref[0]) - float(loss0_ref[0])) > RTOL_GRAD * abs(float(loss0_ref[0])):
        rep.add("losses", "losses[0] vs loss0", abs(losses_ref[0] - loss0_ref[0]) / abs(loss0_ref[0]),
                RTOL_GRAD, False, "the dump's step-0 loss differs from its own loss0")
    for n, p in model.named_parameters():
        a = p.detach().numpy()
        e, d, nb = rel(a, final_ref[n])
        p0 = params0[n].astype(np.float64)
        e_disp, _, n_disp = rel(a - p0, final_ref[n] - p0)
        ok = d <= RTOL_FINAL_DISP * n_disp + RTOL_FINAL * nb
        note = f"err vs update {e_disp:.2e}"
        if n.startswith("embeddings."):
            # Rows no batch touched must come back bit-identical.
            never = np.all(a == params0[n], axis=1)
            changed = int(np.count_nonzero(np.any(final_ref[n][never] != params0[n][never], axis=1)))
            note += f"; {int(never.sum())} untouched rows" + (f", {changed} changed in dump" if changed else "")
            ok = ok and changed == 0
        # the tol column shows the combined bound relative to ||b||, like the err column
        rep.add("final", n, e, (RTOL_FINAL_DISP * n_disp + RTOL_FINAL * nb) / nb if nb else 0.0, ok, note)

    rep.print()
    return rep.failed == 0


def self_check():
    """Fixtures from PyTorch in fp64 must pass; deliberately perturbed fixtures must fail."""
    maker = os.path.join(HERE, "make_parity_fixture.py")
    cases = [(["--model", "dlrm"], True), (["--model", "dlrm", "--pooling", "mean", "--self-interaction", "1"], True),
             (["--model", "dcnv2"], True), (["--model", "dcnv2", "--cross-rank", "4"], True)]
    cases += [(["--model", "dlrm", "--perturb", p], False)
              for p in ("loss0", "grad", "emb_grad_row", "loss_step", "final")]
    cases += [(["--model", "dcnv2", "--cross-rank", "4", "--perturb", "grad"], False)]
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (args, should_pass) in enumerate(cases):
            path = os.path.join(tmp, f"parity_{i}.h5")
            subprocess.run([sys.executable, maker, path] + args, check=True)
            passed = run_parity(path)
            verdict = "as expected" if passed == should_pass else "UNEXPECTED"
            print(f"self-check {' '.join(args)}: {'passed' if passed else 'failed'} ({verdict})\n")
            bad += passed != should_pass
    print(f"self-check: {len(cases) - bad}/{len(cases)} cases behaved as expected")
    return bad == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", nargs="?", help="parity.h5 written by recforge")
    ap.add_argument("--self-check", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)  # deterministic reduction order run to run
    if args.self_check:
        return 0 if self_check() else 1
    if not args.path:
        ap.error("give a parity.h5 path or --self-check")
    try:
        return 0 if run_parity(args.path) else 1
    except (KeyError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
