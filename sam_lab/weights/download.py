"""Download Meta's SAM checkpoints: resumable, retried, and verified before use.

The table of official files and the integrity rules are described in
:mod:`sam_lab.weights.official`. In short, a file is checked against the caller's SHA-256, else the table's SHA-256, else the table's full MD5, else
the MD5 prefix in Meta's file name; SHA-256 and MD5 come from one pass over the file, and the
SHA-256 of each verified file is logged at INFO so that it can be pinned with ``sha256=``.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple

from tqdm.auto import tqdm

from .io import CheckpointError, PathLike, move_into_place
from .official import CheckpointInfo, checkpoint_info

log = logging.getLogger(__name__)
_FULL_LENGTH = {"sha256": 64, "md5": 32}  # hex digits of a whole digest


class DownloadError(OSError):
    """A download that failed on the network side; the message names the URL."""


def _hashes(path: Path) -> Dict[str, str]:
    """{"sha256": ..., "md5": ...} hex digests of the file, read once."""
    digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            for digest in digests.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def _expected_hash(info: CheckpointInfo, sha256: Optional[str]) -> Tuple[str, str]:
    """(algorithm, hex digest or prefix) that a download of `info` must match."""
    if sha256:
        return "sha256", sha256.lower()
    if info.sha256:
        return "sha256", info.sha256.lower()
    if info.md5:
        return "md5", info.md5.lower()
    return "md5", info.hash_prefix.lower()  # Meta's names carry the MD5's first six digits


def _fetch(url: str, part: Path, progress: bool, chunk_size: int) -> None:
    """Download `url` into `part`, asking only for the bytes after those `part` already holds."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing after the bytes we have: `part` is complete
            return
        raise DownloadError(f"{url}: the server answered HTTP {error.code} {error.reason}") from error
    except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
        raise DownloadError(f"{url}: could not connect: {getattr(error, 'reason', error)}") from error
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored Range and sends the whole file: start over
        elif have and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            raise DownloadError(f"{url}: the server resumed at the wrong offset")
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else None
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=part.name[: -len(".part")], disable=not progress)
        with open(part, "ab" if have else "wb") as file, bar:
            try:
                while chunk := response.read(chunk_size):
                    file.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException):
                pass  # connection lost; reported just below
            received = file.tell()
    if total is not None and received < total:
        raise DownloadError(
            f"{url}: connection lost after {received} of {total} bytes; the partial download "
            f"is kept in {part} and the next call resumes it"
        )


def download_checkpoint(
    variant: str,
    dest: PathLike,
    url: Optional[str] = None,
    sha256: Optional[str] = None,
    progress: bool = True,
    chunk_size: int = 1 << 20,
    retries: int = 3,
) -> Path:
    """Download the official checkpoint of `variant` and return its path.

    dest: a folder (the official file name is used; a trailing "/" makes a new one) or a file
    path. url: a mirror instead of Meta's URL. sha256: the expected SHA-256; default: the one in
    CHECKPOINTS, else the file's full MD5 from CHECKPOINTS, else the six-digit MD5 prefix in the
    official file name. The verified file's SHA-256 is logged (logger ``sam_lab.weights.download``, INFO)
    for pinning. Bytes arrive in ``<dest>.part``, which a later call (or one of `retries`
    immediate retries) resumes with an HTTP Range request; the file is renamed into place only
    once verified. A file already at `dest` that verifies is returned without downloading."""
    info = checkpoint_info(variant)
    url = url or info.url
    is_folder = os.fspath(dest).endswith(("/", os.sep))
    dest = Path(dest).expanduser()
    if is_folder or dest.is_dir():
        dest = dest / info.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    algorithm, expected = _expected_hash(info, sha256)
    what = algorithm if len(expected) == _FULL_LENGTH[algorithm] else f"{algorithm} prefix"

    if dest.is_file():
        hashes = _hashes(dest)
        if hashes[algorithm].startswith(expected):
            log.info("%s: already here, %s verified; sha256 %s", dest, what, hashes["sha256"])
            return dest
        warnings.warn(f"{dest}: its {algorithm} does not match {expected}; removing and downloading again")
        dest.unlink()

    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, progress, chunk_size)
            break
        except DownloadError as error:
            # an HTTP status (404, 403, ...) is the server's answer; other failures may pass
            if attempt == retries or isinstance(error.__cause__, urllib.error.HTTPError):
                raise
            time.sleep(attempt)  # 0 s, then 1 s, 2 s, ...

    hashes = _hashes(part)
    if not hashes[algorithm].startswith(expected):
        part.unlink()  # never leave a bad file where it could be mistaken for a good one
        raise CheckpointError(
            f"{dest}: downloaded from {url}, but its {algorithm} is {hashes[algorithm]}; expected "
            f"{what} {expected}. The file was removed; download it again, or check the URL"
        )
    move_into_place(part, dest)
    log.info("%s: downloaded from %s, %s verified; sha256 %s (pass sha256= to pin it)",
             dest, url, what, hashes["sha256"])
    return dest
