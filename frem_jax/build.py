"""`build_model`: the U-Net+SE of a config, with the CPU wing's layers plugged in where they apply."""

import functools
from typing import Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections

from frem_jax.cpu import ffi
from frem_jax.cpu import layers as cpu_layers
from frem_jax.cpu import malloc
from frem_jax.model.unet import UNetSE


def uses_cpu_layers(layers: str) -> bool:
  """Whether `model.layers` means the CPU wing's layers here: 'cpu', or 'auto' on the CPU backend."""
  return layers == 'cpu' or (layers == 'auto' and jax.default_backend() == 'cpu')


def compute_dtype(config: ml_collections.ConfigDict):
  """The dtype the model computes in: bfloat16 with `half_precision`, else float32 (parameters: float32 always).

  On the CPU wing with oneDNN built, `half_precision` is narrower: the model
  computes in float32 and its convolutions in bfloat16 (`build_model`).
  """
  return jnp.bfloat16 if config.half_precision else jnp.float32


def cpu_half_precision(config: ml_collections.ConfigDict) -> bool:
  """Whether `half_precision` here means the CPU wing's policy: bfloat16 convolutions (3x3 and transposed) on oneDNN, float32 elsewhere.

  Only on the CPU backend, with the wing's layers, where oneDNN computes bfloat16 on this CPU.
  """
  return (bool(config.half_precision) and uses_cpu_layers(config.model.layers)
          and jax.default_backend() == 'cpu' and ffi.onednn_bfloat16_available())


# What `half_precision` computes here (`precision`), in words for the messages that name it.
PRECISIONS = {
    'float32': 'float32 throughout',
    'bfloat16': "bfloat16 throughout (flax's dtype)",
    'bfloat16 convolutions': "bfloat16 convolutions on oneDNN in a float32 model (the CPU wing's)",
}


def precision(config: ml_collections.ConfigDict) -> str:
  """What the model built from `config` computes in here: a key of PRECISIONS.

  It depends on the machine as well as on `config`: `half_precision` is
  'bfloat16 convolutions' where `cpu_half_precision` holds, 'bfloat16' elsewhere.
  """
  if not config.half_precision:
    return 'float32'
  return 'bfloat16 convolutions' if cpu_half_precision(config) else 'bfloat16'


@functools.lru_cache(maxsize=None)  # once per process: a search builds many models
def _warn_half_precision_without_bfloat16() -> None:
  if not ffi.onednn_available():
    logging.warning("half_precision=True computes bfloat16 throughout on XLA here, as oneDNN is not "
                    "installed: no faster than float32 on the CPUs measured (docs/performance.md); "
                    "its wheel exists for Linux x86_64 only, where frem_jax depends on it (reinstall frem_jax if it "
                    "failed to install or load); elsewhere leave half_precision off")
  else:
    logging.warning('half_precision=True computes bfloat16 on XLA here: this CPU has no bfloat16 '
                    'arithmetic that oneDNN uses (AVX-512 or AVX2-VNNI-2), and on such a CPU training '
                    "ran at 37-53 % of float32's speed (docs/performance.md); leave half_precision off here")


def build_model(config: ml_collections.ConfigDict, num_classes: int,
                axis_name: Optional[str] = None) -> UNetSE:
  """The U-Net+SE described by `config.model` (with the SuperVision head if enabled).

  `model.layers` picks the layers' arithmetic, never their parameters: 'flax'
  (flax's `nn.Conv`, `nn.ConvTranspose`, `nn.max_pool`), 'cpu' (the CPU
  wing's, `frem_jax.cpu.layers`: C++ kernels where built, matrix products
  elsewhere) or 'auto' (the CPU wing's on the CPU backend, flax's elsewhere).
  `half_precision` picks the computation's dtype (`compute_dtype`): bfloat16
  throughout (flax's `dtype`), or on the CPU wing with oneDNN bfloat16
  convolutions in a float32 model (`cpu_half_precision`).
  """
  m = config.model
  layers = {}
  dtype = compute_dtype(config)
  if config.half_precision and jax.default_backend() == 'cpu' and not ffi.onednn_bfloat16_available():
    _warn_half_precision_without_bfloat16()
  if uses_cpu_layers(m.layers):
    malloc.warn_if_untuned()
    layers = cpu_layers.LAYERS
    if cpu_half_precision(config):
      layers, dtype = cpu_layers.LAYERS_HALF, jnp.float32
  return _model(
      num_classes=num_classes, features=tuple(m.features), norm=m.norm,
      se_reduction=m.se_reduction, supervision=config.supervision.enabled,
      norm_momentum=m.norm_momentum, norm_epsilon=m.norm_epsilon, renorm_r_max=m.renorm_r_max,
      renorm_d_max=m.renorm_d_max, renorm_warmup_steps=m.renorm_warmup_steps, axis_name=axis_name,
      dtype=dtype, **layers)


@functools.lru_cache(maxsize=None)
def _model(**attributes) -> UNetSE:
  # One instance per architecture, so that runs in one process (a sweep) share the
  # train state's static apply_fn and with it the compiled train step.
  return UNetSE(**attributes)
