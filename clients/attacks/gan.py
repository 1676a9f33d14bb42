"""``attack=gan``: GAN reconstruction + poisoning of a class the adversary does not hold.

Hitaj et al. (2017) turn the shared model into a GAN discriminator; Zhang et
al. (2019) poison with what the generator makes. As the seed blog describes it:

1. *Label voting* (before training): every client declares the labels it
   owns and the adversary one extra label nobody owns, so the federation's
   model has ``C + 1`` outputs; the extra "fake" class is index ``C``
   (:meth:`GAN.model_outputs`: server and clients derive it from the config).
2. *Each adversarial round*: load the received global model as the
   discriminator (a frozen copy) and train the generator -- kept in the node's
   persistent store with its Adam state -- for ``gan-steps`` steps so that the
   discriminator classifies generated images as G (``source-class``).
3. Train the local model (Hitaj) on the adversary's real data plus
   ``gan-fake-samples`` generated images labelled ``C`` (the discriminator's
   update), and (Zhang) ``gan-samples`` generated images labelled T
   (``target-class``); send it like any client.

Where the blog is silent we follow the papers: a DCGAN generator
(:mod:`clients.gan`), Adam with beta1 = 0.5, the discriminator fixed during
the generator's steps. By default (``gan-exclude-source``) the adversary holds
no real sample of G: the run plan hands its G samples to the honest clients
(:func:`fl_poison.data.partition.move_class_out`) and the adversary also
drops any G sample it finds locally (a deployment node's own files).

The attack starts at ``attack-start-round`` and, with ``gan-start-accuracy``,
only once the received model's accuracy on the adversary's own data reaches
that level (Hitaj et al. start the GAN once the shared model is accurate).
Before that the adversary trains honestly.

Reply metrics: ``gan-recognised-received`` (the received model's rate of
classifying fresh generated images as G, after the generator's steps),
``gan-loss-first`` / ``gan-loss-last``, ``gan-rounds`` (rounds the generator
has trained); a measurement-only record ``gan-preview`` carries 64 images from
a fixed latent batch, which the experiment side scores with the new global
model (``gan_recognised``) and draws (``gan_samples.png``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from clients import gan
from clients.behaviour import Behaviour, LocalResult, RoundInput
from clients.gan_measurement import GAN_OUTPUTS, GanMeasurement
from fl_poison.config import Config, ConfigError, Interval, Key, above, at_least, at_least_or_off, check_class_pair
from fl_poison.training import local_accuracy

GAN_GENERATOR = Key("gan-generator", str, "dcgan", "GAN attack's generator: dcgan (Hitaj et al.; square images, "
                    "side a multiple of 4) or mlp (any shape)", gan.GENERATORS)
GAN_LATENT = Key("gan-latent", int, 100, "GAN attack: latent size of the generator", constraint=at_least(1))
GAN_WIDTH = Key("gan-width", int, 64, "GAN attack: generator width (channels of its last hidden layer)",
                constraint=at_least(1))
GAN_LR = Key("gan-lr", float, 0.001, "GAN attack: the generator's Adam learning rate (beta1 = 0.5)",
             constraint=above(0))
GAN_STEPS = Key("gan-steps", int, 50, "GAN attack: generator steps per adversarial round", constraint=at_least(0))
GAN_BATCH = Key("gan-batch", int, 64, "GAN attack: generator batch size", constraint=at_least(1))
GAN_SAMPLES = Key("gan-samples", int, 500, "GAN attack: generated images of G labelled target-class per round "
                  "(Zhang et al.)", constraint=at_least(0))
GAN_FAKE_SAMPLES = Key("gan-fake-samples", int, -1, "GAN attack: generated images labelled the extra fake class "
                       "per round (Hitaj et al.; -1 = gan-samples)", constraint=at_least_or_off(0, " for gan-samples"))
GAN_START_ACCURACY = Key("gan-start-accuracy", float, -1.0, "GAN attack: start once the received model's accuracy "
                         "on the adversary's data reaches this (-1 = at attack-start-round)",
                         constraint=Interval(float, 0, 1, closed="both", off=-1))
GAN_EXCLUDE_SOURCE = Key("gan-exclude-source", bool, True, "GAN attack: the adversary holds no sample of "
                         "source-class (its share goes to the honest clients), as in the blog")

#: Images of a fixed latent batch sent back for measurement each adversarial round.
PREVIEW = 64
#: Salts of the derived random streams (distinct uses of one round seed).
_FAKE, _POISON, _SCORE, _PREVIEW, _INIT = 1, 2, 3, 4, 5


def _sub(seed: int, salt: int) -> int:
    return int(np.random.SeedSequence([int(seed), salt]).generate_state(1)[0])


class GAN(Behaviour):
    """Hitaj et al.'s generator against the received model, then Zhang et al.'s poisoning with its samples."""

    name = "gan"
    keys = (GAN_GENERATOR, GAN_LATENT, GAN_WIDTH, GAN_LR, GAN_STEPS, GAN_BATCH, GAN_SAMPLES, GAN_FAKE_SAMPLES,
            GAN_START_ACCURACY, GAN_EXCLUDE_SOURCE)
    help = "GAN reconstruction + poisoning: generate source-class (not held), label it target-class (Hitaj; Zhang)"
    malicious = True
    outputs = GAN_OUTPUTS

    # --- what the server measures: previews recognised, drawn, and the (G, T) matrix of a report -----------
    @classmethod
    def measurement(cls, config: Config, fed: Any) -> GanMeasurement:
        return GanMeasurement(config, fed)

    @classmethod
    def figure_lines(cls, config: Config) -> list[tuple[str, str, str, str | None]]:
        return [("gan_recognised", f"global model: generated images recognised as {config['source-class']}",
                 "^--", None)]

    @classmethod
    def report_files(cls, runs: Sequence[dict[str, Any]], out: Path, figures: bool) -> list[Path]:
        from clients.gan_report import write_gan_report

        return write_gan_report(runs, out, figures)

    # --- label voting and the run plan ------------------------------------------------------
    @classmethod
    def model_outputs(cls, config: Config, num_classes: int) -> int:
        """C real classes plus the adversary's extra "fake" label (index C) agreed by label voting."""
        return num_classes + 1

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        check_class_pair(config, spec, cls.name)  # G = T is refused by the core relations
        problem = gan.shape_problem(config["gan-generator"], spec.input_shape)
        if problem:
            raise ConfigError("gan-generator", config["gan-generator"], problem)
        check_round_memory(config, spec)
        if config["gan-exclude-source"]:
            from fl_poison.threat import num_malicious

            if config["malicious-from-source-holders"]:
                raise ConfigError("malicious-from-source-holders", True, "false for attack=gan with "
                                  "gan-exclude-source=true (the adversary holds no sample of source-class)")
            n = num_malicious(config["num-clients"], config["malicious-fraction"], config["num-malicious"])
            if n >= config["num-clients"]:
                key = "num-malicious" if config["num-malicious"] >= 0 else "malicious-fraction"
                raise ConfigError(key, config[key], f"fewer adversaries than num-clients ({config['num-clients']}) "
                                  "for attack=gan: some honest client must hold source-class")

    @classmethod
    def adjust_partitions(cls, config: Config, parts: list[np.ndarray], labels: np.ndarray,
                          malicious: tuple[int, ...]) -> list[np.ndarray]:
        """Hand the adversaries' samples of G to the honest clients (round-robin); none is dropped."""
        if not config["gan-exclude-source"]:
            return parts
        from fl_poison.data.partition import move_class_out

        try:
            out = move_class_out(labels, parts, malicious, config["source-class"])
        except ValueError as exc:
            raise ConfigError("num-malicious", config["num-malicious"], str(exc)) from None
        empty = [c for c in malicious if len(out[c]) == 0]
        if empty:
            raise ConfigError("partition", config["partition"], f"a split that leaves the adversary data once "
                              f"class {config['source-class']} is taken from it (client {empty[0]} held only that "
                              "class); use another partition or gan-exclude-source=false")
        return out

    # --- the round ---------------------------------------------------------------------------
    def real_data(self, r: RoundInput) -> tuple[torch.Tensor, torch.Tensor]:
        """The adversary's real data; never class G under ``gan-exclude-source``."""
        if not self.config["gan-exclude-source"]:
            return r.x, r.y
        keep = r.y != self.config["source-class"]
        return r.x[keep], r.y[keep]

    def started(self, r: RoundInput, x: torch.Tensor, y: torch.Tensor) -> bool:
        """Inside the attack window and, with ``gan-start-accuracy``, once the received model is good enough."""
        if not self.active(r.server_round):
            return False
        threshold = self.config["gan-start-accuracy"]
        if threshold < 0:
            return True
        flags = r.store.get_values("flags") or {}
        if flags.get("started"):
            return True
        if local_accuracy(r.model, x, y) >= threshold:
            r.store.put_values("flags", {"started": True})
            return True
        return False

    def generator(self, r: RoundInput) -> tuple[torch.nn.Module, torch.optim.Optimizer, int]:
        """The generator and its optimiser from the node's store (fresh, seeded by run seed and client, at first)."""
        c, spec = self.config, _spec(self.config)
        g = gan.build_generator(c["gan-generator"], c["gan-latent"], c["gan-width"], spec.input_shape, spec.mean,
                                spec.std, seed=_sub(c["seed"] * 1_000_003 + self.cid, _INIT))
        g = g.to(next(r.model.parameters()).device)
        opt = gan.make_optimizer(g, c["gan-lr"])
        saved = r.store.get_arrays("generator")
        rounds = int((r.store.get_values("progress") or {}).get("rounds", 0))
        if saved is not None:
            gan.unpack_state(g, opt, saved)
        return g, opt, rounds

    def local_work(self, r: RoundInput) -> LocalResult:
        c = self.config
        G, T, fake_class = c["source-class"], c["target-class"], r.num_classes
        x, y = self.real_data(r)
        if not self.started(r, x, y):
            result = self.train_and_reply(r, x, y)
            result.metrics["gan-active"] = 0.0
            return result
        g, opt, rounds = self.generator(r)
        disc = gan.frozen(r.model)
        losses = gan.train_generator(g, disc, opt, G, c["gan-steps"], c["gan-batch"], seed=r.seed)
        r.store.put_arrays("generator", gan.pack_state(g, opt))
        r.store.put_values("progress", {"rounds": rounds + 1})
        n_fake = c["gan-samples"] if c["gan-fake-samples"] < 0 else c["gan-fake-samples"]
        fake = gan.generate(g, n_fake, _sub(r.seed, _FAKE))
        poison = gan.generate(g, c["gan-samples"], _sub(r.seed, _POISON))
        recognised = gan.recognition_rate(disc, gan.generate(g, 256, _sub(r.seed, _SCORE)), G)
        preview = gan.generate(g, PREVIEW, _sub(c["seed"] * 1_000_003 + self.cid, _PREVIEW))
        xt = torch.cat([x, fake.to(x.dtype), poison.to(x.dtype)])
        yt = torch.cat([y, torch.full((n_fake,), fake_class, dtype=y.dtype),
                        torch.full((int(poison.shape[0]),), T, dtype=y.dtype)])
        result = self.train_and_reply(r, xt, yt, scored=(x, y))
        nan = float("nan")
        result.records["gan-preview"] = preview_record(preview, r.server_round)
        result.metrics.update({
            "gan-active": 1.0, "gan-rounds": float(rounds + 1), "gan-recognised-received": recognised,
            "gan-loss-first": losses[0] if losses else nan, "gan-loss-last": losses[-1] if losses else nan,
            "gan-real-source-samples": float((y == G).sum()),
        })
        return result


#: Keys that size an adversarial round's memory (see :func:`clients.gan.round_floats`).
SIZE_KEYS = (GAN_LATENT, GAN_WIDTH, GAN_BATCH, GAN_SAMPLES, GAN_FAKE_SAMPLES)


def round_bytes(config: dict[str, Any], shape) -> int:
    """Estimated peak bytes of one adversarial round under ``config``."""
    n_fake = config["gan-samples"] if config["gan-fake-samples"] < 0 else config["gan-fake-samples"]
    images = config["gan-samples"] + n_fake + PREVIEW + 256  # poison, fake, preview, the recognition batch
    return 4 * gan.round_floats(config["gan-generator"], config["gan-latent"], config["gan-width"], shape,
                                config["gan-batch"], images)


def check_round_memory(config: dict[str, Any], spec: Any) -> None:
    """Refuse sizes whose round cannot fit in this machine's memory, naming the key that makes it so.

    The key named is the one whose default shrinks the estimate most. Without
    this check such a round fails its allocation every round and the run ends
    "complete" on the honest clients alone.
    """
    from fl_poison.devices import memory_bytes

    need, have = round_bytes(config, spec.input_shape), memory_bytes(config["device"])
    if need <= have:
        return
    key = min(SIZE_KEYS, key=lambda k: round_bytes({**config, k.name: k.default}, spec.input_shape))
    raise ConfigError(key.name, config[key.name], f"a smaller value: one adversarial round would hold ~{_size(need)}, "
                      f"this machine has {_size(have)} (RAM, or the CUDA device's memory if smaller)")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def _spec(config: Config):
    from fl_poison.data.datasets import get_spec

    return get_spec(config["dataset"])


def preview_record(images: torch.Tensor, server_round: int) -> dict[str, Any]:
    """Generated images as a ConfigRecord's content (float16 bytes + shape): small, measurement only."""
    arr = np.ascontiguousarray(images.detach().cpu().numpy().astype(np.float16))
    return {"images": arr.tobytes(), "shape": [int(s) for s in arr.shape], "round": int(server_round)}


def read_preview(record: Any, image_shape: tuple[int, ...], server_round: int) -> tuple[np.ndarray, int]:
    """Inverse of :func:`preview_record`: float32 ``[N, C, H, W]`` images and the round they were made in.

    The record comes from a client, so everything is checked (ValueError with
    the reason): at most :data:`PREVIEW` images of ``image_shape``, exactly
    that many bytes, finite pixels, a made-in round in ``1..server_round``.
    """
    images, shape, made = (record.get(k) for k in ("images", "shape", "round"))
    if not isinstance(images, bytes):
        raise ValueError("'images' is not bytes")
    if not (isinstance(shape, list) and len(shape) == 1 + len(image_shape)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in shape)):
        raise ValueError(f"'shape' is {shape!r}, not [N, {', '.join(map(str, image_shape))}]")
    if tuple(shape[1:]) != tuple(image_shape) or not 1 <= shape[0] <= PREVIEW:
        raise ValueError(f"'shape' is {shape}, expected [1..{PREVIEW}, {', '.join(map(str, image_shape))}]")
    if len(images) != 2 * int(np.prod(shape)):
        raise ValueError(f"{len(images)} bytes of images, {2 * int(np.prod(shape))} expected for shape {shape}")
    if not (isinstance(made, int) and not isinstance(made, bool) and 1 <= made <= server_round):
        raise ValueError(f"'round' is {made!r}, not a round in 1..{server_round}")
    arr = np.frombuffer(images, dtype=np.float16).reshape(shape).astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("non-finite pixels")
    return arr, made
