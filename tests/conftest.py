"""Shared test settings: small shapes, CPU only."""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
