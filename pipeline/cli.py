"""`wakeline`: run the pipeline locally, compile it, inspect configs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from components.common.config import ConfigError, load_config, preset_names


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="default", help="configs/presets/<NAME>.yaml (default: %(default)s)")
    p.add_argument("--config", type=Path, help="a YAML file merged over the preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override one key, e.g. --set data_prep.positives.piper_clips=50 (repeatable)")
    p.add_argument("--wake-word", help="shorthand for --set wake_word=...")


def _load(args) -> tuple:
    return load_config(args.preset, args.config, args.overrides, args.wake_word), args.preset


def cmd_run(args) -> int:
    from pipeline.local import run_local
    from pipeline.summary import format_summary

    config, preset = _load(args)  # the whole config is validated before any stage starts
    print(f"wakeline: config OK (preset {preset}, wake word {config.wake_word!r}); running locally with kfp.local",
          file=sys.stderr)
    result = run_local(config, preset, args.runs_dir, args.run_id)
    print("\n" + format_summary(result))
    return 0


def cmd_config(args) -> int:
    config, _ = _load(args)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_compile(args) -> int:
    from pipeline.compile import compile_pipeline

    path = compile_pipeline(args.output, args.registry, args.version, args.gpus_per_task)
    print(f"compiled pipeline IR -> {path}")
    return 0


def cmd_verify(args) -> int:
    from components.esphome_verification.stage import run

    out = args.output or Path("runs") / "verify" / Path(args.model).stem
    verdict = run(Path(args.model), args.features, out, target_fa_per_hour=args.target_fa_per_hour,
                  max_frr=args.max_frr, audio_dir=args.audio)
    width = max(len(c.name) for c in verdict.checks)
    for c in verdict.checks:
        print(f"  {'pass' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.found if not c.passed else ''}")
    if verdict.behaviour.get("frr") is not None:
        b = verdict.behaviour
        print(f"  behaviour: FRR {b['frr']:.1%}, {b['fa_per_hour']:.2f} FA/h at cutoff {b['cutoff']}")
    print(f"{verdict.generation} manifest: {'BLESSED' if verdict.blessed else 'NOT BLESSED'}  (report: {out / 'report.html'})")
    for reason in verdict.reasons:
        print(f"  - {reason}")
    return 0 if verdict.blessed else 1


def cmd_presets(_args) -> int:
    print("\n".join(preset_names()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pipeline.compile import COMPILED_IR
    from components.common.images import DEFAULT_REGISTRY

    parser = argparse.ArgumentParser(prog="wakeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the pipeline locally (kfp.local, this venv, no Docker)")
    _config_args(run)
    run.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where runs go (default: %(default)s)")
    run.add_argument("--run-id", help="name of the run directory (default: date-time-wake-word)")
    run.set_defaults(func=cmd_run)

    cfg = sub.add_parser("config", help="validate a config and print it fully resolved")
    _config_args(cfg)
    cfg.set_defaults(func=cmd_config)

    comp = sub.add_parser("compile", help="compile the pipeline to KFP IR YAML")
    comp.add_argument("--output", type=Path, default=COMPILED_IR, help="default: %(default)s")
    comp.add_argument("--registry", default=DEFAULT_REGISTRY, help="image registry (default: %(default)s)")
    comp.add_argument("--version", help="image tag (default: the package version)")
    comp.add_argument("--gpus-per-task", type=int, default=1,
                      help="GPUs each GPU stage requests; 0 for a CPU-only cluster (default: %(default)s)")
    comp.set_defaults(func=cmd_compile)

    ver = sub.add_parser("verify", help="check any micro_wake_word model against the ESPHome contract")
    ver.add_argument("model", help="a manifest .json (its .tflite beside it) or a folder holding one")
    ver.add_argument("--features", type=Path, help="a FeatureStore folder: also measure FRR and FA/h on its test split")
    ver.add_argument("--audio", type=Path, help="a folder of audio: files under positive*/ are wake words, the "
                     "rest ambient; measures FRR and FA/h on the device path")
    ver.add_argument("--output", type=Path, help="where verdict.json and report.html go")
    ver.add_argument("--target-fa-per-hour", type=float, default=0.5)
    ver.add_argument("--max-frr", type=float, default=0.5)
    ver.set_defaults(func=cmd_verify)

    sub.add_parser("presets", help="list the config presets").set_defaults(func=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"wakeline: invalid config\n{e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
