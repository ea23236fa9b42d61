"""Property-based fuzzing of every RPC of the app (issue #8, item 6).

The whole app (gateway, radiomics, masking) runs on Ray Serve's gRPC proxy with access control
on. For each of the 21 RPCs, hypothesis draws at least 1,000 requests from three kinds of input:

  raw       random bytes sent as the serialized request (identity serializers)
  struct    messages built from the request's descriptor with random field values: unicode and
            path-like strings, huge and negative integers, NaN/inf, unknown enum numbers, repeated
            fields of random length, random oneof choices, nested messages, raw float bytes and
            dense vectors of the right and the wrong length, by_gene maps with random genes
  mutate    a valid request with one or two fields replaced or cleared, or its bytes flipped,
            inserted, deleted or truncated; client streams with messages dropped, repeated,
            reordered or replaced, and uploads with valid headers followed by random file bytes

About a third of the requests carry no token, a wrong one or a garbled `authorization` value.

Properties, checked for every request: the status is never INTERNAL and the details carry no
traceback; a decodable request without a valid token gets UNAUTHENTICATED (health stays open).
Request bytes that do not parse as the request message never reach our code: grpcio's asyncio
server answers a unary one UNKNOWN ("Unexpected <class 'google.protobuf.message.DecodeError'>:
Error parsing message with type ..."), before the token is looked at. In a client stream, Serve's
proxy ends the stream at the first message it cannot parse, so the method sees a shorter stream
(counted as a note in the report, not a failure). Requests that once found a bug (`_corpus`) are
sent first on every run. After each RPC's run: no replica of the app crashed or was replaced (same actor names), health
says SERVING, and a masking job finished before the fuzzing still returns byte-identical status
and results. Requests are sent IN_FLIGHT at a time from a thread pool, so ~20,000 requests take
a few minutes on two cores. Any SubmitJob that the fuzzer happens to make valid is cancelled at
once, so fuzz jobs never pile up.

Set FUZZ_REPORT=<file> to get the per-RPC counts, status codes and any violation as JSON.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from radiogenomics.pacs.config import PacsConfig
from services.pb.inference import grpc_predict_v2_pb2 as v2
from services.pb.radiogenomics.v1 import (
    common_pb2,
    masking_pb2,
    prediction_pb2,
    radiomics_pb2,
)
from tests.conftest import SMALL_MODEL

pytestmark = pytest.mark.slow

APP_NAME = "radiogenomics"
MIN_REQUESTS = 1000          # per RPC
EXAMPLES = 1100              # hypothesis examples per RPC (one request each; margin for duplicates)
IN_FLIGHT = 16               # requests outstanding at once
HEALTH = "grpc.health.v1.Health"
TOKEN = secrets.token_hex(24)
TIMEOUTS = {"WatchJob": 2.0, "Watch": 0.5, "PredictStream": 30.0, "ExtractUpload": 60.0, "ExtractFromPath": 60.0, "ExtractFromPacs": 60.0}
F = FieldDescriptor


def _all_rpcs() -> dict[str, MethodDescriptor]:
    out = {}
    for module, name in ((radiomics_pb2, "RadiomicsService"), (prediction_pb2, "PredictionService"),
                         (v2, "GRPCInferenceService"), (masking_pb2, "MaskingService"), (health_pb2, "Health")):
        service = module.DESCRIPTOR.services_by_name[name]
        for method in service.methods:
            out[f"/{service.full_name}/{method.name}"] = method
    return out


RPCS = _all_rpcs()
REPORT: dict[str, dict] = {}  # rpc path -> counts, codes, violations (filled by the tests, printed at the end)


# -- the app under test ---------------------------------------------------------------------------


@dataclass
class Hints:
    """What a fuzzer needs to know about the served model and data to reach deep into the code."""

    genes: list[str]
    features: list[str]
    outputs: list[str]
    classes: list[str]
    x: np.ndarray                    # test-cohort expression in the model's gene order (float32)
    histology: list[str]             # the test patients' true classes
    radiomics: list[dict[str, float]]
    job_id: str = ""
    pacs: dict = field(default_factory=dict)  # UIDs of the cases in the session's PACS

    @property
    def n_genes(self) -> int:
        return len(self.genes)


@dataclass
class FuzzApp:
    channel: grpc.Channel
    hints: Hints
    replicas: list[str]
    snapshot: tuple[bytes, list[bytes]]
    image: bytes = b""                 # the tiny NRRD image and mask under the data root, for uploads
    mask: bytes = b""
    created_jobs: list[str] = field(default_factory=list)


def _meta(token: str | None = TOKEN) -> tuple:
    base = (("application", APP_NAME),)
    return base + ((("authorization", f"Bearer {token}"),) if token else ())


def _replicas() -> list[str]:
    import ray

    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["name"].startswith(f"SERVE_REPLICA::{APP_NAME}#"))


def _stored(channel: grpc.Channel, job_id: str) -> tuple[bytes, list[bytes]]:
    """The reference job's status and every page of its results, as the bytes the server sends."""
    stub = channel.unary_stream("/radiogenomics.v1.MaskingService/WatchJob",
                                request_serializer=lambda m: m.SerializeToString(), response_deserializer=lambda b: b)
    statuses = list(stub(masking_pb2.JobRef(job_id=job_id), metadata=_meta(), timeout=30))
    assert len(statuses) == 1
    get = channel.unary_unary("/radiogenomics.v1.MaskingService/GetResults",
                              request_serializer=lambda m: m.SerializeToString(), response_deserializer=lambda b: b)
    pages, token = [], ""
    while True:
        page = get(masking_pb2.GetResultsRequest(job_id=job_id, page_size=7, page_token=token), metadata=_meta(),
                   timeout=30)
        pages.append(page)
        token = masking_pb2.GetResultsResponse.FromString(page).next_page_token
        if not token:
            return statuses[0], pages


def _serving(channel: grpc.Channel, timeout_s: float = 30.0) -> bool:
    check = channel.unary_unary(f"/{HEALTH}/Check", request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=health_pb2.HealthCheckResponse.FromString)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check(health_pb2.HealthCheckRequest(), metadata=_meta(None), timeout=10).status == \
                    health_pb2.HealthCheckResponse.SERVING:
                return True
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def _tiny_images(folder: Path) -> tuple[bytes, bytes]:
    """A 10^3 CT-like image and a cube mask (NRRD): extraction takes ~50 ms."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[3:7, 3:7, 3:7] = 1
    sitk.WriteImage(sitk.GetImageFromArray(rng.normal(100, 20, (10, 10, 10)).astype(np.float32)), str(folder / "image.nrrd"))
    sitk.WriteImage(sitk.GetImageFromArray(mask), str(folder / "mask.nrrd"))
    return (folder / "image.nrrd").read_bytes(), (folder / "mask.nrrd").read_bytes()


@pytest.fixture(scope="module")
def fuzz_app(serve_grpc: int, small_registry: Path, small_cohort: Path, tmp_path_factory: pytest.TempPathFactory,
             orthanc, pacs_data: dict):
    """The app with auth on, low limits and a finished reference masking job (snapshotted)."""
    from ray import serve

    from radiogenomics.cohort import load_cohort
    from radiogenomics.gene_sets import read_gmt
    from radiogenomics.registry import load_model
    from services.app import APP_NAME as APP
    from services.app import default_config, radiogenomics_app
    from services.security import SecurityConfig

    assert APP == APP_NAME
    folder = tmp_path_factory.mktemp("fuzz")
    data_root = folder / "data"  # a copy of the small cohort, plus a tiny image for ExtractFromPath
    shutil.copytree(small_cohort, data_root)
    image, mask = _tiny_images(data_root / "images")
    sets = read_gmt(small_cohort / "gene_sets.gmt")
    keep = [n for n in sets if n.startswith("SYNTH_")][:3] + [n for n in sets if n.startswith("HALLMARK_")][:2]
    gmt = folder / "small.gmt"
    gmt.write_text("".join(f"{n}\tna\t" + "\t".join(sets[n].genes) + "\n" for n in keep))
    tokens = folder / "tokens.txt"
    tokens.write_text(f"# fuzz\nfuzzer:{TOKEN}\nother:{secrets.token_hex(24)}\n")

    config = default_config(small_registry, SMALL_MODEL, None, folder / "jobs", data_root, {"small": gmt})
    config.security = SecurityConfig(auth_tokens_file=tokens, audit_dir=folder / "audit")
    config.masking.task_cpus = 0.5
    config.masking.max_nulls = 200
    config.masking.default_nulls = 100  # must not exceed max_nulls
    config.masking.max_active_jobs = 4
    config.masking.max_sets_per_job = 2000
    config.masking.max_inline_patients = 50
    config.prediction.max_batch_profiles = 64
    config.radiomics.max_voxels = 100_000
    config.radiomics.max_upload_bytes = 8 << 20
    config.radiomics.pacs = PacsConfig(url=orthanc.dicomweb, timeout_s=10)
    config.gateway_deployment.num_cpus = 0.25
    config.radiomics_deployment.num_cpus = 0.25
    serve.run(radiogenomics_app(config), name=APP_NAME, route_prefix="/radiogenomics")
    channel = grpc.insecure_channel(f"127.0.0.1:{serve_grpc}", options=[("grpc.max_receive_message_length", 64 << 20)])
    try:
        assert _serving(channel, 60), "the app never became SERVING"
        model = load_model(small_registry / SMALL_MODEL / "2")
        test = load_cohort(data_root / "test")
        hints = Hints(genes=list(model.genes), features=list(model.spec.features), outputs=list(model.spec.names),
                      classes=list(model.spec.histology_classes), x=model.align(test).astype(np.float32),
                      histology=[str(test.clinical.loc[s, "histology"]) for s in test.sample_ids],
                      radiomics=[{f: float(test.radiomics.loc[s, f]) for f in model.spec.features} for s in test.sample_ids],
                      pacs=pacs_data)

        submit = channel.unary_unary("/radiogenomics.v1.MaskingService/SubmitJob",
                                     request_serializer=lambda m: m.SerializeToString(),
                                     response_deserializer=masking_pb2.JobStatus.FromString)
        job = submit(masking_pb2.SubmitJobRequest(model=common_pb2.ModelRef(name=SMALL_MODEL), cohort_path="test",
                                                  library="small", null_sets=50, seed=5, label="fuzz reference"),
                     metadata=_meta(), timeout=60)
        watch = channel.unary_stream("/radiogenomics.v1.MaskingService/WatchJob",
                                     request_serializer=lambda m: m.SerializeToString(),
                                     response_deserializer=masking_pb2.JobStatus.FromString)
        final = list(watch(masking_pb2.JobRef(job_id=job.job_id), metadata=_meta(), timeout=300))[-1]
        assert final.state == masking_pb2.SUCCEEDED, final.error
        assert final.result_rows > 0
        hints.job_id = job.job_id
        snapshot = _stored(channel, job.job_id)
        replicas = _replicas()
        for deployment in ("Gateway", "Radiomics", "Masking"):
            assert any(name.startswith(f"SERVE_REPLICA::{APP_NAME}#{deployment}#") for name in replicas), replicas
        yield FuzzApp(channel=channel, hints=hints, replicas=replicas, snapshot=snapshot, image=image, mask=mask)
    finally:
        channel.close()
        serve.delete(APP_NAME)


# -- strategies: values ---------------------------------------------------------------------------

INT_RANGES = {
    F.TYPE_INT32: (-2**31, 2**31 - 1), F.TYPE_SINT32: (-2**31, 2**31 - 1), F.TYPE_SFIXED32: (-2**31, 2**31 - 1),
    F.TYPE_INT64: (-2**63, 2**63 - 1), F.TYPE_SINT64: (-2**63, 2**63 - 1), F.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1), F.TYPE_FIXED64: (0, 2**64 - 1),
}
NASTY_STRINGS = [
    "", " ", "0", "1", "2", "9", "-1", "latest", "None", "null", "true", "..", ".", "/", "./", "../", "../..",
    "../../etc/passwd", "/etc/passwd", "/dev/zero", "/proc/self/environ", "~", "~root", "a\x00b", "\x00", "\n", "\t",
    "%s%s%n", "${jndi:ldap://x}", "' OR 1=1 --", '"; DROP TABLE jobs; --', "\u202e\u0645", "😀", "Ω≈ç√", "²", "１２",
    "٣", "99999999999999999999999", "-0", "1e3", " 5", "5 ", "0x10", "NaN", "inf", "A" * 1000, "é" * 300,
    "radiogenomics.v1.PredictionService", "radiogenomics.v1.RadiomicsService", "radiogenomics.v1.MaskingService",
    "inference.GRPCInferenceService", HEALTH, "radiogenomics.v1.NoSuchService",
    "nsclc", "NSCLC", "nsclc/../nsclc", "expression", "FP32", "FP64", "INT32", "BYTES", "histology_probabilities",
    "feature_probabilities", "labels", "small", "hallmark", "test", "train", "test/", "./test", "test/..", "images",
    "images/image.nrrd", "images/mask.nrrd", "images/../images/image.nrrd", "gene_sets.gmt", "truth.json",
    "train/expression.parquet", "test/clinical.csv", "test/radiomics.csv", "jobs.sqlite", "firstorder", "glcm",
    "original_firstorder_Mean",
]
_PATHS = ["images/image.nrrd", "images/mask.nrrd", "images", "images/", "images/../images/image.nrrd", "test", "train",
          "test/expression.parquet", "test/clinical.csv", "gene_sets.gmt", "truth.json", ".", "..", "../", "/",
          "/etc/passwd", "../../../../etc/passwd", "/dev/zero", "/proc/self/mem", "a\x00b", "images/image.nrrd\x00",
          "images/\x00", "~", "images//image.nrrd", "IMAGES/image.nrrd", "images/image.nrrd/", "é/ü", "A" * 5000]
FIELD_STRINGS = {  # values that reach past the first checks of a field
    "page_token": ["", "0", "5", "10", "-1", "²", "١٢", "１", "99999999999999999999999", "9223372036854775808",
                   "1e3", " 5", "5 ", "+5", "0x5", "00005", "3.5"],
    "cohort_path": _PATHS, "image_path": _PATHS, "mask_path": _PATHS,
    "library": ["small", "SMALL", "small ", "hallmark", "", "../small", "\x00"],
    "name": ["nsclc", "NSCLC", "", "nsclc/../nsclc", "../nsclc", "nsclc\x00", "expression", "a", "Ω"],
    "version": ["", "1", "2", "3", "0", "-1", "01", "latest", "../1", "1\x00", "²", "99999999999999999999"],
    "datatype": ["FP32", "FP64", "FP16", "INT32", "BYTES", "fp32", "", "BOOL"],
    "service": ["", "radiogenomics.v1.PredictionService", "radiogenomics.v1.MaskingService",
                "radiogenomics.v1.RadiomicsService", "inference.GRPCInferenceService", HEALTH, "x"],
    "segment": ["", "1", "0", "-1", "255", "99999999999999999999", "GTV", "²"],
    "roi_name": ["", "GTV", "GTV_Mass_CT", "\x00"],
    "histology": ["", "adenocarcinoma", "squamous", "x"],
}
YAML_SNIPPETS = [
    "", ":", "- a\n- b", "a: [", "setting: 5", "setting:\n  binWidth: 25\n", "imageType:\n  Original: {}\n",
    "featureClass:\n  firstorder: [Mean]\n", "setting: {binWidth: 0}", "setting: {binWidth: -1}",
    "setting: {binWidth: 0.001}", "setting: {binCount: 100000000}", "setting: {label: 2}", "!!binary AAAA",
    "!!python/object/apply:os.system ['true']", "a: &a [1, 2]\nb: [*a, *a]", "setting: {minimumROIDimensions: 5}",
    "imageType: {Wavelet: {}}", "imageType: {LoG: {sigma: [1.0]}}", "setting: {normalize: true}", "\x00", "{{{{",
]


def _float32(x: float) -> float:
    return float(np.float32(x)) if np.isfinite(x) else x


def floats(width: int) -> st.SearchStrategy[float]:
    special = st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1.0, -1.0, 0.5, 1e-45,
                               3.4e38, -3.4e38, 1e308 if width == 64 else 3.4e38])
    return st.one_of(special, st.floats(width=width), st.floats(-10, 10, width=width))


def ints(lo: int, hi: int, hints: Hints) -> st.SearchStrategy[int]:
    edges = {0, 1, -1, 2, 3, 5, 10, 50, 63, 64, 65, 100, 199, 200, 201, 1000, 9999, 10_000, 10_001, 100_000,
             hints.n_genes, hints.n_genes - 1, hints.n_genes + 1, 2 * hints.n_genes, lo, hi, lo + 1, hi - 1,
             2**31 - 1, -2**31, 2**31, 2**32, 2**53, 2**62, -2**62}
    edges = sorted(v for v in edges if lo <= v <= hi)
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi), st.integers(-5, 3000).map(lambda v: min(max(v, lo), hi)))


def strings(hints: Hints, name: str = "") -> st.SearchStrategy[str]:
    if name == "gmt_text":
        return gmt_texts(hints)
    if name == "params_yaml":
        return yaml_texts()
    known = NASTY_STRINGS + hints.genes[:30] + hints.features + hints.outputs + hints.classes
    jobs = [hints.job_id, hints.job_id.upper(), hints.job_id[:-1], hints.job_id + "0", " " + hints.job_id,
            "../" + hints.job_id] if hints.job_id else []
    specific = FIELD_STRINGS.get(name, []) + (jobs if name == "job_id" else [])
    return st.one_of(*([st.sampled_from(specific)] * 2 if specific else []), st.sampled_from(known + jobs),
                     st.text(max_size=40), st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30))


def gene_names(hints: Hints) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(hints.genes), st.text(max_size=12), st.sampled_from(["", "\x00", "GENE", "Ω"]))


def gmt_texts(hints: Hints) -> st.SearchStrategy[str]:
    token = st.one_of(gene_names(hints), st.sampled_from(["na", "", "SYNTH_1", "HALLMARK_X", "#", "\t", " "]))
    line = st.lists(token, max_size=12).map("\t".join)
    sep = st.sampled_from(["\n", "\r\n", "\r", "\n\n", "\t\n"])
    return st.one_of(st.tuples(st.lists(line, max_size=6), sep).map(lambda ls: ls[1].join(ls[0])),
                     st.text(max_size=200))


def yaml_texts() -> st.SearchStrategy[str]:
    # Sizes that make pyradiomics allocate without bound (tiny binWidth, resampledPixelSpacing) are left out:
    # they take down a whole shared machine, and are reported separately.
    setting = st.fixed_dictionaries({}, optional={
        "binWidth": st.one_of(st.sampled_from([25, 5, 1, 0, -1, 0.001, "x", None, True, []]), st.floats(0.5, 1000)),
        "binCount": st.integers(-5, 500), "label": st.integers(-3, 5), "minimumROIDimensions": st.integers(-1, 5),
        "minimumROISize": st.integers(-1, 2000), "normalize": st.booleans(), "force2D": st.booleans(),
        "correctMask": st.booleans(), "geometryTolerance": st.floats(0, 1), "voxelArrayShift": st.integers(-1000, 1000),
        "removeOutliers": st.one_of(st.none(), st.floats(0, 5)), "bogus": st.integers(),
    })
    doc = st.fixed_dictionaries({}, optional={
        "setting": setting,
        "imageType": st.dictionaries(st.sampled_from(["Original", "Square", "Exponential", "Bogus"]), st.just({}),
                                     max_size=2),
        "featureClass": st.dictionaries(st.sampled_from(["firstorder", "glcm", "shape", "ngtdm", "bogus"]),
                                        st.one_of(st.none(), st.lists(st.sampled_from(["Mean", "Energy", "Bogus"]),
                                                                      max_size=2)), max_size=3),
    })
    return st.one_of(doc.map(lambda d: yaml.safe_dump(d, allow_unicode=True)), st.sampled_from(YAML_SNIPPETS),
                     st.text(max_size=60))


@st.composite
def vectors(draw, hints: Hints) -> np.ndarray:
    """float32 vectors of the model's length, close to it, or far from it; real or random values."""
    n = hints.n_genes
    length = draw(st.sampled_from([n, n, n, n - 1, n + 1, 2 * n, 0, 1, 3]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if length == n and draw(st.booleans()):
        values = hints.x[rng.integers(len(hints.x))].copy()
    else:
        values = rng.normal(0, draw(st.sampled_from([1.0, 1e3, 1e30])), length).astype(np.float32)
    if length and draw(st.booleans()):
        values[rng.integers(length, size=draw(st.integers(1, 3)))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf, 3.4e38, -0.0]))
    return values.astype(np.float32)


def float_bytes(hints: Hints) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=64), vectors(hints).map(lambda v: v.astype("<f4").tobytes()),
                     st.tuples(vectors(hints), st.integers(1, 3)).map(lambda t: t[0].astype("<f4").tobytes()[:-t[1]]))


# -- strategies: messages -------------------------------------------------------------------------

PACKED_FLOATS = {("radiogenomics.v1.DenseVector", "values"), ("inference.InferTensorContents", "fp32_contents")}
FLOAT_BYTES = {("radiogenomics.v1.ExpressionProfile", "raw_float32"), ("inference.ModelInferRequest", "raw_input_contents"),
               ("inference.InferTensorContents", "bytes_contents")}
MAX_DEPTH = 4


def _is_map(f: FieldDescriptor) -> bool:
    return f.type == F.TYPE_MESSAGE and f.message_type.GetOptions().map_entry


def scalar(f: FieldDescriptor, hints: Hints, owner: str = "") -> st.SearchStrategy:
    if f.type == F.TYPE_STRING:
        return strings(hints, f.name)
    if f.type == F.TYPE_BYTES:
        return float_bytes(hints) if (owner, f.name) in FLOAT_BYTES else st.binary(max_size=64)
    if f.type == F.TYPE_BOOL:
        return st.booleans()
    if f.type == F.TYPE_FLOAT:
        return floats(32).map(_float32)
    if f.type == F.TYPE_DOUBLE:
        return floats(64)
    if f.type == F.TYPE_ENUM:
        known = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 12), st.sampled_from([2**31 - 1, -2**31]))
    if f.type in INT_RANGES:
        return ints(*INT_RANGES[f.type], hints)
    raise AssertionError(f"no strategy for field {f.full_name}")


def _set_field(draw, msg: Message, f: FieldDescriptor, hints: Hints, depth: int) -> None:
    """Give `f` of `msg` a random value (for repeated fields: a random number of them)."""
    owner = msg.DESCRIPTOR.full_name
    if _is_map(f):
        key_f, value_f = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
        keys = gene_names(hints) if (owner, f.name) == ("radiogenomics.v1.GeneValues", "values") else scalar(key_f, hints)
        target = getattr(msg, f.name)
        if (owner, f.name) == ("radiogenomics.v1.GeneValues", "values") and draw(st.booleans()):
            values = draw(vectors(hints))  # a whole profile by gene name (maybe with genes missing or extra)
            names = hints.genes if len(values) >= hints.n_genes else hints.genes[:len(values)]
            target.update({g: float(v) for g, v in zip(names, values)})
            return
        if value_f.type == F.TYPE_MESSAGE:
            for key in draw(st.lists(keys, max_size=3, unique=True)):
                if depth < MAX_DEPTH:
                    target[key].CopyFrom(draw(messages(value_f.message_type, hints, depth + 1)))
                else:
                    target[key]
            return
        target.update(draw(st.dictionaries(keys, scalar(value_f, hints, owner), max_size=4)))
        return
    if f.label == F.LABEL_REPEATED:
        if f.type == F.TYPE_MESSAGE:
            if depth >= MAX_DEPTH:
                return
            count = draw(st.one_of(st.integers(0, 3), st.sampled_from([64, 65, 300])))
            if count <= 3:
                items = [draw(messages(f.message_type, hints, depth + 1)) for _ in range(count)]
            else:  # many copies of one message: past the per-request limits without a huge example
                items = [draw(messages(f.message_type, hints, depth + 1))] * count
            getattr(msg, f.name).extend(items)
        elif (owner, f.name) in PACKED_FLOATS and draw(st.booleans()):
            getattr(msg, f.name).extend(draw(vectors(hints)).tolist())
        elif (owner, f.name) == ("radiogenomics.v1.GeneSet", "genes"):
            getattr(msg, f.name).extend(draw(st.lists(gene_names(hints), max_size=20)))
        else:
            getattr(msg, f.name).extend(draw(st.lists(scalar(f, hints, owner), max_size=5)))
        return
    if f.type == F.TYPE_MESSAGE:
        if depth < MAX_DEPTH:
            getattr(msg, f.name).CopyFrom(draw(messages(f.message_type, hints, depth + 1)))
        else:
            getattr(msg, f.name).SetInParent()
        return
    setattr(msg, f.name, draw(scalar(f, hints, owner)))


@st.composite
def messages(draw, descriptor: Descriptor, hints: Hints, depth: int = 0) -> Message:
    """A message of `descriptor` with random fields set (one random member of each oneof, or none)."""
    msg = GetMessageClass(descriptor)()
    chosen = {o.name: draw(st.sampled_from([None, *o.fields])) for o in descriptor.oneofs}
    for f in descriptor.fields:
        if f.containing_oneof is not None:
            if chosen[f.containing_oneof.name] is not f:
                continue
        elif not draw(st.booleans()):
            continue
        _set_field(draw, msg, f, hints, depth)
    return msg


def _mutate_once(draw, msg: Message, hints: Hints, depth: int = 0) -> None:
    if not msg.DESCRIPTOR.fields:  # nothing to change (the byte mutations add unknown fields instead)
        return
    f = draw(st.sampled_from(list(msg.DESCRIPTOR.fields)))
    if f.type == F.TYPE_MESSAGE and not _is_map(f) and depth < MAX_DEPTH:
        if f.label != F.LABEL_REPEATED and msg.HasField(f.name) and draw(st.booleans()):
            _mutate_once(draw, getattr(msg, f.name), hints, depth + 1)
            return
        items = getattr(msg, f.name) if f.label == F.LABEL_REPEATED else None
        if items is not None and len(items) and draw(st.booleans()):
            _mutate_once(draw, items[draw(st.integers(0, len(items) - 1))], hints, depth + 1)
            return
    msg.ClearField(f.name)
    if draw(st.integers(0, 3)):  # mostly a new value, sometimes just cleared
        _set_field(draw, msg, f, hints, depth)


@st.composite
def mutated(draw, bases: list[Message], hints: Hints) -> Message:
    """A valid request with one or two fields (at any depth) replaced or cleared."""
    msg = type(bases[0])()
    msg.CopyFrom(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 2))):
        _mutate_once(draw, msg, hints)
    return msg


@st.composite
def flipped(draw, blobs: list[bytes]) -> bytes:
    """Serialized valid bytes with a few bytes flipped, replaced, inserted or deleted, or cut short."""
    data = bytearray(draw(st.sampled_from(blobs)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x80, 0x7F, 0x0A, 0x12, 0x1A, 0x22]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 4))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


# -- valid requests, per RPC -----------------------------------------------------------------------


def _valid_requests(method: str, app: FuzzApp) -> list[Message]:
    h = app.hints
    x, genes, model = h.x, h.genes, common_pb2.ModelRef(name=SMALL_MODEL)
    dense = lambda i: common_pb2.ExpressionProfile(profile_id=f"p{i}", dense=common_pb2.DenseVector(values=x[i].tolist()))
    raw = lambda i: common_pb2.ExpressionProfile(profile_id=f"r{i}", raw_float32=x[i].astype("<f4").tobytes())
    by_gene = common_pb2.ExpressionProfile(profile_id="g", by_gene=common_pb2.GeneValues(
        values={g: float(v) for g, v in zip(genes[:-3], x[2][:-3])}))
    tensor = v2.ModelInferRequest.InferInputTensor
    options = radiomics_pb2.ExtractionOptions
    inline = masking_pb2.InlineCohort(patients=[masking_pb2.LabelledProfile(
        profile=raw(i), histology=h.histology[i], radiomics=h.radiomics[i]) for i in range(10)])
    sets = masking_pb2.GeneSetList(sets=[masking_pb2.GeneSet(name="a", genes=genes[:30]),
                                         masking_pb2.GeneSet(name="b", genes=genes[30:50])])
    gmt = "A\tna\t" + "\t".join(genes[:25]) + "\nB\tna\t" + "\t".join(genes[40:60]) + "\n"
    submit = masking_pb2.SubmitJobRequest
    job = h.job_id
    valid: dict[str, list[Message]] = {
        "ExtractFromPath": [
            radiomics_pb2.ExtractPathRequest(image_path="images/image.nrrd", mask_path="images/mask.nrrd"),
            radiomics_pb2.ExtractPathRequest(image_path="images/image.nrrd", mask_path="images/mask.nrrd",
                                             image_format=radiomics_pb2.IMAGE_NRRD, mask_format=radiomics_pb2.MASK_NRRD,
                                             options=options(label=1, case_id="c1", params_yaml="setting:\n  binWidth: 25\n")),
        ],
        "ExtractFromPacs": [
            radiomics_pb2.ExtractPacsRequest(study_uid=h.pacs["seg_study"], image_series_uid=h.pacs["seg_ct"],
                                             mask_series_uid=h.pacs["segs"]["binary_overlap"],
                                             options=options(segment="2", params_yaml="setting:\n  minimumROIDimensions: 1\n")),
            radiomics_pb2.ExtractPacsRequest(study_uid=h.pacs["seg_study"], image_series_uid=h.pacs["seg_ct"],
                                             mask_series_uid=h.pacs["segs"]["binary"], options=options(case_id="p1")),
        ],
        "GetExtractorInfo": [radiomics_pb2.GetExtractorInfoRequest()],
        "Predict": [prediction_pb2.PredictRequest(model=model, profile=dense(0)),
                    prediction_pb2.PredictRequest(model=common_pb2.ModelRef(name=SMALL_MODEL, version="1"), profile=raw(1)),
                    prediction_pb2.PredictRequest(model=model, profile=by_gene,
                                                  missing_genes=prediction_pb2.IMPUTE_TRAINING_MEAN)],
        "PredictBatch": [prediction_pb2.PredictBatchRequest(model=model, profiles=[dense(0), raw(1), dense(2)]),
                         prediction_pb2.PredictBatchRequest(profiles=[by_gene, raw(3)],
                                                            missing_genes=prediction_pb2.IMPUTE_TRAINING_MEAN)],
        "GetModelInfo": [prediction_pb2.GetModelInfoRequest(), prediction_pb2.GetModelInfoRequest(model=model),
                         prediction_pb2.GetModelInfoRequest(model=common_pb2.ModelRef(name=SMALL_MODEL, version="1"))],
        "ServerLive": [v2.ServerLiveRequest()],
        "ServerReady": [v2.ServerReadyRequest()],
        "ServerMetadata": [v2.ServerMetadataRequest()],
        "ModelReady": [v2.ModelReadyRequest(name=SMALL_MODEL), v2.ModelReadyRequest(name=SMALL_MODEL, version="1")],
        "ModelMetadata": [v2.ModelMetadataRequest(name=SMALL_MODEL), v2.ModelMetadataRequest(name=SMALL_MODEL, version="2")],
        "ModelInfer": [
            v2.ModelInferRequest(model_name=SMALL_MODEL, id="a", inputs=[tensor(name="expression", datatype="FP32",
                                 shape=[2, len(genes)])], raw_input_contents=[x[:2].astype("<f4").tobytes()]),
            v2.ModelInferRequest(model_name=SMALL_MODEL, model_version="1", inputs=[tensor(
                name="expression", datatype="FP32", shape=[1, len(genes)],
                contents=v2.InferTensorContents(fp32_contents=x[3].tolist()))],
                outputs=[v2.ModelInferRequest.InferRequestedOutputTensor(name="feature_probabilities")]),
        ],
        "SubmitJob": [
            submit(model=model, cohort_path="test", library="small", null_sets=10, seed=1, label="fuzz"),
            submit(cohort_path="train", gmt_text=gmt, null_sets=10, mode=masking_pb2.DROP),
            submit(model=common_pb2.ModelRef(name=SMALL_MODEL, version="1"), inline=inline, sets=sets, null_sets=10),
            submit(model=model, cohort_path="test", single_genes=True, null_sets=5, min_covered=1),
        ],
        "WatchJob": [masking_pb2.JobRef(job_id=job)],
        "GetResults": [masking_pb2.GetResultsRequest(job_id=job),
                       masking_pb2.GetResultsRequest(job_id=job, outputs=h.outputs[:2], max_q_value=0.5, page_size=5,
                                                     page_token="5")],
        "CancelJob": [masking_pb2.JobRef(job_id=job)],
        "ListJobs": [masking_pb2.ListJobsRequest(), masking_pb2.ListJobsRequest(
            states=[masking_pb2.SUCCEEDED, masking_pb2.QUEUED], limit=5)],
        "Check": [health_pb2.HealthCheckRequest(), health_pb2.HealthCheckRequest(service="radiogenomics.v1.MaskingService")],
        "Watch": [health_pb2.HealthCheckRequest(), health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")],
    }
    return valid[method]


def _valid_streams(method: str, app: FuzzApp) -> list[list[Message]]:
    if method == "ExtractUpload":
        header = radiomics_pb2.ExtractChunk(header=radiomics_pb2.UploadHeader(
            image_format=radiomics_pb2.IMAGE_NRRD, mask_format=radiomics_pb2.MASK_NRRD,
            options=radiomics_pb2.ExtractionOptions(case_id="u1")))
        image, mask = app.image, app.mask
        return [[header, radiomics_pb2.ExtractChunk(image_chunk=image[:1000]),
                 radiomics_pb2.ExtractChunk(image_chunk=image[1000:]), radiomics_pb2.ExtractChunk(mask_chunk=mask)]]
    if method == "PredictStream":
        batches = _valid_requests("PredictBatch", app)
        return [[batches[0]], [batches[1], batches[0]]]
    raise AssertionError(method)


def _corpus(method: str, app: FuzzApp) -> list[Message | list[Message]]:
    """Requests that once reached a bug, sent first on every run (with a valid token)."""
    h = app.hints
    path = radiomics_pb2.ExtractPathRequest
    opts = radiomics_pb2.ExtractionOptions
    results = masking_pb2.GetResultsRequest
    submit = masking_pb2.SubmitJobRequest
    upload = _valid_streams("ExtractUpload", app)[0] if method == "ExtractUpload" else []
    with_options = lambda o: [radiomics_pb2.ExtractChunk(header=radiomics_pb2.UploadHeader(
        image_format=1, mask_format=1, options=o)), *upload[1:]]
    corpus: dict[str, list] = {
        "GetResults": [results(job_id=h.job_id, page_token=t) for t in ("²", "١", "99999999999999999999999")],
        "ExtractFromPath": [
            path(image_path="images/image.nrrd", mask_path="images/\x00"),
            path(image_path="a\x00b", mask_path="images/mask.nrrd"),
            path(image_path="A" * 5000, mask_path="images/mask.nrrd"),
            path(image_path="images/image.nrrd", mask_path="images/mask.nrrd", options=opts(segment="²")),
            path(image_path="images/image.nrrd", mask_path="images/mask.nrrd",
                 options=opts(params_yaml="setting: {binWidth: 0.001}")),
        ],
        "ExtractUpload": [with_options(opts(segment="²")), with_options(opts(params_yaml="setting: {binWidth: 0.001}"))],
        "SubmitJob": [submit(cohort_path=c, library="small", null_sets=10) for c in ("a\x00b", "A" * 5000)],
    }
    return corpus.get(method, [])


# -- cases: what one request is -------------------------------------------------------------------

AUTH = st.sampled_from(["valid"] * 6 + ["valid-lowercase", "none", "wrong", "garbled", "empty-bearer"])


@dataclass
class Case:
    kind: str
    auth: str
    payload: bytes | list[bytes]
    auth_value: str = ""


def _serialize(m: Message) -> bytes:
    return m.SerializeToString()


def _unary_payloads(method: MethodDescriptor, app: FuzzApp) -> st.SearchStrategy[tuple[str, bytes]]:
    bases = _valid_requests(method.name, app)
    hints = app.hints
    struct = messages(method.input_type, hints).map(lambda m: ("struct", _serialize(m)))
    mutate = mutated(bases, hints).map(lambda m: ("mutate", _serialize(m)))
    return st.one_of(  # weights 1:2:3:1; changes to a valid request get furthest into the code
        st.binary(max_size=256).map(lambda b: ("raw", b)), struct, struct, mutate, mutate, mutate,
        flipped([_serialize(b) for b in bases]).map(lambda b: ("mutate-bytes", b)),
    )


@st.composite
def _stream_edit(draw, streams: list[list[bytes]], item: st.SearchStrategy[tuple[str, bytes]]) -> list[bytes]:
    """A valid stream with messages dropped, repeated, swapped, replaced or inserted."""
    out = list(draw(st.sampled_from(streams)))
    for _ in range(draw(st.integers(1, 2))):
        op = draw(st.sampled_from(["drop", "repeat", "swap", "replace", "insert"]))
        i = draw(st.integers(0, max(len(out) - 1, 0)))
        if op == "drop" and out:
            del out[i]
        elif op == "repeat" and out:
            out.insert(i, out[i])
        elif op == "swap" and len(out) > 1:
            j = draw(st.integers(0, len(out) - 1))
            out[i], out[j] = out[j], out[i]
        elif op == "replace" and out:
            out[i] = draw(item)[1]
        else:
            out.insert(i, draw(item)[1])
    return out


@st.composite
def _upload_with_random_files(draw, app: FuzzApp) -> list[bytes]:
    """A header with valid formats, then image and mask chunks of random or damaged file bytes."""
    image, mask = app.image, app.mask
    header = radiomics_pb2.ExtractChunk(header=radiomics_pb2.UploadHeader(
        image_format=draw(st.sampled_from([1, 2, 3])), mask_format=draw(st.sampled_from([1, 2, 3, 4])),
        options=draw(st.one_of(st.just(radiomics_pb2.ExtractionOptions()),
                               messages(radiomics_pb2.ExtractionOptions.DESCRIPTOR, app.hints)))))
    files = []
    for role, real in (("image_chunk", image), ("mask_chunk", mask)):
        data = draw(st.one_of(st.binary(max_size=512), flipped([real]),
                              st.sampled_from([b"", b"\x1f\x8b" + bytes(30), b"PK\x03\x04" + bytes(26), b"NRRD0004\n"])))
        cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=2)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        files += [radiomics_pb2.ExtractChunk(**{role: p}).SerializeToString() for p in pieces]
    return [header.SerializeToString(), *files]


def cases(method: MethodDescriptor, app: FuzzApp) -> st.SearchStrategy[Case]:
    if method.client_streaming:
        streams = [[_serialize(m) for m in s] for s in _valid_streams(method.name, app)]
        item = st.one_of(
            st.binary(max_size=128).map(lambda b: ("raw", b)),
            messages(method.input_type, app.hints).map(lambda m: ("struct", _serialize(m))),
            flipped([m for s in streams for m in s]).map(lambda b: ("mutate-bytes", b)),
        )
        payload = st.one_of(
            st.lists(st.binary(max_size=128), max_size=5).map(lambda p: ("raw", p)),
            st.lists(item, max_size=5).map(lambda items: ("struct", [b for _, b in items])),
            _stream_edit(streams, item).map(lambda p: ("mutate", p)),
            *([_upload_with_random_files(app).map(lambda p: ("mutate-files", p))] if method.name == "ExtractUpload" else []),
        )
    else:
        payload = _unary_payloads(method, app)
    garble = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
    return st.builds(lambda auth, kp, junk: Case(kind=kp[0], auth=auth, payload=kp[1], auth_value=junk),
                     AUTH, payload, garble)


def _metadata(case: Case) -> tuple:
    base = (("application", APP_NAME),)
    value = {"valid": f"Bearer {TOKEN}", "valid-lowercase": f"bearer   {TOKEN} ", "none": None,
             "wrong": f"Bearer {TOKEN[:-4]}{'0000' if not TOKEN.endswith('0000') else '1111'}",
             "garbled": case.auth_value or "x", "empty-bearer": "Bearer "}[case.auth]
    return base + ((("authorization", value),) if value is not None else ())


# -- sending and judging --------------------------------------------------------------------------


def _decodes(cls, payload: bytes | list[bytes]) -> bool:
    try:
        for blob in payload if isinstance(payload, list) else [payload]:
            cls.FromString(blob)
        return True
    except DecodeError:
        return False


class Fuzzer:
    """Sends cases IN_FLIGHT at a time and judges each answer; the tally goes into REPORT[rpc]."""

    def __init__(self, app: FuzzApp, rpc: str, method: MethodDescriptor) -> None:
        self.app, self.rpc, self.method = app, rpc, method
        self.request_class = GetMessageClass(method.input_type)
        kinds = {(False, False): app.channel.unary_unary, (False, True): app.channel.unary_stream,
                 (True, False): app.channel.stream_unary, (True, True): app.channel.stream_stream}
        self.stub = kinds[(method.client_streaming, method.server_streaming)](
            rpc, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        self.timeout = TIMEOUTS.get(method.name, 30.0)
        self.open = method.containing_service.full_name == HEALTH
        self.pool = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix=f"fuzz-{method.name}")
        self.slots = threading.BoundedSemaphore(IN_FLIGHT)
        self.lock = threading.Lock()
        self.sent = 0
        self.codes: Counter = Counter()
        self.by_kind: Counter = Counter()
        self.violations: list[dict] = []
        self.notes: list[dict] = []   # allowed but worth a look (UNKNOWN for decodable bytes, unary deadlines)
        self.jobs_created = 0

    def submit(self, case: Case) -> None:
        self.slots.acquire()
        try:
            self.pool.submit(self._one, case)
        except BaseException:
            self.slots.release()
            raise

    def drain(self) -> None:
        self.pool.shutdown(wait=True)

    def _send(self, case: Case) -> tuple[grpc.StatusCode, str, list[bytes]]:
        argument = iter(case.payload) if self.method.client_streaming else case.payload
        responses: list[bytes] = []
        try:
            answer = self.stub(argument, metadata=_metadata(case), timeout=self.timeout)
            if self.method.server_streaming:
                responses.extend(answer)  # keeps what came before an error status
            else:
                responses.append(answer)
            return grpc.StatusCode.OK, "", responses
        except grpc.RpcError as err:
            return err.code(), err.details() or "", responses

    def _one(self, case: Case) -> None:
        try:
            code, details, responses = self._send(case)
            if code == grpc.StatusCode.OK and self.method.name == "SubmitJob" and case.auth.startswith("valid"):
                self._cancel(responses[0])
            self._judge(case, code, details)
        finally:
            self.slots.release()

    def _cancel(self, response: bytes) -> None:
        """A fuzz request happened to be a valid job: cancel it at once (never the reference job)."""
        job_id = masking_pb2.JobStatus.FromString(response).job_id
        if not job_id or job_id == self.app.hints.job_id:
            return
        with self.lock:
            self.jobs_created += 1
            self.app.created_jobs.append(job_id)
        cancel = self.app.channel.unary_unary("/radiogenomics.v1.MaskingService/CancelJob",
                                              request_serializer=lambda m: m.SerializeToString(),
                                              response_deserializer=lambda b: b)
        cancel(masking_pb2.JobRef(job_id=job_id), metadata=_meta(), timeout=30)

    def _judge(self, case: Case, code: grpc.StatusCode, details: str) -> None:
        decodable = _decodes(self.request_class, case.payload)
        problem = note = None
        if code == grpc.StatusCode.INTERNAL:
            problem = "INTERNAL"
        elif "Traceback" in details or 'File "' in details:
            problem = "traceback in the details"
        elif not self.open and not case.auth.startswith("valid") and decodable and code != grpc.StatusCode.UNAUTHENTICATED:
            problem = "no valid token, yet not UNAUTHENTICATED"
        elif code == grpc.StatusCode.UNKNOWN and decodable:
            note = "UNKNOWN for a decodable request"
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED and not self.method.server_streaming:
            note = "a unary call ran out of time"
        elif code == grpc.StatusCode.OK and not decodable:
            # Serve's proxy ends a client stream at a message it cannot parse (proxy.py logs a warning and
            # cancels the stream), so the method sees a shorter stream and may well succeed on it.
            note = "OK although a message of the stream did not parse (the stream was cut short)"
        with self.lock:
            self.sent += 1
            self.codes[code.name] += 1
            self.by_kind[case.kind] += 1
            if problem or note:
                record = {"rpc": self.rpc, "problem": problem or note, "code": code.name, "details": details[:500],
                          "kind": case.kind, "auth": case.auth, "decodable": decodable,
                          "payload": [b.hex() for b in case.payload] if isinstance(case.payload, list)
                          else case.payload.hex()}
                (self.violations if problem else self.notes).append(record)


def _size(record: dict) -> int:
    payload = record["payload"]
    return sum(map(len, payload)) if isinstance(payload, list) else len(payload)


def _group(records: list[dict]) -> list[dict]:
    """One example (the smallest request) per (problem, code, details with ids blanked)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        key = (r["problem"], r["code"], re.sub(r"[0-9a-f]{32}", "<id>", r["details"]))
        groups.setdefault(key, []).append(r)
    return [{**min(rs, key=_size), "count": len(rs)} for rs in groups.values()]


def _describe(record: dict, request_class) -> str:
    payload = record["payload"]
    blobs = [bytes.fromhex(p) for p in payload] if isinstance(payload, list) else [bytes.fromhex(payload)]
    shown = []
    for blob in blobs:
        try:
            shown.append(text_format.MessageToString(request_class.FromString(blob), as_one_line=True)[:600])
        except DecodeError:
            shown.append(f"<undecodable {blob[:100].hex()}>")
    return (f"{record['count']}x {record['problem']}: {record['code']} {record['details']!r} "
            f"[{record['kind']}, auth={record['auth']}] request: {' | '.join(shown)}")


def _check_invariants(app: FuzzApp, after: str) -> None:
    assert _replicas() == app.replicas, f"a replica of the app was replaced during the {after} fuzzing"
    assert _serving(app.channel), f"health is not SERVING after the {after} fuzzing"
    assert _stored(app.channel, app.hints.job_id) == app.snapshot, \
        f"the reference job's stored status or results changed during the {after} fuzzing"


# -- the tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rpc", list(RPCS), ids=[p.split(".")[-1] for p in RPCS])
def test_fuzz_rpc(fuzz_app: FuzzApp, rpc: str) -> None:
    """At least MIN_REQUESTS random, malformed or mutated requests: never INTERNAL, nothing breaks."""
    method = RPCS[rpc]
    fuzzer = Fuzzer(fuzz_app, rpc, method)
    started = time.perf_counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(case=cases(method, fuzz_app))
    def send(case: Case) -> None:
        fuzzer.submit(case)

    try:
        for request in _corpus(method.name, fuzz_app):
            payload = [_serialize(m) for m in request] if isinstance(request, list) else _serialize(request)
            fuzzer.submit(Case(kind="corpus", auth="valid", payload=payload))
        send()
    finally:
        fuzzer.drain()
    request_class = GetMessageClass(method.input_type)
    REPORT[rpc] = {"sent": fuzzer.sent, "seconds": round(time.perf_counter() - started, 1), "codes": dict(fuzzer.codes),
                   "kinds": dict(fuzzer.by_kind), "jobs_created_and_cancelled": fuzzer.jobs_created,
                   "violations": [_describe(r, request_class) for r in _group(fuzzer.violations)],
                   "notes": [_describe(r, request_class) for r in _group(fuzzer.notes)],
                   "raw_violations": _group(fuzzer.violations)}
    try:
        _check_invariants(fuzz_app, rpc)
    except AssertionError as exc:
        raise AssertionError("\n".join([str(exc), *REPORT[rpc]["violations"]])) from None
    assert not fuzzer.violations, "\n".join(REPORT[rpc]["violations"])
    assert fuzzer.sent >= MIN_REQUESTS, f"only {fuzzer.sent} requests sent"


def test_after_all_fuzzing_nothing_changed(fuzz_app: FuzzApp) -> None:
    """The app as a whole after every RPC's fuzzing: same replicas, SERVING, the stored job untouched,
    and every job the fuzzers created ended (none left queued or running)."""
    _check_invariants(fuzz_app, "whole")
    list_jobs = fuzz_app.channel.unary_unary("/radiogenomics.v1.MaskingService/ListJobs",
                                             request_serializer=lambda m: m.SerializeToString(),
                                             response_deserializer=masking_pb2.ListJobsResponse.FromString)
    deadline = time.monotonic() + 60
    while True:
        active = list_jobs(masking_pb2.ListJobsRequest(states=[masking_pb2.QUEUED, masking_pb2.RUNNING]),
                           metadata=_meta(), timeout=30).jobs
        if not active or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not active, [j.job_id for j in active]
    lines = [f"{'RPC':<52} {'sent':>5} {'s':>6}  codes"]
    for rpc, entry in REPORT.items():
        codes = ", ".join(f"{c}={n}" for c, n in sorted(entry["codes"].items(), key=lambda kv: -kv[1]))
        lines.append(f"{rpc:<52} {entry['sent']:>5} {entry['seconds']:>6}  {codes}")
    print("\n" + "\n".join(lines))
    if os.environ.get("FUZZ_REPORT"):
        Path(os.environ["FUZZ_REPORT"]).write_text(json.dumps(REPORT, indent=1, default=str))
    tested = [rpc for rpc in RPCS if rpc in REPORT]
    assert all(REPORT[rpc]["sent"] >= MIN_REQUESTS for rpc in tested)
