"""Hyperparameter packing: several configs of one sweep as one program, one run directory each.

Configs that differ only in keys the schema marks ``vmappable`` (``config/packing.py``) share a
program. Their seed lanes sit side by side on the seed axis (config after config, each config's
lanes in its own order) and each lane reads its config's values from a ``LaneHParams`` in the carry
(``agents/hparams.py``). A lane's keys are the ones it has alone (they come from the config's seed
and run and the lane only), so each lane computes what its config computes alone.

Every config keeps its own ``RunSession``: its lock, ``config.json``, ``log.txt``, CSVs, ``FAILED``
record and checkpoints, which hold that config's lanes only, in the layout of a run alone. So
``status``, ``analyze`` and ``plot`` cannot tell a packed run from one run alone, and either can
resume the other's checkpoint. ``PackedSession`` is the session the loop sees: it sends each lane's
rows to its config's session. A NaN fails only its own config; the others go on.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from frugalrl.agents.hparams import lane_hparams
from frugalrl.devices import idle_devices_note, seed_mesh
from frugalrl.errors import (
    ConfigError,
    DivergedError,
    RunAlreadyFinished,
    RunFailedError,
    RunLockedError,
    TrainingError,
)
from frugalrl.runs import checkpoint
from frugalrl.runs.stops import stop_requests
from frugalrl.train.flat import FlatLoop, unpackable
from frugalrl.train.loop import seed_keys
from frugalrl.train.session import RunSession, Summary, last_evaluation


@dataclass(frozen=True)
class LaneLayout:
    """Where each config's lanes sit on a packed program's seed axis.

    "wide": one vmapped program over every lane, config after config (PureJaxRL's hyperparameter
    axis); its lanes' last bits can differ from the run alone (XLA's elementwise code runs a vector
    loop and a scalar remainder, and the lane count decides which lanes fall where).
    "exact": every device holds each config's share of a run alone (device, then config, then seed)
    and runs its configs one after another (``lax.map``) at the shapes the run alone has: the same
    bits as alone, for what the configs' per-device programs cost one after another.
    """

    configs: int
    lanes: int  # per config
    devices: int
    kind: str  # "wide" | "exact"

    def of(self, position: int) -> np.ndarray:
        """The program's lane numbers of config ``position``'s lanes, in its seeds' order."""
        if self.kind == "wide":
            return position * self.lanes + np.arange(self.lanes)
        share = self.lanes // self.devices
        device, seed = np.divmod(np.arange(self.lanes), share)
        return device * self.configs * share + position * share + seed

    def owners(self) -> np.ndarray:
        """[lanes of the program, 2]: each lane's config position and its lane within the config."""
        owners = np.empty((self.configs * self.lanes, 2), np.int64)
        for position in range(self.configs):
            owners[self.of(position)] = np.stack([np.full(self.lanes, position), np.arange(self.lanes)], 1)
        return owners

    def join(self, per_config: list[np.ndarray]) -> np.ndarray:
        """The program's array of the configs' own arrays (lanes on axis 0)."""
        joined = np.concatenate(per_config)
        order = np.concatenate([self.of(p) for p in range(self.configs)])
        out = np.empty_like(joined)
        out[order] = joined
        return out


def pack_layout(kind: str | None) -> str:
    """The packed lanes' layout: ``kind``, or by default "exact" on a CPU (where packing saves start-up
    and compilation, not arithmetic) and "wide" on an accelerator (where lanes side by side are cheap)."""
    if kind not in (None, "exact", "wide"):
        raise ConfigError(f"pack layout {kind!r}: choose 'exact' or 'wide'")
    return kind or ("exact" if jax.default_backend() == "cpu" else "wide")


def lane_slice(tree: Any, layout: LaneLayout, position: int) -> Any:
    """Config ``position``'s lanes of a packed carry (or its shapes), as a run alone holds them (its
    ``hparams`` too: ``RunSession.save`` and ``FlatLoop.prepare`` leave them out of checkpoints)."""
    lanes = layout.of(position)

    def one(leaf: Any) -> Any:
        if np.ndim(leaf) == 0:
            return leaf  # shared counters
        if isinstance(leaf, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct((layout.lanes,) + leaf.shape[1:], leaf.dtype)
        return np.asarray(leaf)[lanes]

    return jax.tree.map(one, tree)


def join_lanes(states: list[Any], layout: LaneLayout) -> Any:
    """The packed carry of the configs' own carries (restored from their checkpoints)."""
    return jax.tree.map(lambda *leaves: leaves[0] if np.ndim(leaves[0]) == 0 else layout.join(leaves), *states)


def config_map(fn: Callable[..., Any], configs: int, lane_axes: Any) -> Callable[..., Any]:
    """``fn`` on each config's share of a device's lanes in turn (``lax.map``), at the shapes a run
    alone has there. Inputs hold the configs' shares one after another on axis 0; outputs are put
    back the same way on each one's lane axis (``lane_axes``: a prefix of the outputs); scalars
    (shared counters) are the same for every config and come back once."""

    def split(leaf: jax.Array) -> jax.Array:
        return leaf.reshape(configs, -1, *leaf.shape[1:])

    def put_back(axis: int, outputs: Any) -> Any:
        def one(leaf: jax.Array) -> jax.Array:
            if leaf.ndim == 1:
                return leaf[0]
            moved = jax.numpy.moveaxis(leaf, 0, axis)  # the config axis just before the lane axis
            return moved.reshape(*moved.shape[:axis], -1, *moved.shape[axis + 2 :])

        return jax.tree.map(one, outputs)

    def mapped(*args: Any) -> Any:
        leaves, structure = jax.tree.flatten(args)
        shared = [leaf.ndim == 0 for leaf in leaves]

        def one(own: list[jax.Array]) -> Any:
            mine = iter(own)
            return fn(
                *jax.tree.unflatten(structure, [x if s else next(mine) for x, s in zip(leaves, shared, strict=True)])
            )

        outputs = jax.lax.map(one, [split(x) for x, s in zip(leaves, shared, strict=True) if not s])
        return jax.tree.map(put_back, lane_axes, outputs)

    return mapped


class PackedFlatLoop(FlatLoop):
    """The flat loop of a packed program: every config's lanes, their keys and hyperparameters."""

    def __init__(self, cfgs: list[dict[str, Any]], layout: str) -> None:
        lanes = cfgs[0]["num_seeds"]
        super().__init__({**cfgs[0], "num_seeds": lanes * len(cfgs)})
        # exact: each device holds the share a run alone gives it, so the alone runs' device count
        devices = seed_mesh(lanes if layout == "exact" else lanes * len(cfgs)).size
        self.layout = LaneLayout(len(cfgs), lanes, devices, layout)
        keys = [np.asarray(seed_keys(c["seed"], int(c.get("run", 0)), lanes)) for c in cfgs]
        self.keys = jax.numpy.asarray(self.layout.join(keys))
        per_config = [lane_hparams([c], lanes) for c in cfgs]
        self.hparams = jax.tree.map(lambda *v: jax.numpy.asarray(self.layout.join(list(v))), *per_config)

    def per_device(self, fn: Any, lane_axes: Any) -> Any:
        if self.layout.kind == "wide":
            return fn
        return config_map(fn, self.layout.configs, lane_axes)

    def fresh(self) -> Any:
        if self.layout.kind == "wide":
            return super().fresh()
        # each config's carry made as its run alone makes it: the same bits
        own = [self._init(self.keys[self.layout.of(p)])._replace(hparams=()) for p in range(self.layout.configs)]
        carry = join_lanes(jax.tree.map(np.asarray, own), self.layout)._replace(hparams=self.hparams)
        return jax.device_put(carry, self.carry_sharding)


class _FanOutLog:
    """``log.info`` and friends into every live run's log.txt."""

    def __init__(self, packed: PackedSession) -> None:
        self.packed = packed

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda *args: [getattr(s.log, level)(*args) for s in self.packed.live_sessions()]


class PackedSession(RunSession):
    """The session a packed program's loop sees: one ``RunSession`` per config behind it.

    Rows carry lane numbers (``seeds``) until ``write_*`` sends each to its config's session
    with that config's seed number; the segment driver (``RunSession._segments``) is the same.
    """

    def __init__(self, sessions: list[RunSession], say: Callable[[str], None]) -> None:
        self.sessions, self.say = sessions, say
        self.lanes = sessions[0].num_seeds
        self.cfg = {**sessions[0].cfg, "num_seeds": self.lanes * len(sessions)}
        self.num_seeds = self.cfg["num_seeds"]
        self.seeds = list(range(self.num_seeds))  # lane numbers
        self.live = list(range(len(sessions)))
        self.failures: dict[int, DivergedError] = {}
        self.stops = sessions[0].stops
        self.progress = False
        self.log = _FanOutLog(self)
        self.compile_seconds = 0.0

    def live_sessions(self) -> list[RunSession]:
        return [self.sessions[i] for i in self.live]

    def _split(self, rows: Iterable[list[Any]]) -> dict[int, list[list[Any]]]:
        """{position: its rows}, each row's lane number replaced by the config's seed number."""
        split: dict[int, list[list[Any]]] = {}
        for row in rows:
            position, lane = self.owners[int(row[2])]
            if position in self.live:
                split.setdefault(position, []).append([*row[:2], self.sessions[position].seeds[lane], *row[3:]])
        return split

    # -- what the loop says and writes ------------------------------------------------------
    def _note(self, level: str, message: str) -> None:
        for session in self.live_sessions():
            session._note(level, message)  # held back until its log.txt exists; sessions say nothing
        self.say(message)

    def mesh(self) -> Any:
        mesh = Mesh(np.array(jax.local_devices()[: self.layout.devices]), ("seed",))
        if note := idle_devices_note(self.lanes if self.layout.kind == "exact" else self.num_seeds, mesh):
            self.warn(note)
        for session in self.sessions:
            session.seed_devices = mesh.size
        return mesh

    def note_compile(self, what: str, took: float) -> None:
        self.compile_seconds += took
        for session in self.live_sessions():
            session.note_compile(f"{what} (packed: {len(self.sessions)} configs)", took)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            for session in self.live_sessions():
                session.phase_seconds[name] += time.perf_counter() - began

    def write_episodes(self, rows: Iterable[list[Any]]) -> None:
        for position, own in self._split(rows).items():
            self.sessions[position].write_episodes(own)

    def write_evaluations(self, rows: Iterable[list[Any]]) -> None:
        for position, own in self._split(rows).items():
            self.sessions[position].write_evaluations(own)

    def write_metrics(self, step: int, names: Iterable[str], means: dict[str, np.ndarray]) -> None:
        names = list(names)
        for position in self.live:
            own = self.layout.of(position)
            self.sessions[position].write_metrics(step, names, {n: v[own] for n, v in means.items()})

    def note_evaluation(self, at: int, returns: np.ndarray) -> None:
        for position in self.live:
            self.sessions[position].note_evaluation(at, returns[self.layout.of(position)])

    def check_finite(self, finite: np.ndarray, step: int, since: int | None = None, what: str = "loss") -> None:
        """Each config's lanes checked by its own session: a config that diverged is recorded as
        failed and leaves the program's writes; DivergedError only when none is left."""
        for position in list(self.live):
            session = self.sessions[position]
            try:
                session.check_finite(finite[self.layout.of(position)], step, since, what)
            except DivergedError as error:
                session.rundir.mark_failed(str(error), error.step, error.seeds)
                session.log.error("FAILED at step %d: %s", error.step, error)
                self.say(f"{session.path}: FAILED at step {error.step}: {error}")
                self.failures[position] = error
                self.live.remove(position)
        if not self.live:
            raise next(reversed(self.failures.values()))

    @property
    def dropped(self) -> dict[int, Any]:  # type: ignore[override]
        return {lane: True for lane in np.nonzero(self.dropped_lanes())[0]}

    def dropped_lanes(self) -> np.ndarray:
        return self.layout.join([session.dropped_lanes() for session in self.sessions])

    def flush(self) -> None:
        for session in self.live_sessions():
            session.flush()

    def save(self, step: int, state: Any, extra: dict[str, Any]) -> None:
        """One checkpoint per live config, of its own lanes."""
        for position in self.live:
            self.sessions[position].save(step, lane_slice(state, self.layout, position), extra)

    # -- the run ----------------------------------------------------------------------------
    def common_step(self) -> int | None:
        """The newest checkpoint step every run has, or None to start them all anew. A program
        stopped between two of its runs' checkpoint saves resumes each from the step they share
        (all anew if it was its first checkpoint: the first runs' are removed); runs that share no
        step otherwise cannot start as one program and are refused."""
        held = [set(checkpoint.complete_steps(session.rundir.checkpoints)) for session in self.sessions]
        shared = set.intersection(*held)
        if shared:
            return max(shared)
        first = self.cfg["checkpoint"]["every"]
        if all(step <= first for steps in held for step in steps):  # nothing beyond a first checkpoint
            for session, steps in zip(self.sessions, held, strict=True):
                for step in steps:
                    shutil.rmtree(session.rundir.checkpoints / str(step))
                    session.log.info("removed the checkpoint at step %d: the packed program starts anew", step)
                session.rundir.write_dropped({})
            return None
        found = {str(session.path): sorted(steps) for session, steps in zip(self.sessions, held, strict=True)}
        raise TrainingError(f"packed runs must resume from a checkpoint step they all have; they hold {found}")

    def _train(self, loop: PackedFlatLoop) -> list[Summary | None]:  # type: ignore[override]
        self.layout = loop.layout
        self.owners = loop.layout.owners()
        shapes = loop.prepare(self)
        for session in self.sessions:
            session.start()
        at = self.common_step()
        restored = [session.restore(lane_slice(shapes, self.layout, 0), at) for session in self.sessions]
        step = at or 0
        if restored[0] is None:
            state = loop.fresh()
        else:
            state = loop.resume(join_lanes([r[0] for r in restored], self.layout), restored[0][1])
        run_began, compiled, final_returns = time.perf_counter(), self.compile_seconds, None
        try:
            for session in self.sessions:
                session.open_logs(loop.train_columns, loop.test_columns)
            if step < loop.total:  # checkpointed at their end: nothing to compile or run
                state = loop.start(state, resumed=restored[0] is not None)
                run_began, compiled = time.perf_counter(), self.compile_seconds
                state, final_returns = self._segments(loop, state, step)
                jax.block_until_ready(state)
        finally:
            for session in self.sessions:
                session.close_logs()
        run_seconds = time.perf_counter() - run_began - (self.compile_seconds - compiled)
        if final_returns is None:  # resumed at the end: each run's last evaluation, read back
            final_returns = self.layout.join([last_evaluation(s.path, s.seeds) for s in self.sessions])
        return [
            self.sessions[p].finish(final_returns[self.layout.of(p)], loop.total, run_seconds)
            if p in self.live
            else None
            for p in range(len(self.sessions))
        ]


def run_packed(
    cfgs: list[dict[str, Any]],
    paths: list[Path],
    *,
    fresh: bool = False,
    retry: bool = False,
    progress: bool = True,
    stops: list[int] | None = None,
    say: Callable[[str], None] | None = None,
    layout: str | None = None,
) -> dict[int, Summary | str]:
    """Train (or resume) the runs of ``cfgs`` (one program: see ``config/packing.py``) in ``paths``.

    Returns {position: its Summary, or why it did not run in the program ("busy: ...", "finished",
    "failed: ...")}. A run held by another process, finished or recorded as failed (unless
    ``retry``) is left out; the others must all be new or all checkpointed at one step.
    ``layout``: "exact" or "wide" (``LaneLayout``); by default "exact" on a CPU, else "wide".
    """
    say = say or (lambda text: print(text, file=sys.stderr))
    stops = [] if stops is None else stops
    layout = pack_layout(layout)
    sessions: dict[int, RunSession] = {}
    outcome: dict[int, Summary | str] = {}
    try:
        for position, (cfg, path) in enumerate(zip(cfgs, paths, strict=True)):
            try:
                sessions[position] = RunSession(
                    cfg,
                    path,
                    fresh=fresh,
                    retry=retry,
                    progress=False,
                    echo=lambda _: None,
                    stops=stops,
                    unless_finished=True,
                )
            except RunLockedError as error:
                outcome[position] = f"busy: {error}"
            except RunAlreadyFinished:
                outcome[position] = "finished"
            except RunFailedError as error:
                outcome[position] = f"failed: {error}"
        if not sessions:
            return outcome
        order = sorted(sessions)
        packed = PackedSession([sessions[p] for p in order], say)
        packed.progress = progress
        with stop_requests(stops):
            try:
                summaries = packed._train(PackedFlatLoop([sessions[p].cfg for p in order], layout))
            except DivergedError:  # every config diverged: each is recorded as failed
                summaries = [None] * len(order)
        for position, summary in zip(order, summaries, strict=True):
            outcome[position] = summary if summary is not None else f"failed: {packed.failures[order.index(position)]}"
        return outcome
    finally:
        for session in sessions.values():
            session.close()


__all__ = [
    "LaneLayout",
    "PackedFlatLoop",
    "PackedSession",
    "config_map",
    "join_lanes",
    "lane_slice",
    "pack_layout",
    "run_packed",
    "unpackable",
]
