"""Every trial of the tuner's studies whose name contains argv[1] (default storage, or
KERNELGEN_CACHE_DIR's journal): the config's difference from the study's first trial (the
default), and its time or why it failed."""
import sys
import optuna
from kernelgen.tune.study import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = open_storage()
for summary in optuna.get_all_study_summaries(storage):
    if sys.argv[1] not in summary.study_name:
        continue
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    print(f"== {summary.study_name}")
    base = None
    for trial in study.trials:
        config = trial.user_attrs.get("config")
        if config is None:
            continue
        base = base or config
        diff = {k: v for k, v in config.items() if base.get(k) != v} or "default"
        ms = trial.user_attrs.get("ms")
        note = f"{ms:.4f} ms" if ms else trial.user_attrs.get("fail_reason", trial.user_attrs.get("skipped", "?"))
        print(f"  {trial.number:3d} {diff}: {str(note)[:120]}")
