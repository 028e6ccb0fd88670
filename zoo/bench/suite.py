"""Suite definitions: agents x tasks x seeds x budget x hyperparameters, read from YAML, expanded to runs.

A suite is a YAML file (``benchmarks/suites/<name>.yaml``)::

    name: dmc
    description: PPO and SAC on the DeepMind Control tasks the papers use
    metric: return_mean            # the score each run reports (a key of Agent.evaluate()'s result)
    tiers:                         # the same definition at three budgets
      smoke: {seeds: [0], budget_scale: 0.001, eval_episodes: 2}
      cpu:   {seeds: [0, 1, 2], budget_scale: 0.1}
      full:  {seeds: [0, 1, 2, 3, 4]}
    defaults: {eval_episodes: 10, checkpoint_interval_s: 300}
    entries:
      - agent: SAC
        tasks: [dmc/cheetah-run, {id: dmc/walker-walk, env_kwargs: {...}}]
        budget: 1_000_000                    # full-tier units, scaled by each tier's budget_scale,
                                             # or one number per tier: {smoke: 500, cpu: 100_000, full: 1_000_000}
        hyperparameters: {learning_starts: 5000}
        tiers: {smoke: {hyperparameters: {learning_starts: 100}}}   # per-tier overrides of this entry
    references:                    # the papers' numbers, shown beside ours
      - {agent: SAC, task: dmc/cheetah-run, value: 795, budget: 1_000_000, source: "DrQ-v2 paper, Table 1"}
    normalization:                 # optional: (score - low) / (high - low) per task
      source: "random and expert returns from ..."
      tasks: {dmc/cheetah-run: [0, 1000]}

Entry keys: ``agent``, ``tasks``, ``budget``, ``label`` (names a sweep point: runs go to ``<agent>~<label>``),
``hyperparameters``, ``env_kwargs``, ``eval_episodes``, ``eval_every`` (evaluate along the way, in budget
units), ``metric``, ``curve`` (the progress column plotted when there are no evaluations), ``data`` (an
offline agent's data: ``{builder: "module:function", args: {...}}``, built once per distinct arguments into
the suite folder; ``"{seed}"`` in an argument is the run's seed), ``analysis`` (``"module:function"``,
called as ``fn(agent, spec) -> dict`` after training; its numbers join the result), ``seeds``,
``checkpoint_every``, ``checkpoint_interval_s``, ``resources`` (``{cpus, gpus}`` per run, for Ray),
``device``. Anything else is an error that names the key.

Each expanded run is a :class:`RunSpec`; its :attr:`~RunSpec.key` hashes everything that decides its
result, so a finished run is reused only when its definition has not changed.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError

__all__ = [
    "TIERS",
    "Reference",
    "RunSpec",
    "Suite",
    "SuiteError",
    "find_suite",
    "list_suites",
    "load_suite",
    "task_slug",
]

#: the tiers every suite may define, cheapest first
TIERS = ("smoke", "cpu", "full")
_TOP_KEYS = {"name", "description", "metric", "tiers", "defaults", "entries", "references", "normalization"}
_TIER_KEYS = {"seeds", "budget_scale", "eval_episodes", "eval_every_scale", "description"}
_ENTRY_KEYS = {"agent", "tasks", "budget", "label", "hyperparameters", "env_kwargs", "eval_episodes", "eval_every",
               "metric", "curve", "data", "analysis", "seeds", "checkpoint_every", "checkpoint_interval_s",
               "resources", "device", "tiers"}
_OVERRIDABLE = _ENTRY_KEYS - {"agent", "tasks", "label", "tiers"}
_TASK_KEYS = {"id", "env_kwargs", "hyperparameters", "budget", "data", "metric"}
_REFERENCE_KEYS = {"agent", "task", "metric", "value", "source", "budget", "label"}


class SuiteError(ConfigError):
    """A suite definition that cannot be read or expanded (names the file, the place and the fix)."""


def task_slug(task: str) -> str:
    """A task id as one folder name (``dmc/cheetah-run`` -> ``dmc_cheetah-run``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", task.replace("/", "_"))


def _label_slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+~-]+", "_", label)


@dataclasses.dataclass(frozen=True)
class Reference:
    """A published number to show beside ours."""

    agent: str
    task: str
    value: float
    source: str
    metric: str = "return_mean"
    budget: int | None = None
    label: str = ""


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One (agent, task, seed) run of a suite tier, with everything resolved."""

    suite: str
    tier: str
    agent: str
    task: str
    seed: int
    budget: int
    label: str = ""
    hyperparameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    eval_episodes: int = 10
    eval_every: int | None = None
    metric: str = "return_mean"
    curve: str = "return_mean"
    data: Mapping[str, Any] | None = None
    analysis: str | None = None
    checkpoint_every: int | None = None
    checkpoint_interval_s: float | None = 300.0
    resources: Mapping[str, float] = dataclasses.field(default_factory=lambda: {"cpus": 1, "gpus": 0})
    device: str = "cpu"

    #: fields that do not change what a run computes (so changing them keeps a finished run)
    _NOT_IN_KEY = ("suite", "tier", "checkpoint_every", "checkpoint_interval_s", "resources")

    @property
    def group(self) -> str:
        """The row this run belongs to: the agent, with its sweep label."""
        return f"{self.agent}~{self.label}" if self.label else self.agent

    @property
    def run_id(self) -> str:
        """``<agent>[~<label>]/<task_slug>/seed<k>``: the run's folder under the suite's ``runs/``."""
        return f"{_label_slug(self.group)}/{task_slug(self.task)}/seed{self.seed}"

    @property
    def key(self) -> str:
        """A hash of everything that decides the run's result."""
        fields = {k: v for k, v in self.to_dict().items() if k not in self._NOT_IN_KEY}
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (``spec.json`` adds the key and the unit)."""
        return {f.name: copy.deepcopy(dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        """The spec ``to_dict`` wrote (extra keys such as ``key`` and ``unit`` are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def data_key(self) -> str | None:
        """A hash of the resolved data builder and its arguments (runs that share it share the data)."""
        if self.data is None:
            return None
        return hashlib.sha256(json.dumps(self.data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclasses.dataclass
class Suite:
    """A parsed suite definition; :meth:`runs` expands one tier of it."""

    name: str
    description: str
    path: Path | None
    metric: str
    tiers: dict[str, dict[str, Any]]
    defaults: dict[str, Any]
    entries: list[dict[str, Any]]
    references: list[Reference]
    normalization: dict[str, tuple[float, float]]
    normalization_source: str = ""
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def runs(self, tier: str, agents: Sequence[str] | None = None, tasks: Sequence[str] | None = None,
             seeds: Sequence[int] | None = None) -> list[RunSpec]:
        """Every run of ``tier`` (optionally only these agents / tasks / seeds), in definition order."""
        if tier not in self.tiers:
            raise SuiteError(f"suite {self.name!r} has no tier {tier!r}; it defines {', '.join(self.tiers)}")
        tier_spec = self.tiers[tier]
        runs, seen = [], {}
        for index, entry in enumerate(self.entries):
            where = f"{self._where()} entries[{index}] ({entry['agent']})"
            # precedence: suite defaults < the tier's seeds / eval_episodes < the entry < the entry's tier override
            tier_settings = {k: tier_spec[k] for k in ("seeds", "eval_episodes") if k in tier_spec}
            settings = {**self.defaults, **tier_settings, **{k: v for k, v in entry.items() if k in _OVERRIDABLE}}
            for key, value in ((entry.get("tiers") or {}).get(tier) or {}).items():
                merge = key in ("hyperparameters", "env_kwargs", "resources") and isinstance(value, Mapping)
                settings[key] = {**(settings.get(key) or {}), **value} if merge else value
            for task_entry in entry["tasks"]:
                task = task_entry["id"]
                if agents and entry["agent"] not in agents and _group(entry) not in agents:
                    continue
                if tasks and task not in tasks:
                    continue
                spec_settings = dict(settings)
                for key in ("env_kwargs", "hyperparameters"):
                    spec_settings[key] = {**(settings.get(key) or {}), **(task_entry.get(key) or {})}
                for key in ("budget", "data", "metric"):
                    if key in task_entry:
                        spec_settings[key] = task_entry[key]
                for seed in (seeds if seeds is not None else spec_settings.get("seeds", tier_spec["seeds"])):
                    spec = self._spec(where, tier, tier_spec, entry, task, int(seed), spec_settings)
                    if spec.run_id in seen:
                        raise SuiteError(f"{where}: {spec.run_id} is also defined by {seen[spec.run_id]}; give one "
                                         "of them a distinct `label:`")
                    seen[spec.run_id] = where
                    runs.append(spec)
        return runs

    def _where(self) -> str:
        return str(self.path) if self.path is not None else f"suite {self.name!r}"

    def _spec(self, where: str, tier: str, tier_spec: dict, entry: dict, task: str, seed: int,
              settings: dict) -> RunSpec:
        scale = float(tier_spec.get("budget_scale", 1.0))
        budget = settings.get("budget")
        if budget is None:
            raise SuiteError(f"{where}: no budget for {task}; set `budget:` (full-tier units) on the entry")
        if isinstance(budget, Mapping):
            if tier not in budget:
                raise SuiteError(f"{where}: budget gives {sorted(budget)} but not tier {tier!r}")
            budget = int(budget[tier])
        else:
            budget = max(1, int(round(float(budget) * scale)))
        eval_every = settings.get("eval_every")
        if eval_every is not None:
            eval_every = max(1, int(round(float(eval_every) * float(tier_spec.get("eval_every_scale", scale)))))
        data = settings.get("data")
        if data is not None:
            data = {"builder": data["builder"], "args": _with_seed(data.get("args") or {}, seed)}
        resources = {"cpus": 1, "gpus": 0, **(settings.get("resources") or {})}
        return RunSpec(
            suite=self.name, tier=tier, agent=entry["agent"], task=task, seed=seed, budget=budget,
            label=str(entry.get("label") or ""), hyperparameters=dict(settings.get("hyperparameters") or {}),
            env_kwargs=dict(settings.get("env_kwargs") or {}),
            eval_episodes=int(settings.get("eval_episodes", tier_spec.get("eval_episodes", 10))),
            eval_every=eval_every, metric=str(settings.get("metric", self.metric)),
            curve=str(settings.get("curve", "return_mean")), data=data, analysis=settings.get("analysis"),
            checkpoint_every=settings.get("checkpoint_every"),
            checkpoint_interval_s=settings.get("checkpoint_interval_s", 300.0),
            resources=resources, device=str(settings.get("device", "cpu")))

    def metadata(self, tier: str) -> dict[str, Any]:
        """What a suite folder's ``suite.json`` records (the report reads it)."""
        return {"name": self.name, "tier": tier, "description": self.description, "metric": self.metric,
                "references": [dataclasses.asdict(r) for r in self.references],
                "normalization": {t: list(v) for t, v in self.normalization.items()},
                "normalization_source": self.normalization_source}


def _group(entry: Mapping[str, Any]) -> str:
    return f"{entry['agent']}~{entry['label']}" if entry.get("label") else entry["agent"]


def _with_seed(value: Any, seed: int) -> Any:
    if isinstance(value, str):
        return seed if value == "{seed}" else value.replace("{seed}", str(seed))
    if isinstance(value, Mapping):
        return {k: _with_seed(v, seed) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_seed(v, seed) for v in value]
    return value


# --------------------------------------------------------------------------- reading and checking


def _unknown(where: str, data: Mapping, allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise SuiteError(f"{where}: unknown key(s) {extra}; allowed: {', '.join(sorted(allowed))}")


def _positive_int(where: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SuiteError(f"{where}: {name} must be a positive integer, got {value!r}")


def _check_settings(where: str, settings: Mapping[str, Any]) -> None:
    for name in ("eval_episodes", "eval_every", "checkpoint_every"):
        if settings.get(name) is not None:
            _positive_int(where, name, settings[name])
    budget = settings.get("budget")
    if isinstance(budget, Mapping):
        _unknown(f"{where} budget", budget, set(TIERS))
        for tier, value in budget.items():
            _positive_int(where, f"budget.{tier}", value)
    elif budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0):
        raise SuiteError(f"{where}: budget must be a positive number or one per tier, got {budget!r}")
    for name in ("hyperparameters", "env_kwargs", "resources"):
        if settings.get(name) is not None and not isinstance(settings[name], Mapping):
            raise SuiteError(f"{where}: {name} must be a mapping, got {settings[name]!r}")
    if settings.get("resources"):
        _unknown(f"{where} resources", settings["resources"], {"cpus", "gpus"})
    interval = settings.get("checkpoint_interval_s")
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, (int, float))
                                 or not interval > 0):
        raise SuiteError(f"{where}: checkpoint_interval_s must be a positive number of seconds, got {interval!r}")
    if settings.get("analysis") is not None and ":" not in str(settings["analysis"]):
        raise SuiteError(f"{where}: analysis must be 'module:function', got {settings['analysis']!r}")
    data = settings.get("data")
    if data is not None:
        if not isinstance(data, Mapping) or ":" not in str(data.get("builder", "")):
            raise SuiteError(f"{where}: data must be {{builder: 'module:function', args: {{...}}}}, got {data!r}")
        _unknown(f"{where} data", data, {"builder", "args"})
    seeds = settings.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not seeds
                              or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise SuiteError(f"{where}: seeds must be a non-empty list of integers, got {seeds!r}")


def parse_suite(raw: Mapping[str, Any], path: Path | None = None, check_agents: bool = True) -> Suite:
    """A :class:`Suite` from its YAML mapping, every key checked (``check_agents``: agent names and their
    hyperparameter names against the registered agents)."""
    where = str(path) if path is not None else "suite"
    if not isinstance(raw, Mapping):
        raise SuiteError(f"{where}: a suite is a mapping with name, tiers and entries, got {type(raw).__name__}")
    _unknown(where, raw, _TOP_KEYS)
    for key in ("name", "tiers", "entries"):
        if key not in raw:
            raise SuiteError(f"{where}: missing `{key}:`")
    tiers = raw["tiers"]
    if not isinstance(tiers, Mapping) or not tiers:
        raise SuiteError(f"{where}: tiers must map tier names ({', '.join(TIERS)}) to settings")
    _unknown(f"{where} tiers", tiers, set(TIERS))
    for name, tier in tiers.items():
        if not isinstance(tier, Mapping) or "seeds" not in tier:
            raise SuiteError(f"{where} tiers.{name}: needs `seeds: [...]`")
        _unknown(f"{where} tiers.{name}", tier, _TIER_KEYS)
        _check_settings(f"{where} tiers.{name}", tier)
        for scale_key in ("budget_scale", "eval_every_scale"):
            if scale_key in tier and not (isinstance(tier[scale_key], (int, float)) and tier[scale_key] > 0):
                raise SuiteError(f"{where} tiers.{name}: {scale_key} must be a positive number")
    defaults = dict(raw.get("defaults") or {})
    _unknown(f"{where} defaults", defaults, _OVERRIDABLE)
    _check_settings(f"{where} defaults", defaults)
    registered = None
    if check_agents:
        from zoo.agents import list_agents

        registered = set(list_agents())
    entries = []
    if not isinstance(raw["entries"], list) or not raw["entries"]:
        raise SuiteError(f"{where}: entries must be a non-empty list")
    for index, entry in enumerate(raw["entries"]):
        at = f"{where} entries[{index}]"
        if not isinstance(entry, Mapping) or "agent" not in entry or "tasks" not in entry:
            raise SuiteError(f"{at}: each entry needs `agent:` and `tasks:`")
        _unknown(at, entry, _ENTRY_KEYS)
        entry = dict(entry)
        if registered is not None and entry["agent"] not in registered:
            raise SuiteError(f"{at}: no agent {entry['agent']!r}; agents: {', '.join(sorted(registered))}")
        _check_settings(at, entry)
        tasks = entry["tasks"] if isinstance(entry["tasks"], list) else [entry["tasks"]]
        entry["tasks"] = []
        for t in tasks:
            task = {"id": t} if isinstance(t, str) else dict(t) if isinstance(t, Mapping) else None
            if task is None or not isinstance(task.get("id"), str) or "/" not in task["id"]:
                raise SuiteError(f"{at}: a task is an env id 'suite/task' or {{id: ..., env_kwargs: ...}}, got {t!r}")
            _unknown(f"{at} task {task['id']}", task, _TASK_KEYS)
            _check_settings(f"{at} task {task['id']}", task)
            entry["tasks"].append(task)
        per_tier = entry.get("tiers") or {}
        _unknown(f"{at} tiers", per_tier, set(TIERS))
        for name, override in per_tier.items():
            _unknown(f"{at} tiers.{name}", override or {}, _OVERRIDABLE)
            _check_settings(f"{at} tiers.{name}", override or {})
        if registered is not None:
            _check_hyperparameters(at, entry)
        entries.append(entry)
    references = []
    for index, ref in enumerate(raw.get("references") or []):
        at = f"{where} references[{index}]"
        if not isinstance(ref, Mapping) or not {"agent", "task", "value", "source"} <= set(ref):
            raise SuiteError(f"{at}: a reference needs agent, task, value and source")
        _unknown(at, ref, _REFERENCE_KEYS)
        references.append(Reference(agent=str(ref["agent"]), task=str(ref["task"]), value=float(ref["value"]),
                                    source=str(ref["source"]), metric=str(ref.get("metric", raw.get("metric", "return_mean"))),
                                    budget=ref.get("budget"), label=str(ref.get("label") or "")))
    norm = raw.get("normalization") or {}
    _unknown(f"{where} normalization", norm, {"source", "tasks"})
    normalization = {}
    for task, bounds in (norm.get("tasks") or {}).items():
        if not (isinstance(bounds, list) and len(bounds) == 2 and float(bounds[1]) != float(bounds[0])):
            raise SuiteError(f"{where} normalization.tasks.{task}: give [low, high] with low != high, got {bounds!r}")
        normalization[str(task)] = (float(bounds[0]), float(bounds[1]))
    return Suite(name=str(raw["name"]), description=str(raw.get("description", "")), path=path,
                 metric=str(raw.get("metric", "return_mean")), tiers={k: dict(v) for k, v in tiers.items()},
                 defaults=defaults, entries=entries, references=references, normalization=normalization,
                 normalization_source=str(norm.get("source", "")), raw=dict(raw))


def _check_hyperparameters(where: str, entry: Mapping[str, Any]) -> None:
    """Hyperparameter names checked against the agent's config (values are checked when the run builds it)."""
    from zoo.agents import get_agent

    fields = {f.name for f in dataclasses.fields(get_agent(entry["agent"]).config_class)}
    places = [entry.get("hyperparameters") or {}] + [t.get("hyperparameters") or {} for t in entry["tasks"]] + \
        [(o or {}).get("hyperparameters") or {} for o in (entry.get("tiers") or {}).values()]
    for hyperparameters in places:
        unknown = sorted(set(hyperparameters) - fields)
        if unknown:
            raise SuiteError(f"{where}: {entry['agent']} has no hyperparameter(s) {unknown}; "
                             f"`zoo train {entry['agent']} --set KEY=VALUE` takes: {', '.join(sorted(fields))}")


def suite_dirs() -> list[Path]:
    """Where suites are looked up by name: ``$ZOO_SUITES`` (colon-separated), ``benchmarks/suites`` in the
    current directory or a parent, and the one beside the installed package (a source checkout)."""
    dirs = [Path(p) for p in os.environ.get("ZOO_SUITES", "").split(os.pathsep) if p]
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "benchmarks" / "suites").is_dir():
            dirs.append(folder / "benchmarks" / "suites")
            break
    dirs.append(Path(__file__).resolve().parents[2] / "benchmarks" / "suites")
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def list_suites() -> dict[str, Path]:
    """Suite name -> definition file, over :func:`suite_dirs` (the first found wins)."""
    found: dict[str, Path] = {}
    for folder in suite_dirs():
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def find_suite(name_or_path: str | os.PathLike) -> Path:
    """A suite's YAML file from its name (see :func:`suite_dirs`) or a path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SuiteError(f"no suite file {str(path)!r}")
        return path
    suites = list_suites()
    if str(name_or_path) not in suites:
        raise SuiteError(f"unknown benchmark suite {str(name_or_path)!r}; available: "
                         f"{', '.join(sorted(suites)) or 'none found'} (a path to a .yaml file also works; "
                         "suites are looked up in $ZOO_SUITES and benchmarks/suites)")
    return suites[str(name_or_path)]


def load_suite(name_or_path: str | os.PathLike, check_agents: bool = True) -> Suite:
    """Read and check a suite definition (a name or a path)."""
    import yaml

    path = find_suite(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML: {exc}") from exc
    return parse_suite(raw, path=path, check_agents=check_agents)
