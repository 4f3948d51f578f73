"""Data parallelism on 2 simulated CPU devices gives the 1-device results."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from frem_jax import parallel
from frem_jax.errors import UserError
from tests.kernel_calls import train_targets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def trajectories():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2', JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, '-m', 'tests.parallel_trajectories'], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('parallelism', ['jit', 'jit_on_device', 'pmap'])
def test_two_devices_follow_the_one_device_trajectory(trajectories, parallelism):
  # Data on the device equals host-fed batches on 1 device (tests/test_train.py), so all compare with 'jit'.
  one, two = trajectories['jit']['1'], trajectories[parallelism]['2']
  assert len(one) == 4 and np.all(np.isfinite(one))
  np.testing.assert_allclose(two, one, rtol=1e-4)
  # ... with the CPU kernels on 2 devices, not XLA's convolutions compared with themselves.
  assert set(trajectories['kernels'][parallelism]) == train_targets()


def test_jit_and_pmap_agree(trajectories):
  np.testing.assert_allclose(trajectories['pmap']['2'], trajectories['jit']['2'], rtol=1e-4)


def test_batch_not_divisible_by_devices_is_refused():
  with pytest.raises(UserError, match='batch_size=5 is not divisible by the 2 devices; use a multiple of 2'):
    parallel.check_divisible(5, 2)


def test_more_devices_than_present_is_refused():
  with pytest.raises(UserError, match='num_devices=99 but this host has 1 devices'):
    parallel.local_devices(99)
