"""The old home of a run's export, kept for old imports: re-exports only.

The export moved into the run wing, :mod:`qpa_qiskit.train.export`; ``from qpa_qiskit.export
import export`` (and the other names below) keeps working, and gives the same objects. Nothing in
the package imports this module: ``qpa export`` and ``QPAModel.export`` import the new home, and
``from qpa_qiskit import export`` is the function, imported from there. Importing this module
yourself (``import qpa_qiskit.export``) binds the package's attribute ``export`` to this module,
as Python binds every submodule on its package, until ``from qpa_qiskit import export`` is
looked up again through the package's table.
"""

from __future__ import annotations

from .train.export import base_model_note, check_new_folder, export, loads_with, write_adapter

__all__ = ["base_model_note", "check_new_folder", "export", "loads_with", "write_adapter"]
