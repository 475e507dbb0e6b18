"""PyTorch CPU reference for bench/mobilenet-bench.ts: Adam training steps of torchvision's MobileNetV2.

Usage: /usr/bin/python3 bench/torch_mobilenet.py <width> <size> <classes> <batch> <steps> <threads> <seed>
Random inputs [batch, 3, size, size] and labels (seeded); 2 warm-up steps, then `steps` timed steps.
Prints one JSON line: {"msPerStep": median ms per step, "cpuMsPerStep": median process CPU ms per step
(all threads), "threads": threads used}.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F
import torchvision


def main():
    width, size, classes, batch, steps, threads, seed = sys.argv[1:8]
    width, size, classes, batch, steps, threads, seed = float(width), int(size), int(classes), int(batch), int(steps), int(threads), int(seed)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = torchvision.models.mobilenet_v2(width_mult=width, num_classes=classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size) * 2 - 1
    y = torch.randint(0, classes, (batch,))
    model.train()
    times = []
    cpu = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        c0 = time.process_time()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
    times.sort()
    cpu.sort()
    print(json.dumps({"msPerStep": times[len(times) // 2], "cpuMsPerStep": cpu[len(cpu) // 2], "threads": torch.get_num_threads()}))


if __name__ == '__main__':
    main()
