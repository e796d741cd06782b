"""Data mixtures: how many samples each source gives at each step, and the interleaving that follows.

Sources have either a fixed `share` of every step (general replay at its
replay ratio) or a `weight` (they split what the fixed shares and the
schedule leave, in proportion). One source may follow a schedule instead,
its share moving from `start_share` to `end_share` (linearly or in equal
stairs) between `start_step` and `end_step`: the recipe raises the share
of reasoning data over mid-training this way.

`MixturePlan` turns the shares into integer counts per step. It carries
each source's lag (target so far minus samples drawn) from step to step
and gives each step's `batch_size` samples to the sources furthest
behind, so realised counts never drift: after every step each source is
within one sample of its cumulative target (guaranteed while every share
is at least 1/batch_size; a share that falls to zero while its source is
ahead can leave a larger lag, still bounded, that later steps repay).
Counts depend on the shares and the batch size alone, the seed only
orders samples within a step, and the plan is a pure function of the
config and the step: every worker, and a job resumed at step k, computes
the same plan without talking to anyone, and `consumed(k)` says how far
into each source a resumed job must skip. The same plan serves continual
pretraining (packed rows of medical and replay shards) and SFT (tokenised
samples), over Ray Data iterators or any iterables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from medray.errors import ConfigError, MedrayError

SCHEDULE_KINDS = ("linear", "step")
_EPS = 1e-9


@dataclass
class MixtureSource:
    name: str = ""
    path: str = ""  # where its data lives (read by the training job)
    weight: float = 1.0  # relative weight among sources without a fixed share
    share: Optional[float] = None  # noqa: UP045  (a fixed share of every step, e.g. general replay at its replay ratio)


@dataclass
class ShareSchedule:
    source: str = ""  # the source whose share moves over training; "" for none
    kind: str = "linear"  # "linear", or "step": `levels` equal stairs, start_share from start_step, end_share from end_step
    start_share: float = 0.0
    end_share: float = 0.0
    start_step: int = 0  # start_share until here
    end_step: int = 0  # end_share from here on
    levels: int = 2  # stairs of a "step" schedule, start_share and end_share included

    def share(self, step: int | np.ndarray) -> np.ndarray:
        """The scheduled source's share at each step."""
        step = np.asarray(step, dtype=np.float64)
        span = max(self.end_step - self.start_step, 1)
        progress = np.clip((step - self.start_step) / span, 0.0, 1.0)
        if self.kind == "step":
            stairs = self.levels - 1
            progress = np.floor(progress * stairs + _EPS) / stairs
        return self.start_share + (self.end_share - self.start_share) * progress


@dataclass
class MixtureConfig:
    sources: list[MixtureSource] = field(default_factory=list)
    schedule: ShareSchedule = field(default_factory=ShareSchedule)
    seed: int = 0

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    def validate(self, prefix: str = "mixture") -> MixtureConfig:
        """Fail before any work starts, naming the key."""
        if not self.sources:
            raise ConfigError(f"{prefix}.sources", "give at least one source")
        seen: set[str] = set()
        for i, source in enumerate(self.sources):
            key = f"{prefix}.sources.{i}"
            if not source.name:
                raise ConfigError(f"{key}.name", "every source needs a name")
            if source.name in seen:
                raise ConfigError(f"{key}.name", f"{source.name!r} is given twice")
            seen.add(source.name)
            if source.share is not None and not 0.0 <= source.share <= 1.0:
                raise ConfigError(f"{key}.share", f"must be in [0, 1], got {source.share}")
            if source.share is None and not source.weight > 0:
                raise ConfigError(f"{key}.weight", f"must be > 0, got {source.weight}")
        self._validate_schedule(f"{prefix}.schedule")
        fixed = sum(s.share for s in self.sources if s.share is not None)
        scheduled = max(self.schedule.start_share, self.schedule.end_share) if self.schedule.source else 0.0
        if fixed + scheduled > 1.0 + _EPS:
            raise ConfigError(f"{prefix}.sources", f"fixed shares ({fixed:g}) and the scheduled share "
                                                   f"(up to {scheduled:g}) add up to more than 1")
        lowest = min(self.schedule.start_share, self.schedule.end_share) if self.schedule.source else 0.0
        if not self._weighted() and fixed + lowest < 1.0 - _EPS:
            raise ConfigError(f"{prefix}.sources", f"shares add up to {fixed + lowest:g} < 1 and no source has "
                                                   "a weight to take the rest")
        return self

    def _validate_schedule(self, key: str) -> None:
        schedule = self.schedule
        if not schedule.source:
            return
        names = self.names
        if schedule.source not in names:
            raise ConfigError(f"{key}.source", f"unknown source {schedule.source!r} (sources: {', '.join(names)})")
        if self.sources[names.index(schedule.source)].share is not None:
            raise ConfigError(f"{key}.source", f"{schedule.source!r} has a fixed share: give it a share or a schedule")
        for name in ("start_share", "end_share"):
            value = getattr(schedule, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{key}.{name}", f"must be in [0, 1], got {value}")
        if schedule.kind not in SCHEDULE_KINDS:
            raise ConfigError(f"{key}.kind", f"{schedule.kind!r}: expected one of {', '.join(SCHEDULE_KINDS)}")
        if schedule.start_step < 0 or schedule.end_step < schedule.start_step:
            raise ConfigError(f"{key}.end_step", f"need 0 <= start_step <= end_step, got {schedule.start_step}, "
                                                 f"{schedule.end_step}")
        if schedule.kind == "step" and schedule.levels < 2:
            raise ConfigError(f"{key}.levels", f"a step schedule needs at least 2 levels, got {schedule.levels}")

    def _weighted(self) -> list[int]:
        return [i for i, s in enumerate(self.sources) if s.share is None and s.name != self.schedule.source]

    def target_shares(self, steps: int | np.ndarray) -> np.ndarray:
        """Shares per source at each step: [len(steps), n_sources] (rows sum to 1)."""
        steps = np.atleast_1d(np.asarray(steps))
        shares = np.zeros((len(steps), len(self.sources)))
        for i, source in enumerate(self.sources):
            if source.share is not None:
                shares[:, i] = source.share
        if self.schedule.source:
            shares[:, self.names.index(self.schedule.source)] = self.schedule.share(steps)
        weighted = self._weighted()
        if weighted:
            weights = np.array([self.sources[i].weight for i in weighted], dtype=np.float64)
            rest = np.clip(1.0 - shares.sum(axis=1), 0.0, 1.0)
            shares[:, weighted] = rest[:, None] * (weights / weights.sum())[None, :]
        return shares


class MixturePlan:
    """Per-step sample counts for a global (or per-worker) batch of `batch_size` samples."""

    def __init__(self, config: MixtureConfig, batch_size: int):
        if batch_size < 1:
            raise ConfigError("batch_size", f"must be at least 1, got {batch_size}")
        self.config = config.validate()
        self.names = config.names
        self.batch_size = batch_size
        self._tie_rank = -np.arange(len(self.names)) * 1e-12  # exact ties go to the source listed first
        self._cumulative = np.zeros((1024, len(self.names)), np.int64)  # row s: samples drawn before step s
        self._done = 0  # steps planned so far
        self._lag = np.zeros(len(self.names))  # target minus drawn after the last planned step

    def _extend(self, steps: int) -> None:
        """Plan up to `steps`, one step at a time, carrying the lag (not growing sums, so rounding stays tiny)."""
        if steps <= self._done:
            return
        if steps + 1 > len(self._cumulative):
            grown = np.zeros((max(steps + 1, 2 * len(self._cumulative)), len(self.names)), np.int64)
            grown[: self._done + 1] = self._cumulative[: self._done + 1]
            self._cumulative = grown
        wanted = self.config.target_shares(np.arange(self._done, steps)) * self.batch_size
        lag, drawn = self._lag, self._cumulative[self._done].copy()
        for k, step in enumerate(range(self._done, steps)):
            deficit = lag + wanted[k]
            counts = self._apportion(deficit + self._tie_rank)
            lag = deficit - counts
            drawn += counts
            self._cumulative[step + 1] = drawn
        self._lag, self._done = lag, steps

    def _check(self, step: int, least: int = 0) -> int:
        if not isinstance(step, (int, np.integer)) or step < least:
            raise MedrayError(f"mixture plan: step must be an integer >= {least}, got {step!r}")
        return int(step)

    def _target_before(self, step: int) -> np.ndarray:
        if step == 0:
            return np.zeros(len(self.names))
        return (self.config.target_shares(np.arange(step)) * self.batch_size).sum(axis=0)

    def _apportion(self, deficit: np.ndarray) -> np.ndarray:
        """`batch_size` samples to the sources furthest behind: whole deficits first, then the largest rests."""
        counts = np.maximum(np.floor(deficit + _EPS), 0).astype(np.int64)
        spare = self.batch_size - int(counts.sum())
        while spare > 0:
            counts[int(np.argmax(deficit - counts))] += 1
            spare -= 1
        while spare < 0:  # only after a source's share fell to near zero while it was ahead
            rest = np.where(counts > 0, deficit - counts, np.inf)
            counts[int(np.argmin(rest))] -= 1
            spare += 1
        return counts

    def counts(self, step: int) -> dict[str, int]:
        """Samples from each source at `step` (0-based); they sum to `batch_size`."""
        step = self._check(step)
        self._extend(step + 1)
        return dict(zip(self.names, (self._cumulative[step + 1] - self._cumulative[step]).tolist()))

    def count_matrix(self, steps: int) -> np.ndarray:
        """[steps, n_sources] samples per step and source."""
        steps = self._check(steps)
        self._extend(steps)
        return np.diff(self._cumulative[: steps + 1], axis=0)

    def consumed(self, step: int) -> dict[str, int]:
        """Samples drawn from each source before `step`: where a job resumed at `step` continues."""
        step = self._check(step)
        self._extend(step)
        return dict(zip(self.names, self._cumulative[step].tolist()))

    def slots(self, step: int) -> list[str]:
        """The source of each position of the step's batch, in a seeded order."""
        counts = self.counts(step)
        order = np.repeat(np.arange(len(self.names)), [counts[n] for n in self.names])
        rng = np.random.default_rng([self.config.seed, step])
        return [self.names[i] for i in rng.permutation(order)]

    def realised_shares(self, steps: int) -> dict[str, float]:
        """Each source's share of the samples of the first `steps` steps."""
        steps = self._check(steps, least=1)
        self._extend(steps)
        return dict(zip(self.names, (self._cumulative[steps] / (steps * self.batch_size)).tolist()))

    def target_totals(self, steps: int) -> dict[str, float]:
        """What the shares ask for over the first `steps` steps, in samples (not rounded)."""
        return dict(zip(self.names, self._target_before(self._check(steps)).tolist()))


def interleave(plan: MixturePlan, sources: Mapping[str, Callable[[int], Iterable]], *, start_step: int = 0,
               steps: int | None = None) -> Iterator[list]:
    """Each step's batch: items drawn from per-source iterables in the plan's counts and slot order.

    `sources[name](epoch)` returns that source's items for one pass (a Ray
    Data `iter_rows()`, a list, a generator); a pass that runs out starts the
    next epoch. Starting at `start_step` skips what earlier steps drew.
    """
    unknown = sorted(set(sources) - set(plan.names))
    missing = [n for n in plan.names if n not in sources]
    if unknown or missing:
        raise MedrayError(f"interleave: sources {unknown or missing} are {'not in the mixture' if unknown else 'missing'} "
                          f"(mixture: {', '.join(plan.names)})")
    streams = {name: _Cycle(name, sources[name]) for name in plan.names}
    for name, n in plan.consumed(start_step).items():
        streams[name].skip(n)
    step = start_step
    while steps is None or step < start_step + steps:
        yield [streams[name].next() for name in plan.slots(step)]
        step += 1


class _Cycle:
    """One source's items, epoch after epoch."""

    def __init__(self, name: str, factory: Callable[[int], Iterable]):
        self.name, self.factory, self.epoch = name, factory, 0
        self.items = iter(factory(0))

    def next(self):
        for _ in range(2):
            try:
                return next(self.items)
            except StopIteration:
                self.epoch += 1
                self.items = iter(self.factory(self.epoch))
        raise MedrayError(f"interleave: source {self.name!r} has no items")

    def skip(self, n: int) -> None:
        for _ in range(n):
            self.next()


def step_micro_batches(plan: MixturePlan, sources: Mapping[str, Callable[[int], Iterable]], collate: Callable,
                       micro_batch_size: int, start_step: int = 0) -> Iterator[dict]:
    """Each step's rows by the plan, in micro-batches of `micro_batch_size`, collated: a function of the step."""
    for rows in interleave(plan, sources, start_step=start_step):
        for start in range(0, len(rows), micro_batch_size):
            yield collate(rows[start:start + micro_batch_size])


def shard_rows(shard, columns: tuple[str, ...], batch_rows: int) -> Callable[[int], Iterator[dict]]:
    """One pass over a Ray Data shard (a new epoch per call) as row dicts of `columns`."""
    def epoch_rows(epoch: int) -> Iterator[dict]:
        for batch in shard.iter_batches(batch_size=batch_rows, batch_format="numpy"):
            for i in range(len(batch[columns[0]])):
                yield {c: batch[c][i] for c in columns}
    return epoch_rows
