"""Trains an MLP with Jacobian regularization, as the upstream library's MNIST example does.

Uses MNIST when its files are on disk (``--data-dir``), otherwise the handwritten digits bundled
with scikit-learn, so it runs offline. Unlike the upstream example, the test-set summary reports
averages over the whole test set, and the test set is not shuffled.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jacobian import JacobianReg
from torch import nn, optim
from torch.utils.data import DataLoader, TensorDataset

# The data loaders of the repository's `experiments` package: run from the repository root as
# `python -m examples.mnist` (the package is not installed).
from experiments.data import load_digits, load_mnist, mnist_available


class MLP(nn.Module):
    """The upstream example's MLP: two hidden layers of 200 ReLUs, Xavier initialisation."""

    def __init__(self, inputs: int, classes: int = 10, hidden: int = 200) -> None:
        super().__init__()
        self.inputs = inputs
        self.fc1 = nn.Linear(inputs, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)
        for layer in (self.fc1, self.fc2, self.fc3):
            nn.init.xavier_uniform_(layer.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps images [B, 1, H, W] to logits [B, classes]."""
        x = x.reshape(-1, self.inputs)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


@dataclass
class Evaluation:
    """Test-set figures, each averaged over every test example."""

    correct: int
    total: int
    loss_super: float
    loss_jr: float
    loss: float


def evaluate(
    device: torch.device,
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    lambda_jr: float,
) -> Evaluation:
    """Evaluates accuracy, the supervised loss and the exact Jacobian loss over a whole dataset.

    Args:
        device: Where the model is.
        model: The network to evaluate.
        loader: The test set, in a fixed order.
        criterion: The supervised loss (a mean over the batch).
        lambda_jr: The weight of the Jacobian loss in the total loss.

    Returns:
        The figures, averaged over every example (not the last batch's, as upstream reports).
    """
    reg_full = JacobianReg(n=-1)  # exact, for evaluation
    correct = total = 0
    sum_super = sum_jr = 0.0
    model.eval()
    for data, targets in loader:
        data, targets = data.to(device), targets.to(device)
        data.requires_grad = True  # the Jacobian needs it, even in evaluation
        output = model(data)
        with torch.no_grad():  # a number to log: no double-backward graph is built
            loss_jr = reg_full(data, output)
            loss_super = criterion(output, targets)
        correct += (output.argmax(1) == targets).sum().item()
        total += targets.size(0)
        sum_super += loss_super.item() * targets.size(0)
        sum_jr += loss_jr.item() * targets.size(0)
    model.train()
    loss_super_avg, loss_jr_avg = sum_super / total, sum_jr / total
    return Evaluation(
        correct, total, loss_super_avg, loss_jr_avg, loss_super_avg + lambda_jr * loss_jr_avg
    )


def normalize(train: TensorDataset, test: TensorDataset) -> tuple[TensorDataset, TensorDataset]:
    """Standardises pixels with the training set's mean and std, as upstream does for MNIST."""
    mean, std = train.tensors[0].mean(), train.tensors[0].std()
    return tuple(  # type: ignore[return-value]
        TensorDataset((images - mean) / std, labels)
        for images, labels in (train.tensors, test.tensors)
    )


def load(args: argparse.Namespace) -> tuple[str, TensorDataset, TensorDataset]:
    """Picks MNIST when it is on disk (or a download was asked for), else the bundled digits."""
    if args.data_dir and (args.download or mnist_available(args.data_dir)):
        return "MNIST", *normalize(*load_mnist(args.data_dir, download=args.download))
    if args.data_dir:
        print(f"No MNIST files under {args.data_dir}; using the bundled handwritten digits.")
    return "digits", *normalize(*load_digits(seed=args.seed))


def print_summary(title: str, result: Evaluation) -> None:
    """Prints one block of the before/after summary in the upstream example's format."""
    print(title)
    print(f"\taccuracy: {result.correct}/{result.total}={result.correct / result.total:.3f}")
    print(f"\tsupervised loss: {result.loss_super:.3f}")
    print(f"\tJacobian loss: {result.loss_jr:.3f}")
    print(f"\ttotal loss: {result.loss:.3f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Reads the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files (else: digits)")
    parser.add_argument("--download", action="store_true", help="download MNIST to --data-dir")
    parser.add_argument("--epochs", type=int, help="default: 5 on MNIST, 30 on the digits")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lambda-jr", type=float, default=0.1, help="weight of the regularizer")
    parser.add_argument("--n-proj", type=int, default=1, help="random projections (-1: exact)")
    parser.add_argument("--print-every", type=int, help="batches between progress lines")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Evaluation:
    """Trains with Jacobian regularization and prints the test set before and after."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    name, trainset, testset = load(args)
    epochs = args.epochs or (5 if name == "MNIST" else 30)
    print_every = args.print_every or (100 if name == "MNIST" else 20)
    print(f"Data: {name} ({len(trainset)} training, {len(testset)} test images).")

    trainloader = DataLoader(trainset, batch_size=args.batch_size, shuffle=True)
    testloader = DataLoader(testset, batch_size=args.batch_size, shuffle=False)
    model = MLP(inputs=trainset[0][0].numel()).to(device)
    criterion = nn.CrossEntropyLoss()
    reg = JacobianReg(n=args.n_proj)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    before = evaluate(device, model, testloader, criterion, args.lambda_jr)
    for epoch in range(epochs):
        print(f"Training epoch {epoch + 1}.")
        running_super = running_jr = 0.0
        for idx, (data, target) in enumerate(trainloader):
            data, target = data.to(device), target.to(device)
            data.requires_grad = True  # this is essential!
            optimizer.zero_grad()
            output = model(data)
            loss_super = criterion(output, target)
            loss_jr = reg(data, output)
            loss = loss_super + args.lambda_jr * loss_jr
            loss.backward()
            optimizer.step()
            running_super += loss_super.item()
            running_jr += loss_jr.item()
            if idx % print_every == print_every - 1:
                super_avg, jr_avg = running_super / print_every, running_jr / print_every
                print(
                    f"[{epoch + 1}, {idx + 1:5d}] supervised loss: {super_avg:.3f}, "
                    f"Jacobian loss: {jr_avg:.3f}"
                )
                running_super = running_jr = 0.0
    after = evaluate(device, model, testloader, criterion, args.lambda_jr)

    print(f"\nTest set results on {name} with lambda_JR={args.lambda_jr:.3f}.\n")
    print_summary("Before training:", before)
    print_summary(f"\nAfter {epochs} epochs of training:", after)
    return after


if __name__ == "__main__":
    main()
