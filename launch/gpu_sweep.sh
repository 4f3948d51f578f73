#!/usr/bin/env bash
# Runs a TPE sweep on all local GPUs of this machine: one trial per GPU, side by side.
#
# usage: launch/gpu_sweep.sh --config=FILE --workdir=DIR [options] [-- --config.KEY=VALUE ...]
#
#   --config=FILE     experiment config, e.g. configs/mouse.py or configs/drosophila.py:supervision
#   --workdir=DIR     sweep folder: trials.json, best.json, search.png, trial_NNN/, and search.log
#   --gpus=LIST       GPUs to use, e.g. 0,1 (sets CUDA_VISIBLE_DEVICES); default: all of them
#   --python=PY       the Python of the environment with frem_jax[cuda12] installed
#                     (default: .venv/bin/python if it exists, else python3)
#   --install         first install the project with CUDA 12 jax into PY's environment
#   --background      detach (nohup); follow with: tail -f DIR/search.log
#   --dry-run         print what would run, run nothing
#   -- ...            the rest goes to python -m frem_jax.search (config overrides)
#
# Re-running the same command continues the sweep where it stopped (see docs/search.md).
set -euo pipefail
cd "$(dirname "$0")/.."

config= workdir= gpus= python= install=0 background=0 dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config=*) config="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --gpus=*) gpus="${1#*=}" ;;
    --python=*) python="${1#*=}" ;;
    --install) install=1 ;;
    --background) background=1 ;;
    --dry-run) dry_run=1 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "$config" ]] || { echo "error: --config=FILE is required (see --help)" >&2; exit 2; }
[[ -n "$workdir" ]] || { echo "error: --workdir=DIR is required (see --help)" >&2; exit 2; }
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
log="$workdir/search.log"

run() {  # prints the command; runs it unless --dry-run
  echo "+ $*"
  [[ $dry_run == 1 ]] || "$@"
}

if [[ $dry_run == 0 ]] && ! command -v nvidia-smi >/dev/null; then
  echo "error: nvidia-smi not found: this script is for a machine with NVIDIA GPUs" >&2; exit 1
fi
if [[ -n "$gpus" ]]; then
  echo "+ export CUDA_VISIBLE_DEVICES=$gpus"
  export CUDA_VISIBLE_DEVICES="$gpus"
fi
echo "# GPUs: ${gpus:-all}; each trial runs on one GPU, as many trials at once as GPUs"
if [[ $install == 1 ]]; then
  run "$python" -m pip install -q -e '.[cuda12]'
fi
cmd=("$python" -m frem_jax.search "--config=$config" "--workdir=$workdir" "$@")
run mkdir -p "$workdir"
if [[ $background == 1 ]]; then
  echo "+ nohup ${cmd[*]} >> $log 2>&1 &"
  if [[ $dry_run == 0 ]]; then
    nohup "${cmd[@]}" >> "$log" 2>&1 &
    echo "started (pid $!); follow it with: tail -f $log"
  fi
else
  echo "+ ${cmd[*]} 2>&1 | tee -a $log"
  [[ $dry_run == 1 ]] || "${cmd[@]}" 2>&1 | tee -a "$log"
fi
