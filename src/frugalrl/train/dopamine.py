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

``import_dopamine_teacher`` writes a *teacher directory*: ``teacher.json`` (its network config, the
env it played, where it came from), ``params.npz`` (the Q-network in frugalrl's Nature-CNN layout:
SAME padding and inputs scaled by 1/255, as Dopamine's network) and ``replay.npz`` (the replay
arrays as Dopamine kept them).
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from frugalrl.errors import DopamineFormatError

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
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise DopamineFormatError(f"no Dopamine checkpoint ckpt.{number} in {directory} or its checkpoints/ folder")
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


def read_replay(directory: Path, number: int) -> dict[str, np.ndarray]:
    """The replay arrays saved with ``ckpt.N`` (gzipped ``.npy``; pickled content is refused)."""
    directory = Path(directory)
    folder = directory / "checkpoints" if (directory / "checkpoints").is_dir() else directory
    arrays = {}
    for name in REPLAY_STORE + REPLAY_EXTRA:
        stem = f"$store$_{name}" if name in REPLAY_STORE else name
        path = folder / f"{stem}_ckpt.{number}.gz"
        if not path.exists():
            raise DopamineFormatError(f"missing replay file {path}")
        try:
            with gzip.open(path, "rb") as handle:
                arrays[name] = np.load(io.BytesIO(handle.read()), allow_pickle=False)
        except ValueError as error:
            raise DopamineFormatError(f"{path}: {error} (only plain numeric arrays are accepted)") from None
        except (OSError, EOFError) as error:
            raise DopamineFormatError(f"{path} is not a gzipped .npy file ({error})") from None
    capacity = arrays["action"].shape[0] if arrays["action"].ndim == 1 else -1
    frames = arrays["observation"]
    if capacity < 1 or frames.ndim != 3 or frames.shape[0] != capacity or frames.dtype != np.uint8:
        raise DopamineFormatError(
            f"replay observations {frames.shape} {frames.dtype} and actions {arrays['action'].shape} do not form a "
            "buffer of single uint8 frames"
        )
    for name in ("reward", "terminal"):
        if arrays[name].shape != (capacity,):
            raise DopamineFormatError(f"replay {name} has shape {arrays[name].shape}, expected ({capacity},)")
    if arrays["add_count"].shape != () or arrays["add_count"].dtype.kind not in "iu":
        raise DopamineFormatError(f"replay add_count must be one integer, got {arrays['add_count']!r}")
    return arrays


def import_dopamine_teacher(
    directory: Path, number: int, out: Path, env_name: str, with_replay: bool = True
) -> dict[str, Any]:
    """Write a frugalrl teacher directory from a Dopamine DQN run; returns its ``teacher.json``."""
    bundle = read_checkpoint(directory, number)
    params, num_actions = nature_params(bundle["online_params"])
    replay = read_replay(directory, number) if with_replay else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layers = params["params"]["torso"]
    flat = {f"params/torso/{layer}/{leaf}": value for layer, d in layers.items() for leaf, value in d.items()}
    np.savez(out / "params.npz", **flat)
    meta = {
        "format": "frugalrl-teacher",
        "source": "dopamine",
        "source_dir": str(Path(directory).resolve()),
        "checkpoint": number,
        "training_steps": int(bundle.get("training_steps", -1)),
        "env": {"name": env_name},
        "network": DOPAMINE_NETWORK,
        "num_actions": num_actions,
        "replay": None,
    }
    if replay is not None:
        np.savez(out / "replay.npz", **replay)
        meta["replay"] = {"capacity": int(replay["action"].shape[0]), "add_count": int(replay["add_count"]), "stack": 4}
    (out / "teacher.json").write_text(json.dumps(meta, indent=1))
    return meta


def load_teacher_params(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, teacher.json) of a teacher directory written by ``import_dopamine_teacher``."""
    directory = Path(directory)
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
