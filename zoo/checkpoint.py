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

import json
import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
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
]

FORMAT = "zoo-checkpoint"
FORMAT_VERSION = 1

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
) -> Path:
    """Atomically write ``tensors`` and the JSON ``config`` to one safetensors file.

    Tensors are detached, moved to CPU and made contiguous; tensors sharing
    storage (tied weights) are cloned. ``config`` must be JSON-serializable
    (numpy scalars become Python scalars, tuples become lists). Parent
    directories are created. Returns the resolved path written.
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
        "format_version": str(FORMAT_VERSION),
        "kind": kind,
        "zoo_version": _zoo_version(),
        "config": config_json,
    }

    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _file_mode(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.close(fd)
        try:
            save_file(prepared, tmp_name, metadata=metadata)
        except Exception as exc:  # e.g. a dtype safetensors cannot store
            raise CheckpointError(f"could not write checkpoint {str(path)!r}: {exc}") from exc
        with open(tmp_name, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
    return path.resolve()


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
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``(tensors, config)`` from a zoo checkpoint, without unpickling anything.

    With ``kind`` given, a checkpoint of another kind is refused. Raises
    :class:`~zoo.errors.CheckpointError` for a missing, corrupt, pickled or
    foreign file.
    """
    device = torch.device(device)
    with _open_zoo(path, kind) as (handle, config, where):
        try:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        except Exception as exc:
            raise CheckpointError(f"checkpoint {where} is corrupt: {exc}") from exc
    if device.type != "cpu":
        tensors = {name: t.to(device) for name, t in tensors.items()}
    return tensors, config


def read_checkpoint_config(path: PathLike, *, kind: str | None = None) -> dict[str, Any]:
    """The config of a zoo checkpoint, read from its header without loading tensors."""
    with _open_zoo(path, kind) as (_, config, _where):
        return config


@contextmanager
def _open_zoo(path: PathLike, kind: str | None) -> Iterator[tuple[Any, dict[str, Any], str]]:
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
        config = _check_metadata(handle.metadata(), where, kind)
        yield handle, config, where


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

