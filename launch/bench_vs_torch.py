"""Times frem_jax beside the PyTorch peer in one run, in float32 and bfloat16; prints one JSON line with the ratios.

Usage (torch in its own venv, never a dependency of frem_jax):
  python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install 'torch==2.13.0+cpu' numpy
  python launch/bench_vs_torch.py --torch_python=/tmp/torchvenv/bin/python

Four runs, one after the other, each in its own process: frem_jax float32
(`python -m frem_jax.bench`), the peer's `--channels-last` float32, frem_jax
`--config.half_precision=True` and the peer's `--channels-last --bf16` (one
`torch.autocast(bfloat16)`: the peer's fastest eager setting); both with their
malloc tuned. The paper's model at 256², training at each batch size and
inference at one. Ratios are frem_jax images/s ÷ torch images/s: ≥ 1 is at
least as fast. The JSON also names the CPU (model and the ISA flags that
decide bfloat16's speed: AMX, AVX512-BF16, AVX-512, AVX2), the layers that ran
and the versions. Timings on a shared machine vary by several per cent: stop
other work while this runs.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# /proc/cpuinfo flag -> the name the JSON gives it.
ISA_FLAGS = {'amx_bf16': 'AMX-BF16', 'amx_tile': 'AMX-TILE', 'avx512_bf16': 'AVX512-BF16',
             'avx512f': 'AVX-512', 'avx2': 'AVX2'}


def last_json_line(text: str) -> dict:
  """The last line of `text` that parses as a JSON object."""
  for line in reversed(text.strip().splitlines()):
    if line.startswith('{'):
      return json.loads(line)
  raise ValueError('no JSON line in the output')


def cpu(cpuinfo: str) -> dict:
  """{'model', 'isa'}: the first processor's model name and which of ISA_FLAGS it has, from /proc/cpuinfo's text."""
  model, flags = '', set()
  for line in cpuinfo.splitlines():
    key, _, value = line.partition(':')
    if key.strip() == 'model name' and not model:
      model = value.strip()
    elif key.strip() == 'flags' and not flags:
      flags = set(value.split())
  return {'model': model, 'isa': {name: flag in flags for flag, name in ISA_FLAGS.items()}}


def ratios(ours: dict, torch: dict) -> dict:
  """frem_jax images/s ÷ torch images/s for every training batch size both ran, and inference."""
  theirs = {r['batch']: r for r in torch['eager']['train']}
  out = {f'train_b{r["batch"]}': r['images_per_s'] / theirs[r['batch']]['images_per_s']
         for r in ours['train'] if r['batch'] in theirs}
  infer = torch['eager']['infer']
  for r in ours['infer']:
    if infer and r['batch'] == infer['batch']:
      out[f'infer_b{r["batch"]}'] = r['images_per_s'] / infer['images_per_s']
  return out


def images_per_s(ours: dict, torch: dict) -> dict:
  """{'frem_jax': {...}, 'torch': {...}}: images/s by 'train_b<N>' / 'infer_b<N>', 3 digits."""
  mine = {f'{k}_b{r["batch"]}': round(r['images_per_s'], 3) for k in ('train', 'infer') for r in ours[k]}
  theirs = {f'train_b{r["batch"]}': round(r['images_per_s'], 3) for r in torch['eager']['train']}
  if torch['eager']['infer']:
    theirs[f'infer_b{torch["eager"]["infer"]["batch"]}'] = round(torch['eager']['infer']['images_per_s'], 3)
  return {'frem_jax': mine, 'torch': theirs}


def _run(command: list, what: str) -> dict:
  proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
  if proc.returncode != 0:
    tail = '\n'.join(proc.stderr.strip().splitlines()[-5:])
    sys.exit(f'error: {what} failed (exit {proc.returncode}): {" ".join(command)}\n{tail}')
  return last_json_line(proc.stdout)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--torch_python', default=os.environ.get('TORCH_PYTHON', 'python3'),
                      help='a Python with torch 2.13 installed')
  parser.add_argument('--torch_script', default=os.path.join(ROOT, '..', 'shared', 'bench', 'torch_unet_se.py'))
  parser.add_argument('--batch_sizes', default='1,4,8')
  parser.add_argument('--infer_batch', type=int, default=8)
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=1)
  parser.add_argument('--precisions', default='float32,bfloat16', help='which pairs to run')
  args = parser.parse_args()
  if not os.path.exists(args.torch_script):
    sys.exit(f'error: --torch_script={args.torch_script} does not exist; point it at torch_unet_se.py')
  precisions = args.precisions.split(',')
  if not precisions or set(precisions) - {'float32', 'bfloat16'}:
    sys.exit(f'error: --precisions={args.precisions}: float32, bfloat16 or both, comma-separated')
  timing = [f'--steps={args.steps}', f'--warmup={args.warmup}']
  summary = {'ratio_images_per_s': {}, 'images_per_s': {}, 'frem_jax_layers': {}}
  for precision in precisions:
    half = precision == 'bfloat16'
    ours = _run([sys.executable, '-m', 'frem_jax.bench', f'--batch_sizes={args.batch_sizes}',
                 f'--infer_batch_sizes={args.infer_batch}', *timing,
                 f'--config.half_precision={half}'], f'frem_jax.bench ({precision})')
    theirs = _run([args.torch_python, args.torch_script, '--malloc-tune', '--channels-last',
                   *(['--bf16'] if half else []), '--batches', *args.batch_sizes.split(','),
                   '--infer-batch', str(args.infer_batch), '--steps', str(args.steps),
                   '--warmup', str(args.warmup), '--no-peak'], f'the torch peer ({precision})')
    peer = 'channels_last_bf16' if half else 'channels_last_fp32'
    summary['ratio_images_per_s'][f'{precision}_vs_{peer}'] = {
        k: round(v, 3) for k, v in ratios(ours, theirs).items()}
    summary['images_per_s'][precision] = images_per_s(ours, theirs)
    summary['frem_jax_layers'][precision] = {k: ours.get(k) for k in (
        'precision', 'layers_used', 'cpu_kernels_used', 'conv3x3', 'onednn')}
    summary['versions'] = {'frem_jax': ours['framework'], 'torch': theirs['framework']}
  with open('/proc/cpuinfo') as f:
    summary['cpu'] = cpu(f.read())
  summary['cpu']['cores'] = os.cpu_count()
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
