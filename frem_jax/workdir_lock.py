"""One writer per folder: an exclusive `flock` on FOLDER/.lock, held while a process writes there.

The OS releases the lock when its holder dies (even by SIGKILL), so a killed
run never leaves a stale lock behind. The lock file records who holds it (process
id, host, since when); a second process is refused with one line naming them
(`hold`), or waits for them (`hold(..., wait=True)`, used around preparing data).
A process may take a lock it already holds (re-entrant), e.g. a search's trials.
See docs/workdirs.md.
"""

import contextlib
import datetime
import errno
import fcntl
import functools
import inspect
import json
import os
import socket
import sys
import threading
import time

from absl import logging

from frem_jax import workdir as workdir_lib
from frem_jax.errors import UserError

# Set to 1 to run without the lock where the file system has no `flock` (some network file
# systems); then never start two processes on one folder.
NO_LOCK_ENV = 'FREM_JAX_NO_LOCK'
# flock's errors of a file system that does not support it.
_UNSUPPORTED = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL})

# realpath of a folder -> [fd of its lock file, count of `hold`s]: the locks this process holds.
_HELD: dict = {}
_HELD_GUARD = threading.Lock()


def holder(folder: str) -> str:
  """Who holds (or last held) the lock of `folder`, as 'process N on host H (since T)', read from its file."""
  try:
    with open(os.path.join(folder, workdir_lib.LOCK_FILE)) as f:
      info = json.load(f)
    return f'process {info["pid"]} on host {info["host"]} (since {info["since"]})'
  except (OSError, ValueError, KeyError, TypeError):
    return 'another process'  # its holder has not written its name yet


def _missing_parents(folder: str) -> list:
  """`folder` and those of its ancestors that do not exist yet, innermost first."""
  missing = []
  path = os.path.abspath(folder)
  while not os.path.exists(path):
    missing.append(path)
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  return missing


def _unsupported(folder: str, flag: str, error: OSError) -> UserError:
  return UserError(f'{flag}={folder} cannot be locked: its file system does not support file locks '
                   f'(flock: {error.strerror}); use a folder on a local disk, or set {NO_LOCK_ENV}=1 '
                   'to run without this guard (then never start two processes on one folder)')


def _in_use(folder: str, flag: str) -> UserError:
  return UserError(f'{flag}={folder} is in use by {holder(folder)}; wait for it to finish, '
                   'or use another folder')


def _lock(folder: str, flag: str, wait, read_only_ok: bool):
  """Takes the lock of `folder` (created if missing): the fd of its lock file, locked (None: read-only)."""
  path = os.path.join(folder, workdir_lib.LOCK_FILE)
  waited = False
  deadline = None if wait is True else time.monotonic() + float(wait)
  while True:
    try:
      os.makedirs(folder, exist_ok=True)
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except FileNotFoundError:
      continue  # a holder that created the folder removed it on release: create it again
    except OSError as e:
      if read_only_ok and e.errno in (errno.EACCES, errno.EROFS) and os.path.isdir(folder):
        return None
      raise UserError(f'{flag}={folder}: cannot create its lock file {path} ({e.strerror}); '
                      'use a folder you can write to') from e
    try:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        if not wait:
          raise _in_use(folder, flag) from None
        if not waited:
          logging.warning('%s is in use by %s; waiting for it to finish', folder, holder(folder))
          waited = True
        if deadline is None:
          fcntl.flock(fd, fcntl.LOCK_EX)
        else:
          _flock_before(fd, deadline, folder, flag)
    except OSError as e:
      empty = os.fstat(fd).st_size == 0
      os.close(fd)
      if e.errno in _UNSUPPORTED:
        if empty:  # no process can lock here: the file is ours, just made
          os.unlink(path)
        raise _unsupported(folder, flag, e) from e
      raise
    except BaseException:
      os.close(fd)
      raise
    # The previous holder removes the lock file on release: a lock taken on a removed file is none.
    try:
      same = os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
      same = False
    if same:
      return fd
    os.close(fd)


def _flock_before(fd: int, deadline: float, folder: str, flag: str) -> None:
  # flock has no timeout: poll until the holder lets go or the time is up.
  while True:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return
    except BlockingIOError:
      if time.monotonic() > deadline:
        raise _in_use(folder, flag) from None
      time.sleep(0.5)


def _record_holder(fd: int) -> None:
  since = datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')
  info = {'pid': os.getpid(), 'host': socket.gethostname(), 'since': since,
          'command': ' '.join(sys.argv)}
  os.ftruncate(fd, 0)
  os.pwrite(fd, (json.dumps(info) + '\n').encode(), 0)


@contextlib.contextmanager
def hold(folder: str, flag: str = '--workdir', wait=False, read_only_ok: bool = False):
  """Holds the exclusive lock of `folder` (creating the folder) for the `with` block.

  Another process holding it raises UserError naming it; with
  `wait` it is waited for, after one log line: for as long as it takes with
  True, for at most that many seconds with a number. With `read_only_ok`, a folder this process
  cannot write to is used without the lock (a reader of prepared data cannot
  collide with a writer there). On release the lock file is removed, and so are
  the folders this call created if nothing else was written into them.
  """
  if os.environ.get(NO_LOCK_ENV) == '1':
    yield
    return
  workdir_lib.check_not_a_file(folder, flag)
  key = os.path.realpath(folder)
  with _HELD_GUARD:
    reentered = key in _HELD
    if reentered:
      _HELD[key][1] += 1
  created = None
  if not reentered:
    created = _missing_parents(folder)
    try:
      fd = _lock(folder, flag, wait, read_only_ok)  # outside the guard: a wait must not stop other threads
    except BaseException:
      _remove_empty(created)
      raise
    if fd is None:
      yield
      return
    _record_holder(fd)
    with _HELD_GUARD:
      _HELD[key] = [fd, 1]
  try:
    yield
  finally:
    with _HELD_GUARD:
      _HELD[key][1] -= 1
      if not _HELD[key][1]:
        fd = _HELD.pop(key)[0]
        with contextlib.suppress(FileNotFoundError):
          os.unlink(os.path.join(folder, workdir_lib.LOCK_FILE))  # while still locked: see `_lock`
        os.close(fd)
        _remove_empty(created)


def _remove_empty(folders) -> None:
  for folder in folders or ():
    try:
      os.rmdir(folder)
    except OSError:
      return  # not empty (or gone): keep it and its parents


def holding(arg: str, flag: str):
  """Decorator: the function runs holding the lock of its folder argument `arg` (see `hold`).

  If `arg` is a sequence of folders (a population's members), it holds each of them.
  """
  def decorate(fn):
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def locked(*args, **kwargs):
      folders = signature.bind(*args, **kwargs).arguments[arg]
      with contextlib.ExitStack() as held:
        for folder in ([folders] if isinstance(folders, (str, os.PathLike)) else folders):
          held.enter_context(hold(folder, flag))
        return fn(*args, **kwargs)
    return locked
  return decorate
