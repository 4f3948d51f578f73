#!/usr/bin/env bash
# A TPE sweep on a single-host Cloud TPU VM (v3-8, v4-8, v5litepod-8, ...): create the VM, install,
# start the sweep in the background, watch it, copy the results back, delete the VM.
# One trial per TPU device (jax.local_devices()), side by side.
#
# usage: launch/tpu_vm.sh STEP [options] [-- --config.KEY=VALUE ...]
#
# STEP is one of
#   create    gcloud compute tpus tpu-vm create (needs --project, --zone, --accelerator)
#   install   copy this checkout's last commit (git archive HEAD: commit your changes first) and
#             --source to the VM; make a Python 3.11
#             venv there with the project and jax[tpu]
#   start     start python -m frem_jax.search on the VM with nohup; the log goes to
#             ~/sweeps/NAME/search.log beside trials.json
#   status    the last lines of the log and the number of finished trials
#   fetch     copy ~/sweeps/NAME from the VM to --local=DIR (default: sweeps/NAME here)
#   delete    delete the VM (billing stops)
#
# options (each also read from the environment variable in brackets)
#   --name=VM             the TPU VM's name                         [TPU_NAME]  default frem-sweep
#   --project=PROJECT     Google Cloud project                      [TPU_PROJECT]
#   --zone=ZONE           e.g. us-central2-b                        [TPU_ZONE]
#   --accelerator=TYPE    e.g. v4-8 (4 chips: 4 trials at a time)   [TPU_ACCELERATOR] default v4-8
#   --runtime=VERSION     TPU VM software version                   [TPU_RUNTIME] default tpu-ubuntu2204-base
#   --config=FILE         experiment config, relative to the checkout, e.g. configs/drosophila.py
#   --sweep=NAME          the sweep's folder name on the VM: ~/sweeps/NAME (default: the config's stem)
#   --source=DIR          a local dataset folder to copy to ~/data/ on the VM (install); start then
#                         passes --config.dataset.source_dir=../data/BASENAME (from ~/frem_jax)
#   --local=DIR           where fetch puts the results (default sweeps/NAME)
#   --dry-run             print the commands, run nothing
#   -- ...                passed on to python -m frem_jax.search (config overrides), with start
#
# Typical run:
#   launch/tpu_vm.sh create  --project=my-proj --zone=us-central2-b
#   launch/tpu_vm.sh install --project=my-proj --zone=us-central2-b --source=../shared/data/drosophila-vnc
#   launch/tpu_vm.sh start   --project=my-proj --zone=us-central2-b --config=configs/drosophila.py \
#                            --source=../shared/data/drosophila-vnc
#   launch/tpu_vm.sh status  --project=my-proj --zone=us-central2-b --config=configs/drosophila.py
#   launch/tpu_vm.sh fetch   --project=my-proj --zone=us-central2-b --config=configs/drosophila.py
#   launch/tpu_vm.sh delete  --project=my-proj --zone=us-central2-b
# `start` again after a preemption continues the sweep where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

step="${1:-}"
[[ $# -gt 0 ]] && shift
name="${TPU_NAME:-frem-sweep}" project="${TPU_PROJECT:-}" zone="${TPU_ZONE:-}"
accelerator="${TPU_ACCELERATOR:-v4-8}" runtime="${TPU_RUNTIME:-tpu-ubuntu2204-base}"
config= sweep= source= local= dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --accelerator=*) accelerator="${1#*=}" ;;
    --runtime=*) runtime="${1#*=}" ;;
    --config=*) config="${1#*=}" ;;
    --sweep=*) sweep="${1#*=}" ;;
    --source=*) source="${1#*=}" ;;
    --local=*) local="${1#*=}" ;;
    --dry-run) dry_run=1 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,41p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$step" in
  create|install|start|status|fetch|delete) ;;
  -h|--help) sed -n '2,41p' "$0"; exit 0 ;;
  *) echo "error: STEP must be one of create, install, start, status, fetch, delete; got '${step}' (see --help)" >&2; exit 2 ;;
esac
need() {  # need VALUE FLAG: refuse a missing option with one line
  [[ -n "$1" ]] || { echo "error: $step needs $2 (see --help)" >&2; exit 2; }
}
need "$zone" --zone=ZONE
if [[ $step == create ]]; then need "$project" --project=PROJECT; fi
if [[ $step == start || $step == status || $step == fetch ]] && [[ -z "$sweep" ]]; then
  need "$config" --config=FILE
  sweep="$(basename "${config%%:*}" .py)${config#"${config%%:*}"}"
  sweep="${sweep//:/_}"
fi
if [[ $step == start ]]; then
  need "$config" --config=FILE
  [[ -f "${config%%:*}" ]] || { echo "error: --config=$config: no such file in this checkout" >&2; exit 2; }
fi
if [[ -n "$source" && $step == install && $dry_run == 0 && ! -d "$source" ]]; then
  echo "error: --source=$source is not a folder" >&2; exit 2
fi

gc=(gcloud compute tpus tpu-vm)
where=(--zone="$zone")
[[ -z "$project" ]] || where+=(--project="$project")

quote() {  # an argument as a reader would type it
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}
run() {  # prints the command; runs it unless --dry-run
  printf '+'; for a in "$@"; do printf ' '; quote "$a"; done; printf '\n'
  [[ $dry_run == 1 ]] || "$@"
}
on_vm() {  # runs a shell command on the VM
  run "${gc[@]}" ssh "$name" "${where[@]}" --command="$1"
}

case "$step" in
  create)
    run "${gc[@]}" create "$name" "${where[@]}" --accelerator-type="$accelerator" --version="$runtime"
    ;;
  install)
    archive="$(mktemp -u /tmp/frem_jax.XXXXXX).tar.gz"
    run git archive --format=tar.gz -o "$archive" HEAD
    run "${gc[@]}" scp "$archive" "$name:frem_jax.tar.gz" "${where[@]}"
    on_vm "set -e; sudo apt-get update -q && sudo apt-get install -y -q python3.11 python3.11-venv; \
mkdir -p frem_jax && tar -xzf frem_jax.tar.gz -C frem_jax && cd frem_jax && python3.11 -m venv .venv && \
.venv/bin/pip install -q -e '.[tpu]' && .venv/bin/python -c 'import jax; print(jax.devices())'"
    if [[ -n "$source" ]]; then
      on_vm "mkdir -p data"
      run "${gc[@]}" scp --recurse "$source" "$name:data/" "${where[@]}"
    fi
    ;;
  start)
    overrides=("$@")
    [[ -z "$source" ]] || overrides+=("--config.dataset.source_dir=../data/$(basename "$source")")
    printf -v extra ' %q' "${overrides[@]}"
    [[ ${#overrides[@]} -gt 0 ]] || extra=
    on_vm "mkdir -p \$HOME/sweeps/$sweep && cd \$HOME/frem_jax && nohup .venv/bin/python -m frem_jax.search \
--config=$config --workdir=\$HOME/sweeps/$sweep$extra >> \$HOME/sweeps/$sweep/search.log 2>&1 < /dev/null &"
    echo "# started; watch it with: launch/tpu_vm.sh status${project:+ --project=$project} --zone=$zone --config=$config"
    ;;
  status)
    on_vm "tail -n 5 \$HOME/sweeps/$sweep/search.log; python3 -c \"import json; t = json.load(open('\$HOME/sweeps/$sweep/trials.json'))['trials']; print(sum(e['status'] != 'running' for e in t), 'trials finished')\""
    ;;
  fetch)
    local="${local:-sweeps/$sweep}"
    # scp --recurse into an existing folder nests the copy inside it: fetch into a fresh folder,
    # then copy over the local one (a second fetch updates it; files added locally are kept).
    incoming="$local.fetching"
    run rm -rf "$incoming"
    run mkdir -p "$incoming" "$local"
    run "${gc[@]}" scp --recurse "$name:sweeps/$sweep" "$incoming/" "${where[@]}"
    run cp -a "$incoming/$sweep/." "$local/"
    run rm -rf "$incoming"
    echo "# results in $local: trials.json, best.json, search.png"
    ;;
  delete)
    run "${gc[@]}" delete "$name" "${where[@]}" --quiet
    ;;
esac
