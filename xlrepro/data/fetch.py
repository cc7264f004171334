"""Downloading one URL into a file: retries, resume with HTTP Range, sha256, atomic rename.

``download(url, dest)`` writes ``dest.part`` beside the destination and renames it into place
only after the whole body arrived and, when ``sha256`` is given, its hash matches. An
interrupted transfer (dropped connection, killed process) leaves the ``.part`` file, and the next
attempt asks for the rest with ``Range: bytes=N-``; a server that answers 200 instead of 206
sends the whole file again. A hash mismatch deletes the partial file and raises, naming the
URL, the destination and both hashes. urllib (standard library) does the HTTP.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from xlrepro.errors import DataFormatError, XlreproError

CHUNK = 1 << 20


class DownloadError(XlreproError):
    pass


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _progress_on() -> bool:
    return os.environ.get("XLREPRO_PROGRESS", "1") != "0" and sys.stderr.isatty()


def _bar(total: int | None, initial: int, name: str):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        desc=name,
        file=sys.stderr,
        disable=not _progress_on(),
        leave=False,
    )


def _get(url: str, part: Path, name: str, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "xlrepro-data-prepare", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the partial file is complete
            return
        raise
    with resp:
        if have and resp.status != 206:
            have = 0  # the server ignored the Range header: start over
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        with open(part, "ab" if have else "wb") as f, _bar(total, have, name) as bar:
            got = 0
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                f.write(block)
                got += len(block)
                bar.update(len(block))
        if length and length.isdigit() and got < int(length):
            raise http.client.IncompleteRead(b"", int(length) - got)


def download(
    url: str, dest: Path, sha256: str | None = None, retries: int = 5, timeout: float = 60.0, backoff: float = 1.0
) -> tuple[str, int]:
    """Fetch ``url`` into ``dest`` (atomically); returns (sha256, size)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    restarted = not part.exists()  # only a resumed partial file may be stale: retry that one from scratch
    last = None
    attempt = 0
    while attempt < retries:
        attempt += 1
        try:
            _get(url, part, dest.name, timeout)
        except urllib.error.HTTPError as e:
            if 400 <= e.code < 500 and e.code not in (408, 429):
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason} (for {dest})") from None
            last = f"HTTP {e.code} {e.reason}"
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
            last = f"{type(e).__name__}: {e}"
        else:
            digest = sha256_of(part)
            if sha256 and digest != sha256.lower():
                part.unlink()
                if not restarted:  # a stale partial file (another version of the file): one clean retry
                    restarted, attempt = True, attempt - 1
                    continue
                raise DataFormatError(
                    dest,
                    f"sha256 mismatch for {url}: expected {sha256}, got {digest}; "
                    "the download was deleted (nothing written)",
                    field="sha256",
                )
            size = part.stat().st_size
            os.replace(part, dest)
            return digest, size
        time.sleep(backoff * attempt)
    raise DownloadError(
        f"{url}: failed after {retries} attempts ({last}); the partial download "
        f"{part} is kept and the next run resumes it"
    )
