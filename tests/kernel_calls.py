"""Which of this project's CPU kernels (and oneDNN's convolutions) a lowered jax program calls (its `frem_*` custom calls)."""

import re

from frem_jax.cpu import ffi


def _up(train: bool) -> set:
  """The 2x2 up-conv's targets: ours, or oneDNN's where `ffi.upconv2x2_plan` puts float32 there."""
  if ffi.upconv2x2_plan(32, 'float32') == 'onednn':
    return {'frem_dnnl_upconv2x2', 'frem_dnnl_upconv2x2_dx', 'frem_dnnl_upconv2x2_dw'} if train else {
        'frem_dnnl_upconv2x2'}
  return {'frem_upconv2x2', 'frem_upconv2x2_dx', 'frem_upconv2x2_dk'} if train else {'frem_upconv2x2'}


def train_targets() -> frozenset:
  """The XLA FFI targets of a train step of the CPU wing's layers (frem_jax/cpu/ffi.py).

  The 3x3 conv's, as `ffi.conv3x3_plan` puts them: with oneDNN its forward and
  input gradient, our weight gradient on AMD's CPUs with AVX-512 and oneDNN's
  elsewhere; without it XLA's forward and input gradient, with our weight
  gradient where it was built for AVX-512.
  And the 2x2 up-conv forward, input and kernel gradients (`ffi.upconv2x2_plan`:
  ours, or oneDNN's where our kernels were not built for AVX-512).
  Derived from the plans, so the wiring tests check that the layers follow them;
  which plan is right is checked by test_cpu_kernels.py's test_layer_choice.
  """
  plan = ffi.conv3x3_plan(32, 32, 'float32')
  conv = set()
  if plan is not None and plan.forward == 'onednn':
    conv |= {'frem_dnnl_conv3x3', 'frem_dnnl_conv3x3_dx'}
  if plan is not None and plan.weight_grad == 'kernel':
    conv.add('frem_conv3x3_dw')
  elif plan is not None and plan.weight_grad == 'onednn':
    conv.add('frem_dnnl_conv3x3_dw')
  return frozenset({*conv, *_up(train=True)})


def inference_targets() -> frozenset:
  """The XLA FFI targets of the CPU wing's inference: oneDNN's 3x3 conv forward (where planned) and the 2x2 up-conv forward."""
  plan = ffi.conv3x3_plan(32, 32, 'float32')
  conv = {'frem_dnnl_conv3x3'} if plan is not None and plan.forward == 'onednn' else set()
  return frozenset({*conv, *_up(train=False)})


def kernel_calls(lowered) -> set:
  """The `frem_*` custom-call targets in the StableHLO of `jax.jit(...).lower(...)` (or pmap's)."""
  return set(re.findall(r'custom_call @(frem_\w+)', lowered.as_text()))
