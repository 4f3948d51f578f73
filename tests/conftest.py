"""Shared test settings: small shapes, CPU only."""

import os
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# The commands the tests start write their compiled steps to a cache folder of this session, not to
# the user's (~/.cache/frem_jax/jax), which would also let an earlier session's entries decide a test.
os.environ.setdefault('FREM_JAX_COMPILATION_CACHE', tempfile.mkdtemp(prefix='frem_jax_compilation_cache_'))
