"""Studies: grids of short runs with an aggregation, resumable, run here or on Ray.

* :mod:`.runner`: trials as run folders under the study folder, resumed after any stop, each
  trial carrying its extra measures; :func:`~.runner.run_study`.
* :mod:`.executors`: where the trials run (``LocalExecutor``, ``RayExecutor``).
* :mod:`.common`: what every study shares: the spec (:class:`~.common.StudySpec`, a
  dataclass whose fields, defaults and help make the command's options), the grid's values
  checked, the study folder's files, the base model's perplexity, aggregation over seeds.
* one module per study, each a spec: :mod:`.compare` (``qpa compare``), :mod:`.shots`,
  :mod:`.noise`, :mod:`.params`, :mod:`.ablation`, :mod:`.hardware` (``qpa study <name>``).

Nothing is imported here: ``qpa_qiskit.studies.noise`` imports what the noise study needs.
"""
