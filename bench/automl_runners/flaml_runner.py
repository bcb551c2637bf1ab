"""FLAML (``flaml[automl]``): ``AutoML.fit`` with the budget, ROC-AUC and the seed.

Run by the harness as ``bench/.venvs/flaml/bin/python flaml_runner.py TASK.json``;
electricity (a time split) gets ``split_type="time"``.
"""

from __future__ import annotations

from common import Clock, Task, task_from_argv, write_result


def main(task: Task) -> None:
    clock = Clock()
    import pandas as pd
    from flaml import AutoML, __version__

    train = pd.read_parquet(task.train)
    test = pd.read_parquet(task.test)
    labels = (train[task.target] == task.positive).astype(int)
    features = train.drop(columns=[task.target])
    load_s = clock.lap()
    automl = AutoML()
    options = {"split_type": "time"} if task.time_column else {}
    automl.fit(
        features,
        labels,
        task="classification",
        time_budget=task.budget,
        metric="roc_auc",
        seed=task.seed,
        log_file_name="",
        verbose=0,
        **options,
    )
    fit_s = clock.lap()
    positive = list(automl.classes_).index(1)
    proba = automl.predict_proba(test)[:, positive]
    info = {
        "version": __version__,
        "load_s": load_s,
        "fit_s": fit_s,
        "predict_s": clock.lap(),
        "model": f"{automl.best_estimator} {automl.best_config}",
    }
    write_result(task, proba, info)


if __name__ == "__main__":
    main(task_from_argv())
