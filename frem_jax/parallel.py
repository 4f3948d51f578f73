"""Device placement: a 1-D mesh over the local devices for jit, or the device list for pmap."""

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from frem_jax.errors import UserError

DATA_AXIS = 'data'
PMAP_AXIS = 'batch'


def local_devices(num_devices: int = 0) -> list:
  """The first `num_devices` local devices (all of them for 0)."""
  devices = jax.local_devices()
  if num_devices < 0 or num_devices > len(devices):
    raise UserError(f'num_devices={num_devices} but this host has {len(devices)} devices; '
                    f'use 0 (all) or a number up to {len(devices)}')
  return devices[:num_devices or len(devices)]


def check_divisible(batch_size: int, num_devices: int, name: str = 'batch_size') -> None:
  """Raises UserError unless the global batch splits evenly over the devices."""
  if batch_size % num_devices:
    raise UserError(f'{name}={batch_size} is not divisible by the {num_devices} devices; '
                    f'use a multiple of {num_devices} or set num_devices')


def make_mesh(devices: list) -> Mesh:
  """A mesh with one axis, 'data', over `devices`."""
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters, optimizer state, scalars)."""
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """The leading (batch) axis is split over the 'data' axis."""
  return NamedSharding(mesh, P(DATA_AXIS))
