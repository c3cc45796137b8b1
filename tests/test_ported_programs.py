"""PyTorch programs ported by changing only their imports give PyTorch's numbers.

Each program below is one piece of source text, run twice: once after
``import torch; import torch.nn as nn; import torch.nn.functional as F`` and once after
``import ember as torch; import ember.nn as nn; import ember.nn.functional as F``. The
two runs start from the same weights (the torch model's state_dict, loaded into ember's)
and must agree on outputs, losses, gradients and updated weights.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import ember
from conftest import assert_close

TORCH_IMPORTS = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
EMBER_IMPORTS = "import ember as torch\nimport ember.nn as nn\nimport ember.nn.functional as F\n"
RTOL, ATOL = 1e-4, 1e-5

# The CNN of PyTorch's "Training a classifier" tutorial, with a 2-class head.
SIMPLE_CNN = """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 2)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)  # flatten all dimensions except batch
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


def make_model():
    return Net()


def train_step(net, inputs, labels, lr=0.01):
    criterion = nn.CrossEntropyLoss()
    net.zero_grad()
    outputs = net(inputs)
    loss = criterion(outputs, labels)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    with torch.no_grad():
        for p in net.parameters():
            p -= lr * p.grad
    return outputs, loss, grads
"""

# An MNIST-style MLP: 784-512-256-10 with ReLU and a softmax output.
MNIST_MLP = """
class MLP(nn.Module):
    def __init__(self):
        super(MLP, self).__init__()
        self.fc1 = nn.Linear(784, 512)
        self.fc2 = nn.Linear(512, 256)
        self.fc3 = nn.Linear(256, 10)

    def forward(self, x):
        x = x.view(-1, 28 * 28)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return F.softmax(x, dim=1)


def make_model():
    return MLP()


def train_step(net, inputs, labels, lr=0.1):
    net.train()
    net.zero_grad()
    outputs = net(inputs)
    loss = F.nll_loss(torch.log(outputs), labels)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    with torch.no_grad():
        for p in net.parameters():
            p.sub_(lr * p.grad)
    return outputs, loss, grads
"""

# The model of PyTorch's quickstart: Flatten and a Sequential stack.
QUICKSTART = """
class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28*28, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, 10)
        )

    def forward(self, x):
        x = self.flatten(x)
        logits = self.linear_relu_stack(x)
        return logits


def make_model():
    return NeuralNetwork()


def train_step(net, inputs, labels, lr=0.05):
    loss_fn = nn.CrossEntropyLoss()
    pred = net(inputs)
    loss = loss_fn(pred, labels)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    with torch.no_grad():
        for p in net.parameters():
            p -= lr * p.grad
    net.zero_grad()
    return pred, loss, grads
"""


def load_program(source: str, imports: str) -> dict:
    namespace: dict = {}
    exec(compile(imports + textwrap.dedent(source), "<ported program>", "exec"), namespace)
    return namespace


PROGRAMS = {
    "simple_cnn": (SIMPLE_CNN, (4, 3, 32, 32), 2),
    "mnist_mlp": (MNIST_MLP, (16, 1, 28, 28), 10),
    "quickstart": (QUICKSTART, (8, 1, 28, 28), 10),
}


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_ported_program_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    source, shape, classes = PROGRAMS[name]
    tprog, eprog = load_program(source, TORCH_IMPORTS), load_program(source, EMBER_IMPORTS)
    torch.manual_seed(0)
    tnet, enet = tprog["make_model"](), eprog["make_model"]()
    assert repr(enet) == repr(tnet)
    assert [n for n, _ in enet.named_parameters()] == [n for n, _ in tnet.named_parameters()]
    # Start from the same weights: a torch checkpoint loads straight into the ember model.
    result = enet.load_state_dict(tnet.state_dict())
    assert not result.missing_keys and not result.unexpected_keys

    rng = np.random.default_rng(0)
    for step in range(3):
        x = rng.standard_normal(shape).astype(np.float32)
        y = rng.integers(0, classes, size=shape[0])
        tout, tloss, tgrads = tprog["train_step"](tnet, torch.tensor(x), torch.tensor(y))
        eout, eloss, egrads = eprog["train_step"](enet, ember.tensor(x), ember.tensor(y))
        assert_close(eout, tout, RTOL, ATOL)
        assert_close(eloss, tloss, RTOL, ATOL)
        for key, g in tgrads.items():
            assert_close(egrads[key], g, RTOL, ATOL)
    # After three SGD steps the weights still agree.
    tstate = tnet.state_dict()
    for key, value in enet.state_dict().items():
        assert_close(value, tstate[key], RTOL, ATOL)


def test_ported_model_in_eval_mode_without_grad():
    torch = pytest.importorskip("torch")
    tprog, eprog = load_program(SIMPLE_CNN, TORCH_IMPORTS), load_program(SIMPLE_CNN, EMBER_IMPORTS)
    tnet, enet = tprog["make_model"](), eprog["make_model"]()
    enet.load_state_dict(tnet.state_dict())
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    tnet.eval(), enet.eval()
    with torch.no_grad():
        tout = tnet(torch.tensor(x))
    with ember.no_grad():
        eout = enet(ember.tensor(x))
    assert not eout.requires_grad
    assert_close(eout, tout, RTOL, ATOL)
    assert_close(eout.argmax(1), tout.argmax(1))


# ---- small programs from PyTorch's autograd docs ---------------------------------------------

BACKWARD_WITH_GRADIENT = """
a = torch.tensor([2., 3.], requires_grad=True)
(a ** 2).backward(torch.tensor([1., 1.]))
result = a.grad
"""

DATA_DEPENDENT_BRANCH = """
def f(x):
    if x.sum() > 0:
        y = x * 2
    else:
        y = x / 2
    return y
"""


def test_backward_with_explicit_gradient():
    prog = load_program(BACKWARD_WITH_GRADIENT, EMBER_IMPORTS)
    assert prog["result"].tolist() == [4.0, 6.0]


def test_backward_with_explicit_gradient_matches_pytorch():
    pytest.importorskip("torch")
    eprog = load_program(BACKWARD_WITH_GRADIENT, EMBER_IMPORTS)
    tprog = load_program(BACKWARD_WITH_GRADIENT, TORCH_IMPORTS)
    assert_close(eprog["result"], tprog["result"])


@pytest.mark.parametrize("values,expected", [([1.0, -0.5, 2.0], [2.0, -1.0, 4.0]),
                                             ([-1.0, 0.5, -2.0], [-0.5, 0.25, -1.0])])
def test_data_dependent_branch_takes_both_sides(values, expected):
    f = load_program(DATA_DEPENDENT_BRANCH, EMBER_IMPORTS)["f"]
    x = ember.tensor(values, requires_grad=True)
    y = f(x)
    assert y.tolist() == expected
    y.sum().backward()
    scale = 2.0 if sum(values) > 0 else 0.5
    assert x.grad.tolist() == [scale] * 3


@pytest.mark.parametrize("values", [[1.0, -0.5, 2.0], [-1.0, 0.5, -2.0]])
def test_data_dependent_branch_matches_pytorch(values):
    torch = pytest.importorskip("torch")
    ef = load_program(DATA_DEPENDENT_BRANCH, EMBER_IMPORTS)["f"]
    tf = load_program(DATA_DEPENDENT_BRANCH, TORCH_IMPORTS)["f"]
    assert_close(ef(ember.tensor(values)), tf(torch.tensor(values)))
