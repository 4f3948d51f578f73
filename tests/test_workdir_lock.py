"""One writer per folder: a second run, sweep, predict or report on a held folder is refused;
a killed holder leaves no stale lock; two processes preparing one dataset both succeed."""

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from frem_jax import predict
from frem_jax import report
from frem_jax import search
from frem_jax import train
from frem_jax import workdir_lock
from frem_jax.errors import UserError
from tests.tiny import DATA_DIR, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILE = """
from tests.tiny import tiny_config

def get_config():
  config = tiny_config(**{{'dataset.data_dir': {data_dir!r}}})
  config.num_epochs = {num_epochs}
  config.search.max_evals = 2
  return config
"""
REFUSAL = ('error: --workdir={folder} is in use by process {pid} on host {host} (since ', '); wait for it '
           'to finish, or use another folder')


def read_json(path):
  with open(path) as f:
    return json.load(f)


def config_file(tmp_path, num_epochs):
  path = tmp_path / 'config.py'
  path.write_text(CONFIG_FILE.format(data_dir=DATA_DIR, num_epochs=num_epochs))
  return path


def start(tmp_path, module, *args, name='first'):
  """A `python -m module args` process; its stderr goes to tmp_path/<name>.err."""
  err = open(tmp_path / f'{name}.err', 'w')  # pylint: disable=consider-using-with
  return subprocess.Popen([sys.executable, '-m', module, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=err)


def run(module, *args):
  return subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)


def stop_once(proc, condition):
  """Polls `condition()` and stops `proc` (SIGSTOP) as soon as it holds; fails if `proc` ends first."""
  deadline = time.time() + 240
  while not condition():
    assert proc.poll() is None and time.time() < deadline, 'the first process ended before the test caught it'
    time.sleep(0.01)
  os.kill(proc.pid, signal.SIGSTOP)


def holds(folder, pid):
  try:
    return read_json(os.path.join(folder, '.lock'))['pid'] == pid
  except (OSError, ValueError):
    return False


def snapshot(folder):
  """Every file under `folder` with its size and modification time."""
  out = {}
  for root, _, names in os.walk(folder):
    for name in names:
      st = os.stat(os.path.join(root, name))
      out[os.path.relpath(os.path.join(root, name), folder)] = (st.st_size, st.st_mtime_ns)
  return out


def assert_refused(proc, folder, pid):
  assert proc.returncode == 1
  line = proc.stderr.strip().splitlines()[-1]
  start_, end = REFUSAL
  assert line.startswith(start_.format(folder=folder, pid=pid, host=socket.gethostname())), line
  assert line.endswith(end) and 'Traceback' not in proc.stderr


@pytest.fixture(scope='module')
def run_alone(tmp_path_factory):
  return train.train_and_evaluate(tiny_config(), str(tmp_path_factory.mktemp('alone')))


def test_second_train_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path, run_alone):
  workdir = tmp_path / 'run'
  args = [f'--config={config_file(tmp_path, 3)}', f'--workdir={workdir}']
  first = start(tmp_path, 'frem_jax.train', *args)
  try:
    # Caught after its first checkpoint, with the lock held: orbax renames a finished checkpoint
    # into place, so the folder `1` is a whole one.
    stop_once(first, lambda: os.path.isdir(workdir / 'checkpoints' / '1') and holds(workdir, first.pid))
    before = snapshot(workdir)
    second = run('frem_jax.train', *args)
    assert_refused(second, workdir, first.pid)
    assert snapshot(workdir) == before  # nothing of the first run touched
  finally:
    first.kill()  # SIGKILL, still holding the lock
    first.wait()
  assert read_json(workdir / '.lock')['pid'] == first.pid  # the file stays; the OS released the lock

  third = run('frem_jax.train', *args)
  assert third.returncode == 0, third.stderr
  epochs_done = [json.loads(l)['epoch'] for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert epochs_done == [1, 2, 3]
  assert 'Resuming' in third.stderr
  results = read_json(workdir / 'results.json')
  assert results['best_epoch'] == run_alone['best_epoch']
  assert results['val'] == run_alone['val'] and results['test'] == run_alone['test']
  assert not os.path.exists(workdir / '.lock')  # removed on release


def test_second_sweep_is_refused_and_the_first_ends_as_if_alone(tmp_path):
  workdir = tmp_path / 'sweep'
  args = [f'--config={config_file(tmp_path, 1)}', f'--workdir={workdir}']
  first = start(tmp_path, 'frem_jax.search', *args)
  try:
    stop_once(first, lambda: holds(workdir, first.pid))
    before = snapshot(workdir)
    second = run('frem_jax.search', *args)
    assert_refused(second, workdir, first.pid)
    assert snapshot(workdir) == before
  finally:
    os.kill(first.pid, signal.SIGCONT)
  assert first.wait(timeout=300) == 0, (tmp_path / 'first.err').read_text()

  alone = search.run_search(tiny_config(num_epochs=1, **{'search.max_evals': 2}), str(tmp_path / 'alone'))
  trials = read_json(workdir / 'trials.json')['trials']
  assert [t['status'] for t in trials] == ['ok', 'ok']
  keys = ('number', 'values', 'val_miou', 'best_epoch', 'test_miou', 'test_iou_per_class')
  assert [{k: t[k] for k in keys} for t in trials] == [{k: t[k] for k in keys} for t in alone['trials']]


LOAD_SCRIPT = """
import hashlib, sys
from frem_jax import datasets
from tests.tiny import tiny_config
ds = tiny_config(**{'dataset.seed': 4321}).dataset
splits, _ = datasets.load(ds, sys.argv[1])
print(hashlib.sha1(b''.join(s.images.tobytes() + s.masks.tobytes() for s in splits.values())).hexdigest())
"""


def test_two_processes_preparing_one_dataset_both_succeed_with_one_copy(tmp_path):
  data_dir = tmp_path / 'data'
  procs = []
  # Both start while the folder is held, so that both wait and then race to prepare it.
  with workdir_lock.hold(str(data_dir), 'dataset.data_dir'):
    for name in ('a', 'b'):
      procs.append(subprocess.Popen([sys.executable, '-c', LOAD_SCRIPT, str(data_dir)], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=open(tmp_path / name, 'w'), text=True))
    deadline = time.time() + 120
    while not all(f'is in use by process {os.getpid()}' in (tmp_path / n).read_text() for n in 'ab'):
      assert time.time() < deadline and all(p.poll() is None for p in procs), [(tmp_path / n).read_text() for n in 'ab']
      time.sleep(0.05)
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [(tmp_path / n).read_text() for n in 'ab']
  digests = [o.strip().splitlines()[-1] for o in outputs]  # TFDS also prints to stdout
  assert digests[0] == digests[1] and len(digests[0]) == 40
  assert 'waiting for it to finish' in (tmp_path / 'a').read_text()
  prepared = [root for root, _, names in os.walk(data_dir) if 'dataset_info.json' in names]
  assert len(prepared) == 1, prepared
  assert not os.path.exists(data_dir / '.lock')


def hold_as_another_process(folder, pid=4242):
  """Holds `folder`'s lock through a second open file (flock treats it as another holder)."""
  os.makedirs(folder, exist_ok=True)
  fd = os.open(os.path.join(folder, '.lock'), os.O_RDWR | os.O_CREAT)
  fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  os.write(fd, json.dumps({'pid': pid, 'host': 'elsewhere', 'since': 'noon'}).encode())
  return fd


@pytest.mark.parametrize('write,flag', [
    (lambda out: predict.predict_files('no_run', 'no_input', out), '--output'),
    (lambda out: report.write_report({}, [], out), '--out'),
])
def test_predict_and_report_refuse_a_held_folder_before_anything(tmp_path, write, flag):
  out = str(tmp_path / 'out')
  fd = hold_as_another_process(out)
  try:
    with pytest.raises(UserError) as e:
      write(out)
  finally:
    os.close(fd)
  assert str(e.value) == (f'{flag}={out} is in use by process 4242 on host elsewhere (since noon); '
                          'wait for it to finish, or use another folder')
  assert os.listdir(out) == ['.lock']


def test_a_population_with_a_held_member_is_refused_and_its_other_members_left_as_they_were(tmp_path):
  first, held = str(tmp_path / 'member0'), str(tmp_path / 'member1')
  fd = hold_as_another_process(held)
  try:
    with pytest.raises(UserError) as e:
      train.train_population([tiny_config(), tiny_config(**{'frem.factor': 10.0})], [first, held])
  finally:
    os.close(fd)
  assert str(e.value) == (f'--workdir={held} is in use by process 4242 on host elsewhere (since noon); '
                          'wait for it to finish, or use another folder')
  assert not os.path.exists(first)  # its lock was taken, then released with the folder it made
  assert os.listdir(held) == ['.lock']


def test_a_process_takes_its_own_lock_again_and_removes_what_it_created(tmp_path):
  folder = str(tmp_path / 'a' / 'b')
  with workdir_lock.hold(folder):
    with workdir_lock.hold(folder):  # re-entrant: no deadlock
      assert read_json(os.path.join(folder, '.lock'))['pid'] == os.getpid()
    assert os.path.exists(os.path.join(folder, '.lock'))
  assert not os.path.exists(tmp_path / 'a')  # nothing was written into them


def test_a_file_system_without_flock_is_named_or_opted_out(tmp_path, monkeypatch):
  def no_flock(fd, op):
    raise OSError(errno.ENOLCK, 'No locks available')
  monkeypatch.setattr(workdir_lock.fcntl, 'flock', no_flock)
  folder = str(tmp_path / 'nfs')
  with pytest.raises(UserError) as e:
    with workdir_lock.hold(folder):
      pass
  assert str(e.value) == (f'--workdir={folder} cannot be locked: its file system does not support file '
                          'locks (flock: No locks available); use a folder on a local disk, or set '
                          'FREM_JAX_NO_LOCK=1 to run without this guard (then never start two processes '
                          'on one folder)')
  assert not os.path.exists(folder)
  monkeypatch.setenv('FREM_JAX_NO_LOCK', '1')
  with workdir_lock.hold(folder):
    pass  # unguarded, as asked


def test_a_ray_trial_waits_for_a_killed_sweeps_worker_then_gives_up_naming_the_holder(tmp_path):
  from frem_jax.search import ray_tune  # pylint: disable=g-import-not-at-top  (no Ray needed here)
  folder = tmp_path / 'trial_001'
  hold = ('import sys, time; from frem_jax import workdir_lock\n'
          f'with workdir_lock.hold({str(folder)!r}):\n'
          '  print("held", flush=True); time.sleep(float(sys.argv[1]))')
  # A worker that lets go after 2 s is waited for.
  proc = subprocess.Popen([sys.executable, '-c', hold, '2'], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == 'held'
  start = time.monotonic()
  ray_tune._wait_for_a_killed_sweeps_worker(str(folder), seconds=60)  # pylint: disable=protected-access
  assert proc.wait() == 0 and time.monotonic() - start < 60
  # One that holds on past the wait: its 'in use' error, naming it.
  proc = subprocess.Popen([sys.executable, '-c', hold, '30'], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline().strip() == 'held'
    with pytest.raises(UserError, match=rf'trial_001 is in use by process {proc.pid} on host'):
      ray_tune._wait_for_a_killed_sweeps_worker(str(folder), seconds=1)  # pylint: disable=protected-access
  finally:
    proc.kill()
    proc.wait()
