"""The run machinery: what turns a config into a trained run directory, and reads one back.

The commands at the top of the package (``python -m jaxhash.train``, ``evaluate``, ``report``,
``plots``, ...) and ``jaxhash.load`` are thin over these modules. By job:

- the loop: ``trainer`` (the host loop, ``train_and_evaluate``), ``experiment`` (the data, split
  and model a config describes), ``train_step`` (the jitted step), ``divergence`` (the stop at a
  non-finite step), ``fitting`` (a shallow method's head fitted instead of trained);
- the state: ``state`` (the train state), ``model_state`` (the model, the state's shapes, the
  restore: shared with ``jaxhash.load``), ``optim`` and ``schedules``;
- the frozen prefix: ``frozen_prefix`` (an experiment's cached activations), ``feature_cache``
  (the cache's checksummed shards), ``run_backbone`` (a trained run's backbone as initial weights);
- the run directory: ``rundir`` (identity, run.json), ``workdir_lock`` (its lock), ``checkpoint``
  (verified checkpoints), ``metrics_log`` (metrics.jsonl), ``run_files`` (model.json);
- the results: ``run_evaluation`` (a trained state measured), ``run_results`` (results.json /
  results.md and the runs' labels).

Importing this package imports none of them.
"""
