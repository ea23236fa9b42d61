"""`radiogenomics <verb>`: the command line.

Errors are one line on stderr with a non-zero exit code, never a traceback (set
RADIOGENOMICS_DEBUG=1 to see one). Long work shows a progress bar on stderr; results go to files
(CSV/JSON) and a one-line JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from radiogenomics import __version__
from radiogenomics.errors import InputError, RadiogenomicsError

EXIT_INPUT = 2  # bad input or options
EXIT_INTERNAL = 70  # a bug: unexpected exception

HALLMARK_ENV = "RADIOGENOMICS_HALLMARK_GMT"
_HALLMARK_RELATIVE = Path("shared") / "data" / "gene_sets" / "h.all.v7.0.symbols.gmt"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def default_hallmark_gmt() -> Path | None:
    """The MSigDB Hallmark GMT: $RADIOGENOMICS_HALLMARK_GMT, else ../shared/data/... next to the checkout."""
    if os.environ.get(HALLMARK_ENV):
        return Path(os.environ[HALLMARK_ENV])
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *Path.cwd().parents, *here.parents]:
        candidate = base / _HALLMARK_RELATIVE
        if candidate.is_file():
            return candidate
    return None


# ----------------------------------------------------------------------------------------------
# Verbs


def _cmd_synth(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from radiogenomics.synth import SynthConfig, generate

    gmt = _hallmark(args)
    try:
        config = SynthConfig(
            out=args.out, hallmark_gmt=gmt, seed=args.seed, n_train=args.train, n_test=args.test,
            n_genes=args.genes, n_features=args.features, images=args.images, expression_format=args.format,
            design=args.design,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = {"n_train": "--train", "n_test": "--test", "n_genes": "--genes", "n_features": "--features"}
        raise InputError(f"{flag.get(str(err['loc'][0]), '--' + str(err['loc'][0]))}: {err['msg']}") from None
    truth = generate(config, progress=not args.quiet)
    print(json.dumps({
        "out": str(args.out), "train": str(args.out / "train"), "test": str(args.out / "test"),
        "genes": config.n_genes, "features": config.n_features, "histology_counts": truth["histology"]["counts"],
        "truth": str(args.out / "truth.json"), "gene_sets": str(args.out / "gene_sets.gmt"),
    }))
    return 0


def _hallmark(args: argparse.Namespace) -> Path:
    gmt = getattr(args, "hallmark_gmt", None) or default_hallmark_gmt()
    if gmt is None:
        raise RadiogenomicsError(
            f"MSigDB Hallmark GMT not found; pass --hallmark-gmt FILE or set {HALLMARK_ENV} (h.all.v7.0.symbols.gmt)"
        )
    return gmt


def _cmd_demo(args: argparse.Namespace) -> int:
    import contextlib
    import shutil

    from radiogenomics.demo import run_demo, summary_line

    out = args.out
    if out.exists() and any(out.iterdir()):
        if not (out / "report.json").exists():
            raise InputError(f"{out}: directory is not empty and holds no earlier demo; pass --out NEW_DIR")
        shutil.rmtree(out)  # an earlier demo's output: replace it
    # Ray's driver prints raylet messages (e.g. while Serve shuts down) to stdout; keep stdout the one JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        result = run_demo(out, _hallmark(args), full=args.full, seed=args.seed, progress=not args.quiet,
                          address=args.address)
    print(summary_line(result))
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from radiogenomics.extraction.batch import run_batch
    from radiogenomics.extraction.params import load_params

    pacs = None
    if args.pacs or args.studies:
        if not (args.pacs and args.studies) or args.manifest is not None:
            raise InputError("extract reads a manifest of files, or --pacs URL with --studies FILE.csv (not both)")
        from radiogenomics.extraction.batch import PacsOptions

        pacs = PacsOptions(_pacs(args), max_bytes=args.max_case_bytes, store_report=args.store_report)
    elif args.manifest is None:
        raise InputError("extract needs a manifest (sample_id,Image,Mask) or --pacs URL --studies FILE.csv")
    elif args.store_report:
        raise InputError("--store-report stores the SR in the PACS; use it with --pacs and --studies")
    params = load_params(args.params)
    summary = run_batch(args.studies or args.manifest, args.out, params, address=args.address, workers=args.workers,
                        max_voxels=args.max_voxels, progress=not args.quiet, pacs=pacs)
    print(json.dumps({"out": str(summary.out), "total": summary.total, "extracted": summary.extracted,
                      "skipped": summary.skipped, "failed": summary.failed,
                      "failures": str(summary.failures) if summary.failed else None}))
    if summary.failed:
        print(f"radiogenomics extract: {summary.failed} of {summary.total} cases failed; reasons in {summary.failures}",
              file=sys.stderr)
        return 1
    return 0


def _pacs(args: argparse.Namespace):
    from radiogenomics.pacs.config import pacs_config

    return pacs_config(args.pacs, args.pacs_auth_header_file, args.pacs_ca, args.pacs_timeout)


def _pacs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pacs", metavar="URL", help="DICOMweb root of the hospital's PACS (QIDO-RS, WADO-RS, STOW-RS), "
                                                 "e.g. https://pacs.example.org/dicom-web")
    p.add_argument("--pacs-auth-header-file", type=Path, metavar="FILE",
                   help="file with one HTTP header line sent to the PACS, e.g. 'Authorization: Bearer ...'")
    p.add_argument("--pacs-ca", type=Path, metavar="PEM", help="CA bundle trusted for an https PACS (default: the system's)")
    p.add_argument("--pacs-timeout", type=_positive_float, default=30.0, metavar="SECONDS",
                   help="seconds to wait for the PACS to connect or send data (default 30)")


def _cmd_train(args: argparse.Namespace) -> int:
    # The CLI is the composition root: the core library never imports tune/ (Ray Tune) itself.
    train_module = importlib.import_module("tune.train")
    options = train_module.TrainOptions(
        cohort=args.cohort, registry=args.registry, name=args.name, trials=args.trials, folds=args.folds,
        address=args.address, resume=args.resume, seed=args.seed, cpus_per_trial=args.cpus_per_trial,
        max_epochs=args.max_epochs, cut_quantile=args.cut_quantile,
        exclude_targets=[t for t in (args.exclude_targets or "").split(",") if t],
        compare_targets=args.compare_targets, scheduler=args.scheduler, baselines=not args.no_baselines,
        progress=not args.quiet, ensemble=args.ensemble, seeds=args.seeds, time_budget=args.time_budget,
    )
    folder = train_module.train(options)
    print(folder)  # the artifact path is the last line of standard output
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from radiogenomics.holdout import evaluate_on_test

    result = evaluate_on_test(args.model, args.cohort, args.out, n_boot=args.bootstrap, seed=args.seed)
    hist = {k: v["auc"] for k, v in result.metrics.items() if k.startswith("histology:")}
    radiomic = [v["auc"] for k, v in result.metrics.items() if not k.startswith("histology:") and v["auc"] is not None]
    print(json.dumps({"metrics": str(result.metrics_path), "report": str(result.report_path),
                      "plots": [str(p) for p in result.plots], "histology_auc": hist,
                      "radiomic_auc_mean": (sum(radiomic) / len(radiomic)) if radiomic else None}))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    run = importlib.import_module("services.run")  # services sit above the core; imported only here
    return run.serve_forever(run.ServeOptions(
        model=args.model, grpc_port=args.grpc_port, metrics_port=args.metrics_port, address=args.address,
        host=args.host, ingress=args.ingress, gateway_replicas=args.gateway_replicas,
        radiomics_replicas=args.radiomics_replicas, proxy_location=args.proxy_location,
        max_replicas_per_node=args.max_replicas_per_node, radiomics_cpus=args.radiomics_cpus,
        max_batch_profiles=args.max_batch_profiles, jobs_dir=args.jobs_dir, data_root=args.data_root,
        gene_sets=dict(args.gene_sets or []), auth_tokens=args.auth_tokens, audit_dir=args.audit_dir,
        request_timeout_s=args.request_timeout, max_message_bytes=args.max_message_bytes,
        max_upload_bytes=args.max_upload_bytes, max_voxels=args.max_voxels, max_sets_per_job=args.max_sets_per_job,
        max_active_jobs=args.max_active_jobs, pacs=_pacs(args) if args.pacs else None))


def _named_file(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=FILE (e.g. hallmark=h.all.v2024.1.Hs.symbols.gmt)")
    return name, Path(path)


def _cmd_mask(args: argparse.Namespace) -> int:
    from radiogenomics.cohort import load_cohort
    from radiogenomics.masking import MaskingMode, MaskingOptions, library_from_gmt, library_single_genes, prepare, run_masking
    from radiogenomics.registry import load_model, resolve

    if (args.gene_sets is None) == (not args.single_genes):
        raise InputError("give exactly one of --gene-sets FILE.gmt and --single-genes")
    if args.seed < 0:
        raise InputError(f"--seed must be 0 or more, got {args.seed}")
    if args.out.is_dir():
        raise InputError(f"--out {args.out} is a directory; pass a file name such as results.csv")
    model = load_model(resolve(args.model))
    library = library_from_gmt(args.gene_sets) if args.gene_sets is not None else library_single_genes(model)
    cohort = load_cohort(args.cohort, require_radiomics=bool(model.spec.features), require_clinical=model.spec.has_histology)
    data = prepare(model, cohort)
    options = MaskingOptions(mode=MaskingMode(args.mode), n_nulls=args.nulls, seed=args.seed, min_covered=args.min_covered,
                             chunk_sets=args.chunk_sets)
    result = run_masking(model, data, library, options, address=args.address, progress=not args.quiet)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    result.table.to_csv(partial, index=False)
    os.replace(partial, args.out)  # the CSV appears whole or not at all
    gate = result.outputs
    print(json.dumps({
        "out": str(args.out), "model": f"{model.name}/{model.version}", "mode": args.mode,
        "sets": int(result.table["gene_set"].nunique()), "skipped": len(result.skipped),
        "outputs": len(data.outputs), "outputs_predicted": int((gate["q_value"] < 0.1).sum()) if gate is not None else None,
        "evaluations": result.evaluations, "seconds": round(result.seconds, 3),
        "significant": int((result.table["q_value"] < 0.1).sum()),
    }))
    if result.skipped:
        print(f"radiogenomics mask: skipped {len(result.skipped)} set(s), e.g. {next(iter(result.skipped))}: "
              f"{next(iter(result.skipped.values()))}", file=sys.stderr)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="radiogenomics", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"radiogenomics {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser, required=True)

    p = verbs.add_parser("synth", help="write a synthetic train/test cohort with planted biology",
                         description="Write OUT/train and OUT/test cohorts, OUT/gene_sets.gmt and OUT/truth.json "
                                     "(the planted programs). Defaults mirror the paper: 262 + 89 patients, 21,766 genes, 101 features.")
    p.add_argument("out", type=Path, help="output directory (must be new or empty)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42); same seed, same files")
    p.add_argument("--train", type=_positive_int, default=262, help="training patients (default 262)")
    p.add_argument("--test", type=_positive_int, default=89, help="independent test patients (default 89)")
    p.add_argument("--genes", type=_positive_int, default=21766, help="genes (default 21,766; Hallmark symbols kept)")
    p.add_argument("--features", type=_positive_int, default=101, help="radiomic features, at most 101 (default 101)")
    p.add_argument("--design", choices=["nsclc", "nonlinear"], default="nsclc",
                   help="planted biology: nsclc (default; mostly linear programs) or nonlinear (other programs; "
                        "thresholds, ANDs of two programs, an interaction); truth.json records it")
    p.add_argument("--images", action="store_true", help="also write CT-like NRRD volumes + masks and images/manifest.csv")
    p.add_argument("--format", choices=["parquet", "tsv", "csv"], default="parquet", help="expression file format")
    p.add_argument("--hallmark-gmt", type=Path, help=f"MSigDB Hallmark GMT (default: ${HALLMARK_ENV} or ../shared/data/gene_sets)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_synth)

    p = verbs.add_parser("extract", help="extract radiomic features from a manifest of images (pyradiomics, Ray)",
                         description="One Ray task per case. Cases already in --out are skipped (resumable); a failing "
                                     "case is recorded in OUT.failures.csv with its reason and the batch goes on "
                                     "(exit code 1 if any case failed).")
    p.add_argument("manifest", type=Path, nargs="?",
                   help="CSV with sample_id,Image,Mask[,Label,ROI,Segment] (pyradiomics batch format); or --pacs with --studies")
    p.add_argument("--studies", type=Path, metavar="FILE.csv",
                   help="with --pacs: CSV with sample_id,study_uid,image_series_uid,mask_series_uid[,label|roi|segment]; "
                        "an empty mask_series_uid takes the study's one SEG/RTSTRUCT that references the CT")
    _pacs_arguments(p)
    p.add_argument("--store-report", action="store_true",
                   help="with --pacs: also store each case's features in the PACS as a DICOM SR (TID 1500)")
    p.add_argument("--max-case-bytes", type=_positive_int, default=1024 * 1024 * 1024,
                   help="with --pacs: largest case retrieved (image + mask), in bytes (default 1 GiB)")
    p.add_argument("--out", type=Path, required=True, help="features CSV (appended as cases finish)")
    p.add_argument("--params", type=Path, help="pyradiomics parameter file (YAML; default: pyradiomics' defaults)")
    p.add_argument("--address", help="Ray cluster address (default: a local Ray on 127.0.0.1)")
    p.add_argument("--workers", type=_positive_int, help="cases extracted at once (default: the cluster's CPUs)")
    p.add_argument("--max-voxels", type=_positive_int, help="refuse volumes larger than this many voxels")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_extract)

    p = verbs.add_parser("train", help="train and select the network with Ray Tune; export the model",
                         description="Ray Tune (Optuna search, ASHA) over network configurations, each cross-validated on "
                                     "the same stratified folds with early stopping on an inner split; baselines on the "
                                     "same folds; the best configuration is refitted on the whole cohort and exported to "
                                     "<registry>/<name>/<version>/. The artifact path is the last line of stdout.")
    p.add_argument("cohort", type=Path, help="training cohort directory")
    p.add_argument("--registry", type=Path, required=True, help="model registry directory")
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--trials", type=_positive_int, default=12, help="Tune trials (default 12)")
    p.add_argument("--folds", type=_positive_int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--address", help="Ray cluster address (default: a local Ray on 127.0.0.1)")
    p.add_argument("--resume", action="store_true", help="resume an interrupted search of this --name")
    p.add_argument("--seed", type=int, default=425, help="seed of folds, search and training (default 425)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per Tune trial (default 1)")
    p.add_argument("--max-epochs", type=_positive_int, default=80, help="epoch cap per fit (default 80)")
    p.add_argument("--cut-quantile", type=float, default=0.5, help="radiomic features are cut at this training quantile (default 0.5, the median)")
    p.add_argument("--exclude-targets", help="comma-separated radiomic features not to predict")
    p.add_argument("--compare-targets", type=int, default=2, help="radiomic targets in the per-target design comparison (0: skip)")
    p.add_argument("--scheduler", choices=["asha", "fifo"], default="asha", help="trial scheduler (default asha)")
    p.add_argument("--no-baselines", action="store_true", help="skip the baseline classifiers")
    p.add_argument("--ensemble", type=_positive_int, default=3,
                   help="average up to this many best configurations, as many as score best in CV (default 3; 1: no ensemble)")
    p.add_argument("--seeds", type=_positive_int, default=5,
                   help="train each chosen configuration with this many seeds (initialisation, dropout, early-stopping "
                        "split), cross-validated on the same folds, and average them (default 5; 1: the search's own)")
    p.add_argument("--time-budget", type=_positive_float, metavar="SECONDS",
                   help="stop the search after this many seconds (with --trials as the cap on trials); the --seeds and the baselines run after it")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_cmd_train)

    p = verbs.add_parser("evaluate", help="evaluate a model on an independent test cohort",
                         description="Per-target AUC with patient-level bootstrap 95 %% CIs (histology one-vs-rest per "
                                     "class), for the network and its stored baselines; writes metrics.json, a markdown "
                                     "report and ROC plots beside it, and records the metrics in model.json.")
    p.add_argument("model", type=Path, help="model artifact directory (<registry>/<name>/<version>)")
    p.add_argument("cohort", type=Path, help="test cohort directory")
    p.add_argument("--out", type=Path, required=True, help="metrics JSON (every key a target)")
    p.add_argument("--bootstrap", type=_positive_int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(run=_cmd_evaluate)

    p = verbs.add_parser("mask", help="gene masking: which gene sets alone still predict each output",
                         description="For every gene set and output of a model: keep only the set's genes (every other "
                                     "gene at its training mean; --mode drop: the reverse), score the AUC on a held-out "
                                     "cohort, compare it with size-matched random gene sets (empirical p, +1 correction) "
                                     "and control the FDR per output (Benjamini-Hochberg). Writes --out (CSV) and a "
                                     "one-line JSON summary on stdout.")
    p.add_argument("model", type=Path, help="model artifact directory (<registry>/<name>/<version>)")
    p.add_argument("cohort", type=Path, help="held-out cohort directory (patients the model was not fitted on)")
    p.add_argument("--gene-sets", type=Path, help="gene-set library (GMT)")
    p.add_argument("--single-genes", action="store_true", help="every model gene as a set of its own")
    p.add_argument("--out", type=Path, required=True, help="results CSV: gene_set,size,covered,output,auc,null_mean,p_value,q_value[,delta_auc]")
    p.add_argument("--mode", choices=["keep", "drop"], default="keep", help="keep only the set (default) or drop the set")
    p.add_argument("--nulls", type=_positive_int, default=1000, help="random size-matched sets per size (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the null sets (default 0)")
    p.add_argument("--min-covered", type=_positive_int, default=1, help="skip sets with fewer model genes (default 1)")
    p.add_argument("--chunk-sets", type=_positive_int, default=256,
                   help="gene sets (observed + null) per Ray task (default 256; on a multi-node cluster larger, "
                        "e.g. 1024: fewer, longer tasks spread better; results do not depend on it)")
    p.add_argument("--address", help="Ray cluster address (default: a local Ray on 127.0.0.1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_mask)

    p = verbs.add_parser("serve", help="serve the gRPC services on Ray Serve",
                         description="Serve the radiogenomics app on Ray Serve (a local Ray on 127.0.0.1 unless "
                                     "--address): RadiomicsService, PredictionService, the KServe/Triton v2 protocol, "
                                     "MaskingService and grpc.health.v1 on one gRPC port. Prints a JSON line when ready; "
                                     "Ctrl-C or SIGTERM stops.")
    p.add_argument("model", type=Path, help="<registry>/<name>/<version> (that version) or <registry>/<name> (every version)")
    p.add_argument("--grpc-port", type=int, default=9000, help="gRPC port clients call (default 9000)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address the HAProxy ingress listens on (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--ingress", choices=("haproxy", "proxy"), default=None,
                   help="haproxy: Serve's HAProxy ingress, straight to the gateway replicas (default); proxy: Serve's "
                        "classic Python gRPC proxy, which listens on every interface (default: $RADIOGENOMICS_INGRESS, "
                        "else haproxy; local Ray only)")
    p.add_argument("--gateway-replicas", type=_positive_int,
                   help="gateway (prediction) replicas, balanced by HAProxy (default: one per CPU of this machine)")
    p.add_argument("--radiomics-replicas", type=_positive_int, default=1,
                   help="radiomics (extraction) replicas (default 1)")
    p.add_argument("--radiomics-cpus", type=_positive_float, default=1.0,
                   help="CPUs reserved for each radiomics replica (default 1; pyradiomics runs one case on one core)")
    p.add_argument("--max-replicas-per-node", type=_positive_int,
                   help="with --address: at most N replicas of a deployment on one node (1 spreads the gateway and "
                        "radiomics replicas over the nodes, so losing one node leaves the others serving; "
                        "default: Serve's placement, which may pack them on one node)")
    p.add_argument("--proxy-location", choices=("EveryNode", "HeadOnly"), default="EveryNode",
                   help="with --address: where the gRPC ingress runs, on every node with a replica (default) or "
                        "on the head only (e.g. several Ray nodes on one machine, which would share the port)")
    p.add_argument("--metrics-port", type=int, default=8080, help="Prometheus metrics port of a local Ray (default 8080)")
    p.add_argument("--max-batch-profiles", type=_positive_int, default=1024, help="profiles per request (default 1024)")
    p.add_argument("--jobs-dir", type=Path, default=Path("radiogenomics-jobs"),
                   help="masking job store (SQLite + job inputs; default ./radiogenomics-jobs)")
    p.add_argument("--data-root", type=Path, help="folder ExtractFromPath and cohort_path jobs may read (default: none)")
    _pacs_arguments(p)
    p.add_argument("--gene-sets", type=_named_file, action="append", metavar="NAME=GMT",
                   help="a gene-set library masking clients may name, e.g. hallmark=h.all.gmt (repeatable)")
    p.add_argument("--auth-tokens", type=Path, metavar="FILE",
                   help="require `authorization: Bearer <token>` on every RPC but health; FILE holds `name:token` "
                        "lines (default: $RADIOGENOMICS_AUTH_TOKENS; neither = no access control)")
    p.add_argument("--audit-dir", type=Path, help="folder for the audit log (default: the replica log)")
    p.add_argument("--request-timeout", type=_positive_float, default=600.0, metavar="SECONDS",
                   help="longest a unary RPC may take (default 600)")
    p.add_argument("--max-message-bytes", type=_positive_int, default=128 * 1024 * 1024,
                   help="largest gRPC message accepted (default 128 MiB; local Ray only)")
    p.add_argument("--max-upload-bytes", type=_positive_int, help="largest ExtractUpload (image + mask; default 1 GiB)")
    p.add_argument("--max-voxels", type=_positive_int, help="largest image in voxels (default 64 Mi)")
    p.add_argument("--max-sets-per-job", type=_positive_int, help="gene sets per masking job (default 25,000)")
    p.add_argument("--max-active-jobs", type=_positive_int, help="queued + running masking jobs (default 4)")
    p.add_argument("--address", help="Ray cluster address (default: a local Ray on 127.0.0.1)")
    p.set_defaults(run=_cmd_serve)

    p = verbs.add_parser("demo", help="the end-to-end main job on a local Ray",
                         description="Generate a synthetic cohort with planted biology and CT images, then run every "
                                     "landed stage of the pipeline on it; writes OUT/report.md and OUT/report.json.")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output directory (default demo-out; an earlier demo there is replaced)")
    p.add_argument("--full", action="store_true", help="paper-sized cohort (262 + 89 patients, 21,766 genes)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument("--hallmark-gmt", type=Path, help=f"MSigDB Hallmark GMT (default: ${HALLMARK_ENV} or ../shared/data/gene_sets)")
    p.add_argument("--address", help="Ray cluster address (default: a local Ray on 127.0.0.1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `radiogenomics` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"radiogenomics {args.verb}"
    try:
        return int(args.run(args) or 0)
    except RadiogenomicsError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, never a traceback
        if os.environ.get("RADIOGENOMICS_DEBUG"):
            raise
        text = " ".join(str(exc).split())
        print(f"{prog}: internal error: {type(exc).__name__}: {text} (rerun with RADIOGENOMICS_DEBUG=1 for details)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
