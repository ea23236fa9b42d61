"""Where the PACS is and how to talk to it: configured on the server (CLI flags or the Serve config)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, field_validator

from radiogenomics.errors import InputError


class PacsConfig(BaseModel):
    """A DICOMweb endpoint (QIDO-RS, WADO-RS, STOW-RS under one root URL)."""

    url: str = Field(description="DICOMweb root, e.g. https://pacs.example.org/dicom-web")
    auth_header_file: Path | None = Field(None, description="file holding one HTTP header line sent with every "
                                                            "request, e.g. 'Authorization: Bearer ...'")
    ca_file: Path | None = Field(None, description="PEM bundle of the CAs trusted for an https URL (default: the system's)")
    timeout_s: float = Field(30.0, gt=0, le=3600, description="seconds to wait for the PACS to connect or send data")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
            raise ValueError(f"PACS url {url!r} must start with http:// or https:// (the DICOMweb root)")
        return url.rstrip("/")

    def header(self) -> dict[str, str]:
        """The auth header from `auth_header_file` (read on use, so a rotated secret is picked up)."""
        if self.auth_header_file is None:
            return {}
        try:
            text = Path(self.auth_header_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(f"PACS auth header file {self.auth_header_file}: {exc.strerror or exc}; "
                             "give a readable file with one 'Name: value' line") from None
        name, sep, value = text.partition(":")
        if not sep or not name.strip() or not value.strip() or "\n" in text or " " in name.strip():
            raise InputError(f"PACS auth header file {self.auth_header_file} must hold one line 'Name: value', "
                             "e.g. 'Authorization: Bearer <token>'")
        return {name.strip(): value.strip()}


def pacs_config(url: str, auth_header_file: Path | None = None, ca_file: Path | None = None,
                timeout_s: float = 30.0) -> PacsConfig:
    """A checked PacsConfig from command-line values: a bad set-up fails here in one line, before Ray starts."""
    try:
        config = PacsConfig(url=url, auth_header_file=auth_header_file, ca_file=ca_file, timeout_s=timeout_s)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InputError(f"--pacs: {error['msg'].removeprefix('Value error, ')}") from None
    config.header()
    if ca_file is not None and not Path(ca_file).is_file():
        raise InputError(f"--pacs-ca {ca_file}: no such file; give a PEM bundle of the CAs that sign the PACS certificate")
    return config.model_copy(update={"auth_header_file": Path(auth_header_file).resolve() if auth_header_file else None,
                                     "ca_file": Path(ca_file).resolve() if ca_file else None})
