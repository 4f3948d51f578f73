"""The launch scripts: their dry runs print the real commands and touch nothing; bad arguments are one line."""

import importlib.util
import json
import os
import subprocess
import sys

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
  started = launch('tpu_vm.sh', 'start', *TPU, *config, *source, '--', '--config.search.max_evals=20')
  start, start_out = commands(started), started.stdout
  assert start == [
      f"{gc} ssh frem-sweep {where} '--command=mkdir -p $HOME/sweeps/drosophila_supervision && "
      'cd $HOME/frem_jax && nohup .venv/bin/python -m frem_jax.search --config=configs/drosophila.py:supervision '
      '--workdir=$HOME/sweeps/drosophila_supervision --config.search.max_evals=20 '
      '--config.dataset.source_dir=../data/drosophila-vnc >> $HOME/sweeps/drosophila_supervision/search.log '
      "2>&1 < /dev/null &'"]
  assert '# started; watch it with: launch/tpu_vm.sh status --project=proj --zone=us-central2-b' in start_out
  fetch = commands(launch('tpu_vm.sh', 'fetch', *TPU, *config))
  # Into a fresh folder, then over the local one: a second fetch must not nest the copy inside it.
  assert fetch[-3:] == [f'{gc} scp --recurse frem-sweep:sweeps/drosophila_supervision '
                        f'sweeps/drosophila_supervision.fetching/ {where}',
                        'cp -a sweeps/drosophila_supervision.fetching/drosophila_supervision/. sweeps/drosophila_supervision/',
                        'rm -rf sweeps/drosophila_supervision.fetching']
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


PROTOCOL = "--config.num_epochs=60 --config.dataset.source_dir=DATA --config.dataset.data_dir={out}/tensorflow_datasets '--config.model.features=(16, 32, 64, 128, 512)'"


def test_study_dry_run_prints_the_runs_seed_major_then_the_report(tmp_path):
  out = tmp_path / 'study'
  proc = launch('study.sh', 'drosophila', '--seeds=2', '--dry-run', '--source=DATA', f'--out={out}',
                '--python=py', '--', '--config.eval.full_section_overlap=32')
  assert proc.returncode == 0, proc.stderr
  protocol = PROTOCOL.format(out=out)
  expected = []
  for s in (0, 1):
    expected += [
        f'py -m frem_jax.train --config=configs/drosophila.py:baseline --workdir={out}/seed{s}/baseline '
        f'--config.seed={s} {protocol} --config.eval.full_section_overlap=32',
        f'py -m frem_jax.train --config=configs/drosophila.py:supervision --workdir={out}/seed{s}/supervision '
        f'--config.seed={s} {protocol} --config.eval.full_section_overlap=32',
        f'py -m frem_jax.train --config=configs/drosophila.py --workdir={out}/seed{s}/frem '
        f'--config.seed={s} {protocol} --config.eval.frem_at_test=True --config.eval.full_section_overlap=32']
  expected.append(f'py -m frem_jax.report --runs baseline={out}/seed0/baseline,{out}/seed1/baseline '
                  f'supervision={out}/seed0/supervision,{out}/seed1/supervision '
                  f'frem={out}/seed0/frem,{out}/seed1/frem --out={out}/report')
  assert commands(proc) == expected
  assert ('# 6 runs (2 seeds × 3 methods, 60 epochs each): 0 finished, 6 to run, 360 epochs still to train'
          in proc.stdout)
  assert '# 43 s/epoch (documented measurement' in proc.stdout and 'about 4.3 h of training' in proc.stdout
  assert not out.exists()


def test_study_methods_trains_the_variance_shift_and_draws_variants_without_a_report(tmp_path):
  out = tmp_path / 'study'
  proc = launch('study.sh', 'drosophila', '--seeds=1', '--dry-run', '--source=DATA', f'--out={out}', '--python=py',
                '--methods=frem_reestimate,frem_step,frem_step_reestimate,baseline_reestimate')
  assert proc.returncode == 0, proc.stderr
  protocol = PROTOCOL.format(out=out)
  run = f'py -m frem_jax.train --config=configs/drosophila.py{{}} --workdir={out}/seed0/{{}} --config.seed=0 {protocol}'
  assert commands(proc) == [
      run.format('', 'frem_reestimate') + ' --config.eval.frem_at_test=True --config.eval.reestimate_statistics=True',
      run.format('', 'frem_step') + ' --config.eval.frem_at_test=True --config.frem.redraw=step',
      run.format('', 'frem_step_reestimate') + ' --config.eval.frem_at_test=True --config.frem.redraw=step'
      ' --config.eval.reestimate_statistics=True',
      run.format(':baseline', 'baseline_reestimate') + ' --config.eval.reestimate_statistics=True']
  assert '# 4 runs (1 seeds × 4 methods, 60 epochs each)' in proc.stdout
  assert '# no report: it pairs baseline, supervision and frem' in proc.stdout


def test_study_skips_finished_runs_and_measures_seconds_per_epoch(tmp_path):
  out = tmp_path / 'study'
  (out / 'seed0' / 'baseline').mkdir(parents=True)
  (out / 'seed0' / 'baseline' / 'results.json').write_text('{"epochs_completed": 60, "train_seconds": 600.0}')
  meta = out / 'seed0' / 'supervision' / 'checkpoints' / '20' / 'meta'
  meta.mkdir(parents=True)
  (meta / 'metadata').write_text('{"epoch": 20, "train_seconds": 400.0, "best_val_miou": 0.5}')
  # A run trained while the machine was shared: 10× slower, it must not drag the estimate.
  shared = out / 'seed1' / 'baseline' / 'checkpoints' / '5' / 'meta'
  shared.mkdir(parents=True)
  (shared / 'metadata').write_text('{"epoch": 5, "train_seconds": 500.0, "best_val_miou": 0.5}')
  proc = launch('study.sh', 'drosophila', '--seeds=2', '--dry-run', '--source=DATA', f'--out={out}')
  assert proc.returncode == 0, proc.stderr
  assert '# seed 0, baseline: finished (60 epochs), skipped' in proc.stdout
  cmds = commands(proc)
  assert len(cmds) == 6 and f'--workdir={out}/seed0/supervision' in cmds[0]
  # 5 runs left: 40 + 60 + 55 + 60 + 60 = 275 epochs; rates 10, 20 and 100 s/epoch, median 20
  # -> 1.53 h (their mean over the epochs, 1500 s / 85, would say 1.3 h; the fastest, 0.8 h).
  assert '1 finished, 5 to run, 275 epochs still to train' in proc.stdout
  assert f'# 20 s/epoch (median over 3 runs already in {out}, 10–100 s/epoch): about 1.5 h' in proc.stdout
  # Asked for more epochs, the finished run is trained on (train resumes it).
  more = launch('study.sh', 'drosophila', '--seeds=1', '--epochs=70', '--dry-run', '--source=DATA', f'--out={out}')
  assert f'--workdir={out}/seed0/baseline' in commands(more)[0]
  assert '130 epochs still to train' in more.stdout  # 10 + 50 + 70 (seed 1 is not asked for)


def test_study_estimate_from_one_run_names_it_once(tmp_path):
  meta = tmp_path / 'seed0' / 'baseline' / 'checkpoints' / '3' / 'meta'
  meta.mkdir(parents=True)
  (meta / 'metadata').write_text('{"epoch": 3, "train_seconds": 120.0, "best_val_miou": 0.5}')
  proc = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'study_plan.py'), 'estimate', str(tmp_path),
                         '60', '1', 'baseline', '43', 'documented'], capture_output=True, text=True, check=True)
  # 57 epochs at 40 s/epoch = 0.63 h; one run has no median and no range.
  assert proc.stdout.splitlines()[1] == (f'40 s/epoch (measured on the run already in {tmp_path}): about 0.6 h '
                                         "of training (plus each run's compile and test evaluation)")


@pytest.mark.parametrize('args,message', [
    (['rat', '--seeds=2'], "error: DATASET must be drosophila or synthetic; got 'rat' (see --help)"),
    (['drosophila', '--source=x'], "error: --seeds=N must be a positive integer (e.g. --seeds=3); got ''"),
    (['drosophila', '--source=x', '--seeds=0'], "error: --seeds=N must be a positive integer (e.g. --seeds=3); got '0'"),
    (['drosophila', '--source=x', '--seeds=3', '--epochs=ten'], "error: --epochs=E must be a positive integer; got 'ten'"),
    (['drosophila', '--seeds=3'], 'error: --source=DIR is required: the Drosophila data folder (or set FREM_DROSOPHILA_DIR)'),
    (['synthetic', '--seeds=3', '--source=x'], 'error: --source is for drosophila; the synthetic data is generated'),
    (['drosophila', '--seeds=3', '--source=x', '--seed=2'], 'error: unknown argument --seed=2 (see --help)'),
    (['drosophila', '--seeds=3', '--source=x', '--methods=frem,dropout'],
     "error: --methods: unknown method 'dropout'; choose from baseline, supervision, frem, frem_reestimate, "
     'frem_step, frem_step_reestimate, baseline_reestimate'),
    (['drosophila', '--seeds=3', '--source=x', '--methods='], 'error: --methods=LIST is empty; e.g. --methods=baseline,frem'),
])
def test_study_bad_arguments_are_one_line(args, message):
  env = {k: v for k, v in os.environ.items() if k != 'FREM_DROSOPHILA_DIR'}
  proc = subprocess.run(['bash', os.path.join(ROOT, 'launch', 'study.sh'), *args, '--dry-run'], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.strip() == message


def test_study_help_is_the_header():
  proc = launch('study.sh', '--help')
  assert proc.returncode == 0 and 'REDUCED PROTOCOL is the default' in proc.stdout
  assert 'set -euo' not in proc.stdout


# A tiny study: the synthetic data at 32², two stages of widths (4, 8), 1 epoch.
TINY = ['--config.dataset.image_size=32', '--config.dataset.num_train=8', '--config.dataset.num_validation=4',
        '--config.dataset.num_test=4', '--config.model.features=(4, 8)', '--config.model.renorm_warmup_steps=4',
        '--config.batch_size=4', '--config.eval_batch_size=8', '--config.frem.num_selected=5',
        '--config.frem.factor=20']


def test_tiny_study_on_synthetic_data_ends_with_paired_seed_statistics(tmp_path):
  out = tmp_path / 'study'
  proc = subprocess.run(['bash', os.path.join(ROOT, 'launch', 'study.sh'), 'synthetic', '--seeds=2', '--epochs=1',
                         f'--out={out}', f'--python={sys.executable}', '--', *TINY],
                        cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().endswith(f'# done: {out}/report/report.md')
  for s in (0, 1):
    for m in ('baseline', 'supervision', 'frem'):
      with open(out / f'seed{s}' / m / 'results.json') as f:
        results = json.load(f)
      assert results['config']['seed'] == s and results['epochs_completed'] == 1
      assert results['config']['frem']['enabled'] == (m == 'frem')
      assert results['config']['supervision']['enabled'] == (m == 'supervision')
  with open(out / 'report' / 'report.json') as f:
    rep = json.load(f)
  assert [r['n'] for r in rep['seed_stats']['table_iou']] == [2, 2, 2]
  fb = rep['seed_stats']['paired'][0]
  assert (fb['a'], fb['b'], fb['seeds'], fb['paired']) == ('frem', 'baseline', [0, 1], True)
  assert len(fb['ci']) == 2 and 'learning_curves' in rep['figures']
  # Run again: everything is finished, nothing is trained.
  again = subprocess.run(['bash', os.path.join(ROOT, 'launch', 'study.sh'), 'synthetic', '--seeds=2', '--epochs=1',
                          f'--out={out}', '--python=py', '--dry-run', '--', *TINY],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert again.stdout.count('finished (1 epochs), skipped') == 6
  assert [c.split()[2] for c in commands(again)] == ['frem_jax.report']


def _sweep(folder, trials, num_epochs=60):
  folder.mkdir(parents=True)
  (folder / 'trials.json').write_text(json.dumps({'config': {'num_epochs': num_epochs}, 'trials': trials}))


def test_tuned_study_dry_run_trains_the_winners_and_resumes_the_runners_up(tmp_path):
  out = tmp_path / 'tuned'
  bx = [{'number': 0, 'values': {'num_selected': 300, 'factor': 900.0}, 'status': 'stopped', 'epochs': 6, 'val_miou': 0.5},
        {'number': 1, 'values': {'num_selected': 12, 'factor': 40.5}, 'status': 'ok', 'epochs': 60, 'val_miou': 0.78},
        {'number': 2, 'values': {'num_selected': 7, 'factor': 3.25}, 'status': 'stopped', 'epochs': 18, 'val_miou': 0.74},
        {'number': 3, 'values': {'num_selected': 9, 'factor': 600.0}, 'status': 'ok', 'epochs': 60, 'val_miou': 0.70},
        {'number': 4, 'values': {'num_selected': 2, 'factor': 2.0}, 'status': 'stopped', 'epochs': 18, 'val_miou': 0.76},
        {'number': 5, 'values': {'num_selected': 1, 'factor': 1.0}, 'status': 'fail', 'epochs': 6, 'val_miou': None}]
  _sweep(out / 'search_bx', bx)
  _sweep(out / 'search_lambda', [
      {'number': 0, 'values': {'weight': 0.25}, 'status': 'ok', 'epochs': 60, 'val_miou': 0.77},
      {'number': 1, 'values': {'weight': 0.5}, 'status': 'stopped', 'epochs': 6, 'val_miou': 0.6}])
  proc = launch('tuned_study.sh', 'drosophila', '--dry-run', '--source=DATA', f'--out={out}', '--python=py',
                '--seeds=2', '--', '--config.eval.full_section_overlap=32')
  assert proc.returncode == 0, proc.stderr
  protocol = (f"--config.num_epochs=60 --config.dataset.data_dir={out}/tensorflow_datasets "
              "--config.dataset.source_dir=DATA '--config.model.features=(16, 32, 64, 128, 512)'")
  halving = '--config.search.halving=True --config.search.min_epochs=6 --config.search.reduction_factor=3'
  bx_search = '--config.search.max_evals=27 --config.search.n_startup_jobs=10'
  assert commands(proc) == [
      f'py -m frem_jax.search --config=configs/drosophila.py --workdir={out}/search_bx {protocol} {halving} {bx_search} '
      '--config.eval.full_section_overlap=32',
      f'py -m frem_jax.search --config=configs/drosophila.py:supervision --workdir={out}/search_lambda {protocol} '
      f'{halving} --config.search.max_evals=15 --config.search.n_startup_jobs=5 --config.eval.full_section_overlap=32',
      # B = 12, X = 40.5 (trial 1, the best trained to the end); λ = 0.25.
      f'py -m frem_jax.train --config=configs/drosophila.py --workdir={out}/seed1/frem_tuned --config.seed=1 '
      f'{protocol} --config.eval.full_section_overlap=32 --config.frem.num_selected=12 --config.frem.factor=40.5 '
      '--config.eval.frem_at_test=True',
      f'py -m frem_jax.train --config=configs/drosophila.py:supervision --workdir={out}/seed1/supervision_tuned '
      f'--config.seed=1 {protocol} --config.eval.full_section_overlap=32 --config.supervision.weight=0.25',
      # Rank 2 is trial 3 (trained to the end: nothing to do); rank 3 is trial 4 (the better one stopped
      # at 18 epochs), resumed in a copy with the sweep's own settings.
      f'python3 launch/study_plan.py copy-run {out}/search_bx/trial_004 {out}/seed0/frem_rank3',
      f'py -m frem_jax.train --config=configs/drosophila.py --workdir={out}/seed0/frem_rank3 {protocol} {halving} '
      f'{bx_search} --config.eval.full_section_overlap=32 --config.frem.num_selected=2 --config.frem.factor=2.0',
  ]
  assert f'# rank 2: trial 3 (B = 9, X = 600.0) reached 60 epochs in the search: {out}/search_bx/trial_003' in proc.stdout
  # 27 trials at rungs 6, 18, 60: 27·6 + 9·12 + 3·42 = 396 epochs; 15: 15·6 + 5·12 + 1·42 = 192.
  assert '# B, X search: 27 trials, rungs 6, 18, 60: about 396 epochs with halving (plain TPE: 1620)' in proc.stdout
  assert '# λ search: 15 trials, rungs 6, 18, 60: about 192 epochs with halving (plain TPE: 900)' in proc.stdout
  assert 'the paper\'s searches, 50 + 15 trials × 2000 epochs = 130000 epochs, would take 1553 h here' in proc.stdout
  assert not (out / 'seed0').exists() and not (out / 'seed1').exists()


@pytest.mark.parametrize('args,message', [
    (['mouse'], "error: DATASET must be drosophila or synthetic; got 'mouse' (see --help)"),
    (['drosophila', '--source=x', '--min_epochs=0'], "error: --min_epochs must be a positive integer; got '0'"),
    (['drosophila', '--source=x', '--min_epochs=90'], 'error: --min_epochs=90 must be <= --epochs=60'),
    (['drosophila', '--source=x', '--bx_trials=many'], "error: --bx_trials must be a positive integer; got 'many'"),
    (['drosophila'], 'error: --source=DIR is required: the Drosophila data folder (or set FREM_DROSOPHILA_DIR)'),
    (['drosophila', '--source=x', '--trials=3'], 'error: unknown argument --trials=3 (see --help)'),
])
def test_tuned_study_bad_arguments_are_one_line(args, message):
  env = {k: v for k, v in os.environ.items() if k != 'FREM_DROSOPHILA_DIR'}
  proc = subprocess.run(['bash', os.path.join(ROOT, 'launch', 'tuned_study.sh'), *args, '--dry-run'], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.strip() == message


def _write_run(folder, seed, test_miou, frem_at_test=None):
  os.makedirs(folder, exist_ok=True)
  results = {'config': {'seed': seed}, 'test': {'miou': test_miou}, 'train_seconds': 100.0,
             'reestimate_seconds': 5.0, 'frem_at_test': frem_at_test and {'test': {'miou': frem_at_test}}}
  with open(os.path.join(folder, 'results.json'), 'w') as f:
    json.dump(results, f)


def run_variants_table(monkeypatch, capsys, *args):
  """launch/variants_table.py's main in this process (a subprocess would spend seconds importing): (code, out, err)."""
  spec = importlib.util.spec_from_file_location('variants_table', os.path.join(ROOT, 'launch', 'variants_table.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  monkeypatch.setattr(sys, 'argv', ['variants_table.py', *args])
  try:
    module.main()
    code = 0
  except SystemExit as e:
    code, message = 1, str(e.code)
    print(message, file=sys.stderr)
  out, err = capsys.readouterr()
  return code, out, err


def test_variants_table_pairs_each_variant_with_the_studys_baseline_by_seed(tmp_path, monkeypatch, capsys):
  study = {'seed_stats': {
      'table_iou': [{'run': 'baseline', 'seeds': [0, 1, 2], 'miou': {'values': [0.70, 0.72, 0.74]}},
                    {'run': 'frem', 'seeds': [0, 1, 2], 'miou': {'values': [0.60, 0.70, 0.65]}}],
      'table1': {'seeds': [0, 1, 2], 'frem_enhanced_at_test': {'values': [0.5, 0.4, 0.3]}}}}
  (tmp_path / 'report.json').write_text(json.dumps(study))
  for seed, (value, on) in enumerate([(0.71, 0.61), (0.74, 0.62), (0.75, 0.63)]):
    _write_run(str(tmp_path / 'v' / f'seed{seed}' / 'frem_step'), seed, value, on)
  _write_run(str(tmp_path / 'v' / 'seed2' / 'baseline_reestimate'), 2, 0.70)  # seed 2 only
  for seed, value in enumerate([0.66, 0.71, 0.73]):
    _write_run(str(tmp_path / 'v' / f'seed{seed}' / 'frem_reestimate'), seed, value)
  code, out, err = run_variants_table(monkeypatch, capsys, f'--variants={tmp_path / "v"}',
                                      f'--study={tmp_path / "report.json"}', f'--json={tmp_path / "t.json"}')
  assert code == 0, err
  data = json.loads((tmp_path / 't.json').read_text())
  step = data['frem_step']
  assert step['minus_baseline']['differences'] == pytest.approx([0.01, 0.02, 0.01])
  assert step['minus_frem']['differences'] == pytest.approx([0.11, 0.04, 0.10])
  assert step['test_miou']['mean'] == pytest.approx(0.7333333)
  assert step['frem_at_test_miou']['values'] == pytest.approx([0.61, 0.62, 0.63])
  lone = data['baseline_reestimate']['minus_baseline']
  assert lone['n'] == 1 and lone['ci'] is None and lone['differences'] == pytest.approx([-0.04])
  # FREM with re-estimated statistics against the control, on the one seed both have.
  fixed = data['frem_reestimate']['minus_control']
  assert fixed['n'] == 1 and fixed['differences'] == pytest.approx([0.03])
  assert step['minus_control'] is None and data['baseline_reestimate']['minus_control'] is None
  assert data['baseline_reestimate']['minus_frem'] is None  # the control is no FREM variant
  assert '| FREM + eval.reestimate_statistics | 3 | 70.00 ± 3.61 | 66.00, 71.00, 73.00 |' in out
  assert out.splitlines()[[l.startswith('| FREM + eval.re') for l in out.splitlines()].index(True)].endswith(
      '| +3.00 (n = 1) |  |')
  # Table 1 (FREM kept on at test) is the last column of the FREM rows: the study's from its report.
  rows = {l.split(' | ')[0]: l for l in out.splitlines()}
  assert rows["| FREM + frem.redraw='step'"].endswith('| 62.00 ± 1.00 (61.00, 62.00, 63.00) |')
  assert rows['| FREM, B = 8, X = 250 (study)'].endswith('| 40.00 ± 10.00 (50.00, 40.00, 30.00) |')
  assert data['frem']['frem_at_test_miou']['values'] == pytest.approx([0.5, 0.4, 0.3])
  assert "| FREM + frem.redraw='step' | 3 | 73.33 ± 2.08 | 71.00, 74.00, 75.00 | +1.33 [" in out
  assert '| baseline + eval.reestimate_statistics | 1 | 70.00 | –, –, 70.00 | -4.00 (n = 1) |  |  |' in out


@pytest.mark.parametrize('report, runs, message', [
    ('{}', False, 'error: no seed*/<method>/results.json under {v}; has any variant run finished?'),
    ('{}', True, "error: {r} is not a study report with seed statistics (KeyError('seed_stats')); "
                 'give the report.json that frem_jax.report wrote for the study'),
])
def test_variants_table_bad_inputs_are_one_line(tmp_path, monkeypatch, capsys, report, runs, message):
  (tmp_path / 'report.json').write_text(report)
  (tmp_path / 'v').mkdir()
  if runs:
    _write_run(str(tmp_path / 'v' / 'seed0' / 'frem_step'), 0, 0.7)
  code, _, err = run_variants_table(monkeypatch, capsys, f'--variants={tmp_path / "v"}',
                                    f'--study={tmp_path / "report.json"}')
  assert code == 1
  assert err.strip().splitlines() == [message.format(v=tmp_path / 'v', r=tmp_path / 'report.json')]
