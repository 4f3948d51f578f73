"""Times PyTorch's 3x3 convolutions of the paper's U-Net, layer by layer: forward, no grad, channels-last, float32 and bfloat16.

Run with the peer's Python (torch 2.13 in its own venv, never a dependency of frem_jax):
  /tmp/torchvenv/bin/python launch/bench_torch_conv_layers.py
Beside `python launch/bench_conv_layers.py --batch=8 --features=32,64,128,256,512
--impls=onednn,onednn_bf16`: the same layers (widths 32-512, 256², batch 8; each layer's shape
counted as often as the model has it), the two dtypes interleaved, medians of 9 rounds after 2
warm-up rounds, torch's threads one per core. Each call is an eager `nn.Conv2d` call, as in the
peer's forward (weights not prepacked). Prints one JSON line with per-layer ms and the sums.
"""

import json
import os
import statistics
import time

import torch

from unet_shapes import model_convs  # launch/, the script's folder

FEATURES, IMAGE_SIZE, BATCH, ROUNDS, WARMUP = (32, 64, 128, 256, 512), 256, 8, 9, 2


def main():
  torch.set_num_threads(os.cpu_count())
  out = {'torch': torch.__version__, 'batch': BATCH, 'image_size': IMAGE_SIZE, 'features': FEATURES,
         'layers': []}
  total = {'float32': 0.0, 'bfloat16': 0.0}
  with torch.no_grad():
    for res, ci, co, count in model_convs(FEATURES, IMAGE_SIZE):
      calls = {}
      for name, dtype in (('float32', torch.float32), ('bfloat16', torch.bfloat16)):
        conv = torch.nn.Conv2d(ci, co, 3, padding=1, bias=False).to(
            memory_format=torch.channels_last, dtype=dtype)
        x = torch.randn(BATCH, ci, res, res).to(memory_format=torch.channels_last, dtype=dtype)
        calls[name] = (conv, x)
      times = {name: [] for name in calls}
      for r in range(ROUNDS + WARMUP):
        for name, (conv, x) in calls.items():
          t0 = time.perf_counter()
          conv(x)
          if r >= WARMUP:
            times[name].append(time.perf_counter() - t0)
      row = {'res': res, 'ci': ci, 'co': co, 'count': count}
      for name, ts in times.items():
        row[name] = round(statistics.median(ts) * 1e3, 2)
        total[name] += count * row[name]
      out['layers'].append(row)
  out['sum_ms'] = {k: round(v, 1) for k, v in total.items()}
  print(json.dumps(out))


if __name__ == '__main__':
  main()
