"""PyTorch CPU reference for bench/train.ts: one epoch of Adam on the exact data compress trains on.

Usage: /usr/bin/python3 bench/torch_train.py <model> <data.bin> <n_train> <n_test> <batch> <lr> <seed> [threads=1]
data.bin: float32 train x [n_train*784], float32 test x [n_test*784], int32 train y, int32 test y
(little-endian, 28x28x1 row-major). The batch order is passed too: int32 permutation of n_train after y.
Prints one JSON line: {"seconds": train seconds, "accuracy": test accuracy}.
"""
import json
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet300100(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 300), nn.Linear(300, 100), nn.Linear(100, 10)

    def forward(self, x):
        x = x.reshape(x.shape[0], -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LeNet5(nn.Module):
    """Same as compress's lenet-5: conv 20x5x5 valid, maxpool 2, conv 50x5x5, maxpool 2, dense 500, dense 10."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 20, 5), nn.Conv2d(20, 50, 5)
        self.fc1, self.fc2 = nn.Linear(800, 500), nn.Linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def main():
    model_name, path, n_train, n_test, batch, lr, seed = sys.argv[1:8]
    n_train, n_test, batch, lr, seed = int(n_train), int(n_test), int(batch), float(lr), int(seed)
    torch.set_num_threads(int(sys.argv[8]) if len(sys.argv) > 8 else 1)
    raw = open(path, 'rb').read()
    off = 0
    def take(dtype, count):
        nonlocal off
        a = np.frombuffer(raw, dtype=dtype, count=count, offset=off)
        off += a.nbytes
        return a
    xtr = take('<f4', n_train * 784).reshape(n_train, 1, 28, 28)  # NCHW for torch (C=1: same bytes as NHWC)
    xte = take('<f4', n_test * 784).reshape(n_test, 1, 28, 28)
    ytr = take('<i4', n_train).astype(np.int64)
    yte = take('<i4', n_test).astype(np.int64)
    order = take('<i4', n_train).astype(np.int64)
    torch.manual_seed(seed)
    model = LeNet300100() if model_name == 'lenet-300-100' else LeNet5()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt, o = torch.from_numpy(xtr.copy()), torch.from_numpy(ytr), torch.from_numpy(order)
    model.train()
    t0 = time.perf_counter()
    for s in range(0, n_train, batch):
        idx = o[s:s + batch]
        opt.zero_grad()
        loss = F.cross_entropy(model(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(xte.copy())).argmax(1).numpy()
    print(json.dumps({"seconds": seconds, "accuracy": float((pred == yte).mean())}))


if __name__ == '__main__':
    main()
