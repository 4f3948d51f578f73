"""XLA:CPU settings chosen by measurement (see the README's performance section)."""

import os

# Applied only where the user has not set XLA_FLAGS themselves, and only
# affecting the CPU backend (the flags are xla_cpu_*).
CPU_FLAGS = ()


def current_flags() -> str:
  """The XLA_FLAGS in effect for this process."""
  return os.environ.get('XLA_FLAGS', '')
