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
from packaging.version import Version

EXTRAS = ('cuda12', 'cuda13', 'tpu')


def _requirements(dist: str, extra: str) -> list[Requirement]:
  env = {'extra': extra}
  reqs = [Requirement(r) for r in importlib.metadata.requires(dist) or []]
  return [r for r in reqs if r.marker is not None and r.marker.evaluate(env)
          and not (r.marker.evaluate({'extra': ''}))]


@pytest.mark.parametrize('extra', EXTRAS)
def test_our_extra_is_jaxs_own(extra):
  assert [str(r) for r in _requirements('frem_jax', extra)] == [f'jax[{extra}]; extra == "{extra}"']


def _dry_run(tmp_path, requirements: list) -> dict:
  """{name: version} pip would install for `requirements` (wheels for this interpreter, no deps); {} where PyPI has none."""
  report = tmp_path / 'report.json'
  proc = subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-deps', '--ignore-installed',
                         '--only-binary', ':all:', '--quiet', '--report', str(report), *requirements],
                        capture_output=True, text=True, timeout=300)
  if proc.returncode != 0 and 'No matching distribution found' in proc.stderr:
    return {}
  assert proc.returncode == 0, proc.stderr[-2000:]
  return {d['metadata']['name']: d['metadata']['version'] for d in json.loads(report.read_text())['install']}


@pytest.mark.pypi
def test_extras_resolve_on_pypi(tmp_path):
  jaxlib = importlib.metadata.version('jaxlib')
  added = sorted({str(r).split(';')[0] for extra in EXTRAS for r in _requirements('jax', extra)
                  if r.name not in ('jaxlib', 'requests')})
  assert any(r.startswith('jax-cuda12-plugin') for r in added)
  assert any(r.startswith('jax-cuda13-plugin') for r in added)
  assert any(r.startswith('libtpu') for r in added)
  resolved = _dry_run(tmp_path, added)
  plugins = ('jax-cuda12-plugin', 'jax-cuda13-plugin')
  if resolved:
    assert resolved['jax-cuda12-plugin'] == jaxlib
    assert resolved['jax-cuda13-plugin'] == jaxlib
    assert 'libtpu' in resolved
    return
  # The installed jax is newer than some of its accelerator packages on PyPI (they follow a release:
  # on 2026-12-06 jax 0.12.1 was out, its cuda12 plugin and libtpu not yet): pip then installs the
  # extra with the newest jax whose packages are there, which must lie in our supported range.
  jax_range = next(r.specifier for r in map(Requirement, importlib.metadata.requires('frem_jax'))
                   if r.name == 'jax' and r.marker is None)
  resolved = _dry_run(tmp_path, [f'{p}[with-cuda]{jax_range}' for p in plugins] + ['libtpu'])
  for p in plugins:
    assert resolved.get(p) is not None, f'no {p} on PyPI for jax {jax_range}'
    assert Version(resolved[p]) in jax_range and Version(resolved[p]) <= Version(jaxlib)
  assert 'libtpu' in resolved
