"""`wakeline`: run the pipeline locally, compile it, submit or schedule it on Kubeflow Pipelines, inspect configs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from components.common.config import ConfigError, load_config, preset_names
from components.common.errors import InputError
from components.common.jsonio import dumps

EXIT_OK, EXIT_GATE, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = """exit codes:
  0    success (verify: BLESSED; judge check: detected)
  1    the gate failed: NOT BLESSED (verify), contract failed (verify --contract-only), not detected (judge check)
  2    usage or input error: a missing or wrong file, folder, value or config; the message says what to fix
  3    internal error: one line, and the path of a log file holding the traceback (run: a stage that failed,
       and the path of its log under the run folder)
  130  interrupted (Ctrl-C)"""


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="default", help="configs/presets/<NAME>.yaml (default: %(default)s)")
    p.add_argument("--config", type=Path, help="a YAML file merged over the preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override one key, e.g. --set data_prep.positives.piper_clips=50 (repeatable)")
    p.add_argument("--wake-word", help="shorthand for --set wake_word=...")


def _load(args) -> tuple:
    return load_config(args.preset, args.config, args.overrides, args.wake_word), args.preset


def _load_with_cluster_options(args) -> tuple:
    """The config with --gpus-per-task / --pipeline-root applied to its `kubernetes` section (validated with it)."""
    import json

    extra = []
    if args.gpus_per_task is not None:
        extra.append(f"kubernetes.gpus_per_task={args.gpus_per_task}")
    if args.pipeline_root is not None:
        extra.append(f"kubernetes.pipeline_root={json.dumps(args.pipeline_root)}")
    return load_config(args.preset, args.config, [*args.overrides, *extra], args.wake_word), args.preset


def cmd_run(args) -> int:
    from components.common.artifacts import code_version
    from components.common.images import DEFAULT_REGISTRY, Images
    from pipeline.local import DockerGpus, DockerNetwork, DockerOptions, Runner, StageFailed, new_run_id, run_local
    from pipeline.summary import format_summary

    runner = Runner(args.runner)
    docker_only = [f"--{name.replace('_', '-')}" for name in ("gpus", "registry", "version", "cpu_image_only",
                                                              "network")
                   if getattr(args, name) is not None]
    if runner is not Runner.DOCKER and docker_only:
        print(f"wakeline: {', '.join(docker_only)}: only for --runner docker", file=sys.stderr)
        return EXIT_INPUT
    docker = None
    if runner is Runner.DOCKER:
        images = Images.for_version(args.version or code_version(), args.registry or DEFAULT_REGISTRY)
        if args.cpu_image_only:
            images = images.cpu_only()
        docker = DockerOptions(images, DockerGpus(args.gpus or DockerGpus.NONE.value),
                               DockerNetwork(args.network) if args.network else None)
    config, preset = _load(args)  # the whole config is validated before any stage starts
    if runner is Runner.SUBPROCESS:
        _check_mixed_precision_here(config)
    print(f"wakeline: config OK (preset {preset}, wake word {config.wake_word!r}); running locally with kfp.local "
          f"({runner.value} runner)", file=sys.stderr)
    run_id = args.run_id or new_run_id(config)
    try:
        result = run_local(config, preset, args.runs_dir, run_id, runner=runner, docker=docker,
                           verbose=args.verbose)
    except KeyboardInterrupt:
        print(f"wakeline run: interrupted; {args.runs_dir / run_id} holds a partial run. Run again (a new "
              "--run-id): training checkpoints and mining chunks done so far are reused", file=sys.stderr)
        return EXIT_INTERRUPTED
    except StageFailed as e:  # the console showed the task's last lines; its whole output is in its log
        print(f"wakeline run: {e}", file=sys.stderr)
        return EXIT_INTERNAL
    print("\n" + format_summary(result))
    return 0


def _check_mixed_precision_here(config) -> None:
    """With the subprocess runner the stages train on this machine: a mixed precision its CPU refuses
    (trainer.use_mixed_precision) is refused now, not after data prep and mining have run."""
    from components.common import cpus
    from components.common.config import Toggle

    if config.training.mixed_precision is not Toggle.ON or not cpus.native_float16_flags():
        return
    from components.common import xp as xpmod
    from components.training.trainer import use_mixed_precision

    try:
        gpu = xpmod.select(config.training.device, key="training.device").is_gpu
    except xpmod.GPUUnavailableError:
        return  # the training stage says so itself
    use_mixed_precision(config.training, gpu)


def cmd_config(args) -> int:
    config, _ = _load(args)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_stages(args) -> int:
    from components.common.stages import describe_registry

    print(describe_registry())
    return 0


def cmd_compile(args) -> int:
    from pipeline.cluster import state_outside_volume
    from pipeline.compile import compile_pipeline

    config, _ = _load_with_cluster_options(args)
    path = compile_pipeline(args.output, args.registry, args.version, config.kubernetes)
    print(f"compiled pipeline IR -> {path}")
    for problem in state_outside_volume(config):  # this config only: a run of the IR may bring another
        print(f"wakeline: warning: {problem}", file=sys.stderr)
    return 0


def _cluster_plan(args, config, preset: str, name: str, now):
    """Compile the IR for this config's `kubernetes` section into runs/cluster/, and describe the run."""
    from components.common.artifacts import code_version
    from pipeline.cluster import Release, RunRequest, pipeline_version_name, run_parameters, state_outside_volume
    from pipeline.compile import compile_pipeline

    problems = state_outside_volume(config)  # the IR and the run's config go together: refuse a mismatch
    if problems:
        raise ConfigError("\n".join(problems))
    version_name = pipeline_version_name(args.version or code_version(), now)
    package = compile_pipeline(Path("runs") / "cluster" / f"{version_name}.yaml", args.registry, args.version,
                               config.kubernetes)
    release = Release(package, args.pipeline_name, version_name)
    request = RunRequest(args.experiment, name, run_parameters(config, preset), args.namespace,
                         config.kubernetes.pipeline_root or None)
    return release, request


def _print_dry_run(args, release, request, final_call, cli_line: str) -> None:
    from pipeline import cluster

    client_args = ", ".join(f"{k}={v!r}" for k, v in cluster.client_kwargs(args.host, args.namespace).items())
    print(f"dry run: nothing is sent to {args.host}\ncompiled: {release.package}\nkfp.Client({client_args}):")
    print(f"  {cluster.describe_call(cluster.find_pipeline_call(release.pipeline_name))}")
    print(f"  {cluster.describe_call(cluster.upload_version_call(release, '<PIPELINE_ID>'))}")
    print(f"    (first upload: {cluster.describe_call(cluster.upload_pipeline_call(release))})")
    print(f"  {cluster.describe_call(cluster.experiment_call(request))}")
    print(f"  {cluster.describe_call(final_call)}")
    print("the same with the kfp CLI (take the IDs from the upload's output):")
    print(f"  {cluster.kfp_cli_upload(args.host, release, first_upload=False)}")
    print(f"  {cli_line}")


def cmd_submit(args) -> int:
    import datetime as dt

    from pipeline import cluster

    config, preset = _load_with_cluster_options(args)
    now = dt.datetime.now()
    release, request = _cluster_plan(args, config, preset, args.run_name or cluster.run_name(config, now), now)
    if args.dry_run:
        placeholder = cluster.PipelineVersion("<PIPELINE_ID>", "<VERSION_ID>")
        _print_dry_run(args, release, request, cluster.run_call(request, "<EXPERIMENT_ID>", placeholder),
                       cluster.kfp_cli_run_create(args.host, request, release.pipeline_name))
        return 0
    client = cluster.connect(args.host, args.namespace)
    submitted = cluster.submit(client, args.host, release, request)
    print(f"run {request.name} ({submitted.run_id}) of pipeline {release.pipeline_name!r} version "
          f"{release.version_name!r}, experiment {request.experiment!r}\n{submitted.url}")
    return 0


def cmd_schedule(args) -> int:
    import datetime as dt

    from pipeline import cluster

    cron = cluster.validate_cron(args.cron)  # before anything is compiled or sent
    config, preset = _load_with_cluster_options(args)
    config = cluster.with_production_scorer(config)
    now = dt.datetime.now()
    release, request = _cluster_plan(args, config, preset, args.name or cluster.schedule_name(config), now)
    print(f"wakeline: each run's background mining scores with {config.mining.previous_model} (it must exist "
          f"before the first run: publish a blessed model, then `wakeline promote`)", file=sys.stderr)
    if args.dry_run:
        placeholder = cluster.PipelineVersion("<PIPELINE_ID>", "<VERSION_ID>")
        _print_dry_run(args, release, request,
                       cluster.recurring_run_call(request, "<EXPERIMENT_ID>", placeholder, cron),
                       cluster.kfp_cli_recurring_run_create(args.host, request, cron))
        return 0
    client = cluster.connect(args.host, args.namespace)
    scheduled = cluster.schedule(client, args.host, release, request, cron)
    print(f"recurring run {request.name} ({scheduled.recurring_run_id}) on {cron!r} (at most one run at a time, "
          f"no catch-up), pipeline version {release.version_name!r}\n{scheduled.url}")
    return 0


def cmd_runs(args) -> int:
    from pipeline import cluster

    cluster.list_runs_call(args.limit, args.namespace)  # raises on a bad --limit before connecting
    client = cluster.connect(args.host, args.namespace)
    print(cluster.format_runs(cluster.recent_runs(client, args.limit, args.namespace, args.experiment)))
    return 0


def cmd_verify(args) -> int:
    """The pipeline's gate on any model: thresholds, device budget and held-out families from the same config
    (preset, --config, --set) the pipeline would use."""
    from components.esphome_verification.stage import Gate, run

    if args.contract_only and (args.audio or args.features):
        print("wakeline verify: --contract-only measures nothing; drop --audio/--features, or drop --contract-only",
              file=sys.stderr)
        return EXIT_INPUT
    shorthands = [f"{key}={value!r}" for key, value in (("target_false_accepts_per_hour", args.target_fa_per_hour),
                                                         ("verification_max_frr", args.max_frr)) if value is not None]
    config = load_config(args.preset, args.config, [*args.overrides, *shorthands], args.wake_word)
    gate = Gate.from_config(config)
    out = args.output or Path("runs") / "verify" / Path(args.model).stem
    if out.exists() and not out.is_dir():
        print(f"wakeline verify: --output {out}: a file, not a folder (verdict.json and report.html go in it)",
              file=sys.stderr)
        return EXIT_INPUT
    verdict = run(Path(args.model), args.features, out, audio_dir=args.audio, **gate.kwargs())
    budget = f"model <= {gate.max_tflite_bytes:,} B, arena <= {gate.max_arena_bytes:,} B"
    measured = (f"FA/h <= {gate.target_fa_per_hour:g} in every test condition, FRR <= {gate.max_frr:.0%}, "
                + (f"held-out families {', '.join(gate.heldout_families)}, " if gate.heldout_families and args.features
                   else ""))
    print(f"  gate (preset {args.preset}): {'' if args.contract_only else measured}{budget}")
    width = max(len(c.name) for c in verdict.checks)
    for c in verdict.checks:
        print(f"  {'pass' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.found if not c.passed else ''}")
    b = verdict.behaviour
    if "frr" in b:
        frr = "not measured" if b["frr"] is None else f"{b['frr']:.1%}"
        fa = "not measured" if b["fa_per_hour"] is None else f"{b['fa_per_hour']:.2f}"
        print(f"  behaviour: FRR {frr} on {b['positives']} positives, FA/h {fa} over {b['ambient_hours'] * 60:.1f} "
              f"min of ambient audio, at cutoff {b['cutoff']}")
    if args.contract_only:
        print(f"{verdict.generation} manifest: contract {'OK' if verdict.contract_passed else 'FAILED'} "
              f"(behaviour not measured: not a blessing)  (report: {out / 'report.html'})")
        for reason in [] if verdict.contract_passed else verdict.reasons:
            print(f"  - {reason}")
        return EXIT_OK if verdict.contract_passed else EXIT_GATE
    print(f"{verdict.generation} manifest: {'BLESSED' if verdict.blessed else 'NOT BLESSED'}  (report: {out / 'report.html'})")
    for reason in verdict.reasons:
        print(f"  - {reason}")
    return EXIT_OK if verdict.blessed else EXIT_GATE


def cmd_evaluate(args) -> int:
    """Report FRR and FA/h of a published model on the user's own folders; it reports, it does not bless."""
    from components.runtime.folders import EvaluationInputError, evaluate_folders, format_report

    if not (args.positives or args.ambient):
        print("wakeline: evaluate needs at least one --positives DIR or --ambient DIR", file=sys.stderr)
        return EXIT_INPUT
    try:
        report = evaluate_folders(Path(args.model), args.positives, args.ambient, args.cutoff,
                                  progress=lambda msg: print(f"wakeline: {msg}", file=sys.stderr))
    except EvaluationInputError as e:
        print(f"wakeline: {e}", file=sys.stderr)
        return EXIT_INPUT
    print(format_report(report))
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(dumps(report.as_dict(), indent=2) + "\n")
        except OSError as e:
            print(f"wakeline: --json {args.json}: cannot write: {e.strerror or e}", file=sys.stderr)
            return EXIT_INPUT
        print(f"\nreport: {args.json}")
    return 0


def cmd_presets(_args) -> int:
    print("\n".join(preset_names()))
    return 0


def cmd_judge_serve(args) -> int:
    import logging

    from components.runtime.judge import JudgeModelError, load_judge
    from components.judge.server import ServerSettings, default_workers, serve

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ServerSettings(args.host, args.port, args.max_audio_s, args.read_timeout_s, args.max_connections,
                                  args.workers or default_workers(), args.processes)
        judge = load_judge(args.model, cutoff=args.cutoff, name=args.name)
    except (JudgeModelError, ValueError) as e:
        print(f"wakeline judge: {e}", file=sys.stderr)
        return EXIT_INPUT
    try:
        serve(judge, settings)
    except OSError as e:
        print(f"wakeline judge: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return EXIT_INPUT
    return 0


def cmd_judge_check(args) -> int:
    from components.common.audio import AudioReadError
    from components.judge.client import JudgeClient, JudgeError, read_clip

    try:
        verdict = JudgeClient(args.server, timeout_s=args.timeout_s).check(read_clip(args.clip), args.names or None)
    except (AudioReadError, JudgeError, OSError, ValueError) as e:
        print(f"wakeline judge: {e}", file=sys.stderr)
        return EXIT_INPUT
    if args.json:
        print(dumps({"detected": verdict.detected, "score": verdict.score, "cutoff": verdict.cutoff,
                     "name": verdict.name, "timestamp_ms": verdict.timestamp, "context": verdict.context}))
    else:
        score = "n/a" if verdict.score is None else f"{verdict.score:.4f}"
        cutoff = "" if verdict.cutoff is None else f" (cutoff {verdict.cutoff:g})"
        where = f" at {verdict.timestamp} ms" if verdict.timestamp is not None else ""
        print(f"{'detected' if verdict.detected else 'not detected'}: {verdict.name or args.clip}{where}, "
              f"score {score}{cutoff}")
    return EXIT_OK if verdict.detected else EXIT_GATE


def _judge_parser(sub) -> None:
    judge = sub.add_parser("judge", help="the Wyoming judge server that confirms device detections, and its client")
    jsub = judge.add_subparsers(dest="judge_command", required=True)
    srv = jsub.add_parser("serve", help="serve a model over the Wyoming protocol (Home Assistant's wake-word API)")
    srv.add_argument("--model", required=True, type=Path,
                     help="a Model directory (model.keras + model_spec.json + validation.json) or an ESPHome "
                     ".tflite (its manifest .json beside it), or a directory holding one")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback only)")
    srv.add_argument("--port", type=int, default=10400, help="default: %(default)s")
    srv.add_argument("--cutoff", type=float, help="override the model's calibrated probability cutoff")
    srv.add_argument("--name", help="the wake word to announce (default: from the model's metadata)")
    srv.add_argument("--max-audio-s", type=float, default=10.0, help="audio per request (default: %(default)s)")
    srv.add_argument("--read-timeout-s", type=float, default=5.0,
                     help="close a connection that sends no event for this long (default: %(default)s)")
    srv.add_argument("--max-connections", type=int, default=32, help="default: %(default)s")
    srv.add_argument("--workers", type=int, help="scoring threads or processes (default: min(4, CPU count))")
    srv.add_argument("--processes", action="store_true", help="score in worker processes (each loads the model; "
                     "uses every core) instead of threads")
    srv.add_argument("--verbose", action="store_true", help="debug logging")
    srv.set_defaults(func=cmd_judge_serve)
    chk = jsub.add_parser("check", help="ask a judge about one clip; exit 0 detected, 1 not detected, 2 error")
    chk.add_argument("clip", type=Path, help="an audio file (any rate/channels; sent as 16 kHz mono)")
    chk.add_argument("--server", default="tcp://127.0.0.1:10400", help="default: %(default)s")
    chk.add_argument("--name", dest="names", action="append", help="only this wake word (repeatable)")
    chk.add_argument("--timeout-s", type=float, default=30.0, help="default: %(default)s")
    chk.add_argument("--json", action="store_true", help="the verdict as JSON")
    chk.set_defaults(func=cmd_judge_check)


def cmd_serve(args) -> int:
    import logging

    from pydantic import ValidationError

    from components.serving.catalog import CatalogError, discover
    from components.serving.server import ServeSettings, serve

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ServeSettings(host=args.host, port=args.port, http_port=None if args.no_http else args.http_port,
                                 read_timeout_s=args.read_timeout_s, max_connections=args.max_connections)
        models = discover(args.store, args.names or (), confirm=args.confirm_with_judge)
    except ValidationError as e:
        print(f"wakeline serve: {e}", file=sys.stderr)
        return EXIT_INPUT
    except CatalogError as e:
        print(f"wakeline serve: {e}", file=sys.stderr)
        return EXIT_INPUT
    if args.confirm_with_judge and not any(m.cascade is not None for m in models):
        logging.getLogger("wakeline.serve").warning(
            "--confirm-with-judge: no served model has a published cascade (cascade.json with an operating point "
            "and its judge); every model is served on the device's logic alone")
    try:
        serve(models, settings)
    except OSError as e:
        print(f"wakeline serve: cannot listen on {args.host}: {e}", file=sys.stderr)
        return EXIT_INPUT
    return 0


def cmd_esphome_config(args) -> int:
    from components.serving.catalog import CatalogError, discover, esphome_config

    try:
        models = discover(args.store, [args.wake_word])
    except CatalogError as e:
        print(f"wakeline esphome-config: {e}", file=sys.stderr)
        return EXIT_INPUT
    print(esphome_config(models[0], args.host, args.http_port), end="")
    return EXIT_OK


def _serve_parsers(sub) -> None:
    srv = sub.add_parser("serve", help="serve published models to Home Assistant (Wyoming wake-word service, "
                         "streaming) and to ESPHome (manifests and .tflite over HTTP)")
    srv.add_argument("--store", type=Path, default=Path("runs/published"),
                     help="a local model store (publish.store) or a folder of manifests + .tflite (default: "
                          "%(default)s)")
    srv.add_argument("--name", dest="names", action="append", metavar="WAKE_WORD",
                     help="serve only this wake word (repeatable; default: every model in the store)")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback only; "
                     "0.0.0.0 for Home Assistant on another machine)")
    srv.add_argument("--port", type=int, default=10400, help="Wyoming port (default: %(default)s)")
    srv.add_argument("--http-port", type=int, default=10401, help="HTTP port for ESPHome (default: %(default)s)")
    srv.add_argument("--no-http", action="store_true", help="no HTTP model server")
    srv.add_argument("--read-timeout-s", type=float, default=5.0,
                     help="close a stream that sends nothing for this long (default: %(default)s)")
    srv.add_argument("--max-connections", type=int, default=200, help="default: %(default)s")
    srv.add_argument("--confirm-with-judge", action="store_true",
                     help="serve each model published with a cascade (cascade.json and judge/) as that cascade: the "
                          "model fires at the cascade's sentry cutoff and each detection is sent only if the judge "
                          "confirms it on the audio around it (judge_context_s before, judge_after_s after); models "
                          "without a cascade are served as they are")
    srv.add_argument("--verbose", action="store_true", help="debug logging")
    srv.set_defaults(func=cmd_serve)
    cfg = sub.add_parser("esphome-config", help="print the ESPHome YAML that loads a model from `wakeline serve`")
    cfg.add_argument("wake_word", help="the wake word (e.g. \"hey jarvis\" or hey_jarvis)")
    cfg.add_argument("--store", type=Path, default=Path("runs/published"), help="default: %(default)s")
    cfg.add_argument("--host", required=True, help="the address ESPHome reaches `wakeline serve` at")
    cfg.add_argument("--http-port", type=int, default=10401, help="default: %(default)s")
    cfg.set_defaults(func=cmd_esphome_config)


def cmd_promote(args) -> int:
    from components.publish.registry import RegistryError, model_name, promote

    if not (args.name or args.wake_word):
        print("wakeline promote: name the model: --wake-word WORD or --name REGISTERED_MODEL", file=sys.stderr)
        return EXIT_INPUT
    name = args.name or model_name(args.wake_word)
    try:
        done = promote(name, args.version, args.alias)
    except RegistryError as e:
        print(f"wakeline promote: {e}", file=sys.stderr)
        return EXIT_INPUT
    print(done.describe())
    print(f"  mining.previous_model=models:/{name}@{done.alias} now loads v{done.new_version}  ({done.tracking_uri})")
    return 0


def cmd_lineage(args) -> int:
    from components.publish.lineage import render
    from pipeline.lineage import LineageError, load_chain

    try:
        chain = load_chain(args.target, args.kfp_host)
    except LineageError as e:
        print(f"wakeline lineage: {e}", file=sys.stderr)
        return EXIT_INPUT
    print(dumps(chain.to_dict(), indent=2, sort_keys=True) if args.json else render(chain))
    return 0


def _cluster_args(p: argparse.ArgumentParser) -> None:
    from pipeline.cluster import DEFAULT_HOST

    p.add_argument("--host", default=DEFAULT_HOST, help="KFP API and UI address (default: %(default)s, the "
                                                        "port-forwarded ml-pipeline-ui)")
    p.add_argument("--namespace", help="multi-user KFP: your profile namespace (default: the client's)")


def _image_and_k8s_args(p: argparse.ArgumentParser) -> None:
    from components.common.images import DEFAULT_REGISTRY

    p.add_argument("--registry", default=DEFAULT_REGISTRY, help="image registry (default: %(default)s)")
    p.add_argument("--version", help="image tag (default: the package version)")
    p.add_argument("--gpus-per-task", type=int,
                   help="GPUs each GPU stage requests; 0 for a CPU-only cluster (default: the config's "
                        "kubernetes.gpus_per_task, 1)")
    p.add_argument("--pipeline-root", help="object store for the run's artifacts, e.g. s3://bucket/wakeline or "
                                           "minio://mlpipeline/wakeline (default: the config's "
                                           "kubernetes.pipeline_root, else the cluster's)")


def build_parser() -> argparse.ArgumentParser:
    from pipeline.cluster import DEFAULT_EXPERIMENT
    from pipeline.compile import COMPILED_IR
    from pipeline.dag import PIPELINE_NAME
    from pipeline.local import DockerGpus, DockerNetwork, Runner
    from components.common.images import DEFAULT_REGISTRY

    parser = argparse.ArgumentParser(prog="wakeline", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the pipeline locally (kfp.local: this venv, or the images with Docker)")
    _config_args(run)
    run.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where runs go (default: %(default)s)")
    run.add_argument("--run-id", help="name of the run directory (default: date-time-wake-word)")
    run.add_argument("--verbose", action="store_true",
                     help="also print every task's output (always in <run>/logs/<task>.log)")
    run.add_argument("--runner", choices=[r.value for r in Runner], default=Runner.SUBPROCESS.value,
                     help="subprocess: every stage in this venv; docker: each stage in its image (cpu or gpu) "
                          "through kfp.local.DockerRunner, needs a Docker daemon (default: %(default)s)")
    run.add_argument("--gpus", choices=[g.value for g in DockerGpus],
                     help="--runner docker: 'all' gives every stage container the host's GPUs, as docker run "
                          "--gpus all (kfp.local cannot give them to the GPU stages alone) (default: none)")
    run.add_argument("--registry", help=f"--runner docker: image registry (default: {DEFAULT_REGISTRY})")
    run.add_argument("--version", help="--runner docker: image tag (default: the package version)")
    run.add_argument("--cpu-image-only", action="store_true", default=None,
                     help="--runner docker: run the GPU stages in the cpu image too (where no gpu image was built; "
                          "they run on the CPU as they would on a machine without a GPU)")
    run.add_argument("--network", choices=[n.value for n in DockerNetwork],
                     help="--runner docker: the network of every stage container (default: none, or host when the "
                          "config names s3:// or the environment an S3 endpoint or an http(s) MLflow server)")
    run.set_defaults(func=cmd_run)

    cfg = sub.add_parser("config", help="validate a config and print it fully resolved")
    _config_args(cfg)
    cfg.set_defaults(func=cmd_config)

    stg = sub.add_parser("stages", help="the stage registry: every task of the DAG, what it reads and writes, "
                                        "where it runs")
    stg.set_defaults(func=cmd_stages)

    comp = sub.add_parser("compile", help="compile the pipeline to KFP IR YAML (Kubernetes settings: the "
                                          "config's `kubernetes` section)")
    _config_args(comp)
    comp.add_argument("--output", type=Path, default=COMPILED_IR, help="default: %(default)s")
    _image_and_k8s_args(comp)
    comp.set_defaults(func=cmd_compile)

    for name, func, text in (("submit", cmd_submit, "compile, upload a pipeline version and start a run on KFP"),
                             ("schedule", cmd_schedule, "compile, upload a pipeline version and create a recurring "
                                                        "run whose mining scores with the production model")):
        p = sub.add_parser(name, help=text)
        _config_args(p)
        _cluster_args(p)
        p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="KFP experiment (default: %(default)s)")
        p.add_argument("--pipeline-name", default=PIPELINE_NAME, help="KFP pipeline the version is uploaded "
                                                                      "under (default: %(default)s)")
        _image_and_k8s_args(p)
        p.add_argument("--dry-run", action="store_true", help="compile, then print the kfp.Client calls and the "
                                                              "equivalent kfp CLI lines; contact no cluster")
        p.set_defaults(func=func)
    sub.choices["submit"].add_argument("--run-name", help="default: wake-word-date-time")
    sub.choices["schedule"].add_argument("--cron", required=True,
                                         help='6 fields, seconds first (KFP\'s scheduler): "0 0 3 * * *" = 03:00 '
                                              "every day, in the scheduler's time zone (UTC by default)")
    sub.choices["schedule"].add_argument("--name", help="recurring run name (default: wake-word-retraining)")

    runs = sub.add_parser("runs", help="list recent KFP runs with their state")
    _cluster_args(runs)
    runs.add_argument("--experiment", help="only this experiment's runs (default: all)")
    runs.add_argument("--limit", type=int, default=10, help="how many, newest first (default: %(default)s)")
    runs.set_defaults(func=cmd_runs)

    ver = sub.add_parser("verify", help="check any micro_wake_word model against the ESPHome contract and the "
                         "pipeline's gate", epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _config_args(ver)
    ver.add_argument("model", help="a manifest .json, its .tflite, or a folder holding exactly one model")
    ver.add_argument("--features", type=Path, help="a FeatureStore folder: also measure FRR and FA/h on its test split")
    ver.add_argument("--audio", type=Path, help="a folder of audio: files under positive*/ are wake words, the "
                     "rest ambient; measures FRR and FA/h on the device path")
    ver.add_argument("--output", type=Path, help="where verdict.json and report.html go")
    ver.add_argument("--contract-only", action="store_true", help="check the ESPHome contract and the device "
                     "budget only: exit 0 when they pass (no blessing: nothing is measured)")
    ver.add_argument("--target-fa-per-hour", type=float, metavar="FA_PER_HOUR",
                     help="shorthand for --set target_false_accepts_per_hour=... (default: the config's, as the "
                          "pipeline's gate)")
    ver.add_argument("--max-frr", type=float, metavar="FRR",
                     help="shorthand for --set verification_max_frr=... (default: the config's, as the pipeline's "
                          "gate)")
    ver.set_defaults(func=cmd_verify)

    ev = sub.add_parser("evaluate", help="run a published model on the device runtime over your own recordings: "
                        "FRR per positives folder, FA/h (with its 95%% upper bound) per ambient folder")
    ev.add_argument("model", help="a manifest .json (its .tflite beside it) or a folder holding one")
    ev.add_argument("--positives", type=Path, action="append", default=[], metavar="DIR",
                    help="a folder of wake-word recordings (wav/flac/ogg, searched recursively), one file per "
                         "utterance; each is padded with 1 s of silence either side (repeatable)")
    ev.add_argument("--ambient", type=Path, action="append", default=[], metavar="DIR",
                    help="a folder of everyday audio without the wake word (any length; its hours are measured) "
                         "(repeatable)")
    ev.add_argument("--cutoff", type=float, help="probability cutoff (default: the manifest's)")
    ev.add_argument("--json", type=Path, metavar="PATH", help="also write the report as JSON")
    ev.set_defaults(func=cmd_evaluate)

    sub.add_parser("presets", help="list the config presets").set_defaults(func=cmd_presets)
    _judge_parser(sub)
    _serve_parsers(sub)

    pro = sub.add_parser("promote", help="move a wake word's MLflow `production` alias (default: to `candidate`)")
    pro.add_argument("--wake-word", help="the registered model is wakeline-<wake word>, e.g. wakeline-hey-jarvis")
    pro.add_argument("--name", help="the registered model by name (publish.registered_model_name)")
    which = pro.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="promote this version number")
    which.add_argument("--alias", default="candidate", help="promote the version with this alias (default: %(default)s)")
    pro.set_defaults(func=cmd_promote)

    lin = sub.add_parser("lineage", help="the chain from a model back to its raw inputs")
    lin.add_argument("target", help="a published model folder or file, <store>/<wake-word>, s3://..., "
                     "models:/NAME@ALIAS, a run directory (runs/<run-id>), or kfp:RUN_ID with --kfp-host")
    lin.add_argument("--json", action="store_true", help="the chain as JSON")
    lin.add_argument("--kfp-host", help="KFP API endpoint for kfp:RUN_ID (artifact metadata from MLMD: "
                     "WAKELINE_MLMD_HOST=host:port)")
    lin.set_defaults(func=cmd_lineage)
    return parser


def _log_traceback(argv: list[str]) -> Path | None:
    """Write the current exception's traceback to a new file under WAKELINE_LOG_DIR (default runs/logs, else
    the temp folder); its path, or None when nowhere is writable."""
    import datetime as dt
    import os
    import tempfile
    import traceback

    text = f"wakeline {' '.join(argv)}\n\n{traceback.format_exc()}"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for folder in (Path(os.environ.get("WAKELINE_LOG_DIR") or Path("runs") / "logs"), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"wakeline-error-{stamp}-", suffix=".log", dir=folder)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            return Path(name).resolve()
        except OSError:
            continue
    return None


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code says how it ended (EXIT_CODES). Ordinary mistakes print what to fix,
    anything else prints one line and the log file holding its traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)  # usage errors: argparse prints them and exits 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("wakeline: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConfigError as e:
        print(f"wakeline: invalid config\n{e}", file=sys.stderr)
        return EXIT_INPUT
    except InputError as e:
        print(f"wakeline: {e}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as e:
        if e.filename is None:  # a socket, a pipe, the system: not a path the user can fix
            return _internal(argv, e)
        what = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
        print(f"wakeline: {what}: {e.strerror or e} (check the path and its permissions)", file=sys.stderr)
        return EXIT_INPUT
    except Exception as e:  # noqa: BLE001 - the last resort: one line here, the traceback in a file
        return _internal(argv, e)


def _internal(argv: list[str], e: BaseException) -> int:
    """One line naming the error and the log file with its traceback (called inside the `except`)."""
    log = _log_traceback(argv)
    where = f"the traceback is in {log}" if log else "no log file could be written"
    print(f"wakeline: internal error ({type(e).__name__}: {str(e)[:200]}); {where}. Please report it.",
          file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
