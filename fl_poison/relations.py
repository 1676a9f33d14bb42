"""The checks between run keys that need more than the schema: the data set's shape, the models, the plug-ins.

:func:`fl_poison.config.resolve` runs :func:`check_relations` after every key's own check, before any data
loads. They live here, above the data, model and plug-in layers, so that ``fl_poison.config`` (which
every layer imports) imports none of them; each selected plug-in adds its own relations through its
``check_config(config, spec)`` class method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from fl_poison import plugins
from fl_poison.config import NNM_BUDGET, Config, ConfigError
from fl_poison.data.datasets import get_spec
from fl_poison.federation import new_model
from fl_poison.models import DROPOUT_MODELS, check_compatible


def check_relations(c: dict[str, Any]) -> None:
    """Checks that involve several keys or the data set's shape (no data is loaded).

    Core relations here; each selected plug-in adds its own through its
    ``check_config(config, spec)`` class method.
    """
    spec = get_spec(c["dataset"])
    n_classes = spec.num_classes
    if c["clients-per-round"] > c["num-clients"]:
        raise ConfigError("clients-per-round", c["clients-per-round"],
                          f"at most num-clients ({c['num-clients']})")
    for name in ("source-class", "target-class"):
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
        chosen = spec.default_model if c["model"] == "auto" else c["model"]
        if chosen not in DROPOUT_MODELS:
            raise ConfigError("dropout", c["dropout"], f"-1 or 0 for model {chosen} (it has no dropout layers; "
                              f"dropout applies to {', '.join(DROPOUT_MODELS)})")
    if c["source-class"] >= 0 and c["source-class"] == c["target-class"]:
        raise ConfigError("target-class", c["target-class"], "a class different from source-class")
    if getattr(plugins.get("attack", c["attack"]), "needs_class_pair", True) and \
            (c["source-class"] < 0) != (c["target-class"] < 0):
        missing = "target-class" if c["target-class"] < 0 else "source-class"
        raise ConfigError(missing, c[missing], "set both source-class and target-class, or neither")
    if c["malicious-from-source-holders"] and c["source-class"] < 0:
        raise ConfigError("malicious-from-source-holders", True, "needs source-class")
    if c["num-malicious"] > c["num-clients"]:
        raise ConfigError("num-malicious", c["num-malicious"], f"at most num-clients ({c['num-clients']})")
    if c["attack-end-round"] >= 0 and c["attack-end-round"] < c["attack-start-round"]:
        raise ConfigError("attack-end-round", c["attack-end-round"],
                          f"-1 or a round >= attack-start-round ({c['attack-start-round']})")
    _check_split(c, plugins)
    _check_paths(c)
    _check_device(c)
    if c["pre-aggregation"] == "nnm":  # -1 stands for a budget the rule derives from the round's size
        NNM_BUDGET.check(c["clients-per-round"], c["num-byzantine"], c["num-byzantine"], off_too=True)
    if getattr(plugins.get("defense", c["defense"]), "needs_server_data", False) and c["server-data-samples"] == 0:
        raise ConfigError("server-data-samples", 0, f"at least 1 (or -1 for 100) for defense={c['defense']}: it "
                          "scores clients against the server's update on that root data")
    # bucketing hands the rule ceil(K / bucket-size) bucket means: its checks count those rows
    rows = c["clients-per-round"]
    if c["pre-aggregation"] == "bucketing":
        rows = -(-rows // c["bucket-size"])
    seen = f" (pre-aggregation=bucketing: the rule sees {rows} bucket means)" if rows != c["clients-per-round"] else ""
    need = getattr(plugins.get("defense", c["defense"]), "min_clients", 1)
    if rows < need:
        raise ConfigError("clients-per-round", c["clients-per-round"],
                          f"at least {need} for defense={c['defense']}: it cannot tell attackers apart among fewer "
                          f"updates (it would keep everyone){seen}")
    for kind in ("attack", "defense"):
        check = getattr(plugins.get(kind, c[kind]), "check_config", None)
        if check is None:
            continue
        if kind == "attack" or not seen:
            check(c, spec)
            continue
        try:
            check({**c, "clients-per-round": rows}, spec)
        except ConfigError as exc:
            raise ConfigError(exc.key, exc.value, exc.allowed + seen) from None
    if c["initial-model"]:
        _check_initial_model(c)


def _check_split(c: dict[str, Any], plugins: Any) -> None:
    """``honest-holds-source=false`` needs a source class and an attack that draws a flipped set (or none);
    ``aggregation-weights=uniform`` needs a defense that averages."""
    if c["aggregation-weights"] == "uniform" and not getattr(plugins.get("defense", c["defense"]), "averages", True):
        raise ConfigError("aggregation-weights", "uniform", f"examples for defense={c['defense']} (it does not "
                          "average updates, so there is no weight to make uniform)")
    if c["honest-holds-source"]:
        return
    if c["source-class"] < 0:
        raise ConfigError("honest-holds-source", False, "true unless source-class is set (false takes the source "
                          "class away from every honest client)")
    attack = plugins.get("attack", c["attack"])
    if c["attack"] == "none":
        return
    if "injection-rate" not in {k.name for k in getattr(attack, "keys", ())}:
        raise ConfigError("honest-holds-source", False, f"true for attack={c['attack']} (false applies to attacks "
                          "that draw a flipped training set with injection-rate, and to attack=none)")
    if c["injection-rate"] < 0:
        raise ConfigError("injection-rate", c["injection-rate"], "a share in (0, 1] with honest-holds-source=false "
                          "(attackers hold no source sample of their own: they draw that share of their set)")


def _check_initial_model(c: dict[str, Any]) -> None:
    """``initial-model`` must be an .npz of the model's names and shapes, real finite numbers (no data loaded).

    Every array is read here, so a file that would fail or silently change
    when the run casts it (text, complex, object arrays; NaN / Inf; values
    beyond the model's float range) is refused before any data loads.
    """
    path = Path(c["initial-model"]).expanduser()
    if not path.is_file():
        raise ConfigError("initial-model", c["initial-model"], "a path to an existing model.npz, or ''")
    with path.open("rb") as fh:
        head = fh.read(4)
    if head != b"PK\x03\x04":  # np.savez writes a zip; anything else np.load would try to unpickle
        raise ConfigError("initial-model", c["initial-model"], f"a model.npz written by np.savez (a zip archive); "
                          f"this file starts with {head!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            saved = {k: z[k] for k in z.files}
    except Exception as exc:  # truncated, corrupt member, object arrays, ...
        raise ConfigError("initial-model", c["initial-model"], f"a readable .npz file ({exc})") from None
    expected = {k: v.detach().cpu().numpy() for k, v in new_model(Config(c)).state_dict().items()}
    problem = initial_model_problem(saved, expected)
    if problem:
        raise ConfigError("initial-model", c["initial-model"], f"a model.npz of the configured model ({problem})")


def initial_model_problem(saved: Mapping[str, Any], expected: Mapping[str, Any]) -> str | None:
    """Why ``saved`` arrays cannot become the model whose fresh state is ``expected`` (None: they can).

    Names and shapes must match; each array must hold real numbers of the
    model's kind (floats for parameters, integers for counters such as
    ``num_batches_tracked``) that stay finite in the model's dtype.
    """
    shapes = {k: tuple(np.shape(v)) for k, v in saved.items()}
    want = {k: tuple(v.shape) for k, v in expected.items()}
    if shapes != want:
        missing = sorted(set(want) - set(shapes))
        extra = sorted(set(shapes) - set(want))
        wrong = sorted(k for k in set(shapes) & set(want) if shapes[k] != want[k])
        return "; ".join(x for x in (
            f"missing {', '.join(missing[:3])}" if missing else "",
            f"unexpected {', '.join(extra[:3])}" if extra else "",
            ", ".join(f"{k} has shape {shapes[k]}, expected {want[k]}" for k in wrong[:3])) if x)
    for name, ref in expected.items():
        a = np.asarray(saved[name])
        allowed = "fiub" if ref.dtype.kind == "f" else "iub"
        if a.dtype.kind not in allowed:
            what = {"c": "complex numbers", "U": "text", "S": "bytes", "O": "Python objects"}.get(a.dtype.kind,
                                                                                              f"dtype {a.dtype}")
            return f"{name} holds {what}; expected real {'numbers' if ref.dtype.kind == 'f' else 'integers'}"
        if ref.dtype.kind == "f":
            with np.errstate(over="ignore", invalid="ignore"):
                bad = int(np.size(a) - np.isfinite(a.astype(ref.dtype)).sum())
            if bad:
                return f"{name} has {bad} value(s) that are NaN / Inf, or beyond {ref.dtype}'s range"
    return None


def _check_device(c: dict[str, Any]) -> None:
    """A CUDA device must exist where the config is resolved (the run's own process)."""
    if not c["device"].startswith("cuda"):
        return
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(c["device"][5:]) if ":" in c["device"] else 0
    if index >= n:
        raise ConfigError("device", c["device"], f"auto or cpu: this machine has {n} CUDA device(s)"
                          + (f" (cuda:0..cuda:{n - 1})" if n else ""))


def _check_paths(c: dict[str, Any]) -> None:
    """A run directory stays inside out-dir; out-dir / data-dir are not empty strings."""
    name = c["run-name"]
    if name == "." or ".." in name or "/" in name or "\\" in name:
        raise ConfigError("run-name", name, "a plain folder name (no '/', no '..'): run directories "
                          "stay inside out-dir")
    for key in ("out-dir", "data-dir"):
        if not c[key].strip():
            raise ConfigError(key, c[key], "a folder path (got an empty string)")
