"""Which of this project's CPU kernels a lowered jax program calls (its `frem_*` custom calls)."""

import re

# The XLA FFI targets the CPU kernels register (frem_jax/cpu/ffi.py): 3x3 conv forward (also its
# input gradient) and weight gradient; 2x2 up-conv forward, input and kernel gradients.
TRAIN_TARGETS = frozenset({'frem_conv3x3', 'frem_conv3x3_dw', 'frem_upconv2x2', 'frem_upconv2x2_dx',
                           'frem_upconv2x2_dk'})
INFERENCE_TARGETS = frozenset({'frem_conv3x3', 'frem_upconv2x2'})


def kernel_calls(lowered) -> set:
  """The `frem_*` custom-call targets in the StableHLO of `jax.jit(...).lower(...)` (or pmap's)."""
  return set(re.findall(r'custom_call @(frem_\w+)', lowered.as_text()))
