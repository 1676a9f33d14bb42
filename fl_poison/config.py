"""One flat set of kebab-case run keys, validated once before anything runs.

The same keys come from an experiment TOML, ``--set key=value`` on the CLI and
``flwr run . --run-config``. Every key has a type, a default and a check;
:func:`resolve` returns a complete, validated :class:`Config` or raises
:class:`ConfigError` naming the key, the bad value and what is allowed.

Optional numeric settings use ``-1`` for "off / unset" because Flower's run
config has no null (e.g. ``source-class = -1`` means no source class).
"""

from __future__ import annotations

import math
import numbers

import difflib
import importlib
import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping

#: experiment trackers (fl_poison/tracking.py); each but none is an optional extra
TRACKING_CHOICES = ("none", "tensorboard", "mlflow")
#: Core keys whose choices are another layer's registry: (module, its attribute listing the names, choices the
#: key adds in front). :func:`schema` reads them by module name -- they import torch and this module, so this,
#: the lowest layer, cannot import them -- and a new data set or model is a key's choice without a second list.
CHOICES_FROM: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "dataset": ("fl_poison.data.datasets", "DATASETS", ()),
    "model": ("fl_poison.models", "MODEL_NAMES", ("auto",)),
}


class ConfigError(ValueError):
    """An invalid run configuration; the message names the key and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"invalid value for '{key}': {value!r} — {allowed}")


def _num(v: float) -> str:
    """A bound as the messages write it: 0, 0.5, -1 (no trailing .0)."""
    return f"{v:g}"


@dataclass(frozen=True)
class Interval:
    """A numeric key's allowed values, declared once: its check, its message and its edge cases.

    In the style of scikit-learn's parameter constraints: the run key's check
    (``__call__``), the text ``ConfigError`` shows (:attr:`allowed`), the
    ValueError a pure function raises for a direct caller (:meth:`validate`)
    and the values a test probes (:meth:`edges`) all come from these fields, so
    a bound and the message that states it cannot drift apart.

    ``closed``: which ends belong to the interval ("left", "right", "both",
    "neither"). ``off``: a sentinel outside it that means off / unset (the run
    config has no null, so ``-1``); ``off_means`` completes its phrase
    (``" for all"``). ``noun`` replaces "an integer" / "a number"; ``also``
    names a relation to other keys that :mod:`fl_poison.relations` checks
    (``"and <= num-clients"``). Non-finite numbers are refused: ``inf`` would
    pass every lower bound.
    """

    type: type
    low: float | None = None
    high: float | None = None
    closed: str = "left"
    off: float | None = None
    off_means: str = ""
    noun: str = ""
    also: str = ""

    def __post_init__(self) -> None:
        if self.type not in (int, float) or self.closed not in ("left", "right", "both", "neither"):
            raise TypeError(f"Interval needs type int or float and closed left/right/both/neither, got "
                            f"{self.type!r}, {self.closed!r}")

    @property
    def _low_in(self) -> bool:
        return self.closed in ("left", "both")

    @property
    def _high_in(self) -> bool:
        return self.closed in ("right", "both")

    def __call__(self, v: Any) -> bool:
        """The check: True when ``v`` is the sentinel or inside the interval."""
        if isinstance(v, bool) or not isinstance(v, numbers.Integral if self.type is int else numbers.Real):
            return False
        if self.off is not None and v == self.off:
            return True
        if not math.isfinite(v):
            return False
        if self.low is not None and (v < self.low or (v == self.low and not self._low_in)):
            return False
        if self.high is not None and (v > self.high or (v == self.high and not self._high_in)):
            return False
        return True

    @property
    def allowed(self) -> str:
        """The message: "an integer >= 1, or -1 for all", "a number in [0, 0.5)", "a number > 0"."""
        noun = self.noun or ("an integer" if self.type is int else "a number")
        if self.low is not None and self.high is not None:
            text = (f"{noun} in {'[' if self._low_in else '('}{_num(self.low)}, "
                    f"{_num(self.high)}{']' if self._high_in else ')'}")
        elif self.low is not None:
            text = f"{noun} {'>=' if self._low_in else '>'} {_num(self.low)}"
        elif self.high is not None:
            text = f"{noun} {'<=' if self._high_in else '<'} {_num(self.high)}"
        else:
            text = noun
        if self.also:
            text += f" {self.also}"
        if self.off is not None:
            text += f", or {_num(self.off)}{self.off_means}"
        return text

    def refusal(self, name: str, value: Any) -> str:
        """The ValueError text of a pure function that takes this parameter as ``name``."""
        return f"{name} must be {self.allowed}, got {value!r}"

    def validate(self, value: Any, name: str) -> Any:
        """``value`` when allowed, else ValueError with :meth:`refusal` (for direct callers of a pure rule)."""
        if not self(value):
            raise ValueError(self.refusal(name, value))
        return value

    def edges(self) -> list[tuple[Any, bool]]:
        """``(value, allowed)`` on and just beyond each finite bound, and the sentinel: what a test probes."""
        out: list[tuple[Any, bool]] = []

        def step(v: float, towards: float) -> float:
            return v + (1 if towards > v else -1) if self.type is int else math.nextafter(v, towards)

        for bound, inside, outward, inward in ((self.low, self._low_in, -math.inf, math.inf),
                                               (self.high, self._high_in, math.inf, -math.inf)):
            if bound is None:
                continue
            bound = self.type(bound)
            out.append((bound, inside or bound == self.off))
            beyond = step(bound, outward)
            if beyond == self.off:  # -1 next to a bound of 0: the first refused value is one further
                beyond = step(beyond, outward)
            out.append((beyond, False))
            if not inside:
                out.append((step(bound, inward), True))
        if self.off is not None:
            out.append((self.type(self.off), True))
        return out


@dataclass(frozen=True)
class NumberOrWord:
    """A text key holding a number of ``number`` or one of ``words`` (``"median"``): one declaration.

    :meth:`parse` is what the pure function calls (the number as a float, or
    the word; ValueError otherwise), ``__call__`` the run key's check and
    :attr:`allowed` the message of both.
    """

    number: Interval
    words: tuple[str, ...]

    @property
    def low(self) -> float | None:
        return self.number.low

    @property
    def high(self) -> float | None:
        return self.number.high

    @property
    def allowed(self) -> str:
        quoted = [f"'{w}'" for w in self.words]
        tail = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        return f"{self.number.allowed}, {'or ' if len(quoted) == 1 else ''}{tail}"

    def refusal(self, name: str, value: Any) -> str:
        return f"{name} must be {self.allowed}, got {value!r}"

    def parse(self, value: Any, name: str) -> float | str:
        if isinstance(value, str) and value in self.words:
            return value
        try:
            number = None if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            number = None
        if number is None or not self.number(number):
            raise ValueError(self.refusal(name, value))
        return number

    def __call__(self, value: Any) -> bool:
        try:
            self.parse(value, "value")
        except ValueError:
            return False
        return True

    def edges(self) -> list[tuple[Any, bool]]:
        """The number's edges as the text the key holds, each word, and a word it refuses."""
        return [(str(v), ok) for v, ok in self.number.edges()] + [(w, True) for w in self.words] + \
            [("not-a-" + "-".join(self.words), False)]


@dataclass(frozen=True)
class Key:
    """One run key: its type, default, allowed values and a one-line help.

    A numeric key declares its bounds once as ``constraint`` (an
    :class:`Interval`); ``check`` and ``allowed`` are then derived from it, so
    the two cannot say different things. A key with another rule passes
    ``check`` and ``allowed`` itself.
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], bool] | None = None
    allowed: str = ""
    #: keyword argument of the plug-in's constructor that receives the value (plug-in keys only)
    param: str | None = None
    constraint: Interval | NumberOrWord | None = None

    def __post_init__(self) -> None:
        c = self.constraint
        if c is None:
            return
        if (self.check is not None and self.check is not c) or self.allowed not in ("", c.allowed):
            raise TypeError(f"run key {self.name!r} declares a constraint and its own check / allowed: "
                            "declare one (the constraint derives both)")
        object.__setattr__(self, "check", c)
        object.__setattr__(self, "allowed", c.allowed)


def at_least(lo: float, type: type = int, **more: Any) -> Interval:
    """``>= lo`` (e.g. ``at_least(1)``: "an integer >= 1")."""
    return Interval(type, lo, **more)


def above(lo: float, type: type = float, **more: Any) -> Interval:
    """``> lo`` (e.g. ``above(0)``: "a number > 0")."""
    return Interval(type, lo, closed="neither", **more)


def at_least_or_off(lo: int, off: str = "", **more: Any) -> Interval:
    """An integer key that is ``>= lo`` or ``-1`` (off); ``off`` completes the message, e.g. ``" for all"``."""
    return Interval(int, lo, off=-1, off_means=off, **more)


#: A class of the data set (its upper end, num_classes - 1, is checked by :mod:`fl_poison.relations`), or -1 for none.
CLASS_OR_NONE = Interval(int, 0, off=-1, noun="a class index of the data set, an integer")


#: The defense of a run that names none: plain federated averaging. The one plug-in the core names, as the
#: default of its ``defense`` key (``attack``'s default, ``none``, is the honest behaviour itself).
DEFAULT_DEFENSE = "fedavg"

CORE_KEYS: tuple[Key, ...] = (
    # --- data and model -------------------------------------------------------
    Key("dataset", str, "digits", "data set", ()),  # choices: CHOICES_FROM
    Key("data-dir", str, "data", "folder holding the data set files (<data-dir>/<dataset>/...)"),
    Key("model", str, "auto", "model architecture; auto = the data set's default", ()),  # choices: CHOICES_FROM
    Key("dropout", float, -1.0, "dropout probability of models that have dropout (-1 = the model's default)",
        constraint=Interval(float, 0, 1, off=-1, off_means=" for the model's default")),
    Key("partition", str, "iid", "how training data is split among clients", ("iid", "dirichlet", "extreme")),
    Key("train-samples", int, -1, "use a seeded random subset of this many training samples (-1 = all)",
        constraint=at_least_or_off(1, " for all")),
    Key("dirichlet-alpha", float, 1.0, "concentration of the Dirichlet split", constraint=above(0)),
    # --- federation -------------------------------------------------------------
    Key("num-clients", int, 10, "clients in the federation", constraint=at_least(1)),
    Key("clients-per-round", int, 10, "clients sampled each round", constraint=at_least(1, also="and <= num-clients")),
    Key("num-rounds", int, 10, "federated rounds", constraint=at_least(1)),
    Key("seed", int, 0, "seed of everything random in the run", constraint=at_least(0)),
    # --- local training -------------------------------------------------------
    Key("local-epochs", int, 1, "local epochs per round", constraint=at_least(1)),
    Key("batch-size", int, 32, "local mini-batch size", constraint=at_least(1)),
    Key("lr", float, 0.05, "local learning rate", constraint=above(0)),
    Key("momentum", float, 0.9, "SGD momentum", constraint=Interval(float, 0, 1)),
    Key("weight-decay", float, 0.0, "L2 weight decay", constraint=at_least(0, float)),
    Key("optimizer", str, "sgd", "local optimiser", ("sgd", "adam")),
    Key("received-eval-samples", int, 512, "local samples a client scores the received model on (-1 = all, 0 = off)",
        constraint=at_least_or_off(0, " for all")),
    Key("eval-batch-size", int, 1000, "batch size of the central evaluation", constraint=at_least(1)),
    # --- attack ---------------------------------------------------------------
    Key("attack", str, "none", "what malicious clients do (an attack plug-in)", ()),
    Key("source-class", int, -1, "attacked class (-1 = none)", constraint=CLASS_OR_NONE),
    Key("target-class", int, -1, "class the source is flipped to (-1 = none)", constraint=CLASS_OR_NONE),
    Key("malicious-fraction", float, 0.0, "share of clients that are malicious", constraint=Interval(float, 0, 1, closed="both")),
    Key("num-malicious", int, -1, "number of malicious clients (-1 = use malicious-fraction)", constraint=at_least_or_off(0)),
    Key("malicious-from-source-holders", bool, False, "draw attackers only among clients holding the source class"),
    Key("attack-start-round", int, 1, "first round the attackers poison", constraint=at_least(1)),
    Key("attack-end-round", int, -1, "last round the attackers poison (-1 = to the end)", constraint=at_least_or_off(1)),
    Key("honest-holds-source", bool, True, "honest clients hold source-class samples (false = the ADA authors' "
        "split: they hold none; attackers draw source + clean samples afresh each round from the samples no "
        "honest client holds)"),
    Key("malicious-availability", float, -1.0, "probability a sampled slot goes to an attacker (-1 = uniform sampling)",
        constraint=Interval(float, 0, 1, closed="both", off=-1, off_means=" for uniform sampling")),
    # --- defense --------------------------------------------------------------
    Key("defense", str, DEFAULT_DEFENSE, "aggregation rule / defense (a defense plug-in)", ()),
    Key("aggregation-weights", str, "examples", "weight of a client in averaging defenses: examples = its "
        "example count (FedAvg); uniform = equal (the ADA authors' code)", ("examples", "uniform")),
    Key("pre-aggregation", str, "none", "mixing before the defense's rule: nnm = each update becomes the mean of "
        "its clients-per-round - num-byzantine nearest (Allouah et al. 2023); bucketing = means of random buckets "
        "of bucket-size (Karimireddy et al. 2022)", ("none", "nnm", "bucketing")),
    Key("server-data-samples", int, -1, "training samples held out of the clients' data as the server's root set "
        "(-1 = 100, FLTrust's, for a defense that needs one, else 0)", constraint=at_least_or_off(0)),
    Key("server-steps", str, "client", "local SGD steps of the server on its root set: client = as many as a "
        "client of mean size takes (FLTrust's same local iterations; the root set is cycled), epochs = "
        "local-epochs passes over the root set", ("client", "epochs")),
    Key("bucket-size", int, 2, "updates per bucket of pre-aggregation=bucketing", constraint=at_least(1)),
    # --- output ---------------------------------------------------------------
    Key("out-dir", str, "results", "folder that receives run directories"),
    Key("run-name", str, "", "name of the run directory ('' = generated)"),
    Key("figures", bool, True, "write PNG figures"),
    Key("capture-updates", bool, False, "store output-neuron gradients each round and draw the PCA view"),
    Key("tracking", str, "none", "also log the config and rounds.csv's metrics to a local experiment tracker "
        "under the run directory (tensorboard/, mlruns/); needs pip install 'fl-poison[tensorboard]' / "
        "'fl-poison[mlflow]'", TRACKING_CHOICES),
    # --- deployment ----------------------------------------------------------
    Key("round-timeout", float, 3600.0, "seconds a round waits for replies; missing replies are recorded",
        constraint=above(0, noun="a number of seconds")),
    Key("red-team-file", str, "", "operator's list of malicious node ids / names, for measurement only "
        "('' = the run plan in simulation; no detection metrics when nodes set their own role)"),
    Key("wait-for-nodes", float, 600.0, "seconds the ServerApp waits for num-clients SuperNodes to connect",
        constraint=above(0, noun="a number of seconds")),
    # --- speed and scale -----------------------------------------------------
    Key("engine", str, "auto", "how fl-poison run executes a round's clients: serial (one after another in this "
        "process), parallel (engine-workers forked processes), batched (every client whose round is training on "
        "its possibly modified data as one vectorised computation, the others through the ClientApp); auto = "
        "batched on CUDA where the model allows, else parallel", ("auto", "serial", "parallel", "batched")),
    Key("engine-memory-mb", int, -1, "memory budget of one batched chunk of clients in MiB (model copies, "
        "optimiser state, activations; -1 = 80% of the device's free memory)",
        constraint=at_least_or_off(1, " for 80% of the free memory")),
    Key("engine-workers", int, -1, "worker processes of fl-poison's in-process engine (-1 = one per core, "
        "1 = serial in this process)", constraint=at_least_or_off(1, " for one per core")),
    Key("device", str, "auto", "torch device of local training and central evaluation (auto = cuda when present)",
        check=lambda v: v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()),
        allowed="auto, cpu, cuda or cuda:N"),
    # --- start from a saved global model (the ADA paper attacks a converged model) ---------
    Key("initial-model", str, "", "model.npz to start the global model from ('' = fresh, seeded weights)"),
)



@dataclass(frozen=True)
class ByzantineBudget:
    """The f (``num-byzantine``) a rule tolerates with K updates, declared once.

    The pure rule raises :meth:`refusal` for a direct caller (K = the rows it
    gets); the plug-in's ``check_config`` raises :meth:`check` before the run
    (K = clients-per-round). Both test ``fits``, state ``needs`` (``{K}``
    stands for the count) and name ``largest``, so the rule and the run key's
    message cannot disagree on where the budget ends.
    """

    rule: str
    needs: str
    fits: Callable[[int, int], bool]
    #: the largest f that fits K (the hint of a refusal; may be < 0 for a tiny K)
    largest: Callable[[int], int]

    def requirement(self, k_name: str) -> str:
        return f"{self.rule} needs {self.needs.format(K=k_name)}"

    def refusal(self, k: int, f: int) -> str:
        """The ValueError text of the pure rule given ``f`` for ``k`` rows."""
        return (f"num-byzantine={f} is too large for K={k} clients: {self.requirement('K')}, "
                f"i.e. num-byzantine <= {max(0, self.largest(k))}")

    def require(self, k: int, f: int) -> None:
        """ValueError unless ``f`` fits ``k`` rows; f = 0 always passes (there is no f to lower)."""
        if f > 0 and not self.fits(k, f):
            raise ValueError(self.refusal(k, f))

    def check(self, k: int, f: int, given: int, off_too: bool = False) -> None:
        """ConfigError on ``num-byzantine`` (its value ``given``) unless the ``f`` it stands for fits ``k``.

        ``off_too``: the message adds that -1 is allowed (where -1 always fits).
        """
        if self.fits(k, f):
            return
        if self.fits(k, 0):
            hint = f"f <= {self.largest(k)}" + (", or -1" if off_too else "")
        else:
            least = next((n for n in range(k + 1, 64 * (k + 2)) if self.fits(n, 0)), None)
            hint = "no f works" + (f": at least {least} clients per round are needed" if least else "")
        raise ConfigError("num-byzantine", given, f"{self.requirement('clients-per-round')}; with {k} clients {hint}")


#: NNM's budget (Allouah et al. 2023: K > 2 f), a core pre-aggregation: checked by :mod:`fl_poison.relations`
#: before the run and by ``strategies.rules.pre_aggregation.nnm`` on its rows.
NNM_BUDGET = ByzantineBudget("pre-aggregation=nnm", "{K} > 2 * num-byzantine", lambda k, f: k > 2 * f,
                             lambda k: (k - 1) // 2)


def core_key(name: str) -> Key:
    """The core key ``name``: a pure function that takes a core key's value validates it by the key's constraint."""
    for k in CORE_KEYS:
        if k.name == name:
            return k
    raise KeyError(name)


@dataclass(frozen=True)
class Schema:
    """The assembled schema: core keys, then every plug-in's keys, and who declared each."""

    keys: tuple[Key, ...]
    owners: dict[str, tuple[str, ...]]  # key name -> ("core",) or ("attack label-flip", "defense krum", ...)

    @property
    def by_name(self) -> dict[str, Key]:
        return {k.name: k for k in self.keys}

    @property
    def defaults(self) -> dict[str, Any]:
        return {k.name: k.default for k in self.keys}


_schema_cache: tuple[int, Schema] | None = None


def schema() -> Schema:
    """Core keys plus the keys the registered plug-ins declare (rebuilt when a plug-in registers).

    The ``attack`` and ``defense`` keys take their choices from the registry, ``dataset`` and ``model``
    from theirs (:data:`CHOICES_FROM`). A
    key declared by several plug-ins (e.g. ``num-byzantine`` by the Krum family)
    must be declared identically -- the same :class:`Key` object, or equal
    fields -- otherwise the defaults would disagree between layers.
    """
    global _schema_cache
    from fl_poison import plugins

    plugins.discover()
    if _schema_cache is not None and _schema_cache[0] == plugins.version:
        return _schema_cache[1]
    version = plugins.version
    attacks, defenses = plugins.plugins("attack"), plugins.plugins("defense")
    keys: dict[str, Key] = {}
    owners: dict[str, list[str]] = {}
    for k in CORE_KEYS:
        if k.name == "attack":
            k = replace(k, choices=tuple(sorted(attacks, key=lambda n: (n != "none", n))))
        elif k.name == "defense":
            k = replace(k, choices=tuple(sorted(defenses, key=lambda n: (n != DEFAULT_DEFENSE, n))))
        elif k.name in CHOICES_FROM:
            module, names, first = CHOICES_FROM[k.name]
            k = replace(k, choices=(*first, *getattr(importlib.import_module(module), names)))
        keys[k.name] = k
        owners[k.name] = ["core"]
    for kind, found in (("attack", attacks), ("defense", defenses)):
        for name, cls in sorted(found.items()):
            for k in getattr(cls, "keys", ()):
                if k.name in keys and owners[k.name] == ["core"]:
                    raise TypeError(f"{kind} plug-in {name!r} redeclares the core key {k.name!r}")
                if k.name in keys and _comparable(keys[k.name]) != _comparable(k):
                    raise TypeError(f"{kind} plug-in {name!r} declares run key {k.name!r} differently from "
                                    f"{', '.join(owners[k.name])}: declare it once and share the Key")
                keys.setdefault(k.name, k)
                owners.setdefault(k.name, []).append(f"{kind} {name}")
    built = Schema(tuple(keys.values()), {n: tuple(o) for n, o in owners.items()})
    _schema_cache = (version, built)
    return built


def _comparable(k: Key) -> tuple:
    return (k.type, k.default, k.help, k.choices, k.allowed, k.param)


def stored_value(cfg: Mapping[str, Any], key: str) -> Any:
    """``cfg[key]`` of a stored run's config; a key it lacks (the run predates the key) held its default."""
    if key in cfg:
        return cfg[key]
    found = schema().by_name.get(key)
    return found.default if found is not None else None


def __getattr__(name: str) -> Any:
    """``SCHEMA`` / ``KEYS`` / ``DEFAULTS`` are views of the assembled :func:`schema`."""
    if name == "SCHEMA":
        return schema().keys
    if name == "KEYS":
        return schema().by_name
    if name == "DEFAULTS":
        return schema().defaults
    raise AttributeError(name)


class Config(Mapping[str, Any]):
    """A validated, complete, read-only run configuration."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def digest(self) -> str:
        """Short stable hash of the configuration (caches, run names)."""
        blob = json.dumps(self._values, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def replace(self, **changes: Any) -> "Config":
        merged = {**self._values, **{k.replace("_", "-"): v for k, v in changes.items()}}
        return resolve(merged)

    @property
    def has_attack(self) -> bool:
        return self["attack"] != "none"

    @property
    def source(self) -> int | None:
        return None if self["source-class"] < 0 else int(self["source-class"])

    @property
    def target(self) -> int | None:
        return None if self["target-class"] < 0 else int(self["target-class"])


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, schema().by_name, n=3)
    return f"did you mean {', '.join(close)}?" if close else "see `fl-poison keys` for the list"


def coerce(key: Key, value: Any) -> Any:
    """Convert a TOML / CLI / Flower value to the key's type, or raise ConfigError."""
    if key.type is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(key.name, value, "true or false")
    if key.type is int:
        if isinstance(value, bool):
            raise ConfigError(key.name, value, key.allowed or "an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(key.name, value, key.allowed or "an integer")
    if key.type is float:
        if isinstance(value, bool):
            raise ConfigError(key.name, value, key.allowed or "a number")
        out: float | None = None
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value.strip())
            except ValueError:
                pass
        if out is not None and math.isfinite(out):  # inf / nan would pass every `v > 0` check
            return out
        raise ConfigError(key.name, value, (key.allowed or "a number") + ("" if out is None else " (finite)"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ConfigError(key.name, value, key.allowed or "a string")
    if "\x00" in value:  # no path, name or choice holds one; the OS would raise deep inside the run
        raise ConfigError(key.name, value, "text without NUL bytes")
    return value


def parse_assignment(text: str) -> tuple[str, str]:
    """Split ``key=value`` from ``--set``; the value stays a string until coerced."""
    if "=" not in text:
        raise ConfigError(text, text, "--set takes key=value")
    name, value = text.split("=", 1)
    return name.strip(), value.strip()


def resolve(*layers: Mapping[str, Any] | None) -> Config:
    """Merge layers (later wins) over the defaults, coerce and validate everything."""
    s = schema()
    by_name = s.by_name
    merged: dict[str, Any] = s.defaults
    for layer in layers:
        for name, value in (layer or {}).items():
            if name not in by_name:
                raise ConfigError(name, value, f"unknown key; {_suggest(name)}")
            merged[name] = coerce(by_name[name], value)
    for key in s.keys:
        value = merged[key.name]
        if key.choices is not None and value not in key.choices:
            raise ConfigError(key.name, value, f"one of {', '.join(key.choices)}")
        if key.check is not None and not key.check(value):
            raise ConfigError(key.name, value, key.allowed)
    importlib.import_module(RELATIONS_MODULE).check_relations(merged)
    return Config(merged)


#: Where the checks between keys live that need the data sets, models and plug-ins. It imports this module,
#: never the reverse (this is the lowest layer), so :func:`resolve` looks it up by name when it runs.
RELATIONS_MODULE = "fl_poison.relations"


def config_warnings(cfg: Config, given: Iterable[str]) -> list[str]:
    """Legal settings that cannot act, one line each (the run goes on; a sweep may print them once per run).

    ``given``: the keys the user set. A plug-in key set while another attack /
    defense is selected has no effect; each selected plug-in may add its own
    (a ``config_warnings(config)`` class method).
    """
    from fl_poison import plugins

    s = schema()
    given = set(given)
    out = []
    for key in s.keys:
        owners = s.owners.get(key.name, ("core",))
        if key.name not in given or "core" in owners:
            continue
        if key.name == "num-byzantine" and cfg["pre-aggregation"] == "nnm":
            continue  # NNM's f
        if not any(o in (f"attack {cfg['attack']}", f"defense {cfg['defense']}") for o in owners):
            kinds = sorted({o.split()[0] for o in owners})
            out.append(f"'{key.name}' has no effect with " + " and ".join(f"{k}={cfg[k]}" for k in kinds))
    if "bucket-size" in given and cfg["pre-aggregation"] != "bucketing":
        out.append(f"'bucket-size' has no effect with pre-aggregation={cfg['pre-aggregation']}")
    for kind in ("attack", "defense"):
        more = getattr(plugins.get(kind, cfg[kind]), "config_warnings", None)
        if more is not None:
            out += more(cfg)
    return out


def check_class_pair(c: dict[str, Any], spec: Any, attack: str) -> None:
    """Shared by attacks that move a source class onto a target class: both set, both valid."""
    n = spec.num_classes
    for name in ("source-class", "target-class"):
        if c[name] < 0:
            raise ConfigError(name, c[name], f"attack={attack} needs a class 0..{n - 1}")


def describe_keys() -> Iterable[str]:
    """Human-readable lines for `fl-poison keys`, grouped by who declares each key."""
    s = schema()
    groups: dict[str, list[Key]] = {}
    for k in s.keys:
        groups.setdefault(" / ".join(s.owners[k.name]), []).append(k)
    for owner, keys in groups.items():
        yield f"# {owner}"
        for k in keys:
            allowed = f" [{'|'.join(k.choices)}]" if k.choices else (f" [{k.allowed}]" if k.allowed else "")
            yield f"  {k.name:32s} {k.default!r:>14}  {k.help}{allowed}"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def render_flwr_config() -> str:
    """The ``[tool.flwr.app.config]`` table of pyproject.toml: every run key with its default."""
    lines = ["[tool.flwr.app.config]"]
    lines += [f"{k.name} = {_toml_value(k.default)}" for k in schema().keys]
    return "\n".join(lines) + "\n"


FLWR_CONFIG_MARKER = "# Every run key with its default (generated by `fl-poison keys --write-pyproject`; a test checks it)."


def write_pyproject(path: str) -> bool:
    """Regenerate the run-config table in ``path`` in place; True when the file changed."""
    from pathlib import Path

    p = Path(path)
    text = p.read_text()
    start = text.index("[tool.flwr.app.config]")
    end = text.find("\n[", start + 1)
    head = text[:start].rstrip("\n")
    if head.splitlines()[-1].startswith("# Every run key"):
        head = "\n".join(head.splitlines()[:-1]).rstrip("\n")
    new = head + "\n\n" + FLWR_CONFIG_MARKER + "\n" + render_flwr_config() + (text[end:] if end >= 0 else "")
    if new != text:
        p.write_text(new)
        return True
    return False
