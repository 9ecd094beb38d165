"""``qpa noise snapshot`` and ``qpa noise show``: noise models as files, and what they do to a circuit."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError
from .parsing import summary


def _spec(text: str) -> str:
    """``fake_brisbane``, ``brisbane``, ``x.json`` or ``aer_noisy:...`` -> an aer_noisy spec;
    InputError naming what is accepted for a spec of a backend without a noise model."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..backends.specs import family_named
    from ..noise import snapshot_names

    text = text.strip()
    family = family_named(text.partition(":")[0])
    if family is not None and family.has_noise_model:
        return text
    if family is not None:
        names = ", ".join(snapshot_names()) or "none found"
        snapshot_first = " (snapshot a real device first: qpa noise snapshot ibm:<device> -o FILE)"
        fix = snapshot_first * family.runs_remotely
        raise InputError(
            f"qpa noise show reads a simulated noise model, and {text!r} simulates none{fix}. Accepted: "
            f"a snapshot name ({names}), a snapshot file (path/x.json), a fake device of "
            "qiskit-ibm-runtime (fake_<device>, listed by `qpa backends`), or aer_noisy:<any of these>"
        )
    return f"aer_noisy:{text}"


def cmd_snapshot(args: argparse.Namespace) -> int:
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..noise import Snapshot, find_snapshot
    from ..noise.snapshot import check_output

    out = check_output(args.output)  # before the device is read: a directory, a .txt, ...
    if out.exists() and not args.force:
        raise InputError(f"{out} exists; pass --force to replace it")
    device = args.device.strip()
    if device.lower().startswith("ibm:"):
        name = device.split(":", 1)[1].strip()
        if name.lower().startswith("fake"):
            snapshot = Snapshot.from_fake_device(name)
        else:
            snapshot = Snapshot.from_ibm(name)
    else:
        snapshot = Snapshot.from_fake_device(device.removeprefix("aer_noisy:"))
    snapshot.save(out)
    spec = f"aer_noisy:{out}"
    if find_snapshot(out.stem) == out.resolve():  # in a folder that names are looked up in
        spec += f" or aer_noisy:{out.stem}"
    basis = ", ".join(snapshot.configuration.get("basis_gates", []))
    print(
        f"wrote {out}: {snapshot.name}, {snapshot.num_qubits} qubits, basis {basis}, "
        f"calibrated {snapshot.calibration_date}\nuse it as --backend {spec}"
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..backends import QPABackend
    from ..circuits import ansatz
    from .noise_report import format_report, noise_report

    backend = QPABackend(
        _spec(args.spec),
        noise_scale=args.noise_scale,
        gate_error=not args.no_gate_error,
        thermal_relaxation=not args.no_thermal_relaxation,
        readout_error=not args.no_readout_error,
        layout=args.layout,
    )
    circuit = ansatz(args.qubits, args.reps, rotation=args.rotation, entanglement=args.entanglement)
    report = noise_report(backend, circuit)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def add_commands(sub) -> None:
    noise = sub.add_parser("noise", help=summary("noise"))
    nsub = noise.add_subparsers(dest="noise_command", required=True)

    p = nsub.add_parser(
        "snapshot",
        help="write a device's configuration and calibration to one JSON file",
        description="DEVICE: a fake device (fake_brisbane, offline) or ibm:<name>, a real device's "
        "current calibration through the saved IBM Quantum account.",
    )
    p.add_argument("device", help="fake_<device> or ibm:<device>")
    p.add_argument("-o", "--output", required=True, help="the snapshot file to write (.json)")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_snapshot)

    p = nsub.add_parser(
        "show",
        help="gate, relaxation and readout errors on the qubits a QPA circuit uses",
        description="SPEC: a fake device, a snapshot name (a shipped one, or one in "
        "$QPA_NOISE_MODELS or ./noise_models), a snapshot file, or an aer_noisy:<...> spec. The "
        "circuit is the QPA ansatz of --qubits and --reps.",
    )
    p.add_argument("spec", help="fake_brisbane, brisbane, path/x.json, aer_noisy:...")
    p.add_argument("--qubits", type=int, default=7, help="N, the ansatz qubits (default 7)")
    p.add_argument("--reps", type=int, default=8, help="ansatz layers (default 8)")
    p.add_argument("--rotation", choices=["ry", "rx"], default="ry")
    p.add_argument("--entanglement", choices=["linear", "circular"], default="linear")
    p.add_argument(
        "--layout",
        default="noise_aware",
        help="noise_aware (default: Qiskit's error-scored layout search), preset (the level-1 preset's "
        "own: the first qubits when they need no swaps), or physical qubits Q0,Q1,...",
    )
    p.add_argument("--noise-scale", type=float, default=1.0, help="scale every error (default 1)")
    p.add_argument("--no-gate-error", action="store_true")
    p.add_argument("--no-thermal-relaxation", action="store_true")
    p.add_argument("--no-readout-error", action="store_true")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_show)
