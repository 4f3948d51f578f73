"""The launch scripts: their dry runs print the real commands and touch nothing; bad arguments are one line."""

import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(script, *args):
  return subprocess.run(['bash', os.path.join(ROOT, 'launch', script), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=60)


def commands(proc):
  return [line[2:] for line in proc.stdout.splitlines() if line.startswith('+ ')]


def test_gpu_sweep_dry_run(tmp_path):
  workdir = tmp_path / 'sweep'
  proc = launch('gpu_sweep.sh', '--dry-run', '--config=configs/mouse.py', f'--workdir={workdir}',
                '--gpus=0,1', '--python=py', '--install', '--', '--config.search.max_evals=8')
  assert proc.returncode == 0, proc.stderr
  assert commands(proc) == [
      'export CUDA_VISIBLE_DEVICES=0,1',
      'py -m pip install -q -e .[cuda12]',
      f'mkdir -p {workdir}',
      f'py -m frem_jax.search --config=configs/mouse.py --workdir={workdir} '
      f'--config.search.max_evals=8 2>&1 | tee -a {workdir}/search.log',
  ]
  assert not workdir.exists()


def test_gpu_sweep_dry_run_in_the_background(tmp_path):
  proc = launch('gpu_sweep.sh', '--dry-run', '--background', '--config=configs/drosophila.py',
                f'--workdir={tmp_path}/s', '--python=py')
  assert proc.returncode == 0, proc.stderr
  assert commands(proc)[-1] == (f'nohup py -m frem_jax.search --config=configs/drosophila.py '
                                f'--workdir={tmp_path}/s >> {tmp_path}/s/search.log 2>&1 &')


@pytest.mark.parametrize('args,message', [
    (['--workdir=x'], 'error: --config=FILE is required'),
    (['--config=configs/mouse.py'], 'error: --workdir=DIR is required'),
    (['--config=c', '--workdir=x', '--gpu=0'], 'error: unknown argument --gpu=0'),
])
def test_gpu_sweep_bad_arguments(args, message):
  proc = launch('gpu_sweep.sh', '--dry-run', *args)
  assert proc.returncode == 2
  assert proc.stderr.strip() == message + ' (see --help)'


TPU = ['--dry-run', '--project=proj', '--zone=us-central2-b']


def test_tpu_vm_dry_run_of_every_step():
  config = ['--config=configs/drosophila.py:supervision']
  source = ['--source=../shared/data/drosophila-vnc']
  gc = 'gcloud compute tpus tpu-vm'
  where = '--zone=us-central2-b --project=proj'
  create = commands(launch('tpu_vm.sh', 'create', *TPU, '--accelerator=v4-8'))
  assert create == [f'{gc} create frem-sweep {where} --accelerator-type=v4-8 --version=tpu-ubuntu2204-base']
  install = commands(launch('tpu_vm.sh', 'install', *TPU, *source))
  assert install[0].startswith('git archive --format=tar.gz -o /tmp/frem_jax.')
  assert "pip install -q -e '\\''.[tpu]'\\''" in install[2]
  assert install[-1] == f'{gc} scp --recurse ../shared/data/drosophila-vnc frem-sweep:data/ {where}'
  start = commands(launch('tpu_vm.sh', 'start', *TPU, *config, *source, '--', '--config.search.max_evals=20'))
  assert start == [
      f"{gc} ssh frem-sweep {where} '--command=mkdir -p $HOME/sweeps/drosophila_supervision && "
      'cd $HOME/frem_jax && nohup .venv/bin/python -m frem_jax.search --config=configs/drosophila.py:supervision '
      '--workdir=$HOME/sweeps/drosophila_supervision --config.search.max_evals=20 '
      '--config.dataset.source_dir=../data/drosophila-vnc >> $HOME/sweeps/drosophila_supervision/search.log '
      "2>&1 < /dev/null &'"]
  fetch = commands(launch('tpu_vm.sh', 'fetch', *TPU, *config))
  assert fetch[-1] == (f'{gc} scp --recurse frem-sweep:sweeps/drosophila_supervision '
                       f'sweeps/drosophila_supervision {where}')
  assert commands(launch('tpu_vm.sh', 'delete', *TPU)) == [f'{gc} delete frem-sweep {where} --quiet']
  assert not os.path.exists(os.path.join(ROOT, 'sweeps'))


@pytest.mark.parametrize('args,message', [
    (['bogus', '--zone=z'], "error: STEP must be one of create, install, start, status, fetch, delete; got 'bogus'"),
    (['create', '--zone=z'], 'error: create needs --project=PROJECT'),
    (['start', '--project=p'], 'error: start needs --zone=ZONE'),
    (['start', '--zone=z'], 'error: start needs --config=FILE'),
    (['start', '--zone=z', '--config=configs/nothere.py'], 'error: --config=configs/nothere.py: no such file in this checkout'),
    (['delete', '--zone=z', '--worker=3'], 'error: unknown argument --worker=3'),
])
def test_tpu_vm_bad_arguments(args, message):
  proc = launch('tpu_vm.sh', *args, '--dry-run')
  assert proc.returncode == 2
  assert proc.stderr.strip().startswith(message)


def test_reproduce_dry_run_runs_the_whole_protocol_in_order(tmp_path):
  out = tmp_path / 'repro'
  proc = launch('reproduce.sh', 'drosophila', '--quick', '--dry-run', '--source=DATA', f'--out={out}',
                '--python=py')
  assert proc.returncode == 0, proc.stderr
  cmds = commands(proc)
  assert [c.split()[2] for c in cmds] == ['frem_jax.train', 'frem_jax.search', 'frem_jax.search',
                                          'frem_jax.train', 'frem_jax.report']
  assert cmds[0].startswith(f'py -m frem_jax.train --config=configs/drosophila.py:baseline --workdir={out}/baseline '
                            '--config.dataset.source_dir=DATA')
  assert "'--config.model.features=(8, 16, 32, 64, 128)'" in cmds[0] and '--config.search.max_evals=3' in cmds[0]
  assert f'--config=configs/drosophila.py:supervision --workdir={out}/search_lambda' in cmds[1]
  assert f'--config=configs/drosophila.py --workdir={out}/search_bx --config.eval.frem_at_test=True' in cmds[2]
  assert f'--config=configs/drosophila.py:fixed --workdir={out}/fixed' in cmds[3]
  assert cmds[4] == (f'py -m frem_jax.report --runs baseline={out}/baseline '
                     f'supervision={out}/search_lambda/trial_BEST frem={out}/search_bx/trial_BEST '
                     f'fixed={out}/fixed --search={out}/search_bx --search={out}/search_lambda --out={out}/report')
  assert not out.exists()
  full = commands(launch('reproduce.sh', 'mouse', '--dry-run', '--source=M', '--python=py'))
  assert full[0] == ('py -m frem_jax.train --config=configs/mouse.py:baseline --workdir=repro/mouse/baseline '
                     '--config.dataset.source_dir=M --config.dataset.data_dir=repro/mouse/tensorflow_datasets')


@pytest.mark.parametrize('args,message', [
    (['rat', '--source=x'], "error: DATASET must be mouse or drosophila; got 'rat'"),
    (['mouse'], 'error: --source=DIR is required: the mouse data folder'),
    (['mouse', '--source=/nonexistent/folder'], 'error: --source=/nonexistent/folder is not a folder'),
    (['mouse', '--source=x', '--fast'], 'error: unknown argument --fast'),
])
def test_reproduce_bad_arguments(args, message):
  env = {k: v for k, v in os.environ.items() if k != 'FREM_DROSOPHILA_DIR'}
  proc = subprocess.run(['bash', os.path.join(ROOT, 'launch', 'reproduce.sh'), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.strip().startswith(message)
