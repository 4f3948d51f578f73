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
      'py -m pip install -q -e . jax[cuda12]==0.10.2',
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
  assert "pip install -q -e . '\\''jax[tpu]==0.10.2'\\''" in install[2]
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
