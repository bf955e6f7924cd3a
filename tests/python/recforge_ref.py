"""PyTorch reference for recforge's models, optimizers and metrics.

The parity test, its fixture writer and the PyTorch benchmarks all build models from here, so the
one definition of "what recforge computes" lives in one file. Parameter names equal the HDF5 names.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------
# Config (HDF5 root attributes)

def _attr_str(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):  # a 1-element string array
        return _attr_str(v.reshape(-1)[0])
    return str(v)


def _attr_ints(v):
    return [int(x) for x in np.atleast_1d(np.asarray(v))]


def _attr_int(v):
    return int(np.asarray(v).reshape(-1)[0])


def _attr_float(v):
    return float(np.asarray(v).reshape(-1)[0])


def config_from_attrs(attrs):
    """Model hyper-parameters from an h5py attribute set (or any mapping)."""
    cfg = {
        "model_type": _attr_str(attrs["model_type"]).lower(),
        "embedding_dim": _attr_int(attrs["embedding_dim"]),
        "bottom_mlp": _attr_ints(attrs["bottom_mlp"]),
        "top_mlp": _attr_ints(attrs["top_mlp"]),
        "table_sizes": _attr_ints(attrs["table_sizes"]),
        "num_dense": _attr_int(attrs["num_dense"]),
        "self_interaction": _attr_int(attrs["self_interaction"]) if "self_interaction" in attrs else 0,
        "pooling": _attr_str(attrs["pooling"]).lower() if "pooling" in attrs else "sum",
        "cross_layers": _attr_int(attrs["cross_layers"]) if "cross_layers" in attrs else 0,
        "cross_rank": _attr_int(attrs["cross_rank"]) if "cross_rank" in attrs else 0,
    }
    check_config(cfg)
    return cfg


def check_config(cfg):
    if cfg["model_type"] not in ("dlrm", "dcnv2"):
        raise ValueError(f"model_type: expected 'dlrm' or 'dcnv2', got {cfg['model_type']!r}")
    if cfg["pooling"] not in ("sum", "mean"):
        raise ValueError(f"pooling: expected 'sum' or 'mean', got {cfg['pooling']!r}")
    if not cfg["bottom_mlp"] or cfg["bottom_mlp"][-1] != cfg["embedding_dim"]:
        raise ValueError(f"bottom_mlp {cfg['bottom_mlp']}: last width must equal embedding_dim "
                         f"{cfg['embedding_dim']}")
    if not cfg["top_mlp"] or cfg["top_mlp"][-1] != 1:
        raise ValueError(f"top_mlp {cfg['top_mlp']}: last width must be 1 (the logit)")


def config_to_attrs(cfg, attrs):
    """Write a config as HDF5 root attributes (the layout recforge writes)."""
    for k in ("model_type", "pooling"):
        attrs[k] = cfg[k]
    for k in ("embedding_dim", "num_dense", "self_interaction", "cross_layers", "cross_rank"):
        attrs[k] = np.int64(cfg[k])
    for k in ("bottom_mlp", "top_mlp", "table_sizes"):
        attrs[k] = np.asarray(cfg[k], dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# Models

class CrossLayer(nn.Module):
    """DCNv2 cross layer: x_{l+1} = x0 * (W x_l + b) + x_l, W full [D0, D0] or U V with rank r."""

    def __init__(self, d0, rank):
        super().__init__()
        self.rank = rank
        if rank > 0:
            self.v = nn.Parameter(torch.empty(rank, d0))  # [r, D0]
            self.u = nn.Parameter(torch.empty(d0, rank))  # [D0, r]
            nn.init.uniform_(self.v, -1.0 / d0 ** 0.5, 1.0 / d0 ** 0.5)
            nn.init.uniform_(self.u, -1.0 / rank ** 0.5, 1.0 / rank ** 0.5)
        else:
            self.weight = nn.Parameter(torch.empty(d0, d0))  # [D0, D0]
            nn.init.uniform_(self.weight, -1.0 / d0 ** 0.5, 1.0 / d0 ** 0.5)
        self.bias = nn.Parameter(torch.zeros(d0))  # [D0]

    def forward(self, x0, xl):
        if self.rank > 0:
            h = (xl @ self.v.t()) @ self.u.t()
        else:
            h = xl @ self.weight.t()
        return x0 * (h + self.bias) + xl


def _mlp(in_dim, widths):
    layers = nn.ModuleList()
    for w in widths:
        layers.append(nn.Linear(in_dim, w))
        in_dim = w
    return layers


def interaction_pairs(num_features, self_interaction):
    """Row-major (i, j) pairs of the DLRM dot interaction, as the facebookresearch reference lists them."""
    offset = 1 if self_interaction else 0
    li = [i for i in range(num_features) for j in range(i + offset)]
    lj = [j for i in range(num_features) for j in range(i + offset)]
    return li, lj


class RecModel(nn.Module):
    """DLRM (dot interaction) or DCNv2 as recforge defines them; forward returns logits [B]."""

    def __init__(self, cfg, sparse=False):
        super().__init__()
        check_config(cfg)
        self.cfg = dict(cfg)
        d = cfg["embedding_dim"]
        T = len(cfg["table_sizes"])
        self.bottom_mlp = _mlp(cfg["num_dense"], cfg["bottom_mlp"])
        self.embeddings = nn.ModuleList(
            nn.EmbeddingBag(rows, d, mode=cfg["pooling"], sparse=sparse) for rows in cfg["table_sizes"])
        if cfg["model_type"] == "dlrm":
            li, lj = interaction_pairs(T + 1, cfg["self_interaction"])
            self.register_buffer("li", torch.tensor(li, dtype=torch.long), persistent=False)
            self.register_buffer("lj", torch.tensor(lj, dtype=torch.long), persistent=False)
            top_in = d + len(li)
        else:
            d0 = d * (T + 1)
            self.cross = nn.ModuleList(CrossLayer(d0, cfg["cross_rank"]) for _ in range(cfg["cross_layers"]))
            top_in = d0
        self.top_mlp = _mlp(top_in, cfg["top_mlp"])

    def forward(self, dense, indices, offsets):
        """dense [B, nd] f32; indices[t] [nnz_t] int64; offsets[t] [B+1] int64 with offsets[t][-1] == nnz_t."""
        x = dense
        for layer in self.bottom_mlp:  # ReLU after every bottom layer, the last included
            x = F.relu(layer(x))
        # offsets[:-1] is torch's "start of each bag" convention; the trailing nnz closes the last bag.
        embs = [bag(idx, off[:-1]) for bag, idx, off in zip(self.embeddings, indices, offsets)]
        if self.cfg["model_type"] == "dlrm":
            z = torch.stack([x] + embs, dim=1)  # [B, F, d]
            zz = torch.bmm(z, z.transpose(1, 2))  # [B, F, F]
            r = torch.cat([x, zz[:, self.li, self.lj]], dim=1)  # [B, d + pairs]
        else:
            x0 = torch.cat([x] + embs, dim=1)  # [B, D0]
            r = x0
            for layer in self.cross:
                r = layer(x0, r)
        n = len(self.top_mlp)
        for i, layer in enumerate(self.top_mlp):
            r = layer(r)
            if i + 1 < n:
                r = F.relu(r)
        return r.squeeze(1)  # [B]

    def load_params(self, group):
        """Copy weights from an HDF5 group (name -> dataset); every parameter must be present."""
        state = {}
        for name, p in self.named_parameters():
            if name not in group:
                raise KeyError(f"{group.name}: missing parameter {name}")
            a = np.asarray(group[name])
            if tuple(a.shape) != tuple(p.shape):
                raise ValueError(f"{group.name}/{name}: shape {a.shape}, model expects {tuple(p.shape)}")
            state[name] = torch.from_numpy(a).to(p.dtype)
        with torch.no_grad():
            for name, p in self.named_parameters():
                p.copy_(state[name])

    def dense_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("embeddings.")]

    def sparse_parameters(self):
        return [bag.weight for bag in self.embeddings]


def bce_loss(logits, labels):
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="mean")


# ----------------------------------------------------------------------------------------------
# Batches

def check_offsets(offsets, nnz, batch, where):
    if offsets.shape != (batch + 1,):
        raise ValueError(f"{where}: offsets shape {offsets.shape}, expected ({batch + 1},)")
    if offsets[0] != 0 or offsets[-1] != nnz or np.any(np.diff(offsets) < 0):
        raise ValueError(f"{where}: offsets must start at 0, be non-decreasing and end at nnz={nnz}")


def read_batch(group, num_tables, dtype=torch.float32):
    """One batch group: labels [B], dense [B, nd], indices_t [nnz], offsets_t [B+1]."""
    labels = torch.from_numpy(np.asarray(group["labels"], dtype=np.float32)).to(dtype)
    dense = torch.from_numpy(np.asarray(group["dense"], dtype=np.float32)).to(dtype)
    indices, offsets = [], []
    for t in range(num_tables):
        idx = np.asarray(group[f"indices_{t}"], dtype=np.int64)
        off = np.asarray(group[f"offsets_{t}"], dtype=np.int64)
        check_offsets(off, len(idx), len(labels), f"{group.name}/offsets_{t}")
        indices.append(torch.from_numpy(idx))
        offsets.append(torch.from_numpy(off))
    return labels, dense, indices, offsets


def slice_split(split, begin, end):
    """Rows [begin, end) of a split held in memory as numpy arrays (see load_split)."""
    indices, offsets = [], []
    for idx, off in zip(split["indices"], split["offsets"]):
        lo, hi = off[begin], off[end]
        indices.append(torch.from_numpy(idx[lo:hi]))
        offsets.append(torch.from_numpy(off[begin:end + 1] - lo))
    return (torch.from_numpy(split["labels"][begin:end]), torch.from_numpy(split["dense"][begin:end]),
            indices, offsets)


def load_split(group, num_tables):
    n = group["labels"].shape[0]
    split = {"labels": np.asarray(group["labels"], dtype=np.float32),
             "dense": np.asarray(group["dense"], dtype=np.float32), "indices": [], "offsets": []}
    for t in range(num_tables):
        idx = np.asarray(group[f"indices_{t}"], dtype=np.int64)
        off = np.asarray(group[f"offsets_{t}"], dtype=np.int64)
        check_offsets(off, len(idx), n, f"{group.name}/offsets_{t}")
        split["indices"].append(idx)
        split["offsets"].append(off)
    return split


# ----------------------------------------------------------------------------------------------
# Optimizers

class RowwiseAdagrad(torch.optim.Optimizer):
    """recforge's sparse row-wise Adagrad (FBGEMM EXACT_ROWWISE_ADAGRAD), one fp32 accumulator per row.

    For each row r touched in the batch, with g_r the gradient summed over all lookups of r:
    acc[r] += mean(g_r^2); w_r -= lr * g_r / (sqrt(acc[r]) + eps). With weight_decay (FBGEMM's L2
    mode, touched rows only) g_r + wd * w_r takes g_r's place. Rows not touched are not written at
    all, so they stay bit-identical. Needs sparse gradients (EmbeddingBag(sparse=True)): a dense
    gradient cannot tell "touched with a zero gradient" from "not touched".
    """

    def __init__(self, params, lr, eps=1e-8, initial_accumulator_value=0.0, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, eps=eps, init=initial_accumulator_value, weight_decay=weight_decay))
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["acc"] = torch.full((p.shape[0],), float(group["init"]), dtype=torch.float32)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            wd = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise ValueError("RowwiseAdagrad needs sparse gradients (EmbeddingBag(sparse=True))")
                g = p.grad.coalesce()  # sums duplicate rows: g_r over all lookups of r
                rows = g.indices()[0]
                vals = g.values()  # [touched, dim]
                w = p[rows]
                if wd != 0:
                    vals = vals + wd * w
                acc = self.state[p]["acc"]
                acc_rows = acc[rows] + vals.pow(2).mean(dim=1)
                acc[rows] = acc_rows
                mult = (group["lr"] / (acc_rows.sqrt() + group["eps"])).unsqueeze(1)  # [touched, 1]
                p[rows] = w - mult * vals


def make_dense_optimizer(name, params, lr, hp):
    wd = hp.get("weight_decay", 0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=hp.get("adagrad_eps", 1e-10), weight_decay=wd,
                                   initial_accumulator_value=hp.get("adagrad_init", 0.0))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(hp.get("beta1", 0.9), hp.get("beta2", 0.999)),
                                eps=hp.get("eps", 1e-8), weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(hp.get("beta1", 0.9), hp.get("beta2", 0.999)),
                                 eps=hp.get("eps", 1e-8), weight_decay=wd)
    raise ValueError(f"dense_optimizer: expected sgd|adagrad|adam|adamw, got {name!r}")


def make_sparse_optimizer(name, params, lr, hp):
    """Optimizers for tables with sparse gradients; both only write the touched rows. The dense
    optimizer's weight_decay does not reach the tables; sparse_weight_decay does (row-wise Adagrad)."""
    if name == "sgd":
        if hp.get("sparse_weight_decay", 0.0):
            raise ValueError("sparse sgd has no weight decay in recforge (FBGEMM EXACT_SGD)")
        return torch.optim.SGD(params, lr=lr)
    if name == "rowwise_adagrad":
        return RowwiseAdagrad(params, lr=lr, eps=hp.get("adagrad_eps", 1e-8),
                              initial_accumulator_value=hp.get("adagrad_init", 0.0),
                              weight_decay=hp.get("sparse_weight_decay", 0.0))
    raise ValueError(f"sparse_optimizer: expected sgd|rowwise_adagrad, got {name!r}")


# ----------------------------------------------------------------------------------------------
# Metrics

def roc_auc(labels, scores):
    """Exact ROC AUC, tied scores get their average rank (the Mann-Whitney U form, as sklearn)."""
    labels = np.asarray(labels).reshape(-1) > 0.5
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC is undefined with only one class in the labels")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    # Tie groups: [starts[k], ends[k]) in sorted order share the average of ranks starts+1 .. ends.
    boundaries = np.flatnonzero(np.diff(s)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [s.size]])
    avg_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(avg_rank, ends - starts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss_from_logits(labels, logits):
    """Mean binary cross-entropy, computed from logits in fp64 (no probability clipping needed)."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    # softplus(z) - y z, written to stay finite for large |z|
    return float(np.mean(np.maximum(z, 0) - y * z + np.log1p(np.exp(-np.abs(z)))))
