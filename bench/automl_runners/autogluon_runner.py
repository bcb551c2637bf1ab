"""AutoGluon-Tabular: ``TabularPredictor(eval_metric="roc_auc").fit(time_limit, presets)``.

    bench/.venvs/autogluon/bin/python bench/automl_runners/autogluon_runner.py TASK.json

The target is encoded 0/1 with ``positive_class=1``; the seed is the learner's
``random_state`` (hold-out and bagging folds; each model keeps AutoGluon's own seed).
"""

from __future__ import annotations

from common import Clock, Task, task_from_argv, write_result


def main(task: Task) -> None:
    clock = Clock()
    import pandas as pd
    from autogluon.tabular import TabularPredictor, __version__

    train = pd.read_parquet(task.train)
    test = pd.read_parquet(task.test)
    train[task.target] = (train[task.target] == task.positive).astype(int)
    load_s = clock.lap()
    predictor = TabularPredictor(
        label=task.target,
        problem_type="binary",
        eval_metric="roc_auc",
        path=str(task.workdir / "autogluon"),
        positive_class=1,
        verbosity=1,
        learner_kwargs={"random_state": task.seed},
    ).fit(train, time_limit=task.budget, presets=task.preset)
    fit_s = clock.lap()
    proba = predictor.predict_proba(test, as_multiclass=False)
    info = {
        "version": __version__,
        "load_s": load_s,
        "fit_s": fit_s,
        "predict_s": clock.lap(),
        "model": predictor.model_best,
        "models": len(predictor.model_names()),
    }
    write_result(task, proba, info)


if __name__ == "__main__":
    main(task_from_argv())
