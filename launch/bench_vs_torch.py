"""Runs frem_jax's benchmark and the PyTorch peer one after the other; prints one JSON line with the ratios.

Usage (torch in its own venv, never a dependency of frem_jax):
  python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
  python launch/bench_vs_torch.py --torch_python=/tmp/torchvenv/bin/python

Ratios are frem_jax images/s ÷ torch images/s (eager, glibc malloc tuned: the
peer's best default) at 256², default widths, for training at each batch size
and for inference.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def last_json_line(text: str) -> dict:
  """The last line of `text` that parses as a JSON object."""
  for line in reversed(text.strip().splitlines()):
    if line.startswith('{'):
      return json.loads(line)
  raise ValueError('no JSON line in the output')


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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--torch_python', default=os.environ.get('TORCH_PYTHON', 'python3'),
                      help='a Python with torch 2.13 installed')
  parser.add_argument('--torch_script', default=os.path.join(ROOT, '..', 'shared', 'bench', 'torch_unet_se.py'))
  parser.add_argument('--batch_sizes', default='1,4,8')
  parser.add_argument('--infer_batch', type=int, default=8)
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=1)
  args = parser.parse_args()
  if not os.path.exists(args.torch_script):
    sys.exit(f'error: --torch_script={args.torch_script} does not exist; point it at torch_unet_se.py')
  ours = subprocess.run(
      [sys.executable, '-m', 'frem_jax.bench', f'--batch_sizes={args.batch_sizes}',
       f'--infer_batch_sizes={args.infer_batch}', f'--steps={args.steps}', f'--warmup={args.warmup}'],
      cwd=ROOT, capture_output=True, text=True, check=True).stdout
  theirs = subprocess.run(
      [args.torch_python, args.torch_script, '--malloc-tune', '--batches', *args.batch_sizes.split(','),
       '--infer-batch', str(args.infer_batch), '--steps', str(args.steps), '--warmup', str(args.warmup),
       '--no-peak'], capture_output=True, text=True, check=True).stdout
  ours, theirs = last_json_line(ours), last_json_line(theirs)
  summary = {
      'ratio_images_per_s': ratios(ours, theirs),
      'frem_jax': {k: [(r['batch'], round(r['images_per_s'], 3)) for r in ours[k]] for k in ('train', 'infer')},
      'torch': {'train': [(r['batch'], round(r['images_per_s'], 3)) for r in theirs['eager']['train']],
                'infer': [(theirs['eager']['infer']['batch'], round(theirs['eager']['infer']['images_per_s'], 3))]},
      'frem_jax_compile_s': {r['batch']: round(r['compile_s'], 1) for r in ours['train']},
      'versions': {'frem_jax': ours['framework'], 'torch': theirs['framework']},
  }
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
