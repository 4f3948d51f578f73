"""The accelerator extras ('.[cuda12]', '.[cuda13]', '.[tpu]') resolve for the installed jax.

We cannot run them on this CPU. What can break is that an extra names
something PyPI does not serve for this jax, Python and platform, so the test
asks pip (a dry run, PyPI needed) for the packages each extra adds to the
installed jax: its own extra's plugin or libtpu, as wheels for this
interpreter. --no-deps keeps it to a few metadata reads (the plugins' CUDA
libraries are gigabytes); their pins are the plugins' own.
"""

import importlib.metadata
import json
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

EXTRAS = ('cuda12', 'cuda13', 'tpu')


def _requirements(dist: str, extra: str) -> list[Requirement]:
  env = {'extra': extra}
  reqs = [Requirement(r) for r in importlib.metadata.requires(dist) or []]
  return [r for r in reqs if r.marker is not None and r.marker.evaluate(env)
          and not (r.marker.evaluate({'extra': ''}))]


@pytest.mark.parametrize('extra', EXTRAS)
def test_our_extra_is_jaxs_own(extra):
  assert [str(r) for r in _requirements('frem_jax', extra)] == [f'jax[{extra}]; extra == "{extra}"']


@pytest.mark.pypi
def test_extras_resolve_on_pypi(tmp_path):
  jaxlib = importlib.metadata.version('jaxlib')
  added = sorted({str(r).split(';')[0] for extra in EXTRAS for r in _requirements('jax', extra)
                  if r.name not in ('jaxlib', 'requests')})
  assert any(r.startswith('jax-cuda12-plugin') for r in added)
  assert any(r.startswith('jax-cuda13-plugin') for r in added)
  assert any(r.startswith('libtpu') for r in added)
  report = tmp_path / 'report.json'
  subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-deps', '--ignore-installed',
                  '--only-binary', ':all:', '--quiet', '--report', str(report), *added],
                 check=True, timeout=300)
  resolved = {d['metadata']['name']: d['metadata']['version']
              for d in json.loads(report.read_text())['install']}
  assert resolved['jax-cuda12-plugin'] == jaxlib
  assert resolved['jax-cuda13-plugin'] == jaxlib
  assert 'libtpu' in resolved
