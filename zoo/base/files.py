"""Files zoo reads but did not necessarily write, and files it writes: only regular files are read,
never past a bound; every write is atomic; downloads are checked against their digest before they land."""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import stat
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .errors import UserError, described, first_line

STALE_SECONDS = 3600  # a temporary file this old was left by a killed write, not one in progress


class CorruptDownload(UserError):
    """A download whose digest is not the one expected: nothing of it is kept."""


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write(path: Path, write, replace: bool = True) -> Path:
    """``write(tmp)`` to a temporary file beside ``path``, then move it in place: a crash or a full disk
    leaves the old file (or none), never a partial one. Without ``replace`` an existing ``path`` is
    never replaced, even one that appeared while writing (FileExistsError). The file gets the mode the umask gives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by a killed write, long ago
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > STALE_SECONDS:
                stale.unlink()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's (and a writer's) 0600 would hide the file from others
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path exists: no run replaces another's file
    except FileExistsError:
        raise  # the caller decides where the file goes instead
    except OSError as exc:  # a full disk, a read-only folder
        reason = exc.strerror or str(exc)
        raise UserError(f"cannot write {path}: {reason}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def folders_removed_on_failure(folder: Path):
    """Make ``folder`` (and its missing parents) for what the block writes there; if the block fails,
    remove the folders it made (left empty): a failed download leaves nothing behind."""
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for path in made:  # the deepest first; a folder something else wrote into stays
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def parse_json(text: str | bytes, what: str) -> Any:
    """JSON from a file we did not necessarily write: no NaN or Infinity, no nesting deep enough to
    exhaust the stack; one clear error otherwise."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not a number")

    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise UserError(f"{what} is nested too deeply to be zoo's") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} is not valid JSON ({first_line(exc)[:80]})") from None


def regular_file(path: Path, what: str) -> Path:
    """``path`` if it is a regular file: a FIFO or a device would block or never end when read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError:
        raise UserError(f"{what} file {path} does not exist") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{what} file {path} is not a regular file")
    return path


def read_bounded(path: Path, what: str, limit: int, as_what: str) -> bytes:
    """A regular file's bytes, refused past ``limit``: at most ``limit + 1`` bytes are read, whatever
    the file claims or becomes meanwhile. ``as_what`` names it in the refusal ("a run config")."""
    with open(regular_file(path, what), "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise UserError(f"{path} is larger than {as_what} could be ({limit >> 20} MB)")
    return data


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_md5(path: Path) -> str:
    return file_digest(path, "md5")


def download(url: str, dest: Path, md5: str = "", sha256: str = "") -> Path:
    """Fetch ``url`` to ``dest`` with a progress bar, check its MD5 or SHA-256 (or a prefix of it, as
    torch.hub names files), and move it in place atomically: a failed or corrupt download leaves no
    file and no folder it made. A ``dest`` already there with that digest (put there by hand, on a
    machine without a network) is used as it is.

    Raises :class:`UserError` when there is no network or the digest is wrong.
    """
    algorithm, expected = ("sha256", sha256.lower()) if sha256 else ("md5", md5.lower())
    if not expected:
        raise UserError(f"{url} comes with no digest to check it against; refused")
    dest = Path(dest)
    if dest.is_file() and file_digest(dest, algorithm).startswith(expected):
        return dest

    def fetch(tmp: str) -> None:
        _fetch(url, Path(tmp), dest.name)
        if not file_digest(Path(tmp), algorithm).startswith(expected):
            raise CorruptDownload(f"download of {url} is corrupt (its {algorithm.upper()} differs from {expected}); "
                                  "nothing was kept, try again")

    with folders_removed_on_failure(dest.parent):
        return atomic_write(dest, fetch)


def _fetch(url: str, into: Path, name: str) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(into, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress(*columns, transient=True) as progress:
                task = progress.add_task(f"downloading {name}", total=total)
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    progress.advance(task, len(chunk))
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        raise UserError(f"cannot download {url}: {getattr(exc, 'reason', None) or described(exc)}") from exc
