"""The old home of what every study shares, kept so that old imports keep working.

Nothing is defined here any more: ``from qpa_qiskit.studies.common import ...`` of a name it
used to hold gives the same object from its module now:

* :mod:`.spec`: the study contract (:class:`~.spec.StudySpec`, :func:`~.spec.option`,
  :func:`~.spec.margin_option`, :func:`~.spec.replace_default`, :func:`~.spec.flag`, the option
  parsers) and the grid's values (:func:`~.spec.grid_values`, :func:`~.spec.check_seeds`,
  :func:`~.spec.parameter_list`, :func:`~.spec.parameter_mapping`, ...);
* :mod:`.pipeline`: select on dev, then the final runs (:func:`~.pipeline.run_pipeline`), and
  the study folder's default (:func:`~.pipeline.default_out`);
* :mod:`.report`: the study folder's files, the tables' cells, figures and curves, the base
  model's perplexity.

New code imports from those modules.
"""

from __future__ import annotations

from .pipeline import default_out
from .report import (
    base_result,
    cell,
    chosen_rates,
    figure,
    lr_cell,
    mean_std,
    selected,
    write_curves,
    write_file,
    write_json,
    write_results,
)
from .spec import (
    MARGIN,
    STUDY_DEFAULTS,
    StudySpec,
    check_seeds,
    check_tvd_samples,
    config_without,
    flag,
    grid_values,
    margin_option,
    noise_scale,
    option,
    parameter_list,
    parameter_mapping,
    positive_float,
    replace_default,
    shot_factor_or_exact,
)

__all__ = [
    "MARGIN",
    "STUDY_DEFAULTS",
    "StudySpec",
    "base_result",
    "cell",
    "check_seeds",
    "check_tvd_samples",
    "chosen_rates",
    "config_without",
    "default_out",
    "figure",
    "flag",
    "grid_values",
    "lr_cell",
    "margin_option",
    "mean_std",
    "noise_scale",
    "option",
    "parameter_list",
    "parameter_mapping",
    "positive_float",
    "replace_default",
    "selected",
    "shot_factor_or_exact",
    "write_curves",
    "write_file",
    "write_json",
    "write_results",
]
