"""C++ sources of the XLA:CPU convolution kernels (built by setup.py, loaded by frem_jax.cpu.ffi)."""
