"""The files of a run's and a sweep's folder, named once for the modules that write and read them."""

CONFIG_FILE = 'config.json'  # a run's config (workdir.py)
RESULTS_FILE = 'results.json'  # a finished run's results (train)
METRICS_FILE = 'metrics.jsonl'  # one JSON object per epoch (metric_logging.py)
CHECKPOINT_DIR = 'checkpoints'  # orbax's checkpoints (checkpointing.py)
TRIALS_FILE = 'trials.json'  # a sweep's record (search/store.py)
BEST_FILE = 'best.json'  # a sweep's best trial
SEARCH_FIGURE = 'search.png'  # a sweep's figure (search/plot.py)
IOU_FILE = 'iou.json'  # predict's IoU per image and over all (predict/lib.py)
REPORT_MD = 'report.md'  # the report's tables (report/lib.py)
REPORT_JSON = 'report.json'  # the report's numbers
