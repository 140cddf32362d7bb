"""Import a Dopamine JAX DQN checkpoint and its replay files as a frugalrl teacher.

The public reincarnation teachers (``gs://rl_checkpoints/DQN_400/<Game>/<run>/``) are Dopamine
runs: ``checkpoints/ckpt.N`` is a pickled dict (``online_params``, ``target_params``, ``state``,
``training_steps``, optionally ``optimizer_state``, and the runner's ``current_iteration`` and
``logs``), next to ``sentinel_checkpoint_complete.N``; the replay is one gzipped ``.npy`` file per
array (``$store$_observation_ckpt.N.gz`` single 84x84 frames, ``$store$_action``, ``$store$_reward``,
``$store$_terminal``, ``add_count``, ``invalid_range``).

A pickle can run any code while it loads, so ``ckpt.N`` is read by an unpickler that resolves only
the classes such a file holds: numpy arrays, dtypes and scalars, jax arrays (rebuilt as numpy),
flax's FrozenDict and optax's state tuples (both read as plain containers). Anything else is
refused before it is called. The replay files are read with ``allow_pickle=False``.

The replay files are never read whole: each ``.npy`` header is parsed from the gzip stream and
checked first (plain numeric dtype; shapes that form Dopamine's buffer; a size within
``MAX_REPLAY_ARRAY_BYTES`` and the free disk space), then the array is streamed, ``COPY_CHUNK_BYTES``
at a time, into its own ``.npy`` file, and must end exactly where its header says. A 1M-frame Atari
replay (6.6 GiB of frames) is imported in a few tens of MB of memory.

``import_dopamine_teacher`` writes a *teacher directory*: ``teacher.json`` (its network config, the
env it played, where it came from), ``params.npz`` (the Q-network in frugalrl's Nature-CNN layout:
SAME padding and inputs scaled by 1/255, as Dopamine's network) and ``replay/`` (one ``.npy`` per
replay array as Dopamine kept them, read back memory-mapped by ``load_teacher_replay``). It is
written in a hidden folder next to it and renamed into place when complete. Files of the Dopamine
directory, or of a teacher directory being read, that are symbolic links leading out of it are refused.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import pickle
import secrets
import shutil
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from tokenize import TokenError
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from frugalrl.errors import ConfigError, DopamineFormatError
from frugalrl.runs.rundir import human_bytes

DOPAMINE_NETWORK = {
    "name": "nature_cnn",
    "hidden": [512],
    "activation": "relu",
    "init": "lecun_normal",
    "conv_init": "lecun_normal",
    "conv_padding": "same",
    "input_scale": 1 / 255,
}
REPLAY_STORE = ("observation", "action", "reward", "terminal")
REPLAY_EXTRA = ("add_count", "invalid_range")
# The most bytes one replay array's .npy header may claim: 1M Atari frames of 84x84 are 6.6 GiB. A header
# claiming more (or more than the disk holds where the teacher is written) is refused before reading on.
MAX_REPLAY_ARRAY_BYTES = 64 << 30
COPY_CHUNK_BYTES = 4 << 20  # bytes streamed at a time from a gzipped replay file into the teacher directory
# Files and folders a teacher is read from (an imported teacher's, a frugalrl run's); none may link outside.
TEACHER_FILES = ("teacher.json", "params.npz", "replay", "config.json", "checkpoints")


class _PlainDict(dict):
    """Stand-in for flax's FrozenDict: builds from a dict, or from the state an older flax pickled."""

    def __setstate__(self, state: Any) -> None:
        self.update(state.get("_dict", state) if isinstance(state, dict) else {})


class _StateTuple(tuple):
    """Stand-in for optax's NamedTuple states (pickled as ``cls.__new__(cls, *fields)``)."""

    def __new__(cls, *fields: Any) -> _StateTuple:
        return super().__new__(cls, fields)


# numpy's own unpickling runs C code on the pickled bytes (dtype flags, object pointers), so none of
# it is called: stand-ins record what the pickle describes, and arrays are built afterwards with
# np.frombuffer from plain bytes of a whitelisted numeric dtype.
NUMERIC_DTYPES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"})


class _DType:
    """What a pickled ``numpy.dtype(code, align, copy)`` names; its state gives the byte order."""

    def __init__(self, code: Any = None, *args: Any) -> None:
        self.code, self.byteorder = code, "="

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "=", "|"):
            self.byteorder = state[1]

    def resolve(self) -> np.dtype:
        if not isinstance(self.code, str) or self.code not in NUMERIC_DTYPES:
            raise DopamineFormatError(
                f"refusing an array of dtype {self.code!r}: only plain numeric arrays are accepted"
            )
        dtype = np.dtype(self.code)
        return dtype.newbyteorder(self.byteorder) if self.byteorder in ("<", ">") else dtype


class _ArrayClass:
    """Stand-in for ``numpy.ndarray`` as the first argument of ``_reconstruct``."""


class _Array:
    """A pickled ndarray: ``_reconstruct(ndarray, (0,), b'b')`` then its state (shape, dtype, bytes)."""

    def __init__(self, *args: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def build(self) -> np.ndarray:
        state = self.state
        if not (isinstance(state, tuple) and len(state) == 5):
            raise DopamineFormatError("an array's pickled state is not (version, shape, dtype, fortran, bytes)")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _DType) or not isinstance(raw, bytes):
            raise DopamineFormatError("an array's pickled data is not the raw bytes of a plain numeric array")
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise DopamineFormatError(f"an array's pickled shape {shape!r} is not a tuple of sizes")
        real = dtype.resolve()
        if len(raw) != int(np.prod(shape, dtype=np.int64)) * real.itemsize:
            raise DopamineFormatError(f"an array of shape {shape} {real} holds {len(raw)} bytes")
        return np.frombuffer(raw, real).reshape(shape, order="F" if fortran else "C").copy()


def _scalar(dtype: Any, raw: Any) -> Any:
    if not isinstance(dtype, _DType) or not isinstance(raw, bytes):
        raise DopamineFormatError("a pickled numpy scalar is not the raw bytes of a plain numeric value")
    real = dtype.resolve()
    if len(raw) != real.itemsize:
        raise DopamineFormatError(f"a pickled {real} scalar holds {len(raw)} bytes")
    return np.frombuffer(raw, real)[0].item()


def _jax_array(fun: Any, args: Any, array_state: Any, aval_state: Any = None) -> _Array:
    if fun is not _Array:
        raise DopamineFormatError("a pickled jax array is not built from a numpy array")
    array = _Array()
    array.__setstate__(array_state)
    return array


def _built(node: Any) -> Any:
    """The loaded tree with every stand-in array built (and checked)."""
    if isinstance(node, _Array):
        return node.build()
    if isinstance(node, _DType):
        raise DopamineFormatError("a pickled dtype outside an array")
    if isinstance(node, dict):
        return {key: _built(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return (
            type(node)(_built(value) for value in node)
            if not isinstance(node, _StateTuple)
            else tuple(_built(value) for value in node)
        )
    if isinstance(node, set):
        return {_built(value) for value in node}
    return node


_NUMPY = {"_reconstruct": _Array, "scalar": _scalar}
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _ArrayClass,
    ("numpy", "dtype"): _DType,
    ("jax._src.array", "_reconstruct_array"): _jax_array,
    ("flax.core.frozen_dict", "FrozenDict"): _PlainDict,
    ("optax._src.transform", "ScaleByAdamState"): _StateTuple,
    ("optax._src.transform", "ScaleByRmsState"): _StateTuple,
    ("optax._src.base", "EmptyState"): _StateTuple,
    ("collections", "OrderedDict"): dict,
    ("builtins", "set"): set,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in _NUMPY:
            return _NUMPY[name]
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise DopamineFormatError(
            f"refusing to unpickle {module}.{name}: a Dopamine checkpoint holds only arrays, dicts and numbers"
        )


def read_checkpoint(directory: Path, number: int) -> dict[str, Any]:
    """The bundle of ``checkpoints/ckpt.N`` (or ``ckpt.N`` in ``directory`` itself), read safely."""
    directory = Path(directory)
    candidates = [directory / "checkpoints" / f"ckpt.{number}", directory / f"ckpt.{number}"]
    path = next((p for p in candidates if p.exists() or p.is_symlink()), None)
    if path is None:
        raise DopamineFormatError(f"no Dopamine checkpoint ckpt.{number} in {directory} or its checkpoints/ folder")
    _source_file(directory, path, "Dopamine checkpoint")
    try:
        with open(path, "rb") as handle:
            bundle = _built(_RestrictedUnpickler(handle).load())
    except DopamineFormatError as error:
        raise DopamineFormatError(f"{path}: {error}") from None
    except Exception as error:  # truncated or garbled bytes
        raise DopamineFormatError(f"{path} is not a readable pickle ({type(error).__name__}: {error})") from None
    if not isinstance(bundle, dict) or "online_params" not in bundle:
        raise DopamineFormatError(f"{path} holds no 'online_params': not a Dopamine DQN checkpoint")
    return bundle


_LINEN = ("Conv_0", "Conv_1", "Conv_2", "Dense_0", "Dense_1")
_PRE_LINEN = ("Conv_0", "Conv_1", "Conv_2", "Dense_3", "Dense_4")


def nature_params(online_params: Any) -> tuple[dict[str, Any], int]:
    """Dopamine NatureDQNNetwork parameters -> (frugalrl params for ``DOPAMINE_NETWORK``, actions)."""
    tree = online_params.get("params", online_params) if isinstance(online_params, dict) else None
    if not isinstance(tree, dict):
        raise DopamineFormatError(f"online_params is a {type(online_params).__name__}, not a dict of layers")
    names = _LINEN if all(n in tree for n in _LINEN) else _PRE_LINEN if all(n in tree for n in _PRE_LINEN) else None
    if names is None:
        raise DopamineFormatError(
            f"online_params has layers {sorted(tree)}; expected {list(_LINEN)} (NatureDQNNetwork)"
        )
    layers = {}
    for ours, theirs in zip(_LINEN, names, strict=True):
        layer = tree[theirs]
        try:
            kernel, bias = (np.asarray(layer[k]) for k in ("kernel", "bias"))
        except (KeyError, TypeError):
            raise DopamineFormatError(f"layer {theirs} has no kernel and bias") from None
        if kernel.dtype.kind != "f" or bias.dtype.kind != "f":
            raise DopamineFormatError(f"layer {theirs} holds {kernel.dtype} values, not floats")
        layers[ours] = {"kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}
    expected = {
        "Conv_0": (8, 8, None, 32),
        "Conv_1": (4, 4, 32, 64),
        "Conv_2": (3, 3, 64, 64),
        "Dense_0": (11 * 11 * 64, 512),
        "Dense_1": (512, None),
    }
    for name, shape in expected.items():
        got = layers[name]["kernel"].shape
        if len(got) != len(shape) or any(e is not None and e != g for e, g in zip(shape, got, strict=False)):
            raise DopamineFormatError(
                f"layer {name} has a kernel of shape {got}, expected {tuple('*' if e is None else e for e in shape)}"
            )
        if layers[name]["bias"].shape != (got[-1],):
            raise DopamineFormatError(
                f"layer {name} has a bias of shape {layers[name]['bias'].shape}, expected ({got[-1]},)"
            )
    return {"params": {"torso": layers}}, int(layers["Dense_1"]["kernel"].shape[1])


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header says of the array that follows it."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _first_line(error: BaseException, most: int = 200) -> str:
    """The first line of ``error``'s message, cut to ``most`` characters (a forged header can be long)."""
    lines = str(error).splitlines()
    line = lines[0] if lines else type(error).__name__
    return line if len(line) <= most else line[: most - 3] + "..."


def _parse_header(handle: BinaryIO) -> NpyHeader:
    """The ``.npy`` header at the start of ``handle``, checked (ValueError); nothing past it is read."""
    version = npy_format.read_magic(handle)
    readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    if version not in readers:
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not read (only 1.0 and 2.0)")
    shape, fortran_order, dtype = readers[version](handle)
    if dtype.str[1:] not in NUMERIC_DTYPES:
        raise ValueError(f"it holds an array of dtype {dtype}: only plain numeric arrays are accepted")
    if not all(type(n) is int and 0 <= n < 2**63 for n in shape):
        raise ValueError("its header's shape is not a tuple of sizes (non-negative, below 2**63)")
    return NpyHeader(tuple(shape), dtype, fortran_order)


def _reading(path: Path, read: Callable[..., Any], *args: Any) -> Any:
    """``read(*args)`` on the gzipped file ``path``; what goes wrong becomes a one-line DopamineFormatError."""
    try:
        return read(*args)
    except ValueError as error:
        raise DopamineFormatError(f"{path}: {_first_line(error)}") from None
    except (SyntaxError, TokenError, RecursionError) as error:  # numpy's second try at an old header
        raise DopamineFormatError(f"{path}: its .npy header is unreadable ({type(error).__name__})") from None
    except (OSError, EOFError, zlib.error) as error:
        raise DopamineFormatError(
            f"{path} is not a whole gzipped .npy file ({type(error).__name__}: {_first_line(error)})"
        ) from None


def read_npy_header(path: Path) -> NpyHeader:
    """The header of the gzipped ``.npy`` file ``path``; the array after it is not read."""

    def parse() -> NpyHeader:
        with gzip.open(path, "rb") as handle:
            return _parse_header(handle)

    return _reading(path, parse)


def copy_npy(source: Path, header: NpyHeader, target: Path) -> None:
    """Stream the array of the gzipped ``.npy`` file ``source`` into the ``.npy`` file ``target``,
    ``COPY_CHUNK_BYTES`` at a time; ``source`` must hold exactly the bytes ``header`` claims."""
    with gzip.open(source, "rb") as handle, open(target, "wb") as sink:
        if _reading(source, _parse_header, handle) != header:
            raise DopamineFormatError(f"{source} changed while it was imported")
        described = {"descr": npy_format.dtype_to_descr(header.dtype), "fortran_order": header.fortran_order}
        npy_format.write_array_header_1_0(sink, {**described, "shape": header.shape})
        left = header.nbytes
        while left > 0:
            chunk = _reading(source, handle.read, min(left, COPY_CHUNK_BYTES))
            if not chunk:
                raise DopamineFormatError(
                    f"{source} is cut short: it holds {human_bytes(header.nbytes - left, digits=1)} of the "
                    f"{human_bytes(header.nbytes, digits=1)} its header claims "
                    f"({header.dtype} array of shape {header.shape})"
                )
            sink.write(chunk)
            left -= len(chunk)
        if _reading(source, handle.read, 1):
            raise DopamineFormatError(f"{source} holds more bytes than its header claims (trailing data)")


def inside(directory: Path, path: Path) -> bool:
    """Whether ``path`` lies in ``directory`` once the symbolic links of both are followed."""
    return Path(path).resolve().is_relative_to(Path(directory).resolve())


def link_leaving(directory: Path, names: Iterable[str]) -> Path | None:
    """The first path among ``directory / name`` (and, for a folder, everything in it) that leads
    outside ``directory`` through a symbolic link, or None."""
    real, seen = Path(directory).resolve(), set()

    def leaving(path: Path) -> Path | None:
        resolved = path.resolve()
        if not resolved.is_relative_to(real):
            return path
        if resolved.is_dir() and resolved not in seen:
            seen.add(resolved)
            try:
                entries = sorted(path.iterdir())
            except OSError:  # unreadable: opening it fails with its own error
                return None
            return next((found for found in map(leaving, entries) if found is not None), None)
        return None

    return next((found for name in names if (found := leaving(Path(directory) / name)) is not None), None)


def _source_file(directory: Path, path: Path, what: str) -> Path:
    """``path`` of the Dopamine directory, refused if missing or a link out of the directory."""
    if not inside(directory, path):
        raise DopamineFormatError(
            f"{path} leads outside the Dopamine directory {directory}, to {path.resolve()} (a symbolic link); "
            "copy the file into the directory"
        )
    if not path.exists():
        raise DopamineFormatError(f"missing {what} {path}")
    return path


def _check_size(path: Path, header: NpyHeader, room: int, where: Path) -> None:
    size = header.nbytes
    if size > MAX_REPLAY_ARRAY_BYTES:
        limit = f"the {human_bytes(MAX_REPLAY_ARRAY_BYTES, digits=1)} a replay array may hold (MAX_REPLAY_ARRAY_BYTES)"
    elif size > room:
        limit = f"the {human_bytes(room, digits=1)} free where the teacher is written ({where})"
    else:
        return
    raise DopamineFormatError(
        f"{path}: its .npy header claims a {header.dtype} array of shape {header.shape}, "
        f"{human_bytes(size, digits=1)}: more than {limit}"
    )


def _check_replay(headers: dict[str, NpyHeader]) -> None:
    """The arrays form Dopamine's circular buffer of single uint8 frames (checked on headers alone)."""
    action, frames = headers["action"].shape, headers["observation"]
    capacity = action[0] if len(action) == 1 else -1
    if capacity < 1 or len(frames.shape) != 3 or frames.shape[0] != capacity or frames.dtype != np.uint8:
        raise DopamineFormatError(
            f"replay observations {frames.shape} {frames.dtype} and actions {action} do not form a "
            "buffer of single uint8 frames"
        )
    for name in ("reward", "terminal"):
        if headers[name].shape != (capacity,):
            raise DopamineFormatError(f"replay {name} has shape {headers[name].shape}, expected ({capacity},)")
    add_count = headers["add_count"]
    if add_count.shape != () or add_count.dtype.kind not in "iu":
        raise DopamineFormatError(
            f"replay add_count must be one integer, got a {add_count.dtype} array of shape {add_count.shape}"
        )
    if len(headers["invalid_range"].shape) != 1:
        raise DopamineFormatError(f"replay invalid_range has shape {headers['invalid_range'].shape}, expected 1-D")


def replay_files(directory: Path, number: int, room: int, where: Path) -> dict[str, tuple[Path, NpyHeader]]:
    """Each replay array's gzipped ``.npy`` file saved with ``ckpt.N`` and its header, all checked
    (sizes against ``MAX_REPLAY_ARRAY_BYTES`` and the ``room`` bytes free at ``where``) before any array is read."""
    directory = Path(directory)
    folder = directory / "checkpoints" if (directory / "checkpoints").is_dir() else directory
    files = {}
    for name in REPLAY_STORE + REPLAY_EXTRA:
        stem = f"$store$_{name}" if name in REPLAY_STORE else name
        path = _source_file(directory, folder / f"{stem}_ckpt.{number}.gz", "replay file")
        header = read_npy_header(path)
        _check_size(path, header, room, where)
        files[name] = (path, header)
    _check_replay({name: header for name, (_, header) in files.items()})
    total = sum(header.nbytes for _, header in files.values())
    if total > room:
        raise DopamineFormatError(
            f"the replay of ckpt.{number} in {directory} is {human_bytes(total, digits=1)}, more than the "
            f"{human_bytes(room, digits=1)} free where the teacher is written ({where})"
        )
    return files


def _existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    return next(p for p in (path, *path.parents) if p.exists())


def read_replay(directory: Path, number: int, target: Path, shown: Path | None = None) -> dict[str, np.ndarray]:
    """Copy the replay saved with ``ckpt.N`` into the folder ``target``, one ``.npy`` per array, streamed
    (no array is ever whole in memory) after every header is checked; returns ``load_replay(target)``.
    Messages name ``shown`` (default ``target``) as where the replay is written."""
    target = Path(target)
    files = replay_files(directory, number, shutil.disk_usage(_existing(target)).free, shown or target)
    target.mkdir(parents=True, exist_ok=True)
    for name, (path, header) in sorted(files.items(), key=lambda item: item[1][1].nbytes):
        copy_npy(path, header, target / f"{name}.npy")
    return load_replay(target)


def load_replay(folder: Path) -> dict[str, np.ndarray]:
    """The replay arrays of a teacher's ``replay/`` folder: the buffer's arrays memory-mapped (read
    from disk as they are used), ``add_count`` and ``invalid_range`` in memory."""
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in REPLAY_STORE}
    arrays.update({name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in REPLAY_EXTRA})
    return arrays


def _check_out(out: Path) -> None:
    """``out`` may be new, an empty directory or a teacher directory (it is replaced)."""
    if out.exists() and not out.is_dir():
        raise DopamineFormatError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "teacher.json").is_file():
        raise DopamineFormatError(
            f"{out} holds files and no teacher.json: name a new or empty directory, or a teacher directory to replace"
        )


def _place(staging: Path, out: Path) -> None:
    """Rename the finished teacher ``staging`` to ``out``; an earlier teacher there is removed after."""
    if not out.exists() or not any(out.iterdir()):
        os.replace(staging, out)  # rename(2) takes the place of an empty directory
        return
    old = staging.with_name(staging.name.removesuffix(".partial") + ".old")
    os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _teacher_meta(directory: Path, number: int, bundle: dict[str, Any], num_actions: int, env: str) -> dict[str, Any]:
    return {
        "format": "frugalrl-teacher",
        "source": "dopamine",
        "source_dir": str(Path(directory).resolve()),
        "checkpoint": number,
        "training_steps": int(bundle.get("training_steps", -1)),
        "env": {"name": env},
        "network": DOPAMINE_NETWORK,
        "num_actions": num_actions,
        "replay": None,
    }


def _write_teacher(
    staging: Path, out: Path, params: dict[str, Any], meta: dict[str, Any], replay_from: Path | None
) -> None:
    """Write params.npz, replay/ (copied from the Dopamine directory ``replay_from``) and teacher.json
    into ``staging``, the folder that becomes ``out``."""
    layers = params["params"]["torso"]
    flat = {f"params/torso/{layer}/{leaf}": value for layer, d in layers.items() for leaf, value in d.items()}
    np.savez(staging / "params.npz", **flat)
    if replay_from is not None:
        replay = read_replay(replay_from, meta["checkpoint"], staging / "replay", out)
        meta["replay"] = {"capacity": int(replay["action"].shape[0]), "add_count": int(replay["add_count"]), "stack": 4}
        del replay  # closes the memory maps before the folder is renamed
    (staging / "teacher.json").write_text(json.dumps(meta, indent=1))


def import_dopamine_teacher(
    directory: Path, number: int, out: Path, env_name: str, with_replay: bool = True
) -> dict[str, Any]:
    """Write a frugalrl teacher directory from a Dopamine DQN run; returns its ``teacher.json``.

    Everything is written into a hidden folder next to ``out``, renamed to ``out`` once complete and
    removed on any failure: a refused or interrupted import leaves nothing behind. ``out`` may be new,
    an empty directory or an earlier teacher directory, which is replaced."""
    out = Path(out).resolve()
    _check_out(out)
    bundle = read_checkpoint(directory, number)
    params, num_actions = nature_params(bundle["online_params"])
    meta = _teacher_meta(directory, number, bundle, num_actions, env_name)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    staging.mkdir()
    try:
        _write_teacher(staging, out, params, meta, Path(directory) if with_replay else None)
        _place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return meta


def check_teacher_links(directory: Path) -> None:
    """Refuse (ConfigError on ``teacher/run``) a teacher directory where a file a teacher is read from
    (``TEACHER_FILES``, folders included) is a symbolic link leading out of the directory."""
    link = link_leaving(directory, TEACHER_FILES)
    if link is not None:
        raise ConfigError(
            f"config key 'teacher/run': {link} leads outside the teacher directory {directory}, to "
            f"{link.resolve()} (a symbolic link); copy what it points to into the directory"
        )


def load_teacher_params(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, teacher.json) of a teacher directory written by ``import_dopamine_teacher``."""
    directory = Path(directory)
    check_teacher_links(directory)
    meta = json.loads((directory / "teacher.json").read_text())
    with np.load(directory / "params.npz", allow_pickle=False) as flat:
        params: dict[str, Any] = {}
        for key in flat.files:
            node = params
            *path, leaf = key.split("/")
            for part in path:
                node = node.setdefault(part, {})
            node[leaf] = flat[key]
    return params, meta


def frame_replay(arrays: dict[str, np.ndarray], stack: int = 4, max_episode_steps: int = 27_000) -> tuple[Any, int]:
    """(frugalrl's frame-once replay of Dopamine's circular buffer ``arrays``, the transitions it holds).

    Dopamine adds ``stack - 1`` zero entries to an empty buffer and after each terminal one, so that
    a stack of consecutive entries never holds an earlier episode's frames; frugalrl's replay
    (``replay.fifo``, zero padding) rebuilds stacks within each episode instead, so the entries after
    a terminal go and the rest are laid out oldest first. The oldest ``stack - 1`` entries stay as
    the earlier frames of the oldest transition only (the zeros an empty buffer starts with, or the
    oldest frames of a wrapped one, which Dopamine's saved ``invalid_range`` names), and the newest
    is only the next observation of the one before it: Dopamine samples neither. Every stack, next
    stack, action, reward and terminal flag is then the one Dopamine's buffer gives for the same
    transition (tests/test_dopamine_import.py, on files Dopamine wrote)."""
    import jax.numpy as jnp

    from frugalrl.replay import fifo

    capacity, add_count = arrays["action"].shape[0], int(arrays["add_count"])
    stored = min(add_count, capacity)
    order = (add_count - stored + np.arange(stored)) % capacity  # oldest first
    terminal = np.asarray(arrays["terminal"])[order] != 0
    padding = np.zeros(stored, bool)
    for j in range(1, stack):
        padding[j:] |= terminal[:-j]
    # the oldest entries Dopamine does not sample (its saved invalid_range; an empty buffer's first
    # stack - 1) stay as earlier frames of the oldest transition only
    unsampled = np.isin(order, np.asarray(arrays["invalid_range"]) % capacity)
    unsampled[: stack - 1] |= add_count <= capacity
    first = int(np.argmax(~unsampled & ~padding))
    padding[:first] |= np.arange(first) < first - (stack - 1)  # older than a stack reaches: not needed
    kept = order[~padding]
    history = int(np.count_nonzero(~padding[:first]))
    count = len(kept) - 1  # entries written as transitions: the newest is a next observation only
    held = count - history
    if held < 1:
        raise DopamineFormatError(f"the replay holds {len(kept)} frames outside Dopamine's padding: nothing to sample")
    slots = held + stack
    slot = np.arange(count + 1) % slots  # entry k of ``kept`` goes to slot k
    rows = slots + fifo.final_rows(held, max_episode_steps)
    obs = np.zeros((rows,) + arrays["observation"].shape[1:], np.uint8)
    obs[slot] = _rows(arrays, kept)
    action, reward = np.zeros(slots, np.int32), np.zeros(slots, np.float32)
    ends, next_row = np.zeros(slots, np.uint8), np.zeros(slots, np.int32)
    written = slot[:count]
    action[written] = np.asarray(arrays["action"])[kept[:count]]
    reward[written] = np.asarray(arrays["reward"])[kept[:count]]
    ends[written] = np.where(np.asarray(arrays["terminal"])[kept[:count]] != 0, fifo.TERMINATED, 0)
    next_row[written] = (written + 1) % slots
    state = fifo.ReplayState(
        jnp.asarray(obs),
        jnp.asarray(action),
        jnp.asarray(reward),
        jnp.asarray(ends),
        jnp.asarray(next_row),
        jnp.zeros((), jnp.int32),
        jnp.zeros((stack,), jnp.uint8),  # zero padding, as Dopamine's
    )
    return state, count


def _rows(arrays: dict[str, np.ndarray], kept: np.ndarray) -> np.ndarray:
    """The frames of ``kept`` entries, read in chunks from a memory-mapped file in storage order."""
    frames = arrays["observation"]
    out = np.empty((len(kept),) + frames.shape[1:], np.uint8)
    for start in range(0, len(kept), 65_536):
        part = kept[start : start + 65_536]
        out[start : start + len(part)] = frames[part]
    return out


def load_teacher_replay(directory: Path) -> dict[str, np.ndarray] | None:
    """The replay of a teacher directory written by ``import_dopamine_teacher`` (``load_replay``: memory-mapped),
    or None if it was imported without one."""
    directory = Path(directory)
    check_teacher_links(directory)
    meta = json.loads((directory / "teacher.json").read_text())
    if meta.get("replay") is None:
        return None
    if not (directory / "replay").is_dir():
        older = (
            " (replay.npz: written by an older frugalrl; import it again)"
            if (directory / "replay.npz").exists()
            else ""
        )
        raise ConfigError(f"config key 'teacher/run': {directory} has no replay/ folder{older}")
    return load_replay(directory / "replay")
