"""Checkpoints: tensors in one safetensors file, a JSON config in its header.

Loading never unpickles anything: files are read with ``safetensors`` only, and
pickles or ``torch.save`` archives are refused with a clear
:class:`~zoo.errors.CheckpointError`. Writes are atomic (temporary file in the
same directory, ``fsync``, then ``os.replace``), so an existing checkpoint is
never left half-written.

Agent state that is not a flat ``{name: tensor}`` dict (an optimizer's
``state_dict``, counters, RNG-free bookkeeping) goes through :func:`pack_state`,
which splits it into tensors and a JSON-able skeleton, and :func:`unpack_state`,
which puts it back together.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from zoo.errors import CheckpointConfigError, CheckpointError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointConfigError",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_config",
    "pack_state",
    "unpack_state",
    "CompanionWriter",
    "CompanionParts",
    "delete_checkpoint",
    "clean_stale_temporaries",
]

FORMAT = "zoo-checkpoint"
#: the newest format this zoo reads; checkpoints without companion files are still written as version 1
FORMAT_VERSION = 2
_FORMAT_VERSION_PLAIN = 1
_COMPANIONS_KEY = "companions"  # header metadata key of the companion-file manifest (format version 2)

_RESERVED_NAME = "__metadata__"  # safetensors keeps its header metadata under this key
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"

# Tags of the pack_state skeleton; every container is a one-key dict with one of these.
_T_TENSOR, _T_NDARRAY, _T_NPSCALAR = "__tensor__", "__ndarray__", "__npscalar__"
_T_DICT, _T_ODICT, _T_LIST, _T_TUPLE = "__dict__", "__odict__", "__list__", "__tuple__"


PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------- saving


def save_checkpoint(
    path: PathLike,
    tensors: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    *,
    kind: str = "zoo",
    companions: Callable[["CompanionWriter"], None] | None = None,
) -> Path:
    """Atomically write ``tensors`` and the JSON ``config`` to one safetensors file.

    Tensors are detached, moved to CPU and made contiguous; tensors sharing
    storage (tied weights) are cloned. ``config`` must be JSON-serializable
    (numpy scalars become Python scalars, tuples become lists). Parent
    directories are created. Returns the resolved path written.

    ``companions(writer)``, if given, writes the files that belong with the
    checkpoint (e.g. a tree ensemble in its library's format) under the new
    names that :meth:`CompanionWriter.part` hands out. The whole is one atomic
    unit: every part is written and hashed first, then the safetensors header,
    which records a manifest of the parts (names, sizes, sha256), replaces the
    old checkpoint in one rename; the replaced checkpoint's parts are removed
    only after that. A crash at any point leaves the old checkpoint whole; the
    temporaries it leaves are removed by the next save of that name
    (:func:`clean_stale_temporaries`).
    """
    if not isinstance(kind, str) or not kind:
        raise CheckpointConfigError(f"checkpoint kind must be a non-empty string, got {kind!r}")
    path = Path(os.fspath(path)).expanduser()
    if path.is_dir():
        raise CheckpointError(f"cannot write checkpoint to {str(path)!r}: it is a directory")
    # Everything that can fail on bad input is done before touching the disk.
    config_json = json.dumps(_jsonable_config(config), ensure_ascii=False, separators=(",", ":"))
    prepared = _prepare_tensors(tensors)
    metadata = {
        "format": FORMAT,
        "format_version": str(_FORMAT_VERSION_PLAIN),
        "kind": kind,
        "zoo_version": _zoo_version(),
        "config": config_json,
    }

    path.parent.mkdir(parents=True, exist_ok=True)
    path = path.parent.resolve() / path.name
    mode = _file_mode(path)
    token = f"{os.getpid()}-{secrets.token_hex(8)}"
    with _active_save(token):
        clean_stale_temporaries(path)
        replaced = _committed_part_names(path)
        writer = CompanionWriter(path, token)
        tmp_name = str(path.parent / f".{path.name}.{token}.tmp")
        try:
            if companions is not None:
                companions(writer)
                manifest = writer._seal()
                if manifest:
                    metadata[_COMPANIONS_KEY] = json.dumps(manifest, separators=(",", ":"))
                    metadata["format_version"] = str(FORMAT_VERSION)
            os.close(os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            try:
                save_file(prepared, tmp_name, metadata=metadata)
            except Exception as exc:  # e.g. a dtype safetensors cannot store
                raise CheckpointError(f"could not write checkpoint {str(path)!r}: {exc}") from exc
            with open(tmp_name, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp_name, mode)
            _fsync_dir(path.parent)  # the parts' names are durable before the header that lists them
            os.replace(tmp_name, path)  # the commit
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp_name)
            writer._discard()
            raise
        _fsync_dir(path.parent)
        keep = set(writer._files())
        for name in replaced or []:
            if name not in keep:
                with suppress(OSError):
                    os.unlink(path.parent / name)
        for legacy in writer._replaced:
            with suppress(OSError):
                os.unlink(legacy)
    return path


# --------------------------------------------------------------------------- companion files

_LABEL_RE = re.compile(r"[A-Za-z0-9_]+")
#: a part's base name: ``<checkpoint name>.<label>-<pid>-<16 hex>`` (the library writing it appends suffixes)
_PART_SHAPE = re.compile(r".+\.[A-Za-z0-9_]+-\d+-[0-9a-f]{16}.*", re.DOTALL)
#: temporaries of the previous format (``tempfile.mkstemp``, no pid): removed once this old
_LEGACY_TMP_AGE_S = 600.0
_ACTIVE_TOKENS: set[str] = set()
_ACTIVE_LOCK = threading.Lock()


@contextmanager
def _active_save(token: str) -> Iterator[None]:
    with _ACTIVE_LOCK:
        _ACTIVE_TOKENS.add(token)
    try:
        yield
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE_TOKENS.discard(token)


class CompanionWriter:
    """Hands out the names under which a save writes a checkpoint's companion files.

    ``part(label, description)`` returns a base path in the checkpoint's folder
    that is new to this save; every file whose name starts with it belongs to
    the part (a library may append its own suffixes). The files are hashed into
    the checkpoint's manifest once the callback returns.
    """

    def __init__(self, path: Path, token: str):
        self.path = path
        self._token = token
        self._parts: dict[str, tuple[str, Path]] = {}
        self._replaced: list[Path] = []
        self._manifest: dict[str, Any] = {}

    def part(self, label: str, description: str) -> Path:
        if not isinstance(label, str) or not _LABEL_RE.fullmatch(label) or label in self._parts:
            raise CheckpointConfigError(f"companion label must be a new word of [A-Za-z0-9_], got {label!r}")
        base = self.path.with_name(f"{self.path.name}.{label}-{self._token}")
        self._parts[label] = (str(description), base)
        return base

    def replaces(self, *files: Path) -> None:
        """Exact paths of the companions of a checkpoint of the previous (manifest-less) format at this path,
        removed once the new checkpoint is committed."""
        for f in files:
            f = Path(f)
            if f.parent.resolve() == self.path.parent and f.name.startswith(self.path.name + "."):
                self._replaced.append(self.path.parent / f.name)

    def _part_files(self, base: Path) -> list[str]:
        return sorted(n for n in os.listdir(base.parent) if n.startswith(base.name))

    def _seal(self) -> dict[str, Any]:
        manifest: dict[str, Any] = {}
        for label, (description, base) in self._parts.items():
            names = self._part_files(base)
            if not names:
                raise CheckpointError(f"could not write checkpoint {str(self.path)!r}: {description} wrote no file "
                                      f"at {str(base)!r}")
            files = {}
            for name in names:
                f = base.parent / name
                if f.is_symlink() or not f.is_file():
                    raise CheckpointError(f"could not write checkpoint {str(self.path)!r}: {description} part "
                                          f"{name!r} is not a regular file")
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
                files[name] = {"size": f.stat().st_size, "sha256": _sha256(f)}
            manifest[label] = {"description": description, "base": base.name, "files": files}
        self._manifest = manifest
        return manifest

    def _files(self) -> list[str]:
        return [n for part in self._manifest.values() for n in part["files"]]

    def _discard(self) -> None:
        for _description, base in self._parts.values():
            with suppress(OSError):
                for name in self._part_files(base):
                    with suppress(OSError):
                        os.unlink(base.parent / name)


class CompanionParts:
    """A loaded checkpoint's companion files, checked against its manifest.

    ``base(label)`` is the base path of a part (what its library loads), or
    None for a checkpoint of the previous format, which has no manifest.
    """

    def __init__(self, path: Path, manifest: dict[str, Any] | None):
        self.path = path
        self.manifest = manifest

    @property
    def has_manifest(self) -> bool:
        return self.manifest is not None

    def base(self, label: str) -> Path | None:
        if self.manifest is None:
            return None
        if label not in self.manifest:
            raise CheckpointError(f"checkpoint {str(self.path)!r} has no {label!r} part in its manifest (it lists "
                                  f"{sorted(self.manifest) or 'none'}); it was saved by another kind of agent")
        return self.path.parent / self.manifest[label]["base"]


def check_companion_file(path: Path, file: Path, description: str) -> None:
    """Refuse a companion ``file`` of checkpoint ``path`` that is missing, not a regular file, or a symlink
    leading out of the checkpoint's folder."""
    folder = path.parent.resolve()
    where = repr(str(path))
    if file.is_symlink():
        target = file.resolve()
        if folder not in target.parents:
            raise CheckpointError(
                f"checkpoint {where}: {description} file {file.name!r} is a symlink to {str(target)!r}, outside the "
                f"checkpoint's folder {str(folder)!r}; a checkpoint loads only files it holds: copy the file in "
                "place of the link if you trust it")
    if not file.exists():
        raise CheckpointError(f"checkpoint {where}: {description} saved beside it is missing ({file.name}); restore "
                              "the file from where the checkpoint came from, or save the agent again")
    if not file.is_file():
        raise CheckpointError(f"checkpoint {where}: {description} file {file.name!r} is not a regular file")


def _verify_manifest(path: Path, raw: str | None, where: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {where} is corrupt: its companion manifest is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise CheckpointError(f"checkpoint {where} is corrupt: its companion manifest is not a JSON object")
    for label, part in manifest.items():
        bad = f"checkpoint {where} is corrupt: companion part {label!r} of its manifest"
        if not isinstance(part, dict) or not isinstance(part.get("base"), str) or \
                not isinstance(part.get("files"), dict) or not part["files"]:
            raise CheckpointError(f"{bad} is malformed")
        description = part.get("description")
        description = description if isinstance(description, str) else f"companion part {label!r}"
        for name in [part["base"], *part["files"]]:
            if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
                    or "\0" in name or os.sep in name:
                raise CheckpointError(f"{bad} names {name!r}, which is not a file in the checkpoint's folder; a "
                                      "checkpoint loads only files it holds")
        for name, entry in part["files"].items():
            if not name.startswith(part["base"]):
                raise CheckpointError(f"{bad} lists {name!r}, which is not under its base {part['base']!r}")
            if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or \
                    type(entry.get("size")) is not int:
                raise CheckpointError(f"{bad} has a malformed entry for {name!r}")
            file = path.parent / name
            check_companion_file(path, file, description)
            size = file.stat().st_size
            if size != entry["size"] or _sha256(file) != entry["sha256"]:
                raise CheckpointError(
                    f"checkpoint {where}: {description} file {name!r} does not match the checkpoint's manifest "
                    f"({size} bytes, expected {entry['size']}; or a different sha256): it was replaced or modified "
                    "after the checkpoint was saved. Restore the file that was saved with it, or save the agent again")
    return manifest


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _committed_part_names(path: Path) -> list[str] | None:
    """The companion file names the checkpoint now at ``path`` lists (only names shaped like parts); [] when
    there is none, None when its header cannot be read (then nothing is cleaned up as unreferenced)."""
    if not path.exists():
        return []
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
        manifest = json.loads(meta.get(_COMPANIONS_KEY, "{}"))
        names = [n for part in manifest.values() for n in part["files"]]
    except Exception:
        return None
    return [n for n in names if isinstance(n, str) and "/" not in n and os.sep not in n and _PART_SHAPE.fullmatch(n)]


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    with suppress(OSError, IndexError):  # a zombie (killed, not yet reaped) is not alive
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] == "Z":
            return False
    return True


def _stale(pid: int, token: str) -> bool:
    if pid == os.getpid():
        with _ACTIVE_LOCK:
            return token not in _ACTIVE_TOKENS
    return not _pid_alive(pid)


def clean_stale_temporaries(path: PathLike) -> list[str]:
    """Remove what interrupted saves of the checkpoint ``path`` left in its folder; returns the names removed.

    Only files of zoo's own naming for that exact checkpoint name are touched
    (names are compared literally, never globbed): header temporaries
    ``.<name>.<pid>-<hex>.tmp`` (which safetensors wrote into) and companion
    parts ``<name>.<label>-<pid>-<hex>...`` that the committed checkpoint does
    not list, written by a process that is gone (or by this one, outside a save
    in progress), and temporaries of the previous naming
    (``.<name>.<8 chars>.tmp``) not modified for ten minutes.
    """
    path = Path(os.fspath(path)).expanduser()
    folder, name = path.parent, path.name
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    esc = re.escape(name)
    header_tmp = re.compile(rf"\.{esc}\.(\d+)-([0-9a-f]{{16}})\.tmp", re.DOTALL)
    legacy_tmp = re.compile(rf"\.{esc}\.[a-z0-9_]{{8}}\.tmp", re.DOTALL)
    part = re.compile(rf"{esc}\.[A-Za-z0-9_]+-(\d+)-([0-9a-f]{{16}}).*", re.DOTALL)
    referenced = None
    removed = []
    for entry in entries:
        target = folder / entry
        m = header_tmp.fullmatch(entry)
        if m:
            stale = _stale(int(m.group(1)), m.group(2))
        elif legacy_tmp.fullmatch(entry):
            try:
                stale = time.time() - target.lstat().st_mtime > _LEGACY_TMP_AGE_S
            except OSError:
                continue
        else:
            m = part.fullmatch(entry)
            if not m or not _stale(int(m.group(1)), m.group(2)):
                continue
            if referenced is None:
                referenced = _committed_part_names(path)
            stale = referenced is not None and entry not in referenced
        if stale:
            with suppress(OSError):
                if not target.is_dir() or target.is_symlink():
                    os.unlink(target)
                    removed.append(entry)
    return removed


def delete_checkpoint(path: PathLike) -> None:
    """Remove the checkpoint at ``path`` and the companion files its manifest lists (nothing else)."""
    path = Path(os.fspath(path)).expanduser()
    names = _committed_part_names(path) or []
    with suppress(FileNotFoundError):
        os.unlink(path)
    for name in names:
        with suppress(OSError):
            os.unlink(path.parent / name)
    clean_stale_temporaries(path)


def _prepare_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Validate names and values; return CPU, contiguous tensors that share no storage."""
    if not isinstance(tensors, Mapping):
        raise CheckpointConfigError(
            f"tensors must be a mapping of str to torch.Tensor, got {type(tensors).__name__}"
        )
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise CheckpointConfigError(
                f"tensor names must be strings, got {name!r} ({type(name).__name__})"
            )
        if name == _RESERVED_NAME:
            raise CheckpointConfigError(f"tensor name {name!r} is reserved by safetensors")
        if not isinstance(value, torch.Tensor):
            raise CheckpointConfigError(
                f"tensors[{name!r}] is a {type(value).__name__}, not a torch.Tensor"
            )
        if value.layout != torch.strided:
            raise CheckpointConfigError(
                f"tensors[{name!r}] has layout {value.layout}; only dense tensors can be saved "
                "(convert with .to_dense())"
            )
        t = value.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen or (ptr == 0 and t.numel() == 0):
            t = t.clone()
            ptr = t.untyped_storage().data_ptr()
        if ptr:
            seen.add(ptr)
        out[name] = t
    return out


def _jsonable_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of ``config``; raises naming the key path of the first bad value."""
    if not isinstance(config, Mapping):
        raise CheckpointConfigError(f"config must be a dict, got {type(config).__name__}")
    return _to_json(config, "config", set())


def _to_json(obj: Any, where: str, active: set[int]) -> Any:
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, np.generic):
        if isinstance(obj, (np.bool_, np.integer, np.floating, np.str_)):
            return obj.item()
        raise CheckpointConfigError(
            f"{where} is a numpy {obj.dtype} scalar, which is not JSON-serializable"
        )
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):  # IntEnum and other int subclasses
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):  # str enums and other str subclasses
        return str.__str__(obj)
    if isinstance(obj, (Mapping, list, tuple)):
        if id(obj) in active:
            raise CheckpointConfigError(f"{where} contains itself (circular reference)")
        active.add(id(obj))
        try:
            if isinstance(obj, Mapping):
                out: dict[str, Any] = {}
                for key, value in obj.items():
                    if not isinstance(key, str):
                        raise CheckpointConfigError(
                            f"{where} has key {key!r} of type {type(key).__name__}; "
                            "config keys must be strings (JSON would silently turn them into strings)"
                        )
                    out[str.__str__(key)] = _to_json(value, f"{where}[{key!r}]", active)
                return out
            return [_to_json(v, f"{where}[{i}]", active) for i, v in enumerate(obj)]
        finally:
            active.discard(id(obj))
    hint = ""
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        hint = " (store arrays as tensors, or convert small ones with .tolist())"
    elif isinstance(obj, os.PathLike):
        hint = " (convert paths with str())"
    raise CheckpointConfigError(
        f"{where} is of type {type(obj).__module__}.{type(obj).__qualname__}, "
        f"which is not JSON-serializable{hint}"
    )


def _zoo_version() -> str:
    import zoo

    return str(getattr(zoo, "__version__", "unknown"))


def _file_mode(path: Path) -> int:
    """Keep the mode of a checkpoint being replaced; otherwise honour the umask."""
    with suppress(OSError):
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (best effort; not every platform allows it)."""
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- loading


def load_checkpoint(
    path: PathLike,
    *,
    device: str | torch.device = "cpu",
    kind: str | None = None,
    parts: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | tuple[dict[str, torch.Tensor], dict[str, Any], CompanionParts]:
    """Load ``(tensors, config)`` from a zoo checkpoint, without unpickling anything.

    With ``kind`` given, a checkpoint of another kind is refused. Raises
    :class:`~zoo.errors.CheckpointError` for a missing, corrupt, pickled or
    foreign file. With ``parts=True``, returns ``(tensors, config, parts)``
    where ``parts`` (:class:`CompanionParts`) has every companion file checked
    against the checkpoint's manifest: a missing, replaced (sha256 mismatch) or
    out-of-folder symlinked part is a CheckpointError naming it.
    """
    device = torch.device(device)
    p = Path(os.fspath(path)).expanduser()
    with _open_zoo(path, kind) as (handle, config, where, meta):
        companions = _verify_manifest(p, meta.get(_COMPANIONS_KEY), where) if parts else None
        try:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        except Exception as exc:
            raise CheckpointError(f"checkpoint {where} is corrupt: {exc}") from exc
    if device.type != "cpu":
        tensors = {name: t.to(device) for name, t in tensors.items()}
    if parts:
        return tensors, config, CompanionParts(p, companions)
    return tensors, config


def read_checkpoint_config(path: PathLike, *, kind: str | None = None) -> dict[str, Any]:
    """The config of a zoo checkpoint, read from its header without loading tensors."""
    with _open_zoo(path, kind) as (_, config, _where, _meta):
        return config


@contextmanager
def _open_zoo(path: PathLike, kind: str | None) -> Iterator[tuple[Any, dict[str, Any], str, dict[str, str]]]:
    """Open ``path`` with safetensors and validate its zoo metadata."""
    p = Path(os.fspath(path)).expanduser()
    where = repr(str(p))
    if not p.exists():
        raise CheckpointError(f"checkpoint {where} does not exist")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {where} is not a regular file")
    try:
        handle = safe_open(str(p), framework="pt", device="cpu")
    except Exception as exc:
        raise _unreadable(p, where, exc) from exc
    with handle:
        meta = handle.metadata() or {}
        config = _check_metadata(meta, where, kind)
        yield handle, config, where, meta


def _unreadable(path: Path, where: str, exc: BaseException) -> CheckpointError:
    """Explain why safetensors could not parse ``path``, recognising pickles and torch.save."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as err:
        return CheckpointError(f"checkpoint {where} cannot be read: {err}")
    never = (
        "zoo checkpoints are safetensors files and zoo never unpickles, because unpickling "
        "can run arbitrary code. If you trust the file, load it yourself and re-save it "
        "with zoo.checkpoint.save_checkpoint"
    )
    if head.startswith(_ZIP_MAGIC):
        return CheckpointError(
            f"checkpoint {where} looks like a torch.save file (a zip archive holding a pickle); "
            + never
        )
    if head[:1] == _PICKLE_PROTO and len(head) > 1 and 2 <= head[1] <= 5:
        return CheckpointError(
            f"checkpoint {where} looks like a pickle file (pickle protocol {head[1]}, as written by "
            "pickle or a legacy torch.save); " + never
        )
    if not head:
        return CheckpointError(f"checkpoint {where} is corrupt: the file is empty")
    return CheckpointError(
        f"checkpoint {where} is corrupt or truncated (not a readable safetensors file): {exc}"
    )


def _check_metadata(meta: dict[str, str] | None, where: str, kind: str | None) -> dict[str, Any]:
    """Validate the zoo header fields; return the decoded config."""
    if not meta or meta.get("format") != FORMAT:
        return _raise(
            f"checkpoint {where} is a foreign safetensors file: it has no zoo checkpoint "
            f"metadata (format={(meta or {}).get('format')!r}, expected {FORMAT!r}); "
            "it was not written by zoo.checkpoint.save_checkpoint"
        )
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        return _raise(
            f"checkpoint {where} is corrupt: bad format_version {meta.get('format_version')!r}"
        )
    if version > FORMAT_VERSION:
        return _raise(
            f"checkpoint {where} has format version {version}, newer than this zoo "
            f"(supports up to {FORMAT_VERSION}, zoo {_zoo_version()}; it was written by zoo "
            f"{meta.get('zoo_version', '?')}); upgrade zoo to load it"
        )
    found = meta.get("kind")
    if kind is not None and found != kind:
        return _raise(f"checkpoint {where} is of kind {found!r}, but kind {kind!r} was expected")
    try:
        config = json.loads(meta["config"])
    except (KeyError, ValueError) as exc:
        return _raise(f"checkpoint {where} is corrupt: its config is missing or not valid JSON ({exc})")
    if not isinstance(config, dict):
        return _raise(f"checkpoint {where} is corrupt: its config is not a JSON object")
    return config


def _raise(message: str) -> Any:
    raise CheckpointError(message)


# --------------------------------------------------------------------------- nested state


def pack_state(tree: Any, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a nested state into ``({key: tensor}, skeleton)``.

    ``tree`` may nest dicts (str or int keys), lists, tuples, tensors, numpy
    arrays and scalars, Python scalars, None and strings. Tensors are keyed
    ``prefix/<path>`` ('/'-joined) and detached but not copied; the skeleton is
    JSON-able and records container and key types, so that
    :func:`unpack_state` rebuilds ``tree`` exactly.
    """
    if not isinstance(prefix, str):
        raise CheckpointConfigError(f"prefix must be a string, got {type(prefix).__name__}")
    tensors: dict[str, torch.Tensor] = {}
    active: set[int] = set()

    def key_for(path: list[str]) -> str:
        base = "/".join([prefix, *path] if prefix else path) or "_"
        key, n = base, 1
        while key in tensors or key == _RESERVED_NAME:
            key, n = f"{base}#{n}", n + 1
        return key

    def enc(node: Any, path: list[str]) -> Any:
        where = "state" + "".join(f"[{p!r}]" for p in path)
        if node is None or type(node) in (bool, int, float, str):
            return node
        if isinstance(node, torch.Tensor):
            key = key_for(path)
            tensors[key] = node.detach()
            return {_T_TENSOR: key}
        if isinstance(node, np.ndarray):
            if node.dtype == object:
                raise CheckpointConfigError(f"{where} is a numpy array of dtype object")
            key = key_for(path)
            tensors[key] = torch.from_numpy(np.ascontiguousarray(node).copy())
            return {_T_NDARRAY: key}
        if isinstance(node, np.generic):
            if not isinstance(node, (np.bool_, np.integer, np.floating)):
                raise CheckpointConfigError(f"{where} is a numpy {node.dtype} scalar")
            return {_T_NPSCALAR: [node.dtype.str, node.item()]}
        if isinstance(node, (bool, int, float, str)):  # subclasses such as IntEnum
            return _to_json(node, where, set())
        if isinstance(node, (Mapping, list, tuple)):
            if id(node) in active:
                raise CheckpointConfigError(f"{where} contains itself (circular reference)")
            active.add(id(node))
            try:
                if isinstance(node, Mapping):
                    items = []
                    for k, v in node.items():
                        if not isinstance(k, (str, int)):
                            raise CheckpointConfigError(
                                f"{where} has key {k!r} of type {type(k).__name__}; "
                                "only str and int keys are supported"
                            )
                        k = str.__str__(k) if isinstance(k, str) else int(k)
                        items.append([k, enc(v, [*path, str(k)])])
                    return {_T_ODICT if isinstance(node, OrderedDict) else _T_DICT: items}
                tag = _T_TUPLE if isinstance(node, tuple) else _T_LIST
                return {tag: [enc(v, [*path, str(i)]) for i, v in enumerate(node)]}
            finally:
                active.discard(id(node))
        raise CheckpointConfigError(
            f"{where} is of type {type(node).__module__}.{type(node).__qualname__}, "
            "which pack_state cannot store"
        )

    return tensors, enc(tree, [])


def unpack_state(tensors: Mapping[str, torch.Tensor], skeleton: Any) -> Any:
    """Rebuild the tree that :func:`pack_state` split into ``tensors`` and ``skeleton``."""

    def dec(node: Any, where: str) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict) or len(node) != 1:
            raise CheckpointError(f"malformed state skeleton at {where}: {node!r:.80}")
        (tag, body), = node.items()
        if tag in (_T_TENSOR, _T_NDARRAY):
            if body not in tensors:
                raise CheckpointError(
                    f"tensor {body!r} needed by the state skeleton at {where} is missing"
                )
            t = tensors[body]
            return t.detach().cpu().numpy() if tag == _T_NDARRAY else t
        if tag == _T_NPSCALAR:
            dtype, value = body
            return np.dtype(dtype).type(value)
        if tag in (_T_DICT, _T_ODICT):
            out = OrderedDict() if tag == _T_ODICT else {}
            for k, v in body:
                out[k] = dec(v, f"{where}[{k!r}]")
            return out
        if tag in (_T_LIST, _T_TUPLE):
            items = [dec(v, f"{where}[{i}]") for i, v in enumerate(body)]
            return tuple(items) if tag == _T_TUPLE else items
        raise CheckpointError(f"malformed state skeleton at {where}: unknown tag {tag!r}")

    try:
        return dec(skeleton, "state")
    except (TypeError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"malformed state skeleton: {exc}") from exc

