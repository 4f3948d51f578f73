#!/usr/bin/env bash
# The paper's experiments on one dataset, end to end: the baseline, the λ search for SuperVision,
# the (B, X) search for FREM (whose trials also evaluate with FREM kept on at test: Table 1), the
# fixed-channel variant (Table 4), and the report (Tables 1-4, Figs. 3, 5/6, 7/8, 9).
#
# usage: launch/reproduce.sh DATASET --source=DIR [options] [-- --config.KEY=VALUE ...]
#
#   DATASET        mouse or drosophila (configs/DATASET.py and its variants)
#   --source=DIR   the dataset folder (docs/datasets.md); for drosophila $FREM_DROSOPHILA_DIR is
#                  used when --source is not given
#   --out=DIR      where everything goes (default repro/DATASET, or repro/DATASET_quick)
#   --quick        a smoke run of the whole protocol, NOT the paper's: 8 epochs, widths
#                  (8, 16, 32, 64, 128), 32 tiles per split, 3 trials per search; about
#                  8 minutes on 2 CPU cores on the Drosophila data
#   --python=PY    the Python of the environment with frem_jax (default .venv/bin/python or python3)
#   --dry-run      print the commands, run nothing
#   -- ...         config overrides passed to every run and search
#
# The full protocol is 2000 epochs per run and 50 + 15 trials: days on a GPU. Every step resumes
# where it stopped when the script is run again with the same arguments. A run that fails (e.g.
# X = 10000 diverging) is reported as missing and the script goes on.
set -euo pipefail
cd "$(dirname "$0")/.."

dataset="${1:-}"
[[ $# -gt 0 ]] && shift
source= out= quick=0 python= dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --source=*) source="${1#*=}" ;;
    --out=*) out="${1#*=}" ;;
    --quick) quick=1 ;;
    --python=*) python="${1#*=}" ;;
    --dry-run) dry_run=1 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$dataset" in
  mouse|drosophila) ;;
  -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
  *) echo "error: DATASET must be mouse or drosophila; got '${dataset}' (see --help)" >&2; exit 2 ;;
esac
if [[ -z "$source" && $dataset == drosophila ]]; then source="${FREM_DROSOPHILA_DIR:-}"; fi
[[ -n "$source" ]] || { echo "error: --source=DIR is required: the $dataset data folder (see docs/datasets.md)" >&2; exit 2; }
if [[ $dry_run == 0 && ! -d "$source" ]]; then
  echo "error: --source=$source is not a folder" >&2; exit 2
fi
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
suffix=; [[ $quick == 0 ]] || suffix=_quick
out="${out:-repro/$dataset$suffix}"

common=("--config.dataset.source_dir=$source" "--config.dataset.data_dir=$out/tensorflow_datasets")
if [[ $quick == 1 ]]; then
  common+=(--config.num_epochs=8 "--config.model.features=(8, 16, 32, 64, 128)"
           --config.model.renorm_warmup_steps=50 --config.dataset.limit=32
           --config.search.max_evals=3 --config.search.n_startup_jobs=2)
fi
common+=("$@")

quote() {  # an argument as a reader would type it
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "$1"; fi
}
show() { printf '+'; for a in "$@"; do printf ' '; quote "$a"; done; printf '\n'; }
step() {  # step NAME COMMAND...: runs it; a failure is reported and the protocol goes on
  local name="$1"; shift
  echo "# $name"
  show "$@"
  [[ $dry_run == 1 ]] && return 0
  "$@" || echo "warning: $name failed (exit $?); the report will leave it out" >&2
}
best_trial() {  # the folder of a search's best trial, or a path that does not exist
  if [[ $dry_run == 1 ]]; then echo "$1/trial_BEST"; return; fi
  "$python" -c 'import json, os, sys; print(os.path.join(sys.argv[1], json.load(open(os.path.join(sys.argv[1], "best.json")))["workdir"]))' "$1" 2>/dev/null || echo "$1/no_best_trial"
}

cfg="configs/$dataset.py"
step "baseline (U-Net + SE)" "$python" -m frem_jax.train "--config=$cfg:baseline" "--workdir=$out/baseline" "${common[@]}"
step "λ search (SuperVision)" "$python" -m frem_jax.search "--config=$cfg:supervision" "--workdir=$out/search_lambda" "${common[@]}"
step "(B, X) search (FREM; each trial also evaluated with FREM on at test: Table 1)" \
  "$python" -m frem_jax.search "--config=$cfg" "--workdir=$out/search_bx" --config.eval.frem_at_test=True "${common[@]}"
step "fixed channels (Table 4)" "$python" -m frem_jax.train "--config=$cfg:fixed" "--workdir=$out/fixed" "${common[@]}"
step "report" "$python" -m frem_jax.report --runs "baseline=$out/baseline" \
  "supervision=$(best_trial "$out/search_lambda")" "frem=$(best_trial "$out/search_bx")" "fixed=$out/fixed" \
  "--search=$out/search_bx" "--search=$out/search_lambda" "--out=$out/report"
echo "# done: $out/report/report.md"
