"""The frozen-backbone pipeline shared by the analytic papers (ACIL/AFL/AFCL/ACU/DeepAFL).

1. Load an image dataset (``data.name``; sklearn's digits offline by default).
2. Shuffle the classes with ``data.class_order_seed`` and relabel them by their
   position in that order, so a class-incremental stream always sees classes
   ``0 .. C-1`` in turn: phase 0 holds the ``data.base_classes`` base classes,
   then ``data.num_phases`` equal tasks.
3. Train a backbone (``backbone.name``: ``convnet``, ``resnet20/32/56``,
   ``resnet18``) by backprop on the base classes only, with the core trainer
   (checkpointed under ``<workdir>/backbone``, so an interrupted run resumes),
   then freeze it; ``backbone.name="none"`` uses the flattened pixels instead
   (or bring your own features with :func:`from_arrays`).
4. Extract the pooled features of every train and test image (cached in
   ``<workdir>/features.npz``).

Analytic learning then happens on these features (through a random buffer
layer, see :mod:`jaxpapers.analytic.buffer`): no further gradient steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from jaxpapers import federated
from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import train as train_lib
from jaxpapers.data import images as images_lib
from jaxpapers.data import incremental, pipeline
from jaxpapers.nn import resnet


@dataclasses.dataclass(frozen=True, eq=False)
class Features:
    """Backbone features with labels relabelled by arrival order.

    Attributes:
      train, test: (N, d) float32 features.
      train_labels, test_labels: (N,) int32, class ``k`` = the k-th class to arrive.
      num_classes: C.
      phases: class ids of every phase (phase 0 = the backbone's base classes).
      info: facts for logs (dataset, backbone accuracy on the base classes, ...).
    """

    train: np.ndarray
    train_labels: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    phases: list[np.ndarray]
    info: dict

    @property
    def dim(self) -> int:
        return self.train.shape[1]

    def seen(self, phase: int) -> int:
        """Number of classes seen after ``phase`` (classes are 0 .. seen-1)."""
        return int(sum(len(p) for p in self.phases[: phase + 1]))


def base_config(variant: str) -> ml_collections.ConfigDict:
    """Keys every analytic experiment shares (data, backbone, buffer, clients).

    ``tiny`` shortens the backbone's training; ``paper`` is ACIL's CIFAR-100
    protocol, which AFCL and ACU use as is and DeepAFL adapts.
    """
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.mesh = ml_collections.ConfigDict(
        {"axes": ("data", "model"), "shape": (-1, 1), "axis_types": "auto"}
    )
    c.data = ml_collections.ConfigDict()
    c.data.name = "digits"  # digits | mnist | cifar10 | cifar100 | tiny_imagenet
    c.data.data_dir = ""
    c.data.class_order_seed = 1993  # ACIL's seed for the class order
    c.data.base_classes = 5
    c.data.num_phases = 5
    c.backbone = ml_collections.ConfigDict()
    c.backbone.name = "convnet"  # convnet | resnet20 | resnet32 | resnet56 | resnet18 | none
    c.backbone.epochs = 30
    c.backbone.batch_size = 64
    c.backbone.optimizer = "adam"  # adam | sgd (momentum 0.9, cosine decay)
    c.backbone.learning_rate = 1e-3
    c.backbone.weight_decay = 0.0
    c.backbone.augment = False  # random crop (4-pixel padding) + horizontal flip
    c.backbone.log_every = 50
    c.backbone.progress = True
    c.analytic = ml_collections.ConfigDict()
    c.analytic.buffer_size = 1024  # width of the random ReLU expansion (0: none)
    c.analytic.gamma = 1.0  # ridge regularisation
    c.analytic.float64 = True  # statistics and solves in float64 (the references' choice)
    c.federated = ml_collections.ConfigDict()
    c.federated.num_clients = 10
    c.federated.partition = "dirichlet"  # dirichlet | iid | shards
    c.federated.alpha = 0.1
    c.federated.min_size = 1
    c.federated.block_size = 64
    if variant == "tiny":  # seconds: a 2-epoch backbone and a narrow buffer
        c.backbone.epochs = 2
        c.backbone.log_every = 5
        c.analytic.buffer_size = 256
    elif variant == "paper":  # ACIL's CIFAR-100 protocol: B50 + 25 phases on a ResNet-32
        c.data.name = "cifar100"
        c.data.base_classes = 50
        c.data.num_phases = 25
        c.backbone.name = "resnet32"
        c.backbone.epochs = 160
        c.backbone.batch_size = 128
        c.backbone.optimizer = "sgd"
        c.backbone.learning_rate = 0.1
        c.backbone.weight_decay = 5e-4
        c.backbone.augment = True
        c.backbone.log_every = 200
        c.analytic.buffer_size = 8192
        c.analytic.gamma = 0.1
    return c


def _config_hash(config) -> str:
    keys = {
        "data": config.data.to_dict(),
        "backbone": config.backbone.to_dict(),
        "seed": config.seed,
    }
    keys["backbone"].pop("progress", None)
    keys["backbone"].pop("log_every", None)
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def _classifier_task(
    config,
    data: images_lib.ImageDataset,
    x_train,
    y_train,
    x_test,
    y_test,
    num_classes: int,
    steps: int,
) -> train_lib.Task:
    b = config.backbone
    channels = data.image_shape[-1]
    mean = tuple(float(m) for m in x_train.reshape(-1, channels).mean(0))
    std = tuple(float(s) + 1e-6 for s in x_train.reshape(-1, channels).std(0))

    def init_model(rngs):
        return resnet.make(
            b.name,
            num_classes,
            in_channels=channels,
            image_size=data.image_shape[0],
            mean=mean,
            std=std,
            rngs=rngs,
        )

    def loss_fn(model, batch):
        logits = model(batch["image"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, {"accuracy": (logits.argmax(-1) == batch["label"]).mean()}

    def eval_fn(model, batch):
        return {"correct": model(batch["image"]).argmax(-1) == batch["label"]}

    if b.optimizer == "sgd":
        schedule = optax.cosine_decay_schedule(b.learning_rate, steps)
        tx = optax.chain(
            optax.add_decayed_weights(b.weight_decay), optax.sgd(schedule, momentum=0.9)
        )
    elif b.optimizer == "adam":
        tx = optax.adamw(b.learning_rate, weight_decay=b.weight_decay)
    else:
        raise ValueError(f"backbone.optimizer must be 'adam' or 'sgd', got {b.optimizer!r}")
    epochs = math.ceil(steps / (len(x_train) // b.batch_size))
    return train_lib.Task(
        init_model=init_model,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        summarize=lambda out: {"accuracy": float(np.mean(out["correct"]))},
        optimizer=tx,
        train_data=pipeline.train_batches(
            {"image": x_train, "label": y_train},
            b.batch_size,
            num_epochs=epochs,
            seed=config.seed,
            transform=images_lib.crop_flip if b.augment else None,
        ),
        eval_data={"test": pipeline.eval_batches({"image": x_test, "label": y_test}, 256)},
    )


def _extract(model: nnx.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    graphdef, state = nnx.split(model)

    @jax.jit
    def features(state, x):
        return nnx.merge(graphdef, state).features(x)

    out = []
    for start in range(0, len(images), batch_size):
        out.append(
            np.asarray(features(state, images_lib.as_float(images[start : start + batch_size])))
        )
    return np.concatenate(out).astype(np.float32)


def prepare(config, workdir: str) -> Features:
    """Dataset -> class order -> backbone on the base classes -> frozen features."""
    d = config.data
    data = images_lib.load(d.name, data_dir=d.data_dir, seed=config.seed)
    order = incremental.class_order(data.num_classes, d.class_order_seed)
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    train_labels = position[data.train_labels].astype(np.int32)
    test_labels = position[data.test_labels].astype(np.int32)
    phases = incremental.phases(np.arange(data.num_classes), d.base_classes, d.num_phases)
    info = {
        "dataset": data.name,
        "num_train": len(train_labels),
        "num_test": len(test_labels),
        "class_order": order.tolist(),
    }

    cache = os.path.join(workdir, "features.npz")
    key = _config_hash(config)
    if os.path.exists(cache):
        with np.load(cache) as f:
            if str(f["key"]) == key:
                logging.info("using cached backbone features from %s", cache)
                info.update(json.loads(str(f["info"])))
                return Features(
                    f["train"], train_labels, f["test"], test_labels, data.num_classes, phases, info
                )

    if config.backbone.name == "none":
        train = images_lib.as_float(data.train_images).reshape(len(train_labels), -1)
        test = images_lib.as_float(data.test_images).reshape(len(test_labels), -1)
    else:
        base = incremental.rows_of(train_labels, phases[0])
        base_test = incremental.rows_of(test_labels, phases[0])
        x_train = images_lib.as_float(data.train_images[base])
        x_test = images_lib.as_float(data.test_images[base_test])
        b = config.backbone
        steps = b.epochs * (len(base) // b.batch_size)
        task = _classifier_task(
            config,
            data,
            x_train,
            train_labels[base],
            x_test,
            test_labels[base_test],
            len(phases[0]),
            steps,
        )
        loop = train_lib.LoopConfig(
            num_steps=steps,
            log_every=b.log_every,
            eval_every=0,
            eval_splits=(),
            final_splits=("test",),
            checkpoint_every=max(1, steps // 4),
            seed=config.seed,
            progress=b.progress,
        )
        mesh = mesh_lib.mesh_from_config(config.mesh)
        backbone_dir = os.path.join(workdir, "backbone")
        result = train_lib.train_and_evaluate(task, loop, workdir=backbone_dir, mesh=mesh)
        info["backbone_base_accuracy"] = result["test"]["accuracy"]
        s = train_lib.setup(task.init_model, task.optimizer, mesh=mesh, seed=config.seed)
        model = train_lib.restore_model(s, backbone_dir)
        train = _extract(model, data.train_images)
        test = _extract(model, data.test_images)
    np.savez(cache, key=key, info=json.dumps(info), train=train, test=test)
    return Features(train, train_labels, test, test_labels, data.num_classes, phases, info)


def client_partition(f, labels: np.ndarray, seed: int) -> list[np.ndarray]:
    """Rows of every client under ``config.federated`` (dirichlet | iid | shards)."""
    if f.partition == "dirichlet":
        return federated.dirichlet(labels, f.num_clients, f.alpha, min_size=f.min_size, seed=seed)
    if f.partition == "iid":
        return federated.iid(labels, f.num_clients, seed=seed)
    if f.partition == "shards":
        return federated.shards(labels, f.num_clients, seed=seed)
    raise ValueError(f"federated.partition must be dirichlet, iid or shards, got {f.partition!r}")


def from_arrays(
    train,
    train_labels,
    test,
    test_labels,
    num_classes: int,
    *,
    base_classes: int,
    num_phases: int,
    class_order_seed: int | None = None,
) -> Features:
    """User-supplied features (e.g. from your own frozen backbone)."""
    order = incremental.class_order(num_classes, class_order_seed)
    position = np.empty_like(order)
    position[order] = np.arange(num_classes)
    phases = incremental.phases(np.arange(num_classes), base_classes, num_phases)
    return Features(
        np.asarray(train, np.float32),
        position[np.asarray(train_labels)].astype(np.int32),
        np.asarray(test, np.float32),
        position[np.asarray(test_labels)].astype(np.int32),
        num_classes,
        phases,
        {"dataset": "user"},
    )


def classify(x, w) -> np.ndarray:
    """Predicted classes of a linear head: ``argmax(x @ w)`` at full precision, on the host."""
    return np.asarray(jnp.matmul(x, w, precision=jax.lax.Precision.HIGHEST).argmax(-1))


def run_with_features(config, workdir: str, body):
    """Registry-entry scaffold: ``body(config, features, workdir)`` in the configured precision.

    Prepares (or loads the cached) features, logs what they are, and runs
    ``body`` under ``jax.enable_x64(config.analytic.float64)``.
    """
    feats = prepare(config, workdir)
    logging.info("features: %s", feats.info)
    with jax.enable_x64(bool(config.analytic.float64)):
        return body(config, feats, workdir)
