"""Atomic file writes: a reader never sees a half-written file."""

import json
import os
import tempfile
from typing import Any, BinaryIO, Callable

# write_atomic's temporary files are named '.NAME.RANDOM.tmp'.
_TEMPORARY_PREFIX, _TEMPORARY_SUFFIX = '.', '.tmp'


def write_atomic(path: str, write: Callable[[BinaryIO], None]) -> None:
  """Calls `write(binary_file)` on a temporary file beside `path`, then renames it to `path`.

  On any error the temporary file is removed and `path` is left as it was.
  """
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=_TEMPORARY_PREFIX + os.path.basename(path) + '.',
                             suffix=_TEMPORARY_SUFFIX)
  try:
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    with os.fdopen(fd, 'wb') as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def is_temporary(name: str) -> bool:
  """Whether the file name `name` is one of write_atomic's temporary files.

  A process killed while writing (a sweep's worker, say) leaves one behind;
  it holds nothing that was ever in place, so a folder with only these is empty.
  """
  return name.startswith(_TEMPORARY_PREFIX) and name.endswith(_TEMPORARY_SUFFIX)


def save_figure_atomic(fig, path: str) -> str:
  """Writes a matplotlib figure to `path` as PNG atomically, closes it and returns `path`."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  try:
    write_atomic(path, lambda f: fig.savefig(f, format='png'))
  finally:
    plt.close(fig)
  return path


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` (UTF-8) to `path` atomically."""
  data = text.encode('utf-8')
  write_atomic(path, lambda f: f.write(data))


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes `obj` as indented JSON to `path` atomically."""
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + '\n')
