"""The optional CPU wing: faster layers for XLA:CPU, the malloc settings and the benchmark.

Nothing in `frem_jax.model` imports this package. `frem_jax.build.build_model`
plugs `layers.LAYERS` into `UNetSE` when the CPU backend runs the model
(`model.layers='auto'`); they have flax's parameters and outputs. `kernels/`
holds the C++ kernels (built by setup.py), `ffi.py` calls them through the XLA
FFI, `malloc.py` the glibc settings (`tune_malloc`), `benchmark.py` the timing
behind `python -m frem_jax.bench`.
"""

from frem_jax.cpu.malloc import tune_malloc  # noqa: F401  (public: frem_jax.cpu.tune_malloc())
