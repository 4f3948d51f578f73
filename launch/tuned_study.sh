#!/usr/bin/env bash
# FREM tuned as the paper tunes it, under the study's protocol: a TPE search of B and X and one of
# λ (both with successive halving), then the winners on several seeds (docs/fidelity.md,
# "Tuned for this protocol").
#
# usage: launch/tuned_study.sh drosophila --source=DIR [options] [-- --config.KEY=VALUE ...]
#
#   DATASET          drosophila (the study's protocol, launch/study.sh: the real data and split,
#                    256² tiles, widths (16, 32, 64, 128, 512), --epochs epochs) or synthetic (the
#                    embedded synthetic cells, configs/demo.py: for tests and a quick look)
#   --source=DIR     the Drosophila data folder (default $FREM_DROSOPHILA_DIR); not for synthetic
#   --epochs=E       epochs of a full trial and of every seed's run (default 60, as the study)
#   --min_epochs=M   the first rung (default 6): rungs M, M·η, ... up to E/η, then E (η = 3). The
#                    study's validation curves rise steeply to epoch ~6 and swing by ~5 points
#                    from one epoch to the next afterwards, so an earlier rung ranks noise and a
#                    later one costs most of a full trial (docs/fidelity.md)
#   --bx_trials=N    trials of the B, X search (default 27; TPE after --bx_startup=K, default 10)
#   --lambda_trials=N  trials of the λ search (default 15, the paper's; TPE after
#                    --lambda_startup=K, default 5)
#   --seeds=N        seeds 0..N-1 of the tuned FREM and tuned SuperVision (default 3). Seed 0 of
#                    each is the search's best trial itself (seed 0, trained to E epochs); the
#                    other seeds are trained here
#   --out=DIR        where everything goes (default tuned/DATASET)
#   --python=PY      the Python of the environment with frem_jax (default .venv/bin/python or python3)
#   --dry-run        print the plan, the expected cost and the commands; run nothing
#   -- ...           config overrides passed to every search and run (after the protocol's own)
#
# In this order: OUT/search_bx, OUT/search_lambda, then per seed S >= 1 OUT/seedS/frem_tuned and
# OUT/seedS/supervision_tuned, then the B, X search's 2nd- and 3rd-ranked trials trained to E
# epochs for seed 0 (OUT/seed0/frem_rank2, frem_rank3: a copy of the trial's folder resumed, unless
# the trial already reached E). Everything resumes where it stopped when the script is run again;
# finished searches and runs are skipped. The baseline and the paper's B, X are the study's
# (launch/study.sh); the report that pairs them is written by `frem_jax.report`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Seconds per epoch when nothing in OUT has been measured yet: the study's baseline on 2 CPU cores.
SECONDS_PER_EPOCH=43
SECONDS_NOTE='documented measurement: the study baseline on 2 CPU cores, jax 0.10.2'
REDUCTION_FACTOR=3

dataset="${1:-}"
[[ $# -gt 0 ]] && shift
source= epochs=60 min_epochs=6 bx_trials=27 bx_startup=10 lambda_trials=15 lambda_startup=5 seeds=3
out= python= dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --source=*) source="${1#*=}" ;;
    --epochs=*) epochs="${1#*=}" ;;
    --min_epochs=*) min_epochs="${1#*=}" ;;
    --bx_trials=*) bx_trials="${1#*=}" ;;
    --bx_startup=*) bx_startup="${1#*=}" ;;
    --lambda_trials=*) lambda_trials="${1#*=}" ;;
    --lambda_startup=*) lambda_startup="${1#*=}" ;;
    --seeds=*) seeds="${1#*=}" ;;
    --out=*) out="${1#*=}" ;;
    --python=*) python="${1#*=}" ;;
    --dry-run) dry_run=1 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$dataset" in
  drosophila) cfg=configs/drosophila.py ;;
  synthetic) cfg=configs/demo.py ;;
  -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
  *) echo "error: DATASET must be drosophila or synthetic; got '${dataset}' (see --help)" >&2; exit 2 ;;
esac
for pair in "epochs=$epochs" "min_epochs=$min_epochs" "bx_trials=$bx_trials" "bx_startup=$bx_startup" \
            "lambda_trials=$lambda_trials" "lambda_startup=$lambda_startup" "seeds=$seeds"; do
  [[ "${pair#*=}" =~ ^[1-9][0-9]*$ ]] || {
    echo "error: --${pair%%=*} must be a positive integer; got '${pair#*=}'" >&2; exit 2; }
done
(( min_epochs <= epochs )) || { echo "error: --min_epochs=$min_epochs must be <= --epochs=$epochs" >&2; exit 2; }
if [[ $dataset == drosophila ]]; then
  source="${source:-${FREM_DROSOPHILA_DIR:-}}"
  [[ -n "$source" ]] || { echo "error: --source=DIR is required: the Drosophila data folder (or set FREM_DROSOPHILA_DIR)" >&2; exit 2; }
  if [[ $dry_run == 0 && ! -d "$source" ]]; then echo "error: --source=$source is not a folder" >&2; exit 2; fi
elif [[ -n "$source" ]]; then
  echo "error: --source is for drosophila; the synthetic data is generated" >&2; exit 2
fi
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
out="${out:-tuned/$dataset}"

# The study's protocol (launch/study.sh), then the searches' settings: both are part of every
# trial's config, and the runner-up runs repeat them so that they resume their trial's folder.
protocol=("--config.num_epochs=$epochs" "--config.dataset.data_dir=$out/tensorflow_datasets")
[[ $dataset == drosophila ]] && protocol+=("--config.dataset.source_dir=$source" "--config.model.features=(16, 32, 64, 128, 512)")
halving=(--config.search.halving=True "--config.search.min_epochs=$min_epochs"
         "--config.search.reduction_factor=$REDUCTION_FACTOR")
bx_search=("--config.search.max_evals=$bx_trials" "--config.search.n_startup_jobs=$bx_startup")
lambda_search=("--config.search.max_evals=$lambda_trials" "--config.search.n_startup_jobs=$lambda_startup")

quote() { if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "$1"; fi; }
show() { printf '+'; for a in "$@"; do printf ' '; quote "$a"; done; printf '\n'; }
plan() { "$python" launch/study_plan.py "$@" 2>/dev/null || python3 launch/study_plan.py "$@"; }
failed=()
run() {  # run WHAT CMD...: show it, run it unless --dry-run, note a failure and go on
  local what=$1
  shift
  show "$@"
  [[ $dry_run == 1 ]] && return 0
  "$@" || { echo "warning: $what failed (exit $?)" >&2; failed+=("$what"); return 1; }
}

echo "# tuned study: $dataset, $epochs epochs per full run, in $out"
plan tuned-estimate "$out" "$epochs" "$min_epochs" "$REDUCTION_FACTOR" "$bx_trials" "$lambda_trials" "$seeds" \
  "$([[ $dataset == drosophila ]] && echo "$SECONDS_PER_EPOCH" || echo 0)" \
  "$([[ $dataset == drosophila ]] && echo "$SECONDS_NOTE" || echo 'the documented constant is for drosophila')" \
  | sed 's/^/# /'

echo "# 1. TPE + halving over B and X ($bx_trials trials)"
run 'the B, X search' "$python" -m frem_jax.search "--config=$cfg" "--workdir=$out/search_bx" \
  "${protocol[@]}" "${halving[@]}" "${bx_search[@]}" "$@" || true
echo "# 2. TPE + halving over λ ($lambda_trials trials)"
run 'the λ search' "$python" -m frem_jax.search "--config=$cfg:supervision" "--workdir=$out/search_lambda" \
  "${protocol[@]}" "${halving[@]}" "${lambda_search[@]}" "$@" || true

# The searches' winners (and the B, X runners-up): "NUMBER STATUS EPOCHS VALUES..." per rank.
ranked() { if [[ $dry_run == 1 ]]; then plan ranked "$1" "$2" 2>/dev/null || true; else plan ranked "$1" "$2"; fi; }
best_bx=$(ranked "$out/search_bx" 1) best_lambda=$(ranked "$out/search_lambda" 1)
read -r _ _ _ B X <<<"${best_bx:-? ? ? B X}"
read -r _ _ _ LAMBDA <<<"${best_lambda:-? ? ? LAMBDA}"
echo "# 3. seeds 1..$((seeds - 1)) of the winners (seed 0: the searches' best trials): B = $B, X = $X; λ = $LAMBDA"
searched=1
if [[ $dry_run == 0 && ( ${#failed[@]} -gt 0 || -z "$best_bx" || -z "$best_lambda" ) ]]; then
  echo "warning: a search did not finish; the seeds and runners-up wait for it (run again)" >&2
  failed+=(seeds) searched=0
else
  for ((s = 1; s < seeds; s++)); do
    for m in frem_tuned supervision_tuned; do
      workdir="$out/seed$s/$m"
      if [[ -f "$workdir/results.json" ]] && plan finished "$workdir" "$epochs"; then
        echo "# seed $s, $m: finished, skipped"; continue
      fi
      # The winners' values come last: an override after `--` must not replace them.
      if [[ $m == frem_tuned ]]; then
        config=("--config=$cfg") values=("--config.frem.num_selected=$B" "--config.frem.factor=$X" --config.eval.frem_at_test=True)
      else
        config=("--config=$cfg:supervision") values=("--config.supervision.weight=$LAMBDA")
      fi
      run "seed $s, $m" "$python" -m frem_jax.train "${config[@]}" "--workdir=$workdir" "--config.seed=$s" \
        "${protocol[@]}" "$@" "${values[@]}" || true
    done
  done
fi

echo "# 4. the B, X search's 2nd- and 3rd-ranked trials trained to $epochs epochs (seed 0)"
for rank in 2 3; do
  [[ $searched == 1 ]] || break
  line=$(ranked "$out/search_bx" "$rank")
  [[ -n "$line" ]] || { echo "# rank $rank: none yet"; continue; }
  read -r number status trained b x <<<"$line"
  trial=$(printf '%s/search_bx/trial_%03d' "$out" "$number")
  if [[ $status == ok ]]; then
    echo "# rank $rank: trial $number (B = $b, X = $x) reached $epochs epochs in the search: $trial"; continue
  fi
  workdir="$out/seed0/frem_rank$rank"
  if [[ -f "$workdir/results.json" ]] && plan finished "$workdir" "$epochs"; then
    echo "# rank $rank: $workdir finished, skipped"; continue
  fi
  echo "# rank $rank: trial $number (B = $b, X = $x), stopped at $trained epochs: resumed in a copy"
  if [[ ! -d $workdir ]]; then
    run "copy of trial $number" python3 launch/study_plan.py copy-run "$trial" "$workdir" || continue
  fi
  run "rank $rank" "$python" -m frem_jax.train "--config=$cfg" "--workdir=$workdir" "${protocol[@]}" \
    "${halving[@]}" "${bx_search[@]}" "$@" "--config.frem.num_selected=$b" "--config.frem.factor=$x" || true
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "warning: ${#failed[@]} step(s) failed or wait: ${failed[*]}" >&2
  exit 1
fi
[[ $dry_run == 1 ]] || echo "# done: the searches and runs are in $out"
