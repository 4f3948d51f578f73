#!/usr/bin/env bash
# Does it reproduce the paper? Baseline, SuperVision and FREM trained on several seeds, then the
# report with mean ± std over seeds and the paired differences (docs/fidelity.md).
#
# usage: launch/study.sh DATASET --seeds=N [options] [-- --config.KEY=VALUE ...]
#
#   DATASET        drosophila: the study. The REDUCED PROTOCOL is the default: the real Drosophila
#                  data and split, 256² tiles, widths model.features=(16, 32, 64, 128, 512) (the
#                  deepest stage's 512 channels as in the paper), batch renormalisation, Adam, the
#                  paper's B=8, X=250 (FREM) and λ=0.2781 (SuperVision) from configs/drosophila.py,
#                  --epochs epochs (the paper: 2000). The TPE searches are not rerun.
#                  synthetic: the same study on the embedded synthetic cells (configs/demo.py and
#                  its variants), for tests and a quick look
#   --source=DIR   the Drosophila data folder (default $FREM_DROSOPHILA_DIR); not for synthetic
#   --seeds=N      seeds 0..N-1; per seed, in this order: baseline, supervision, frem
#   --methods=LIST the methods to train instead, comma-separated, from: baseline, supervision, frem
#                  and the variants of docs/fidelity.md's "Variance shift and the number of draws":
#                  frem_reestimate (FREM + eval.reestimate_statistics), frem_step (FREM +
#                  frem.redraw=step), frem_step_reestimate (both), baseline_reestimate (the control).
#                  The report (baseline, supervision, frem) is written when all three are trained
#   --epochs=E     epochs per run (default 60: the pilot, the seed-0 baseline, levels off by epoch 35;
#                  launch/pilot_curve.py, docs/fidelity.md)
#   --out=DIR      where the runs and the report go (default study/DATASET)
#   --python=PY    the Python of the environment with frem_jax (default .venv/bin/python or python3)
#   --dry-run      print the plan and the commands, run nothing
#   -- ...         config overrides passed to every run (after the protocol's own)
#
# Runs go to OUT/seedS/METHOD. Every run resumes where it stopped when the script is run again; a
# finished run (results.json with E epochs) is skipped. A run that fails is reported and the study
# goes on; the exit status is then 1. The report is OUT/report/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# Seconds per epoch when OUT has no run yet: the baseline at the reduced protocol's widths on 2 CPU
# cores, jax 0.10.2 (measured by the lead).
SECONDS_PER_EPOCH=43
SECONDS_NOTE='documented measurement: the baseline at these widths on 2 CPU cores, jax 0.10.2'

dataset="${1:-}"
[[ $# -gt 0 ]] && shift
source= seeds= epochs=60 out= python= dry_run=0 methods_arg=baseline,supervision,frem
while [[ $# -gt 0 ]]; do
  case "$1" in
    --source=*) source="${1#*=}" ;;
    --seeds=*) seeds="${1#*=}" ;;
    --epochs=*) epochs="${1#*=}" ;;
    --methods=*) methods_arg="${1#*=}" ;;
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
[[ "$seeds" =~ ^[1-9][0-9]*$ ]] || { echo "error: --seeds=N must be a positive integer (e.g. --seeds=3); got '${seeds}'" >&2; exit 2; }
[[ "$epochs" =~ ^[1-9][0-9]*$ ]] || { echo "error: --epochs=E must be a positive integer; got '${epochs}'" >&2; exit 2; }
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
out="${out:-study/$dataset}"

# The protocol's settings; the seed and the workdir are added per run.
protocol=("--config.num_epochs=$epochs")
if [[ $dataset == drosophila ]]; then
  protocol+=("--config.dataset.source_dir=$source" "--config.dataset.data_dir=$out/tensorflow_datasets"
             "--config.model.features=(16, 32, 64, 128, 512)")
else
  protocol+=("--config.dataset.data_dir=$out/tensorflow_datasets")
fi

quote() {  # an argument as a reader would type it
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "$1"; fi
}
show() { printf '+'; for a in "$@"; do printf ' '; quote "$a"; done; printf '\n'; }
plan() { "$python" launch/study_plan.py "$@" 2>/dev/null || python3 launch/study_plan.py "$@"; }

IFS=, read -r -a methods <<< "$methods_arg"
[[ ${#methods[@]} -gt 0 ]] || { echo "error: --methods=LIST is empty; e.g. --methods=baseline,frem" >&2; exit 2; }
for m in "${methods[@]}"; do
  case "$m" in
    baseline|supervision|frem|frem_reestimate|frem_step|frem_step_reestimate|baseline_reestimate) ;;
    *) echo "error: --methods: unknown method '$m'; choose from baseline, supervision, frem, frem_reestimate, frem_step, frem_step_reestimate, baseline_reestimate" >&2; exit 2 ;;
  esac
done
echo "# study: $dataset, seeds 0..$((seeds - 1)), $epochs epochs per run, in $out"
plan estimate "$out" "$epochs" "$seeds" "$(IFS=,; echo "${methods[*]}")" \
  "$([[ $dataset == drosophila ]] && echo "$SECONDS_PER_EPOCH" || echo 0)" \
  "$([[ $dataset == drosophila ]] && echo "$SECONDS_NOTE" || echo 'the documented constant is for drosophila')" \
  | sed 's/^/# /'

failed=()
declare -A dirs
for ((s = 0; s < seeds; s++)); do
  for m in "${methods[@]}"; do
    workdir="$out/seed$s/$m"
    dirs[$m]="${dirs[$m]:+${dirs[$m]},}$workdir"
    case "$m" in
      baseline|supervision) variant=("--config=$cfg:$m") extra=() ;;
      frem) variant=("--config=$cfg") extra=(--config.eval.frem_at_test=True) ;;
      baseline_reestimate) variant=("--config=$cfg:baseline") extra=(--config.eval.reestimate_statistics=True) ;;
      frem_reestimate) variant=("--config=$cfg") extra=(--config.eval.frem_at_test=True --config.eval.reestimate_statistics=True) ;;
      frem_step) variant=("--config=$cfg") extra=(--config.eval.frem_at_test=True --config.frem.redraw=step) ;;
      frem_step_reestimate) variant=("--config=$cfg")
        extra=(--config.eval.frem_at_test=True --config.frem.redraw=step --config.eval.reestimate_statistics=True) ;;
    esac
    cmd=("$python" -m frem_jax.train "${variant[@]}" "--workdir=$workdir" "--config.seed=$s"
         "${protocol[@]}" "${extra[@]}" "$@")
    if [[ -f "$workdir/results.json" ]] && plan finished "$workdir" "$epochs"; then
      echo "# seed $s, $m: finished ($epochs epochs), skipped"
      continue
    fi
    echo "# seed $s, $m"
    show "${cmd[@]}"
    [[ $dry_run == 1 ]] && continue
    "${cmd[@]}" || { echo "warning: seed $s, $m failed (exit $?); the report will leave it out" >&2; failed+=("$workdir"); }
  done
done

if [[ -n "${dirs[baseline]:-}" && -n "${dirs[supervision]:-}" && -n "${dirs[frem]:-}" ]]; then
  report=("$python" -m frem_jax.report --runs "baseline=${dirs[baseline]}" "supervision=${dirs[supervision]}"
          "frem=${dirs[frem]}" "--out=$out/report")
  echo "# report"
  show "${report[@]}"
  if [[ $dry_run == 0 ]]; then
    "${report[@]}" || { echo "warning: the report failed (exit $?)" >&2; failed+=(report); }
  fi
else
  echo "# no report: it pairs baseline, supervision and frem, and --methods=$methods_arg leaves some out"
fi
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "warning: ${#failed[@]} failed: ${failed[*]}" >&2
  exit 1
fi
[[ $dry_run == 1 || ! -f "$out/report/report.md" ]] || echo "# done: $out/report/report.md"
