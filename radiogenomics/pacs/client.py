"""A DICOMweb session with the configured PACS, speaking our errors instead of HTTP's.

Transport failures become `Unavailable` (retryable: refused, reset, timed out, HTTP 5xx/429/408),
a missing study or series `NotFound` naming its UID, refused credentials or an untrusted TLS
certificate `Precondition` (the server's set-up, not the caller's input). No message carries
anything the PACS sent back: responses may hold patient data.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit

import pydicom
import requests
from dicomweb_client import DICOMwebClient

from radiogenomics.errors import InputError, NotFound, Precondition, Unavailable
from radiogenomics.pacs.config import PacsConfig

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def check_uid(value: str, field: str) -> str:
    """A DICOM UID (digits and dots, at most 64 characters); anything else never reaches a URL."""
    if not value:
        raise InputError(f"{field} is empty; give the DICOM UID (digits and dots, e.g. 1.2.840.113619.2.55.3)")
    if len(value) > 64 or not _UID.match(value):
        shown = value if len(value) <= 70 else value[:70] + "..."
        raise InputError(f"{field} {shown!r} is not a DICOM UID; give digits separated by dots, at most 64 characters")
    return value


@contextmanager
def quiet_dicom() -> Iterator[None]:
    """No warnings or pydicom/highdicom log lines while PACS objects are handled: they quote attribute
    values (highdicom warns with the PatientName itself), and no patient identifier may reach a log."""
    loggers = [logging.getLogger(name) for name in ("pydicom", "highdicom", "dicomweb_client")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _no_bulk_data(tag: str, vr: str, uri: str) -> bytes:
    return b""


def from_json(item: dict) -> pydicom.Dataset:
    """A DICOM JSON object (QIDO-RS / WADO-RS metadata) as a pydicom Dataset, bulk data left out."""
    return pydicom.Dataset.from_json(item, bulk_data_uri_handler=_no_bulk_data)


class _PinnedTrust(requests.Session):
    """A session whose CA bundle is the configured one: requests would otherwise let $REQUESTS_CA_BUNDLE
    (set on many hosts) silently replace it, and the PACS certificate would be checked against the wrong CAs."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["verify"] = self.verify
        return settings


class PacsSession:
    """QIDO-RS, WADO-RS and STOW-RS calls against one configured PACS."""

    def __init__(self, config: PacsConfig) -> None:
        self.config = config
        session = _PinnedTrust() if config.ca_file else requests.Session()
        session.verify = str(config.ca_file) if config.ca_file else True
        self.host = urlsplit(config.url).netloc
        self.client = DICOMwebClient(config.url, session=session, headers=config.header(), timeout=config.timeout_s)
        # One retry of a 503/504/429/408; more would hold a request for minutes. Callers retry UNAVAILABLE.
        self.client.set_http_retry_params(max_attempts=2, wait_exponential_multiplier=500)

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        try:
            yield
        except requests.exceptions.SSLError:
            raise Precondition(f"the PACS at {self.host} presented a TLS certificate this server does not trust; "
                               "set the PACS CA file (--pacs-ca / pacs.ca_file)") from None
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status == 404:
                raise NotFound(f"{what} not found on the PACS; check the UID") from None
            if status in (401, 403):
                raise Precondition(f"the PACS at {self.host} refused this server's credentials (HTTP {status}); "
                                   "check the PACS auth header file (--pacs-auth-header-file)") from None
            if status >= 500 or status in (408, 429):
                raise Unavailable(f"the PACS at {self.host} answered HTTP {status} for {what}; retry later") from None
            raise InputError(f"the PACS at {self.host} refused the request for {what} (HTTP {status})") from None
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError,
                requests.exceptions.ChunkedEncodingError):
            raise Unavailable(f"the PACS at {self.host} could not be reached or did not answer within "
                              f"{self.config.timeout_s:g} s ({what}); retry later") from None

    def study_exists(self, study: str) -> bool:
        with self._call(f"study {study}"):
            return bool(self.client.search_for_studies(search_filters={"StudyInstanceUID": study}, fields=["StudyInstanceUID"]))

    def series_in_study(self, study: str, modality: str) -> list[str]:
        """SeriesInstanceUIDs of the study's series of one modality (QIDO-RS)."""
        with self._call(f"the {modality} series of study {study}"):
            found = self.client.search_for_series(study, search_filters={"Modality": modality})
        return [from_json(item).SeriesInstanceUID for item in found]

    def series_metadata(self, study: str, series: str) -> list[pydicom.Dataset]:
        """Every instance's attributes, no pixel data (WADO-RS metadata)."""
        with self._call(f"series {series} of study {study}"):
            return [from_json(item) for item in self.client.retrieve_series_metadata(study, series)]

    def iter_series(self, study: str, series: str) -> Iterator[pydicom.Dataset]:
        """The series' instances as they arrive (WADO-RS, streamed)."""
        with self._call(f"series {series} of study {study}"):
            yield from self.client.iter_series(study, series)

    def store(self, datasets: Sequence[pydicom.Dataset]) -> None:
        """STOW-RS; a PACS that refuses an instance is an error."""
        with self._call("storing the report"):
            result = self.client.store_instances(list(datasets))
        failed = result.get("00081198", {}).get("Value") if hasattr(result, "get") else None
        if failed:
            raise Unavailable(f"the PACS at {self.host} refused to store {len(failed)} instance(s); retry later")
