"""What an experiment is: its dataset, models, regularizer variants, recipe and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Variant:
    """One trained model: its key (JSON, ``--models``), its row label and its regularizers.

    ``dropout`` follows each hidden dense layer (LeNet' only); ``lambda_jr`` weighs the
    Jacobian regularizer.
    """

    name: str
    label: str
    weight_decay: float = 0.0
    dropout: float = 0.0
    lambda_jr: float = 0.0


@dataclass
class Training:
    """The training recipe, the same for every model: SGD with momentum on cross-entropy.

    Attributes:
        decay_at: Fractions of ``epochs`` after which the learning rate is multiplied by
            ``decay`` (none: a constant learning rate).
        n_proj: Random projections of the Jacobian regularizer.
        seed: Seeds the initialisation (the same for every model), the batch order, dropout and
            the regularizer's projections.
        train_size: Training images used (the first ones; None: all).
    """

    epochs: int
    lr: float
    momentum: float = 0.9
    batch_size: int = 100
    decay_at: tuple[float, ...] = ()
    decay: float = 0.1
    n_proj: int = 1
    seed: int = 0
    train_size: int | None = None

    def milestones(self) -> list[int]:
        """The epochs after which the learning rate decays."""
        return [max(1, round(f * self.epochs)) for f in self.decay_at]


@dataclass
class Evaluation:
    """What is measured on the test set, the same for every model.

    Attributes:
        test_size: Test images used (the first ones; None: all).
        sigmas: Standard deviations of the white Gaussian noise, in pixel units ([0, 1]).
        noise_draws: Noise draws per test image and sigma (accuracies are averaged over them).
        epsilons: L-infinity radii of FGSM and PGD, in pixel units.
        pgd_steps: Signed-gradient steps of each PGD run, of size 2.5 * epsilon / steps.
        pgd_restarts: PGD runs from independent random starts (for images not yet broken).
        pgd_losses: The losses PGD's runs ascend in turn (``"ce"``, ``"margin"``).
        check_size: Test images (the first ones) attacked again by a stronger PGD, to check
            that the attack above has converged (0: no check).
        check_steps: The stronger PGD's steps per run.
        check_restarts: The stronger PGD's runs.
        iteration_epsilon: The radius of the accuracy-versus-PGD-iterations curve.
        iteration_step: Its step size.
        iterations: Its number of iterations (0: no curve).
        margin_samples: Test images whose margins are measured (the first ones; None: all).
        margin_directions: Random directions per image (the same for every model).
        max_distance: How far the margin search walks (L2, pixel units).
        slice_resolution: Grid points per axis of the decision-region figure.
        seed: Seeds the noise, the attacks' random starts and the margins' directions.
    """

    test_size: int | None = None
    sigmas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    noise_draws: int = 4
    epsilons: tuple[float, ...] = (0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3)
    pgd_steps: int = 40
    pgd_restarts: int = 2
    pgd_losses: tuple[str, ...] = ("ce", "margin")
    check_size: int = 1000
    check_steps: int = 100
    check_restarts: int = 4
    iteration_epsilon: float = 32 / 255
    iteration_step: float = 1 / 255
    iterations: int = 30
    margin_samples: int | None = 500
    margin_directions: int = 4
    max_distance: float = 20.0
    slice_resolution: int = 201
    seed: int = 0


@dataclass
class Experiment:
    """One dataset's experiment: the models to train, how, and what to measure on them.

    Attributes:
        dataset: ``digits`` (bundled with scikit-learn), or a dataset of MNIST-format IDX files.
        model: ``mlp`` (inputs-200-200-classes, ReLU) or ``lenet-prime`` (the paper's LeNet').
        standardize: Standardise inputs with the training set's mean and standard deviation,
            as the model's first layer; the regularizer then sees standardised inputs. Noise and
            attacks always act on images in [0, 1].
        variants: The models, in the tables' order.
        paper: The paper's table for this dataset (test accuracy and mean ‖J‖_F per variant).
    """

    dataset: str
    model: str
    standardize: bool
    variants: tuple[Variant, ...]
    training: Training
    evaluation: Evaluation
    classes: int = 10
    paper: dict[str, tuple[float, float]] | None = None


def slug(name: str) -> str:
    """A name as a file name: ``Fashion-MNIST`` -> ``fashion-mnist``."""
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


# The paper's rows (Hoffman, Roberts and Yaida 2019, Table 1), with the settings its code and a
# reimplementation "as in the paper" use, and its MNIST table: test accuracy and mean ‖J‖_F.
PAPER_VARIANTS = (
    Variant("none", "No regularization"),
    Variant("L2", "L2", weight_decay=5e-4),
    Variant("dropout", "Dropout", dropout=0.5),
    Variant("Jacobian", "Jacobian", lambda_jr=0.01),
    Variant("all combined", "All combined", weight_decay=5e-4, dropout=0.5, lambda_jr=0.01),
)
PAPER_TABLE = {
    "none": (0.989, 32.9),
    "L2": (0.992, 4.6),
    "dropout": (0.986, 21.5),
    "Jacobian": (0.990, 1.1),
    "all combined": (0.991, 1.2),
}
PAPER_TRAINING = Training(epochs=60, lr=0.1, batch_size=100, decay_at=(1 / 3, 2 / 3))

EXPERIMENTS = {
    # The paper's claims on a dataset that ships with scikit-learn: seconds on a laptop.
    "digits": Experiment(
        dataset="digits",
        model="mlp",
        standardize=False,
        variants=(
            Variant("none", "no regularization"),
            Variant("L2", "L2 (wd=0.0005)", weight_decay=5e-4),
            Variant("Jacobian", "Jacobian (λ=0.01)", lambda_jr=0.01),
        ),
        training=Training(epochs=30, lr=0.05, batch_size=32),
        evaluation=Evaluation(
            sigmas=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0),
            noise_draws=5,
            epsilons=(0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3),
            pgd_steps=20,
            pgd_restarts=1,
            pgd_losses=("ce",),
            check_size=0,
            iterations=0,
            margin_samples=None,
            margin_directions=8,
        ),
    ),
    # The paper's MNIST table, with its recipe but 60 epochs instead of 250.
    "MNIST": Experiment(
        dataset="MNIST",
        model="lenet-prime",
        standardize=True,
        variants=PAPER_VARIANTS,
        training=PAPER_TRAINING,
        evaluation=Evaluation(),
        paper=PAPER_TABLE,
    ),
    "Fashion-MNIST": Experiment(
        dataset="Fashion-MNIST",
        model="lenet-prime",
        standardize=True,
        variants=PAPER_VARIANTS,
        training=replace(PAPER_TRAINING, epochs=30),
        evaluation=Evaluation(),
    ),
}


def quick(experiment: Experiment) -> Experiment:
    """A smoke run: 1 epoch on 500 training and 200 test images, each measurement done lightly."""
    ev = experiment.evaluation
    evaluation = replace(
        ev,
        test_size=200,
        sigmas=(0.0, 0.5, 1.0),
        noise_draws=1,
        epsilons=(0.0, 0.1, 0.3),
        pgd_steps=5,
        check_size=min(ev.check_size, 100),
        check_steps=10,
        check_restarts=2,
        iterations=min(ev.iterations, 3),
        margin_samples=20,
        margin_directions=2,
        max_distance=2.0,
        slice_resolution=31,
    )
    training = replace(experiment.training, epochs=1, train_size=500)
    return replace(experiment, training=training, evaluation=evaluation)
