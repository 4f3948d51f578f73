"""The files of a run's and a sweep's folder, named once for the modules that write and read them."""

CONFIG_FILE = 'config.json'  # a run's config (workdir.py)
RESULTS_FILE = 'results.json'  # a finished run's results (train)
METRICS_FILE = 'metrics.jsonl'  # one JSON object per epoch (metric_logging.py)
CHECKPOINT_DIR = 'checkpoints'  # orbax's checkpoints (checkpointing.py)
TRIALS_FILE = 'trials.json'  # a sweep's record (search/store.py)
BEST_FILE = 'best.json'  # a sweep's best trial
SEARCH_FIGURE = 'search.png'  # a sweep's figure (search/plot.py)
