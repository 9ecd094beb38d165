"""Studies: grids of short runs with an aggregation, resumable, run here or on Ray.

* :mod:`.spec`: the study contract: :class:`~.spec.StudySpec`, a dataclass whose fields,
  defaults and help make the command's options (:func:`~.spec.option`); the run settings
  studies change (``STUDY_DEFAULTS``); the grid's values checked; and each study's Python entry
  point derived from its spec (:meth:`~.spec.StudySpec.function`).
* :mod:`.pipeline`: one function for every study (:func:`~.pipeline.run_pipeline`): the spec
  checked, its grid, its cost; a learning-rate selection on the dev split where it has one,
  then the final runs; its report, its curves, its failures.
* :mod:`.report`: what a study writes: its folder's files (``results.json``), its tables' cells,
  figures and learning curves, the base model's perplexity, aggregation over seeds.
* :mod:`.runner`: trials as run folders under the study folder, resumed after any stop, each
  trial carrying its extra measures; :func:`~.runner.run_study`.
* :mod:`.folder`: the study folder on disk: ``study.json`` (its definition and the code's
  results version, a resume refused naming each field that differs) and its ``.gitignore``
  (what a commit of the folder leaves out).
* :mod:`.selection`: learning rates chosen per setting on the dev split (its logic, no runs).
* :mod:`.executors`: where the trials run (``LocalExecutor``, ``RayExecutor``).
* :mod:`.curves`, :mod:`.cost`: the learning curves of any study; its QPU cost (``--dry-run``).
* one module per study, each a spec and its tables: :mod:`.compare` (``qpa compare``),
  :mod:`.shots`, :mod:`.noise`, :mod:`.params`, :mod:`.ablation`, :mod:`.hardware`
  (``qpa study <name>``).
* :mod:`.common`: the old home of the spec and the writers, kept for old imports only.

Nothing is imported here: ``qpa_qiskit.studies.noise`` imports what the noise study needs.
"""
