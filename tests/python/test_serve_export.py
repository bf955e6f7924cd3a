#!/usr/bin/env python3
"""Independent consumers of the recforge serving export (docs/export_format.md).

numpy mode: reads the HDF5 export with h5py, turns raw TSV rows into inputs with the stored feature
pipeline (hashing, log transform), runs the DLRM/DCNv2 forward in numpy (float64) and compares with the
scores `recforge predict` wrote. onnx mode: feeds the same inputs to the ONNX export in onnxruntime.

usage: test_serve_export.py numpy EXPORT.h5 ROWS.tsv SCORES.txt
       test_serve_export.py onnx EXPORT.h5 MODEL.onnx ROWS.tsv SCORES.txt
Exits 77 (skipped) when numpy/h5py (or onnxruntime in onnx mode) cannot be imported.
"""
import math
import sys

try:
    import numpy as np
    import h5py
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)

MASK64 = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for c in data:
        h = ((h ^ c) * 0x100000001B3) & MASK64
    return h


class Export:
    def __init__(self, path):
        f = h5py.File(path, "r")
        a = f.attrs
        assert a["format"] == "recforge-export", a["format"]
        assert int(a["schema_version"]) == 1, a["schema_version"]
        self.type = a["model_type"]
        self.dim = int(a["embedding_dim"])
        self.self_interaction = bool(a["self_interaction"])
        self.cross_layers = int(a["cross_layers"])
        self.cross_rank = int(a["cross_rank"])
        self.pooling = a["pooling"]
        self.bottom_n = len(a["bottom_mlp"])
        self.top_n = len(a["top_mlp"])
        fp = f["feature_pipeline"].attrs
        self.kinds = [str(k) for k in fp["column_kinds"]]
        assert fp["dense_transform"] == "log1p_clamp0"
        self.hex = fp["token_encoding"] == "hex"
        self.max_hex = int(fp["max_hex_digits"])
        self.buckets = [int(b) for b in fp["hash_buckets"]]
        self.sep = fp["multi_hot_separator"]
        self.dense = {k: np.asarray(v, dtype=np.float64) for k, v in f["dense"].items()}
        storage = a["embedding_storage"]
        self.tables = []
        for t in range(int(a["num_tables"])):
            g = f["embeddings"][str(t)]
            if storage in ("fp32", "fp16"):
                w = np.asarray(g["weight"]).astype(np.float32)
            else:  # int8 row-wise: value = q * scale + bias (fp32, as the C++ reader)
                q = np.asarray(g["weight_q"]).astype(np.float32)
                w = q * np.asarray(g["scale"], np.float32)[:, None] + np.asarray(g["bias"], np.float32)[:, None]
            self.tables.append(w.astype(np.float64))

    def token_row(self, tok, buckets):
        if self.hex:
            assert 1 <= len(tok) <= self.max_hex, tok
            h = splitmix64(int(tok, 16))
        else:
            h = fnv1a64(tok.encode())
        return 1 + h % (buckets - 1)

    def parse(self, path):
        """Rows -> (dense [B, nd] float32, bags: list per sparse feature of lists of rows, multi flags)."""
        lines = [l.rstrip("\r\n") for l in open(path) if l.strip("\r\n") != ""]
        kinds = self.kinds
        if len(lines) and len(lines[0].split("\t")) == len(kinds) - 1 and "label" in kinds:
            kinds = [k for k in kinds if k != "label"]
        multi = [k == "multi" for k in kinds if k in ("cat", "multi")]
        dense, bags = [], [[] for _ in multi]
        for line in lines:
            fields = line.split("\t")
            assert len(fields) == len(kinds), (len(fields), len(kinds))
            row, f = [], 0
            for kind, v in zip(kinds, fields):
                if kind == "dense":
                    x = float(v) if v else 0.0
                    row.append(np.float32(math.log1p(x)) if x > 0 else np.float32(0.0))
                elif kind == "cat":
                    bags[f].append([self.token_row(v, self.buckets[f])] if v else [0])
                    f += 1
                elif kind == "multi":
                    bags[f].append([self.token_row(t, self.buckets[f]) for t in v.split(self.sep)] if v else [0])
                    f += 1
            dense.append(row)
        return np.asarray(dense, np.float32), bags, multi

    def forward(self, dense, bags):
        W = self.dense
        x = dense.astype(np.float64)
        for i in range(self.bottom_n):
            x = np.maximum(x @ W[f"bottom_mlp.{i}.weight"].T + W[f"bottom_mlp.{i}.bias"], 0.0)
        pooled = []
        for t, rows in enumerate(bags):
            e = np.stack([self.tables[t][r].sum(0) / (len(r) if self.pooling == "mean" else 1) for r in rows])
            pooled.append(e)
        if self.type == "dlrm":
            Z = np.stack([x] + pooled, axis=1)  # [B, F, d]
            G = Z @ Z.transpose(0, 2, 1)
            F = Z.shape[1]
            pairs = [(i, j) for i in range(F) for j in range(i + 1 if self.self_interaction else i)]
            h = np.concatenate([x, np.stack([G[:, i, j] for i, j in pairs], axis=1)], axis=1)
        else:
            x0 = np.concatenate([x] + pooled, axis=1)
            h = x0
            for l in range(self.cross_layers):
                if self.cross_rank > 0:
                    z = (h @ W[f"cross.{l}.v"].T) @ W[f"cross.{l}.u"].T
                else:
                    z = h @ W[f"cross.{l}.weight"].T
                h = x0 * (z + W[f"cross.{l}.bias"]) + h
        for i in range(self.top_n):
            h = h @ W[f"top_mlp.{i}.weight"].T + W[f"top_mlp.{i}.bias"]
            if i + 1 < self.top_n:
                h = np.maximum(h, 0.0)
        return 1.0 / (1.0 + np.exp(-h[:, 0]))


def compare(name, got, want, abs_tol, rel_tol, reason):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{name}: {got.shape} scores vs {want.shape}"
    err = np.abs(got - want)
    bound = abs_tol + rel_tol * np.abs(want)
    worst = int(np.argmax(err / bound))
    print(f"{name}: {len(got)} rows, max |diff| {err.max():.3g}, worst row {worst}: {got[worst]:.9g} vs {want[worst]:.9g}"
          f" (tolerance {abs_tol:g} + {rel_tol:g} * |ref|: {reason})")
    if not np.all(err <= bound):
        print(f"FAIL: {name}: {(err > bound).sum()} rows outside the tolerance")
        sys.exit(1)


def main():
    mode = sys.argv[1]
    if mode == "numpy":
        export, rows, scores = sys.argv[2:5]
        ex = Export(export)
        dense, bags, _ = ex.parse(rows)
        want = np.loadtxt(scores, dtype=np.float64, ndmin=1)
        got = ex.forward(dense, bags)
        # recforge runs fp32 with its own summation order; the reference is float64.
        compare("numpy vs recforge predict", got, want, 1e-6, 1e-5, "fp32 forward vs a float64 reference")
    elif mode == "onnx":
        try:
            import onnxruntime as ort
        except ImportError as e:
            print(f"skipped: {e}")
            sys.exit(77)
        export, onnx_path, rows, scores = sys.argv[2:6]
        ex = Export(export)
        dense, bags, multi = ex.parse(rows)
        feeds = {"dense": dense}
        for t, (rows_t, is_multi) in enumerate(zip(bags, multi)):
            if not is_multi:
                feeds[f"sparse_{t}"] = np.asarray([r[0] for r in rows_t], np.int64)
                continue
            L = max(len(r) for r in rows_t)
            idx = np.zeros((len(rows_t), L), np.int64)
            mask = np.zeros((len(rows_t), L), np.float32)
            for b, r in enumerate(rows_t):
                idx[b, : len(r)] = r
                mask[b, : len(r)] = 1.0
            feeds[f"sparse_{t}"], feeds[f"sparse_{t}_mask"] = idx, mask
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        got = sess.run(["probability"], feeds)[0][:, 0]
        want = np.loadtxt(scores, dtype=np.float64, ndmin=1)
        # Both fp32; onnxruntime's GEMMs sum in another order than OpenBLAS.
        compare("onnxruntime vs recforge predict", got, want, 1e-6, 1e-5, "fp32 vs fp32, different summation order")
    else:
        print(__doc__)
        sys.exit(2)
    print("OK")


if __name__ == "__main__":
    main()
