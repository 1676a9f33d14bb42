"""One flat set of kebab-case run keys, validated once before anything runs.

The same keys come from an experiment TOML, ``--set key=value`` on the CLI and
``flwr run . --run-config``. Every key has a type, a default and a check;
:func:`resolve` returns a complete, validated :class:`Config` or raises
:class:`ConfigError` naming the key, the bad value and what is allowed.

Optional numeric settings use ``-1`` for "off / unset" because Flower's run
config has no null (e.g. ``source-class = -1`` means no source class).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

DATASET_CHOICES = ("digits", "mnist", "fashion-mnist", "cifar10")
MODEL_CHOICES = (
    "auto", "mlp", "lfighter-cnn", "tolpegin-fmnist-cnn", "tolpegin-cifar-cnn", "ada-cnn", "resnet18",
)
ATTACK_CHOICES = ("none", "label-flip", "untargeted-flip")
DEFENSE_CHOICES = (
    "fedavg", "median", "trimmed-mean", "repeated-median", "krum", "multi-krum", "bulyan",
    "foolsgold", "ndc", "pca", "lfighter",
)


class ConfigError(ValueError):
    """An invalid run configuration; the message names the key and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"invalid value for '{key}': {value!r} — {allowed}")


@dataclass(frozen=True)
class Key:
    """One run key: its type, default, allowed values and a one-line help."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], bool] | None = None
    allowed: str = ""


def _ge(lo: float) -> Callable[[Any], bool]:
    return lambda v: v >= lo


def _unit(v: float) -> bool:
    return 0.0 <= v <= 1.0


def _unit_or_off(v: float) -> bool:
    return v == -1 or 0.0 <= v <= 1.0


SCHEMA: tuple[Key, ...] = (
    # --- data and model -------------------------------------------------------
    Key("dataset", str, "digits", "data set", DATASET_CHOICES),
    Key("data-dir", str, "data", "folder holding the data set files (<data-dir>/<dataset>/...)"),
    Key("model", str, "auto", "model architecture; auto = the data set's default", MODEL_CHOICES),
    Key("dropout", float, -1.0, "dropout probability of models that have dropout (-1 = the model's default)",
        check=lambda v: v == -1 or 0 <= v < 1, allowed="a number in [0, 1), or -1 for the model's default"),
    Key("partition", str, "iid", "how training data is split among clients", ("iid", "dirichlet", "extreme")),
    Key("train-samples", int, -1, "use a seeded random subset of this many training samples (-1 = all)",
        check=lambda v: v == -1 or v >= 1, allowed="an integer >= 1, or -1 for all"),
    Key("dirichlet-alpha", float, 1.0, "concentration of the Dirichlet split", check=lambda v: v > 0, allowed="a number > 0"),
    # --- federation -------------------------------------------------------------
    Key("num-clients", int, 10, "clients in the federation", check=_ge(1), allowed="an integer >= 1"),
    Key("clients-per-round", int, 10, "clients sampled each round", check=_ge(1), allowed="an integer >= 1 and <= num-clients"),
    Key("num-rounds", int, 10, "federated rounds", check=_ge(1), allowed="an integer >= 1"),
    Key("seed", int, 0, "seed of everything random in the run", check=_ge(0), allowed="an integer >= 0"),
    # --- local training -------------------------------------------------------
    Key("local-epochs", int, 1, "local epochs per round", check=_ge(1), allowed="an integer >= 1"),
    Key("batch-size", int, 32, "local mini-batch size", check=_ge(1), allowed="an integer >= 1"),
    Key("lr", float, 0.05, "local learning rate", check=lambda v: v > 0, allowed="a number > 0"),
    Key("momentum", float, 0.9, "SGD momentum", check=lambda v: 0 <= v < 1, allowed="a number in [0, 1)"),
    Key("weight-decay", float, 0.0, "L2 weight decay", check=_ge(0), allowed="a number >= 0"),
    Key("optimizer", str, "sgd", "local optimiser", ("sgd", "adam")),
    Key("received-eval-samples", int, 512, "local samples a client scores the received model on (-1 = all, 0 = off)",
        check=lambda v: v >= -1, allowed="an integer >= 0, or -1 for all"),
    Key("eval-batch-size", int, 1000, "batch size of the central evaluation", check=_ge(1), allowed="an integer >= 1"),
    # --- attack ---------------------------------------------------------------
    Key("attack", str, "none", "what malicious clients do", ATTACK_CHOICES),
    Key("source-class", int, -1, "attacked class (-1 = none)", check=_ge(-1), allowed="a class index of the data set, or -1"),
    Key("target-class", int, -1, "class the source is flipped to (-1 = none)", check=_ge(-1), allowed="a class index of the data set, or -1"),
    Key("malicious-fraction", float, 0.0, "share of clients that are malicious", check=_unit, allowed="a number in [0, 1]"),
    Key("num-malicious", int, -1, "number of malicious clients (-1 = use malicious-fraction)", check=_ge(-1), allowed="an integer >= 0, or -1"),
    Key("malicious-from-source-holders", bool, False, "draw attackers only among clients holding the source class"),
    Key("injection-rate", float, -1.0, "poisoned share of an attacker's local set (-1 = all local data, source flipped)",
        check=lambda v: v == -1 or 0 < v <= 1, allowed="a number in (0, 1], or -1 for off"),
    Key("flip-map", str, "reverse", "untargeted flipping: y -> C-1-y, or a seeded derangement", ("reverse", "random")),
    Key("attack-start-round", int, 1, "first round the attackers poison", check=_ge(1), allowed="an integer >= 1"),
    Key("attack-end-round", int, -1, "last round the attackers poison (-1 = to the end)", check=_ge(-1), allowed="an integer >= 1, or -1"),
    Key("malicious-availability", float, -1.0, "probability a sampled slot goes to an attacker (-1 = uniform sampling)",
        check=_unit_or_off, allowed="a number in [0, 1], or -1 for uniform sampling"),
    # --- defense --------------------------------------------------------------
    Key("defense", str, "fedavg", "aggregation rule / defense", DEFENSE_CHOICES),
    Key("trim-beta", float, 0.1, "fraction trimmed from each end (trimmed-mean)", check=lambda v: 0 <= v < 0.5, allowed="a number in [0, 0.5)"),
    Key("num-byzantine", int, -1, "f assumed by Krum / multi-Krum / Bulyan (-1 = the largest the rule tolerates)", check=_ge(-1), allowed="an integer >= 0, or -1"),
    Key("multi-krum-keep", int, -1, "updates multi-Krum averages (-1 = clients-per-round - f)", check=_ge(-1), allowed="an integer >= 1, or -1"),
    Key("repeated-median-reweight", bool, False, "repeated median with residual-based reweighting"),
    Key("foolsgold-features", str, "output-layer", "what FoolsGold accumulates per client", ("output-layer", "all")),
    Key("ndc-bound", str, "median", "norm bound of NDC: a number > 0, or 'median' (the round's median norm)"),
    Key("ndc-mode", str, "clip", "NDC clips large updates or drops them", ("clip", "drop")),
    Key("pca-class", int, -1, "output neuron the PCA filter inspects (-1 = choose each round)", check=_ge(-1), allowed="a class index of the data set, or -1"),
    Key("pca-visualise-only", bool, False, "PCA detects but keeps everyone (the paper's original use)"),
    Key("lfighter-mode", str, "auto", "LFighter clustering: k-means (mild) or HDBSCAN (extreme); auto follows partition", ("auto", "mild", "extreme")),
    Key("lfighter-min-samples", int, -1, "HDBSCAN min_samples in LFighter's extreme mode (-1 = the paper's: "
        "min_cluster_size=2 only; 1 lets two clients form a cluster)", check=lambda v: v == -1 or v >= 1,
        allowed="an integer >= 1, or -1"),
    # --- output ---------------------------------------------------------------
    Key("out-dir", str, "results", "folder that receives run directories"),
    Key("run-name", str, "", "name of the run directory ('' = generated)"),
    Key("figures", bool, True, "write PNG figures"),
    Key("capture-updates", bool, False, "store output-neuron gradients each round and draw the PCA view"),
    # --- issue 12: speed and scale -----------------------------------------------
    Key("engine-workers", int, -1, "worker processes of fl-poison's in-process engine (-1 = one per core, "
        "1 = serial in this process)", check=lambda v: v == -1 or v >= 1, allowed="an integer >= 1, or -1 for one per core"),
    Key("device", str, "auto", "torch device of local training and central evaluation (auto = cuda when present)",
        check=lambda v: v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()),
        allowed="auto, cpu, cuda or cuda:N"),
)

KEYS: dict[str, Key] = {k.name: k for k in SCHEMA}
DEFAULTS: dict[str, Any] = {k.name: k.default for k in SCHEMA}


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
    close = difflib.get_close_matches(name, KEYS, n=3)
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
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(key.name, value, key.allowed or "a number")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ConfigError(key.name, value, key.allowed or "a string")
    return value


def parse_assignment(text: str) -> tuple[str, str]:
    """Split ``key=value`` from ``--set``; the value stays a string until coerced."""
    if "=" not in text:
        raise ConfigError(text, text, "--set takes key=value")
    name, value = text.split("=", 1)
    return name.strip(), value.strip()


def resolve(*layers: Mapping[str, Any] | None) -> Config:
    """Merge layers (later wins) over the defaults, coerce and validate everything."""
    merged: dict[str, Any] = dict(DEFAULTS)
    for layer in layers:
        for name, value in (layer or {}).items():
            if name not in KEYS:
                raise ConfigError(name, value, f"unknown key; {_suggest(name)}")
            merged[name] = coerce(KEYS[name], value)
    for key in SCHEMA:
        value = merged[key.name]
        if key.choices is not None and value not in key.choices:
            raise ConfigError(key.name, value, f"one of {', '.join(key.choices)}")
        if key.check is not None and not key.check(value):
            raise ConfigError(key.name, value, key.allowed)
    _check_relations(merged)
    return Config(merged)


def _check_relations(c: dict[str, Any]) -> None:
    """Checks that involve several keys or the data set's shape (no data is loaded)."""
    from fl_poison.data.datasets import get_spec
    from fl_poison.models import check_compatible

    spec = get_spec(c["dataset"])
    n_classes = spec.num_classes
    if c["clients-per-round"] > c["num-clients"]:
        raise ConfigError("clients-per-round", c["clients-per-round"],
                          f"at most num-clients ({c['num-clients']})")
    for name in ("source-class", "target-class", "pca-class"):
        if c[name] >= n_classes:
            raise ConfigError(name, c[name], f"a class of {c['dataset']}: 0..{n_classes - 1}, or -1")
    if c["partition"] == "extreme" and c["num-clients"] < n_classes:
        raise ConfigError("num-clients", c["num-clients"],
                          f"at least the {n_classes} classes of {c['dataset']} for partition=extreme "
                          "(each client holds one class)")
    if c["model"] != "auto":
        problem = check_compatible(c["model"], spec.input_shape)
        if problem:
            raise ConfigError("model", c["model"], problem)
    if c["dropout"] > 0:
        from fl_poison.models import DROPOUT_MODELS

        chosen = spec.default_model if c["model"] == "auto" else c["model"]
        if chosen not in DROPOUT_MODELS:
            raise ConfigError("dropout", c["dropout"], f"-1 or 0 for model {chosen} (it has no dropout layers; "
                              f"dropout applies to {', '.join(DROPOUT_MODELS)})")
    if c["attack"] == "label-flip":
        for name in ("source-class", "target-class"):
            if c[name] < 0:
                raise ConfigError(name, c[name], f"attack=label-flip needs a class 0..{n_classes - 1}")
    if c["source-class"] >= 0 and c["source-class"] == c["target-class"]:
        raise ConfigError("target-class", c["target-class"], "a class different from source-class")
    if (c["source-class"] < 0) != (c["target-class"] < 0):
        missing = "target-class" if c["target-class"] < 0 else "source-class"
        raise ConfigError(missing, c[missing], "set both source-class and target-class, or neither")
    if c["malicious-from-source-holders"] and c["source-class"] < 0:
        raise ConfigError("malicious-from-source-holders", True, "needs source-class")
    if c["num-malicious"] > c["num-clients"]:
        raise ConfigError("num-malicious", c["num-malicious"], f"at most num-clients ({c['num-clients']})")
    if c["attack-end-round"] >= 0 and c["attack-end-round"] < c["attack-start-round"]:
        raise ConfigError("attack-end-round", c["attack-end-round"],
                          f"-1 or a round >= attack-start-round ({c['attack-start-round']})")
    if c["ndc-bound"] != "median":
        try:
            ok = float(c["ndc-bound"]) > 0
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError("ndc-bound", c["ndc-bound"], "a number > 0, or 'median'")
    _check_byzantine(c)
    _check_device(c)  # issue 12


def _check_device(c: dict[str, Any]) -> None:
    """issue 12: a CUDA device must exist here (checked where the config is resolved)."""
    if not c["device"].startswith("cuda"):
        return
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(c["device"][5:]) if ":" in c["device"] else 0
    if index >= n:
        raise ConfigError("device", c["device"], f"auto or cpu: this machine has {n} CUDA device(s)"
                          + (f" (cuda:0..cuda:{n - 1})" if n else ""))


def byzantine_budget(defense: str, k: int, f: int) -> int:
    """The f a Krum-family rule uses: the given one, or the largest it tolerates for k clients."""
    if f >= 0:
        return f
    if defense == "bulyan":
        return max(0, (k - 3) // 4)
    return max(0, (k - 3) // 2)


def _check_byzantine(c: dict[str, Any]) -> None:
    k = c["clients-per-round"]
    f = byzantine_budget(c["defense"], k, c["num-byzantine"])
    if c["defense"] in ("krum", "multi-krum") and k - f - 2 < 1:
        raise ConfigError("num-byzantine", c["num-byzantine"],
                          f"Krum needs clients-per-round - num-byzantine - 2 >= 1; with {k} clients f <= {max(k - 3, 0)}")
    if c["defense"] == "bulyan" and k < 4 * f + 3:
        raise ConfigError("num-byzantine", c["num-byzantine"],
                          f"Bulyan needs clients-per-round >= 4*f + 3; with {k} clients f <= {max((k - 3) // 4, 0)}")
    if c["defense"] == "multi-krum" and c["multi-krum-keep"] > k:
        raise ConfigError("multi-krum-keep", c["multi-krum-keep"], f"at most clients-per-round ({k})")


def describe_keys() -> Iterable[str]:
    """Human-readable lines for `fl-poison keys`."""
    for k in SCHEMA:
        allowed = f" [{'|'.join(k.choices)}]" if k.choices else (f" [{k.allowed}]" if k.allowed else "")
        yield f"{k.name:32s} {k.default!r:>14}  {k.help}{allowed}"
