"""What differs across the supported range (Python 3.11-3.13, jax 0.10.2-0.12.x), handled in one place.

Measured across the range (docs/install.md): `jax.pmap` (no deprecation
warning), `jax.ffi`, `jax.make_mesh`/`NamedSharding`, flax linen and
orbax-checkpoint's `args` classes keep their names and behaviour, so nothing
else needs bridging. What does differ is the XLA FFI's C API version:
jaxlib 0.10.2 speaks 0.3, jaxlib 0.12 speaks 0.5. The CPU kernels are built
against the vendored 0.3 headers; XLA accepts handlers from its minimum
supported version up to its own (0.1 to 0.5 in jaxlib 0.12), so they load on
both ends. A future jaxlib that drops 0.3 refuses them when they are
registered; then the model uses XLA's convolutions and says so once.
"""

import importlib.metadata
from typing import Callable

from absl import logging
import jax


def load_cpu_kernels(register: Callable[[], None], what: str = 'the CPU kernels',
                     instead: str = "XLA's convolutions") -> bool:
  """Runs `register` (loads the kernel library, registers its FFI targets); False if refused.

  A refusal (an FFI version this jaxlib no longer supports, a library that
  cannot load) is logged as one warning line naming `what` and what is used
  `instead`, and the caller falls back to that.
  """
  # XLA checks a handler's FFI version when it is registered into a running CPU
  # backend, and raises; registered before the backend starts, a refused handler
  # would instead make the whole CPU backend fail to start.
  jax.devices('cpu')
  try:
    register()
  except (OSError, RuntimeError) as e:  # jax.errors.JaxRuntimeError is a RuntimeError
    lines = str(e).strip().splitlines()
    logging.warning('frem_jax: %s cannot be used with jaxlib %s; %s are used instead (%s)', what,
                    importlib.metadata.version('jaxlib'), instead, lines[0] if lines else type(e).__name__)
    return False
  return True
