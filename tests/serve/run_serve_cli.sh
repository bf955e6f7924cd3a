#!/usr/bin/env bash
# End-to-end serving check of the recforge command, and the fixture the Python consumers read:
# synth -> train -> export (fp32, int8, fp16, onnx) -> predict, for DLRM (Criteo rows), DCNv2 low rank,
# and a multi-hot TSV with mean pooling. Then the error paths: exit 2 for bad input.
# usage: run_serve_cli.sh RECFORGE OUT_DIR
set -euo pipefail
RF=$1
OUT=$2
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$OUT" && mkdir -p "$OUT" && cd "$OUT"

fail() { echo "FAIL: $*" >&2; exit 1; }

# Scores of `predict` must equal the trainer's own evaluation on the same rows: same AUC to 6 digits.
check_auc() {  # train_log predict_log
  local t p
  t=$(grep -o 'test auc=[0-9.]*' "$1" | tail -1 | cut -d= -f2)
  p=$(grep -o 'auc=[0-9.]*' "$2" | tail -1 | cut -d= -f2)
  awk -v t="$t" -v p="$p" 'BEGIN { d = t - p; if (d < 0) d = -d; exit !(d < 1e-5) }' ||
    fail "predict auc $p differs from the trainer's test auc $t"
  echo "trainer test auc=$t, predict auc=$p"
}

run_model() {  # name config extra-args...
  local name=$1 cfg=$2
  shift 2
  local common=(--config "$cfg" --data.train="$DATA/train.tsv" --data.test="$DATA/test.tsv" --train.out_dir="$name/run" "$@")
  "$RF" train "${common[@]}" > "$name.train.log" 2> "$name.train.err"
  "$RF" export "${common[@]}" --export.checkpoint="$name/run" --export.out="$name/model.h5"
  "$RF" export "${common[@]}" --export.checkpoint="$name/run/params.h5" --export.out="$name/model_int8.h5" --export.quantize=int8 | tee "$name.int8.log"
  "$RF" export "${common[@]}" --export.checkpoint="$name/run" --export.out="$name/model_fp16.h5" --export.quantize=fp16 | tee "$name.fp16.log"
  "$RF" export "${common[@]}" --export.checkpoint="$name/run" --export.out="$name/model.onnx" --export.format=onnx
  "$RF" predict --predict.model="$name/model.h5" --predict.input="$DATA/test.tsv" --predict.out="$name/scores.txt" 2> "$name.predict.log"
  "$RF" predict --predict.model="$name/model_int8.h5" --predict.input="$DATA/test.tsv" --predict.out="$name/scores_int8.txt" 2>/dev/null
  check_auc "$name.train.log" "$name.predict.log"
  cp "$DATA/test.tsv" "$name/rows.tsv"
  [ "$(wc -l < "$name/scores.txt")" -eq "$(wc -l < "$DATA/test.tsv")" ] || fail "$name: one score per row expected"
}

# Criteo-format rows for DLRM and DCNv2.
DATA=criteo
mkdir -p $DATA
"$RF" synth --config "$HERE/serve_dlrm.ini" --data.train=$DATA/train.tsv --data.test=$DATA/test.tsv > /dev/null
run_model dlrm "$HERE/serve_dlrm.ini"
run_model dcnv2 "$HERE/serve_dlrm.ini" --model.type=dcnv2 --model.cross_layers=2 --model.cross_rank=4 --model.bottom_mlp=16,8

# Rows without the label column score the same.
cut -f2- $DATA/test.tsv > dlrm/rows_nolabel.tsv
"$RF" predict --predict.model=dlrm/model.h5 --predict.input=dlrm/rows_nolabel.tsv --predict.out=dlrm/scores_nolabel.txt 2>/dev/null
cmp -s dlrm/scores.txt dlrm/scores_nolabel.txt || fail "scores of rows without labels differ"

# A generic TSV: label, 2 dense, 2 categorical, 1 multi-hot ('|'-separated, sometimes empty).
DATA=multi
mkdir -p $DATA
gen() {  # rows seed
  awk -v n="$1" -v seed="$2" 'BEGIN {
    srand(seed);
    for (i = 0; i < n; i++) {
      a = int(rand() * 30); b = int(rand() * 8); d1 = int(rand() * 50); d2 = (rand() < 0.2) ? "" : int(rand() * 9);
      m = int(rand() * 4); bag = ""; s = 0;
      for (k = 0; k < m; k++) { t = int(rand() * 20); bag = bag (k ? "|" : "") sprintf("%x", t); s += (t % 3 == 0) }
      z = (a % 5 == 0 ? 1.5 : -0.5) + (b < 3 ? 0.8 : -0.4) + s * 0.7 + d1 / 50 - 1;
      y = (rand() < 1 / (1 + exp(-z))) ? 1 : 0;
      printf "%d\t%d\t%s\t%x\t%x\t%s\n", y, d1, d2, a, b, bag
    } }'
}
gen 6000 5 > $DATA/train.tsv
gen 800 6 > $DATA/test.tsv
run_model multi "$HERE/serve_multihot.ini"

# Quantisation AUC changes, for the record.
grep -h "change=" ./*.int8.log ./*.fp16.log

# Error paths: clear message, exit 2 (bad input).
expect_exit() {  # code message-regex command...
  local code=$1 re=$2
  shift 2
  set +e
  "$@" > err.out 2> err.log
  local rc=$?
  set -e
  [ "$rc" -eq "$code" ] || { cat err.log; fail "expected exit $code, got $rc: $*"; }
  grep -Eq "$re" err.log || { cat err.log; fail "message does not match '$re': $*"; }
  echo "ok (exit $rc): $(head -1 err.log)"
}
P=(predict --predict.out=bad_scores.txt)
head -c 4000 dlrm/model.h5 > truncated.h5
expect_exit 2 "truncated.h5" "$RF" "${P[@]}" --predict.model=truncated.h5 --predict.input=criteo/test.tsv
expect_exit 2 "missing.h5: no such file" "$RF" "${P[@]}" --predict.model=missing.h5 --predict.input=criteo/test.tsv
expect_exit 2 "not a recforge export" "$RF" "${P[@]}" --predict.model=dlrm/run/params.h5 --predict.input=criteo/test.tsv
head -5 criteo/test.tsv > bad_rows.tsv
printf '1\t2\t3\n' >> bad_rows.tsv
expect_exit 2 "bad_rows.tsv:6: expected 40 tab-separated fields, got 3" "$RF" "${P[@]}" --predict.model=dlrm/model.h5 --predict.input=bad_rows.tsv
head -2 criteo/test.tsv | awk -F'\t' 'BEGIN { OFS = "\t" } { $20 = "xyz"; print }' > bad_token.tsv
expect_exit 2 "bad_token.tsv:1: field 20" "$RF" "${P[@]}" --predict.model=dlrm/model.h5 --predict.input=bad_token.tsv
printf '1\t2\n' > bad_count.tsv
expect_exit 2 "bad_count.tsv:1: expected 40 tab-separated fields \(or 39 without the label\), got 2" "$RF" "${P[@]}" --predict.model=dlrm/model.h5 --predict.input=bad_count.tsv
expect_exit 2 "\[export\] checkpoint: .nowhere. not found" "$RF" export --config "$HERE/serve_dlrm.ini" --export.checkpoint=nowhere --export.out=x.h5
[ ! -e bad_scores.txt ] || fail "a failed predict left an output file"
echo "serve cli: all checks passed"
