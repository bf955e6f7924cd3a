#!/usr/bin/env bash
# recforge vs PyTorch on MovieLens-100K CTR: the same config, initial weights, batches (file order) and
# optimizers on both sides; prints a table and one JSON line. Target: |auc diff| <= 0.003, both above
# the logistic-regression baseline 0.696 (../shared/data/README.md).
#
#   bench/ml100k_compare.sh [extra --section.key=value overrides for both sides]
# Env: BUILD_DIR (default build), CONFIG (default configs/dlrm_ml100k.ini), PYTHON (default
# /usr/bin/python3, needs torch, numpy, h5py), WORK (default runs/ml100k_compare).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
CONFIG=${CONFIG:-configs/dlrm_ml100k.ini}
PYTHON=${PYTHON:-/usr/bin/python3}
WORK=${WORK:-runs/ml100k_compare}
BASELINE=0.696

if [[ ! -x "$BUILD_DIR/recforge" || ! -x "$BUILD_DIR/encode_dataset" ]]; then
  [[ -f "$BUILD_DIR/build.ninja" || -f "$BUILD_DIR/Makefile" ]] || cmake -S . -B "$BUILD_DIR" -G Ninja
fi
cmake --build "$BUILD_DIR" --target recforge encode_dataset -j 2 >/dev/null
mkdir -p "$WORK"

now() { date +%s.%N; }
t0=$(now)
"$BUILD_DIR/encode_dataset" --config "$CONFIG" "$@" --out "$WORK/data.h5"
t1=$(now)
"$BUILD_DIR/recforge" train --config "$CONFIG" --train.out_dir="$WORK/recforge" "$@" \
  >"$WORK/recforge.out" 2>"$WORK/recforge.err" || { cat "$WORK/recforge.err" >&2; exit 1; }
t2=$(now)
"$PYTHON" bench/ml100k_pytorch.py "$WORK/data.h5" --quiet >"$WORK/pytorch.out"
t3=$(now)

rf_line=$(grep -E '^test auc=' "$WORK/recforge.out" | tail -1)
pt_line=$(grep -E '^pytorch test auc=' "$WORK/pytorch.out" | tail -1)
[[ -n "$rf_line" && -n "$pt_line" ]] || { echo "missing result line: '$rf_line' '$pt_line'" >&2; exit 1; }
field() { sed -E "s/.*$1=([-0-9.eE+na]+).*/\1/" <<<"$2"; }
rf_auc=$(field auc "$rf_line"); rf_ll=$(field logloss "$rf_line")
pt_auc=$(field auc "$pt_line"); pt_ll=$(field logloss "$pt_line")

"$PYTHON" - "$rf_auc" "$rf_ll" "$pt_auc" "$pt_ll" "$BASELINE" \
  "$t0" "$t1" "$t2" "$t3" <<'PY'
import json, sys
rf_auc, rf_ll, pt_auc, pt_ll, base, t0, t1, t2, t3 = map(float, sys.argv[1:])
enc_s, rf_s, pt_s = t1 - t0, t2 - t1, t3 - t2
diff = rf_auc - pt_auc
print(f"{'':<22}{'test auc':>10}{'logloss':>10}{'seconds':>9}")
print(f"{'recforge':<22}{rf_auc:>10.5f}{rf_ll:>10.5f}{rf_s:>9.1f}")
print(f"{'pytorch (same init)':<22}{pt_auc:>10.5f}{pt_ll:>10.5f}{pt_s:>9.1f}")
print(f"{'difference':<22}{diff:>+10.5f}{rf_ll - pt_ll:>+10.5f}")
print(f"{'logistic regression':<22}{base:>10.3f}")
ok = abs(diff) <= 0.003 and rf_auc > base and pt_auc > base
print(f"target |auc diff| <= 0.003 and both > {base}: {'met' if ok else 'NOT met'} (encode {enc_s:.1f} s)")
print(json.dumps({"recforge_auc": rf_auc, "pytorch_auc": pt_auc, "auc_diff": round(diff, 6),
                  "recforge_logloss": rf_ll, "pytorch_logloss": pt_ll, "baseline_auc": base,
                  "recforge_s": round(rf_s, 2), "pytorch_s": round(pt_s, 2)}))
PY
